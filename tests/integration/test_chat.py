"""wy-chat over its gRPC API with the real PostgreSQL, Redis and Kafka: channels and
membership, per-channel sequence numbers without gaps under concurrent senders, history by
cursor, the wy.chat outbox, whispers kept for offline players, zone channels from world's
locator keys, and moderation (mutes, rate limit, word filter in look-alike spellings,
tombstones, reports, the moderation log)."""
import concurrent.futures as cf
import threading
import uuid

import grpc
import pytest

from harness import rkeys
from harness.kafka import offsets
from harness.wait import wait_until

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import chat_pb2
    import chat_pb2_grpc
    return chat_pb2, chat_pb2_grpc


def start(daemon, **env):
    base = {"WY_CHAT_RATE_LIMIT": "100000", "WY_CHAT_RATE_WINDOW": "1s"}
    base.update(env)
    return daemon("chat", env=base)


def stub(d, pb):
    ch = grpc.insecure_channel(d.grpc_addr)
    return pb[1].ChatStub(ch)


def acct():
    return str(uuid.uuid4())


def caller(pb, a, name="", moderator=False):
    return pb[0].Caller(account_id=a, name=name or a[:8], moderator=moderator)


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


def send(st, pb, a, channel="", text="hi", to="", **kw):
    return st.Send(pb[0].SendRequest(caller=caller(pb, a, **kw), channel_id=channel,
                                     to_account_id=to, text=text), timeout=DEADLINE)


def history(st, pb, a, channel, **kw):
    return st.History(pb[0].HistoryRequest(caller=caller(pb, a), channel_id=channel, **kw),
                      timeout=DEADLINE)


def member(st, pb, method, a, channel, subject=""):
    return getattr(st, method)(pb[0].MemberRequest(caller=caller(pb, a), channel_id=channel,
                                                   account_id=subject), timeout=DEADLINE)


def party(st, pb, owner, *members):
    ch = st.Create(pb[0].CreateRequest(caller=caller(pb, owner), kind=pb[0].KIND_PARTY,
                                       name="p"), timeout=DEADLINE)
    for m in members:
        member(st, pb, "Invite", owner, ch.channel_id, m)
        member(st, pb, "Join", m, ch.channel_id)
    return ch.channel_id


def chat_events(build_dir, stack):
    """Events in wy.chat (sum of high watermarks)."""
    brokers = stack.env()["WY_KAFKA_BROKERS"]
    return sum(hi for _, hi, _ in offsets(build_dir, brokers, "wy.chat", "nobody").values())


