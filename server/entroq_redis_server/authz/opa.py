"""``--authz opahttp``: asks an OPA server, as EntroQ's ``opahttp`` authorizer does.

``POST <opa-url>/<opa-path>`` with ``{"input": ...}``, ``Content-Type: application/json`` and
the caller's ``Authorization`` header forwarded (EntroQ sends it, empty when there is none),
and reads ``result`` from the answer. Any transport failure, timeout, non-200 status or
non-JSON answer is a :class:`PolicyFailure` (the call gets 503; nothing is allowed).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio

from entroq_redis._masked_url import masked_url

from .decision import PolicyFailure
from .input import Credentials

# A decision answer is a few KiB; a bigger one is a misbehaving server, not a policy.
MAX_ANSWER_BYTES = 1024 * 1024


def decision_url(opa_url: str, opa_path: str) -> str:
    """``http://opa:8181`` + ``/v1/data/entroq/authz``, with exactly one slash between."""
    return opa_url.rstrip("/") + "/" + opa_path.lstrip("/")


class OpaHttpEngine:
    """Evaluates decisions on an OPA server (one shared connection pool)."""

    def __init__(self, client: httpx.AsyncClient, url: str, timeout_s: float) -> None:
        self._client = client
        self.url = url
        # Refusals quote where OPA is (in the 503 and the log), never a password in its URL.
        self.shown_url = masked_url(url)
        self.timeout_s = timeout_s

    async def evaluate(self, credentials: Credentials, document: dict[str, Any]) -> Any:
        """The ``result`` of the OPA answer (None when OPA says the document is undefined).

        Raises:
            PolicyFailure: OPA is unreachable, too slow, or answered something unusable.
        """
        body = json.dumps({"input": document}, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Authorization": credentials.header()}
        raw = bytearray()
        # httpx's timeout bounds each read; this bounds the whole exchange (a trickling answer).
        with trio.move_on_after(self.timeout_s) as deadline:
            try:
                async with self._client.stream("POST", self.url, content=body, headers=headers) as response:
                    async for chunk in response.aiter_bytes():
                        raw += chunk
                        if len(raw) > MAX_ANSWER_BYTES:
                            raise PolicyFailure(f"OPA's answer is larger than {MAX_ANSWER_BYTES} bytes")
            except httpx.TimeoutException:
                raise PolicyFailure(
                    f"OPA at {self.shown_url} did not answer within {self.timeout_s} s"
                ) from None
            except httpx.HTTPError as exc:
                raise PolicyFailure(
                    f"cannot reach OPA at {self.shown_url}: {exc or type(exc).__name__}"
                ) from None
        if deadline.cancelled_caught:
            raise PolicyFailure(f"OPA at {self.shown_url} did not answer within {self.timeout_s} s")
        if response.status_code != 200:
            raise PolicyFailure(f"OPA answered HTTP {response.status_code}")
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError):
            raise PolicyFailure("OPA's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise PolicyFailure("OPA's answer is not a JSON object")
        return answer.get("result")


@contextlib.asynccontextmanager
async def open_opa_engine(opa_url: str, opa_path: str, timeout_s: float) -> AsyncIterator[OpaHttpEngine]:
    """An engine for the service's lifetime; its connections close on exit."""
    # No proxies from the environment: the policy server is a sidecar or a cluster service,
    # and the caller's token must not travel through whatever HTTP_PROXY says.
    async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
        yield OpaHttpEngine(client, decision_url(opa_url, opa_path), timeout_s)
