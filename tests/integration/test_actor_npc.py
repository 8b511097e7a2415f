"""wy-actor persistent NPCs (issue 12 "Actors": a merchant's stock, a boss's respawn time are
actors too) on the real stack: created from WY_ACTOR_NPCS_FILE at start and by an operator
(CreateNpc, the NPC id is the key: again = unchanged), a merchant's stock changed by Apply
with idempotency keys, a boss killed and respawned no earlier than its respawn time, state
read back from snapshot + tail after eviction and after a restart equal to what was
answered, and a bad file refused at start."""
import json
import time
import uuid

import grpc
import pytest
from actor_helpers import served
from harness.wait import wait_until

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    return actor_pb2, actor_pb2_grpc


def npcs_file(tmp_path, npcs):
    p = tmp_path / "npcs.json"
    p.write_text(json.dumps({"npcs": npcs}))
    return str(p)


def events(stack, actor_id):
    return int(stack.psql("SELECT count(*) FROM actor.events WHERE actor_id = '%s'" % actor_id))


def test_npcs_from_data_and_operator_with_keys_snapshots_and_restart(daemon, stack, pb,
                                                                     tmp_path):
    m = pb[0]
    merchant, boss = str(uuid.uuid4()), str(uuid.uuid4())
    path = npcs_file(tmp_path, [
        {"id": merchant, "kind": "merchant", "name": "Greta", "zone": "oakvale", "x": 12,
         "y": 30, "stock": {"potion": 20, "rope": 5}},
        {"id": boss, "kind": "boss", "name": "Old Wyrm", "zone": "cinder_peak",
         "respawn_ms": 1500}])
    env = {"WY_ACTOR_NPCS_FILE": path, "WY_ACTOR_SNAPSHOT_EVERY": "3",
           "WY_ACTOR_MAX_RESIDENT": "1"}
    d = daemon("actor", env=env)
    st = pb[1].ActorStub(grpc.insecure_channel(d.grpc_addr))

    def get(actor_id):
        return served(lambda: st.GetCharacter(m.GetCharacterRequest(actor_id=actor_id),
                                              timeout=DEADLINE))
    wait_until(lambda: events(stack, merchant) == 1 and events(stack, boss) == 1, timeout=30,
               what="the file's NPCs created")
    g = get(merchant)
    assert (g.npc.kind, g.name, g.position.zone, g.account_id) == \
        ("merchant", "Greta", "oakvale", "")
    assert {s.item: s.count for s in g.inventory} == {"potion": 20, "rope": 5}
    assert (get(boss).npc.kind, get(boss).npc.alive) == ("boss", True)

    # An operator's NPC; the same id again changes nothing and answers it.
    op_id = str(uuid.uuid4())
    req = m.CreateNpcRequest(npc_id=op_id, kind="merchant", name="Tomas",
                             position=m.Position(zone="meadow", x=1, y=2),
                             stock=[m.ItemStack(item="bread", count=3)])
    made = st.CreateNpc(req, timeout=DEADLINE)
    assert (made.actor_id, made.npc.kind, made.seq) == (op_id, "merchant", 1)
    again = st.CreateNpc(m.CreateNpcRequest(npc_id=op_id, kind="boss", name="Other",
                                            position=m.Position(zone="x"), respawn_ms=5000),
                         timeout=DEADLINE)
    assert again == made and events(stack, op_id) == 1
    # A character's id is not an NPC's; a bad request is refused.
    ch = st.CreateCharacter(m.CreateCharacterRequest(
        account_id=str(uuid.uuid4()), name="c" + uuid.uuid4().hex[:12], class_name="mage"),
        timeout=DEADLINE)
    with pytest.raises(grpc.RpcError) as e:
        st.CreateNpc(m.CreateNpcRequest(npc_id=ch.actor_id, kind="merchant", name="N",
                                        position=m.Position(zone="z")), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as e:
        st.CreateNpc(m.CreateNpcRequest(npc_id=str(uuid.uuid4()), kind="boss", name="N",
                                        position=m.Position(zone="z")), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # The merchant's stock, with idempotency keys: a retry answers the first result.
    def apply(actor_id, key, **cmd):
        return st.Apply(m.ApplyRequest(actor_id=actor_id, idempotency_key=key, **cmd),
                        timeout=DEADLINE)
    sold = apply(merchant, "sale-1", remove_item=m.RemoveItem(item="potion", count=3))
    assert {s.item: s.count for s in sold.character.inventory}["potion"] == 17
    again = apply(merchant, "sale-1", remove_item=m.RemoveItem(item="potion", count=3))
    assert again.replayed and again.seq == sold.seq
    apply(merchant, "restock-1", add_item=m.AddItem(item="lamp", count=4))
    apply(merchant, "till-1", earn_currency=m.EarnCurrency(amount=60))
    with pytest.raises(grpc.RpcError) as e:
        apply(merchant, "xp-1", gain_xp=m.GainXp(amount=5))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        apply(merchant, "kill-m", kill_npc=m.KillNpc())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # The boss: killed once, refused a second kill and an early respawn, back after 1.5 s.
    t0 = int(time.time() * 1000)
    killed = apply(boss, "kill-1", kill_npc=m.KillNpc(killed_by=ch.actor_id))
    t1 = int(time.time() * 1000)
    assert not killed.character.npc.alive and killed.character.npc.kills == 1
    assert killed.character.npc.killed_by == ch.actor_id
    assert t0 + 1500 - 50 <= killed.character.npc.respawn_at_ms <= t1 + 1500 + 50
    assert apply(boss, "kill-1", kill_npc=m.KillNpc()).replayed
    for key, cmd in (("kill-2", dict(kill_npc=m.KillNpc())),
                     ("early", dict(respawn_npc=m.RespawnNpc()))):
        with pytest.raises(grpc.RpcError) as e:
            apply(boss, key, **cmd)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    tries = iter(range(1000))

    def respawned():
        try:
            return apply(boss, "respawn-%d" % next(tries), respawn_npc=m.RespawnNpc())
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            return None
    back = wait_until(respawned, timeout=30, interval=0.2, what="the boss respawns")
    assert back.character.npc.alive and back.character.npc.kills == 1
    apply(boss, "kill-3", kill_npc=m.KillNpc())

    # Snapshots every 3 events, one actor resident: each read reloads from snapshot + tail.
    want = {a: get(a) for a in (merchant, boss, op_id)}
    assert int(stack.psql("SELECT count(*) FROM actor.snapshots WHERE actor_id IN ('%s', '%s')"
                          % (merchant, boss))) >= 2
    for a, c in want.items():
        assert get(a) == c
    # A restart creates nothing new and loads the same NPCs.
    n_before = {a: events(stack, a) for a in want}
    d.stop()
    d2 = daemon("actor", env=env)
    st = pb[1].ActorStub(grpc.insecure_channel(d2.grpc_addr))
    d2.wait_log(lambda r: r.get("msg") == "NPCs from WY_ACTOR_NPCS_FILE in place", timeout=30)
    assert {a: events(stack, a) for a in want} == n_before
    for a, c in want.items():
        assert get(a) == c


def test_a_bad_npcs_file_stops_the_daemon_naming_the_entry(daemon, tmp_path):
    path = npcs_file(tmp_path, [{"id": str(uuid.uuid4()), "kind": "merchant", "name": "A",
                                 "zone": "z"},
                                {"id": "nope", "kind": "merchant", "name": "B", "zone": "z"}])
    d = daemon("actor", env={"WY_ACTOR_NPCS_FILE": path}, wait_ready=False)
    assert d.wait(30) == 2
    assert "npcs[1]: npc_id must be a lower-case UUID" in d.log_text()