def test_party_membership_sequence_and_history(daemon, stack, pb, build_dir):
    d = start(daemon)
    st = stub(d, pb)
    a, b, c = acct(), acct(), acct()
    before = chat_events(build_dir, stack)
    ch = st.Create(pb[0].CreateRequest(caller=caller(pb, a), kind=pb[0].KIND_PARTY, name="Raid"),
                   timeout=DEADLINE)
    assert ch.channel_id.startswith("party:") and ch.role == pb[0].ROLE_OWNER and ch.last_seq == 1
    cid = ch.channel_id
    # Join needs an invite; an invite needs an owner or officer.
    assert code_of(lambda: member(st, pb, "Join", b, cid)) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: member(st, pb, "Invite", c, cid, b)) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert member(st, pb, "Invite", a, cid, b).seq == 2
    assert member(st, pb, "Join", b, cid).seq == 3
    assert code_of(lambda: member(st, pb, "Join", b, cid)) == grpc.StatusCode.FAILED_PRECONDITION
    assert send(st, pb, a, cid, "hello").seq == 4
    assert send(st, pb, b, cid, "hi back").seq == 5
    # Not a member: refused to send and to read.
    assert code_of(lambda: send(st, pb, c, cid)) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: history(st, pb, c, cid)) == grpc.StatusCode.PERMISSION_DENIED
    h = history(st, pb, b, cid, forward=True)
    assert [m.seq for m in h.messages] == [1, 2, 3, 4, 5] and h.last_seq == 5 and not h.more
    assert [m.type for m in h.messages] == [pb[0].MSG_JOIN, pb[0].MSG_INVITE, pb[0].MSG_JOIN,
                                            pb[0].MSG_TEXT, pb[0].MSG_TEXT]
    assert h.messages[1].subject_id == b and h.messages[3].text == "hello"
    assert h.messages[3].sender_id == a
    # Cursor pages: forward from a seq, backward from the latest.
    h = history(st, pb, b, cid, forward=True, after_seq=2, limit=2)
    assert [m.seq for m in h.messages] == [3, 4] and h.more
    h = history(st, pb, b, cid, limit=2)
    assert [m.seq for m in h.messages] == [4, 5] and h.more
    h = history(st, pb, b, cid, before_seq=4, limit=2)
    assert [m.seq for m in h.messages] == [2, 3] and h.more
    h = history(st, pb, b, cid, before_seq=3, limit=5)
    assert [m.seq for m in h.messages] == [1, 2] and not h.more
    # Kick: only of a lower role; the kicked member can no longer send.
    assert code_of(lambda: member(st, pb, "Kick", b, cid, a)) == grpc.StatusCode.PERMISSION_DENIED
    assert member(st, pb, "Kick", a, cid, b).seq == 6
    assert code_of(lambda: send(st, pb, b, cid)) == grpc.StatusCode.PERMISSION_DENIED
    listed = st.ListChannels(pb[0].ListChannelsRequest(caller=caller(pb, a)), timeout=DEADLINE)
    assert [(x.channel_id, x.role, x.last_seq) for x in listed.channels] == \
        [(cid, pb[0].ROLE_OWNER, 6)]
    # Every change went to wy.chat once, through the outbox.
    wait_until(lambda: chat_events(build_dir, stack) - before >= 6, timeout=30)
    wait_until(lambda: int(stack.psql("SELECT count(*) FROM chat.wy_outbox")) == 0, timeout=30)
    assert chat_events(build_dir, stack) - before == 6


def test_bad_requests(daemon, pb):
    st = stub(start(daemon), pb)
    a = acct()
    assert code_of(lambda: send(st, pb, a, "nowhere")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: send(st, pb, a, "world", "")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: send(st, pb, a, "world", "x" * 501)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: send(st, pb, a, "world", "a\x07b")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: send(st, pb, "bad id!", "world")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: send(st, pb, a, to=a)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: send(st, pb, a, "system")) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: send(st, pb, a, "whisper:x|y")) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: send(st, pb, a, "party:" + acct())) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: history(st, pb, a, "world", limit=201)) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert send(st, pb, a, "system", "maintenance at 10", moderator=True).seq >= 1
    assert send(st, pb, a, "world", "x" * 500).seq >= 1


def test_concurrent_senders_get_gapless_sequence(daemon, pb):
    st = stub(start(daemon), pb)
    owner = acct()
    senders = [acct() for _ in range(10)]
    cid = party(st, pb, owner, *senders)
    base = history(st, pb, owner, cid).last_seq

    def run(a):
        return [send(st, pb, a, cid, "%s %d" % (a, i)).seq for i in range(30)]

    with cf.ThreadPoolExecutor(10) as ex:
        got = list(ex.map(run, senders))
    seqs = sorted(s for g in got for s in g)
    assert seqs == list(range(base + 1, base + 301))
    for g in got:  # each sender's own messages in its order
        assert g == sorted(g)
    seen, after = [], base
    while True:
        h = history(st, pb, owner, cid, forward=True, after_seq=after, limit=200)
        seen += [m.seq for m in h.messages]
        if not h.more:
            break
        after = h.messages[-1].seq
    assert seen == list(range(base + 1, base + 301))


