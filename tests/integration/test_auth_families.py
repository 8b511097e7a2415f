"""Refresh tokens that carry their family (services/auth/README.md, "Logins: no session
written"): a login stores nothing for its session; its refresh token (78 characters, a MAC under
auth.token_keys) creates the family's rows at its first refresh or logout. These tests attack
what that must not let through: a forged or altered token, a reused one, a family revoked by
logout, revoke-all or ban before it ever had a row (through Redis and through PostgreSQL), and
a family whose account is gone."""
import time
import uuid

import grpc
import pytest

from harness import rkeys
from test_auth import (Api, auth, auth_env, code, introspect, keys,  # noqa: F401
                       redis_refusing_a_revocation, stub, uniq)


def refresh(auth, tok):
    return auth.post("/v1/refresh", {"refresh_token": tok})


def flip(tok, i):
    """tok with character i changed to another base64url character."""
    c = "A" if tok[i] != "A" else "B"
    return tok[:i] + c + tok[i + 1:]


def sessions(stack, sid):
    return stack.psql("SELECT count(*) FROM auth.sessions WHERE id = '%s'" % sid)


def test_a_login_stores_no_session_and_its_first_refresh_creates_the_family(auth, stack):
    out = auth.device("fam-" + uuid.uuid4().hex).json()
    assert len(out["refresh_token"]) == 78
    assert sessions(stack, out["session_id"]) == "0"
    r = refresh(auth, out["refresh_token"])
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["session_id"] == out["session_id"] and len(new["refresh_token"]) == 43
    assert sessions(stack, out["session_id"]) == "1"
    # The family token used again: reuse, the whole family is revoked (its newer token too).
    r = refresh(auth, out["refresh_token"])
    assert r.status_code == 401 and code(r) == "REFRESH_TOKEN_REUSED", r.text
    r = refresh(auth, new["refresh_token"])
    assert r.status_code == 401 and code(r) == "INVALID_REFRESH_TOKEN", r.text


def test_racing_first_refreshes_of_one_family_token_count_as_reuse(auth):
    import concurrent.futures
    out = auth.device("race-" + uuid.uuid4().hex).json()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        codes = sorted(r.status_code for r in
                       ex.map(lambda _: refresh(auth, out["refresh_token"]), range(4)))
    assert codes.count(200) <= 1 and all(c in (200, 401) for c in codes), codes
    # Whatever won, the family is revoked now (a reuse happened): nothing of it refreshes.
    r = refresh(auth, out["refresh_token"])
    assert r.status_code == 401


@pytest.mark.parametrize("where", [0, 5, 30, 50, 60, 77])
def test_a_forged_or_altered_family_token_is_refused(auth, where):
    out = auth.device("forge-" + uuid.uuid4().hex).json()
    r = refresh(auth, flip(out["refresh_token"], where))
    assert r.status_code == 401 and code(r) == "INVALID_REFRESH_TOKEN", r.text
    # The untouched token still works: the forgery wrote nothing.
    assert refresh(auth, out["refresh_token"]).status_code == 200


def test_logout_of_a_family_never_refreshed_revokes_it(auth, stub, stack):
    out = auth.device("out-" + uuid.uuid4().hex).json()
    assert auth.post("/v1/logout", token=out["access_token"]).status_code == 204
    assert stack.psql("SELECT revoked_at IS NOT NULL FROM auth.sessions WHERE id = '%s'"
                      % out["session_id"]) == "t"
    r = refresh(auth, out["refresh_token"])
    assert r.status_code == 401 and code(r) == "INVALID_REFRESH_TOKEN", r.text
    assert introspect(stub, out["access_token"]).revoked


def test_revoke_all_covers_families_never_refreshed(auth, stub, protos):
    import auth_pb2
    dev = "rev-" + uuid.uuid4().hex
    before = auth.device(dev).json()
    resp = stub.Revoke(auth_pb2.RevokeRequest(account_id=before["account_id"], ban=False),
                       timeout=5)
    assert resp.sessions_revoked == 0  # no family of this account has a row yet
    r = refresh(auth, before["refresh_token"])
    assert r.status_code == 401 and code(r) == "INVALID_REFRESH_TOKEN", r.text
    assert introspect(stub, before["access_token"]).revoked
    # Not a ban: the player logs in again and that family works.
    time.sleep(0.002)
    after = auth.device(dev).json()
    assert refresh(auth, after["refresh_token"]).status_code == 200


def test_postgresql_answers_for_families_without_rows_when_redis_is_incomplete(
        daemon, keys, stack, protos):  # noqa: F811
    """Redis refuses the revocation (maxmemory): Revoke says UNAVAILABLE (stored, not
    published), the marker drops, and Introspect answers from PostgreSQL: the revoked account's
    never-refreshed session is revoked there (accounts.sessions_revoked_at), another account's
    never-refreshed session is live."""
    import auth_pb2
    import auth_pb2_grpc
    d = daemon("auth", env=auth_env(keys))
    api = Api(d)
    victim = api.device("pgv-" + uuid.uuid4().hex).json()
    live = api.device("pgl-" + uuid.uuid4().hex).json()
    with grpc.insecure_channel(d.grpc_addr) as ch:
        s = auth_pb2_grpc.AuthStub(ch)

        def revoke():
            with pytest.raises(grpc.RpcError) as e:
                s.Revoke(auth_pb2.RevokeRequest(account_id=victim["account_id"]), timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE

        with redis_refusing_a_revocation(stack, revoke):
            i = introspect(s, victim["access_token"])
            assert i.revoked and not i.active
            assert introspect(s, live["access_token"]).active
        # The rebuild wrote the account's revocation time back from PostgreSQL.
        assert stack.redis_cli("EXISTS", rkeys.revoked_acct(victim["account_id"])) == "1"
        assert introspect(s, victim["access_token"]).revoked
        assert introspect(s, live["access_token"]).active
    assert refresh(api, victim["refresh_token"]).status_code == 401
    assert refresh(api, live["refresh_token"]).status_code == 200


def test_a_family_whose_account_is_gone_is_unknown(auth, stack):
    out = auth.device("gone-" + uuid.uuid4().hex).json()
    stack.psql("DELETE FROM auth.accounts WHERE id = '%s'" % out["account_id"])
    r = refresh(auth, out["refresh_token"])
    assert r.status_code == 401 and code(r) == "INVALID_REFRESH_TOKEN", r.text
    assert sessions(stack, out["session_id"]) == "0"
