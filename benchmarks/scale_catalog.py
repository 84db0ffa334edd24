"""A deterministic ToolBench-style catalog of any size, written as a tool set folder.

Categories hold tools (RapidAPI-like products), tools hold API endpoints over a few entities
of their category: search, get, list children, create, update status, statistics, export,
delete. Parameters are typed (STRING, NUMBER, INTEGER, BOOLEAN, ENUM, DATE (YYYY-MM-DD)),
described, some with defaults; responses carry the ids and fields other endpoints take, so
the graph has real data edges. Every category has about the same number of functions (more
functions mean more categories, as in ToolBench), so candidate search stays per category.

Half the categories are written as ToolBench `api_list` files (`template_response` for the
output, enums only in words, as ToolBench has them), the other half as OpenAI `tools` JSON
with `enum`s and a `returns` JSON Schema (what ToolBench's own converter to OpenAI functions
gives, plus outputs): both readers of the catalog stage are exercised.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

#: ToolBench's categories, each with the entities its tools work on
CATEGORIES: dict[str, list[str]] = {
    "Weather": ["city", "station", "forecast", "alert"],
    "Finance": ["account", "stock", "portfolio", "transaction"],
    "Travel": ["flight", "hotel", "booking", "airport"],
    "Sports": ["team", "player", "match", "league"],
    "eCommerce": ["product", "order", "cart", "review"],
    "Music": ["artist", "album", "track", "playlist"],
    "Movies": ["movie", "actor", "showtime", "cinema"],
    "Data": ["dataset", "record", "schema", "job"],
    "Communication": ["message", "contact", "channel", "call"],
    "Email": ["mailbox", "email", "attachment", "label"],
    "Food": ["recipe", "restaurant", "menu", "ingredient"],
    "Health_and_Fitness": ["workout", "patient", "appointment", "meal"],
    "Transportation": ["vehicle", "route", "stop", "trip"],
    "Education": ["course", "student", "lesson", "quiz"],
    "Social": ["post", "profile", "comment", "group"],
    "News_Media": ["article", "source", "topic", "feed"],
    "Gaming": ["game", "gamer", "achievement", "server"],
    "Business": ["company", "employee", "invoice", "meeting"],
    "Location": ["address", "place", "region", "boundary"],
    "Science": ["experiment", "sample", "measurement", "compound"],
    "Jobs": ["vacancy", "candidate", "application", "employer"],
    "Real_Estate": ["property", "listing", "agent", "mortgage"],
    "Medical": ["drug", "condition", "doctor", "prescription"],
    "Video_Images": ["video", "image", "thumbnail", "upload"],
    "Translation": ["text", "language", "glossary", "document"],
    "Cybersecurity": ["domain", "scan", "vulnerability", "certificate"],
    "Logistics": ["shipment", "parcel", "warehouse", "carrier"],
    "Events": ["event", "ticket", "venue", "attendee"],
    "Cryptography": ["wallet", "coin", "exchange", "block"],
    "Energy": ["meter", "tariff", "reading", "plant"],
    "Entertainment": ["show", "episode", "channel", "host"],
    "Commerce": ["store", "coupon", "merchant", "payout"],
    "Advertising": ["campaign", "creative", "audience", "budget"],
    "Monitoring": ["service", "incident", "check", "metric"],
    "Storage": ["bucket", "file", "folder", "share"],
    "Search": ["index", "document", "query", "synonym"],
    "Tools": ["task", "project", "reminder", "note"],
    "Devices": ["device", "sensor", "firmware", "room"],
    "Payments": ["payment", "refund", "customer", "subscription"],
    "Visual_Recognition": ["photo", "face", "label", "model"],
    "SMS": ["number", "sms", "sender", "template"],
    "Mapping": ["map", "tile", "marker", "layer"],
    "Artificial_Intelligence_Machine_Learning": ["model", "prediction", "dataset", "training"],
    "Education_Testing": ["exam", "question", "score", "candidate"],
    "Other": ["item", "collection", "tag", "owner"],
    "Reward": ["reward", "member", "point", "tier"],
    "Cooking": ["dish", "cuisine", "ingredient", "chef"],
    "Home_Automation": ["scene", "light", "thermostat", "schedule"],
    "Health_Records": ["record", "visit", "allergy", "provider"],
}
BRANDS = [
    "Sky",
    "Open",
    "Rapid",
    "Blue",
    "Smart",
    "Quick",
    "Prime",
    "Nova",
    "Echo",
    "Pulse",
    "Atlas",
    "Zen",
    "Bright",
    "Swift",
    "Core",
    "True",
    "Metro",
    "Orbit",
    "Peak",
    "Astra",
]
SUFFIXES = ["Hub", "API", "Cloud", "Data", "Connect", "Pro", "Live", "Box", "Base", "Flow"]
STATUSES = ["active", "paused", "archived", "pending"]
SORTS = ["relevance", "newest", "oldest", "popular"]
LANGS = ["en", "es", "fr", "de", "pt"]
PERIODS = ["day", "week", "month", "year"]
FORMATS = ["csv", "json", "xml"]
KINDS = ["standard", "premium", "trial", "internal"]
CITIES = ["Lisbon", "Porto", "Madrid", "Berlin", "Oslo", "Austin", "Toronto", "Nairobi", "Osaka", "Lima"]
WORDS = ["summer", "classic", "daily", "green", "urban", "quarterly", "north", "family", "studio", "express"]
FUNCTIONS_PER_CATEGORY = 50


def _param(name: str, kind: str, description: str, *, enum: list[str] | None = None, default: Any = "") -> dict:
    """A ToolBench parameter entry; `enum` survives only in the OpenAI form (and in words here)."""
    text = description + (f" (one of: {', '.join(enum)})" if enum else "")
    return {"name": name, "type": kind, "description": text, "default": default, **({"enum": enum} if enum else {})}


def _endpoints(entity: str, child: str, rng: random.Random) -> list[dict[str, Any]]:
    """The endpoints a tool offers over `entity` (and its `child` entity)."""
    e, c, title = entity, child, entity.replace("_", " ").title()
    eid, cid, a_e = f"{e}_id", f"{c}_id", ("an " if e[0] in "aeiou" else "a ") + e
    word = rng.choice(WORDS)
    return [
        {
            "api_name": f"Search {title}s",
            "method": "GET",
            "path": f"/{e}s/search",
            "description": f"Find {e}s whose name or description matches a text; returns their ids and names.",
            "required": [_param("q", "STRING", f"Text to search {e}s by", default=f"{word} {e}")],
            "optional": [
                _param("limit", "NUMBER", "Maximum number of results", default="10"),
                _param("sort", "ENUM", "Order of the results", enum=SORTS, default="relevance"),
            ],
            "response": {"results": [{eid: "str", "name": "str", "score": "float"}], "total": "int"},
        },
        {
            "api_name": f"Get {title} Details",
            "method": "GET",
            "path": f"/{e}s/{{{eid}}}",
            "description": f"Details of one {e} by its id: name, status, owner and creation date.",
            "required": [_param(eid, "STRING", f"The {e}'s id, from {a_e} search")],
            "optional": [_param("lang", "ENUM", "Language of the texts", enum=LANGS, default="en")],
            "response": {eid: "str", "name": "str", "status": "str", "owner_email": "str", "created_at": "str"},
        },
        {
            "api_name": f"List {c.title()}s of {title}",
            "method": "GET",
            "path": f"/{e}s/{{{eid}}}/{c}s",
            "description": f"The {c}s that belong to {a_e}, newest first, one page at a time.",
            "required": [_param(eid, "STRING", f"The {e}'s id")],
            "optional": [
                _param("page", "INTEGER", "Page number, from 1", default="1"),
                _param("since", "DATE (YYYY-MM-DD)", f"Only {c}s created since this day"),
            ],
            "response": {"items": [{cid: "str", "title": "str"}], "page": "int", cid: "str"},
        },
        {
            "api_name": f"Create {title}",
            "method": "POST",
            "path": f"/{e}s",
            "description": f"Create a new {e} with a name and a kind; returns the new {e}'s id.",
            "required": [
                _param("name", "STRING", f"Name of the new {e}", default=f"{rng.choice(CITIES)} {word}"),
                _param("kind", "ENUM", f"Kind of {e}", enum=KINDS, default="standard"),
            ],
            "optional": [_param("notify", "BOOLEAN", "Email the owner when it is ready", default="false")],
            "response": {eid: "str", "status": "str"},
        },
        {
            "api_name": f"Update {title} Status",
            "method": "PATCH",
            "path": f"/{e}s/{{{eid}}}/status",
            "description": f"Change the status of {a_e}.",
            "required": [
                _param(eid, "STRING", f"The {e}'s id"),
                _param("status", "ENUM", "The new status", enum=STATUSES, default="active"),
            ],
            "optional": [],
            "response": {eid: "str", "status": "str", "updated_at": "str"},
        },
        {
            "api_name": f"{title} Statistics",
            "method": "GET",
            "path": f"/{e}s/{{{eid}}}/stats",
            "description": f"Counts and averages for {a_e} over a period.",
            "required": [
                _param(eid, "STRING", f"The {e}'s id"),
                _param("period", "ENUM", "Period to aggregate over", enum=PERIODS, default="week"),
            ],
            "optional": [_param("include_archived", "BOOLEAN", "Count archived items too", default="false")],
            "response": {eid: "str", "count": "int", "average": "float", "period": "str"},
        },
        {
            "api_name": f"Export {title}s",
            "method": "POST",
            "path": f"/{e}s/export",
            "description": f"Export every {e} created on a day as a downloadable file.",
            "required": [
                _param("format", "ENUM", "File format", enum=FORMATS, default="csv"),
                _param("date", "DATE (YYYY-MM-DD)", f"Day the {e}s were created", default="2024-05-01"),
            ],
            "optional": [],
            "response": {"url": "str", "expires_at": "str", "rows": "int"},
        },
        {
            "api_name": f"Delete {title}",
            "method": "DELETE",
            "path": f"/{e}s/{{{eid}}}",
            "description": f"Delete {a_e} for good.",
            "required": [_param(eid, "STRING", f"The {e}'s id")],
            "optional": [],
            "response": {"deleted": "bool", eid: "str"},
        },
    ]


def generate(functions: int, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """{category: ToolBench api entries}: `functions` endpoints, about 50 per category."""
    rng = random.Random(seed)
    names = list(CATEGORIES)
    count = max(1, min(len(names), round(functions / FUNCTIONS_PER_CATEGORY)))
    per = [functions // count + (1 if i < functions % count else 0) for i in range(count)]
    out: dict[str, list[dict[str, Any]]] = {}
    used_tools: set[str] = set()
    for category, n in zip(names[:count], per):
        entities = CATEGORIES[category]
        apis: list[dict[str, Any]] = []
        while len(apis) < n:
            entity = entities[len(apis) // 8 % len(entities)]
            child = rng.choice([x for x in entities if x != entity])
            tool = f"{rng.choice(BRANDS)}{entity.title()} {rng.choice(SUFFIXES)}"
            while tool in used_tools:
                tool = f"{rng.choice(BRANDS)}{entity.title()} {rng.choice(SUFFIXES)} {len(used_tools)}"
            used_tools.add(tool)
            slug = tool.lower().replace(" ", "-")
            for ep in _endpoints(entity, child, rng)[: n - len(apis)]:
                apis.append(
                    {
                        "category_name": category,
                        "tool_name": tool,
                        "api_name": ep["api_name"],
                        "api_description": ep["description"],
                        "method": ep["method"],
                        "url": f"https://{slug}.example.invalid{ep['path']}",
                        "required_parameters": ep["required"],
                        "optional_parameters": ep["optional"],
                        "template_response": ep["response"],
                    }
                )
        out[category] = apis
    return out


_JSON_TYPES = {
    "STRING": "string",
    "NUMBER": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "ENUM": "string",
    "DATE (YYYY-MM-DD)": "string",
}
_TEMPLATE_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _response_schema(template: Any) -> dict[str, Any]:
    if isinstance(template, dict):
        props = {k: _response_schema(v) for k, v in template.items()}
        if "status" in props:
            props["status"] = {"type": "string", "enum": STATUSES}
        return {"type": "object", "properties": props, "required": list(props)}
    if isinstance(template, list):
        return {"type": "array", "items": _response_schema(template[0])}
    return {"type": _TEMPLATE_TYPES[template]}


def openai_tool(api: dict[str, Any]) -> dict[str, Any]:
    """One api entry as an OpenAI tool (ToolBench's `<api>_for_<tool>` naming), with enums and `returns`."""
    props: dict[str, Any] = {}
    for p in api["optional_parameters"] + api["required_parameters"]:
        schema: dict[str, Any] = {"type": _JSON_TYPES[p["type"]], "description": p["description"]}
        if p.get("enum"):
            schema["enum"] = p["enum"]
        if p["type"].startswith("DATE"):
            schema["format"] = "date"
        props[p["name"]] = schema
    name = f"{_snake(api['api_name'])}_for_{_snake(api['tool_name'])}"[:64]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": api["api_description"],
            "category": api["category_name"],
            "parameters": {
                "type": "object",
                "properties": props,
                "required": [p["name"] for p in api["required_parameters"]],
            },
            "returns": _response_schema(api["template_response"]),
        },
    }


def _snake(text: str) -> str:
    return "_".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def write_tool_set(folder: Path, functions: int, seed: int = 0, options: dict[str, Any] | None = None) -> Path:
    """The catalog as a tool set folder: one file per category (ToolBench and OpenAI forms
    alternating) and a `toolset.yaml` with the synthesis options."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (category, apis) in enumerate(generate(functions, seed).items()):
        if i % 2 == 0:
            body: Any = json.loads(json.dumps(apis))
            for a in body:
                for p in a["required_parameters"] + a["optional_parameters"]:
                    p.pop("enum", None)
            (folder / f"{category}.json").write_text(json.dumps(body, indent=1))
        else:
            (folder / f"{category}.json").write_text(json.dumps([openai_tool(a) for a in apis], indent=1))
    lines = ["# generated by benchmarks.scale_catalog", "options:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in (options or {}).items()]
    (folder / "toolset.yaml").write_text("\n".join(lines) + "\n")
    return folder
