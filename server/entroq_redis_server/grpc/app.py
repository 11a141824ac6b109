"""The gRPC front end: a raw ASGI application (no framework: a call costs about what its
protocol needs, docs/reference/entroq-v1-grpc-and-docs.md 3) that moves bytes and headers to
``Calls`` and back.

- Routes: ``/api.EntroQ/<Method>`` for the eight task RPCs (StreamTasks streams one
  TasksResponse per task) and the document store's three (Docs, ClaimDocs, NamespaceStats);
  any other path answers UNIMPLEMENTED; ``/grpc.health.v1.Health/Check`` answers SERVING while
  the store answers.
- Every answer is HTTP 200, ``content-type: application/grpc``, then the messages (or none),
  then trailers with ``grpc-status`` (and ``grpc-message``, ``grpc-status-details-bin``). Never
  a trailers-only response, which grpcio misreads once Hypercorn adds an empty DATA frame
  (docs/reference/entroq-v1-grpc-and-docs.md 3); a request without ``te: trailers`` (not a gRPC
  client) is the one exception, since Hypercorn then drops trailers: its status goes in the headers.
- Metadata is the request's headers: ``authorization`` and ``entroq-namespace`` reach
  ``Calls.run`` exactly as HTTP headers do; ``x-request-id`` is kept when well formed and
  echoed in the response headers; ``grpc-timeout`` is the caller's deadline (a blocking Claim
  ends with DEADLINE_EXCEEDED at it, or at the service's claim cap).
- Errors come from ``_errors.from_exception``; an unexpected exception is INTERNAL "internal
  error" to the caller, with the trace in the log.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio
from google.protobuf import message as protobuf_message

from ..core import errors as _errors
from ..core import schema as _schema
from ..core import wire as _wire
from ..core.calls import Calls
from ..core.errors import ApiError
from ..core.request_ids import request_id
from . import framing, health, status, values
from .settings import GrpcSettings

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PREFIX = "/api.EntroQ/"
CONTENT_TYPES = frozenset({"application/grpc", "application/grpc+proto"})
HEALTH_LABEL = "grpc.health.v1.Health/Check"
# A request refused before its body was read (too large, compressed) still has its body
# read and dropped, so Hypercorn's stream ends in order (its HTTP/2 code fails the whole
# connection on data for a stream it has closed); a client that keeps sending gets this long.
DRAIN_TIMEOUT_S = 30.0
# A ModifyRequest's lists, counted together against the store's limit.
_MODIFY_LISTS = (
    "inserts",
    "changes",
    "deletes",
    "depends",
    "doc_inserts",
    "doc_changes",
    "doc_deletes",
    "doc_depends",
)
# A blocking claim's deadline is the library's to enforce (its DEADLINE_EXCEEDED says what
# it waited for); the call's own deadline backs it up this much later.
_CLAIM_DEADLINE_GRACE_S = 1.0


class _ClientGone(Exception):
    """The client reset the stream or closed the connection; nothing is sent."""


class Metadata:
    """A request's headers as ``Calls`` reads them: case-insensitive ``get``, and ``getlist``."""

    def __init__(self, raw: Any) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in raw:
            self._values.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))

    def get(self, key: str, /) -> str | None:
        values = self._values.get(key.lower())
        return values[0] if values else None

    def getlist(self, key: str, /) -> list[str]:
        return list(self._values.get(key.lower(), ()))


