"""Google Gemini: API keys against the Gemini API (``gemini``), and the Gemini
CLI's Google sign-in against Code Assist (``gemini-cli``)."""

from tokn.providers.gemini.api import GeminiProvider
from tokn.providers.gemini.code_assist import GeminiCliProvider

PROVIDERS = [GeminiProvider, GeminiCliProvider]

__all__ = ["PROVIDERS", "GeminiCliProvider", "GeminiProvider"]
