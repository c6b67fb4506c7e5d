"""Provider registry: provider id -> class.  One module (or package) per provider.

Adding a provider: write ``tokn/providers/NAME.py`` with a :class:`Provider`
subclass, export it in ``PROVIDERS`` and add the module to ``MODULES``.  The
pipeline, the proxy and the CLI (``tokn login`` / ``import`` / ``account``)
find it here; nothing else changes.
"""

from __future__ import annotations

from tokn.providers import anthropic, copilot, gemini, kiro, openai, zai
from tokn.providers.base import ModelInfo, Provider, UpstreamResponse

MODULES = (copilot, openai, anthropic, zai, kiro, gemini)
# `tokn login` / `tokn import --from env` without --provider
DEFAULT_PROVIDER = "github-copilot"

_registry: dict[str, type[Provider]] = {
    pid: cls for module in MODULES for cls in module.PROVIDERS for pid in (cls.id, *cls.ids)}


def provider_class(provider_id: str) -> type[Provider]:
    try:
        return _registry[provider_id]
    except KeyError:
        raise KeyError(
            f"unknown provider {provider_id!r}; known: {', '.join(sorted(_registry))}"
        ) from None


def provider_ids() -> list[str]:
    return sorted(_registry)


def provider_classes() -> list[type[Provider]]:
    """Every provider class once, in registry order."""
    return list(dict.fromkeys(_registry.values()))


def import_sources() -> dict[str, type[Provider] | None]:
    """``tokn import --from`` source -> the provider class reading it (``None``:
    ``env``, read for whichever provider ``--provider`` names)."""
    out: dict[str, type[Provider] | None] = {"env": None}
    for cls in provider_classes():
        for source in cls.import_sources:
            if source != "env":
                out.setdefault(source, cls)
    return out


__all__ = ["DEFAULT_PROVIDER", "ModelInfo", "Provider", "UpstreamResponse", "import_sources",
           "provider_class", "provider_classes", "provider_ids"]
