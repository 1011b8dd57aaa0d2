#!/usr/bin/env python3
"""test_mqtt.py: the MQTT transport (daemon/mqtt.c) against a real mosquitto, through tests/transport_probe; prints TAP."""

import base64
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from background import finish as probe_finish, start as probe_start  # noqa: E402
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


def start(args):
    """The probe in the background, once ready: (process, lines so far)."""
    return probe_start(CMD + args)


def counts(out):
    """received, dropped, vmhwm (KiB) from the probe's last line."""
    m = re.search(r"received (\d+) .* dropped (\d+) vmhwm (-?\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (-1, -1, -1)


def wire_t(lines):
    """The broker's name of topic T."""
    t = [ln.split()[1] for ln in lines if ln.startswith("topic_t ")]
    w = [ln.split()[1] for ln in lines if ln.startswith("wire ")]
    return [x for x in w if t and x.endswith(t[0])][0]


def mqtt_pub(broker, topic, extra, data=None):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-t", topic] + extra, input=data, check=True, timeout=30,
                   capture_output=True)


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


def test_prefix(broker):
    """mqtt.topic_prefix is added by the driver: the broker sees it on every
    topic, the engine's callbacks never do."""
    r = probe(["-n", "50", "--prefix", "veil/pfx_", broker.uri])
    cid = (ids(r.stdout) or ["?"])[0]
    log = broker.log()
    pubs = re.findall(r"Received PUBLISH from %s \(d\d, q\d, r\d, m\d+, '([^']*)'" % cid, log)
    subs = re.findall(r": \t(\S+) \(QoS 1\)", log.split("Received SUBSCRIBE from %s" % cid, 1)[-1])
    wires = re.findall(r"^wire (\S+)$", r.stdout, re.M)
    now = re.findall(r"^now (\S+)$", r.stdout, re.M)
    tap(r.returncode == 0 and len(pubs) >= 50 and len(subs) >= 2 and
        all(t.startswith("veil/pfx_") for t in pubs + subs),
        "every topic at the broker carries mqtt.topic_prefix; delivery strips it",
        r.stdout + r.stderr + repr((pubs[:3], subs[:3])))
    tap(len(wires) == 2 and all(w.startswith("veil/pfx_") for w in wires) and
        now == [cid], "foreach_topic names the broker's topics; client_id the current ID",
        r.stdout)


def test_oversize(broker, tmp):
    """A 16 MiB publish to our topic never reaches us (our CONNECT's
    Maximum Packet Size), payloads of the wrong size are dropped before any
    copy and counted, and neither raises the peak RSS."""
    big = os.path.join(tmp, "16MiB")
    with open(big, "wb") as f:
        f.write(os.urandom(16 << 20))
    # The same probe getting frames only: its peak RSS is the baseline.
    ref, lines = start(["--listen", "-n", "3", "-t", "20", broker.uri])
    for i in range(3):
        mqtt_pub(broker, wire_t(lines), ["-m", "y" * 1024])
    refout, referr = probe_finish(ref)
    base_hwm = counts(refout)[2]

    hot, lines = start(["--listen", "-n", "8", "-t", "30", broker.uri])
    topic = wire_t(lines)
    cid = (ids("\n".join(lines)) or ["?"])[0]
    for i in range(3):
        mqtt_pub(broker, topic, ["-f", big])
    for n in (1025, 1025, 1023, 10, 1):
        mqtt_pub(broker, topic, ["-m", "x" * n])
    for i in range(3):
        mqtt_pub(broker, topic, ["-m", "y" * 1024])
    out, err = probe_finish(hot)
    got, dropped, hwm = counts(out)
    log = broker.log()
    tap(hot.returncode == 0 and got == 3 and dropped == 5,
        "wrong-size payloads dropped and counted (5), frames delivered (3)", out + err)
    tap(len(re.findall(r"Dropping too large outgoing PUBLISH for %s " % cid, log)) == 3,
        "the broker kept the 16 MiB publishes from us (Maximum Packet Size)",
        log[-1500:])
    tap(hwm > 0 and base_hwm > 0 and hwm - base_hwm < 2048,
        "peak RSS within 2 MiB of a probe that got no junk (%d KiB vs %d KiB)"
        % (hwm, base_hwm), out + refout + referr)


