"""End-to-end flows through libs/client only: the `wy` CLI (built on libs/client) against the
real wy-auth and wy-lobby daemons on the real Redis/PostgreSQL/Kafka stack. Register, log in,
lobby, nickname, presence, logout; duplicate login kicked across two lobby instances; token
refresh during a long session; a ban through auth closes the lobby session; a lobby restart
during play and the client reconnects; the next saved login is used when one is in use or
logged in elsewhere. Operator actions (ban) go through auth's gRPC API."""
import json
import os
import queue
import signal
import stat
import subprocess
import threading
import time
import uuid

import grpc
import pytest

from harness import rkeys
from harness.ports import free_port

PASSWORD = "correct horse battery"

# Exit codes of wy (tools/wy.c, libs/client/README.md).
EX_OK, EX_NETWORK, EX_AUTH, EX_CONFLICT, EX_INVALID, EX_FORBIDDEN, EX_KICKED = 0, 3, 4, 5, 6, 8, 9


def uniq(prefix="u"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def keys(tmp_path_factory, build_dir):
    d = tmp_path_factory.mktemp("e2ekeys")
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(d / "e2e.pem")],
                   check=True, timeout=10, stdout=subprocess.DEVNULL)
    return str(d)


def auth_env(keys, **extra):
    env = {"WY_AUTH_KEYS_DIR": keys, "WY_AUTH_SIGNING_KID": "e2e",
           "WY_AUTH_HTTP_PORT": str(free_port()), "WY_AUTH_LOGIN_LIMIT_IP": "100000",
           "WY_AUTH_ARGON2_MEMORY": "65536", "WY_AUTH_ARGON2_ITERATIONS": "1"}
    env.update(extra)
    return env


def lobby_env(auth, port=None, **extra):
    env = {"WY_LOBBY_WS_PORT": str(port or free_port()), "WY_LOBBY_AUTH_GRPC": auth.grpc_addr,
           "WY_LOBBY_HEARTBEAT_INTERVAL": "1s", "WY_LOBBY_IDLE_TIMEOUT": "5s"}
    env.update(extra)
    return env


def auth_url(d):
    return "http://127.0.0.1:%s" % d.env["WY_AUTH_HTTP_PORT"]


def lobby_url(d):
    return "ws://127.0.0.1:%s/v1/lobby" % d.env["WY_LOBBY_WS_PORT"]


@pytest.fixture(scope="module")
def auth(module_daemon, keys):
    return module_daemon("auth", env=auth_env(keys))


@pytest.fixture(scope="module")
def lobby(module_daemon, auth):
    return module_daemon("lobby", env=lobby_env(auth))


class Wy:
    """Runs build/tools/wy with its own credentials folder (one 'machine')."""

    def __init__(self, build_dir, creds_dir, auth, lobby):
        self.bin = os.path.join(build_dir, "tools", "wy")
        self.creds = str(creds_dir)
        self.auth, self.lobby = auth, lobby
        self.procs = []

    def env(self, lobby=None):
        e = dict(os.environ)
        for k in ("WY_SERVER", "WY_CREDENTIALS", "WY_PASSWORD", "WY_SERVER_KEY"):
            e.pop(k, None)
        e.update({"WY_AUTH_URL": auth_url(self.auth), "WY_LOBBY_URL": lobby_url(lobby or self.lobby),
                  "WY_CREDENTIALS_DIR": self.creds})
        return e

    def run(self, *args, password=None, lobby=None, timeout=30):
        p = subprocess.run([self.bin, "--json"] + list(args), input=password and password + "\n",
                           env=self.env(lobby), capture_output=True, text=True, timeout=timeout)
        out = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        return p.returncode, (out[-1] if out else {}), p.stderr

    def ok(self, *args, **kw):
        rc, out, err = self.run(*args, **kw)
        assert rc == EX_OK, "wy %s -> %d %s %s" % (" ".join(args), rc, out, err)
        assert out.get("ok") is True, out
        return out

    def register(self, user, profile="default"):
        return self.ok("--profile", profile, "register", user, "--password-stdin", password=PASSWORD)

    def login(self, user, profile="default"):
        return self.ok("--profile", profile, "login", user, "--password-stdin", password=PASSWORD)

    def start_lobby(self, *args, lobby=None):
        return LobbyProc(self, list(args), lobby)

    def cleanup(self):
        for p in self.procs:
            p.stop()


