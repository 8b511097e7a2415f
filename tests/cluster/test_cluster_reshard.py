"""Issue 17 must-show 1 (migration): `redis-cli --cluster reshard` moves slots, keys and all,
while two lobby instances serve a login storm; no client sees an error.

Each storm thread owns its accounts (no duplicate-login conflicts by design) and loops: hello,
heartbeat, presence of its own account (must be ONLINE), logout (must close 1000). Any other
answer is a client-visible error. The reshard moves a third of one node's slots, including
slots holding the storm's keys (every account keeps its fence epoch key), so the daemons'
commands meet ASK, TRYAGAIN and MOVED during and after the move."""
import threading
import uuid

from harness import rkeys
from harness.wait import wait_until
from test_lobby import Client, keys, start_lobby, token  # noqa: F401

THREADS = 6
ACCOUNTS_PER_THREAD = 40


def one_round(url, tok, acct, errors):
    c = None
    try:
        c = Client(url, timeout=20)
        w = c.hello(tok)
        if w is None or w.status.code != 0:
            errors.append(("hello", acct, w and w.status.code, w and w.status.message,
                           c.close_code))
            return False
        r = c.call(heartbeat=c.pb.Heartbeat())
        if r is None or r.status.code != 0:
            errors.append(("heartbeat", acct, r and r.status.code))
            return False
        r = c.call(get_presence=c.pb.GetPresence(account_ids=[acct]))
        if r is None or r.status.code != 0 or r.presence.entries[0].state != c.pb.ONLINE:
            errors.append(("presence", acct, r and r.status.code, r and r.status.message))
            return False
        r = c.call(logout=c.pb.Logout())
        if r is None or r.WhichOneof("body") != "logged_out" or c.wait_closed() != 1000:
            errors.append(("logout", acct, c.close_code, c.close_reason))
            return False
        return True
    except Exception as e:  # a refused or dropped connection is an error a client sees
        errors.append(("exception", acct, repr(e)))
        return False
    finally:
        if c:
            c.close()


def test_reshard_during_login_storm_no_client_error(daemon, protos, keys, free_port, stack,
                                                    cluster):
    lobbies = [start_lobby(daemon, keys, free_port, MAX_CONNECTIONS="1000",
                           SESSION_TTL="30s", IDLE_TIMEOUT="20s") for _ in range(2)]
    tag = uuid.uuid4().hex[:6]
    accounts = [["acct-%s-%d-%d" % (tag, t, i) for i in range(ACCOUNTS_PER_THREAD)]
                for t in range(THREADS)]
    errors, done = [], [0] * THREADS
    stop = threading.Event()

    def storm(t):
        i = 0
        while not stop.is_set():
            acct = accounts[t][i % ACCOUNTS_PER_THREAD]
            if one_round(lobbies[(t + i) % 2].ws_url, token(keys, acct), acct, errors):
                done[t] += 1
            i += 1

    threads = [threading.Thread(target=storm, args=(t,), daemon=True) for t in range(THREADS)]
    for th in threads:
        th.start()
    try:
        # Every account has logged in once: its epoch key sits in its slot.
        wait_until(lambda: sum(done) >= THREADS * ACCOUNTS_PER_THREAD or errors, timeout=180,
                   interval=0.2, what="a first login of every account")
        assert not errors, errors[:10]
        src, dst = cluster.ports[0], cluster.ports[1]
        slots = {int(cluster.cli("CLUSTER", "KEYSLOT", rkeys.sess_epoch(a)))
                 for a in sum(accounts, [])}
        before_src = {s for s in slots if cluster.slot_owner(s) == src}
        assert before_src, "no storm account on the source node: the test would prove nothing"
        logins_before = sum(done)
        cluster.reshard(src, dst, 1800)
        logins_during = sum(done) - logins_before
        moved = {s for s in before_src if cluster.slot_owner(s) == dst}
        assert moved, "the reshard moved none of the storm's slots"
        # A little more storm after the move: the daemons' old slot map meets MOVED.
        target = sum(done) + THREADS * 5
        wait_until(lambda: sum(done) >= target or errors, timeout=120, interval=0.2,
                   what="logins after the reshard")
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=60)
    assert not errors, "client-visible errors during the reshard: %d, first: %s" % (
        len(errors), errors[:10])
    assert logins_during > 0, "no login completed while slots moved"
    # Both instances followed the move (MOVED, then a new slot map), not just luck.
    for d in lobbies:
        assert "slot map changed" in d.log_text(), d.instance_id
    # The moved accounts' keys moved with their slots (now served by the destination).
    for a in sum(accounts, []):
        s = int(cluster.cli("CLUSTER", "KEYSLOT", rkeys.sess_epoch(a)))
        if s in moved:
            assert cluster.cli("EXISTS", rkeys.sess_epoch(a)) == "1", a
    print("storm: %d logins, %d while %d of the storm's slots moved" % (
        sum(done), logins_during, len(moved)))
