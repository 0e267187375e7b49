"""The published JSON Schemas (``schemas/``) and a validator over them.

The worker decodes with msgspec (:mod:`streams.engine.events`); these schemas are
the contract producers validate against. ``tests/unit/test_schema_parity.py``
holds the two to the same verdict on every document. jsonschema is imported
lazily: it is a test/tooling dependency, not a runtime one.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final

SCHEMA_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"
BASE_URI: Final = "https://popstream.dev/schemas/v1/"


@cache
def load_schemas() -> dict[str, dict[str, Any]]:
    """Every schema file by name (``order.schema.json`` -> document)."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SCHEMA_DIR.glob("*.schema.json"))
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


def validate_with_schema(doc: Any, schema: str = "event.schema.json") -> list[str]:
    """Error messages for ``doc`` against a schema (empty when valid)."""
    return [error.message for error in _validator(schema).iter_errors(doc)]
