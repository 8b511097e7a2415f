"""Free loopback ports for daemons started by tests."""
import random
import socket

# Below Linux's ephemeral range (32768-60999), so an outgoing connection cannot
# grab a port between our check and the daemon's bind.
_LOW, _HIGH = 20000, 32700
_handed_out = set()


def _bindable(port):
    for host in ("127.0.0.1", "0.0.0.0"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port():
    """A loopback TCP port nobody listens on and that this process has not
    handed out before (so two daemons of one session never get the same one)."""
    for _ in range(2000):
        port = random.randint(_LOW, _HIGH)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found in %d-%d" % (_LOW, _HIGH))


def free_ports(n):
    return [free_port() for _ in range(n)]
