#!/usr/bin/env python3
"""test_badinput.py: veild's control socket against bad, huge, stalled and hostile clients; prints TAP."""

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402


def setup(w):
    m = w.broker()
    d = w.daemon("Alice", m)
    return {"m": m, "d": d}


def conn(d, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(d.socket)
    return s


def exchange(d, data, timeout=5.0, shut=False):
    """Sends raw bytes on a new connection; returns (the first reply line
    parsed or None, whether the daemon closed the connection)."""
    c = veil.Client(d.socket, timeout)
    try:
        c.send_raw(data)
        if shut:
            c.sock.shutdown(socket.SHUT_WR)
        try:
            line = c.read_line(timeout)
        except (socket.timeout, ConnectionError):
            return None, False
        if line is None:
            return None, True
        return json.loads(line.decode("utf-8")), False
    finally:
        c.close()


def healthy(tap, d, after):
    """The daemon is alive and a fresh connection gets status quickly."""
    t0 = time.monotonic()
    try:
        st = d.rpc("status", timeout=3)
        ok = d.alive() and isinstance(st, dict) and "version" in st
        why = repr(st)
    except Exception as e:	# reported as the failure
        ok, why = False, repr(e)
    tap.ok(ok, "after %s: daemon alive, status answers on a fresh connection (%.2f s)"
           % (after, time.monotonic() - t0), why + "\n" + d.log_tail())


def is_error(reply, codes):
    return isinstance(reply, dict) and isinstance(reply.get("error"), dict) and \
        reply["error"].get("code") in codes and reply.get("jsonrpc") == "2.0"


def t_malformed(tap, w, x):
    d = x["d"]
    r, _ = exchange(d, b'{"jsonrpc":"2.0","method":"status",\n')
    tap.ok(is_error(r, (-32700,)) and r.get("id") is None,
           "truncated JSON: -32700 with id null", repr(r))
    r, _ = exchange(d, b'{"jsonrpc":"2.0","method":"status","id":1}}\n')
    tap.ok(is_error(r, (-32700,)), "trailing junk after the object: -32700", repr(r))
    for raw, what in ((b'42\n', "a number"), (b'"status"\n', "a string"),
                      (b'{"method":"status","id":3}\n', "no jsonrpc member"),
                      (b'{"jsonrpc":"1.0","method":"status","id":3}\n', "jsonrpc 1.0"),
                      (b'{"jsonrpc":"2.0","method":5,"id":3}\n', "method not a string"),
                      (b'{"jsonrpc":"2.0","method":"status","id":{"a":1}}\n',
                       "id an object")):
        r, _ = exchange(d, raw)
        tap.ok(is_error(r, (-32600,)), "%s: -32600 invalid request" % what, repr(r))
    # params must be a structured value: an invalid request, or bad params.
    r, _ = exchange(d, b'{"jsonrpc":"2.0","method":"status","params":"verbose","id":4}\n')
    tap.ok(is_error(r, (-32600, -32602)) and r.get("id") == 4,
           "params a string: -32600 or -32602", repr(r))
    r, _ = exchange(d, b'[]\n')
    tap.ok(is_error(r, (-32600,)), "empty batch: -32600", repr(r))
    # A good line after a bad one on the same connection still works.
    with veil.Client(d.socket) as c:
        c.send_raw(b'{oops}\n')
        bad = c.read_msg(5)
        good = c.call("status")
    tap.ok(is_error(bad, (-32700,)) and "version" in good,
           "the connection survives a parse error", repr((bad, good)))
    healthy(tap, d, "malformed JSON")


def t_methods_params(tap, w, x):
    d = x["d"]
    r, _ = exchange(d, b'{"jsonrpc":"2.0","method":"no.such","id":"abc"}\n')
    tap.ok(is_error(r, (-32601,)) and r.get("id") == "abc",
           "unknown method: -32601, string id echoed", repr(r))
    cases = [
        ({"method": "status", "params": {"verbose": "yes"}}, "status verbose a string"),
        ({"method": "message.send", "params": {"to": 5, "text": "x"}}, "to a number"),
        ({"method": "message.send", "params": {"to": "Bob", "text": None}}, "text null"),
        ({"method": "message.send"}, "message.send without params"),
        ({"method": "message.send", "params": {"to": "Bob"}}, "text missing"),
        ({"method": "contact.add", "params": {}}, "contact.add without card"),
        ({"method": "contact.accept", "params": {"name": ["Bob"]}}, "name an array"),
        ({"method": "message.receive", "params": {"wait": -1}}, "wait negative"),
        ({"method": "message.receive", "params": {"wait": 1e30}}, "wait huge float"),
        ({"method": "message.receive", "params": {"limit": 0}}, "limit 0"),
        ({"method": "contact.list", "params": {"x": 1}}, "contact.list with params"),
        ({"method": "subscribe", "params": {"events": []}}, "subscribe to no events"),
        ({"method": "subscribe", "params": {"events": ["nope"]}}, "subscribe to an "
         "unknown event"),
    ]
    for req, what in cases:
        req.update({"jsonrpc": "2.0", "id": 9})
        r, _ = exchange(d, json.dumps(req).encode() + b"\n")
        tap.ok(is_error(r, (-32602,)) and r.get("id") == 9,
               "%s: -32602 invalid params" % what, repr(r))
    # A notification (no id) gets no answer; the next call's answer comes first.
    with veil.Client(d.socket) as c:
        c.send_raw(b'{"jsonrpc":"2.0","method":"status"}\n'
                   b'{"jsonrpc":"2.0","method":"no.such"}\n')
        r = c.call("status")
        c.sock.settimeout(0.3)
        try:
            extra = c.sock.recv(4096)
        except socket.timeout:
            extra = b""
    tap.ok("version" in r and extra == b"",
           "requests without id (notifications) get no reply", repr((r, extra)))
    healthy(tap, d, "bad methods and params")


def t_huge_line(tap, w, x):
    d = x["d"]
    line = b'{"jsonrpc":"2.0","method":"status","id":1,"params":{"pad":"' + \
        b"A" * (2 << 20) + b'"}}\n'
    s = conn(d, 10)
    closed = False
    try:
        s.sendall(line)
    except (BrokenPipeError, ConnectionResetError):
        closed = True	# closed while we were still writing: also fine
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    first = data.split(b"\n")[0]
    reply = json.loads(first) if first else None
    tap.ok((reply is None or is_error(reply, (-32600,))) and closed,
           "a 2 MiB line: error -32600 and the connection closed",
           repr((data[:300], closed)))
    # Just under the limit is still a request (an error about params, not size).
    ok_line = b'{"jsonrpc":"2.0","method":"status","id":2,"params":{"pad":"' + \
        b"A" * ((1 << 20) - 200) + b'"}}\n'
    r, _ = exchange(d, ok_line, timeout=10)
    tap.ok(isinstance(r, dict) and r.get("id") == 2 and
           (r.get("error") or {}).get("code") != -32600,
           "a line just under 1 MiB is parsed (answered on its merits)", repr(r)[:300])
    healthy(tap, d, "a 2 MiB line")


def t_junk(tap, w, x):
    d = x["d"]
    junk = bytes(range(256)) * 4 + b"\x00\x00\xff\xfe\n"
    r, closed = exchange(d, junk)
    tap.ok(closed or is_error(r, (-32700, -32600)),
           "binary junk with NUL bytes: parse error or close", repr((r, closed)))
    for raw, what in (
            (b'{"jsonrpc":"2.0","method":"sta\x00tus","id":1}\n', "NUL inside a string"),
            (b'{"jsonrpc":"2.0","method":"status","id":1}\x00\n', "NUL after the object"),
            (b'{"jsonrpc":"2.0","method":"st\xc3\x28tus","id":1}\n', "invalid UTF-8"),
            (b'{"jsonrpc":"2.0","method":"\xed\xa0\x80","id":1}\n', "UTF-8 surrogate"),
            (b'{"jsonrpc":"2.0","method":"message.send","params":{"to":"Bob","text":'
             b'"\\ud800"},"id":1}\n', "lone surrogate escape in a text"),
            (b'\xef\xbb\xbf{"jsonrpc":"2.0","method":"status","id":1}\n', "a BOM first")):
        r, closed = exchange(d, raw)
        tap.ok(closed or (isinstance(r, dict) and "error" in r),
               "%s: an error, not a crash" % what, repr((r, closed)))
    r, _ = exchange(d, b'{"jsonrpc":"2.0","method":"status","id":1}\r\n')
    tap.ok(isinstance(r, dict) and r.get("id") == 1,
           "CRLF line ending: answered (or a clean error)", repr(r))
    healthy(tap, d, "binary junk")


def t_stalled(tap, w, x):
    d = x["d"]
    staller = conn(d)
    staller.sendall(b'{"jsonrpc":"2.0","method":"sta')
    t0 = time.monotonic()
    ok = True
    for _ in range(5):
        try:
            d.rpc("status", timeout=1)
        except Exception:
            ok = False
    dt = time.monotonic() - t0
    tap.ok(ok and dt < 2.0, "a half-written line does not hold up others "
           "(5 status calls in %.2f s)" % dt, d.log_tail())
    # The stalled client can still finish its line and get its answer.
    staller.sendall(b'tus","id":77}\n')
    c = veil.Client.__new__(veil.Client)
    c.sock, c.buf, c.notes = staller, b"", []
    r = c.read_msg(5)
    tap.ok(isinstance(r, dict) and r.get("id") == 77 and "result" in r,
           "the staller's line, completed later, is answered", repr(r))
    staller.close()
    # No LF at all, then EOF: the last line still counts (socat-style).
    r, _ = exchange(d, b'{"jsonrpc":"2.0","method":"status","id":5}', shut=True)
    tap.ok(isinstance(r, dict) and r.get("id") == 5,
           "a request without LF followed by EOF is answered", repr(r))
    healthy(tap, d, "a stalled client")


def t_many_clients(tap, w, x):
    d = x["d"]
    socks = []
    try:
        for _ in range(50):
            socks.append(conn(d))
        for i, s in enumerate(socks):
            s.sendall(json.dumps({"jsonrpc": "2.0", "method": "status",
                                  "id": i}).encode() + b"\n")
        answered = 0
        for i, s in enumerate(socks):
            c = veil.Client.__new__(veil.Client)
            c.sock, c.buf, c.notes = s, b"", []
            try:
                r = c.read_msg(5)
                answered += r.get("id") == i and "result" in r
            except Exception:
                pass
        tap.ok(answered == 50, "50 concurrent clients all answered (%d)" % answered,
               d.log_tail())
        # Beyond the daemon's limit: refused with a reason or closed, never a hang.
        more = []
        refused = 0
        for _ in range(20):
            try:
                s = conn(d, 2)
                more.append(s)
                s.sendall(b'{"jsonrpc":"2.0","method":"status","id":1}\n')
                c = veil.Client.__new__(veil.Client)
                c.sock, c.buf, c.notes = s, b"", []
                r = c.read_msg(2)
                if r is None or "error" in r:
                    refused += 1
            except OSError:
                refused += 1
        tap.ok(refused >= 1 and refused <= 20,
               "clients beyond the limit are refused (%d of 20 more), not hung" % refused,
               d.log_tail())
        socks.extend(more)
    finally:
        for s in socks:
            s.close()
    ok = veil.wait_for(lambda: d.rpc("status", timeout=2), 5)
    tap.ok(ok, "after the crowd left, new clients get in again", d.log_tail())
    healthy(tap, d, "many clients")


def t_no_reader(tap, w, x):
    d = x["d"]
    s = conn(d)
    s.setblocking(False)
    req = b'{"jsonrpc":"2.0","method":"status","params":{"verbose":true},"id":1}\n' * 64
    sent = 0
    closed = False
    t0 = time.monotonic()
    probe_times = []
    while time.monotonic() - t0 < 6 and sent < (64 << 20):
        try:
            sent += s.send(req)
        except BlockingIOError:
            # Our send buffer is full: the daemon is not reading or is full.
            p0 = time.monotonic()
            try:
                d.rpc("status", timeout=2)
                probe_times.append(time.monotonic() - p0)
            except Exception:
                probe_times.append(99)
            time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    tap.note("flood: %d bytes of requests in %.1f s, closed=%s, %d probes, slowest %.2f s"
             % (sent, time.monotonic() - t0, closed, len(probe_times),
                max(probe_times or [0])))
    tap.ok(probe_times and max(probe_times) < 2.0,
           "while one client floods and never reads, others get answers",
           repr(probe_times[-10:]))
    # It must end up dropped (its unread replies are bounded), not buffered forever.
    if not closed:
        s.setblocking(True)
        s.settimeout(5)
        try:
            total = 0
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    closed = True
                    break
                total += len(chunk)
        except (socket.timeout, ConnectionResetError):
            closed = closed or False
    s.close()
    tap.ok(closed, "the flooding client that never reads is disconnected",
           d.log_tail())
    healthy(tap, d, "a flooding client that never reads")


def t_permissions(tap, w, x):
    d = x["d"]
    st = os.stat(d.socket)
    tap.ok(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
           "the socket is mode 0600 (no socket_group)", oct(st.st_mode))
    if os.geteuid() != 0:
        tap.ok(True, "# SKIP not root: cannot switch to another uid")
        return
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            "s.settimeout(3)\n"
            "try:\n"
            "    s.connect(sys.argv[1])\n"
            "except OSError as e:\n"
            "    print('connect', e.errno); sys.exit(0)\n"
            "try:\n"
            "    s.sendall(b'{\"jsonrpc\":\"2.0\",\"method\":\"status\",\"id\":1}\\n')\n"
            "    print('reply', repr(s.recv(4096)))\n"
            "except OSError as e:\n"
            "    print('io', e.errno)\n")
    # Refused: the connection closes (EOF, or EPIPE/ECONNRESET on our write).
    refused = ("reply b''", "io %d" % errno.EPIPE, "io %d" % errno.ECONNRESET)

    def as_nobody():
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                            "--clear-groups", sys.executable, "-c", code, d.socket],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() + r.stderr.strip()
    out = as_nobody()
    tap.ok(out.startswith("connect %d" % errno.EACCES) or out in refused,
           "uid nobody cannot use the socket as installed (EACCES or closed)", out)
    # Defeat the file permissions: the daemon's own SO_PEERCRED check must
    # still refuse.
    tmp_mode = stat.S_IMODE(os.stat(w.tmp).st_mode)
    try:
        os.chmod(w.tmp, 0o711)
        os.chmod(d.dir, 0o711)
        os.chmod(d.socket, 0o666)
        out = as_nobody()
    finally:
        os.chmod(d.socket, 0o600)
        os.chmod(w.tmp, tmp_mode)
    tap.ok(out in refused,
           "with the socket made 0666, veild itself refuses uid nobody (SO_PEERCRED)",
           out + "\n" + d.log_tail(5))
    # (socket_group, and who it lets in: tests/test_hostile.py)
    healthy(tap, d, "a refused client")


def t_signals(tap, w, x):
    d = x["d"]
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    healthy(tap, d, "SIGHUP")
    with veil.Client(d.socket) as c:
        c.call("subscribe")
        rc = d.stop()
    tap.ok(rc == 0, "SIGTERM with a subscribed client: exit 0", "exit %r\n%s"
           % (rc, d.log_tail()))
    tap.ok(not os.path.exists(d.socket), "the socket file is removed on exit",
           d.socket)
    d.start()
    healthy(tap, d, "a restart")


TESTS = [
    ("malformed JSON", t_malformed),
    ("methods and params", t_methods_params),
    ("2 MiB line", t_huge_line),
    ("binary junk", t_junk),
    ("stalled client", t_stalled),
    ("many clients", t_many_clients),
    ("client that never reads", t_no_reader),
    ("permissions", t_permissions),
    ("signals", t_signals),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 100})
