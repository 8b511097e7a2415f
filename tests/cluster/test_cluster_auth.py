"""Issue 17 must-show 1 (auth): auth's Redis use unchanged on a real 3-node Redis Cluster.

Imported from tests/integration/test_auth.py and run with the cluster stack
(tests/cluster/conftest.py): failed-login rate limits (wy_ratelimit, one key per check),
revocations (the {revoked} slot: MGET of sid, account and marker) and their rebuild after
FLUSHALL of every node."""

from test_auth import (  # noqa: F401 (fixtures and tests collected by pytest)
    auth,
    keys,
    stub,
    test_ban_revokes_within_1s_and_refuses_login,
    test_failed_logins_per_account_and_source_get_429_with_retry_after,
    test_failed_logins_per_ip_get_429,
    test_introspect_never_active_for_a_revoked_token_through_a_flush,
    test_logout_is_seen_by_introspect_within_1s,
    test_register_then_password_login,
    test_the_account_wide_limit_holds_across_sources,
)
