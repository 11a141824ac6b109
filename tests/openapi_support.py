"""The service's OpenAPI document and requests built from its examples (tests/test_http_openapi.py,
tests/test_authz_service.py)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import entroq_redis_server
import jsonschema

DOCUMENT = json.loads((pathlib.Path(entroq_redis_server.__file__).parent / "openapi.json").read_text())
OPERATIONS = [
    (path, method, operation)
    for path, methods in DOCUMENT["paths"].items()
    for method, operation in methods.items()
]


def example_request(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """httpx.request arguments for ``operation`` filled with the document's own examples."""
    url, params, headers = path, [], {}
    for parameter in operation.get("parameters", []):
        if "example" not in parameter:
            continue
        example = parameter["example"]
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", example)
        elif parameter["in"] == "query":
            params += [
                (parameter["name"], str(v).lower() if isinstance(v, bool) else str(v))
                for v in (example if isinstance(example, list) else [example])
            ]
        elif parameter["in"] == "header":
            headers[parameter["name"]] = str(example)
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
    return {"url": url, "params": params, "headers": headers, "json": body}


def validate(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.validate(instance, {**schema, "components": DOCUMENT["components"]})
