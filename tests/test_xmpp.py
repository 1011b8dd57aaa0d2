#!/usr/bin/env python3
"""test_xmpp.py: the XMPP transport (daemon/xmpp.c) against a real prosody, through tests/transport_probe; prints TAP."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from background import finish as probe_finish, start as probe_start  # noqa: E402
from prosody import PROSODY, Prosody  # noqa: E402

PROBE = os.environ.get("TRANSPORT_PROBE") or os.path.join(
    os.environ.get("VEIL_TOP_BUILDDIR", os.path.dirname(os.path.abspath(__file__)) + "/.."),
    "tests", "transport_probe")

IQ_SET = re.compile(r"Received\[c2s\]: <iq [^>]*type='set'")
results = []
WATCHDOG_S = 240	# the whole file; a hung probe fails it instead of hanging make check


def tap(ok, name, diag=""):
    results.append(ok)
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), name))
    if not ok and diag:
        for line in diag.rstrip().splitlines()[-25:]:
            print("# " + line)
    sys.stdout.flush()


class Watchdog(BaseException):
    """Not an Exception: the tests' own except clauses must not swallow it."""


def on_alarm(signum, frame):
    raise Watchdog("watchdog: %d s" % WATCHDOG_S)


def wait_count(count, want, timeout):
    """count() once it reaches want, or its last value after timeout."""
    deadline = time.monotonic() + timeout
    n = count()
    while n < want and time.monotonic() < deadline:
        time.sleep(0.01)
        n = count()
    return n


