#!/usr/bin/env python3
"""test_mqtt.py: the MQTT transport (daemon/mqtt.c) against a real mosquitto, through tests/transport_probe; prints TAP."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from brokers import MOSQUITTO, Mosquitto, free_port  # noqa: E402

PROBE = os.environ.get("TRANSPORT_PROBE") or os.path.join(
    os.environ.get("VEIL_TOP_BUILDDIR", os.path.dirname(os.path.abspath(__file__)) + "/.."),
    "tests", "transport_probe")
CMD = [PROBE, "--transport", "mqtt"]      # the probe serves both transports

results = []
WATCHDOG_S = 120	# the whole file; a hung probe fails it instead of hanging make check


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


def probe(args, env=None, timeout=30):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(CMD + args, capture_output=True, text=True,
                          timeout=timeout, env=e)


def ids(out):
    return re.findall(r"^client_id (\w+)$", out, re.M)


def test_basic(broker):
    r = probe(["-n", "2000", "-s", "1024", broker.uri])
    tap(r.returncode == 0, "2000 frames of 1 KiB come back; unsubscribe stops delivery",
        r.stdout + r.stderr)
    cid = (ids(r.stdout) or ["?"])[0]
    log = broker.log()
    # The broker itself must have dropped the subscription, not only our
    # filter: PUBACK reason 16 = no matching subscribers.
    after = log.split("Received UNSUBSCRIBE from %s" % cid, 1)
    nomatch = len(re.findall(r"Sending PUBACK to %s \(m\d+, rc16\)" % cid, after[-1]))
    tap(len(after) == 2 and nomatch >= 5,
        "broker saw the UNSUBSCRIBE and had no subscriber afterwards",
        "rc16 after UNSUBSCRIBE: %d" % nomatch)
    sizes = set(re.findall(r"Received PUBLISH from %s .*\((\d+) bytes\)" % cid, log))
    tap(sizes == {"1024"}, "every PUBLISH the broker logged is 1024 bytes", repr(sizes))
    tap(re.search(r"as %s \(p5, c0," % cid, log) is not None,
        "MQTT 5 with a persistent session (clean start 0)", log[-2000:])


def test_window(broker):
    r = probe(["-n", "300", "-s", "256", "-w", "1", broker.uri])
    tap(r.returncode == 0, "in-flight window of 1 still delivers everything",
        r.stdout + r.stderr)


def test_failover(broker):
    dead = "tcp://127.0.0.1:%d" % free_port()
    r = probe(["-n", "200", dead, broker.uri])
    tap(r.returncode == 0, "first server URI refuses, second one is used",
        r.stdout + r.stderr)


def test_proxy_env(broker):
    # paho would send the CONNECT through this (dead) proxy if the
    # transport did not clear it.
    bogus = "http://127.0.0.1:%d" % free_port()
    r = probe(["-n", "100", "-t", "5", broker.uri],
              env={"http_proxy": bogus, "https_proxy": bogus})
    tap(r.returncode == 0, "http_proxy/https_proxy from the environment are ignored",
        r.stdout + r.stderr)


def test_rotate(broker):
    r = probe(["-n", "3000", "-w", "50", "--rotate", broker.uri])
    got = ids(r.stdout)
    tap(r.returncode == 0 and len(got) == 2 and got[0] != got[1],
        "client ID rotation mid-stream loses nothing", r.stdout + r.stderr)
    log = broker.log()
    tap(len(got) == 2 and all(("as %s (" % c) in log for c in got)
        and ("Client %s disconnected" % got[0]) in log,
        "broker saw the old ID leave and the new one connect", log[-2000:])


def test_restart(broker):
    p = subprocess.Popen(CMD + ["--expect-reconnect", "-n", "300", "-t", "20", broker.uri],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = after = 0
    try:
        ready = wait_ready(p, 20)
        if ready:
            # Mid-stream: a fifth of the frames are at the broker.
            mark = len(broker.log())
            before = wait_count(lambda: broker.log()[mark:].count("Received PUBLISH from "),
                                60, 15)
            broker.restart(down_for=0.5)
            mark = len(broker.log())
        out, errs = p.communicate(timeout=30)
        after = broker.log()[mark:].count("Received PUBLISH from ") if ready else 0
    except subprocess.TimeoutExpired:
        p.kill()
        out, errs = p.communicate()
    finally:
        if p.poll() is None:
            p.kill()
    tap(ready and p.returncode == 0,
        "broker restart during traffic: reconnects, resubscribes, every frame arrives",
        out + errs)
    tap(before >= 60 and after >= 1,
        "the restart came mid-stream (%d PUBLISHes before it, %d after)" % (before, after))


def main():
    if not os.path.exists(MOSQUITTO):
        print("1..0 # SKIP no mosquitto at %s" % MOSQUITTO)
        return 0
    if not os.access(PROBE, os.X_OK):
        print("Bail out! %s is not built" % PROBE)
        return 99
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WATCHDOG_S)
    with tempfile.TemporaryDirectory(prefix="veil-mqtt-") as tmp:
        broker = Mosquitto(tmp, log_all=True)
        try:
            for t in (test_basic, test_window, test_failover, test_proxy_env,
                      test_rotate, test_restart):
                try:
                    t(broker)
                except Exception as e:  # a crash in one test is a failure, not an abort
                    tap(False, t.__name__, repr(e))
        except Watchdog as e:
            tap(False, "watchdog: the file ran over %d s" % WATCHDOG_S, repr(e))
        finally:
            signal.alarm(0)
            broker.stop()
    print("1..%d" % len(results))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