class GrpcApp:
    """The ASGI application of the gRPC listener."""

    def __init__(self, settings: GrpcSettings, calls: Calls) -> None:
        self.settings = settings
        self.calls = calls
        self.v1 = settings.values == "value"
        self._requests = {name: _schema.message_class(spec[0]) for name, spec in _schema.METHODS.items()}
        self._streaming = {name for name, spec in _schema.METHODS.items() if spec[2]}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websockets on this listener
        started = time.perf_counter()
        path: str = scope["path"]
        label = self._label(path)
        code = status.OK
        try:
            code = await self._serve(scope, path, receive, send)
        except _ClientGone:
            code = status.CANCELLED
        except trio.Cancelled:
            code = status.CANCELLED  # the stream was reset, or shutdown cut the call
            raise
        finally:
            elapsed = time.perf_counter() - started
            name = status.code_name(code)
            self.calls.metrics.grpc_requests.labels(label, name).inc()
            self.calls.metrics.grpc_request_seconds.labels(label, name).observe(elapsed)

    def _label(self, path: str) -> str:
        if path == health.PATH:
            return HEALTH_LABEL
        method = path.removeprefix(PREFIX)
        if path.startswith(PREFIX) and method in _schema.METHODS:
            return method
        return "unknown"

    async def _serve(self, scope: dict[str, Any], path: str, receive: Receive, send: Send) -> int:
        """Answers one request; returns its status code."""
        metadata = Metadata(scope["headers"])
        rid = request_id(metadata.getlist("x-request-id"))
        headers = [
            (b"content-type", b"application/grpc"),
            (b"grpc-accept-encoding", b"identity"),
            (b"x-request-id", rid.encode()),
        ]
        responder = _Responder(send, headers, trailers="trailers" in metadata.getlist("te"))
        try:
            if scope["http_version"] != "2":
                raise _errors.bad_request("gRPC needs HTTP/2 (h2c: plaintext with prior knowledge)")
            if scope["method"] != "POST":
                raise _errors.method_not_allowed(scope["method"], ["POST"])
            content_type = (metadata.get("content-type") or "").split(";", 1)[0].strip().lower()
            if content_type not in CONTENT_TYPES:
                raise _errors.unsupported_media_type(content_type)
            if path == health.PATH:
                await self._health(receive, responder)
            else:
                await self._entroq(path, metadata, rid, receive, responder)
            await responder.finish(None)
            return status.OK
        except _ClientGone:
            raise
        except Exception as exc:
            error = _errors.from_exception(exc)
            if error.code == _errors.INTERNAL:
                log.exception("internal error serving gRPC %s", path, exc_info=exc)
            if responder.body_pending:
                await _drain(receive)
            await responder.finish(error)
            return error.code

    async def _health(self, receive: Receive, responder: _Responder) -> None:
        request = _parse(health.HealthCheckRequest, await self._message(receive, responder))
        if request.service not in health.SERVICES:
            raise ApiError(404, _errors.NOT_FOUND, f"unknown service {request.service!r}", "not_found")
        try:
            await self.calls.ready()
            serving = health.SERVING
        except Exception as exc:
            log.info("gRPC health check: NOT_SERVING: %s", _errors.from_exception(exc).message)
            serving = health.NOT_SERVING
        await responder.send(framing.frame(health.HealthCheckResponse(status=serving).SerializeToString()))

    async def _entroq(
        self, path: str, metadata: Metadata, rid: str, receive: Receive, responder: _Responder
    ) -> None:
        method = path.removeprefix(PREFIX) if path.startswith(PREFIX) else ""
        request_class = self._requests.get(method)
        if request_class is None:
            raise _errors.unimplemented(f"unknown gRPC method {path}")
        timeout_s = framing.parse_timeout_s(metadata.get("grpc-timeout"))
        if len(metadata.getlist("authorization")) > 1:
            # As over HTTP: two credentials are ambiguous, so neither is picked.
            raise _errors.bad_request("more than one Authorization header: send exactly one")
        request = _parse(request_class, await self._message(receive, responder))
        self._check(method, request)
        if self.v1 and method == "Modify":
            values.request_to_stored(request)
        call = self.calls.run(method, request, metadata, timeout_s, rid)
        if method == "Claim":
            # The only call that waits: the client may give up (reset the stream) meanwhile.
            grace = timeout_s + _CLAIM_DEADLINE_GRACE_S if timeout_s is not None else None
            response = await _watched(receive, _deadline(call, grace))
        else:
            response = await _deadline(call, timeout_s)
        if self.v1:
            values.response_to_wire(response)
        if method in self._streaming:
            frames = [
                framing.frame(_wire.one_task_response(task).SerializeToString()) for task in response.tasks
            ]
            await responder.send(b"".join(frames))
        else:
            await responder.send(framing.frame(response.SerializeToString()))

    def _check(self, method: str, request: Any) -> None:
        """The request checks the HTTP routes make on their JSON (``_wire.check_counts``), on the
        decoded message."""
        if method == "Modify":
            _wire.check_counts(
                {name: list(getattr(request, name)) for name in _MODIFY_LISTS}, "ModifyRequest"
            )
        elif method == "ClaimDocs":
            _wire.check_counts({"claimQuery": {"sets": list(request.claim_query.sets)}}, "ClaimDocsRequest")
        elif method in ("Claim", "TryClaim"):
            counted = _wire.check_counts(
                {"finish": list(request.finish), "queues": list(request.queues)}, "ClaimRequest"
            )
            if len(counted["queues"]) != len(request.queues):
                request.queues[:] = counted["queues"]

    async def _message(self, receive: Receive, responder: _Responder) -> bytes:
        """The request's one message, read within the size limit."""
        reader = framing.MessageReader(self.settings.max_message_bytes)
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                raise _ClientGone
            try:
                reader.feed(event.get("body", b""))
            except ApiError:
                responder.body_pending = event.get("more_body", False)
                raise
            if not event.get("more_body", False):
                return reader.single()


