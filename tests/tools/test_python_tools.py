"""Python modules and classes as tools: schemas from hints and docstrings, fresh state per conversation."""

import asyncio
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.executors import ExecutorFactory
from magnet_dagster.tools.formats import content_hash, read_tool_set
from magnet_dagster.tools.python_tools import parse_docstring
from magnet_dagster.tools.spec import ToolSetError
from magnet_dagster.tools.validation import validate_functions
from tests.fakes import ScriptedFakeBackend

PANTRY = Path(__file__).parents[2] / "examples" / "tool_sets" / "pantry.py"

INVENTORY = '''
from typing import Optional


class Inventory:
    """Stock of a small shop."""

    def __init__(self):
        self.stock = {}

    def _load_scenario(self, state):
        self.stock = dict(state["stock"])

    def restock(self, sku: str, count: int = 1) -> dict:
        """Add units of a product.

        :param sku: the product code
        :param count: how many units arrive
        """
        self.stock[sku] = self.stock.get(sku, 0) + count
        return {"sku": sku, "count": self.stock[sku]}

    def sell(self, sku: str, note: Optional[str] = None) -> dict:
        """Sell one unit of a product.

        Args:
            sku: the product code
            note: free text for the receipt
        """
        if self.stock.get(sku, 0) < 1:
            raise ValueError(f"{sku} is sold out")
        self.stock[sku] -= 1
        return {"sku": sku, "left": self.stock[sku]}

    def helper(self, x):
        return x
'''


def test_module_functions_become_typed_documented_tools(tmp_path):
    path = tmp_path / "pantry.py"
    shutil.copy(PANTRY, path)
    source = read_tool_set(path)
    specs = {f.name: f for f in source.functions}
    assert sorted(specs) == ["add_to_shopping_list", "convert_weight", "find_recipes", "get_recipe",
                             "get_shopping_list", "scale_recipe"]
    find = specs["find_recipes"]
    assert find.description == "Find recipes that use an ingredient and are ready within a time limit."
    assert find.parameters == {"type": "object", "required": ["ingredient"], "properties": {
        "ingredient": {"type": "string", "description": 'The ingredient the recipe must contain, e.g. "tomato".'},
        "max_minutes": {"type": "integer", "description": "The longest preparation time to accept, in minutes.",
                        "default": 60}}}
    assert find.returns["type"] == "array"
    assert find.returns["items"]["properties"]["recipe_id"] == {"type": "string"}
    assert specs["convert_weight"].properties["to_unit"]["enum"] == ["kg", "g", "lb", "oz"]
    assert specs["get_shopping_list"].returns == {"type": "object", "additionalProperties": {"type": "number"}}
    assert all(f.executable and f.source_file.startswith("pantry.py:") for f in source.functions)
    assert source.executor["kind"] == "python"
    assert validate_functions(source.functions)[1] == []
    assert not (tmp_path / "__pycache__").exists()


def test_fresh_module_per_conversation_and_errors_as_results(tmp_path):
    path = tmp_path / "pantry.py"
    shutil.copy(PANTRY, path)
    source = read_tool_set(path)
    factory = ExecutorFactory(source.executor, {f.name: f for f in source.functions})
    first = factory.new(seed=1)
    out = asyncio.run(first.execute(ToolCall("add_to_shopping_list", {"item": "onion", "quantity": 2})))
    assert out.output == {"item": "onion", "quantity": 2.0, "items_on_list": 1} and not out.simulated
    assert first.state() == {str(path.resolve()): {"shopping_list": {"onion": 2.0}}}
    second = factory.new(seed=2)
    assert asyncio.run(second.execute(ToolCall("get_shopping_list", {}))).output == {}
    missing = asyncio.run(second.execute(ToolCall("get_recipe", {"recipe_id": "r-999"})))
    assert missing.output == {"error": "get_recipe: KeyError: \"no recipe 'r-999'\""}
    private = asyncio.run(second.execute(ToolCall("_RECIPES", {})))
    assert "private names are never callable" in private.output["error"]
    assert factory.executable


