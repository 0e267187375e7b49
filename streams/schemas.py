"""The published JSON Schemas (``schemas/``) and a validator over them.

The worker decodes with msgspec (:mod:`streams.engine.events`); these schemas are
the contract producers validate against. ``tests/unit/test_schema_parity.py``
holds the two to the same verdict on every document. jsonschema is imported
lazily: it is a test/tooling dependency, not a runtime one.

The canonical files live in the repository's top-level ``schemas/``. They are found,
in this order, in ``$POPSTREAM_SCHEMA_DIR``, next to the package (source checkouts
and editable installs), or as package data under ``streams/data/schemas/`` (for a
build that copies them there).
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

BASE_URI: Final = "https://popstream.dev/schemas/v1/"
ENTRY: Final = "event.schema.json"
ENVELOPE: Final = "envelope.schema.json"
_REPO_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"


def schema_dir() -> Traversable:
    """The directory holding ``*.schema.json``; FileNotFoundError if there is none."""
    override = os.environ.get("POPSTREAM_SCHEMA_DIR")
    candidates: list[Traversable] = (
        [Path(override)] if override else [_REPO_DIR, files("streams") / "data" / "schemas"]
    )
    for candidate in candidates:
        if (candidate / ENTRY).is_file():
            return candidate
    raise FileNotFoundError(
        f"no {ENTRY} in {', '.join(str(c) for c in candidates)}; "
        "set POPSTREAM_SCHEMA_DIR to the repository's schemas/ directory"
    )


@cache
def load_schemas() -> dict[str, dict[str, Any]]:
    """Every schema file by name (``order.schema.json`` -> document)."""
    return {
        entry.name: json.loads(entry.read_text(encoding="utf-8"))
        for entry in sorted(schema_dir().iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".schema.json")
    }


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = load_schemas()
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in schemas.values()
    )
    return Draft202012Validator(schemas[name], registry=registry)


def validate_with_schema(doc: Any, schema: str = ENTRY) -> list[str]:
    """Error messages (``$.path: message``) for ``doc``; empty when it is valid.

    Against ``event.schema.json`` the verdict is that schema's, but the messages
    come from the one schema that can apply: the ``type``'s own when it names a
    known type, else the envelope (which then fails on ``type`` or on not being an
    object). That is the same verdict, since ``oneOf`` branches differ in ``type``.
    """
    if schema == ENTRY:
        kind = doc.get("type") if isinstance(doc, dict) else None
        known = load_schemas()[ENVELOPE]["properties"]["type"]["enum"]
        schema = f"{kind}.schema.json" if kind in known else ENVELOPE
    errors = sorted(_validator(schema).iter_errors(doc), key=lambda e: e.json_path)
    return [f"{error.json_path}: {error.message}" for error in errors]
