"""wy-auth with independent standard clients: PyJWT (with `cryptography`) verifies an
access token using nothing but the JWKS wy-auth serves, and a plain `requests` client
walks register -> login -> refresh -> logout."""
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.ports import free_port


@pytest.fixture(scope="module")
def auth(module_daemon, tmp_path_factory):
    keys = tmp_path_factory.mktemp("interop-keys")
    # Keys made by an independent implementation (cryptography), PKCS#8 PEM.
    for kid in ("old-2025", "cur-2026"):
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        (keys / ("%s.pem" % kid)).write_bytes(pem)
    port = free_port()
    d = module_daemon("auth", env={
        "WY_AUTH_KEYS_DIR": str(keys),
        "WY_AUTH_SIGNING_KID": "cur-2026",
        "WY_AUTH_HTTP_PORT": str(port),
        "WY_AUTH_ISSUER": "https://auth.example.test",
        "WY_AUTH_AUDIENCE": "wyvern-interop",
    })
    deadline = time.monotonic() + 30
    while requests.get(d.ops_url + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "auth never ready"
        time.sleep(0.2)
    return "http://127.0.0.1:%d" % port


def register(base):
    r = requests.post(base + "/v1/register",
                      json={"username": "interop_" + uuid.uuid4().hex[:8],
                            "password": "an interop password"}, timeout=15)
    assert r.status_code == 201, r.text
    return r.json()


def test_pyjwt_verifies_access_token_with_served_jwks_only(auth):
    tok = register(auth)
    jwks = requests.get(auth + "/.well-known/jwks.json", timeout=5).json()
    keyset = jwt.PyJWKSet.from_dict(jwks)
    header = jwt.get_unverified_header(tok["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"] == "cur-2026"
    key = next(k for k in keyset.keys if k.key_id == header["kid"])
    claims = jwt.decode(tok["access_token"], key=key.key, algorithms=["EdDSA"],
                        audience="wyvern-interop", issuer="https://auth.example.test",
                        options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]})
    assert claims["sub"] == tok["account_id"]
    assert claims["sid"] == tok["session_id"]
    assert claims["exp"] - claims["iat"] == 900
    # The same check with PyJWT's own JWKS client fetching the document.
    client = jwt.PyJWKClient(auth + "/.well-known/jwks.json")
    signing = client.get_signing_key_from_jwt(tok["access_token"])
    assert jwt.decode(tok["access_token"], signing.key, algorithms=["EdDSA"],
                      audience="wyvern-interop", issuer="https://auth.example.test")["sub"] \
        == tok["account_id"]
    # A wrong audience or a tampered token is refused by the independent library.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(tok["access_token"], key=key.key, algorithms=["EdDSA"], audience="other",
                   issuer="https://auth.example.test")
    head, payload, sig = tok["access_token"].split(".")
    forged = jwt.utils.base64url_encode(b'{"sub":"someone-else"}').decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode("%s.%s.%s" % (head, forged, sig), key=key.key, algorithms=["EdDSA"],
                   audience="wyvern-interop", issuer="https://auth.example.test")


def test_jwks_lists_every_verification_key_without_private_parts(auth):
    jwks = requests.get(auth + "/.well-known/jwks.json", timeout=5).json()
    assert sorted(k["kid"] for k in jwks["keys"]) == ["cur-2026", "old-2025"]
    for k in jwks["keys"]:
        assert k["kty"] == "OKP" and k["crv"] == "Ed25519" and k["alg"] == "EdDSA"
        assert "d" not in k
        assert len(jwt.utils.base64url_decode(k["x"])) == 32


def test_requests_client_register_login_refresh_logout(auth):
    s = requests.Session()
    name = "flow_" + uuid.uuid4().hex[:8]
    r = s.post(auth + "/v1/register", json={"username": name, "password": "flow password 1"},
               timeout=15)
    assert r.status_code == 201, r.text
    r = s.post(auth + "/v1/login", json={"method": "password", "username": name,
                                         "password": "flow password 1"}, timeout=15)
    assert r.status_code == 200, r.text
    login = r.json()
    r = s.post(auth + "/v1/refresh", json={"refresh_token": login["refresh_token"]}, timeout=15)
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["refresh_token"] != login["refresh_token"]
    me = s.get(auth + "/v1/me", headers={"Authorization": "Bearer " + fresh["access_token"]},
               timeout=15)
    assert me.status_code == 200 and me.json()["username"] == name
    r = s.post(auth + "/v1/logout", headers={"Authorization": "Bearer " + fresh["access_token"]},
               timeout=15)
    assert r.status_code == 204
    r = s.get(auth + "/v1/me", headers={"Authorization": "Bearer " + fresh["access_token"]},
              timeout=15)
    assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_REVOKED"
    r = s.post(auth + "/v1/refresh", json={"refresh_token": fresh["refresh_token"]}, timeout=15)
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("application/json")
