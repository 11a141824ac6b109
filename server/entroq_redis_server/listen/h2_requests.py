"""HTTP/2 (Hypercorn 0.18's H2Protocol) where a malformed request fails only its own stream, and
PRIORITY frames cost nothing.

A malformed request is a stream error (RFC 9113, 8.1.1), but the ``h2`` library raises a
connection-level ProtocolError when it validates a request's header block, and Hypercorn then
ends the connection with GOAWAY: a single metadata value with a trailing space (``Bearer ``,
a client with an empty token) failed every call multiplexed on that connection, including claims
already waiting. Here h2's inbound header validation runs after h2 has decoded the block (so its
HPACK state is the one the peer assumes) and before Hypercorn sees the request: every check of
h2's ``validate_headers`` still applies, but a failing request is answered on its stream (an
error response, then RST_STREAM NO_ERROR if the client was still sending) and the connection's
other streams go on. Malformed framing, HPACK and flow-control errors stay connection errors.

Hypercorn also adds every stream a PRIORITY frame names to its scheduler, opened or not, and the
entry stays until the connection closes: a client could grow it without bound (our round-robin
scheduler) or end its own connection (``priority.PriorityTree``'s 1,000 cap raises). Priorities
are deprecated (RFC 9113, 5.3); PRIORITY frames for streams that are not open are ignored.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from h2.utilities import HeaderValidationFlags, validate_headers
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h2 import H2Protocol

from ..authz.input import CredentialsError, read_credentials
from ..core.errors import UNAUTHENTICATED, ApiError, bad_request, rest_body

Header = tuple[bytes, bytes]
_WHITESPACE = b" \t"
_REQUEST = HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)
_TRAILER = HeaderValidationFlags(
    is_client=False, is_trailer=True, is_response_header=False, is_push_promise=False
)


def header_problem(headers: list[Header], *, trailer: bool = False) -> ApiError | None:
    """Why a received header block is malformed (RFC 9113, 8.2 and 8.3), or None.

    h2's own ``validate_headers`` runs on the block with its values' surrounding whitespace
    stripped, so each of its checks applies as in h2 except the one rule a client is most likely
    to break by accident (8.2.1: a value must not start or end with a space or tab), which is
    checked separately to name the header. An ``Authorization`` value breaking it gets 401 with
    the authorization layer's message for that value ("no credentials after 'Bearer'").
    """
    try:
        for _ in validate_headers(
            [(name, value.strip(_WHITESPACE)) for name, value in headers], _TRAILER if trailer else _REQUEST
        ):
            pass
    except h2.exceptions.ProtocolError as error:
        return bad_request(f"malformed HTTP/2 request: {error}")
    for name, value in headers:
        if value != value.strip(_WHITESPACE):
            header = name.decode("ascii")  # names passed h2's check: lowercase ASCII
            if header == "authorization":
                return _malformed_authorization(value)
            return bad_request(
                f"header {header!r}: its value starts or ends with whitespace (RFC 9113, 8.2.1)"
            )
    return None


def _malformed_authorization(value: bytes) -> ApiError:
    try:
        read_credentials({"Authorization": value.decode("latin-1")})
    except CredentialsError as error:
        message = str(error)
    else:
        message = "malformed Authorization header: its value starts or ends with whitespace"
    return ApiError(401, UNAUTHENTICATED, message, "denied")


class StreamErrorH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol with malformed requests as stream errors and PRIORITY frames
    for unopened streams ignored (see the module's text). A malformed request is answered with
    ``refuse_request``: the REST API's JSON error here, a gRPC status in the gRPC listener."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Checked by ``_admit`` instead, where a failure is the request's and not the connection's.
        self.connection.config.validate_inbound_headers = False

    async def handle(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().handle(event)
            return
        # H2Protocol.handle (0.18), with the received events passed through ``_admit``.
        try:
            events = self.connection.receive_data(event.data)
        except h2.exceptions.ProtocolError:
            await self._flush()
            await self.send(Closed())
        else:
            admitted = self._admit(events)
            await self._handle_events(admitted)
            if len(admitted) < len(events):
                # Requests answered here: the connection's clock hears of requests only from
                # Hypercorn's Updated events, and a connection whose requests were all refused
                # would keep the clock's state (a request in progress: no deadline at all).
                await self.send(Updated(idle=self.idle))

    def _admit(self, events: list[h2.events.Event]) -> list[h2.events.Event]:
        """The events Hypercorn may see: a malformed request is answered here and its stream's
        later events in the batch dropped (Hypercorn has no stream for them)."""
        admitted: list[h2.events.Event] = []
        refused: set[int] = set()
        # Streams admitted in this read, and streams of earlier reads reset in it: the scheduler
        # gains the first and loses the second once Hypercorn has the events.
        opened = 0
        reset: set[int] = set()
        for event in events:
            stream_id = getattr(event, "stream_id", None)
            if stream_id in refused:
                if isinstance(event, h2.events.DataReceived):
                    # Count it as read, or the connection's receive window shrinks for good.
                    self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                continue
            if isinstance(event, h2.events.RequestReceived):
                problem = header_problem(event.headers)
                if problem is None:
                    problem = self.refuse_new_stream(opened - len(reset))
                    if problem is None:
                        opened += 1
                        admitted.append(event)
                        continue
                refused.add(event.stream_id)
                self._refuse(event.stream_id, problem, ended=event.stream_ended is not None)
            elif isinstance(event, h2.events.TrailersReceived) and header_problem(
                event.headers, trailer=True
            ):
                # The request is with the application already: end its stream as a reset would.
                refused.add(event.stream_id)
                reset.add(event.stream_id)
                with contextlib.suppress(h2.exceptions.ProtocolError):  # answered and closed already
                    self.connection.reset_stream(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                admitted.append(
                    h2.events.StreamReset(
                        stream_id=event.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
                    )
                )
            else:
                if isinstance(event, h2.events.StreamReset) and event.stream_id in self.stream_buffers:
                    reset.add(event.stream_id)
                admitted.append(event)
        return admitted

    def refuse_new_stream(self, pending: int) -> ApiError | None:
        """Why a well-formed new request cannot be served now (None: it can); ``pending``: the
        change in open streams of the events before it in the same read, not yet handled."""
        return None

    def _refuse(self, stream_id: int, problem: ApiError, *, ended: bool) -> None:
        try:
            self.refuse_request(stream_id, problem)
            if not ended:
                # A complete answer before the whole request: the client may stop sending
                # (RFC 9113, 8.1), and h2 discards what is in flight.
                self.connection.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            # No window for the answer (a client may announce none): a reset says it.
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.connection.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)

    def refuse_request(self, stream_id: int, problem: ApiError) -> None:
        """Queues the complete answer to a request that will not reach the application."""
        body = json.dumps(rest_body(problem)).encode()
        headers = [
            (b":status", b"%d" % problem.status),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]
        self.connection.send_headers(stream_id, headers + self.config.response_headers("h2"))
        self.connection.send_data(stream_id, body, end_stream=True)

    async def _priority_updated(self, event: h2.events.PriorityUpdated) -> None:
        # Hypercorn adds a stream it does not know to its scheduler, for good; see the module text.
        if event.stream_id in self.stream_buffers:
            await super()._priority_updated(event)
