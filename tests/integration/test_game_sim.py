"""wy-game's simulation against real daemons (wy-world on Redis, Kafka), through the client
protocol only, with the update frames decoded here in Python from the wire format of
services/game/README.md (so the format is enough to write a client in another language):
two players see each other appear and move while a far third does not, until it walks close;
a player crossing the border between two partitions of a zone stays visible to everyone and
connected; cheats (teleport, speed hack, wall walk, input flood) are refused, none accepted,
each counted by reason on /metrics; a client that stops reading is closed with 4008 while its
partition's tick overruns stay where they were; the statistics on gRPC Game.Stats and the
object-change stream on Kafka wy.stats."""
import socket
import threading
import time
import uuid

import grpc
import pytest
import websocket

from harness.kafka import series
from harness.wait import wait_until
from test_game_join import (DEADLINE, clean_redis, pb, signer, start_game, start_world,  # noqa: F401
                            ticket, wait_registered, world_stub)

Q = 16.0  # position units per metre
WALK_E, WALK_S, WALK_W, WALK_N = 0, 16384, 32768, 49152


# ---- the wire format (README "Wire format of update"), decoded by hand ----

def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7


def unzigzag(v):
    return (v >> 1) ^ -(v & 1)


def apply_update(mirror, u):
    """mirror: id -> [kind, mode, qx, qy]. Raises on a malformed frame."""
    if u.reset:
        mirror.clear()
    i, prev = 0, 0
    while i < len(u.left):
        d, i = varint(u.left, i)
        prev += d
        del mirror[prev]
    i, prev = 0, 0
    while i < len(u.entered):
        d, i = varint(u.entered, i)
        prev += d
        kind, mode = u.entered[i], u.entered[i + 1]
        qx, i = varint(u.entered, i + 2)
        qy, i = varint(u.entered, i)
        assert prev not in mirror
        mirror[prev] = [kind, mode, qx, qy]
    i, prev = 0, 0
    while i < len(u.changed):
        key, i = varint(u.changed, i)
        form, prev = key & 3, prev + (key >> 2)
        e = mirror[prev]
        dx = dy = 0
        if form == 0:
            dx, dy = (u.changed[i] >> 4) - 8, (u.changed[i] & 15) - 8
            i += 1
        elif form == 1:
            dx, dy = [c - 256 if c > 127 else c for c in u.changed[i:i + 2]]
            i += 2
        elif form == 2:
            mask = u.changed[i]
            i += 1
            assert mask & ~7 == 0
            if mask & 1:
                zx, i = varint(u.changed, i)
                zy, i = varint(u.changed, i)
                dx, dy = unzigzag(zx), unzigzag(zy)
            if mask & 2:
                e[1] = u.changed[i]
                i += 1
            if mask & 4:
                e[0] = u.changed[i]
                i += 1
        else:
            raise AssertionError("reserved form 3")
        e[2] += dx
        e[3] += dy


