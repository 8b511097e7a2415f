"""Interop: an independent WebSocket client (websocket-client) and HTTP client (requests)
against wy-wsecho, the echo server built on libs/common wy_http/wy_ws."""
import json
import os
import subprocess
import time

import pytest
import requests
import websocket

MAX_MESSAGE = 4096


def _binary():
    build = os.environ.get("WY_BUILD_DIR", "build")
    path = os.path.join(build, "tests", "tools", "wy-wsecho")
    if not os.path.exists(path):
        pytest.fail(f"{path} not found: run `make BUILD={build} tests` first")
    return path


@pytest.fixture
def server():
    proc = subprocess.Popen(
        [_binary(), "--port", "0", "--max-message", str(MAX_MESSAGE)],
        stderr=subprocess.PIPE,
        text=True,
    )
    log = []
    port = None
    deadline = time.monotonic() + 10
    while port is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        rec = json.loads(line)
        if rec.get("msg") == "ready":
            port = rec["port"]
    if port is None:
        proc.kill()
        pytest.fail("wy-wsecho did not log ready:\n" + "".join(log))
    yield port
    proc.terminate()
    rest = proc.communicate(timeout=10)[1]
    assert proc.returncode == 0, "wy-wsecho exit %d, log:\n%s" % (proc.returncode, "".join(log) + rest)


def test_text_binary_ping_and_too_big(server):
    ws = websocket.create_connection(f"ws://127.0.0.1:{server}/echo", timeout=5)
    ws.send("hello wyvern")
    assert ws.recv() == "hello wyvern"

    ws.send("h\u00e9llo \u2603")
    assert ws.recv() == "h\u00e9llo \u2603"

    payload = bytes(range(256)) * 4
    ws.send_binary(payload)
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_BINARY
    assert frame.data == payload

    ws.ping(b"are-you-there")
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_PONG
    assert frame.data == b"are-you-there"

    ws.send("x" * (MAX_MESSAGE + 1))
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1009
    ws.close()


def test_close_handshake(server):
    ws = websocket.create_connection(f"ws://127.0.0.1:{server}/echo", timeout=5)
    ws.send_close(status=4001, reason=b"bye")
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 4001
    ws.shutdown()


def test_healthz_and_errors(server):
    r = requests.get(f"http://127.0.0.1:{server}/healthz", timeout=5)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}

    r = requests.get(f"http://127.0.0.1:{server}/missing", timeout=5)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"

    r = requests.get(f"http://127.0.0.1:{server}/echo", timeout=5)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BAD_UPGRADE"
