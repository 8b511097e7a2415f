"""A TCP proxy that delays one direction: what a client sends reaches the server `delay`
seconds later (in order); the server's answers come back at once. Puts a slow link between
one daemon and Redis (say) to widen a window that is otherwise a few microseconds wide,
without touching the other daemons or the test's own reads."""
import queue
import socket
import threading
import time


class DelayProxy:
    def __init__(self, host, port, delay):
        self.target = (host, port)
        self.delay = delay
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                continue
            u.settimeout(None)
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks += [c, u]
            for src, dst, delay in ((c, u, self.delay), (u, c, 0)):
                q = queue.Queue()
                threading.Thread(target=self._read, args=(src, q, delay), daemon=True).start()
                threading.Thread(target=self._send_late, args=(q, dst), daemon=True).start()

    @staticmethod
    def _read(src, q, delay):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            q.put((time.monotonic() + delay, data))
            if not data:
                return

    @staticmethod
    def _send_late(q, dst):
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self):
        self.closed = True
        for s in [self.ls] + self.socks:
            try:
                s.close()
            except OSError:
                pass