def test_class_target_with_states_from_toolset_yaml(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "inventory.py").write_text(INVENTORY)
    (folder / "toolset.yaml").write_text(textwrap.dedent("""\
        python:
          - target: inventory.py:Inventory
            states: [{stock: {A1: 2}}, {stock: {B7: 1}}]
        """))
    source = read_tool_set(folder)
    specs = {f.name: f for f in source.functions}
    assert specs["restock"].parameters["properties"]["sku"] == {"type": "string", "description": "the product code"}
    assert specs["sell"].parameters["required"] == ["sku"]
    assert specs["sell"].properties["note"] == {"type": "string", "description": "free text for the receipt"}
    kept, rejected = validate_functions(source.functions)
    assert sorted(k.name for k in kept) == ["restock", "sell"]
    assert sorted((r.rule, r.reason) for r in rejected) == [
        ("python_docstring", f"inventory.py:{INVENTORY.splitlines().index('    def helper(self, x):') + 1}: helper: has no docstring to describe it"),
        ("python_type_hint", f"inventory.py:{INVENTORY.splitlines().index('    def helper(self, x):') + 1}: helper: parameter 'x' has no type hint"),
    ]
    factory = ExecutorFactory(source.executor, {k.name: k for k in kept})
    even, odd = factory.new(seed=0), factory.new(seed=1)
    assert asyncio.run(even.execute(ToolCall("sell", {"sku": "A1"}))).output == {"sku": "A1", "left": 1}
    assert asyncio.run(odd.execute(ToolCall("sell", {"sku": "A1"}))).output == {"error": "sell: ValueError: A1 is sold out"}
    assert list(odd.state().values()) == [{"stock": {"B7": 1}}]


def test_module_import_path_target(tmp_path, monkeypatch):
    package = tmp_path / "pkgroot" / "mytools"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "shop.py").write_text(INVENTORY)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgroot"))
    folder = tmp_path / "byimport"
    folder.mkdir()
    (folder / "toolset.yaml").write_text("python: 'mytools.shop:Inventory'\n")
    source = read_tool_set(folder)
    assert source.executor["python"][0]["module"] == "mytools.shop"
    factory = ExecutorFactory(source.executor, {f.name: f for f in validate_functions(source.functions)[0]})
    assert asyncio.run(factory.new(0).execute(ToolCall("restock", {"sku": "Z", "count": 3}))).output == {"sku": "Z", "count": 3}
    assert "mytools.shop" not in sys.modules or sys.modules["mytools.shop"] is not None


def test_mixed_folder_runs_python_and_simulates_the_rest(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(PANTRY, folder / "pantry.py")
    (folder / "toolset.yaml").write_text("python: pantry.py\n")
    (folder / "prices.json").write_text(json.dumps([{"name": "price_of", "description": "Price of an item.",
                                                     "parameters": {"type": "object", "properties": {"item": {"type": "string"}}},
                                                     "returns": {"type": "object", "properties": {"eur": {"type": "number"}}}}]))
    before = content_hash(folder)
    source = read_tool_set(folder)
    assert content_hash(folder) == before
    assert source.executor["kind"] == "mixed" and source.ignored == []
    backend = ScriptedFakeBackend(lambda r: {"eur": 1.5})
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j").open()
    factory = ExecutorFactory(source.executor, {f.name: f for f in source.functions}, client)
    executor = factory.new(seed=3)
    simulated = asyncio.run(executor.execute(ToolCall("price_of", {"item": "onion"})))
    real = asyncio.run(executor.execute(ToolCall("convert_weight", {"amount": 1, "from_unit": "kg", "to_unit": "g"})))
    client.close()
    assert simulated.simulated and simulated.output == {"eur": 1.5}
    assert not real.simulated and real.output == {"amount": 1000.0, "unit": "g"}
    assert not factory.executable and len(backend.requests) == 1


@pytest.mark.parametrize("yaml_text, message", [
    ("python: missing.py\n", "python file 'missing.py' not found beside it"),
    ("python: 'not a module'\n", "'not a module' is neither a module path nor a .py file"),
    ("python: [inventory.py:Nope]\n", "'Nope' is not a class of the module"),
    ("pyhton: inventory.py\n", "unknown key(s) ['pyhton']"),
])
def test_bad_python_targets_name_the_manifest_and_the_rule(tmp_path, yaml_text, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "inventory.py").write_text(INVENTORY)
    (folder / "toolset.yaml").write_text(yaml_text)
    with pytest.raises(ToolSetError) as err:
        read_tool_set(folder)
    assert message in str(err.value)


def test_a_module_that_fails_to_import_fails_its_tool_set(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import not_a_real_module_xyz\n")
    with pytest.raises(ToolSetError, match=r"broken.py: importing it failed: ModuleNotFoundError"):
        read_tool_set(path)


def test_docstring_styles():
    summary, params, returns = parse_docstring(
        "Do a thing.\n\nArgs:\n    a (int): first\n        continued\n    b: second\n\nReturns:\n    the result")
    assert (summary, params, returns) == ("Do a thing.", {"a": "first continued", "b": "second"}, "the result")
    assert parse_docstring("Sphinx.\n:param x: the x\n:returns: y")[1:] == ({"x": "the x"}, "y")
