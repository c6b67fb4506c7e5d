"""Load tokn's routing into stock mitmproxy tools:

    mitmdump -s addons/tokn_addon.py            # same routing as `tokn proxy`
    mitmweb  -s addons/tokn_addon.py            # ...and watch flows in the web UI
    mitmdump -s addons/tokn_addon.py --set tokn_route_mode=passthrough

The routing, CA, allowlist and accounts come from the user's tokn config.
"""

from tokn.mitm.standalone import StandaloneAddon

addons = [StandaloneAddon()]