class Player:
    """A game client that joins, sends inputs and keeps a mirror from the updates, read on
    its own thread (unless reading=False: a client that stops reading)."""

    def __init__(self, pb, url, tk, reading=True, rcvbuf=None):
        self.pb = pb[0]
        sock = None
        if rcvbuf:
            # Set before connect, so the window it advertises stays small.
            host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(DEADLINE)
            sock.connect((host, int(port)))
        self.ws = websocket.create_connection(url, timeout=DEADLINE, socket=sock)
        self.ws.send_binary(self.pb.ClientMessage(
            request_id=1, join=self.pb.Join(ticket=tk, client_version="sim-test/1"))
            .SerializeToString())
        m = self.recv_one()
        assert m is not None and m.WhichOneof("body") == "welcome", m
        self.entity = m.welcome.entity_id
        self.mirror, self.updates, self.ticks, self.acks = {}, 0, [], []
        self.corrections, self.close_code, self.seq = 0, None, 0
        self.lock = threading.Lock()
        self.closed = threading.Event()
        if reading:
            threading.Thread(target=self.read_loop, daemon=True).start()

    def recv_one(self):
        while True:
            try:
                op, data = self.ws.recv_data(control_frame=True)
            except (websocket.WebSocketException, ConnectionError, OSError):
                return None
            if op == websocket.ABNF.OPCODE_CLOSE:
                if len(data) >= 2:
                    self.close_code = int.from_bytes(data[:2], "big")
                return None
            if op == websocket.ABNF.OPCODE_BINARY:
                m = self.pb.ServerMessage()
                m.ParseFromString(data)
                return m

    def read_loop(self):
        while True:
            m = self.recv_one()
            if m is None:
                self.closed.set()
                return
            if m.WhichOneof("body") == "update":
                with self.lock:
                    apply_update(self.mirror, m.update)
                    self.updates += 1
                    self.ticks.append(m.update.tick)
                    self.acks.append(m.update.ack)
                    self.corrections += m.update.HasField("correction")

    def send_input(self, **fields):
        self.seq += 1
        fields.setdefault("seq", self.seq)
        self.ws.send_binary(self.pb.ClientMessage(input=self.pb.Input(**fields))
                            .SerializeToString())

    def move(self, direction, mode=2):
        self.send_input(mode=mode, dir=direction)

    def sees(self, entity):
        with self.lock:
            return entity in self.mirror

    def pos(self, entity):
        with self.lock:
            e = self.mirror.get(entity)
            return None if e is None else (e[2] / Q, e[3] / Q)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


@pytest.fixture
def meadow(daemon, pb, clean_redis, signer):  # noqa: F811
    """world + one game with meadow split in two regions; returns join(x, y, **kw)."""
    w = start_world(daemon, clean_redis)
    g = start_game(daemon, w, WY_GAME_REGIONS="meadow=2", WY_GAME_SEND_QUEUE="4096",
                   WY_GAME_SOCKET_SNDBUF="4096",
                   WY_GAME_STATS_BATCH="200ms")
    st = world_stub(w, pb)
    entry = wait_registered(st, pb, g)
    p = st.Place(pb[1].PlaceRequest(account_id="a0", character_id="c0", target_zone="meadow"),
                 timeout=DEADLINE)
    players = []

    def join(x, y, **kw):
        tk = ticket(signer, g.instance_id, entry.incarnation, zone="meadow",
                    inst=p.instance_id, x=x, y=y)
        pl = Player(pb, g.ws_url, tk, **kw)
        players.append(pl)
        return pl

    join.game, join.inst, join.pb = g, p.instance_id, pb
    yield join
    for pl in players:
        pl.close()


def test_two_players_see_each_other_move_a_far_third_only_when_close(meadow):
    a, b = meadow(100, 300), meadow(120, 300)
    c = meadow(200, 300)  # 80 m from b, 100 m from a: out of view (64 m)
    wait_until(lambda: a.sees(b.entity) and b.sees(a.entity), DEADLINE,
               what="a and b see each other")
    assert a.sees(a.entity) and b.sees(b.entity)
    assert not c.sees(a.entity) and not c.sees(b.entity)
    assert not a.sees(c.entity) and not b.sees(c.entity)
    # a runs south: b sees every step, a's own mirror agrees with b's.
    start = b.pos(a.entity)
    a.move(WALK_S)
    wait_until(lambda: b.pos(a.entity)[1] > start[1] + 5, DEADLINE, what="b sees a move")
    a.move(WALK_S, mode=0)
    wait_until(lambda: a.pos(a.entity) == b.pos(a.entity) and a.acks[-1] == 2, DEADLINE,
               what="a stopped: both mirrors agree on its position")
    assert abs(b.pos(a.entity)[0] - 100) <= 1 / 32
    assert not c.sees(a.entity)
    # c walks west: it sees b once within 64 m, and b sees c.
    c.move(WALK_W)
    wait_until(lambda: c.sees(b.entity), 30, what="c sees b after walking close")
    assert b.sees(c.entity)
    cx = c.pos(c.entity)[0]
    assert 120 + 56 <= cx <= 120 + 64 + 1  # entered at <= 64 m (a step of margin)
    c.move(WALK_W, mode=0)
    # One update per tick: the ticks a player saw ascend, none twice, and a number is missing
    # only where the partition skipped that tick after a stall (counted).
    with a.lock:
        ticks = list(a.ticks)
    assert all(b > t for t, b in zip(ticks, ticks[1:])), "a tick twice or out of order"
    missing = ticks[-1] - ticks[0] + 1 - len(ticks)
    g = meadow.game
    wait_until(lambda: missing <= sum(series(g, "wy_game_ticks_skipped_total",
                                             partition="%s/%d" % (meadow.inst, r)) or 0
                                      for r in (0, 1)),
               DEADLINE, what="the %d tick numbers a missed are ticks the partition skipped" % missing)


