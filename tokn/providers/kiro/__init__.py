"""Kiro (Amazon Q Developer / CodeWhisperer backend): the provider
(:mod:`.provider`), its tokens (:mod:`.tokens`), the chat -> Kiro request
(:mod:`.request`), Kiro's event stream -> chat (:mod:`.eventstream`,
:mod:`.response`) and its model ids (:mod:`.models`)."""

from tokn.providers.kiro.provider import KiroProvider

PROVIDERS = [KiroProvider]
