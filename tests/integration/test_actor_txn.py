"""wy-actor cross-actor transactions (Actor.Transact: trade, gift) with real PostgreSQL:
answers and idempotent txn ids, 1,000 concurrent trades between overlapping pairs that
conserve every item and every coin, and kill -9 of the coordinator's instance in the
middle of a batch of trades: each transaction is in PostgreSQL whole or not at all."""
import random
import threading
import time
import uuid

import grpc
import pytest

from actor_helpers import metric
from harness.wait import wait_until

DEADLINE = 10  # seconds per call: generous for a loaded 2-core machine
GOLD0, GEMS0, ORE0 = 100000, 1000, 1000


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    return actor_pb2, actor_pb2_grpc


def start(daemon, **env):
    return daemon("actor", env=env)


def stub(d, pb):
    ch = grpc.insecure_channel(d.grpc_addr)
    return pb[1].ActorStub(ch), ch


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


def character(st, pb, gold=GOLD0, gems=GEMS0, ore=ORE0):
    """A new character holding gold, gems and ore."""
    m = pb[0]
    c = st.CreateCharacter(m.CreateCharacterRequest(
        account_id=str(uuid.uuid4()), name="t" + uuid.uuid4().hex[:12], class_name="rogue"),
        timeout=DEADLINE)
    if gold:
        st.Apply(m.ApplyRequest(actor_id=c.actor_id, idempotency_key="g",
                                earn_currency=m.EarnCurrency(amount=gold)), timeout=DEADLINE)
    for item, n in (("gem", gems), ("ore", ore)):
        if n:
            st.Apply(m.ApplyRequest(actor_id=c.actor_id, idempotency_key=item,
                                    add_item=m.AddItem(item=item, count=n)), timeout=DEADLINE)
    return c.actor_id


def items(c):
    return {s.item: s.count for s in c.inventory}


def trade(pb, txn, a, b, a_items=(), a_gold=0, b_items=(), b_gold=0):
    m = pb[0]
    side = lambda actor, its, gold: m.TradeSide(  # noqa: E731
        actor_id=actor, gold=gold, items=[m.ItemStack(item=i, count=n) for i, n in its])
    return m.TransactRequest(txn_id=txn, trade=m.Trade(a=side(a, a_items, a_gold),
                                                       b=side(b, b_items, b_gold)))


def totals(st, pb, actors):
    gold = gems = ore = 0
    for a in actors:
        c = st.GetCharacter(pb[0].GetCharacterRequest(actor_id=a), timeout=DEADLINE)
        gold += c.gold
        gems += items(c).get("gem", 0)
        ore += items(c).get("ore", 0)
    return gold, gems, ore


def traded_events(stack, pb, actors):
    """{txn_id: [actor_id, ...]} of the traded events of these actors in PostgreSQL."""
    ids = ",".join("'%s'" % a for a in actors)
    out = {}
    rows = stack.psql("SELECT actor_id, encode(payload, 'hex') FROM actor.events "
                      "WHERE type = 'traded' AND actor_id IN (%s)" % ids)
    for line in rows.splitlines():
        actor, payload = line.split("|")
        ev = pb[0].Event.FromString(bytes.fromhex(payload))
        out.setdefault(ev.traded.txn_id, []).append(actor)
    return out


def committed_txns(stack, actors):
    ids = ",".join("'%s'" % a for a in actors)
    rows = stack.psql("SELECT txn_id FROM actor.txns WHERE status = 0 AND actor_a IN (%s)" % ids)
    return set(rows.split()) if rows else set()


