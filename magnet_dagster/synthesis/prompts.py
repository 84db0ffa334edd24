"""What the teacher is asked at each step of translation and distillation, and the JSON shapes
its answers must have. Kept in one place so the wording, the few-shot examples and the order of
shared and varying parts can be read and changed together.

Each prompt puts what all its requests share first (instructions, rules, examples) and what
varies last (the conversation, then the function, then the values): the embedded server reuses
the longest prompt prefix a slot already holds, so the shared part is evaluated once per slot.
"""

from __future__ import annotations

from typing import Any

from magnet_dagster.tools.spec import FunctionSpec

# ------------------------------------------------------------------ back-and-forth translation

BACK_PROMPT = """Turn each task into a user's request to an assistant that states every value.
Never name functions; refer to earlier results indirectly ("that ticket", "the result").
Task: Multiply two numbers. Values: a=6, b=9
Request: {{"query": "Multiply 6 and 9 for me."}}
Task: Send a message to a user's manager. Values: user="Ana Lima", text="See you at 5"
Request: {{"query": "Tell Ana Lima's manager 'See you at 5'."}}
{context}Task: {task} Values: {values}
Request:"""

MISS_PARAMS_PROMPT = """Write the next message a user sends to an AI assistant. The user wants
the function below to do its job and gives the values below, but forgets one value.
Rules: do not name the function; one sentence; do not mention the forgotten value or its name.
Answer with JSON {{"query": "..."}}.
Conversation so far:
{history}
Function: {function}
Values the user gives: {values}
Forgotten: `{param}`"""

MISS_FUNC_PROMPT = """Write the next message a user sends to an AI assistant, asking for the job
of the function below to be done with the values below.
Rules: do not name the function; one sentence. Answer with JSON {{"query": "..."}}.
Conversation so far:
{history}
Function: {function}
Values: {values}"""

VALUE_PROMPT = """An assistant asked the user for a value. Write the user's short reply that gives
just this value and nothing else. Answer with JSON {{"query": "..."}}.
Asked for: `{param}` ({description})
Value: {value}"""

FORWARD_PROMPT = """You translate a user's request into function calls. Give the calls that fulfil
the request, with argument values taken from the request or from the earlier results. Answer with
JSON {{"calls": [{{"name": ..., "arguments": {{...}}}}]}}.
Functions to use:
{functions}
Conversation so far:
{history}
Results already available:
{outputs}
{carried}Request: {query}"""

QUERY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 8, "maxLength": 400}},
    "required": ["query"],
}
VALUE_REPLY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 120}},
    "required": ["query"],
}


def calls_schema(specs: list[FunctionSpec], exact: int | None = None) -> dict[str, Any]:
    """Structured output for calls: each item one of the offered functions, with its parameters."""
    variants = [
        {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [s.name]}, "arguments": s.parameters},
            "required": ["name", "arguments"],
        }
        for s in specs
    ]
    array: dict[str, Any] = {"type": "array", "items": variants[0] if len(variants) == 1 else {"anyOf": variants}}
    if exact is not None:
        array.update(minItems=exact, maxItems=exact)
    return {"type": "object", "properties": {"calls": array}, "required": ["calls"]}


# ------------------------------------------------------------------ context distillation

SYSTEM_PROMPT = "You are a helpful assistant that can call functions to complete the user's requests."
HINT_MARKER = "[reference hint]"

CALL_HINT = (
    HINT_MARKER + " The correct next step is to call: {calls}. Decide the calls yourself "
    "as if you had worked them out; never mention this hint. Answer with JSON "
    '{{"calls": [...]}}.'
)
ASK_HINT = (
    HINT_MARKER + " The user did not give the value of `{param}`, which is needed. Do not "
    "call any function: ask the user for it, and never mention this hint. Answer with JSON "
    '{{"content": "..."}}.'
)
REFUSE_HINT = (
    HINT_MARKER + " None of the available functions can do this. Do not call any "
    "function: say you cannot do it with the tools you have, and never mention this "
    'hint. Answer with JSON {{"content": "..."}}.'
)
ANSWER_HINT = (
    HINT_MARKER + " Reply as if the request were complete: do not call any function and do "
    "not ask the user anything; never mention this hint. Answer with JSON "
    '{{"content": "..."}}.'
)
REPLY_PROMPT = (
    "Write the assistant's short reply to the user in plain words, reporting the values the function "
    'results above returned (or that a call failed). Answer with JSON {"content": "..."}.'
)
WRONG_RESULTS_HINT = (
    HINT_MARKER + " Write the assistant's short reply as if the function results had been: {results}. "
    'Never mention this hint. Answer with JSON {{"content": "..."}}.'
)

CONTENT_SCHEMA = {
    "type": "object",
    "properties": {"content": {"type": "string", "minLength": 4, "maxLength": 400}},
    "required": ["content"],
}
