#!/usr/bin/env python3
"""test_badinput.py: veild's control socket against bad, huge, stalled and hostile clients; prints TAP."""

import contextlib
import errno
import grp
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


LINE_MAX = 8 << 20	# CONTROL_LINE_MAX (daemon/control.h), README's 8 MiB
# peer_probe's lines when the daemon closed on it.
REFUSED = ("closed EOF", "closed ECONNRESET", "closed EPIPE")


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
        b"A" * (LINE_MAX + (1 << 20)) + b'"}}\n'
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
           "a 9 MiB line: error -32600 and the connection closed",
           repr((data[:300], closed)))
    # Just under the limit is still a request (an error about params, not size).
    ok_line = b'{"jsonrpc":"2.0","method":"status","id":2,"params":{"pad":"' + \
        b"A" * (LINE_MAX - 200) + b'"}}\n'
    r, _ = exchange(d, ok_line, timeout=20)
    tap.ok(isinstance(r, dict) and r.get("id") == 2 and
           ("result" in r or (r.get("error") or {}).get("code") != -32600),
           "a line just under 8 MiB is parsed (answered on its merits)", repr(r)[:300])
    healthy(tap, d, "a 9 MiB line")


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
    errors = []
    for _ in range(5):
        try:
            d.rpc("status", timeout=5)
        except Exception as e:	# reported below
            errors.append(repr(e))
    dt = time.monotonic() - t0
    # Held up, they would wait for the staller for good: a timeout.
    tap.ok(not errors, "a half-written line does not hold up others "
           "(5 status calls answered, in %.2f s)" % dt, "\n".join(errors) + d.log_tail())
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
        refused = busy = 0
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
                    busy += is_error(r, (-32005,))
            except OSError:
                refused += 1
        # CONTROL_CLIENTS_MAX is 64 and 50 are held: 6 of these at least.
        tap.ok(refused >= 20 - (64 - 50) and busy >= 1,
               "clients beyond the limit of 64 are refused, not hung (%d of 20 more, "
               "%d told -32005 too many clients)" % (refused, busy), d.log_tail())
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
                d.rpc("status", timeout=5)
                probe_times.append(time.monotonic() - p0)
            except Exception:
                probe_times.append(None)	# held up: a timeout
            time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    answered = [t for t in probe_times if t is not None]
    tap.note("flood: %d bytes of requests in %.1f s, closed=%s, %d probes, slowest %.2f s"
             % (sent, time.monotonic() - t0, closed, len(probe_times),
                max(answered or [0])))
    tap.ok(probe_times and len(answered) == len(probe_times),
           "while one client floods and never reads, others get answers (%d probes)"
           % len(probe_times), repr(probe_times[-10:]))
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
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass	# still open: the check below fails
    s.close()
    tap.ok(closed, "the flooding client that never reads is disconnected",
           d.log_tail())
    healthy(tap, d, "a flooding client that never reads")


@contextlib.contextmanager
def traversable(*dirs):
    """dirs made 0711 meanwhile, so that only the socket's own mode and
    veild's checks stand between another uid and the socket."""
    modes = [(p, stat.S_IMODE(os.stat(p).st_mode)) for p in dirs]
    try:
        for p, _ in modes:
            os.chmod(p, 0o711)
        yield
    finally:
        for p, mode in reversed(modes):
            os.chmod(p, mode)


def probe_open(d, **kw):
    """peer_probe with the socket made 0666 meanwhile: what veild's own
    SO_PEERCRED/SO_PEERGROUPS check says.  (exit status, line, log mark)."""
    mark = d.log_mark()
    mode = stat.S_IMODE(os.stat(d.socket).st_mode)
    os.chmod(d.socket, 0o666)
    try:
        rc, out = veil.peer_probe(d.socket, **kw)
    finally:
        os.chmod(d.socket, mode)
    return rc, out, mark


def served(out):
    return out.startswith("reply {") and '"result"' in out


