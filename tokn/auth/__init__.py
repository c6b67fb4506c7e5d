"""Getting credentials: OAuth device flows (GitHub), importers of tokens other
tools already keep (``gh``, the Copilot editor plugins, env vars).

Every network call takes an ``httpx`` ``transport=`` so tests run offline.
"""

from __future__ import annotations

from typing import Any

import httpx


def json_object(resp: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or ``{}`` for a body that is not one."""
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
