"""The proxy's hop to its internal listener: what a handed-over request carries.

Route mode rewrites an intercepted flow to the in-process listener; the
request then carries the proxy's secret (:data:`INTERNAL`) and labels saying
where it came from.  The listener trusts the labels only with the secret and
strips all of them before the pipeline sees the headers.

A request the proxy must answer itself but whose body it will not buffer is
streamed to :data:`REJECT_PATH` instead, with the answer described in
:data:`REJECT` (base64 JSON); the listener answers at once and discards the body.
"""

from __future__ import annotations

import base64
import json

INTERNAL = "x-tokn-internal"
FRONT_DOOR = "x-tokn-front-door"
ROUTE_MODE = "x-tokn-route-mode"
CLIENT = "x-tokn-client"
IDENTITY = "x-tokn-identity"
LABELS = (INTERNAL, FRONT_DOOR, ROUTE_MODE, CLIENT, IDENTITY)

REJECT_PATH = "/-/tokn/reject"
REJECT = "x-tokn-reject"


def encode_rejection(status: int, body: bytes, headers: dict[str, str]) -> str:
    return base64.b64encode(json.dumps(
        {"status": status, "body": body.decode(), "headers": headers}).encode()).decode()


def decode_rejection(value: str) -> tuple[int, bytes, dict[str, str]]:
    """``(status, body, headers)``; ``ValueError`` when ``value`` is malformed."""
    try:
        spec = json.loads(base64.b64decode(value))
        return int(spec["status"]), str(spec["body"]).encode(), dict(spec["headers"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed rejection: {exc}") from None