def test_border_crossing_keeps_everyone_visible_and_connected(meadow):
    d = meadow(246, 400)  # west region (x < 256)
    e = meadow(272, 400)  # east region
    f = meadow(236, 412)  # west region, watching
    ps = [d, e, f]
    wait_until(lambda: all(p.sees(q.entity) for p in ps for q in ps), DEADLINE,
               what="everyone sees everyone across the border")
    d.move(WALK_E, mode=1)  # walk 2.5 m/s: crosses x = 256 after 4 s
    crossed_at = None
    deadline = time.time() + 30
    while time.time() < deadline:
        for p in ps:
            for q in ps:
                assert p.sees(q.entity), "lost sight while crossing"
        x = d.pos(d.entity)[0]
        if x > 262:
            crossed_at = x
            break
        time.sleep(0.05)
    assert crossed_at, "d did not cross the border"
    d.move(WALK_E, mode=0)
    n = d.updates
    wait_until(lambda: d.updates > n + 20, DEADLINE, what="d still gets one update per tick")
    assert not d.closed.is_set()
    g = meadow.game
    assert series(g, "wy_game_handovers_total", partition=meadow.inst + "/0") >= 1
    def same():
        seen = [p.pos(d.entity) for p in (d, e, f)]
        return seen if seen[0] == seen[1] == seen[2] else (False, seen)

    wait_until(lambda: same()[0] is not False, DEADLINE,
               what="every mirror has d where it stopped: %r, inputs lost %r" % (
                   same(), series(g, "wy_game_inputs_lost_total")))


def test_inputs_sent_while_crossing_a_border_are_applied_not_lost(meadow):
    """Inputs that reach the old partition in the tick it hands the player over are queued to
    the new one: every input is applied (accepted), none counted lost."""
    g, inst = meadow.game, meadow.inst
    p = meadow(250, 420)
    wait_until(lambda: p.sees(p.entity), DEADLINE, what="p sees itself")
    p.move(WALK_E)  # run east, 6 m/s: x = 256 in about a second
    wait_until(lambda: p.pos(p.entity)[0] > 254.5, 30, what="p nears the border")
    for _ in range(9):  # about 30 ms apart across the crossing tick (under the flood limit)
        p.move(WALK_E)
        time.sleep(0.03)
    p.move(WALK_E, mode=0)
    sent = p.seq
    wait_until(lambda: p.pos(p.entity)[0] > 256 and p.acks and p.acks[-1] == sent, DEADLINE,
               what="p crossed and its last input was applied")

    def accepted():
        return sum(series(g, "wy_game_inputs_accepted_total", partition="%s/%d" % (inst, r)) or 0
                   for r in (0, 1))

    wait_until(lambda: accepted() == sent, DEADLINE,
               what="every input applied: %r of %d, lost %r" % (
                   accepted(), sent, series(g, "wy_game_inputs_lost_total")))
    assert (series(g, "wy_game_inputs_lost_total") or 0) == 0
    assert series(g, "wy_game_handovers_total", partition=inst + "/0") >= 1


