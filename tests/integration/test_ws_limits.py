"""The common WebSocket layer as a real process (build/tests/tools/wy-wsecho,
the test endpoint of libs/common's HTTP/WebSocket server): an oversized
message gets close code 1009 and the server keeps serving everyone else."""
import json
import os
import signal
import subprocess
import time

import pytest
import websocket


@pytest.fixture
def wsecho(build_dir, tmp_path):
    log = open(tmp_path / "wsecho.log", "wb")
    proc = subprocess.Popen([os.path.join(build_dir, "tests", "tools", "wy-wsecho"), "--port", "0",
                             "--max-message", "4096"], stdout=log, stderr=log)
    port = None
    deadline = time.monotonic() + 10
    while port is None and time.monotonic() < deadline:
        for line in open(tmp_path / "wsecho.log"):
            if '"msg":"ready"' in line:
                port = json.loads(line)["port"]
        time.sleep(0.05)
    assert port, "wy-wsecho did not log ready"
    yield port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_oversized_message_closes_1009_and_others_are_served(wsecho):
    url = "ws://127.0.0.1:%d/echo" % wsecho
    bystander = websocket.create_connection(url, timeout=5)
    big = websocket.create_connection(url, timeout=5)
    big.send_binary(b"\0" * 8192)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            op, data = big.recv_data(control_frame=True)
            if op == websocket.ABNF.OPCODE_CLOSE:
                assert int.from_bytes(data[:2], "big") == 1009
                big.recv()  # the server closes the socket after its close frame
    bystander.send("still here")
    assert bystander.recv() == "still here"
    fresh = websocket.create_connection(url, timeout=5)
    fresh.send_binary(b"x" * 4096)
    assert fresh.recv() == b"x" * 4096
    for c in (bystander, fresh):
        c.close()
