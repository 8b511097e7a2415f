"""Steam and OpenID Connect login providers against fake Steam / OIDC servers (tests/integration/
fakes): first alone, through the wy-providercheck tool (services/auth/providers.c without the rest
of auth), then through the real wy-auth daemon's POST /v1/login."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

FAKES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes")
sys.path.insert(0, FAKES)
import fake_steam  # noqa: E402  (ticket and steamid constants)

STEAM_KEY = "SECRET-web-api-key-0123456789"
STEAM_APPID = "480"
AUDIENCE = "wyvern-game"


# ------------------------------------------------------------------ helpers

def start_fake(script, *args):
    p = subprocess.Popen([sys.executable, os.path.join(FAKES, script)] + list(args),
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        raise RuntimeError("%s did not start: %r" % (script, line))
    return p, int(line.split()[1])


def stop_fake(p):
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound, never listened: connections are refused
    return port


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WY_AUTH_")}
    env["WY_LOG_LEVEL"] = "debug"
    env.update(extra)
    return env


class Fake:
    def __init__(self, proc, port):
        self.proc, self.port = proc, port
        self.base = "http://127.0.0.1:%d" % port


class Oidc(Fake):
    @property
    def issuer(self):
        return self.base

    def env(self, **extra):
        e = {"WY_AUTH_OIDC_ISSUER": self.issuer, "WY_AUTH_OIDC_AUDIENCE": AUDIENCE,
             "WY_AUTH_OIDC_JWKS_URL": self.base + "/jwks"}
        e.update(extra)
        return e

    def claims(self, **over):
        now = int(time.time())
        c = {"iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def mint(self, kid="rsa1", claims=None, **extra):
        body = {"kid": kid, "claims": claims if claims is not None else self.claims()}
        body.update(extra)
        r = requests.post(self.base + "/mint", json=body, timeout=10)
        r.raise_for_status()
        return r.json()["token"]

    def control(self, **body):
        requests.post(self.base + "/control", json=body, timeout=10).raise_for_status()

    def jwks_requests(self):
        return requests.get(self.base + "/stats", timeout=10).json()["jwks_requests"]


@pytest.fixture(scope="module")
def steam():
    p, port = start_fake("fake_steam.py", "--key", STEAM_KEY, "--appid", STEAM_APPID)
    yield Fake(p, port)
    stop_fake(p)


def steam_env(base, **extra):
    e = {"WY_AUTH_STEAM_API_URL": base, "WY_AUTH_STEAM_APP_ID": STEAM_APPID,
         "WY_AUTH_STEAM_WEB_API_KEY": STEAM_KEY}
    e.update(extra)
    return e


@pytest.fixture
def oidc():
    p, port = start_fake("fake_oidc.py")
    yield Oidc(p, port)
    stop_fake(p)


@pytest.fixture
def oidc_down():
    p, port = start_fake("fake_oidc.py", "--down")
    yield Oidc(p, port)
    stop_fake(p)


@pytest.fixture(scope="session")
def tool(build_dir):
    t = os.path.join(build_dir, "tests", "tools", "wy-providercheck")
    assert os.access(t, os.X_OK), "%s is missing: build it first (make tests)" % t
    return t


class Check:
    """wy-providercheck --stdin: one process, verifications answered one by one (keeps the
    provider's JWKS cache between them)."""

    def __init__(self, tool, env):
        self.p = subprocess.Popen([tool, "--stdin"], env=clean_env(env), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def verify(self, method, cred):
        self.p.stdin.write("%s %s\n" % (method, cred))
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, "wy-providercheck died: %s" % self.p.stderr.read()
        return json.loads(line)

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait(15)
        err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        assert rc in (0, 1), "wy-providercheck exit %d: %s" % (rc, err)
        assert "Sanitizer" not in err and "runtime error" not in err, err
        return err


def check(tool, env, method, cred):
    r = subprocess.run([tool, method, cred], env=clean_env(env), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode in (0, 1), "exit %d: %s" % (r.returncode, r.stderr)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["_stderr"] = r.stderr
    assert (r.returncode == 0) == (out["err"] == "OK")
    return out


# ------------------------------------------------------------------ Steam through the tool

def test_steam_good_ticket(tool, steam):
    r = check(tool, steam_env(steam.base), "steam", fake_steam.GOOD_TICKET)
    assert r["err"] == "OK", r
    assert r["subject"] == fake_steam.GOOD_STEAMID


def test_steam_uppercase_hex_and_family_sharing(tool, steam):
    r = check(tool, steam_env(steam.base), "steam", fake_steam.FAMILY_TICKET.upper())
    assert r["err"] == "OK", r
    assert r["subject"] == fake_steam.FAMILY_STEAMID  # the player, not the owner


def test_steam_publisher_banned(tool, steam):
    r = check(tool, steam_env(steam.base), "steam", fake_steam.BANNED_TICKET)
    assert r["err"] == "EAUTH", r
    assert "banned" in r["message"]
    assert r["subject"] is None


def test_steam_unknown_ticket(tool, steam):
    r = check(tool, steam_env(steam.base), "steam", "00112233445566778899")
    assert r["err"] == "EAUTH", r
    assert "Invalid ticket" in r["message"]


@pytest.mark.parametrize("ticket", ["not-hex!", "abc", "zz" * 8, "a" * 5000, ""])
def test_steam_malformed_ticket(tool, steam, ticket):
    r = check(tool, steam_env(steam.base), "steam", ticket)
    assert r["err"] == "EINVAL", r


def test_steam_unreachable(tool):
    r = check(tool, steam_env("http://127.0.0.1:%d" % closed_port()), "steam",
              fake_steam.GOOD_TICKET)
    assert r["err"] == "EUNAVAIL", r


def test_steam_wrong_key_is_unavailable_and_never_logged(tool, steam):
    bad = "WRONG-key-do-not-log-42"
    r = check(tool, steam_env(steam.base, WY_AUTH_STEAM_WEB_API_KEY=bad), "steam",
              fake_steam.GOOD_TICKET)
    assert r["err"] == "EUNAVAIL", r
    assert "misconfigured" in r["message"]
    assert bad not in r["_stderr"] and bad not in r["message"]
    assert "WY_AUTH_STEAM_WEB_API_KEY" in r["_stderr"]  # the operator is told what to fix


def test_steam_wrong_appid(tool, steam):
    r = check(tool, steam_env(steam.base, WY_AUTH_STEAM_APP_ID="999"), "steam",
              fake_steam.GOOD_TICKET)
    assert r["err"] == "EAUTH", r


def test_steam_disabled(tool):
    r = check(tool, {}, "steam", fake_steam.GOOD_TICKET)
    assert r["err"] == "ESTATE", r


def test_steam_key_never_logged_on_success(tool, steam):
    r = check(tool, steam_env(steam.base), "steam", fake_steam.GOOD_TICKET)
    assert r["err"] == "OK"
    assert STEAM_KEY not in r["_stderr"]


def test_provider_config_errors(tool):
    r = subprocess.run([tool, "steam", "00"], env=clean_env({"WY_AUTH_STEAM_APP_ID": "480"}),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "WY_AUTH_STEAM_WEB_API_KEY" in r.stderr
    r = subprocess.run([tool, "oidc", "x"],
                       env=clean_env({"WY_AUTH_OIDC_ISSUER": "https://idp.example"}),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "WY_AUTH_OIDC_AUDIENCE" in r.stderr
    r = subprocess.run([tool, "oidc", "x"],
                       env=clean_env({"WY_AUTH_OIDC_ISSUER": "https://idp.example",
                                      "WY_AUTH_OIDC_AUDIENCE": "a",
                                      "WY_AUTH_OIDC_JWKS_URL": "https://idp.example/jwks",
                                      "WY_AUTH_OIDC_ALGS": "RS256,HS256"}),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "WY_AUTH_OIDC_ALGS" in r.stderr


# ------------------------------------------------------------------ OIDC through the tool

def test_oidc_good_rs256_and_es256(tool, oidc):
    c = Check(tool, oidc.env())
    try:
        r = c.verify("oidc", oidc.mint("rsa1"))
        assert r["err"] == "OK", r
        assert r["subject"] == oidc.issuer + "|alice"
        r = c.verify("oidc", oidc.mint("ec1", oidc.claims(sub="bob")))
        assert r["err"] == "OK", r
        assert r["subject"] == oidc.issuer + "|bob"
        # aud may be an array that contains ours
        r = c.verify("oidc", oidc.mint("rsa1", oidc.claims(aud=["other", AUDIENCE])))
        assert r["err"] == "OK", r
        assert oidc.jwks_requests() == 1  # keys are cached
    finally:
        c.close()


@pytest.mark.parametrize("over,why", [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"aud": "someone-else"}, "wrong audience"),
    ({"iss": "http://evil.example"}, "wrong issuer"),
    ({"sub": None}, "no subject"),
    ({"exp": None}, "no expiry"),
    ({"nbf": int(time.time()) + 3600}, "not yet valid"),
])
def test_oidc_bad_claims(tool, oidc, over, why):
    r = check(tool, oidc.env(), "oidc", oidc.mint("rsa1", oidc.claims(**over)))
    assert r["err"] == "EAUTH", (why, r)
    assert r["subject"] is None


def test_oidc_unknown_kid_refreshes_once_then_rejects(tool, oidc):
    c = Check(tool, oidc.env())
    try:
        assert c.verify("oidc", oidc.mint("rsa1"))["err"] == "OK"
        assert oidc.jwks_requests() == 1
        # rsa2 is not published: one refetch, still unknown -> rejected
        r = c.verify("oidc", oidc.mint("rsa2"))
        assert r["err"] == "EAUTH", r
        assert oidc.jwks_requests() == 2
        # another unknown kid within the minute: no refetch (no JWKS hammering)
        r = c.verify("oidc", oidc.mint("rsa2"))
        assert r["err"] == "EAUTH", r
        assert oidc.jwks_requests() == 2
    finally:
        c.close()


def test_oidc_key_rotation_picked_up_on_unknown_kid(tool, oidc):
    c = Check(tool, oidc.env())
    try:
        assert c.verify("oidc", oidc.mint("rsa1"))["err"] == "OK"
        oidc.control(publish=["rsa2", "ec1"])
        r = c.verify("oidc", oidc.mint("rsa2"))
        assert r["err"] == "OK", r
        assert oidc.jwks_requests() == 2
        # rsa1 was retired by the issuer: its tokens no longer pass
        assert c.verify("oidc", oidc.mint("rsa1"))["err"] == "EAUTH"
    finally:
        c.close()


def test_oidc_alg_none_rejected(tool, oidc):
    r = check(tool, oidc.env(), "oidc", oidc.mint("rsa1", alg="none"))
    assert r["err"] in ("EAUTH", "EINVAL"), r


def test_oidc_hs256_with_public_key_rejected(tool, oidc):
    r = check(tool, oidc.env(), "oidc", oidc.mint("rsa1", alg="HS256"))
    assert r["err"] == "EAUTH", r


def test_oidc_alg_confusion_rejected(tool, oidc):
    # header claims RS256 but names the EC key (signature made with rsa1)
    tok = oidc.mint("rsa1", raw_header={"alg": "RS256", "kid": "ec1", "typ": "JWT"})
    r = check(tool, oidc.env(), "oidc", tok)
    assert r["err"] == "EAUTH", r


def test_oidc_tampered_signature(tool, oidc):
    tok = oidc.mint("rsa1")
    h, p, s = tok.split(".")
    mid = len(s) // 2
    s = s[:mid] + ("A" if s[mid] != "A" else "B") + s[mid + 1:]
    r = check(tool, oidc.env(), "oidc", ".".join([h, p, s]))
    assert r["err"] == "EAUTH", r
    # and a payload changed under a valid signature
    evil = oidc.mint("rsa1", oidc.claims(sub="mallory")).split(".")[1]
    r = check(tool, oidc.env(), "oidc", ".".join([tok.split(".")[0], evil, tok.split(".")[2]]))
    assert r["err"] == "EAUTH", r


def test_oidc_alg_not_configured(tool, oidc):
    r = check(tool, oidc.env(WY_AUTH_OIDC_ALGS="ES256"), "oidc", oidc.mint("rsa1"))
    assert r["err"] == "EAUTH", r
    r = check(tool, oidc.env(WY_AUTH_OIDC_ALGS="ES256"), "oidc", oidc.mint("ec1"))
    assert r["err"] == "OK", r


@pytest.mark.parametrize("tok", ["garbage", "a.b", "a.b.c", "x" * 20000])
def test_oidc_malformed(tool, oidc, tok):
    r = check(tool, oidc.env(), "oidc", tok)
    assert r["err"] == "EINVAL", r


def test_oidc_disabled(tool):
    assert check(tool, {}, "oidc", "a.b.c")["err"] == "ESTATE"


def test_oidc_jwks_down_at_start_then_up(tool, oidc_down):
    c = Check(tool, oidc_down.env())
    try:
        tok = oidc_down.mint("rsa1")
        r = c.verify("oidc", tok)
        assert r["err"] == "EUNAVAIL", r
        oidc_down.control(jwks="up")
        deadline = time.monotonic() + 15
        while True:  # a failed fetch is retried at most once per second on demand
            r = c.verify("oidc", tok)
            if r["err"] == "OK" or time.monotonic() > deadline:
                break
            assert r["err"] == "EUNAVAIL", r
            time.sleep(0.2)
        assert r["err"] == "OK", r
        assert r["subject"] == oidc_down.issuer + "|alice"
    finally:
        c.close()


def test_oidc_jwks_unreachable(tool):
    env = {"WY_AUTH_OIDC_ISSUER": "http://idp.invalid", "WY_AUTH_OIDC_AUDIENCE": AUDIENCE,
           "WY_AUTH_OIDC_JWKS_URL": "http://127.0.0.1:%d/jwks" % closed_port()}
    r = check(tool, env, "oidc", "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEifQ.e30.AAAA")
    assert r["err"] == "EUNAVAIL", r


# ------------------------------------------------------------------ through wy-auth

def auth_vars(build_dir):
    binary = os.path.join(build_dir, "wy-auth")
    assert os.access(binary, os.X_OK), "%s is missing: build it first (make)" % binary
    r = subprocess.run([binary, "--help", "--json"],
                       capture_output=True, text=True, timeout=30)
    try:
        return {v["name"] for v in json.loads(r.stdout)["variables"]}
    except ValueError:
        return set()


@pytest.fixture
def auth(request, build_dir, tmp_path, free_port):
    """A wy-auth with steam and oidc enabled, or a skip while the daemon does not wire them."""
    names = auth_vars(build_dir)
    if "WY_AUTH_STEAM_APP_ID" not in names or "WY_AUTH_HTTP_PORT" not in names:
        pytest.skip("wy-auth does not wire the steam/oidc login methods yet")
    daemon = request.getfixturevalue("daemon")  # only now: it starts the stack

    def start(env):
        full = {"WY_AUTH_HTTP_PORT": str(free_port())}
        if "WY_AUTH_KEYS_DIR" in names:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            (tmp_path / "k1.pem").write_bytes(pem)
            os.chmod(tmp_path / "k1.pem", 0o600)
            full.update({"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1"})
        full.update(env)
        daemon("auth", env=full)
        return "http://127.0.0.1:%s/v1/login" % full["WY_AUTH_HTTP_PORT"]
    return start


def login(url, body):
    return requests.post(url, json=body, timeout=15)


def test_daemon_steam_login(auth, steam):
    url = auth(steam_env(steam.base))
    r1 = login(url, {"method": "steam", "ticket": fake_steam.GOOD_TICKET})
    assert r1.status_code == 201, r1.text  # first login creates the account
    r2 = login(url, {"method": "steam", "ticket": fake_steam.GOOD_TICKET})
    assert r2.status_code == 200, r2.text
    assert r1.json()["account_id"] == r2.json()["account_id"]  # same Steam user, same account
    r = login(url, {"method": "steam", "ticket": fake_steam.BANNED_TICKET})
    assert r.status_code == 401, r.text
    r = login(url, {"method": "steam", "ticket": "nothex"})
    assert r.status_code == 400, r.text


def test_daemon_steam_unreachable(auth):
    url = auth(steam_env("http://127.0.0.1:%d" % closed_port()))
    r = login(url, {"method": "steam", "ticket": fake_steam.GOOD_TICKET})
    assert r.status_code == 503, r.text


def test_daemon_oidc_login(auth, oidc):
    url = auth(oidc.env())
    r1 = login(url, {"method": "oidc", "id_token": oidc.mint("rsa1")})
    assert r1.status_code == 201, r1.text
    r2 = login(url, {"method": "oidc", "id_token": oidc.mint("ec1")})
    assert r2.status_code == 200, r2.text
    assert r1.json()["account_id"] == r2.json()["account_id"]
    r = login(url, {"method": "oidc",
                    "id_token": oidc.mint("rsa1", oidc.claims(exp=int(time.time()) - 3600))})
    assert r.status_code == 401, r.text
    r = login(url, {"method": "steam", "ticket": fake_steam.GOOD_TICKET})
    assert r.status_code == 400, r.text  # steam not configured on this daemon
