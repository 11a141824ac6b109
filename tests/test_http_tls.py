"""TLS on the service's listeners (--tls-cert, --tls-key, --tls-client-ca), with a CA and
certificates made by the test (trustme), against real ``entroq-redis serve`` processes."""

from __future__ import annotations

import pathlib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import trustme
from listener_support import GET_HEALTHZ, Listening, connect, start_listening


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PEM files: the server's certificate chain and key, the CA, a client's certificate."""
    where = tmp_path_factory.mktemp("tls")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("worker@example.com")
    paths = {
        "cert": where / "server.pem",
        "key": where / "server.key",
        "ca": where / "ca.pem",
        "client": where / "client.pem",
    }
    server.private_key_pem.write_to_path(str(paths["key"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(paths["cert"]), append=True)
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return {name: str(path) for name, path in paths.items()}


def client_context(ca: trustme.CA, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if cert is not None:
        context.load_cert_chain(cert)
    return context


@pytest.fixture
def tls_service(store_url: str, files: dict[str, str]) -> Iterator[Listening]:
    started = start_listening(store_url, "--tls-cert", files["cert"], "--tls-key", files["key"])
    yield started
    assert started.service.stop() == 0


@pytest.fixture
def mtls_service(store_url: str, files: dict[str, str]) -> Iterator[Listening]:
    """Client certificates required, on the API and the metrics listener."""
    started = start_listening(
        store_url,
        *("--tls-cert", files["cert"], "--tls-key", files["key"], "--tls-client-ca", files["ca"]),
        *("--metrics-port", "0"),
    )
    yield started
    assert started.service.stop() == 0


def test_https_with_the_ca(tls_service: Listening, ca: trustme.CA) -> None:
    assert tls_service.url.startswith("https://127.0.0.1:")
    with httpx.Client(base_url=tls_service.url, verify=client_context(ca)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/metrics").status_code == 200  # no --metrics-port: on the API listener


def test_a_client_that_does_not_trust_the_ca_is_refused_by_its_own_check(tls_service: Listening) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_service.url + "/healthz")


def test_plain_http_to_the_tls_port_gets_no_http_answer(tls_service: Listening) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(tls_service.url.replace("https://", "http://") + "/healthz")
    with connect(tls_service.address) as sock:
        sock.sendall(GET_HEALTHZ)
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"HTTP/")


def test_alpn_offers_http2_and_http11(tls_service: Listening, ca: trustme.CA) -> None:
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        context = client_context(ca)
        context.set_alpn_protocols(offered)
        with (
            socket.create_connection(tls_service.address, timeout=20) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.selected_alpn_protocol() == chosen


def test_a_client_certificate_is_required_with_a_client_ca(
    mtls_service: Listening, ca: trustme.CA, files: dict[str, str]
) -> None:
    with (
        httpx.Client(base_url=mtls_service.url, verify=client_context(ca)) as anonymous,
        pytest.raises(httpx.TransportError),
    ):
        anonymous.get("/healthz")
    with httpx.Client(base_url=mtls_service.url, verify=client_context(ca, files["client"])) as known:
        assert known.get("/healthz").status_code == 200


def test_a_certificate_from_another_ca_is_refused(
    mtls_service: Listening, ca: trustme.CA, tmp_path: pathlib.Path
) -> None:
    stranger = trustme.CA().issue_cert("mallory@example.com")
    pem = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(pem))
    with (
        httpx.Client(base_url=mtls_service.url, verify=client_context(ca, str(pem))) as client,
        pytest.raises(httpx.TransportError),
    ):
        client.get("/healthz")


def test_the_metrics_listener_follows_the_tls_settings(
    mtls_service: Listening, ca: trustme.CA, files: dict[str, str]
) -> None:
    assert mtls_service.metrics_url is not None and mtls_service.metrics_url.startswith("https://")
    with httpx.Client(verify=client_context(ca)) as anonymous, pytest.raises(httpx.TransportError):
        anonymous.get(mtls_service.metrics_url)
    with httpx.Client(verify=client_context(ca, files["client"])) as scraper:
        scraped = scraper.get(mtls_service.metrics_url)
        assert scraped.status_code == 200 and "entroq_http_requests_total" in scraped.text
    with pytest.raises(httpx.TransportError):
        httpx.get(mtls_service.metrics_url.replace("https://", "http://"))


def serve_command(data: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "entroq_redis.cli", "serve", "--port", "0", "--data", str(data), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("which", ["cert", "key"])
def test_a_tls_file_that_does_not_load_is_one_line(
    which: str, files: dict[str, str], tmp_path: pathlib.Path
) -> None:
    paths = {"cert": files["cert"], "key": files["key"], which: str(tmp_path / "missing.pem")}
    done = serve_command(tmp_path / "data", "--tls-cert", paths["cert"], "--tls-key", paths["key"])
    assert done.returncode == 1
    assert done.stderr.startswith("entroq-redis serve: TLS (--tls-cert/--tls-key/--tls-client-ca): ")
    assert done.stderr.count("\n") == 1 and "No such file" in done.stderr
    assert not (tmp_path / "data").exists()


def test_h2c_is_not_for_tls_listeners(files: dict[str, str], tmp_path: pathlib.Path) -> None:
    done = serve_command(tmp_path / "data", "--tls-cert", files["cert"], "--tls-key", files["key"], "--h2c")
    assert done.returncode == 2
    assert done.stderr == (
        "entroq-redis serve: --h2c is for plaintext listeners; with TLS, HTTP/2 is negotiated by ALPN\n"
    )


@pytest.fixture
def tls_grpc_service(store_url: str, files: dict[str, str]) -> Iterator[Listening]:
    started = start_listening(store_url, "--tls-cert", files["cert"], "--tls-key", files["key"], grpc=True)
    yield started
    assert started.service.stop() == 0


def test_the_grpc_listener_follows_the_tls_settings(tls_grpc_service: Listening, ca: trustme.CA) -> None:
    # Bearer tokens travel in gRPC metadata: beside an HTTPS API they must not cross in the clear.
    import grpc
    from grpc_support import health_check, v1

    url = tls_grpc_service.grpc_url
    assert url is not None and url.startswith("grpcs://"), url
    target = url.removeprefix("grpcs://")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    with grpc.secure_channel(target, credentials) as secure:
        assert health_check(secure) == 1  # SERVING
        schema = v1()
        assert schema.stub(secure).Time(schema.pb2.TimeRequest(), timeout=10).time_ms > 0
    # Plaintext HTTP/2 (prior knowledge) to the TLS port gets no gRPC answer.
    with grpc.insecure_channel(target) as plain, pytest.raises(grpc.RpcError) as refused:
        v1().stub(plain).Time(v1().pb2.TimeRequest(), timeout=3)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_the_tls_grpc_listener_offers_only_http2(tls_grpc_service: Listening, ca: trustme.CA) -> None:
    assert tls_grpc_service.grpc_url is not None
    host, port = tls_grpc_service.grpc_url.removeprefix("grpcs://").rsplit(":", 1)
    context = client_context(ca)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with connect((host, int(port))) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "h2"
