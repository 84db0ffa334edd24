"""Issue 11's data shapes, with a scripted fake teacher (named as such) for control flow:
dependent calls in their own steps, Insert hiding the inner task, Split as BFCL defines it,
and the reply after the results checked."""

import asyncio
import json

from magnet_dagster.graph.paths import MISS_FUNC, MISS_PARAMS, SignaturePath, Turn
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.synthesis.distillation import Trajectory, positive_trajectory
from magnet_dagster.synthesis.prompts import REPLY_PROMPT
from magnet_dagster.synthesis.results import PathRejection
from magnet_dagster.synthesis.translation import PathContext, TranslationSettings, offered_tools, translate_path
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.executors import Execution
from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT, split_holdout
from magnet_dagster.tools.spec import FunctionSpec
from tests.fakes import ScriptedFakeBackend


def _spec(name, description, props, returns=None):
    return FunctionSpec(name, description, {"type": "object", "properties": props, "required": list(props)},
                        returns=returns)


FIND = _spec("find_user", "Look up a user's id by their full name.", {"name": {"type": "string"}},
             {"type": "object", "properties": {"user_id": {"type": "integer"}}})
ORDERS = _spec("get_orders", "List the orders a user placed.", {"user_id": {"type": "integer"}},
               {"type": "object", "properties": {"orders": {"type": "array"}}})
SEND = _spec("send_message", "Send a text message to a user.", {"user": {"type": "string"}, "text": {"type": "string"}})
SPECS = {s.name: s for s in (FIND, ORDERS, SEND)}
MAPPINGS = {("find_user", "get_orders"): {"user_id": "user_id"}}
USER_ID = 4711


class ScriptedExecutor:
    """find_user answers a fixed id; the others echo their arguments."""

    async def execute(self, call):
        return Execution({"user_id": USER_ID} if call.name == "find_user" else {"ok": True, **call.arguments})

    def state(self):
        return None

    def close(self):
        return None


def _kind(request) -> str:
    props = set((request.response_schema or {}).get("properties", {}))
    return "query" if props == {"query"} else "calls" if props == {"calls"} else "values"


def _offered(request) -> list[str]:
    items = request.response_schema["properties"]["calls"]["items"]
    return [v["properties"]["name"]["enum"][0] for v in items.get("anyOf", [items])]


def _translate(tmp_path, path, script, mappings=MAPPINGS):
    backend = ScriptedFakeBackend(script)
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "journal").open()
    ctx = PathContext(client, path, SPECS, mappings, ScriptedExecutor(), [], TranslationSettings(max_attempts=1))
    result = asyncio.run(translate_path(ctx))
    client.close()
    return result, backend


def insert_short_teacher(user_id_given=USER_ID):
    def script(request):
        kind = _kind(request)
        if kind == "values":
            return {"name": "Ana Lima"}
        if kind == "query":
            return {"query": "Show me the orders Ana Lima placed."}
        if _offered(request) == ["find_user"]:
            return {"calls": [{"name": "find_user", "arguments": {"name": "Ana Lima"}}]}
        return {"calls": [{"name": "get_orders", "arguments": {"user_id": user_id_given}}]}
    return script


INSERT_SHORT = SignaturePath(walk=("find_user",), turns=(
    Turn(("find_user", "get_orders"), nested=(("find_user", "get_orders"),), operations=("insert_short",)),))


def test_a_dependent_call_is_its_own_step_and_takes_the_real_output(tmp_path):
    result, backend = _translate(tmp_path, INSERT_SHORT, insert_short_teacher())
    assert not isinstance(result, PathRejection), result
    turn = result[0]
    assert turn.step_sizes == [1, 1]
    assert [c.name for c in turn.calls] == ["find_user", "get_orders"]
    assert turn.calls[1].arguments["user_id"] == turn.outputs[0]["user_id"] == USER_ID
    assert str(USER_ID) not in turn.query
    forwards = [r for r in backend.requests if _kind(r) == "calls"]
    assert [_offered(r) for r in forwards] == [["find_user"], ["get_orders"]]
    assert str(USER_ID) in forwards[1].messages[0]["content"], "the second step sees the first step's output"
    assert str(USER_ID) not in forwards[0].messages[0]["content"]