def test_whisper_offline_until_next_login(daemon, stack, pb):
    d = start(daemon)
    st = stub(d, pb)
    a, b = acct(), acct()
    r = send(st, pb, a, to=b, text="are you there?")
    assert r.offline and r.channel_id == "whisper:%s|%s" % tuple(sorted([a, b]))
    # b online (lobby's session index): not kept.
    stack.redis_cli("SET", rkeys.sess_acct(b), "s1", "EX", "60")
    assert not send(st, pb, a, to=b, text="ok you are").offline
    got = st.Offline(pb[0].OfflineRequest(account_id=b), timeout=DEADLINE)
    assert [(m.channel_id, m.seq, m.text, m.sender_id) for m in got.messages] == \
        [(r.channel_id, 1, "are you there?", a)]
    assert len(got.ids) == 1 and not got.more
    # Reading does not take it (a lobby may die before the push): it stays until the
    # client's acknowledgement, and an ack below its id removes nothing.
    again = st.Offline(pb[0].OfflineRequest(account_id=b), timeout=DEADLINE)
    assert [m.seq for m in again.messages] == [1] and list(again.ids) == list(got.ids)
    assert st.OfflineAck(pb[0].OfflineAckRequest(account_id=b, up_to_id=got.ids[0] - 1),
                         timeout=DEADLINE).removed == 0
    assert st.OfflineAck(pb[0].OfflineAckRequest(account_id=b, up_to_id=got.ids[0]),
                         timeout=DEADLINE).removed == 1
    assert not st.Offline(pb[0].OfflineRequest(account_id=b), timeout=DEADLINE).messages
    # Both parties read the whisper channel, nobody else.
    assert [m.seq for m in history(st, pb, b, r.channel_id).messages] == [1, 2]
    assert code_of(lambda: history(st, pb, acct(), r.channel_id)) == \
        grpc.StatusCode.PERMISSION_DENIED


