"""Issue 17 must-show 1 (chat): chat's Redis use unchanged on a real 3-node Redis Cluster.

Imported from tests/integration/test_chat.py and run with the cluster stack
(tests/cluster/conftest.py): the rate limiter (chat:rl:{<account>}), lobby's session index
read for an offline whisper (sess:{<account>}:acct) and the zone channel from world's
locator keys ({acct:<a>}, {char:<c>}, {zone:<z>}: one read per slot)."""

from test_chat import (  # noqa: F401 (fixtures and tests collected by pytest)
    pb,
    test_rate_limit_accepts_nothing_over_it,
    test_whisper_offline_until_next_login,
    test_zone_channel_follows_the_locator,
)