def wait_ready(p, timeout):
    """True once the probe printed its "ready" line; False if it exits or
    stays silent for timeout seconds (never blocks longer)."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = ""
    try:
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(p.stdout.fileno(), 4096).decode("utf-8", "replace")
            if not chunk:
                return False
            buf += chunk
            if re.search(r"^ready", buf, re.M):
                return True
        return False
    finally:
        sel.close()


def args(server, extra, port=None):
    # xmpp.tls defaults to "required": the loopback servers here speak
    # plain XMPP unless a test asks for TLS.
    tls = [] if "--tls" in extra else ["--tls", "off"]
    return [PROBE, "--transport", "xmpp", "--domain", server.domain, "--host", "127.0.0.1",
            "--port", str(port or server.port), "--pubsub", server.pubsub] + tls + extra


def probe(server, extra, timeout=30, env=None, port=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(args(server, extra, port), capture_output=True, text=True,
                          timeout=timeout, env=e)


def start(server, extra, port=None):
    """The probe in the background, once ready: (process, lines so far)."""
    return probe_start(args(server, extra, port))


class Relay:
    """A loopback TCP relay to the server that keeps what the client sent.
    With hold_on, replies stop for good once the client has sent those
    bytes: the server still gets everything, the client hears nothing."""

    def __init__(self, port, hold_on=None):
        self.target = port
        self.hold_on = hold_on
        self.held = False
        self.sent = bytearray()
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
                s = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, False), daemon=True).start()

    def _pipe(self, src, dst, up):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    if up:
                        tail = bytes(self.sent[-64:]) + data
                        if self.hold_on is not None and self.hold_on in tail:
                            self.held = True    # before the server sees it
                        self.sent += data
                    elif self.held:
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_basic(server):
    r = probe(server, ["-n", "1000", "-s", "1024"])
    tap(r.returncode == 0, "1000 frames of 1 KiB come back; unsubscribe stops delivery",
        r.stdout + r.stderr)
    # prosody's debug log shows each stanza's top-level tag: ours must carry
    # nothing but type, xml:lang, the service and a random fixed-length id.
    tags = re.findall(r"Received\[c2s\]: (<iq [^>]*>)", server.log())
    bad = [t for t in tags if not re.fullmatch(
        r"<iq (?:(?:type='(?:set|get)'|xml:lang='en'|to='%s'|id='[0-9a-f]{16}') ?){4}>"
        % re.escape(server.pubsub), t)]
    tap(len(tags) >= 1000 and not bad,
        "every IQ prosody logged: only type, lang, service and a random 16-hex id",
        "%d IQs, unexpected: %r" % (len(tags), bad[:3]))


def test_offline(server):
    r = probe(server, ["--offline", "-n", "200", "-s", "1024"])
    tap(r.returncode == 0 and "published" in r.stdout,
        "frames published while the subscriber is away arrive after it reconnects",
        r.stdout + r.stderr)


def test_rotate(server):
    r = probe(server, ["--rotate", "-n", "600", "-w", "50"])
    jids = set(re.findall(r"Authenticated as (\S+)", server.log()))
    tap(r.returncode == 0, "reconnect (rotation) mid-stream loses nothing", r.stdout + r.stderr)
    tap(len(jids) >= 2, "each connection got its own anonymous JID", repr(list(jids)[:4]))


def test_restart(server):
    p = subprocess.Popen(args(server, ["--expect-reconnect", "-n", "200", "-t", "25"]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = after = 0
    try:
        ready = wait_ready(p, 20)
        if ready:
            # Mid-stream: a fifth of the frames are at the server (the
            # debug log shows each IQ's top-level tag; these are publishes).
            mark = len(server.log())
            before = wait_count(lambda: len(IQ_SET.findall(server.log()[mark:])), 40, 15)
            server.restart(down_for=0.5)
            mark = len(server.log())
        out, errs = p.communicate(timeout=40)
        after = len(IQ_SET.findall(server.log()[mark:])) if ready else 0
    except subprocess.TimeoutExpired:
        p.kill()
        out, errs = p.communicate()
    finally:
        if p.poll() is None:
            p.kill()
    tap(ready and p.returncode == 0,
        "server restart during traffic: reconnects, resubscribes, every frame arrives",
        out + errs)
    tap(before >= 40 and after >= 1,
        "the restart came mid-stream (%d IQ sets before it, %d after)" % (before, after))


def test_window(server):
    """The server answers nothing once the first publish went out: what the
    client sends then is its publish window, xmpp.inflight (not
    mqtt.inflight), 64 by default."""
    for extra, want, what in ((["-w", "7", "--mqtt-inflight", "3"], 7,
                               "xmpp.inflight = 7 (mqtt.inflight = 3)"),
                              ([], 64, "the default, 64")):
        relay = Relay(server.port, hold_on=b"<publish ")
        p, lines = start(server, ["-n", "100", "-t", "5"] + extra, port=relay.port)
        time.sleep(2.0)
        with relay.lock:
            n = relay.sent.count(b"<publish node=")
        p.kill()
        probe_finish(p)
        relay.close()
        tap("ready" in lines and n == want,
            "publish window follows %s: %d unanswered publishes sent" % (what, n),
            "\n".join(lines))


def test_prefix(server):
    """mqtt.topic_prefix is MQTT's: node names are the engine's names."""
    relay = Relay(server.port)
    r = probe(server, ["-n", "50", "--prefix", "veilpfx/"], port=relay.port)
    relay.close()
    with relay.lock:
        nodes = set(re.findall(rb'node="([^"]*)"', relay.sent))
    wires = re.findall(r"^wire (\S+)$", r.stdout, re.M)
    now = re.findall(r"^now (\S+)$", r.stdout, re.M)
    tap(r.returncode == 0 and len(nodes) == 2 and
        not any(b"veilpfx" in n for n in nodes) and
        set(w.encode() for w in wires) == nodes,
        "no XMPP node name carries mqtt.topic_prefix; foreach_topic lists the node names",
        r.stdout + r.stderr + repr(nodes))
    tap(len(now) == 1 and re.fullmatch(r"[^@/\s]+@%s/\S+" % re.escape(server.domain), now[0])
        is not None and ("Authenticated as %s" % now[0].split("/")[0]) in server.log(),
        "transport_client_id() is the JID the server bound", repr(now))


def test_junk_items(server):
    """Items that cannot decode to exactly frames.size bytes are dropped,
    counted, and the good ones still arrive."""
    p, lines = start(server, ["--listen", "-n", "5", "-s", "1024", "-t", "20"])
    topic = [ln.split()[1] for ln in lines if ln.startswith("topic_t ")]
    ok = bool(topic)
    if ok:
        for size, n in (("2048", "3"), ("1024", "2")):
            r = probe(server, ["--send-to", topic[0], "-n", n, "-s", size])
            ok = ok and r.returncode == 0
    out, err = probe_finish(p)
    tap(ok and p.returncode == 0 and
        re.search(r"received 2 .* dropped 3 ", out) is not None,
        "items of the wrong size are dropped and counted; frames still arrive",
        "\n".join(lines) + out + err)


def tls_server(tmp):
    """prosody offering STARTTLS with a self-signed certificate for
    localhost, made here; returns (server, certificate path)."""
    crt = os.path.join(tmp, "localhost.crt")
    key = os.path.join(tmp, "localhost.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    return Prosody(os.path.join(tmp, "tls"), storage="memory", tls=(crt, key)), crt


def test_tls(tmp, plain):
    server, crt = tls_server(tmp)
    trust = {"SSL_CERT_FILE": crt}      # OpenSSL's default store: this one
    try:
        for mode in ("off", "starttls", "required"):
            before = len(server.log())
            r = probe(server, ["-n", "20", "--tls", mode], env=trust)
            log = server.log()[before:]
            sent = "<starttls" in log
            enc = "Stream encrypted" in log
            tls = "xmpp: connected (TLS)" in r.stderr
            if mode == "off":
                tap(r.returncode == 0 and not sent and not enc and not tls
                    and "Authenticated as" in log,
                    "tls = \"off\" with STARTTLS offered: never sends <starttls/>, "
                    "works unencrypted", r.stdout + r.stderr + log[-1500:])
            else:
                tap(r.returncode == 0 and sent and enc and tls,
                    "tls = \"%s\" with STARTTLS offered: encrypted (prosody: "
                    "Stream encrypted)" % mode, r.stdout + r.stderr + log[-1500:])
        before = len(server.log())
        r = probe(server, ["-n", "2", "-t", "3", "--tls", "starttls"])
        tap(r.returncode != 0 and
            "probe: down (TLS: the server's certificate was refused: self-signed "
            "certificate)" in r.stderr
            and "Authenticated as" not in server.log()[before:],
            "an untrusted certificate: no login, a clear error", r.stdout + r.stderr)
    finally:
        server.stop()
    before = len(plain.log())
    r = probe(plain, ["-n", "2", "-t", "3", "--tls", "required"])
    tap(r.returncode != 0 and
        "probe: down (server does not offer TLS, which xmpp.tls = \"required\" demands)"
        in r.stderr and r.stderr.count("probe: down") == 1
        and "Authenticated as" not in plain.log()[before:],
        "tls = \"required\" against a server without certificates: refused once, "
        "with a clear error, before any login", r.stdout + r.stderr)


def test_no_anonymous(tmp):
    server = Prosody(os.path.join(tmp, "noanon"), anonymous=False, debug=False)
    try:
        r = probe(server, ["-n", "2", "-t", "2"])
    finally:
        server.stop()
    tap(r.returncode != 0 and "probe: down (server does not allow anonymous login)" in r.stderr,
        "a server without anonymous login: clear error", r.stdout + r.stderr)


def main():
    if not os.path.exists(PROSODY):
        print("1..0 # SKIP no prosody at %s" % PROSODY)
        return 0
    if not os.access(PROBE, os.X_OK):
        print("Bail out! %s is not built" % PROBE)
        return 99
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WATCHDOG_S)
    try:
        run_all()
    except Watchdog as e:
        tap(False, "watchdog: the file ran over %d s" % WATCHDOG_S, repr(e))
    signal.alarm(0)
    print("1..%d" % len(results))
    return 0 if all(results) else 1


def run_all():
    with tempfile.TemporaryDirectory(prefix="veil-xmpp-") as tmp:
        # Memory storage: prosody's file storage rewrites a node's item list
        # on each publish, too slow for 1000 frames.  Persistence across a
        # restart is tested on file storage below.
        fast = Prosody(os.path.join(tmp, "fast"), storage="memory")
        try:
            rc, out = fast.check()
            tap(rc == 0, "prosodyctl accepts the generated config", out)
            for t in (test_basic, test_offline, test_rotate, test_window,
                      test_prefix, test_junk_items):
                try:
                    t(fast)
                except Exception as e:  # a crash in one test is a failure, not an abort
                    tap(False, t.__name__, repr(e))
            try:
                test_tls(tmp, fast)
            except Exception as e:
                tap(False, "test_tls", repr(e))
        finally:
            fast.stop()
        disk = Prosody(os.path.join(tmp, "disk"), storage="internal")
        try:
            test_restart(disk)
        except Exception as e:
            tap(False, "test_restart", repr(e))
        finally:
            disk.stop()
        try:
            test_no_anonymous(tmp)
        except Exception as e:
            tap(False, "test_no_anonymous", repr(e))


if __name__ == "__main__":
    sys.exit(main())
