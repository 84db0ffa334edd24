"""The allow-list dispatcher: model text is parsed as data and only public, allowed methods run."""

import pytest

from magnet_dagster.tools.calls import CallParseError, ToolCall, parse_python_call
from magnet_dagster.tools.dispatcher import Dispatcher


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def increment(self, by: int = 1) -> dict:
        self.value += by
        return {"value": self.value}

    def explode(self) -> dict:
        raise RuntimeError("boom")

    def slow(self) -> dict:
        import time

        time.sleep(2)
        return {}

    def _secret(self) -> str:
        return "should never run"


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher.for_instances({"Counter": Counter()}, {"increment", "explode", "slow", "_secret"},
                                    time_limit_s=0.5)


def test_dispatcher_runs_an_allowed_literal_call(dispatcher):
    assert dispatcher.execute_text("increment(by=3)") == {"value": 3}
    assert dispatcher.execute(ToolCall("increment", {"by": 2})) == {"value": 5}


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo pwned')",
    "os.system('echo pwned')",
    "increment.__globals__()",
    "increment(by=__import__('os').getpid())",
    "increment(by=x)",
    "increment(by=1 + 1)",
    "increment(*[1])",
    "increment(**{'by': 1})",
    "increment(1, 2)",
    "increment(x)",
    "[increment(by=1)]",
])
def test_dispatcher_refuses_non_literal_or_chained_calls(dispatcher, text):
    result = dispatcher.execute_text(text)
    assert "error" in result
    assert dispatcher.execute_text("increment(by=0)") == {"value": 0}, "nothing ran before"


def test_dispatcher_refuses_private_and_unlisted_names(dispatcher):
    assert dispatcher.execute_text("_secret()") == {"error": "_secret: private names are never callable"}
    assert dispatcher.execute_text("__init__()")["error"].endswith("private names are never callable")
    assert dispatcher.execute_text("print(x=1)") == {"error": "print: not an allowed function here"}


def test_dispatcher_turns_exceptions_and_timeouts_into_error_results(dispatcher):
    assert dispatcher.execute_text("explode()") == {"error": "explode: RuntimeError: boom"}
    assert dispatcher.execute_text("slow()") == {"error": "slow: timed out after 0.5s"}
    assert dispatcher.execute_text("increment()") == {"value": 1}


def test_parse_python_call_names_the_non_literal_argument():
    with pytest.raises(CallParseError, match="argument 'by' is not a literal"):
        parse_python_call("increment(by=open('/etc/passwd'))")
    with pytest.raises(CallParseError, match="only plain function names"):
        parse_python_call("a.b.c(x=1)")


def test_positional_literals_map_by_signature_only_in_the_dispatcher(dispatcher):
    assert dispatcher.execute_text("increment(4)") == {"value": 4}
    with pytest.raises(CallParseError, match="positional arguments are not allowed"):
        parse_python_call("increment(4)")