def refused(g, inst, reason):
    return sum(series(g, "wy_game_inputs_refused_total", partition="%s/%d" % (inst, r),
                      reason=reason) or 0 for r in (0, 1))


def test_cheats_are_refused_and_counted_by_reason(meadow):
    g, inst, pb = meadow.game, meadow.inst, meadow.pb
    p = meadow(100, 100)
    wait_until(lambda: p.sees(p.entity), DEADLINE, what="joined and in view")
    home = p.pos(p.entity)
    Vec2 = pb[0].Vec2
    p.send_input(mode=1, predicted=Vec2(x=400, y=400))          # teleport
    p.send_input(mode=2, speed=60)                               # speed hack
    p.send_input(mode=1, target=Vec2(x=220, y=150))              # wall walk (blocked cell)
    p.send_input(mode=1, target=Vec2(x=900, y=100))              # out of the zone
    for _ in range(200):                                         # input flood
        p.send_input(mode=0)
    wait_until(lambda: refused(g, inst, "flood") >= 150, 15, what="the flood counted")
    wait_until(lambda: refused(g, inst, "teleport") == 1 and refused(g, inst, "speed") == 1 and
               refused(g, inst, "blocked") == 2, 15, what="each cheat counted by reason")
    assert p.corrections >= 1
    time.sleep(0.3)  # a few ticks: nothing may have moved the player
    pos = p.pos(p.entity)
    assert abs(pos[0] - home[0]) < 0.5 and abs(pos[1] - home[1]) < 0.5, (home, pos)
    # Accepted: only the idle inputs the flood bucket let through (10 at once), never a cheat.
    acc = sum(series(g, "wy_game_inputs_accepted_total", partition="%s/%d" % (inst, r)) or 0
              for r in (0, 1))
    assert acc <= 12