def test_trade_gift_refusal_and_retried_txn_id(daemon, stack, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    m = pb[0]
    a, b = character(st, pb, gold=100, gems=5, ore=0), character(st, pb, gold=50, gems=0, ore=3)
    txn = str(uuid.uuid4())
    req = trade(pb, txn, a, b, a_items=[("gem", 2)], a_gold=30, b_items=[("ore", 3)], b_gold=5)
    r = st.Transact(req, timeout=DEADLINE)
    assert not r.replayed and r.txn_id == txn and len(r.characters) == 2
    ca, cb = r.characters
    assert (ca.actor_id, ca.gold, items(ca)) == (a, 75, {"gem": 3, "ore": 3})
    assert (cb.actor_id, cb.gold, items(cb)) == (b, 75, {"gem": 2})
    got = st.GetCharacter(m.GetCharacterRequest(actor_id=b), timeout=DEADLINE)
    assert got.gold == 75 and items(got) == {"gem": 2}
    assert {k: sorted(v) for k, v in traded_events(stack, pb, [a, b]).items()} == \
        {txn: sorted([a, b])}

    # The same txn_id again: the first result, no second effect.
    again = st.Transact(req, timeout=DEADLINE)
    assert again.replayed and [c.gold for c in again.characters] == [75, 75]
    assert len(traded_events(stack, pb, [a, b])[txn]) == 2
    assert st.GetCharacter(m.GetCharacterRequest(actor_id=a), timeout=DEADLINE).gold == 75

    # A gift: one side gives, the other only receives.
    g = st.Transact(m.TransactRequest(txn_id=str(uuid.uuid4()), gift=m.Gift(
        from_actor_id=b, to_actor_id=a, gold=10, items=[m.ItemStack(item="gem", count=1)])),
        timeout=DEADLINE)
    assert [c.gold for c in g.characters] == [65, 85]
    assert items(g.characters[1])["gem"] == 4

    # A side lacking what it gives: refused, nothing written, and refused again on retry
    # even once it could pay.
    poor = str(uuid.uuid4())
    big = trade(pb, poor, a, b, a_gold=1000)
    assert code_of(lambda: st.Transact(big, timeout=DEADLINE)) == \
        grpc.StatusCode.FAILED_PRECONDITION
    st.Apply(m.ApplyRequest(actor_id=a, idempotency_key="rich",
                            earn_currency=m.EarnCurrency(amount=5000)), timeout=DEADLINE)
    assert code_of(lambda: st.Transact(big, timeout=DEADLINE)) == \
        grpc.StatusCode.FAILED_PRECONDITION
    assert poor not in traded_events(stack, pb, [a, b])
    assert st.GetCharacter(m.GetCharacterRequest(actor_id=a), timeout=DEADLINE).gold == 5085

    # Malformed requests and unknown characters.
    for bad in (trade(pb, str(uuid.uuid4()), a, a, a_gold=1),          # one character
                trade(pb, str(uuid.uuid4()), a, b),                    # nothing given
                trade(pb, "", a, b, a_gold=1),                         # no txn id
                trade(pb, str(uuid.uuid4()), a, b, a_items=[("gem", 1), ("gem", 1)]),
                trade(pb, str(uuid.uuid4()), a, "not-a-uuid", a_gold=1)):
        assert code_of(lambda: st.Transact(bad, timeout=DEADLINE)) == \
            grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: st.Transact(trade(pb, str(uuid.uuid4()), a, str(uuid.uuid4()),
                                             a_gold=1), timeout=DEADLINE)) == \
        grpc.StatusCode.NOT_FOUND
    # A full inventory on the receiving side is a bound, not a shape error.
    c = character(st, pb, gold=0, gems=0, ore=0)
    for i in range(256):
        st.Apply(m.ApplyRequest(actor_id=c, idempotency_key="k%d" % i,
                                add_item=m.AddItem(item="thing%d" % i, count=1)),
                 timeout=DEADLINE)
    assert code_of(lambda: st.Transact(trade(pb, str(uuid.uuid4()), a, c, a_items=[("gem", 1)]),
                                       timeout=DEADLINE)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    ch.close()


def test_retried_txn_ids_in_the_same_group_commit_as_new_ones(daemon, stack, pb):
    """Transactions decided in one loop turn share one commit; a retried txn_id among them
    makes that commit fail, and each is then written on its own: the retries answer their
    first result, the new ones commit once."""
    d = start(daemon, WY_LOG_LEVEL="debug")
    st, ch = stub(d, pb)
    actors = [character(st, pb) for _ in range(16)]
    before = totals(st, pb, actors)
    pairs = [(actors[2 * i], actors[2 * i + 1]) for i in range(8)]
    first = {}
    for i, (a, b) in enumerate(pairs):
        req = trade(pb, str(uuid.uuid4()), a, b, a_gold=i + 1, b_items=[("ore", 1)])
        first[req.txn_id] = (req, st.Transact(req, timeout=DEADLINE))
    fresh = [trade(pb, str(uuid.uuid4()), b, a, a_gold=1, b_items=[("gem", 2)])
             for a, b in pairs]
    answers, lock = {}, threading.Lock()

    def send(req):
        for _ in range(20):
            try:
                r = st.Transact(req, timeout=DEADLINE)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    continue
                raise
            with lock:
                answers.setdefault(req.txn_id, []).append(r)
            return

    reqs = [r for r, _ in first.values()] * 2 + fresh
    random.Random(5).shuffle(reqs)
    ts = [threading.Thread(target=send, args=(r,)) for r in reqs]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    for txn, (req, r0) in first.items():
        assert [a.replayed for a in answers[txn]] == [True, True]
        assert all([c.gold for c in a.characters] == [c.gold for c in r0.characters]
                   for a in answers[txn])
    for req in fresh:
        assert [a.replayed for a in answers[req.txn_id]] == [False]
    ev = traded_events(stack, pb, actors)
    assert set(ev) == set(first) | {r.txn_id for r in fresh}
    assert all(len(v) == 2 for v in ev.values())
    assert totals(st, pb, actors) == before
    ch.close()


def run_trades(st, pb, actors, n, threads, acked, sent, stop=None, seed=7):
    """n trades over random overlapping pairs of actors, from `threads` threads; each
    txn id is retried while the answer is UNAVAILABLE. acked gets the ids answered OK,
    sent every id sent at least once."""
    lock = threading.Lock()
    rng = random.Random(seed)
    plan = []
    for i in range(n):
        a, b = rng.sample(actors, 2)
        plan.append(trade(pb, str(uuid.uuid4()), a, b,
                          a_items=[("gem", rng.randint(1, 3))], a_gold=rng.randint(0, 40),
                          b_items=[("ore", rng.randint(1, 3))] if rng.random() < 0.7 else [],
                          b_gold=rng.randint(0, 40)))
    todo = list(reversed(plan))
    refused = []

    def worker():
        while True:
            with lock:
                if not todo or (stop and stop.is_set()):
                    return
                req = todo.pop()
                sent.append(req.txn_id)
            for _ in range(20):
                try:
                    st.Transact(req, timeout=DEADLINE)
                except grpc.RpcError as e:
                    if e.code() in (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.DEADLINE_EXCEEDED):
                        if stop and stop.is_set():
                            return
                        continue
                    with lock:
                        refused.append((req.txn_id, e.code()))
                    break
                with lock:
                    acked.append(req.txn_id)
                break

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    return ts, refused


def test_1000_concurrent_trades_conserve_items_and_gold(daemon, stack, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    m = pb[0]
    actors = [character(st, pb) for _ in range(12)]
    before = totals(st, pb, actors)
    # Single-actor commands on the same characters run meanwhile (they queue behind and
    # between the holds): XP moves nothing that is traded.
    xp_stop = threading.Event()

    def xp():
        i = 0
        while not xp_stop.is_set():
            a = actors[i % len(actors)]
            try:
                st.Apply(m.ApplyRequest(actor_id=a, idempotency_key="xp%d" % i,
                                        gain_xp=m.GainXp(amount=1)), timeout=DEADLINE)
            except grpc.RpcError:
                pass
            i += 1

    xt = threading.Thread(target=xp, daemon=True)
    xt.start()
    acked, sent = [], []
    ts, refused = run_trades(st, pb, actors, 1000, 32, acked, sent)
    for t in ts:
        t.join(600)
    xp_stop.set()
    xt.join(60)
    assert not any(t.is_alive() for t in ts), "trades did not finish"
    # Nothing else than "not enough" may refuse a trade here.
    assert all(code == grpc.StatusCode.FAILED_PRECONDITION for _, code in refused), refused
    assert len(acked) + len(refused) == 1000, "a trade stayed unavailable after 20 tries"
    assert len(acked) > 500
    assert totals(st, pb, actors) == before
    # PostgreSQL agrees: every acknowledged trade is there with both sides' events, and
    # nothing else is.
    ev = traded_events(stack, pb, actors)
    assert set(ev) == set(acked) == committed_txns(stack, actors)
    assert all(len(sides) == 2 and len(set(sides)) == 2 for sides in ev.values())
    ch.close()


def trade_load(daemon, pb, n_acked, seed):
    """A daemon with 10 characters under 32 streams of trades, returned once n_acked were
    acknowledged: (daemon, channel, actors, totals before, acked, sent, stop, threads)."""
    d = start(daemon)
    st, ch = stub(d, pb)
    actors = [character(st, pb) for _ in range(10)]
    before = totals(st, pb, actors)
    acked, sent = [], []
    stop = threading.Event()
    ts, _ = run_trades(st, pb, actors, 5000, 32, acked, sent, stop=stop, seed=seed)
    wait_until(lambda: len(acked) >= n_acked, timeout=120,
               what="%d acknowledged trades" % n_acked)
    return d, ch, actors, before, acked, sent, stop, ts


def test_kill9_of_the_coordinator_mid_batch_leaves_each_trade_whole_or_absent(
        daemon, stack, pb):
    d, ch, actors, before, acked, sent, stop, ts = trade_load(daemon, pb, 200, seed=11)
    d.kill9()
    stop.set()
    for t in ts:
        t.join(60)
    ch.close()
    acked_now, sent_now = list(acked), list(sent)
    assert len(sent_now) > len(acked_now), "no trade was in flight at the kill"

    # Straight from PostgreSQL: each trade has both events and its txns row, or nothing.
    ev = traded_events(stack, pb, actors)
    committed = committed_txns(stack, actors)
    assert set(ev) == committed
    assert all(sorted(ev[t]) == sorted(set(ev[t])) and len(ev[t]) == 2 for t in ev)
    assert set(acked_now) <= committed, "an acknowledged trade is missing after kill -9"
    assert committed <= set(sent_now)

    # A restarted instance loads every character from PostgreSQL: nothing was created or
    # lost, and a retried txn id that committed answers its first result.
    d2 = start(daemon)
    st2, ch2 = stub(d2, pb)
    # The killed instance's shards are taken over once its lease ran out (WY_ACTOR_LEASE).
    wait_until(lambda: int(stack.psql("SELECT count(*) FROM actor.owners WHERE instance = '%s'"
                                      % d2.instance_id)) == 256,
               timeout=30, what="the new instance owns every shard")
    assert totals(st2, pb, actors) == before
    in_flight = sorted(committed - set(acked_now))
    for txn in in_flight[:5]:
        r = st2.Transact(pb[0].TransactRequest(txn_id=txn, gift=pb[0].Gift(
            from_actor_id=actors[0], to_actor_id=actors[1], gold=1)), timeout=DEADLINE)
        assert r.replayed
    assert totals(st2, pb, actors) == before
    ch2.close()


# ---- friends: each change a cross-actor transaction ----

def friends(st, pb, actor):
    fl = st.ListFriends(pb[0].ListFriendsRequest(actor_id=actor), timeout=DEADLINE)
    return {f.actor_id: pb[0].Friend.Status.Name(f.status) for f in fl.friends}


def friend(st, pb, method, actor, other, txn=None):
    return getattr(st, method)(pb[0].FriendCommand(actor_id=actor, other_actor_id=other,
                                                   txn_id=str(uuid.uuid4()) if txn is None else txn),
                               timeout=DEADLINE)


def test_friends_request_accept_decline_remove_list(daemon, stack, pb):
    # A snapshot every 3 events: the friends must survive one, and a restart.
    d = start(daemon, WY_ACTOR_SNAPSHOT_EVERY="3")
    st, ch = stub(d, pb)
    m = pb[0]
    a, b, c = (character(st, pb, gold=0, gems=0, ore=0) for _ in range(3))
    txn = str(uuid.uuid4())
    r = friend(st, pb, "RequestFriend", a, b, txn)
    assert [(f.actor_id, f.status) for f in r.friends] == [(b, m.Friend.OUTGOING)]
    assert not r.replayed
    got = st.GetCharacter(m.GetCharacterRequest(actor_id=a), timeout=DEADLINE)
    assert r.friends[0].name == st.GetCharacter(m.GetCharacterRequest(actor_id=b),
                                                timeout=DEADLINE).name
    assert friends(st, pb, b) == {a: "INCOMING"}
    in_b = st.ListFriends(m.ListFriendsRequest(actor_id=b), timeout=DEADLINE).friends[0]
    assert (in_b.account_id, in_b.name) == (got.account_id, got.name)
    # The same txn id: the first answer, no second event; a new one: already asked.
    assert friend(st, pb, "RequestFriend", a, b, txn).replayed
    assert code_of(lambda: friend(st, pb, "RequestFriend", a, b)) == \
        grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: friend(st, pb, "AcceptFriend", a, b)) == \
        grpc.StatusCode.FAILED_PRECONDITION  # a asked; only b can accept
    r = friend(st, pb, "AcceptFriend", b, a)
    assert [(f.actor_id, f.status) for f in r.friends] == [(a, m.Friend.FRIEND)]
    assert friends(st, pb, a) == {b: "FRIEND"}
    # c asks a, a declines: gone on both sides.
    friend(st, pb, "RequestFriend", c, a)
    assert friends(st, pb, a) == {b: "FRIEND", c: "INCOMING"}
    friend(st, pb, "DeclineFriend", a, c)
    assert friends(st, pb, a) == {b: "FRIEND"} and friends(st, pb, c) == {}
    # Asking someone who asked you already is a yes.
    friend(st, pb, "RequestFriend", c, b)
    friend(st, pb, "RequestFriend", b, c)
    assert friends(st, pb, b) == {a: "FRIEND", c: "FRIEND"} and friends(st, pb, c) == {b: "FRIEND"}
    friend(st, pb, "RemoveFriend", a, b)
    assert friends(st, pb, a) == {} and friends(st, pb, b) == {c: "FRIEND"}
    assert code_of(lambda: friend(st, pb, "RemoveFriend", a, b)) == \
        grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: friend(st, pb, "RequestFriend", a, a)) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: friend(st, pb, "RequestFriend", a, str(uuid.uuid4()))) == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: friend(st, pb, "RequestFriend", a, b, txn="")) == \
        grpc.StatusCode.INVALID_ARGUMENT
    # By the other's name, and only for a character of the given account.
    ga = st.GetCharacter(m.GetCharacterRequest(actor_id=a), timeout=DEADLINE)
    gc = st.GetCharacter(m.GetCharacterRequest(actor_id=c), timeout=DEADLINE)
    assert code_of(lambda: st.RequestFriend(m.FriendCommand(
        actor_id=c, other_name=ga.name.upper(), txn_id=str(uuid.uuid4()),
        account_id=ga.account_id), timeout=DEADLINE)) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: st.RequestFriend(m.FriendCommand(
        actor_id=c, other_name="nobody" + uuid.uuid4().hex[:8], txn_id=str(uuid.uuid4())),
        timeout=DEADLINE)) == grpc.StatusCode.NOT_FOUND
    r = st.RequestFriend(m.FriendCommand(actor_id=c, other_name=ga.name.upper(),
                                         txn_id=str(uuid.uuid4()), account_id=gc.account_id),
                         timeout=DEADLINE)
    assert [(f.actor_id, f.status) for f in r.friends] == [(a, m.Friend.OUTGOING), (b, m.Friend.FRIEND)] \
        or sorted((f.actor_id, f.status) for f in r.friends) == \
        sorted([(a, m.Friend.OUTGOING), (b, m.Friend.FRIEND)])
    friend(st, pb, "DeclineFriend", a, c)
    # Both events of every change are in PostgreSQL, in pairs.
    kinds = stack.psql("SELECT type, count(*) FROM actor.events WHERE actor_id IN ('%s','%s','%s') "
                       "AND type LIKE 'friend%%' GROUP BY type ORDER BY type" % (a, b, c))
    assert dict(line.split("|") for line in kinds.splitlines()) == {
        "friend_added": "4", "friend_removed": "2", "friend_request_declined": "4",
        "friend_request_received": "4", "friend_request_sent": "4"}
    assert int(stack.psql("SELECT count(*) FROM actor.snapshots WHERE actor_id = '%s'" % b)) > 0
    d.kill9()
    d2 = start(daemon)
    st2, ch2 = stub(d2, pb)
    assert friends(st2, pb, b) == {c: "FRIEND"} and friends(st2, pb, c) == {b: "FRIEND"}
    assert friends(st2, pb, a) == {}
    ch.close()
    ch2.close()