def test_flood(broker):
    """A flood while the loop is stuck: the hand-off queue stops at 1024
    frames or 4 MiB, the rest is dropped and counted, nothing is lost
    silently."""
    for size, n, most in ((1024, 3000, 1 + 1024),
                          (65536, 300, 1 + (4 << 20) // (65536 + 24))):
        p, lines = start(["--listen", "-s", str(size), "--stall", "4000", "-n", str(n),
                          "-t", "40", broker.uri])
        topic = wire_t(lines)
        # base64 of 3/4 of the size: one line, no newline inside.
        flood = "".join(base64.b64encode(os.urandom(size * 3 // 4)).decode() + "\n"
                        for _ in range(n - 1))
        mqtt_pub(broker, topic, ["-m", "y" * size])   # the loop stalls on it
        time.sleep(0.3)
        mqtt_pub(broker, topic, ["-l"], data=flood.encode())
        out, err = probe_finish(p)
        got, dropped, hwm = counts(out)
        tap(p.returncode == 0 and got + dropped == n and 0 < got <= most and
            dropped >= n - most,
            "%d frames of %d bytes into a stalled loop: %d delivered (at most %d "
            "held), %d dropped and counted" % (n, size, got, most, dropped), out + err)


def test_session_end(broker):
    """transport_free() ends the session at the broker (DISCONNECT with
    Session Expiry 0); a connection that dies without it leaves the session
    behind, which is what the second check tells apart."""
    a = probe(["-n", "10", "--client-id", "endA", broker.uri])
    a2 = probe(["-n", "10", "--client-id", "endA", broker.uri])
    b = probe(["-n", "10", "--client-id", "endB", "--crash", broker.uri])
    b2 = probe(["-n", "10", "--client-id", "endB", broker.uri])
    log = broker.log()
    acks_a = re.findall(r"Sending CONNACK to endA \((\d), 0\)", log)
    acks_b = re.findall(r"Sending CONNACK to endB \((\d), 0\)", log)
    tap(a.returncode == 0 and a2.returncode == 0 and acks_a == ["0", "0"] and
        "Received DISCONNECT from endA" in log,
        "a freed connection's session is gone: the same ID comes back with "
        "session_present 0", repr(acks_a) + a.stderr)
    tap(b.returncode == 0 and b2.returncode == 0 and acks_b == ["0", "1"],
        "control: a connection that died keeps its session (session_present 1)",
        repr(acks_b))
    c = probe(["-n", "10", "--client-id", "endC", "--crash", "--session-expiry", "1",
               broker.uri])
    time.sleep(2.5)
    c2 = probe(["-n", "10", "--client-id", "endC", broker.uri])
    acks_c = re.findall(r"Sending CONNACK to endC \((\d), 0\)", broker.log())
    tap(c.returncode == 0 and c2.returncode == 0 and acks_c == ["0", "0"],
        "transport_set_session_expiry(1): the broker dropped the session a second "
        "after the connection died", repr(acks_c))


def test_credentials(broker):
    """mqtt.random_username: a fresh username per client ID;
    transport_set_credentials(): the one given."""
    r = probe(["-n", "200", "-w", "20", "--rotate", "--random-username", broker.uri])
    got = ids(r.stdout)
    log = broker.log()
    users = [re.search(r"as %s \(p5, c0, k\d+, u'([^']*)'\)" % c, log) for c in got]
    users = [u.group(1) for u in users if u]
    tap(r.returncode == 0 and len(users) == 2 and users[0] != users[1] and
        all(re.fullmatch(r"[0-9A-Za-z]{16}", u) for u in users),
        "random_username: each client ID presents its own random username", repr(users))
    r = probe(["-n", "10", "--credentials", "someone:secret", broker.uri])
    cid = (ids(r.stdout) or ["?"])[0]
    seen = re.findall(r"as %s \((p5, c0, k\d+, u'[^']*')\)" % cid, broker.log())
    tap(r.returncode == 0 and seen and all(v.endswith("u'someone'") for v in seen),
        "transport_set_credentials() sets the username of the next connect",
        repr(seen) + r.stdout + r.stderr)


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
                      test_rotate, test_prefix, test_flood, test_session_end,
                      test_credentials, test_restart):
                try:
                    t(broker)
                except Exception as e:  # a crash in one test is a failure, not an abort
                    tap(False, t.__name__, repr(e))
            try:
                test_oversize(broker, tmp)
            except Exception as e:
                tap(False, "test_oversize", repr(e))
        except Watchdog as e:
            tap(False, "watchdog: the file ran over %d s" % WATCHDOG_S, repr(e))
        finally:
            signal.alarm(0)
            broker.stop()
    print("1..%d" % len(results))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