def test_slow_reader_is_closed_4008_without_tick_overruns(meadow):
    g, inst = meadow.game, meadow.inst
    slow = meadow(300, 300, reading=False, rcvbuf=4096)
    movers = [meadow(290 + (i % 5) * 4, 290 + (i // 5) * 4) for i in range(20)]
    over0 = series(g, "wy_game_tick_overruns_total", partition=inst + "/1") or 0
    for i, m in enumerate(movers):
        m.move((i * 3277) % 65536, mode=1)
    # Movers keep turning near it (its frames keep coming) until its queue passes 4 KiB.
    deadline, k = time.time() + 120, 0
    while time.time() < deadline and not series(g, "wy_game_slow_disconnects_total"):
        k += 1
        for i, m in enumerate(movers):
            m.move(((i + k) * 7919) % 65536, mode=1)
        time.sleep(0.5)
    wait_until(lambda: series(g, "wy_game_slow_disconnects_total") == 1, 30,
               what="the slow reader disconnected")
    # The close frame it never read says 4008.
    slow.ws.sock.setblocking(True)
    slow.ws.sock.settimeout(DEADLINE)
    code = None
    while code is None:
        m = slow.recv_one()
        if m is None:
            code = slow.close_code
            break
    assert code == 4008
    assert all(not m.closed.is_set() for m in movers)
    over1 = series(g, "wy_game_tick_overruns_total", partition=inst + "/1") or 0
    assert over1 == over0


def test_stats_grpc_and_change_stream(meadow, build_dir, stack):
    g, inst, pb = meadow.game, meadow.inst, meadow.pb
    import game_pb2_grpc
    p = meadow(100, 100)
    p.move(WALK_E, mode=1)
    stub = game_pb2_grpc.GameStub(grpc.insecure_channel(g.grpc_addr))

    def parts():
        r = stub.Stats(pb[0].StatsRequest(), timeout=DEADLINE)
        return r, {(x.instance_id, x.region): x for x in r.partitions}

    wait_until(lambda: parts()[1].get((inst, 0)) and parts()[1][(inst, 0)].players == 1 and
               parts()[1][(inst, 0)].ticks > 20, DEADLINE, what="Game.Stats shows the player")
    r, ps = parts()
    west, east = ps[(inst, 0)], ps[(inst, 1)]
    assert west.regions == 2 and west.tick_rate == 20 and east.players == 0
    assert west.frames_sent > 0 and west.bytes_sent > 0 and west.inputs_accepted >= 1
    assert set(west.inputs_refused) == {"invalid", "seq", "flood", "speed", "teleport", "blocked"}
    assert r.players == 1 and r.cpu_seconds > 0 and r.rss_bytes > 1 << 20
    assert west.fps > 5  # ticking (the exact rate is `make bench`'s business)
    # The change stream: at least one batch reached Kafka.
    wait_until(lambda: (series(g, "wy_game_change_batches_total") or 0) >= 1, 15,
               what="an object-change batch produced to wy.stats")
    assert (series(g, "wy_game_object_changes_total", partition=inst + "/0") or 0) >= 1


def thread_sched(pid):
    """{thread name: [(policy, rt priority, nice)]} of a process's threads."""
    import os
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            name = f.read().strip()
        t = int(tid)
        out.setdefault(name, []).append((os.sched_getscheduler(t) & ~0x40000000,
                                         os.sched_getparam(t).sched_priority,
                                         os.getpriority(os.PRIO_PROCESS, t)))
    return out


def test_partition_workers_run_at_the_tick_priority_and_nothing_else_does(daemon, clean_redis):  # noqa: F811
    """WY_GAME_TICK_PRIORITY: the partition workers get the first choice the system permits
    (real time with CAP_SYS_NICE, else the nice fall-back, which lowering always permits), say so
    on /metrics and in the log; the loop thread and the others keep normal priority."""
    import os
    w = start_world(daemon, clean_redis)
    g = start_game(daemon, w, WY_GAME_TICK_PRIORITY="rt:7,nice:5", WY_GAME_WORKERS="2")
    wait_until(lambda: len(thread_sched(g.pid).get("wy-part-0", [])) == 1 and
               series(g, "wy_game_worker_rt_priority", worker="1") is not None, DEADLINE,
               what="both partition workers running")
    rt = True
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))  # the test's own permission
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except PermissionError:
        rt = False
    want = (os.SCHED_FIFO, 7, 0) if rt else (os.SCHED_OTHER, 0, 5)
    wait_until(lambda: [thread_sched(g.pid)[n][0] for n in ("wy-part-0", "wy-part-1")] == [want] * 2,
               DEADLINE, what="the partition workers at %r" % (want,))
    for worker in ("0", "1"):  # set by the worker right after it raised itself
        wait_until(lambda: (series(g, "wy_game_worker_rt_priority", worker=worker),
                            series(g, "wy_game_worker_nice", worker=worker)) ==
                   ((7, 0) if rt else (0, 5)), DEADLINE, what="worker %s's priority on /metrics" % worker)
        assert series(g, "wy_game_worker_priority_drops_total", worker=worker) == 0
    for name, threads in thread_sched(g.pid).items():
        if not name.startswith("wy-part-"):
            assert all(t == (os.SCHED_OTHER, 0, 0) for t in threads), (name, threads)
    if rt:
        assert "partition worker priority set" in g.log_text()
    else:
        assert "partition worker priority not raised as asked" in g.log_text()
    # "normal": nothing is raised.
    g2 = start_game(daemon, w, WY_GAME_TICK_PRIORITY="normal", WY_GAME_WORKERS="1")
    wait_until(lambda: "wy-part-0" in thread_sched(g2.pid) and
               "partition worker priority set" in g2.log_text(), DEADLINE,
               what="the worker of the second game running")
    assert thread_sched(g2.pid)["wy-part-0"] == [(os.SCHED_OTHER, 0, 0)]
    assert series(g2, "wy_game_worker_rt_priority", worker="0") == 0
