"""The OpenAPI document (server/entroq_redis_server/openapi.json): every documented route answers
as documented.

Each operation is called with the document's own examples; the status must be one the
document lists and a JSON body must validate against the documented schema. Then the other
way round: every route the service has is in the document (Connect routes are described in
its info text).
"""

from __future__ import annotations

import json
from typing import Any

import entroq_redis_server
import httpx
import jsonschema
import pytest
from openapi_support import DOCUMENT, OPERATIONS, example_request, validate


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