def test_offline_whispers_page_by_cursor_until_acknowledged(daemon, pb):
    st = stub(start(daemon), pb)
    a, b = acct(), acct()
    sent = [send(st, pb, a, to=b, text="w%d" % i) for i in range(5)]
    assert all(r.offline for r in sent)
    p1 = st.Offline(pb[0].OfflineRequest(account_id=b, limit=2), timeout=DEADLINE)
    assert [m.text for m in p1.messages] == ["w0", "w1"] and p1.more
    assert list(p1.ids) == sorted(p1.ids)
    p2 = st.Offline(pb[0].OfflineRequest(account_id=b, limit=2, after_id=p1.ids[-1]),
                    timeout=DEADLINE)
    assert [m.text for m in p2.messages] == ["w2", "w3"] and p2.more
    p3 = st.Offline(pb[0].OfflineRequest(account_id=b, limit=2, after_id=p2.ids[-1]),
                    timeout=DEADLINE)
    assert [m.text for m in p3.messages] == ["w4"] and not p3.more
    # Acknowledging the first page leaves the rest for the next login; another account's
    # ack touches nothing of b's.
    assert st.OfflineAck(pb[0].OfflineAckRequest(account_id=a, up_to_id=p3.ids[-1]),
                         timeout=DEADLINE).removed == 0
    assert st.OfflineAck(pb[0].OfflineAckRequest(account_id=b, up_to_id=p1.ids[-1]),
                         timeout=DEADLINE).removed == 2
    rest = st.Offline(pb[0].OfflineRequest(account_id=b), timeout=DEADLINE)
    assert [m.text for m in rest.messages] == ["w2", "w3", "w4"]
    assert code_of(lambda: st.Offline(pb[0].OfflineRequest(account_id="", limit=1),
                                      timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: st.Offline(pb[0].OfflineRequest(account_id=b, limit=501),
                                      timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrent_first_pages_each_get_their_own_whispers(daemon, pb):
    """Many logins' first pages at once: each account gets exactly its own whispers, in
    order, its page bound and `more`; a kill -9 of chat loses none (only an acknowledgement
    removes them), the next start answers the same."""
    d = start(daemon)
    st = stub(d, pb)
    sender = acct()
    some = [acct() for _ in range(8)]
    none = [acct() for _ in range(8)]
    heavy = acct()
    want = {}
    for i, a in enumerate(some):
        want[a] = ["%d-%d" % (i, k) for k in range(i + 1)]
        for t in want[a]:
            assert send(st, pb, sender, to=a, text=t).offline
    for a in none:
        want[a] = []
    with cf.ThreadPoolExecutor(8) as ex:  # 205 whispers: more than one first page (200)
        assert all(ex.map(lambda k: send(st, pb, sender, to=heavy, text="h%03d" % k).offline,
                          range(205)))
    accounts = some + none + [heavy]

    def first_pages(st):
        def one(a):
            return a, st.Offline(pb[0].OfflineRequest(account_id=a), timeout=DEADLINE)

        with cf.ThreadPoolExecutor(len(accounts)) as ex:
            got = list(ex.map(one, accounts * 3))
        for a, r in got:
            if a == heavy:
                texts = [m.text for m in r.messages]
                assert len(texts) == 200 and r.more and len(set(texts)) == 200
                assert list(r.ids) == sorted(r.ids)
            else:
                assert [m.text for m in r.messages] == want[a] and not r.more, a
                assert all(m.sender_id == sender for m in r.messages)

    first_pages(st)
    d.kill9()
    first_pages(stub(start(daemon), pb))


def test_report_review_by_moderators_only(daemon, stack, pb):
    op = acct()  # an operator's account: WY_CHAT_MODERATORS
    st = stub(start(daemon, WY_CHAT_MODERATORS=op), pb)
    a, b = acct(), acct()
    cid = party(st, pb, a, b)
    r = send(st, pb, b, cid, "you are all noobs")
    rep = st.Report(pb[0].ReportRequest(caller=caller(pb, a), channel_id=cid, seq=r.seq,
                                        reason="insult"), timeout=DEADLINE)

    def reports(who, **kw):
        return st.ListReports(pb[0].ListReportsRequest(caller=who, **kw), timeout=DEADLINE)

    def resolve(who, rid, note="warned"):
        return st.ResolveReport(pb[0].ResolveReportRequest(caller=who, report_id=rid,
                                                           resolution=note), timeout=DEADLINE)
    # Without the role (the token's claim false, not an operator's account): refused.
    for fn in (lambda: reports(caller(pb, a)), lambda: resolve(caller(pb, a), rep.report_id)):
        assert code_of(fn) == grpc.StatusCode.PERMISSION_DENIED
    mod = caller(pb, acct(), moderator=True)  # the role from the token's claims
    # Page through every open report up to ours (other tests' reports may be there too).
    mine, after = None, 0
    while mine is None:
        page = reports(mod, after_id=after, limit=50)
        assert page.reports, "our report is missing"
        mine = next((x for x in page.reports if x.report_id == rep.report_id), None)
        after = page.reports[-1].report_id
    assert (mine.channel_id, mine.seq, mine.reporter_id, mine.reason) == (cid, r.seq, a, "insult")
    assert mine.message.text == "you are all noobs" and mine.message.sender_id == b
    assert mine.resolved_at_ms == 0
    done = resolve(mod, rep.report_id, "muted for a day")
    assert done.resolved_at_ms > 0
    assert code_of(lambda: resolve(mod, rep.report_id)) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: resolve(caller(pb, op), 2 ** 62)) == grpc.StatusCode.NOT_FOUND
    # Open ones only by default; resolved=True shows it with who closed it and why.
    assert rep.report_id not in [x.report_id for x in
                                 reports(caller(pb, op), after_id=rep.report_id - 1).reports]
    closed = [x for x in reports(caller(pb, op), after_id=rep.report_id - 1,
                                 resolved=True).reports if x.report_id == rep.report_id][0]
    assert closed.resolved_by == mod.account_id and closed.resolution == "muted for a day"
    log = stack.psql("SELECT action || ' ' || actor_id FROM chat.moderation_log WHERE "
                     "channel_id = '%s' ORDER BY id" % cid).splitlines()
    assert log == ["report " + a, "resolve_report " + mod.account_id]


def seat(stack, account, char, zone, inst):
    stack.redis_cli("SET", "world:{acct:%s}" % account, char)
    stack.redis_cli("HSET", "world:{char:%s}" % char, "account", account, "zone", zone,
                    "inst", inst)
    stack.redis_cli("HSET", "world:{zone:%s}:seat" % zone, char, inst)


def test_zone_channel_follows_the_locator(daemon, stack, pb):
    st = stub(start(daemon), pb)
    zone = "z" + uuid.uuid4().hex[:8]
    a, b, c = acct(), acct(), acct()
    seat(stack, a, "ca-" + a[:8], zone, zone + "#1")
    seat(stack, b, "cb-" + b[:8], zone, zone + "#1")
    seat(stack, c, "cc-" + c[:8], zone, zone + "#2")
    r = send(st, pb, a, "zone", "anyone here?")
    assert r.channel_id == "zone:%s#1" % zone
    assert [m.text for m in history(st, pb, b, r.channel_id).messages] == ["anyone here?"]
    assert code_of(lambda: history(st, pb, c, r.channel_id)) == grpc.StatusCode.PERMISSION_DENIED
    # Moved (World.Transfer rewrites the placement): now c's instance.
    seat(stack, b, "cb-" + b[:8], zone, zone + "#2")
    assert send(st, pb, b, "zone", "moved").channel_id == "zone:%s#2" % zone
    assert code_of(lambda: history(st, pb, b, r.channel_id)) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: send(st, pb, acct(), "zone")) == grpc.StatusCode.PERMISSION_DENIED


def test_mutes_deletes_reports_and_the_log(daemon, stack, pb):
    mod = acct()
    st = stub(start(daemon, WY_CHAT_MODERATORS=mod), pb)
    a, b = acct(), acct()
    cid = party(st, pb, a, b)
    r = send(st, pb, b, cid, "spam spam")
    # Only moderators mute; a channel mute and a global mute both refuse; lifting works.
    assert code_of(lambda: st.Mute(pb[0].MuteRequest(caller=caller(pb, a), account_id=b,
                                                     duration_ms=60000), timeout=DEADLINE)) == \
        grpc.StatusCode.PERMISSION_DENIED
    m = st.Mute(pb[0].MuteRequest(caller=caller(pb, mod), account_id=b, channel_id=cid,
                                  duration_ms=60000, reason="spam"), timeout=DEADLINE)
    assert m.until_ms > 0
    assert code_of(lambda: send(st, pb, b, cid)) == grpc.StatusCode.PERMISSION_DENIED
    assert send(st, pb, b, "world", "still fine elsewhere").seq >= 1
    st.Mute(pb[0].MuteRequest(caller=caller(pb, mod, moderator=False), account_id=b,
                              duration_ms=60000), timeout=DEADLINE)
    assert code_of(lambda: send(st, pb, b, "world")) == grpc.StatusCode.PERMISSION_DENIED
    # The token's moderator claim counts too.
    for ch in ("", cid):
        st.Mute(pb[0].MuteRequest(caller=caller(pb, acct(), moderator=True), account_id=b,
                                  channel_id=ch, duration_ms=0), timeout=DEADLINE)
    assert send(st, pb, b, cid, "sorry").seq == r.seq + 1
    # Delete: not someone else's (without the role); a moderator's makes a tombstone.
    assert code_of(lambda: st.Delete(pb[0].DeleteRequest(caller=caller(pb, a), channel_id=cid,
                                                         seq=r.seq), timeout=DEADLINE)) == \
        grpc.StatusCode.PERMISSION_DENIED
    t = st.Delete(pb[0].DeleteRequest(caller=caller(pb, mod), channel_id=cid, seq=r.seq,
                                      reason="spam"), timeout=DEADLINE)
    h = history(st, pb, a, cid, forward=True, after_seq=r.seq - 1)
    assert h.messages[0].deleted and h.messages[0].text == ""
    assert h.messages[-1].seq == t.seq and h.messages[-1].type == pb[0].MSG_TOMBSTONE
    assert h.messages[-1].target_seq == r.seq
    # Report: stored for operators, once per reporter.
    rep = st.Report(pb[0].ReportRequest(caller=caller(pb, a), channel_id=cid, seq=r.seq + 1,
                                        reason="rude"), timeout=DEADLINE)
    assert rep.report_id > 0
    assert code_of(lambda: st.Report(pb[0].ReportRequest(caller=caller(pb, a), channel_id=cid,
                                                         seq=999), timeout=DEADLINE)) == \
        grpc.StatusCode.NOT_FOUND
    log = stack.psql("SELECT action FROM chat.moderation_log WHERE account_id = '%s' OR "
                     "channel_id = '%s' ORDER BY id" % (b, cid)).split()
    assert log == ["mute", "mute", "unmute", "unmute", "delete", "report"]


def test_rate_limit_accepts_nothing_over_it(daemon, pb):
    st = stub(start(daemon, WY_CHAT_RATE_LIMIT="5", WY_CHAT_RATE_WINDOW="1h"), pb)
    a = acct()
    codes = []
    for i in range(20):
        try:
            send(st, pb, a, "world", "msg %d" % i)
            codes.append("ok")
        except grpc.RpcError as e:
            codes.append(e.code())
    assert codes[:5] == ["ok"] * 5
    assert codes[5:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 15


LOOKALIKES = [
    "BadWord", "b a d w o r d", "b.a.d.w.o.r.d", "ｂａｄｗｏｒｄ", "ＢＡＤＷＯＲＤ",
    "b\u0430dw\u043erd",  # Cyrillic a and o
    "b4dw0rd", "bádwörd", "bad\u200bword",
    "시발", "ㅅㅣ발", "ㅅㅣㅂㅏㄹ", "시 발", "\u1109\u1175\u1107\u1161\u11af",
]


@pytest.mark.parametrize("mode", ["mask", "refuse"])
def test_filter_catches_lookalikes(daemon, pb, mode):
    st = stub(start(daemon, WY_CHAT_FILTER_WORDS="badword, 시발", WY_CHAT_FILTER_MODE=mode), pb)
    a = acct()
    for word in LOOKALIKES:
        text = "you %s!" % word
        if mode == "refuse":
            assert code_of(lambda: send(st, pb, a, "world", text)) == \
                grpc.StatusCode.PERMISSION_DENIED, word
        else:
            r = send(st, pb, a, "world", text)
            assert r.masked and word not in r.text and r.text.startswith("you *"), (word, r.text)
    clean = send(st, pb, a, "world", "a good word, 사랑해") if mode == "mask" else None
    if clean:
        assert not clean.masked and clean.text == "a good word, 사랑해"


def test_concurrent_batch_keeps_texts_and_refuses_only_the_muted(daemon, pb):
    """Sends arriving while a channel's statement runs go together into the next one (group
    commit): every text comes back byte for byte, a muted sender among them is refused alone."""
    mod = acct()
    st = stub(start(daemon, WY_CHAT_MODERATORS=mod), pb)
    owner, muted = acct(), acct()
    others = [acct() for _ in range(6)]
    cid = party(st, pb, owner, muted, *others)
    st.Mute(pb[0].MuteRequest(caller=caller(pb, mod), account_id=muted, channel_id=cid,
                              duration_ms=60000), timeout=DEADLINE)
    texts = ['quote " and \\ backslash', "{braces}, commas", "new\nline", "NULL", "",
             "한국어 ✨ 👍🏽", "\\x00ff"]
    texts[4] = "  spaced  "

    def one(i):
        who = others[i % len(others)]
        try:
            r = send(st, pb, who, cid, texts[i % len(texts)] + " #%d" % i)
            return ("ok", r.seq, who, r.text)
        except grpc.RpcError as e:
            return ("err", e.code(), who, None)

    def bad(_):
        return code_of(lambda: send(st, pb, muted, cid, "let me talk"))

    with cf.ThreadPoolExecutor(12) as ex:
        got = list(ex.map(one, range(60)))
        refused = list(ex.map(bad, range(5)))
    assert refused == [grpc.StatusCode.PERMISSION_DENIED] * 5
    assert all(g[0] == "ok" for g in got), [g for g in got if g[0] != "ok"][:3]
    seqs = sorted(g[1] for g in got)
    assert seqs == list(range(seqs[0], seqs[0] + 60))
    h = history(st, pb, owner, cid, forward=True, after_seq=seqs[0] - 1, limit=200)
    stored = {m.seq: (m.sender_id, m.text) for m in h.messages}
    for _, seq, who, text in got:
        assert stored[seq] == (who, text)
    assert {t.rsplit(" #", 1)[0] for _, _, _, t in got} == set(texts)


def test_kafka_outage_keeps_messages_in_the_outbox(daemon, stack, pb, build_dir):
    """Kafka stopped: Send still answers (PostgreSQL is the truth), the events wait in the
    outbox and are all published, in order, once the broker is back."""
    d = start(daemon)
    st = stub(d, pb)
    owner, b = acct(), acct()
    cid = party(st, pb, owner, b)
    wait_until(lambda: int(stack.psql("SELECT count(*) FROM chat.wy_outbox")) == 0, timeout=30)
    before = chat_events(build_dir, stack)
    with stack.kafka_outage():
        seqs = [send(st, pb, owner if i % 2 else b, cid, "during outage %d" % i).seq
                for i in range(8)]
        assert seqs == list(range(seqs[0], seqs[0] + 8))
        assert int(stack.psql("SELECT count(*) FROM chat.wy_outbox WHERE key = '%s'" % cid)) == 8
    wait_until(lambda: int(stack.psql("SELECT count(*) FROM chat.wy_outbox")) == 0, timeout=120,
               what="the outbox drained after Kafka came back")
    wait_until(lambda: chat_events(build_dir, stack) - before >= 8, timeout=60)
    h = history(st, pb, owner, cid, forward=True, after_seq=seqs[0] - 1)
    assert [m.text for m in h.messages] == ["during outage %d" % i for i in range(8)]


def test_kill9_loses_no_acknowledged_message(daemon, stack, pb, build_dir):
    """kill -9 during a stream of sends: every acknowledged message is in the history with its
    seq and is published (outbox rows left behind are relayed by the next start)."""
    d = start(daemon)
    st = stub(d, pb)
    owner = acct()
    senders = [acct() for _ in range(4)]
    cid = party(st, pb, owner, *senders)
    acked = []
    stop = threading.Event()

    def run(a):
        while not stop.is_set():
            try:
                acked.append(send(st, pb, a, cid, "m").seq)
            except grpc.RpcError:
                return

    ts = [threading.Thread(target=run, args=(a,)) for a in senders]
    for t in ts:
        t.start()
    wait_until(lambda: len(acked) >= 50, timeout=60, what="50 acknowledged sends")
    d.kill9()
    stop.set()
    for t in ts:
        t.join(timeout=30)
    d2 = start(daemon)
    st2 = stub(d2, pb)
    wait_until(lambda: int(stack.psql("SELECT count(*) FROM chat.wy_outbox")) == 0, timeout=60,
               what="the next start relayed what the killed one left")
    stored = set()
    after = 0
    while True:
        h = history(st2, pb, owner, cid, forward=True, after_seq=after, limit=200)
        stored |= {m.seq for m in h.messages}
        if not h.more:
            break
        after = h.messages[-1].seq
    assert set(acked) <= stored
    assert sorted(stored) == list(range(1, max(stored) + 1))  # no gap either


def test_retention_hides_then_deletes_old_messages(daemon, stack, pb):
    """Messages older than their kind's retention are no longer returned, and the retention
    pass deletes them (counted in wy_chat_retention_deleted_total); other kinds keep theirs."""
    st = stub(start(daemon, WY_CHAT_RETENTION_WHISPER="1s", WY_CHAT_RETENTION_EVERY="1s"), pb)
    a, b = acct(), acct()
    w = send(st, pb, a, to=b, text="this will fade")
    cid = party(st, pb, a, b)
    send(st, pb, a, cid, "this stays")
    assert [m.text for m in history(st, pb, b, w.channel_id).messages] == ["this will fade"]
    wait_until(lambda: not history(st, pb, b, w.channel_id).messages, timeout=30,
               what="the whisper past its retention is not returned")
    wait_until(lambda: int(stack.psql("SELECT count(*) FROM chat.messages WHERE channel_id = '%s'"
                                      % w.channel_id)) == 0, timeout=30,
               what="the retention pass deleted it")
    assert history(st, pb, b, w.channel_id).last_seq == 1  # the sequence goes on from there
    assert "this stays" in [m.text for m in history(st, pb, a, cid).messages]
