"""Getting credentials: OAuth device flows (GitHub), importers of tokens other
tools already keep (``gh``, the Copilot editor plugins, env vars).

Every network call takes an ``httpx`` ``transport=`` so tests run offline.
"""
