"""HTTP/2 hygiene of the gRPC listener (and of the HTTP listener with --h2c): a malformed request
fails its own stream only (RFC 9113, 8.1.1), and PRIORITY frames for streams never opened cost
the service nothing. grpcio stubs, and a raw HTTP/2 client (the ``h2`` library on a socket)
for what grpcio never sends."""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import grpc
import grpc_support
import h2.config
import h2.connection
import h2.errors
import h2.events
import psutil
import pytest
from conftest import ServiceProcess, start_service
from entroq_redis_server.grpc.streams import RoundRobinStreams
from hyperframe.frame import PriorityFrame
from priority.priority import TooManyStreamsError

MAX_STREAMS = 20


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(
        store_url, "--test-any-namespace", "--h2c", "--grpc-max-streams", str(MAX_STREAMS)
    )
    yield process
    process.stop()


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split("://", 1)[1].rpartition(":")
    return host.strip("[]"), int(port)


class RawH2:
    """An HTTP/2 client that sends what it is told: no outbound header checks or rewriting."""

    def __init__(self, address: str) -> None:
        self.sock = socket.create_connection(host_port(address), timeout=10)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.flush()
        self.headers: dict[int, list[list[tuple[bytes, bytes]]]] = {}
        self.body: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        self.sock.close()

    def request(self, headers: list[tuple[bytes, bytes]], body: bytes | None = None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers, end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.flush()
        return stream_id

    def wait(self, stream_id: int, timeout_s: float = 10) -> None:
        """Reads until the stream is answered completely or reset (or the connection ends)."""
        deadline = time.monotonic() + timeout_s
        while stream_id not in self.ended and stream_id not in self.resets and self.goaway is None:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the service closed the connection")
            for event in self.conn.receive_data(data):
                self._record(event)
            self.flush()

    def _record(self, event: h2.events.Event) -> None:
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            self.headers.setdefault(event.stream_id, []).append(list(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            self.body[event.stream_id] = self.body.get(event.stream_id, b"") + event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.resets[event.stream_id] = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def answer(self, stream_id: int) -> dict[bytes, bytes]:
        """Every header and trailer the stream's response carried."""
        self.wait(stream_id)
        assert self.goaway is None, self.goaway
        return {name: value for block in self.headers.get(stream_id, []) for name, value in block}


def grpc_request(path: str, namespace: str, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"entroq-namespace", namespace.encode()),
        *extra,
    ]


EMPTY_MESSAGE = struct.pack(">BI", 0, 0)


def time_call(client: RawH2, namespace: str) -> dict[bytes, bytes]:
    """An api.EntroQ/Time call on the raw connection: its answer's headers and trailers."""
    return client.answer(client.request(grpc_request("/api.EntroQ/Time", namespace), EMPTY_MESSAGE))


def test_a_waiting_claim_outlives_a_call_with_whitespace_metadata(
    service: ServiceProcess, namespace: str
) -> None:
    # One channel, one connection (as a sidecar multiplexing many callers): a claim waits while
    # other calls carry metadata values with surrounding spaces (grpcio sends them as given; a
    # tab it refuses itself, INTERNAL "Invalid metadata", and the raw client's tests send one).
    assert service.grpc_url is not None
    api = grpc_support.v1()
    pb2 = api.pb2
    meta = [("entroq-namespace", namespace)]
    with grpc_support.channel(service.grpc_url) as channel:
        stub = api.stub(channel)
        claim = stub.Claim.future(
            pb2.ClaimRequest(claimant_id="c1", queues=["/wait"], duration_ms=10_000, poll_ms=20_000),
            metadata=meta,
            timeout=30,
        )
        time.sleep(0.5)
        assert not claim.done()
        bad = {
            "x-custom": [*meta, ("x-custom", " lead")],
            "entroq-namespace": [("entroq-namespace", namespace + " ")],
        }
        for header, metadata in bad.items():
            with pytest.raises(grpc.RpcError) as caught:
                stub.Tasks(pb2.TasksRequest(queue="/wait"), metadata=metadata, timeout=10)
            error: Any = caught.value
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (header, error)
            assert error.details() == (
                f"header {header!r}: its value starts or ends with whitespace (RFC 9113, 8.2.1)"
            )
        with pytest.raises(grpc.RpcError) as caught:
            stub.Tasks(pb2.TasksRequest(queue="/wait"), metadata=[*meta, ("authorization", "Bearer ")])
        error = caught.value
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == "malformed Authorization header: no credentials after 'Bearer'"
        # The claim still waits, and gets the task inserted now, on the same connection.
        assert not claim.done()
        stub.Modify(pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/wait")]), metadata=meta, timeout=10)
        task = claim.result(timeout=10).task
        assert task.queue == "/wait"


MALFORMED = {
    "whitespace": ((b"x-custom", b" lead"), "header 'x-custom': its value starts or ends with whitespace"),
    "tab": ((b"x-tab", b"trail\t"), "header 'x-tab': its value starts or ends with whitespace"),
    "uppercase name": ((b"X-Custom", b"v"), "malformed HTTP/2 request: Received uppercase header name"),
    "connection header": ((b"connection", b"close"), "malformed HTTP/2 request: Connection-specific header"),
    "te": ((b"te", b"gzip"), "malformed HTTP/2 request: Invalid value for TE header"),
    "pseudo header late": (
        (b":custom", b"x"),
        "malformed HTTP/2 request: Received pseudo-header field out of",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_request_is_a_stream_error(service: ServiceProcess, namespace: str, case: str) -> None:
    # Each of h2's header checks still refuses the request, on its stream only: the answer is a
    # gRPC status, the connection gets no GOAWAY and serves the next call.
    assert service.grpc_url is not None
    header, message = MALFORMED[case]
    client = RawH2(service.grpc_url)
    try:
        answer = client.answer(
            client.request(grpc_request("/api.EntroQ/Time", namespace, header), EMPTY_MESSAGE)
        )
        assert answer[b":status"] == b"200"
        assert answer[b"grpc-status"] == b"3", answer
        assert grpc_message(answer).startswith(message), answer
        assert time_call(client, namespace)[b"grpc-status"] == b"0"
    finally:
        client.close()


def grpc_message(answer: dict[bytes, bytes]) -> str:
    return urllib.parse.unquote(answer[b"grpc-message"].decode())


def test_rest_over_h2c_refuses_a_malformed_request_on_its_stream(
    service: ServiceProcess, namespace: str
) -> None:
    # The HTTP listener's HTTP/2 (--h2c) has the same rule, with the REST API's JSON errors.
    client = RawH2(service.url)
    try:
        get = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/api/v0/time"),
            (b":authority", b"x"),
        ]
        get.append((b"entroq-namespace", namespace.encode()))
        stream = client.request([*get, (b"authorization", b"Bearer ")])
        assert client.answer(stream)[b":status"] == b"401"
        body = json.loads(client.body[stream])
        assert body["message"] == "malformed Authorization header: no credentials after 'Bearer'"
        stream = client.request([*get, (b"x-custom", b"trail ")])
        assert client.answer(stream)[b":status"] == b"400"
        assert "header 'x-custom'" in json.loads(client.body[stream])["message"]
        stream = client.request(get)
        assert client.answer(stream)[b":status"] == b"200"
    finally:
        client.close()


def rss(service: ServiceProcess) -> int:
    return int(psutil.Process(service.process.pid).memory_info().rss)


def test_priority_frames_for_unopened_streams_cost_nothing(service: ServiceProcess, namespace: str) -> None:
    # Hypercorn put every stream a PRIORITY frame names into its scheduler, for the connection's
    # life. 300,000 frames naming streams never opened: the service's memory stays put, and the
    # same connection then serves as many calls at once as --grpc-max-streams allows.
    assert service.grpc_url is not None
    client = RawH2(service.grpc_url)
    try:
        assert time_call(client, namespace)[b"grpc-status"] == b"0"
        before = rss(service)
        frames = bytearray()
        for stream_id in range(1_000_001, 1_600_001, 2):
            frame = PriorityFrame(stream_id)
            frame.depends_on = 0
            frame.stream_weight = 15
            frames += frame.serialize()
        client.sock.sendall(frames)
        assert time_call(client, namespace)[b"grpc-status"] == b"0"  # all frames were read
        grown = rss(service) - before
        assert grown < 8 * 2**20, f"the service grew {grown / 2**20:.1f} MiB"
    finally:
        client.close()


def test_calls_up_to_the_stream_limit_still_run_after_priority_frames(
    service: ServiceProcess, namespace: str
) -> None:
    # PRIORITY frames for streams about to be opened (ids just above the next), then
    # MAX_STREAMS waiting claims on them: all are accepted, and all get their tasks.
    assert service.grpc_url is not None
    client = RawH2(service.grpc_url)
    try:
        frames = bytearray()
        for stream_id in range(1, 4 * MAX_STREAMS, 2):
            frame = PriorityFrame(stream_id)
            frame.depends_on = 0
            frames += frame.serialize()
        client.sock.sendall(frames)
        api = grpc_support.v1()
        claim = api.pb2.ClaimRequest(claimant_id="c", queues=["/many"], duration_ms=10_000, poll_ms=20_000)
        payload = claim.SerializeToString()
        streams = [
            client.request(
                grpc_request("/api.EntroQ/Claim", namespace), struct.pack(">BI", 0, len(payload)) + payload
            )
            for _ in range(MAX_STREAMS)
        ]
        with grpc_support.channel(service.grpc_url) as channel:
            inserts = [api.pb2.TaskData(queue="/many") for _ in range(MAX_STREAMS)]
            api.stub(channel).Modify(
                api.pb2.ModifyRequest(inserts=inserts), metadata=[("entroq-namespace", namespace)], timeout=10
            )
        assert [client.answer(stream).get(b"grpc-status") for stream in streams] == [b"0"] * MAX_STREAMS
    finally:
        client.close()


def test_claims_cancelled_and_reissued_at_once_all_run(service: ServiceProcess, namespace: str) -> None:
    # A client at --grpc-max-streams cancels every waiting claim and opens as many new ones in
    # the same write: the scheduler's cap (the stream limit) counts the cancelled ones out, so
    # none of the new calls is refused.
    assert service.grpc_url is not None
    api = grpc_support.v1()
    claim = api.pb2.ClaimRequest(claimant_id="c", queues=["/again"], duration_ms=10_000, poll_ms=20_000)
    payload = claim.SerializeToString()
    message = struct.pack(">BI", 0, len(payload)) + payload
    client = RawH2(service.grpc_url)
    try:
        first = [
            client.request(grpc_request("/api.EntroQ/Claim", namespace), message) for _ in range(MAX_STREAMS)
        ]
        time.sleep(0.5)
        for stream in first:
            client.conn.reset_stream(stream)
        second = []
        for _ in range(MAX_STREAMS):
            stream = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream, grpc_request("/api.EntroQ/Claim", namespace))
            client.conn.send_data(stream, message, end_stream=True)
            second.append(stream)
        client.flush()  # one write
        with grpc_support.channel(service.grpc_url) as channel:
            inserts = [api.pb2.TaskData(queue="/again") for _ in range(MAX_STREAMS)]
            api.stub(channel).Modify(
                api.pb2.ModifyRequest(inserts=inserts), metadata=[("entroq-namespace", namespace)], timeout=10
            )
        answers = [client.answer(stream) for stream in second]
        assert [answer.get(b"grpc-status") for answer in answers] == [b"0"] * MAX_STREAMS, answers
    finally:
        client.close()


def test_the_scheduler_holds_at_most_the_stream_limit() -> None:
    streams = RoundRobinStreams(3)
    for stream_id in (1, 3, 5):
        streams.insert_stream(stream_id)
    with pytest.raises(TooManyStreamsError):
        streams.insert_stream(7)
    streams.remove_stream(3)
    streams.insert_stream(7)
    assert len(streams) == 3
    assert [next(streams) for _ in range(4)] == [1, 5, 7, 1]


def test_a_connection_with_only_refused_requests_still_times_out(store_url: str) -> None:
    # The HTTP listener's connection clock learns of requests from Hypercorn; a request refused
    # before Hypercorn saw it must still leave the connection idle (and timed), or a client
    # sending only malformed requests would hold its connection, and a place under
    # --max-connections-per-address, for good.
    process = start_service(
        store_url, "--test-any-namespace", "--h2c", "--idle-timeout", "1", "--header-timeout", "1"
    )
    client = RawH2(process.url)
    try:
        get = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/api/v0/time"),
            (b":authority", b"x"),
        ]
        assert client.answer(client.request([*get, (b"x-custom", b" lead")]))[b":status"] == b"400"
        client.sock.settimeout(10)
        started = time.monotonic()
        while client.sock.recv(65536):
            pass
        assert time.monotonic() - started < 5
    finally:
        client.close()
        process.stop()


def test_malformed_trailers_reset_their_stream_only(service: ServiceProcess, namespace: str) -> None:
    # Request trailers are checked too (h2's rules: here an uppercase name): the stream, whose
    # request is with the application already, is reset; the connection goes on. (The
    # request, headers to trailers, goes out in one write: no answer can come first.)
    assert service.grpc_url is not None
    client = RawH2(service.grpc_url)
    try:
        stream = client.conn.get_next_available_stream_id()
        client.conn.send_headers(stream, grpc_request("/api.EntroQ/Time", namespace))
        client.conn.send_data(stream, EMPTY_MESSAGE)
        client.conn.send_headers(stream, [(b"X-Upper", b"v")], end_stream=True)
        client.flush()
        client.wait(stream)
        assert client.goaway is None
        assert client.resets == {stream: h2.errors.ErrorCodes.PROTOCOL_ERROR}
        assert time_call(client, namespace)[b"grpc-status"] == b"0"
    finally:
        client.close()
