"""The OpenAPI document (server/entroq_redis_server/openapi.json): every documented route answers
as documented.

Each operation is called with the document's own examples; the status must be one the
document lists and a JSON body must validate against the documented schema. Then the other
way round: every route the service has is in the document (Connect routes are described in
its info text).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import entroq_redis_server
import httpx
import jsonschema
import pytest

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


def test_document_is_valid_openapi_31() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    for schema in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert len({op["operationId"] for _, _, op in OPERATIONS}) == len(OPERATIONS)


@pytest.mark.parametrize(
    ("path", "method", "operation"), OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS]
)
async def test_documented_route_answers_as_documented(
    http: httpx.AsyncClient, path: str, method: str, operation: dict[str, Any]
) -> None:
    # Something to find: a task in the queue the examples name.
    await http.post("/api/v0/modify", json={"inserts": [{"queue": "jobs/a b"}, {"queue": "jobs"}]})
    response = await http.request(method.upper(), **example_request(path, operation))
    documented = operation["responses"]
    assert str(response.status_code) in documented, (response.status_code, response.text)
    content = documented[str(response.status_code)].get("content", {})
    media = response.headers["content-type"].split(";")[0]
    assert media in content, (media, list(content))
    if media == "application/json":
        validate(response.json(), content[media]["schema"])
    elif media == "application/x-ndjson":
        for line in response.text.splitlines():
            validate(json.loads(line), content[media]["schema"])


async def test_documented_errors_validate(http: httpx.AsyncClient) -> None:
    status = DOCUMENT["components"]["schemas"]["Status"]
    responses = [
        await http.post("/api/v0/modify", json={"deletes": [{"id": "x", "version": 1}]}),
        await http.post("/api/v0/claim", content=b"{"),
        await http.get("/no/such/route"),
        await http.get("/api/v0/modify"),
    ]
    assert [r.status_code for r in responses] == [404, 400, 404, 405]
    for response in responses:
        validate(response.json(), status)


def test_every_rest_route_is_documented() -> None:
    from entroq_redis_server.http_app import create_app

    class Stub:
        metrics = None
        methods = frozenset(entroq_redis_server.core.schema.METHODS)

    app = create_app(entroq_redis_server.ServiceSettings(store_url="redis://unused"), Stub())  # type: ignore[arg-type]
    documented = {(p, m.upper()) for p, m, _ in OPERATIONS}
    for rule in app.url_map.iter_rules():
        # Connect routes, and the dashboard's HTML pages (server/entroq_redis_server/ui), which are no
        # API operations.
        if rule.rule.startswith(("/api.EntroQ/", "/static", "/ui")):
            continue
        path = rule.rule.replace("<anypath:queue>", "{queue}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