def t_permissions(tap, w, x):
    """Another uid: nobody when root, else a subordinate uid (uidmap): the
    same checks run as root and as an unprivileged user."""
    d = x["d"]
    st = os.stat(d.socket)
    tap.ok(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
           "the socket is mode 0600 (no socket_group)", oct(st.st_mode))
    uid, why = veil.other_uid()
    checks = ["another uid cannot connect to the socket as installed (EACCES)",
              "with the socket made 0666, veild itself refuses another uid (SO_PEERCRED)",
              "another uid in the socket file's group is refused too (no socket_group)"]
    if uid is None:
        for c in checks:
            tap.skip(c, why)
        return
    with traversable(w.tmp, d.dir):
        rc, out = veil.peer_probe(d.socket)
        tap.ok(out == "connect EACCES", "uid %d cannot connect to the socket as "
               "installed (EACCES)" % uid, out)
        rc, out, mark = probe_open(d)
        tap.ok(out in REFUSED and d.wait_log(r"control: refused uid %d " % uid, 5, mark),
               "with the socket made 0666, veild itself refuses uid %d (SO_PEERCRED) "
               "and logs it" % uid, out + "\n" + d.log_tail(5))
        # Without socket_group, sharing the file's group lets no one in.
        rc, out, mark = probe_open(d, gid=st.st_gid)
        tap.ok(out in REFUSED, "uid %d with the socket file's group %d is refused too "
               "(no socket_group)" % (uid, st.st_gid), out + "\n" + d.log_tail(3))
    healthy(tap, d, "refused clients")


def t_socket_group(tap, w, x):
    """socket_group names a group: the socket is chowned to it, its
    members (another uid) are served, others refused; a name that is no
    group stops veild at start."""
    m = x["m"]
    uid, why = veil.other_uid()
    own = grp.getgrgid(os.getegid())
    d = w.daemon("Group-own", m, socket_group=own.gr_name)
    st = os.stat(d.socket)
    tap.ok(st.st_gid == own.gr_gid and stat.S_IMODE(st.st_mode) == 0o660,
           "socket_group = \"%s\" (our primary group): the socket is that group's, 0660"
           % own.gr_name, repr((st.st_gid, oct(st.st_mode))))
    if uid is None:
        tap.skip("socket_group %s: a member with another uid is served" % own.gr_name, why)
        tap.skip("socket_group %s: another uid outside it is refused" % own.gr_name, why)
    else:
        with traversable(w.tmp, d.dir):
            rc, out = veil.peer_probe(d.socket, gid=own.gr_gid)
            tap.ok(served(out), "socket_group %s: uid %d in it is served" % (own.gr_name, uid),
                   out + "\n" + d.log_tail(3))
            rc, out, mark = probe_open(d)
            tap.ok(out in REFUSED, "socket_group %s: uid %d outside it is refused"
                   % (own.gr_name, uid), out + "\n" + d.log_tail(3))
    d.stop()
    # A group that is not ours: the chown is observable.
    if os.geteuid() == 0:
        other = grp.getgrnam("nogroup")
    else:
        sup = [g for g in os.getgroups() if g != os.getegid()]
        other = grp.getgrgid(sup[0]) if sup else None
    if other is None:
        tap.skip("socket_group = a group other than our primary one: the socket is chowned",
                 "this user is in no group but its primary one")
    else:
        d = w.daemon("Group-other", m, socket_group=other.gr_name)
        st = os.stat(d.socket)
        tap.ok(st.st_gid == other.gr_gid and stat.S_IMODE(st.st_mode) == 0o660,
               "socket_group = \"%s\": the socket is chowned to group %d, 0660"
               % (other.gr_name, other.gr_gid), repr((st.st_gid, oct(st.st_mode))))
        if uid is not None:
            with traversable(w.tmp, d.dir):
                rc, out, mark = probe_open(d)
                tap.ok(out in REFUSED, "socket_group %s: uid %d outside it is refused"
                       % (other.gr_name, uid), out)
                if os.geteuid() == 0:
                    rc, out = veil.peer_probe(d.socket, gid=other.gr_gid)
                    rc2, out2 = veil.peer_probe(d.socket, group=other.gr_gid)
                    tap.ok(served(out) and served(out2),
                           "socket_group %s: uid %d in it (primary, supplementary) is served"
                           % (other.gr_name, uid), out + "\n" + out2)
                else:
                    tap.skip("socket_group %s: another uid in it is served" % other.gr_name,
                             "root only: without root a peer can have no group of ours but "
                             "our primary one (newgidmap)")
        d.stop()
    bad = w.daemon("Group-none", m, start=False, socket_group="veil-no-such-group")
    rc, out = bad.run_to_exit()
    tap.ok(rc != 0 and "no group named veil-no-such-group" in out,
           "socket_group naming no group: veild refuses to start", "exit %s\n%s" % (rc, out))


def t_signals(tap, w, x):
    d = x["d"]
    d.hup("configuration reloaded")
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
    ("9 MiB line", t_huge_line),
    ("binary junk", t_junk),
    ("stalled client", t_stalled),
    ("many clients", t_many_clients),
    ("client that never reads", t_no_reader),
    ("permissions", t_permissions),
    ("socket_group", t_socket_group),
    ("signals", t_signals),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 100})
