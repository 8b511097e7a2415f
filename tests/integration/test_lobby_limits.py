"""Lobby replies that do not fit WY_LOBBY_MAX_MESSAGE: the client gets TOO_BIG for its request
(never silence), and the session keeps serving."""
import uuid

from test_lobby import keys, login, start_lobby, token  # noqa: F401 (keys: a fixture)


def test_reply_over_the_size_limit_answers_too_big(daemon, protos, keys, free_port):
    actor = daemon("actor")
    lb = start_lobby(daemon, keys, free_port, MAX_MESSAGE="640", ACTOR_GRPC=actor.grpc_addr)
    acct = str(uuid.uuid4())  # actor wants a UUID account id
    c, w = login(lb.ws_url, token(keys, acct))
    assert w.WhichOneof("body") == "welcome", w
    pb = c.pb
    # The hello (an access token of ~350 bytes) fits 640 bytes; eight characters do not.
    for i in range(8):  # WY_ACTOR_MAX_CHARACTERS default
        r = c.call(create_character=pb.CreateCharacter(
            name="Lim%s%d" % (uuid.uuid4().hex[:8], i), class_name="warrior_of_the_very_long_name_xx"))
        assert r.status.code == pb.OK, r.status.message
    r = c.call(list_characters=pb.ListCharacters())
    assert r is not None, "the server answered nothing"
    assert r.status.code == pb.TOO_BIG, r
    assert "size limit" in r.status.message
    # The session is intact: the next request is served.
    r = c.call(heartbeat=pb.Heartbeat())
    assert r.status.code == pb.OK and r.WhichOneof("body") == "heartbeat_ack"
    c.close()