class _Responder:
    """Sends one response: headers once, messages, then the trailers (or, for a request
    without ``te: trailers``, the status in the headers)."""

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]], trailers: bool) -> None:
        self._send = send
        self._headers = headers
        self._trailers = trailers
        self._started = False
        self.body_pending = False

    async def _start(self, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await self._send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": self._headers + (extra or []),
                "trailers": self._trailers,
            }
        )
        self._started = True

    async def send(self, data: bytes) -> None:
        if not self._started:
            await self._start()
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, error: ApiError | None) -> None:
        trailers = status.ok_trailers() if error is None else status.error_trailers(error)
        if not self._trailers:
            if self._started:
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await self._start(trailers)
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if not self._started:
            await self._start()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        await self._send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})


def _parse(message_class: Any, payload: bytes) -> Any:
    try:
        return message_class.FromString(payload)
    except (protobuf_message.DecodeError, RecursionError) as exc:
        name = message_class.DESCRIPTOR.name
        raise _errors.bad_request(f"invalid {name}: cannot parse the protobuf message ({exc})") from None


async def _deadline(call: Awaitable[Any], timeout_s: float | None) -> Any:
    """Runs ``call`` until the caller's deadline (DEADLINE_EXCEEDED after it)."""
    if timeout_s is None:
        return await call
    with trio.move_on_after(max(0.0, timeout_s)):
        return await call
    raise _errors.deadline_exceeded(f"the call did not finish within its grpc-timeout ({timeout_s:g} s)")


async def _watched(receive: Receive, call: Awaitable[Any]) -> Any:
    """Runs ``call`` while watching for the client going away (then it is cancelled)."""
    result: Any = None
    gone = False
    with _single_errors():
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            result = await call
            nursery.cancel_scope.cancel()
    if gone:
        raise _ClientGone
    return result


@contextlib.contextmanager
def _single_errors() -> Iterator[None]:
    """Unwraps a nursery's group of one error, so errors map as if raised directly."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _drain(receive: Receive) -> None:
    """Reads and drops the rest of a refused request's body (see DRAIN_TIMEOUT_S)."""
    with trio.move_on_after(DRAIN_TIMEOUT_S):
        while True:
            event = await receive()
            if event["type"] == "http.disconnect" or not event.get("more_body", False):
                return


def create_grpc_app(settings: GrpcSettings, calls: Calls) -> GrpcApp:
    """The gRPC listener's ASGI application for one service process."""
    return GrpcApp(settings, calls)
