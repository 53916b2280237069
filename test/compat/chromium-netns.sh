#!/bin/sh
# Starts Chromium for console.test.mjs in a network namespace of its own:
# sandboxes coming and going (this daemon's, or any other on the host) add
# and remove host interfaces, and Chromium answers each change by failing
# its requests in flight with net::ERR_NETWORK_CHANGED. Inside, only
# loopback exists; chromium-netns.mjs bridges the daemon's port to it.
exec unshare --net node "$(dirname "$0")/chromium-netns.mjs" "$@"
