"""Fake OpenID Connect issuer for tests: a JWKS endpoint plus test-only control endpoints.

  python fake_oidc.py [--port P]     prints "PORT <n>" on stdout, serves until killed

Keys generated at start: "rsa1" (RSA 2048, RS256), "ec1" (P-256, ES256) published in the JWKS;
"rsa2" (RSA) generated but published only after POST /control {"publish": [...]}.
The issuer is "http://127.0.0.1:<port>".

  GET  /jwks                 the published keys (503 while down)
  GET  /stats                {"jwks_requests": n}
  POST /control              {"jwks": "up"|"down", "publish": ["rsa1", ...]}  (test only)
  POST /mint                 {"kid": "rsa1", "claims": {...}, "alg": optional override,
                              "raw_header": optional header object} -> {"token": "..."}
                             (test only). "alg":"none" makes an unsigned token; "alg":"HS256"
                             signs with HMAC keyed by the kid's public key PEM (the classic
                             algorithm-confusion attack).
"""
import argparse
import base64
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

LOCK = threading.Lock()
STATE = {"down": False, "published": ["rsa1", "ec1"], "jwks_requests": 0}
KEYS = {
    "rsa1": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "ec1": ("ES256", ec.generate_private_key(ec.SECP256R1())),
    "rsa2": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
}


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwk(kid):
    alg, key = KEYS[kid]
    d = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    d.update({"kid": kid, "use": "sig", "alg": alg})
    return d


def public_pem(kid):
    return KEYS[kid][1].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def mint(req):
    kid = req.get("kid", "rsa1")
    claims = req.get("claims", {})
    alg = req.get("alg")
    if alg in ("none", "HS256") or req.get("raw_header"):
        header = req.get("raw_header") or {"alg": alg, "kid": kid, "typ": "JWT"}
        signing_input = (b64u(json.dumps(header).encode()) + "." +
                         b64u(json.dumps(claims).encode()))
        if header.get("alg") == "HS256":
            sig = b64u(hmac.new(public_pem(kid), signing_input.encode(), hashlib.sha256).digest())
        elif header.get("alg") == "none":
            sig = ""
        else:
            key_alg, key = KEYS[kid]
            sig = jwt.encode(claims, key, algorithm=key_alg,
                             headers={"kid": kid}).split(".")[2]
        return signing_input + "." + sig
    key_alg, key = KEYS[kid]
    return jwt.encode(claims, key, algorithm=alg or key_alg, headers={"kid": kid})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake_oidc: " + (fmt % args) + "\n")

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        if self.path == "/jwks":
            with LOCK:
                STATE["jwks_requests"] += 1
                if STATE["down"]:
                    return self.reply(503, {"error": "down"})
                keys = [jwk(k) for k in STATE["published"]]
            return self.reply(200, {"keys": keys})
        if self.path == "/stats":
            with LOCK:
                return self.reply(200, {"jwks_requests": STATE["jwks_requests"]})
        return self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path == "/control":
            req = self.body()
            with LOCK:
                if "jwks" in req:
                    STATE["down"] = req["jwks"] == "down"
                if "publish" in req:
                    STATE["published"] = list(req["publish"])
            return self.reply(200, {"ok": True})
        if self.path == "/mint":
            return self.reply(200, {"token": mint(self.body())})
        return self.reply(404, {"error": "not found"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--down", action="store_true", help="start with the JWKS endpoint down")
    a = ap.parse_args()
    STATE["down"] = a.down
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
