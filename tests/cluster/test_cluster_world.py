"""Issue 17 must-show 1 (world): world's Redis use unchanged on a real 3-node Redis Cluster.

Imported from tests/integration/test_world.py; only clean_redis differs: the cluster has one
database, so each test starts from FLUSHALL of every node and world gets the cluster URL.
Placement, its idempotence under 20 concurrent places, full and instanced zones, portals and
dead-game moves: every script on one {zone:<z>}, {char:<c>} or {games} slot."""

import pytest

from test_world import (  # noqa: F401 (fixtures and tests collected by pytest)
    games,
    pb,
    test_concurrent_places_make_one_placement,
    test_dead_game_zones_are_placed_on_a_live_one,
    test_full_and_instanced_zones,
    test_place_is_idempotent_and_located,
    test_transfer_through_a_portal,
    test_two_replicas_and_a_restart_share_the_world,
)


@pytest.fixture
def clean_redis(stack):
    stack.cluster.flushall()
    return stack.redis_url, 0
