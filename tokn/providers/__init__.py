"""Provider registry: provider id -> class.  One module per provider.

Adding a provider: write ``tokn/providers/NAME.py`` with a :class:`Provider`
subclass and add the module name to ``MODULES``.  Nothing else changes.
"""

from __future__ import annotations

import importlib

from tokn.providers.base import ModelInfo, Provider, UpstreamResponse

MODULES: tuple[str, ...] = ("copilot", "openai", "anthropic", "zai", "kiro")

_registry: dict[str, type[Provider]] = {}
_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for name in MODULES:
        try:
            module = importlib.import_module(f"tokn.providers.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tokn.providers.{name}":
                raise
            continue
        for cls in getattr(module, "PROVIDERS", ()):
            for pid in (cls.id, *cls.ids):
                _registry[pid] = cls
    _loaded = True


def provider_class(provider_id: str) -> type[Provider]:
    _load()
    try:
        return _registry[provider_id]
    except KeyError:
        raise KeyError(
            f"unknown provider {provider_id!r}; known: {', '.join(sorted(_registry))}"
        ) from None


def provider_ids() -> list[str]:
    _load()
    return sorted(_registry)


__all__ = ["ModelInfo", "Provider", "UpstreamResponse", "provider_class", "provider_ids"]