def test_concurrent_friend_requests_agree_on_both_sides(daemon, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    actors = [character(st, pb, gold=0, gems=0, ore=0) for _ in range(8)]
    pairs = [(x, y) for x in actors for y in actors if x != y]
    random.Random(3).shuffle(pairs)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not pairs:
                    return
                x, y = pairs.pop()
            for method in ("RequestFriend", "AcceptFriend"):
                try:
                    friend(st, pb, method, x, y)
                except grpc.RpcError as e:
                    assert e.code() in (grpc.StatusCode.ALREADY_EXISTS,
                                        grpc.StatusCode.FAILED_PRECONDITION), e

    ts = [threading.Thread(target=worker) for _ in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    views = {x: friends(st, pb, x) for x in actors}
    mirror = {"FRIEND": "FRIEND", "INCOMING": "OUTGOING", "OUTGOING": "INCOMING"}
    for x in actors:
        for y, status in views[x].items():
            assert views[y].get(x) == mirror[status], (x, y, status, views[y].get(x))
    # Every ordered pair asked: everybody is everybody's friend.
    assert all(len(v) == len(actors) - 1 and set(v.values()) == {"FRIEND"}
               for v in views.values())
    ch.close()


def test_sigterm_under_a_load_of_trades_exits_0_and_keeps_each_whole(daemon, stack, pb):
    d, ch, actors, before, acked, sent, stop, ts = trade_load(daemon, pb, 100, seed=13)
    assert d.stop() == 0, "wy-actor did not exit 0 on SIGTERM under load"
    stop.set()
    for t in ts:
        t.join(60)
    ch.close()
    ev = traded_events(stack, pb, actors)
    committed = committed_txns(stack, actors)
    assert set(ev) == committed and all(len(v) == 2 for v in ev.values())
    assert set(acked) <= committed
    d2 = start(daemon)
    st2, ch2 = stub(d2, pb)
    assert totals(st2, pb, actors) == before
    ch2.close()


def retry_unavailable(fn):
    """fn() retried while UNAVAILABLE (shard ownership settling after a start)."""
    for _ in range(200):
        try:
            return fn()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        time.sleep(0.05)
    raise AssertionError("no answer")


def test_two_instances_forward_a_transaction_to_the_owner_of_both_sides(daemon, stack, pb):
    """With two instances, a transaction whose characters one instance owns is served from
    either (the other forwards the whole call); characters owned by two different
    instances are traded too (one side held through its owner)."""
    a, b = start(daemon), start(daemon)

    def spread():
        na = int(stack.psql("SELECT count(*) FROM actor.owners WHERE instance = '%s'"
                            % a.instance_id))
        nb = int(stack.psql("SELECT count(*) FROM actor.owners WHERE instance = '%s'"
                            % b.instance_id))
        return na > 0 and nb > 0 and na + nb == 256

    wait_until(spread, timeout=30, what="shards spread on two instances")
    sa, cha = stub(a, pb)
    sb, chb = stub(b, pb)
    m = pb[0]
    on_b = retry_unavailable

    # Characters created through b live in b's shards.
    x, y = (on_b(lambda: character(sb, pb, gems=0, ore=0)) for _ in range(2))
    z = on_b(lambda: character(sa, pb, gems=0, ore=0))
    r = on_b(lambda: sa.Transact(trade(pb, "fwd-" + x, x, y, a_gold=7), timeout=DEADLINE))
    assert not r.replayed and [c.gold for c in r.characters] == [GOLD0 - 7, GOLD0 + 7]
    again = on_b(lambda: sb.Transact(trade(pb, "fwd-" + x, x, y, a_gold=7), timeout=DEADLINE))
    assert again.replayed
    fl = on_b(lambda: sa.RequestFriend(m.FriendCommand(actor_id=x, other_actor_id=y,
                                                       txn_id="fwd-f-" + x), timeout=DEADLINE))
    assert [f.actor_id for f in fl.friends] == [y]
    assert metric(a, "wy_actor_forwarded_total") >= 2  # the trade and the friend request
    # Sides on two instances: one holds its side, the other coordinates
    # (tests/integration/test_actor_txn_remote.py covers it in depth).
    r = on_b(lambda: sa.Transact(trade(pb, "mixed-" + x, x, z, a_gold=1), timeout=DEADLINE))
    assert [c.gold for c in r.characters] == [GOLD0 - 8, GOLD0 + 1]
    assert sorted(traded_events(stack, pb, [x, y, z])["mixed-" + x]) == sorted([x, z])
    assert sb.GetCharacter(m.GetCharacterRequest(actor_id=x), timeout=DEADLINE).gold == GOLD0 - 8
    cha.close()
    chb.close()
