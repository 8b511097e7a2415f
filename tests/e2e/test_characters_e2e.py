"""End-to-end through the `wy` CLI (libs/client) against real wy-auth, wy-lobby and wy-actor
on the real stack (issue 12, must-show 6): create a character, list it, send a friend
request from another player (pushed to the first player's running `wy lobby`), accept it
(pushed back), and see the friend's presence; delete a character."""
import os
import subprocess
import uuid

import pytest

from test_client_e2e import EX_INVALID, Wy, auth_env, lobby_env, uniq


@pytest.fixture(scope="module")
def keys(tmp_path_factory, build_dir):
    d = tmp_path_factory.mktemp("charkeys")
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(d / "e2e.pem")],
                   check=True, timeout=10, stdout=subprocess.DEVNULL)
    return str(d)


@pytest.fixture(scope="module")
def stackd(module_daemon, keys):
    auth = module_daemon("auth", env=auth_env(keys))
    actor = module_daemon("actor")
    lobby = module_daemon("lobby", env=lobby_env(auth, WY_LOBBY_ACTOR_GRPC=actor.grpc_addr))
    return auth, lobby


def player(build_dir, tmp_path, stackd, name):
    auth, lobby = stackd
    w = Wy(build_dir, tmp_path / name, auth, lobby)
    w.register(uniq())
    return w


def cname():
    return "C" + uuid.uuid4().hex[:10]


def test_characters_and_friends_through_the_cli(build_dir, tmp_path, stackd):
    a = player(build_dir, tmp_path, stackd, "a")
    b = player(build_dir, tmp_path, stackd, "b")
    try:
        an, bn = cname(), cname()
        made = a.ok("character", "create", an, "mage")["characters"][0]
        assert made["name"] == an and made["class"] == "mage" and made["level"] == 1
        listed = a.ok("character", "list")["characters"]
        assert [(c["actor_id"], c["name"]) for c in listed] == [(made["actor_id"], an)]
        bid = b.ok("character", "create", bn)["characters"][0]["actor_id"]
        rc, out, _ = b.run("character", "create", bn)  # the name is taken
        assert rc != 0 and out["ok"] is False

        # a stays in the lobby; b's request reaches it there.
        la = a.start_lobby()
        la.welcome()
        req = b.ok("friend", "request", bn, an)["friends"]
        assert [(f["name"], f["status"]) for f in req] == [(an, "you asked")]
        ev = la.expect(lambda e: e.get("event") == "friend", what="the friend request push")
        assert (ev["kind"], ev["from_name"], ev["to_name"]) == ("request", bn, an)
        la.stop()

        # b waits in the lobby; a accepts (by name) and b hears it.
        lb = b.start_lobby()
        lb.welcome()
        acc = a.ok("friend", "accept", an, bn)["friends"]
        assert [(f["name"], f["status"], f["actor_id"]) for f in acc] == [(bn, "friend", bid)]
        ev = lb.expect(lambda e: e.get("event") == "friend", what="the accept push")
        assert (ev["kind"], ev["from_name"], ev["to_name"]) == ("accepted", an, bn)

        # The friend's presence: b is in the lobby, then gone.
        fl = a.ok("friend", "list", an)["friends"]
        assert [(f["name"], f["status"], f["presence"]) for f in fl] == \
            [(bn, "friend", "online")]
        lb.stop()
        fl = a.ok("friend", "list", an)["friends"]
        assert [(f["name"], f["presence"]) for f in fl] == [(bn, "offline")]

        # Not b's character: a cannot act with it, nor delete it.
        rc, out, _ = a.run("friend", "list", bid)
        assert rc == EX_INVALID and out["ok"] is False
        rc, out, _ = a.run("character", "delete", bid)
        assert rc == EX_INVALID and out["ok"] is False
        gone = a.ok("character", "delete", an)["characters"][0]
        assert gone["deleted"] is True
        assert a.ok("character", "list")["characters"] == []
    finally:
        a.cleanup()
        b.cleanup()
