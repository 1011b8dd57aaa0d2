"""connect_proxy.py: a small HTTP CONNECT proxy on loopback that records every tunnel, for tests/test_proxy.py."""

import base64
import socket
import threading
import time


class ConnectProxy:
    """Accepts CONNECT host:port on 127.0.0.1, opens the tunnel (to
    127.0.0.1 only), answers 200 and relays.  tunnels: one dict per
    CONNECT with target, auth (the Proxy-Authorization credentials,
    decoded, or None), client (the client's address) and out_port (the
    local port of the proxy's connection to the target: what the target
    sees as the source)."""

    def __init__(self):
        self.tunnels = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, addr), daemon=True).start()

    def _serve(self, c, addr):
        c.settimeout(10)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = c.recv(4096)
                if not chunk:
                    c.close()
                    return
                head += chunk
        except OSError:
            c.close()
            return
        text, rest = head.split(b"\r\n\r\n", 1)
        lines = text.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        auth = None
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            if k.strip().lower() == "proxy-authorization":
                scheme, _, cred = v.strip().partition(" ")
                if scheme.lower() == "basic":
                    auth = base64.b64decode(cred).decode("latin-1")
        rec = {"target": parts[1] if len(parts) > 1 else "", "auth": auth,
               "client": addr, "out_port": None, "time": time.time(), "ok": False}
        with self.lock:
            self.tunnels.append(rec)
        host, _, port = rec["target"].rpartition(":")
        if len(parts) < 3 or parts[0] != "CONNECT" or host not in ("127.0.0.1", "localhost"):
            c.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            c.close()
            return
        try:
            s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        except (OSError, ValueError):
            c.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            c.close()
            return
        with self.lock:
            rec["out_port"] = s.getsockname()[1]
            rec["ok"] = True
        c.settimeout(None)
        s.settimeout(None)
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            s.sendall(rest)
        threading.Thread(target=self._pipe, args=(c, s), daemon=True).start()
        self._pipe(s, c)

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
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
            return [dict(r) for r in self.tunnels]

    def close(self):
        self.closed = True
        self.sock.close()
