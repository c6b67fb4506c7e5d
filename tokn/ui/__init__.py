"""tokn's web dashboard, served by the listener at ``/ui/``.

Server-rendered pages (Jinja2, autoescaped), charts drawn as SVG on the
server (:mod:`tokn.ui.charts`), one small script of our own for the live tail
and refreshes; every asset ships in this package.  The gate (who may read,
who may change) is :mod:`tokn.server.ui_auth`.
"""
