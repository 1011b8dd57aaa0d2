"""tcp_tap.py: a TCP relay on loopback in front of a broker that timestamps what crosses it, for tests/test_connect_timing.py."""

import socket
import threading
import time


class TcpTap:
    """Listens on 127.0.0.1 and relays each connection to 127.0.0.1:port.
    Per connection it records the time of the TCP accept and of every
    chunk either way (time.monotonic(), in the relay's threads, as the
    broker would see them within scheduling noise).  uri: what a daemon
    puts in mqtt.uris to go through it."""

    def __init__(self, port):
        self.target = port
        self.lock = threading.Lock()
        self.conns = []		# {"accept": t, "up": [t...], "down": [t...]}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.uri = "tcp://127.0.0.1:%d" % self.port
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"accept": time.monotonic(), "up": [], "down": []}
            with self.lock:
                self.conns.append(rec)
            try:
                s = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(c, s, rec["up"]), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, rec["down"]), daemon=True).start()

    def _pipe(self, src, dst, times):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    times.append(time.monotonic())
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def records(self):
        with self.lock:
            return [{"accept": r["accept"], "up": list(r["up"]), "down": list(r["down"])}
                    for r in self.conns]

    def close(self):
        self.closed = True
        self.sock.close()
