"""Files shipped inside the tokn package (so a non-editable install has them).

``tokn paths NAME`` prints where each one is, e.g.
``mitmdump -s "$(tokn paths addon)"`` or ``. "$(tokn paths shell-sh)"``.
"""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parent

# name -> (path under this directory, what it is)
FILES: dict[str, tuple[str, str]] = {
    "ca-readme": ("ca/README.md", "the local CA: trust, removal, risks"),
    "shell-sh": ("shell/tokn.sh", "tokn_on / tokn_off for sh, bash, zsh"),
    "shell-fish": ("shell/tokn.fish", "tokn_on / tokn_off for fish"),
    "shell-pwsh": ("shell/tokn.ps1", "Enable-Tokn / Disable-Tokn for PowerShell"),
    "addon": ("addons/tokn_addon.py", "tokn's routing for stock mitmdump -s / mitmweb -s"),
}


def path(name: str) -> Path:
    """The installed path of the shipped file ``name`` (a key of :data:`FILES`)."""
    return DIR / FILES[name][0]