def test_an_insert_short_query_asks_only_for_the_outer_task(tmp_path):
    _, backend = _translate(tmp_path, INSERT_SHORT, insert_short_teacher())
    back = next(r for r in backend.requests if _kind(r) == "query").messages[0]["content"]
    task = back.rsplit("Task:", 1)[1]
    assert "List the orders a user placed." in task
    assert "Look up a user's id" not in task, "the inner call is for the assistant to infer"
    assert 'name="Ana Lima"' in task, "the inner call's own inputs are still the user's to give"


def test_a_mapped_argument_that_is_not_the_real_output_is_a_dependency_rejection(tmp_path):
    result, _ = _translate(tmp_path, INSERT_SHORT, insert_short_teacher(user_id_given=1))
    assert isinstance(result, PathRejection) and result.rule == "dependency"
    assert result.reason == f"get_orders.user_id = 1, but find_user's output user_id is {USER_ID}"


def test_the_steps_become_separate_assistant_messages(tmp_path):
    result, _ = _translate(tmp_path, INSERT_SHORT, insert_short_teacher())
    traj = _distil(tmp_path, result, _follow_hint)
    assert isinstance(traj, Trajectory), traj
    roles = [m["role"] for m in traj.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    first, second = traj.messages[2], traj.messages[4]
    assert [tc["function"]["name"] for tc in first["tool_calls"]] == ["find_user"]
    assert json.loads(second["tool_calls"][0]["function"]["arguments"]) == {"user_id": USER_ID}
    assert json.loads(traj.messages[3]["content"]) == {"user_id": USER_ID}
    assert traj.step_starts == [[2, 4]]


def test_a_reply_that_ignores_the_results_is_regenerated_then_rejected(tmp_path):
    result, _ = _translate(tmp_path, INSERT_SHORT, insert_short_teacher())
    asked = []

    def teacher(request):
        if request.messages[-1]["content"] == REPLY_PROMPT:
            asked.append(request)
            return {"content": "JSON"}
        return _follow_hint(request)

    rejection = _distil(tmp_path, result, teacher)
    assert isinstance(rejection, PathRejection) and rejection.rule == "reply"
    assert len(asked) == 2, "regenerated once before the path is dropped"


def test_a_miss_params_turn_leaves_one_value_out_and_the_next_user_turn_gives_just_it(tmp_path):
    path = SignaturePath(walk=("send_message",), turns=(
        Turn((), kind=MISS_PARAMS, target=("send_message",), missing=("text",)), Turn(("send_message",))))

    def script(request):
        kind, prompt = _kind(request), request.messages[0]["content"]
        if kind == "values":
            return {"user": "Ana Lima", "text": "See you at five"}
        if kind == "query" and "short reply" in prompt:
            return {"query": "See you at five"}
        if kind == "query":
            return {"query": "Please send a message to Ana Lima."}
        return {"calls": [{"name": "send_message", "arguments": {"user": "Ana Lima", "text": "See you at five"}}]}

    result, backend = _translate(tmp_path, path, script)
    assert not isinstance(result, PathRejection), result
    ask, answer = result
    assert ask.kind == MISS_PARAMS and ask.missing == ("text",) and ask.calls == []
    assert "See you at five" not in ask.query and "send_message" not in ask.query
    assert answer.query == "See you at five", "the next user turn gives just the value"
    assert answer.calls == [ToolCall("send_message", {"user": "Ana Lima", "text": "See you at five"})]
    miss_prompt = next(r for r in backend.requests if _kind(r) == "query").messages[0]["content"]
    assert "See you at five" not in miss_prompt, "the left-out value is never shown to the query writer"


def test_a_miss_params_query_that_names_the_function_or_gives_the_value_is_refused(tmp_path):
    path = SignaturePath(walk=("send_message",), turns=(
        Turn((), kind=MISS_PARAMS, target=("send_message",), missing=("text",)), Turn(("send_message",))))
    for query, rule in (("Use send_message to reach Ana Lima.", "names_function"),
                        ("Tell Ana Lima: See you at five.", "states_missing_value")):
        def script(request, query=query):
            return {"user": "Ana Lima", "text": "See you at five"} if _kind(request) == "values" else {"query": query}

        (tmp_path / rule).mkdir()
        result, _ = _translate(tmp_path / rule, path, script)  # a home of its own: no cached answers
        assert isinstance(result, PathRejection) and (result.turn_index, result.rule) == (0, rule), result


def test_a_miss_func_turn_follows_bfcls_held_out_convention(tmp_path):
    path = SignaturePath(walk=("find_user", "send_message"), turns=(
        Turn(("find_user",)), Turn((), kind=MISS_FUNC, target=("send_message",)), Turn(("send_message",))))
    assert offered_tools(path, 0, []) == ["find_user"], "held out from the start, not only at its turn"
    assert offered_tools(path, 1, []) == ["find_user"]
    assert offered_tools(path, 2, []) == ["find_user", "send_message"]

    def script(request):
        kind, prompt = _kind(request), request.messages[0]["content"]
        if kind == "values":
            return {"name": "Ana Lima"} if "find_user" in prompt else {"user": "Ana Lima", "text": "Lunch at noon"}
        if kind == "query":
            return {"query": "Find Ana Lima for me." if "Look up" in prompt else
                    "Send Ana Lima the text 'Lunch at noon'."}
        if _offered(request) == ["find_user"]:
            return {"calls": [{"name": "find_user", "arguments": {"name": "Ana Lima"}}]}
        return {"calls": [{"name": "send_message", "arguments": {"user": "Ana Lima", "text": "Lunch at noon"}}]}

    result, _ = _translate(tmp_path, path, script, mappings={})
    assert not isinstance(result, PathRejection), result
    assert result[2].query == ADDITIONAL_FUNCTIONS_PROMPT and result[2].calls[0].name == "send_message"
    traj = _distil(tmp_path, result, _follow_hint)
    assert isinstance(traj, Trajectory), traj
    assert "send_message" not in [t["function"]["name"] for t in traj.tools]
    holdout = [m for m in traj.messages if m["role"] == "user"][2]
    bare, added = split_holdout(holdout)
    assert bare == {"role": "user", "content": ADDITIONAL_FUNCTIONS_PROMPT}
    assert [t["function"]["name"] for t in added] == ["send_message"]
    assert [m["kind"] for m in traj.turn_meta] == ["call", "miss_func", "call"]
    assert traj.turn_meta[2]["holdout"] == ["send_message"]


def _follow_hint(request):
    """A fake teacher that does what the hint says and reports the turn's latest result."""
    hint = request.messages[-1]["content"]
    if "call: " in hint:
        text = hint.split("call: ", 1)[1].split(". Decide", 1)[0]
        from magnet_dagster.tools.calls import parse_python_call

        return {"calls": [parse_python_call(p).as_dict() for p in text.split("; ")]}
    if "None of the available functions" in hint:
        return {"content": "I can't do that with the tools I have."}
    if "did not give" in hint:
        return {"content": "Which text should I send?"}
    last_user = max(i for i, m in enumerate(request.messages) if m["role"] == "user")
    results = [m["content"] for m in request.messages[last_user:] if m["role"] == "tool"]
    return {"content": f"Here you go: {results[-1]}" if results else "Done."}


def _distil(tmp_path, turns, script):
    client = LLMClient(ScriptedFakeBackend(script), LineageStore(tmp_path / "d.duckdb"), tmp_path / "dj").open()
    out = asyncio.run(positive_trajectory(client, turns, SPECS, seed=0))
    client.close()
    return out