class LobbyProc:
    """A `wy lobby` left running; its JSON events are read as they come."""

    def __init__(self, wy, args, lobby):
        self.p = subprocess.Popen([wy.bin, "--json"] + args + ["lobby"], env=wy.env(lobby),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wy.procs.append(self)
        self.q = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            if line.startswith("{"):
                self.q.put(json.loads(line))
        self.q.put(None)

    def expect(self, pred, timeout=20.0, what="event"):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.0f s; seen: %s" % (what, timeout, self.seen))
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if ev is None:
                raise AssertionError("wy lobby exited (%s) before %s; seen: %s; stderr: %s"
                                     % (self.p.wait(), what, self.seen, self.p.stderr.read()))
            self.seen.append(ev)
            if pred(ev):
                return ev

    def welcome(self, timeout=20.0, reconnects=None):
        return self.expect(lambda e: e.get("event") == "welcome" and
                           (reconnects is None or e["reconnects"] == reconnects),
                           timeout, "welcome")

    def wait_exit(self, timeout=20.0):
        return self.p.wait(timeout)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


@pytest.fixture
def wy(build_dir, tmp_path, auth, lobby):
    w = Wy(build_dir, tmp_path / "creds", auth, lobby)
    yield w
    w.cleanup()


# ---------------------------------------------------------------- auth flows


def test_register_whoami_login_logout(wy):
    user = uniq()
    out = wy.register(user)
    assert out["username"] == user and out["created"] is True
    path = out["credentials"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    me = wy.ok("whoami")
    assert me["username"] == user and me["account_id"] == out["account_id"]
    assert me["login_methods"] == "password"
    # a second login makes a new session and saves it
    again = wy.login(user)
    assert again["account_id"] == out["account_id"] and again["session_id"] != out["session_id"]
    assert wy.ok("whoami")["session_id"] == again["session_id"]
    wy.ok("logout")
    rc, res, _ = wy.run("whoami")
    assert rc == EX_AUTH and res["ok"] is False


def test_errors_have_codes(wy, auth):
    user = uniq()
    wy.register(user)
    rc, res, _ = wy.run("register", user, "--password-stdin", password=PASSWORD)
    assert rc == EX_CONFLICT and res["error"]["server_code"] == "USERNAME_TAKEN"
    rc, res, _ = wy.run("login", user, "--password-stdin", password="wrong password here")
    assert rc == EX_AUTH and res["error"]["server_code"] == "INVALID_CREDENTIALS"
    assert res["error"]["http_status"] == 401 and res["error"]["source"] == "server"
    rc, res, _ = wy.run("register", "x", "--password-stdin", password=PASSWORD)
    assert rc == EX_INVALID and res["error"]["server_code"] == "INVALID_USERNAME"
    rc, res, _ = wy.run("--auth-url", "http://127.0.0.1:%d" % free_port(), "login", user,
                        "--password-stdin", password=PASSWORD)
    assert rc == EX_NETWORK and res["error"]["source"] == "network"
    rc, _, err = wy.run("frobnicate")
    assert rc == 2 and "unknown command" in err


def test_device_login_and_session_resume(wy):
    dev = uniq("device-")
    first = wy.ok("login", "--device", dev)
    assert first["created"] is True
    second = wy.ok("--profile", "other", "login", "--device", dev)
    assert second["account_id"] == first["account_id"] and second["created"] is False
    # the saved refresh token is rotated on use and the file keeps working
    before = open(first["credentials"]).read()
    # an expired access token forces a refresh with the saved refresh token
    lines = [l for l in before.splitlines() if not l.startswith("access_expires_at_ms=")]
    with open(first["credentials"], "w") as f:
        f.write("\n".join(lines + ["access_expires_at_ms=0"]) + "\n")
    assert wy.ok("whoami")["account_id"] == first["account_id"]
    after = open(first["credentials"]).read()
    token = lambda t: [l for l in t.splitlines() if l.startswith("refresh_token=")][0]
    assert token(after) != token(before)


def test_credentials_file_unsafe_mode_refused(wy):
    out = wy.register(uniq())
    os.chmod(out["credentials"], 0o644)
    rc, res, _ = wy.run("whoami")
    assert rc == 11 and "chmod 600" in res["error"]["message"]


# ---------------------------------------------------------------- lobby flows


def test_full_player_flow(wy):
    """register -> login -> lobby -> nickname -> presence -> logout."""
    alice, bob = uniq("a"), uniq("b")
    wy.register(alice)
    wy.register(bob, profile="bob")
    wy.login(alice)
    nick = "Al" + uuid.uuid4().hex[:8]
    res = wy.ok("nick", "set", nick)
    assert res["nickname"] == nick
    # taken by someone else: a conflict
    rc, res, _ = wy.run("--profile", "bob", "nick", "set", nick)
    assert rc == EX_CONFLICT and res["error"]["server_code"] == "ALREADY_EXISTS"
    held = wy.start_lobby("--profile", "default")
    w = held.welcome()
    assert w["nickname"] == nick
    pres = wy.ok("--profile", "bob", "presence", nick)["entries"]
    assert pres == [{"account_id": w["account_id"], "nickname": nick, "state": "online"}]
    assert held.stop() == EX_OK
    # alice is gone: offline once her session is released
    deadline = time.monotonic() + 10
    while True:
        pres = wy.ok("--profile", "bob", "presence", w["account_id"])["entries"]
        if pres[0]["state"] == "offline" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert pres[0]["state"] == "offline"
    wy.ok("logout")
    rc, _, _ = wy.run("nick", "set", "whatever")
    assert rc == EX_AUTH


def test_duplicate_login_kicks_across_instances(wy, module_daemon, auth, lobby):
    other = module_daemon("lobby", env=lobby_env(auth))
    user = uniq()
    wy.register(user, profile="pc1")
    wy.login(user, profile="pc2")
    first = wy.start_lobby("--profile", "pc1", lobby=lobby)
    w1 = first.welcome()
    second = wy.start_lobby("--profile", "pc2", lobby=other)
    w2 = second.welcome()
    assert w1["instance"] != w2["instance"] and w1["account_id"] == w2["account_id"]
    first.expect(lambda e: e.get("event") == "closed", what="closed")
    assert first.wait_exit() == EX_KICKED
    assert any(e.get("event") == "kicked" for e in first.seen)
    # the new session is untouched and not reconnecting
    assert second.p.poll() is None
    assert second.stop() == EX_OK


def test_ban_closes_lobby_session(wy, auth, protos):
    import auth_pb2
    import auth_pb2_grpc
    user = uniq()
    acct = wy.register(user)["account_id"]
    held = wy.start_lobby()
    held.welcome()
    with grpc.insecure_channel(auth.grpc_addr) as ch:
        stub = auth_pb2_grpc.AuthStub(ch)
        stub.Revoke(auth_pb2.RevokeRequest(account_id=acct, reason="ban", ban=True), timeout=10)
    held.expect(lambda e: e.get("event") == "closed", what="closed after the ban")
    assert held.wait_exit() in (EX_KICKED, EX_AUTH, EX_FORBIDDEN)
    assert not any(e.get("event") == "welcome" for e in held.seen[1:]), held.seen
    rc, _, _ = wy.run("login", user, "--password-stdin", password=PASSWORD)
    assert rc == EX_FORBIDDEN


def test_lobby_restart_client_reconnects(wy, daemon, auth):
    port = free_port()
    first = daemon("lobby", env=lobby_env(auth, port=port))
    wy.register(uniq())
    held = wy.start_lobby(lobby=first)
    w = held.welcome(reconnects=0)
    assert first.stop() == 0
    held.expect(lambda e: e.get("event") == "disconnected", what="disconnected")
    daemon("lobby", env=lobby_env(auth, port=port))
    w2 = held.welcome(timeout=40, reconnects=1)
    assert w2["account_id"] == w["account_id"] and w2["session_id"] != w["session_id"]
    assert held.stop() == EX_OK


def test_next_profile_when_in_use_or_logged_in_elsewhere(wy, build_dir, tmp_path, daemon, auth,
                                                        stack):
    strict = daemon("lobby", env=lobby_env(auth, WY_LOBBY_DUPLICATE_POLICY="reject-new"))
    a, b, c = uniq("a"), uniq("b"), uniq("c")
    wy.register(a)                     # default
    wy.register(b, profile="p2")
    wy.register(c, profile="p3")
    # another machine holds account a in the lobby
    elsewhere = Wy(build_dir, tmp_path / "laptop2", auth, strict)
    elsewhere.login(a)
    remote = elsewhere.start_lobby(lobby=strict)
    try:
        w0 = remote.welcome()
        # reject-new refuses only while the holder's instance is known alive (its liveness key)
        deadline = time.monotonic() + 10
        while stack.redis_cli("EXISTS", rkeys.sess_inst(w0["instance"])) != "1":
            assert time.monotonic() < deadline, "lobby never wrote its liveness key"
            time.sleep(0.05)
        # default (a) is refused as logged in elsewhere: the next profile (p2 = b) is used
        one = wy.start_lobby(lobby=strict)
        w1 = one.welcome()
        rc, me, _ = wy.run("--profile", "p2", "whoami")
        assert rc == EX_CONFLICT  # p2 is in use by the running wy lobby
        # a second wy lobby skips the profile in use: p3 = c
        two = wy.start_lobby(lobby=strict)
        w2 = two.welcome()
        accounts = {w1["account_id"], w2["account_id"]}
        assert len(accounts) == 2
        assert wy.ok("--profile", "default", "whoami")["username"] == a
        assert one.stop() == EX_OK and two.stop() == EX_OK
    finally:
        remote.stop()
        elsewhere.cleanup()


def test_token_refresh_during_long_session(wy, build_dir, tmp_path, daemon, keys):
    """Access tokens live 60 s (the minimum): the client refreshes at 3/4 of that; after the
    first token has expired, a lobby restart makes the client reconnect with the new one."""
    short = daemon("auth", env=auth_env(keys, WY_AUTH_ACCESS_TTL="60s"))
    port = free_port()
    lb = daemon("lobby", env=lobby_env(short, port=port))
    w = Wy(build_dir, tmp_path / "long", short, lb)
    try:
        w.register(uniq())
        held = w.start_lobby()
        held.welcome()
        t0 = time.monotonic()
        held.expect(lambda e: e.get("event") == "tokens_refreshed", timeout=70, what="refresh")
        # wait until the first access token is expired for sure
        time.sleep(max(0.0, 63 - (time.monotonic() - t0)))
        assert lb.stop() == 0
        daemon("lobby", env=lobby_env(short, port=port))
        held.welcome(timeout=40, reconnects=1)
        assert held.stop() == EX_OK
        # the rotated refresh token was saved: the next command works
        assert w.ok("whoami")["session_id"]
    finally:
        w.cleanup()


def test_first_run_on_a_new_machine_creates_the_credentials_folder(wy, tmp_path):
    """A new user: empty HOME, no WY_CREDENTIALS_DIR: wy makes ~/.config/wyvern (0700)."""
    home = tmp_path / "newhome"
    home.mkdir()
    env = wy.env()
    env.pop("WY_CREDENTIALS_DIR", None)
    env.pop("XDG_CONFIG_HOME", None)
    env["HOME"] = str(home)
    user = uniq()
    p = subprocess.run([wy.bin, "--json", "register", user, "--password-stdin"], input=PASSWORD + "\n",
                       env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == EX_OK, p.stderr
    folder = home / ".config" / "wyvern"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / "default.cred").st_mode) == 0o600
    p = subprocess.run([wy.bin, "--json", "whoami"], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == EX_OK, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["username"] == user
