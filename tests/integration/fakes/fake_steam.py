"""Fake Steam Web API for tests: serves ISteamUserAuth/AuthenticateUserTicket/v1 only.

  python fake_steam.py --key KEY --appid N     prints "PORT <n>" on stdout, serves until killed

Tickets (hex): GOOD_TICKET -> GOOD_STEAMID; BANNED_TICKET -> publisher-banned account;
FAMILY_TICKET -> a family-shared copy (ownersteamid differs); anything else -> error 101.
A wrong key gets 403 (as Steam does); a wrong appid gets error 102.
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

GOOD_TICKET = "14000000a1b2c3d4e5f60718"
GOOD_STEAMID = "76561197960287930"
BANNED_TICKET = "14000000deadbeef00000001"
BANNED_STEAMID = "76561197960287931"
FAMILY_TICKET = "14000000cafebabe00000002"
FAMILY_STEAMID = "76561197960287932"
FAMILY_OWNER = "76561197960287933"
PATH = "/ISteamUserAuth/AuthenticateUserTicket/v1/"


def params(steamid, owner=None, banned=False):
    return {"response": {"params": {"result": "OK", "steamid": steamid,
                                    "ownersteamid": owner or steamid, "vacbanned": False,
                                    "publisherbanned": banned}}}


class Handler(BaseHTTPRequestHandler):
    key = ""
    appid = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: pytest shows stderr on failure only
        sys.stderr.write("fake_steam: " + (fmt % args).replace(self.key, "<key>") + "\n")

    def reply(self, status, obj=None, text=None):
        body = (json.dumps(obj) if obj is not None else text or "").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if obj is not None else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        if u.path != PATH:
            return self.reply(404, text="<html>Not Found</html>")
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if q.get("key") != self.key:
            return self.reply(403, text="<html><head><title>Forbidden</title></head></html>")
        if q.get("appid") != self.appid:
            return self.reply(200, {"response": {"error": {
                "errorcode": 102, "errordesc": "Ticket for other app"}}})
        t = q.get("ticket", "").lower()
        if t == GOOD_TICKET:
            return self.reply(200, params(GOOD_STEAMID))
        if t == BANNED_TICKET:
            return self.reply(200, params(BANNED_STEAMID, banned=True))
        if t == FAMILY_TICKET:
            return self.reply(200, params(FAMILY_STEAMID, owner=FAMILY_OWNER))
        return self.reply(200, {"response": {"error": {"errorcode": 101,
                                                       "errordesc": "Invalid ticket"}}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--appid", required=True)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    Handler.key, Handler.appid = a.key, a.appid
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
