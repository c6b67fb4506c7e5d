"""Load tokn's routing into stock mitmproxy tools:

    mitmdump -s "$(tokn paths addon)"           # same routing as `tokn proxy`
    mitmweb  -s "$(tokn paths addon)"           # ...and watch flows in the web UI
    mitmdump -s "$(tokn paths addon)" --set tokn_route_mode=passthrough

The routing, CA, allowlist and accounts come from the user's tokn config.
"""

from tokn.standalone import StandaloneAddon

addons = [StandaloneAddon()]
