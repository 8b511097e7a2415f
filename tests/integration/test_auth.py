"""wy-auth against the real stack (PostgreSQL, Redis, Kafka): every login method,
refresh rotation and reuse detection, logout and ban seen by Introspect within 1 s,
rate limits, the bounded hash queue, link/unlink, JWKS and the wy.account events."""
import concurrent.futures
import contextlib
import glob
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse
import uuid

import grpc
import pytest
import requests

from harness import TOP, rkeys
from harness.ports import free_port as next_port
from harness.wait import wait_until

SERVER_KEY = "studio-server-key-for-tests"


def uniq(prefix="p"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def keys(tmp_path_factory, build_dir):
    """A keys folder as Kubernetes would mount it: <kid>.pem files, one signing key made by
    wy-keygen, plus an older verification-only public key."""
    d = tmp_path_factory.mktemp("authkeys")
    keygen = os.path.join(build_dir, "tools", "wy-keygen")
    subprocess.run([keygen, str(d / "k2.pem")], check=True, timeout=10)
    assert (os.stat(d / "k2.pem").st_mode & 0o777) == 0o600
    # An older key kept for verification only (rotation): its public half.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    old = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (d / "k1.pem").write_bytes(old)
    return str(d)


def auth_env(keys, **extra):
    env = {
        "WY_AUTH_KEYS_DIR": keys,
        "WY_AUTH_SIGNING_KID": "k2",
        "WY_AUTH_HTTP_PORT": str(next_port()),
        "WY_AUTH_CUSTOM_SECRET": SERVER_KEY,
        "WY_AUTH_LOGIN_LIMIT_ACCOUNT_SOURCE": "3",
        "WY_AUTH_LOGIN_LIMIT_ACCOUNT": "5",
        "WY_AUTH_LOGIN_LIMIT_IP": "10000",
        "WY_AUTH_LOGIN_WINDOW": "60s",
    }
    env.update(extra)
    return env


class Api:
    def __init__(self, d):
        self.d = d
        self.base = "http://127.0.0.1:%s" % d.env["WY_AUTH_HTTP_PORT"]

    def post(self, path, body=None, token=None, headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        return requests.post(self.base + path, json=body, headers=h, timeout=15)

    def get(self, path, token=None):
        h = {"Authorization": "Bearer " + token} if token else {}
        return requests.get(self.base + path, headers=h, timeout=15)

    def register(self, username, password="correct horse battery"):
        return self.post("/v1/register", {"username": username, "password": password})

    def login(self, username, password="correct horse battery"):
        return self.post("/v1/login", {"method": "password", "username": username,
                                       "password": password})

    def device(self, device_id):
        return self.post("/v1/login", {"method": "device", "device_id": device_id})


def code(r):
    return r.json()["error"]["code"]


@pytest.fixture(scope="module")
def auth(module_daemon, keys):
    d = module_daemon("auth", env=auth_env(keys))
    api = Api(d)
    wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200,
               timeout=30, what="auth ready")
    return api


@pytest.fixture(scope="module")
def stub(auth, protos):
    import auth_pb2_grpc
    ch = grpc.insecure_channel(auth.d.grpc_addr)
    yield auth_pb2_grpc.AuthStub(ch)
    ch.close()


def introspect(stub, token):
    import auth_pb2
    return stub.Introspect(auth_pb2.IntrospectRequest(access_token=token), timeout=5)


# ---- password ----

def test_register_then_password_login(auth, stub):
    name = uniq("Player")
    r = auth.register(name)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert len(body["refresh_token"]) == 78  # carries its family: nothing stored at login
    assert body["created"] is True
    r = auth.login(name.lower())  # usernames compare case-insensitively
    assert r.status_code == 200, r.text
    assert r.json()["account_id"] == body["account_id"]
    assert r.json()["session_id"] != body["session_id"]
    i = introspect(stub, r.json()["access_token"])
    assert i.active and not i.revoked and i.account_id == body["account_id"]
    assert i.session_id == r.json()["session_id"]


def test_wrong_password_and_unknown_user_look_the_same(auth):
    name = uniq()
    assert auth.register(name).status_code == 201
    wrong = auth.login(name, "not the password at all")
    unknown = auth.login(uniq("nobody"), "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert code(wrong) == code(unknown) == "INVALID_CREDENTIALS"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


@pytest.mark.parametrize("username,password,expected", [
    ("ab", "correct horse battery", "INVALID_USERNAME"),
    ("x" * 25, "correct horse battery", "INVALID_USERNAME"),
    ("bad name", "correct horse battery", "INVALID_USERNAME"),
    ("_leading", "correct horse battery", "INVALID_USERNAME"),
    ("p\u0430ypal", "correct horse battery", "INVALID_USERNAME"),  # Cyrillic a among Latin
    ("emoji\U0001F600", "correct horse battery", "INVALID_USERNAME"),
    ("validname", "short", "INVALID_PASSWORD"),
    ("validname", "aaaaaaaaaaaa", "INVALID_PASSWORD"),
    ("validname", "x" * 129, "INVALID_PASSWORD"),
    ("validname", "tab\there is bad", "INVALID_PASSWORD"),
])
def test_invalid_username_or_password_is_400_with_a_code(auth, username, password, expected):
    r = auth.register(username, password)
    assert r.status_code == 400, r.text
    assert code(r) == expected
    assert r.json()["error"]["message"]


def test_bad_request_bodies(auth):
    r = requests.post(auth.base + "/v1/login", data="{not json", timeout=5)
    assert r.status_code == 400 and code(r) == "BAD_JSON"
    r = auth.post("/v1/login", {"method": "carrier-pigeon"})
    assert r.status_code == 400 and code(r) == "UNKNOWN_METHOD"
    r = auth.post("/v1/login", {"method": "password"})
    assert r.status_code == 400 and code(r) == "INVALID_REQUEST"
    r = auth.post("/v1/login", {"method": "steam", "ticket": "00ff"})
    assert r.status_code == 400 and code(r) == "METHOD_DISABLED"
    r = auth.post("/v1/login", {"method": "oidc", "id_token": "a.b.c"})
    assert r.status_code == 400 and code(r) == "METHOD_DISABLED"
    r = requests.post(auth.base + "/v1/register", data="x" * 20000, timeout=5)
    assert r.status_code == 413


def test_hangul_and_accented_usernames_are_accepted(auth):
    tag = uuid.uuid4().hex[:4]
    for name in ("한글사용자" + tag, "José" + tag, "Zoë_" + tag):
        r = auth.register(name)
        assert r.status_code == 201, (name, r.text)
    # Same name written with a combining accent is the same identity.
    r = auth.register("Jose\u0301" + tag)
    assert r.status_code == 409 and code(r) == "USERNAME_TAKEN"


@pytest.mark.parametrize("first,second", [
    ("player{t}", "\uff30layer{t}"),    # fullwidth P
    ("file{t}", "\ufb01le{t}"),         # fi ligature
    ("Player{t}", "PLAYER{t}"),         # case
])
def test_look_alike_usernames_conflict(auth, first, second):
    t = uuid.uuid4().hex[:6]
    assert auth.register(first.format(t=t)).status_code == 201
    r = auth.register(second.format(t=t))
    assert r.status_code == 409, r.text
    assert code(r) == "USERNAME_TAKEN"
    # And the look-alike logs into the same account.
    assert auth.login(second.format(t=t)).status_code == 200


# ---- device and custom ----

def test_device_login_creates_then_reuses_the_account(auth):
    dev = "dev-" + uuid.uuid4().hex
    r1 = auth.device(dev)
    assert r1.status_code == 201 and r1.json()["created"] is True
    r2 = auth.device(dev)
    assert r2.status_code == 200 and "created" not in r2.json()
    assert r1.json()["account_id"] == r2.json()["account_id"]
    r = auth.device("short")
    assert r.status_code == 400 and code(r) == "INVALID_DEVICE_ID"
    r = auth.device("bad id with spaces!")
    assert r.status_code == 400 and code(r) == "INVALID_DEVICE_ID"


def test_custom_login_requires_the_server_key(auth):
    body = {"method": "custom", "custom_id": "studio-" + uuid.uuid4().hex}
    r = auth.post("/v1/login", body)
    assert r.status_code == 403 and code(r) == "SERVER_KEY_REQUIRED"
    r = auth.post("/v1/login", body, headers={"X-Wyvern-Server-Key": "wrong"})
    assert r.status_code == 403 and code(r) == "SERVER_KEY_REQUIRED"
    r = auth.post("/v1/login", body, headers={"X-Wyvern-Server-Key": SERVER_KEY})
    assert r.status_code == 201, r.text
    again = auth.post("/v1/login", body, headers={"X-Wyvern-Server-Key": SERVER_KEY})
    assert again.status_code == 200
    assert again.json()["account_id"] == r.json()["account_id"]


# ---- refresh ----

def test_refresh_rotates_and_reuse_revokes_the_family(auth, stub):
    name = uniq()
    first = auth.register(name).json()
    r = auth.post("/v1/refresh", {"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["session_id"] == first["session_id"]
    assert introspect(stub, second["access_token"]).active
    r = auth.post("/v1/refresh", {"refresh_token": second["refresh_token"]})
    assert r.status_code == 200
    third = r.json()
    # The old token again: reuse -> the whole family is revoked.
    r = auth.post("/v1/refresh", {"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and code(r) == "REFRESH_TOKEN_REUSED"
    r = auth.post("/v1/refresh", {"refresh_token": third["refresh_token"]})
    assert r.status_code == 401 and code(r) == "INVALID_REFRESH_TOKEN"
    i = introspect(stub, third["access_token"])
    assert not i.active and i.revoked
    r = auth.get("/v1/me", third["access_token"])
    assert r.status_code == 401 and code(r) == "TOKEN_REVOKED"


def test_refresh_with_garbage_is_401(auth):
    for tok in ("", "x" * 43, "short", None):
        r = auth.post("/v1/refresh", {"refresh_token": tok})
        assert r.status_code == 401 and code(r) == "INVALID_REFRESH_TOKEN"


# ---- logout, ban ----

def test_logout_is_seen_by_introspect_within_1s(auth, stub):
    tok = auth.register(uniq()).json()
    assert introspect(stub, tok["access_token"]).active
    r = auth.post("/v1/logout", token=tok["access_token"])
    assert r.status_code == 204
    t0 = time.monotonic()
    wait_until(lambda: introspect(stub, tok["access_token"]).revoked, timeout=1.0,
               what="introspect says revoked")
    assert time.monotonic() - t0 < 1.0
    r = auth.post("/v1/refresh", {"refresh_token": tok["refresh_token"]})
    assert r.status_code == 401


def test_ban_revokes_within_1s_and_refuses_login(auth, stub, protos):
    import auth_pb2
    name = uniq()
    tok = auth.register(name).json()
    dev = "dev-" + uuid.uuid4().hex
    assert auth.post("/v1/link", {"method": "device", "device_id": dev},
                     token=tok["access_token"]).status_code == 200
    # One family refreshed (its rows exist) and one never refreshed (no rows yet): the ban
    # revokes both; sessions_revoked counts the rows.
    other = auth.device(dev).json()
    rotated = auth.post("/v1/refresh", {"refresh_token": other["refresh_token"]})
    assert rotated.status_code == 200
    resp = stub.Revoke(auth_pb2.RevokeRequest(account_id=tok["account_id"], reason="cheating",
                                              ban=True), timeout=5)
    assert resp.sessions_revoked == 1
    r = auth.post("/v1/refresh", {"refresh_token": rotated.json()["refresh_token"]})
    assert r.status_code in (401, 403)
    wait_until(lambda: introspect(stub, tok["access_token"]).revoked, timeout=1.0,
               what="introspect says revoked")
    r = auth.login(name)
    assert r.status_code == 403 and code(r) == "ACCOUNT_BANNED"
    r = auth.device(dev)
    assert r.status_code == 403 and code(r) == "ACCOUNT_BANNED"
    r = auth.post("/v1/refresh", {"refresh_token": tok["refresh_token"]})
    assert r.status_code in (401, 403)
    acct = stub.GetAccount(auth_pb2.GetAccountRequest(account_id=tok["account_id"]), timeout=5)
    assert acct.banned and acct.username == name
    assert sorted(acct.login_methods) == ["device", "password"]


def test_grpc_errors(stub, protos):
    import auth_pb2
    with pytest.raises(grpc.RpcError) as e:
        stub.GetAccount(auth_pb2.GetAccountRequest(account_id=str(uuid.uuid4())), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        stub.Revoke(auth_pb2.RevokeRequest(account_id="not-a-uuid"), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    i = introspect(stub, "not.a.token")
    assert not i.active and not i.revoked and i.reason


# ---- link / unlink / me ----

def test_link_unlink_and_last_method(auth):
    name = uniq()
    tok = auth.register(name).json()
    at = tok["access_token"]
    dev = "dev-" + uuid.uuid4().hex
    r = auth.post("/v1/link", {"method": "device", "device_id": dev}, token=at)
    assert r.status_code == 200, r.text
    assert r.json()["login_methods"] == ["device", "password"]
    # The device now logs into the same account.
    assert auth.device(dev).json()["account_id"] == tok["account_id"]
    # A device already owned by someone else cannot be linked.
    other = "dev-" + uuid.uuid4().hex
    assert auth.device(other).status_code == 201
    r = auth.post("/v1/link", {"method": "device", "device_id": other}, token=at)
    assert r.status_code == 409 and code(r) == "IDENTITY_TAKEN"
    r = auth.post("/v1/link", {"method": "password", "username": uniq(),
                               "password": "another good one"}, token=at)
    assert r.status_code == 409 and code(r) == "ALREADY_LINKED"
    r = auth.post("/v1/unlink", {"method": "password"}, token=at)
    assert r.status_code == 200 and r.json()["login_methods"] == ["device"]
    assert auth.login(name).status_code == 401
    r = auth.post("/v1/unlink", {"method": "device"}, token=at)
    assert r.status_code == 409 and code(r) == "LAST_LOGIN_METHOD"
    r = auth.post("/v1/unlink", {"method": "custom"}, token=at)
    assert r.status_code == 404 and code(r) == "NOT_LINKED"
    # Password linked to a device account.
    new_name = uniq()
    r = auth.post("/v1/link", {"method": "password", "username": new_name,
                               "password": "brand new secret"}, token=at)
    assert r.status_code == 200 and r.json()["username"] == new_name
    assert auth.login(new_name, "brand new secret").json()["account_id"] == tok["account_id"]


def test_whoami_and_bearer_errors(auth):
    name = uniq()
    tok = auth.register(name).json()
    r = auth.get("/v1/me", tok["access_token"])
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["account_id"] == tok["account_id"] and me["username"] == name
    assert me["session_id"] == tok["session_id"] and me["login_methods"] == ["password"]
    r = auth.get("/v1/me")
    assert r.status_code == 401 and code(r) == "INVALID_TOKEN"
    r = auth.get("/v1/me", tok["access_token"][:-4] + "AAAA")
    assert r.status_code == 401 and code(r) == "INVALID_TOKEN"


def test_jwks_is_served_over_http_and_grpc(auth, stub, protos):
    import auth_pb2
    r = auth.get("/.well-known/jwks.json")
    assert r.status_code == 200 and "max-age" in r.headers["Cache-Control"]
    keys = {k["kid"]: k for k in r.json()["keys"]}
    assert set(keys) == {"k1", "k2"}
    for k in keys.values():
        assert k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k
    g = stub.GetKeys(auth_pb2.GetKeysRequest(), timeout=5)
    assert json.loads(g.jwks_json) == r.json() and g.max_age_s == 300


# ---- abuse ----

def post_from(api, source, path, body):
    """POST from a chosen loopback source address (auth limits by the peer address):
    (status, parsed body)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", int(api.d.env["WY_AUTH_HTTP_PORT"]), timeout=15,
                                   source_address=(source, 0))
    try:
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None), dict(r.getheaders())
    finally:
        c.close()


def login_from(api, source, name, password="correct horse battery"):
    return post_from(api, source, "/v1/login",
                     {"method": "password", "username": name, "password": password})


def test_failed_logins_per_account_and_source_get_429_with_retry_after(auth):
    name = uniq()
    assert auth.register(name).status_code == 201
    for _ in range(3):
        assert auth.login(name, "wrong password!").status_code == 401
    r = auth.login(name, "wrong password!")
    assert r.status_code == 429 and code(r) == "RATE_LIMITED"
    assert "from this address" in r.json()["error"]["message"]
    assert int(r.headers["Retry-After"]) >= 1
    # Even the right password waits from this address: the limit is checked before hashing.
    assert auth.login(name).status_code == 429


def test_a_strangers_wrong_passwords_do_not_lock_the_owner_out(daemon, keys, stack):
    """Must-show 4: 50 wrong passwords from one source (127.0.0.2), with the default limits,
    do not stop the owner logging in from another source (127.0.0.3); every failure and
    refusal is logged with account, source and reason, never the password."""
    for src in ("127.0.0.2", "127.0.0.3"):
        stack.redis_cli("DEL", "auth:rl:ip:" + src)
    env = auth_env(keys)
    for var in ("WY_AUTH_LOGIN_LIMIT_ACCOUNT_SOURCE", "WY_AUTH_LOGIN_LIMIT_ACCOUNT",
                "WY_AUTH_LOGIN_LIMIT_IP", "WY_AUTH_LOGIN_WINDOW"):
        env[var] = None  # the documented defaults
    d = daemon("auth", env=env)
    api = Api(d)
    name = uniq("Owner")
    r = api.register(name)
    assert r.status_code == 201
    account = r.json()["account_id"]
    wrong = "stranger-guess-%s" % uuid.uuid4().hex[:6]
    statuses = [login_from(api, "127.0.0.2", name, wrong)[0] for _ in range(50)]
    assert set(statuses) == {401, 429}, statuses
    assert statuses.index(429) == 10 and set(statuses[10:]) == {429}, statuses
    status, body, _ = login_from(api, "127.0.0.3", name)
    assert status == 200, body
    assert body["account_id"] == account
    # The stranger's address stays locked out of this account.
    assert login_from(api, "127.0.0.2", name)[0] == 429
    recs = d.log_lines()
    failed = [x for x in recs if x.get("msg") == "login failed"]
    refused = [x for x in recs if x.get("msg") == "login refused: locked out"]
    # 40 refusals among the 50, and the one just above.
    assert len(failed) == 10 and len(refused) == 41, (len(failed), len(refused))
    assert all(x["account"] == account and x["source"] == "127.0.0.2" and
               x["reason"] == "wrong_password" for x in failed)
    assert all(x["scope"] == "account_source" and x["source"] == "127.0.0.2" and
               x["username"] == name.lower() for x in refused)
    assert wrong not in d.log_text()


def test_the_account_wide_limit_holds_across_sources(daemon, keys, stack):
    """Guessing from many sources meets the higher account-wide limit (5 here): then the
    account refuses password logins from every source until the window slides."""
    sources = ["127.0.0.%d" % i for i in (4, 5, 6)]
    for src in sources:
        stack.redis_cli("DEL", "auth:rl:ip:" + src)
    d = daemon("auth", env=auth_env(keys))
    api = Api(d)
    name = uniq()
    assert api.register(name).status_code == 201
    got = [login_from(api, src, name, "wrong password!")[0]
           for src in sources[:2] for _ in range(3)]
    # 3 per source pass the per-(account, source) limit, but only 5 in all.
    assert got == [401, 401, 401, 401, 401, 429], got
    status, body, _ = login_from(api, sources[2], name)
    assert status == 429 and body["error"]["message"] == \
        "too many failed logins for this account", body


def test_failed_logins_per_ip_get_429(daemon, keys, stack):
    # Every test daemon shares Redis and the source address 127.0.0.1: start clean.
    stack.redis_cli("DEL", "auth:rl:ip:127.0.0.1")
    d = daemon("auth", env=auth_env(keys, WY_AUTH_LOGIN_LIMIT_IP="2"))
    api = Api(d)
    for _ in range(2):
        assert api.login(uniq(), "wrong password!").status_code == 401
    r = api.login(uniq(), "wrong password!")
    assert r.status_code == 429 and code(r) == "RATE_LIMITED" and "Retry-After" in r.headers
    # Logins that need no password are not limited.
    assert api.device("dev-" + uuid.uuid4().hex).status_code == 201


def test_full_hash_queue_answers_503(daemon, keys):
    d = daemon("auth", env=auth_env(keys, WY_AUTH_HASH_QUEUE="1",
                                    WY_AUTH_ARGON2_ITERATIONS="4"))
    api = Api(d)
    name = uniq()
    assert api.register(name).status_code == 201
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        results = list(ex.map(lambda _: api.login(name), range(12)))
    statuses = sorted(r.status_code for r in results)
    assert 200 in statuses and 503 in statuses, statuses
    busy = [r for r in results if r.status_code == 503]
    assert all(code(r) == "HASH_QUEUE_FULL" and r.headers.get("Retry-After") for r in busy)
    assert set(statuses) <= {200, 503}


def test_no_key_configured_exits_2(build_dir, stack, tmp_path):
    exe = os.path.join(build_dir, "wy-auth")
    env = dict(os.environ, **stack.env())
    env.pop("WY_AUTH_KEYS_DIR", None)
    env["WY_AUTH_SIGNING_KID"] = "k2"
    out = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=30, cwd=TOP)
    assert out.returncode == 2
    assert "WY_AUTH_KEYS_DIR" in out.stderr and "required" in out.stderr
    # A folder without any key refuses to start too, naming the variable.
    env["WY_AUTH_KEYS_DIR"] = str(tmp_path)
    env["WY_AUTH_OPS_PORT"] = "0"
    env["WY_AUTH_GRPC_PORT"] = "0"
    env["WY_AUTH_HTTP_PORT"] = "1"
    out = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=30, cwd=TOP)
    assert out.returncode != 0
    assert "WY_AUTH_KEYS_DIR" in out.stderr


def test_short_custom_secret_refused(daemon, keys):
    d = daemon("auth", env=auth_env(keys, WY_AUTH_CUSTOM_SECRET="short"), wait_ready=False)
    assert d.wait(timeout=30) != 0
    assert "WY_AUTH_CUSTOM_SECRET" in d.log_text() and "short" not in d.log_text()


def test_signing_kid_must_exist(daemon, keys):
    d = daemon("auth", env=auth_env(keys, WY_AUTH_SIGNING_KID="nope"),
               wait_ready=False)
    rc = d.wait(timeout=30)
    assert rc != 0
    assert "WY_AUTH_SIGNING_KID" in d.log_text()


# ---- events ----

def test_account_events_on_wy_account(auth, stack, build_dir):
    r = auth.device("dev-" + uuid.uuid4().hex)
    assert r.status_code == 201
    assert auth.post("/v1/logout", token=r.json()["access_token"]).status_code == 204
    account = r.json()["account_id"].encode()
    libs = glob.glob(os.path.join(TOP, ".cache", "kafka-*", "libs"))
    assert libs, "Kafka jars are missing: run tools/deps"
    brokers = stack.env()["WY_KAFKA_BROKERS"]

    def seen():
        out = subprocess.run(
            ["java", "-cp", os.path.join(libs[0], "*"), "kafka.tools.ConsoleConsumer",
             "--bootstrap-server", brokers, "--topic", "wy.account", "--from-beginning",
             "--timeout-ms", "8000", "--property", "print.key=true"],
            capture_output=True, timeout=90)
        lines = [ln for ln in out.stdout.split(b"\n") if account in ln]
        # Each record is an Envelope keyed by the account; its type names the event.
        return all(any(t in ln for ln in lines)
                   for t in (b"account.created", b"account.login", b"account.session_revoked"))
    wait_until(seen, timeout=60, interval=1, what="created, login and session_revoked events")


def test_events_are_envelopes_consumable_by_wy_kafkatool(auth, stack, build_dir, tmp_path):
    for _ in range(2):
        assert auth.device("dev-" + uuid.uuid4().hex).status_code == 201
    effects = tmp_path / "effects"
    exe = os.path.join(build_dir, "tests", "tools", "wy-kafkatool")
    out = subprocess.run([exe, "consume", "--brokers", stack.env()["WY_KAFKA_BROKERS"],
                          "--topic", "wy.account", "--group", "t-" + uuid.uuid4().hex,
                          "--effects", str(effects), "--expect", "4", "--timeout-ms", "30000"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(set(effects.read_text().split())) >= 4


def test_sigterm_with_logins_in_flight_exits_0(daemon, keys):
    d = daemon("auth", env=auth_env(keys, WY_AUTH_ARGON2_ITERATIONS="6"))
    api = Api(d)
    name = uniq()
    assert api.register(name).status_code == 201

    def attempt(_):
        try:
            return api.login(name).status_code
        except requests.RequestException:
            return None
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(attempt, i) for i in range(8)]
        time.sleep(0.05)
        assert d.stop(timeout=20) == 0
        statuses = [f.result() for f in futs]
    # Every request got an answer or a closed connection: no hang, no crash.
    assert set(statuses) <= {200, 503, None}, statuses
    assert "stopped" in d.log_text()


def test_sigterm_cuts_a_held_request_at_WY_AUTH_DRAIN_TIMEOUT(daemon, keys, stack):
    """A request held in PostgreSQL (its table locked by another session) keeps the
    daemon in its drain until WY_AUTH_DRAIN_TIMEOUT and is cut then: the daemon exits 0
    after that time, and the request ended by the drain, not by PostgreSQL's own query
    timeout (5 s, longer than the drain here)."""
    drain_s = 2
    d = daemon("auth", env=auth_env(keys, WY_AUTH_DRAIN_TIMEOUT="%dms" % (drain_s * 1000)))
    api = Api(d)
    app = "wy-drain-lock-%s" % uuid.uuid4().hex[:8]
    locker = subprocess.Popen(
        ["psql", stack.pg_url, "-XAtq", "-c",
         "BEGIN; LOCK TABLE auth.accounts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, PGAPPNAME=app))
    blocked = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
               "WHERE c.relname = 'accounts' AND %s")
    try:
        wait_until(lambda: stack.psql(blocked % "l.granted AND l.mode = 'AccessExclusiveLock'")
                   == "1", timeout=15, what="the lock on auth.accounts")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            def held():
                try:
                    return api.device("dev-" + uuid.uuid4().hex).status_code
                except requests.RequestException:
                    return None
            fut = ex.submit(held)
            wait_until(lambda: stack.psql(blocked % "NOT l.granted") != "0", timeout=15,
                       what="the login waiting on the lock")
            t0 = time.monotonic()
            assert d.stop(timeout=30) == 0
            took = time.monotonic() - t0
            # The held login got an error or a closed connection, never a hang.
            assert fut.result(timeout=15) in (503, None)
    finally:
        # The backend keeps the lock while pg_sleep runs, whatever happens to psql.
        stack.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE application_name = '%s'" % app)
        locker.wait(timeout=30)
    assert took >= drain_s * 0.9, "the drain did not wait for the request (%.1f s)" % took
    assert took < drain_s + 6, "exit %.1f s after SIGTERM: not cut at the drain time" % took
    log = d.log_text()
    assert "stopped" in log
    assert "query timed out" not in log, "the request outlived the drain"


# ---- Steam and OpenID Connect, against fake providers ----


def steam_ticket():
    """A ticket the fake Steam accepts: "c0ffee" + hex; its SteamID64 follows from it."""
    return "c0ffee%08x" % int.from_bytes(os.urandom(4), "big")


def steam_id(ticket):
    return str(76561198000000000 + int(ticket[6:], 16))
OIDC_AUDIENCE = "wyvern-client"


class FakeProviders:
    """One HTTP server playing the Steam Web API and an OIDC issuer's JWKS endpoint."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "idp-1", "use": "sig", "alg": "ES256"})
        jwks = json.dumps({"keys": [jwk]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(h):
                url = urllib.parse.urlparse(h.path)
                q = urllib.parse.parse_qs(url.query)
                if url.path == "/jwks":
                    body = jwks
                elif url.path == "/ISteamUserAuth/AuthenticateUserTicket/v1/":
                    ticket = q.get("ticket", [""])[0]
                    if ticket.startswith("c0ffee") and q.get("key") == ["steam-key"]:
                        params = {"result": "OK", "steamid": steam_id(ticket),
                                  "ownersteamid": steam_id(ticket),
                                  "vacbanned": False, "publisherbanned": False}
                        body = json.dumps({"response": {"params": params}}).encode()
                    else:
                        body = json.dumps({"response": {"error": {
                            "errorcode": 101, "errordesc": "Invalid ticket"}}}).encode()
                else:
                    h.send_response(404)
                    h.end_headers()
                    return
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)

            def log_message(h, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.issuer = self.base
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def id_token(self, sub, aud=OIDC_AUDIENCE, ttl=300):
        import jwt as pyjwt
        now = int(time.time())
        return pyjwt.encode({"iss": self.issuer, "aud": aud, "sub": sub, "iat": now,
                             "exp": now + ttl}, self.key, algorithm="ES256",
                            headers={"kid": "idp-1"})

    def env(self):
        return {"WY_AUTH_STEAM_API_URL": self.base, "WY_AUTH_STEAM_APP_ID": "480",
                "WY_AUTH_STEAM_WEB_API_KEY": "steam-key", "WY_AUTH_OIDC_ISSUER": self.issuer,
                "WY_AUTH_OIDC_AUDIENCE": OIDC_AUDIENCE, "WY_AUTH_OIDC_JWKS_URL":
                self.base + "/jwks"}


@pytest.fixture(scope="module")
def fakes():
    f = FakeProviders()
    yield f
    f.srv.shutdown()


@pytest.fixture(scope="module")
def auth_idp(module_daemon, keys, fakes):
    d = module_daemon("auth", env=auth_env(keys, **fakes.env()))
    return Api(d)


def test_steam_login_creates_reuses_and_rejects(auth_idp):
    ticket = steam_ticket()
    r1 = auth_idp.post("/v1/login", {"method": "steam", "ticket": ticket})
    assert r1.status_code == 201, r1.text
    r2 = auth_idp.post("/v1/login", {"method": "steam", "ticket": ticket})
    assert r2.status_code == 200 and r2.json()["account_id"] == r1.json()["account_id"]
    r = auth_idp.post("/v1/login", {"method": "steam", "ticket": "badbad"})
    assert r.status_code == 401 and code(r) == "PROVIDER_REJECTED"
    r = auth_idp.post("/v1/login", {"method": "steam", "ticket": "not hex!"})
    assert r.status_code == 400 and code(r) == "INVALID_CREDENTIAL"
    r = auth_idp.post("/v1/login", {"method": "steam"})
    assert r.status_code == 400 and code(r) == "INVALID_REQUEST"


def test_oidc_login_creates_reuses_and_rejects(auth_idp, fakes):
    sub = "user-" + uuid.uuid4().hex
    r1 = auth_idp.post("/v1/login", {"method": "oidc", "id_token": fakes.id_token(sub)})
    assert r1.status_code == 201, r1.text
    r2 = auth_idp.post("/v1/login", {"method": "oidc", "id_token": fakes.id_token(sub)})
    assert r2.status_code == 200 and r2.json()["account_id"] == r1.json()["account_id"]
    r = auth_idp.post("/v1/login", {"method": "oidc",
                                    "id_token": fakes.id_token(sub, aud="someone-else")})
    assert r.status_code == 401 and code(r) == "PROVIDER_REJECTED"
    r = auth_idp.post("/v1/login", {"method": "oidc", "id_token": fakes.id_token(sub, ttl=-600)})
    assert r.status_code == 401 and code(r) == "PROVIDER_REJECTED"
    r = auth_idp.post("/v1/login", {"method": "oidc", "id_token": "garbage"})
    assert r.status_code in (400, 401) and code(r) in ("INVALID_CREDENTIAL", "PROVIDER_REJECTED")


def test_link_steam_and_oidc_to_a_device_account(auth_idp, fakes):
    dev = auth_idp.device("dev-" + uuid.uuid4().hex).json()
    at = dev["access_token"]
    ticket = steam_ticket()
    r = auth_idp.post("/v1/link", {"method": "steam", "ticket": ticket}, token=at)
    assert r.status_code == 200, r.text
    sub = "linked-" + uuid.uuid4().hex
    r = auth_idp.post("/v1/link", {"method": "oidc", "id_token": fakes.id_token(sub)}, token=at)
    assert r.status_code == 200, r.text
    assert r.json()["login_methods"] == ["device", "oidc", "steam"]
    r = auth_idp.post("/v1/login", {"method": "steam", "ticket": ticket})
    assert r.json()["account_id"] == dev["account_id"]
    r = auth_idp.post("/v1/login", {"method": "oidc", "id_token": fakes.id_token(sub)})
    assert r.json()["account_id"] == dev["account_id"]
    # The Steam identity now belongs to this account; another cannot take it.
    other = auth_idp.device("dev-" + uuid.uuid4().hex).json()
    r = auth_idp.post("/v1/link", {"method": "steam", "ticket": ticket},
                      token=other["access_token"])
    assert r.status_code == 409 and code(r) == "IDENTITY_TAKEN"


# ---- Redis outage and data loss ----

def test_revocations_survive_redis_outage_and_data_loss(daemon, keys, stack, protos):
    import auth_pb2_grpc
    d = daemon("auth", env=auth_env(keys))
    api = Api(d)
    out = api.register(uniq()).json()
    live = api.register(uniq()).json()
    assert api.post("/v1/logout", token=out["access_token"]).status_code == 204
    with grpc.insecure_channel(d.grpc_addr) as ch:
        stub = auth_pb2_grpc.AuthStub(ch)
        assert introspect(stub, out["access_token"]).revoked
        stack.stop_redis()
        try:
            # Redis down: PostgreSQL answers for revocation; logins still work (the
            # limiter fails open).
            assert introspect(stub, out["access_token"]).revoked
            assert introspect(stub, live["access_token"]).active
            assert api.device("dev-" + uuid.uuid4().hex).status_code == 201
        finally:
            stack.start_redis()  # comes back EMPTY: every revocation key is gone
        # Within about a second the revocations are written back from PostgreSQL.
        wait_until(lambda: stack.redis_cli("EXISTS", rkeys.revoked_sid(out["session_id"]))
                   == "1", timeout=10, what="revocation reloaded into redis")
        assert introspect(stub, out["access_token"]).revoked
        assert introspect(stub, live["access_token"]).active


def test_introspect_never_active_for_a_revoked_token_through_a_flush(daemon, keys, stack, protos):
    """Must-show 3: after FLUSHALL, Introspect polled every 10 ms through the rebuild never
    answers active for a logged-out token or a banned account's token (an incomplete Redis is
    not trusted: PostgreSQL answers until the rebuild's marker is back), and the rebuild writes
    the account-wide ban key again."""
    import auth_pb2
    import auth_pb2_grpc
    d = daemon("auth", env=auth_env(keys))
    api = Api(d)
    out = api.register(uniq()).json()
    banned = api.register(uniq()).json()
    live = api.register(uniq()).json()
    assert api.post("/v1/logout", token=out["access_token"]).status_code == 204
    marker = rkeys.REVOKED_LOADED
    ban_key = rkeys.revoked_acct(banned["account_id"])
    with grpc.insecure_channel(d.grpc_addr) as ch:
        stub = auth_pb2_grpc.AuthStub(ch)
        stub.Revoke(auth_pb2.RevokeRequest(account_id=banned["account_id"], ban=True), timeout=5)
        wait_until(lambda: stack.redis_cli("EXISTS", marker) == "1", timeout=10,
                   what="revocation state complete before the flush")
        stack.redis_cli("FLUSHALL")
        answers = {"revoked": 0, "unavailable": 0}
        rebuilt_at = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for tok in (out["access_token"], banned["access_token"]):
                try:
                    i = introspect(stub, tok)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                    answers["unavailable"] += 1
                    continue
                assert not i.active and i.revoked, "revoked token active after FLUSHALL: %s" % i
                answers["revoked"] += 1
            if rebuilt_at is None and stack.redis_cli("EXISTS", marker) == "1":
                rebuilt_at = time.monotonic()
            if rebuilt_at is not None and time.monotonic() > rebuilt_at + 0.5:
                break  # polled on past the rebuild
            time.sleep(0.01)
        assert rebuilt_at is not None, "the revocation state was not rebuilt within 20 s"
        assert answers["revoked"] > 0, answers
        # The rebuild wrote the ban (account-wide, a time in ms) and the logout back.
        assert stack.redis_cli("EXISTS", ban_key) == "1"
        assert stack.redis_cli("EXISTS", rkeys.revoked_sid(out["session_id"])) == "1"
        assert introspect(stub, live["access_token"]).active



def documented_errors():
    """{code: status} from services/auth/README.md's "Error codes" table."""
    import re
    text = open(os.path.join(TOP, "services", "auth", "README.md")).read()
    table = text.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in table.splitlines():
        m = re.match(r"\|\s*(\d{3})\s*\|([^|]*)\|", line)
        if m:
            for c in re.findall(r"`([A-Z_]+)`", m.group(2)):
                out[c] = int(m.group(1))
    return out


@pytest.mark.parametrize("path,body,expected", [
    ("/v1/login", b"", "BAD_JSON"),
    ("/v1/register", b"", "BAD_JSON"),
    ("/v1/refresh", b"", "BAD_JSON"),
    ("/v1/login", b"[]", "BAD_JSON"),
    ("/v1/register", b"[]", "BAD_JSON"),
    ("/v1/refresh", b"[]", "BAD_JSON"),
    ("/v1/login", b'"login"', "BAD_JSON"),
    ("/v1/login", b"{not json", "BAD_JSON"),
    ("/v1/login", b'{"method": 5}', "UNKNOWN_METHOD"),
    ("/v1/login", b'{"username": "x", "password": "y"}', "UNKNOWN_METHOD"),
    ("/v1/login", b'{"method": "password", "username": 5, "password": "x"}', "INVALID_REQUEST"),
    ("/v1/login", b'{"method": "password", "username": "abc", "password": null}',
     "INVALID_REQUEST"),
    ("/v1/login", b'{"method": "device", "device_id": 12345678}', "INVALID_REQUEST"),
    ("/v1/register", b'{"username": ["a"], "password": "correct horse"}', "INVALID_REQUEST"),
    ("/v1/refresh", b'{"refresh_token": 5}', "INVALID_REFRESH_TOKEN"),
    ("/v1/refresh", b"{}", "INVALID_REFRESH_TOKEN"),
])
def test_error_responses_match_the_documented_table(auth, path, body, expected):
    """Must-show 5: each response's code is in services/auth/README.md's error table with
    the status the daemon answers (empty bodies, `[]`, non-string fields)."""
    table = documented_errors()
    r = requests.post(auth.base + path, data=body, timeout=10,
                      headers={"Content-Type": "application/json"})
    assert code(r) == expected, r.text
    assert expected in table, "%s is not in the README's error table" % expected
    assert r.status_code == table[expected], (r.status_code, table[expected])


def test_every_documented_error_code_is_one_the_daemon_can_answer():
    """The table lists no code the daemon never sends (and each code once)."""
    sources = "".join(open(os.path.join(TOP, "services", "auth", f)).read()
                      for f in ("handlers_http.c",))
    http_c = open(os.path.join(TOP, "libs", "common", "wy_http.c")).read()
    for c in documented_errors():
        assert '"%s"' % c in sources or '"%s"' % c in http_c, \
            "README documents %s but no response carries it" % c


@contextlib.contextmanager
def redis_refusing_a_revocation(stack, publish):
    """Redis refuses writes (maxmemory) while publish() revokes something: auth drops the
    marker, so Introspect answers from PostgreSQL inside the block; afterwards Redis takes
    writes again and the rebuild puts the marker back."""
    marker = rkeys.REVOKED_LOADED
    wait_until(lambda: stack.redis_cli("EXISTS", marker) == "1", timeout=10, what="marker")
    stack.redis_cli("CONFIG", "SET", "maxmemory", "1")
    try:
        publish()
        wait_until(lambda: stack.redis_cli("EXISTS", marker) == "0", timeout=10,
                   what="the marker dropped after the failed publish")
        yield
    finally:
        stack.redis_cli("CONFIG", "SET", "maxmemory", "0")
    wait_until(lambda: stack.redis_cli("EXISTS", marker) == "1", timeout=10,
               what="the rebuild after Redis takes writes again")


def test_a_revocation_redis_refused_sends_checks_to_postgresql(daemon, keys, stack, protos):
    """A logout whose Redis SET fails (Redis answers but refuses writes: maxmemory) is still
    204 (PostgreSQL has it); auth then drops the marker, so Introspect answers from PostgreSQL
    (revoked) instead of trusting a Redis without that key, and rebuilds once Redis takes
    writes again."""
    import auth_pb2_grpc
    d = daemon("auth", env=auth_env(keys))
    api = Api(d)
    out = api.register(uniq()).json()
    live = api.register(uniq()).json()

    def logout():
        assert api.post("/v1/logout", token=out["access_token"]).status_code == 204

    with grpc.insecure_channel(d.grpc_addr) as ch:
        stub = auth_pb2_grpc.AuthStub(ch)
        with redis_refusing_a_revocation(stack, logout):
            i = introspect(stub, out["access_token"])
            assert i.revoked and not i.active
            assert introspect(stub, live["access_token"]).active
        assert stack.redis_cli("EXISTS", rkeys.revoked_sid(out["session_id"])) == "1"
        assert introspect(stub, out["access_token"]).revoked


def test_a_large_revocation_rebuild_completes(daemon, keys, stack):
    """12,000 revoked sessions (more than the Redis connection's 4096 commands in flight) are
    written back after a flush and the marker is set: the rebuild is chunked, not one command
    per key."""
    d = daemon("auth", env=auth_env(keys))
    api = Api(d)
    acct = api.register(uniq()).json()["account_id"]
    stack.psql("INSERT INTO auth.sessions (id, account_id, method, revoked_at, revoke_reason) "
               "SELECT gen_random_uuid(), '%s', 'password', now(), 'test' "
               "FROM generate_series(1, 12000)" % acct)
    sample = stack.psql("SELECT id FROM auth.sessions WHERE account_id = '%s' "
                        "AND revoke_reason = 'test' ORDER BY random() LIMIT 1" % acct)
    stack.redis_cli("FLUSHALL")
    wait_until(lambda: stack.redis_cli("EXISTS", rkeys.REVOKED_LOADED) == "1", timeout=30,
               what="the marker after a rebuild of 12000 keys")
    assert stack.redis_cli("EXISTS", rkeys.revoked_sid(sample)) == "1"
    assert "revocation rebuild failed" not in d.log_text()
