"""A user's own Python tools: a small recipe and shopping-list service.

Every public, typed, documented function here becomes a tool. Put this file (or a copy)
in the watched `tool_sets/` folder and it becomes the tool set `pantry`; its functions
run in-process through the allow-list dispatcher, on a fresh copy of this module for
every conversation (so the shopping list starts empty each time).
"""

from __future__ import annotations

from typing import Literal, TypedDict

_RECIPES = {
    "r-101": {"title": "Tomato soup", "minutes": 30, "servings": 2,
              "ingredients": {"tomato": 6.0, "onion": 1.0, "basil": 0.25}},
    "r-102": {"title": "Basil pesto pasta", "minutes": 20, "servings": 2,
              "ingredients": {"pasta": 0.5, "basil": 1.0, "pine nuts": 0.1}},
    "r-103": {"title": "Onion tart", "minutes": 75, "servings": 4,
              "ingredients": {"onion": 4.0, "flour": 0.3, "butter": 0.15}},
    "r-104": {"title": "Tomato salad", "minutes": 10, "servings": 2,
              "ingredients": {"tomato": 3.0, "onion": 0.5, "basil": 0.1}},
}
_GRAMS_PER = {"kg": 1000.0, "g": 1.0, "lb": 453.592, "oz": 28.3495}

shopping_list: dict[str, float] = {}


class RecipeHit(TypedDict):
    recipe_id: str
    title: str
    minutes: int


def find_recipes(ingredient: str, max_minutes: int = 60) -> list[RecipeHit]:
    """Find recipes that use an ingredient and are ready within a time limit.

    Args:
        ingredient: The ingredient the recipe must contain, e.g. "tomato".
        max_minutes: The longest preparation time to accept, in minutes.

    Returns:
        Matching recipes with their ids, titles and preparation times.
    """
    return [{"recipe_id": rid, "title": r["title"], "minutes": r["minutes"]}
            for rid, r in sorted(_RECIPES.items())
            if ingredient.lower() in r["ingredients"] and r["minutes"] <= max_minutes]


def get_recipe(recipe_id: str) -> dict:
    """Get a recipe's title, servings and ingredient quantities.

    Args:
        recipe_id: The recipe's id, as returned by find_recipes.
    """
    if recipe_id not in _RECIPES:
        raise KeyError(f"no recipe {recipe_id!r}")
    return {"recipe_id": recipe_id, **_RECIPES[recipe_id]}


def scale_recipe(recipe_id: str, servings: int) -> dict:
    """Scale a recipe's ingredient quantities to a number of servings.

    Args:
        recipe_id: The recipe's id.
        servings: How many servings to cook.
    """
    recipe = get_recipe(recipe_id)
    factor = servings / recipe["servings"]
    return {"recipe_id": recipe_id, "servings": servings,
            "ingredients": {k: round(v * factor, 3) for k, v in recipe["ingredients"].items()}}


def convert_weight(amount: float, from_unit: Literal["kg", "g", "lb", "oz"],
                   to_unit: Literal["kg", "g", "lb", "oz"]) -> dict:
    """Convert a weight between kilograms, grams, pounds and ounces.

    Args:
        amount: The weight to convert.
        from_unit: The unit the amount is in.
        to_unit: The unit wanted.
    """
    return {"amount": round(amount * _GRAMS_PER[from_unit] / _GRAMS_PER[to_unit], 3), "unit": to_unit}


def add_to_shopping_list(item: str, quantity: float) -> dict:
    """Add a quantity of an item to the shopping list.

    Args:
        item: What to buy, e.g. "onion".
        quantity: How much to add (in the recipe's units).
    """
    shopping_list[item] = round(shopping_list.get(item, 0.0) + quantity, 3)
    return {"item": item, "quantity": shopping_list[item], "items_on_list": len(shopping_list)}


def get_shopping_list() -> dict[str, float]:
    """Show everything on the shopping list with its quantity."""
    return dict(shopping_list)
