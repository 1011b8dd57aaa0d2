#!/usr/bin/env python3
"""test_xmpp.py: the XMPP transport (daemon/xmpp.c) against a real prosody, through tests/transport_probe; prints TAP."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
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


def args(server, extra):
    return [PROBE, "--transport", "xmpp", "--domain", server.domain, "--host", "127.0.0.1",
            "--port", str(server.port), "--pubsub", server.pubsub] + extra


def probe(server, extra, timeout=30):
    return subprocess.run(args(server, extra), capture_output=True, text=True,
                          timeout=timeout)


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
            for t in (test_basic, test_offline, test_rotate):
                try:
                    t(fast)
                except Exception as e:  # a crash in one test is a failure, not an abort
                    tap(False, t.__name__, repr(e))
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
