"""wy-actor with two instances: a CreateCharacter that reaches an instance owning no shard
(it has just joined; the other still holds every shard until its next view hands some over)
is forwarded to an instance that owns shards, not refused (issue 12: "a request that
reaches a non-owner is forwarded to the owner"). Its create key answers the same character
through either instance."""
import uuid

import grpc
import pytest
from actor_helpers import metric
from harness.wait import wait_until
from test_actor_owners import owner_of, shards_of

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    return actor_pb2, actor_pb2_grpc


def test_create_on_an_instance_owning_no_shard_is_forwarded(daemon, stack, pb):
    # a views (and so hands shards over) only every 20 s: b, started next, owns nothing
    # for that long.
    a = daemon("actor", env={"WY_ACTOR_HEARTBEAT": "20s", "WY_ACTOR_LEASE": "60s"})
    wait_until(lambda: shards_of(stack, a.instance_id) == 256, timeout=90, what="a owns all")
    b = daemon("actor", wait_ready=False)
    sb = pb[1].ActorStub(grpc.insecure_channel(b.grpc_addr))
    sa = pb[1].ActorStub(grpc.insecure_channel(a.grpc_addr))
    acct, key = str(uuid.uuid4()), "k-" + uuid.uuid4().hex
    req = pb[0].CreateCharacterRequest(account_id=acct, name="c" + uuid.uuid4().hex[:12],
                                       class_name="mage", idempotency_key=key)
    box = {}

    def created():  # once b's gRPC port is up (b is not ready yet, on purpose)
        try:
            box["made"] = sb.CreateCharacter(req, timeout=DEADLINE)
            return True
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            assert "owns a shard" not in (e.details() or ""), e  # refused, not forwarded
            return False
    wait_until(created, timeout=30, what="b answers CreateCharacter")
    made = box["made"]
    assert shards_of(stack, b.instance_id) == 0
    assert owner_of(stack, made.actor_id) == a.instance_id
    assert metric(b, "wy_actor_forwarded_total") == 1
    assert (made.account_id, made.level) == (acct, 1)
    # The create key answers the same character through either instance, no second one.
    assert sa.CreateCharacter(req, timeout=DEADLINE).actor_id == made.actor_id
    assert sb.CreateCharacter(req, timeout=DEADLINE).actor_id == made.actor_id
    assert metric(b, "wy_actor_forwarded_total") == 2  # b's retry went to a as well
    assert int(stack.psql("SELECT count(*) FROM actor.characters WHERE account_id = '%s'"
                          % acct)) == 1
    # A create forwarded once is not forwarded again: a (which owns shards) is never asked
    # to pass one on, and b answers a marked create itself (UNAVAILABLE while it owns none).
    md = (("wy-actor-forwarded-by", "test"),)
    with pytest.raises(grpc.RpcError) as e:
        sb.CreateCharacter(pb[0].CreateCharacterRequest(
            account_id=acct, name="c" + uuid.uuid4().hex[:12], class_name="mage"),
            timeout=DEADLINE, metadata=md)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert metric(b, "wy_actor_forwarded_total") == 2
