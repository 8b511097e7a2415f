"""Issue 17 must-show 1 (lobby): lobby's Redis use unchanged on a real 3-node Redis Cluster.

These integration tests run here as they are, imported from tests/integration/test_lobby.py;
only the stack fixture differs (tests/cluster/conftest.py): WY_REDIS_URL is
redis+cluster://..., redis_cli follows redirects. Covered: the lobby race (200 concurrent
hellos of one account over two instances -> 1 live session, both policies), nicknames and
presence (nickname index in its own slot), kicks across instances, reject-new after a kill -9
(the owner's liveness read in another slot), release on disconnect and idle."""

from test_lobby import (  # noqa: F401 (fixtures and tests collected by pytest)
    keys,
    test_100_concurrent_claims_of_one_nickname,
    test_200_concurrent_logins_leave_one_session,
    test_disconnect_releases_and_idle_closes_4005,
    test_grpc_kick_and_notices_reach_other_instance,
    test_hello_welcome_heartbeat_logout,
    test_kick_old_across_instances,
    test_kill9_instance_then_login_elsewhere_within_fence_time,
    test_nickname_cooldown_and_presence,
    test_nickname_rules_and_lookalikes,
    test_reject_new_across_instances,
)
