"""bench_lib.py: helpers of the benchmark harness (broker, bench-raw runs, percentiles, RSS, output); Python 3 stdlib only.

As a program it runs the raw broker baseline matrix that docs/benchmarks.md
records:

    python3 tools/bench_lib.py --bench-raw /tmp/bench-raw --windows 10,64,100
"""

import argparse
import json
import math
import os
import platform
import selectors
import socket
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, os.pardir, "tests", "lib"))
from brokers import Mosquitto  # noqa: E402  (needs the path above)

BENCH_RAW_MODES = ("throughput", "latency", "ack")


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


# --- broker ---------------------------------------------------------------

def start_mosquitto(tmpdir, tcp_nodelay=False):
    """A loopback mosquitto logging at its default levels (info, not "all").

    "log_type all" writes a line per PUBLISH and costs throughput; the
    benchmark measures the broker path, not its logging.  tcp_nodelay adds
    "set_tcp_nodelay true" (mosquitto's default is false, so its small
    writes to clients wait for delayed ACKs; see docs/benchmarks.md).
    Use as a context manager or call .stop().
    """
    m = Mosquitto(tmpdir, log_all=False)
    if tcp_nodelay:
        # brokers.py writes its config and starts at once: amend, restart.
        m.stop()
        with open(m.conf_path, "a") as f:
            f.write("set_tcp_nodelay true\n")
        m.start()
    return m


# --- statistics -----------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile (the same rule as bench-raw): the smallest
    value with at least p% of the values at or below it.  None if empty."""
    if not values:
        return None
    if not 0 < p <= 100:
        raise ValueError("percentile: p must be in (0, 100], got %r" % p)
    s = sorted(values)
    return s[max(1, math.ceil(p * len(s) / 100.0)) - 1]


def summarize(values):
    """min/mean/p50/p90/p99/max of a list of numbers (None when empty)."""
    if not values:
        return {k: None for k in ("n", "min", "mean", "p50", "p90", "p99",
                                  "max")}
    return {
        "n": len(values),
        "min": min(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def median(values):
    """Median of a non-empty list (mean of the middle two when even)."""
    if not values:
        raise ValueError("median of nothing")
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0


# --- processes ------------------------------------------------------------

def read_rss(pid):
    """{"rss_kib": VmRSS, "hwm_kib": VmHWM} from /proc/PID/status.

    VmHWM is the peak resident set since the process started: read it
    before the process exits.  Raises BenchError if the process is gone
    or the kernel does not report the fields.
    """
    path = "/proc/%d/status" % pid
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    num, unit = rest.split()[:2]
                    if unit != "kB":
                        raise BenchError("%s: %s in %r, expected kB"
                                         % (path, key, unit))
                    out["rss_kib" if key == "VmRSS" else "hwm_kib"] = int(num)
    except FileNotFoundError:
        raise BenchError("read_rss: no process %d" % pid) from None
    if len(out) != 2:
        raise BenchError("%s: no VmRSS/VmHWM (kernel thread or zombie?)"
                         % path)
    return out


def run_bench_raw(exe, uri, mode, count, size, window, concurrency=None,
                  nodelay=False, timeout=60):
    """Run bench-raw once with --json and return its parsed object.

    The returned dict gains "argv" (the exact command).  Raises BenchError
    with bench-raw's own message if it fails or times out.
    """
    if mode not in BENCH_RAW_MODES:
        raise ValueError("run_bench_raw: unknown mode %r" % mode)
    argv = [exe, "--uri", uri, "--mode", mode, "--count", str(count),
            "--size", str(size), "--window", str(window),
            "--timeout", str(timeout), "--json"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if nodelay:
        argv.append("--nodelay")
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True,
                           timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        raise BenchError("%s did not exit within %d s"
                         % (" ".join(argv), timeout + 15)) from None
    if r.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                              r.stderr.strip()))
    try:
        res = json.loads(r.stdout)
    except ValueError as e:
        raise BenchError("%s: unparsable output %r: %s"
                         % (" ".join(argv), r.stdout[:200], e)) from None
    if res.get("received") != count:
        raise BenchError("%s: %r of %d arrived"
                         % (" ".join(argv), res.get("received"), count))
    res["argv"] = argv
    return res


def machine_info():
    """nproc, CPU model and kernel, for the record next to the numbers."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "machine": platform.machine(),
    }


# --- output ---------------------------------------------------------------

def format_table(rows, columns):
    """A plain-text table.  columns: [(header, key, fmt)], fmt a format
    string such as "%.1f" or None for str(); missing values print "-"."""
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        line = []
        for _, key, fmt in columns:
            v = row.get(key)
            line.append("-" if v is None else (fmt % v if fmt else str(v)))
        cells.append(line)
    # Numbers right-aligned, words left-aligned, by the first data row.
    numeric = [isinstance(rows[0].get(k), (int, float)) if rows else False
               for _, k, _ in columns]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(c.rjust(w) if n and num else c.ljust(w)
                             for c, w, num in zip(line, widths, numeric))
                   .rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def print_table(rows, columns, file=None):
    print(format_table(rows, columns), file=file or sys.stdout)


def print_json(obj, file=None):
    """One JSON document, keys sorted so runs diff cleanly."""
    json.dump(obj, file or sys.stdout, indent=2, sort_keys=True)
    (file or sys.stdout).write("\n")


# --- the veil side --------------------------------------------------------
#
# Daemons come from tests/lib/veil.py (Daemon, pair); it finds veild and
# veilctl through VEIL_TOP_BUILDDIR, which set_builddir() sets.  The apps
# at both ends are one selector loop over two socket connections, not
# threads: with two cores and the GIL, a thread per app would measure
# Python's scheduling as much as veil.

def set_builddir(top):
    """Point tests/lib/veil.py at the build tree holding daemon/veild."""
    os.environ["VEIL_TOP_BUILDDIR"] = os.path.abspath(top)


def _veil():
    import veil  # noqa: E402  (tests/lib is on sys.path)
    return veil


class _ShimBroker:
    """What veil.Daemon wants from a broker when the transport is XMPP."""
    uri = "tcp://127.0.0.1:1"


def _make_daemon_class():
    veil = _veil()

    class BenchDaemon(veil.Daemon):
        """veil.Daemon started without -v (a debug line per frame is not
        what we measure), with READY=1 caught on our own NOTIFY_SOCKET and
        the start timed: spawn -> READY=1 -> first status answer."""

        def start(self, timeout=30.0):
            if self.alive():
                return
            os.makedirs(self.state_dir, exist_ok=True)
            npath = os.path.join(self.dir, "notify.sock")
            if os.path.exists(npath):
                os.unlink(npath)
            if os.path.exists(self.socket):
                os.unlink(self.socket)
            ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            ns.bind(npath)
            ns.setblocking(False)
            env = dict(os.environ, NOTIFY_SOCKET=npath)
            logf = open(self.log_path, "ab")
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                [self.veild, "-d", "-c", self.conf_path], env=env,
                stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT)
            logf.close()
            t_ready = t_status = None
            deadline = t0 + timeout
            try:
                while t_status is None or t_ready is None:
                    now = time.monotonic()
                    if now > deadline:
                        self.kill9()
                        raise BenchError("veild %s: no READY/status within "
                                         "%.0f s:\n%s" % (self.name, timeout,
                                                          self.log_tail()))
                    if self.proc.poll() is not None:
                        raise BenchError("veild %s exited with %s at start:\n"
                                         "%s" % (self.name,
                                                 self.proc.returncode,
                                                 self.log_tail()))
                    if t_ready is None:
                        try:
                            if b"READY=1" in ns.recv(4096):
                                t_ready = time.monotonic()
                        except BlockingIOError:
                            pass
                    if t_status is None and os.path.exists(self.socket):
                        try:
                            self.rpc("status", timeout=2.0)
                            t_status = time.monotonic()
                        except (OSError, ConnectionError, ValueError,
                                veil.RpcError):
                            pass
                    time.sleep(0.001)
            finally:
                ns.close()
                os.unlink(npath)
            self.start_times = {"ready_s": t_ready - t0,
                                "status_s": t_status - t0}
            return self.start_times

        def wait_connected(self, timeout=30.0):
            """Seconds until status says connected, from now."""
            t0 = time.monotonic()
            if veil.wait_for(lambda: self.rpc("status")["connected"],
                             timeout, interval=0.005) is None:
                raise BenchError("veild %s: not connected after %.0f s"
                                 % (self.name, timeout))
            return time.monotonic() - t0

    return BenchDaemon


class VeilPair:
    """Alice and Bob, paired; alice_sees/bob_sees are the contact names."""

    def __init__(self, alice, bob, alice_sees, bob_sees, transport):
        self.alice, self.bob = alice, bob
        self.alice_sees, self.bob_sees = alice_sees, bob_sees
        self.transport = transport

    def daemons(self):
        return (self.alice, self.bob)

    def stop(self):
        for d in self.daemons():
            try:
                d.stop()
            except Exception:
                d.kill9()


def daemon_config(broker, transport="mqtt", frame_size=1024, window=64):
    """veild.conf keys for one bench daemon (merged into veil.py's)."""
    cfg = {
        "frames": {"size": frame_size},
        # The shipped defaults: a bench must not retransmit more eagerly
        # than a real daemon would.
        "retransmit": {"initial": "2s", "max": "5m"},
        "log": {"level": "info"},
    }
    if transport == "mqtt":
        cfg["mqtt"] = {"uris": [broker.uri], "keepalive": "30s",
                       "inflight": window}
    else:
        cfg["transport"] = "xmpp"
        cfg["xmpp"] = {"domain": broker.domain, "host": "127.0.0.1",
                       "port": broker.port, "tls": "off"}
    return cfg


def start_veil_pair(tmpdir, broker, transport="mqtt", frame_size=1024,
                    window=64):
    """Two veild with fresh state dirs on broker, paired through the real
    agreement protocol (veilctl card / contact add / contact accept);
    returns a VeilPair.  broker: a Mosquitto, or a Prosody for xmpp."""
    veil = _veil()
    cls = _make_daemon_class()
    shim = broker if transport == "mqtt" else _ShimBroker()
    ds = []
    try:
        for name in ("Alice", "Bob"):
            d = cls(tmpdir, name, shim, **daemon_config(
                broker, transport, frame_size, window))
            ds.append(d)
            d.start()
            d.wait_connected()
        alice, bob = ds
        # pair(a, b): b adds a's card; returns (b's name for a, a's for b).
        alice_sees, bob_sees = veil.pair(bob, alice, timeout=30.0)
    except Exception as e:
        for d in ds:
            d.kill9()
        if isinstance(e, BenchError):
            raise
        raise BenchError("pairing the bench daemons: %s" % e) from None
    return VeilPair(alice, bob, alice_sees, bob_sees, transport)


class _App:
    """A local app on one veild socket: newline-delimited JSON-RPC with
    requests pipelined, answers and notifications handed to callbacks."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.buf = b""
        self.out = b""
        self.next_id = 1
        self.pending = {}	# request id -> callback(result, error)
        self.on_note = None	# callback(method, params)

    def close(self):
        self.sock.close()

    def request(self, method, params, cb):
        rid = self.next_id
        self.next_id += 1
        self.pending[rid] = cb
        self.out += json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                "params": params}).encode() + b"\n"
        self.flush()
        return rid

    def flush(self):
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            self.out = self.out[n:]

    def readable(self):
        """Reads what is there and dispatches every complete line; False on
        EOF."""
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        now = time.perf_counter()
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if not line:
                continue
            msg = json.loads(line)
            if "id" in msg and msg["id"] is not None and "method" not in msg:
                cb = self.pending.pop(msg["id"], None)
                if cb is not None:
                    cb(msg.get("result"), msg.get("error"), now)
            elif "method" in msg:
                if self.on_note is not None:
                    self.on_note(msg["method"], msg.get("params") or {}, now)
        return True

    def call(self, method, params=None, timeout=10.0):
        """A blocking call on this connection (setup only)."""
        box = []
        self.request(method, params or {}, lambda r, e, t: box.append((r, e)))
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        try:
            while not box:
                if time.monotonic() > deadline:
                    raise BenchError("%s: no answer in %.0f s"
                                     % (method, timeout))
                if sel.select(0.1) and not self.readable():
                    raise BenchError("%s: veild closed the socket" % method)
        finally:
            sel.close()
        r, e = box[0]
        if e is not None:
            raise BenchError("%s: %s" % (method, e))
        return r


def run_veil_messages(pair, mode, count, size, concurrency, timeout=300.0,
                      text_size=None):
    """App->app messages from Alice to Bob: Alice's app calls message.send
    (durable before the answer), Bob's app gets the "message" notification
    and drains message.receive, and Alice's app gets the "delivery"
    notification once Bob's daemon acknowledged.

    mode "throughput": up to `concurrency` messages in flight (sent, not yet
    delivered); msg/s from the first send to the last delivery; latency_us
    is send -> delivery (queueing included), like bench-raw's ack mode.
    mode "latency": one message at a time (the next after the previous
    one's delivery); latency_us is send call -> Bob's "message"
    notification, like bench-raw's latency mode.  Both report oneway_us
    (send -> message notification) and ack_us (send -> delivery).

    Raises BenchError if a message is lost, duplicated to Bob's app, or the
    run does not finish within timeout seconds.
    """
    if mode not in ("throughput", "latency"):
        raise ValueError("run_veil_messages: unknown mode %r" % mode)
    conc = 1 if mode == "latency" else max(1, concurrency)
    if text_size is None:
        # One frame's worth: the frame's own header, AEAD tag and the
        # message header need room, so stay well under the frame size.
        text_size = max(16, min(size // 4, 200))
    alice = _App(pair.alice.socket)
    bob = _App(pair.bob.socket)
    try:
        alice.call("subscribe", {"events": ["delivery"]})
        bob.call("subscribe", {"events": ["message"]})
        return _message_loop(pair, alice, bob, mode, count, conc,
                             text_size, timeout, size)
    finally:
        alice.close()
        bob.close()


def _message_loop(pair, alice, bob, mode, count, conc, text_size, timeout,
                  size):
    pad = "x" * text_size
    st = {
        "sent": 0, "answered": 0, "delivered": 0, "received": 0,
        "recv_pending": False, "recv_again": False, "dups": 0,
        "err": None,
    }
    t_send = {}		# request id -> send time
    t_sent_by_msg = {}	# msgid -> send time
    t_note = {}		# msgid -> Bob's "message" notification time
    t_deliv = {}		# msgid -> Alice's "delivery" notification time
    early_deliv = {}	# delivery seen before message.send's answer
    got = set()		# msgids drained by Bob's message.receive
    oneway, ack = [], []

    def finish_one(msgid):
        ts = t_sent_by_msg.get(msgid)
        if ts is None or msgid not in t_deliv:
            return
        ack.append(t_deliv[msgid] - ts)
        if msgid in t_note:
            oneway.append(t_note[msgid] - ts)

    def on_sent(reqid):
        def cb(result, error, now):
            if error is not None or not result or "id" not in result:
                st["err"] = "message.send: %r" % (error,)
                return
            st["answered"] += 1
            msgid = result["id"]
            t_sent_by_msg[msgid] = t_send.pop(reqid)
            if msgid in early_deliv:
                t_deliv[msgid] = early_deliv.pop(msgid)
                st["delivered"] += 1
                finish_one(msgid)
        return cb

    def alice_note(method, params, now):
        if method != "delivery":
            return
        msgid = params.get("id")
        if msgid in t_deliv or msgid in early_deliv:
            return
        if msgid not in t_sent_by_msg:
            early_deliv[msgid] = now
            return
        t_deliv[msgid] = now
        st["delivered"] += 1
        finish_one(msgid)

    def receive():
        st["recv_pending"] = True
        st["recv_again"] = False
        bob.request("message.receive", {"wait": 0, "limit": 256}, on_recv)

    def on_recv(result, error, now):
        st["recv_pending"] = False
        if error is not None:
            st["err"] = "message.receive: %r" % (error,)
            return
        msgs = result.get("messages", [])
        for m in msgs:
            if m.get("id") in got:
                st["dups"] += 1
            else:
                got.add(m.get("id"))
                st["received"] += 1
        # Taken only once acknowledged; the ack goes before the next
        # receive on the same connection, so that one starts after them.
        # A reply is cut at veild's byte budget: more may wait even when
        # it holds fewer than the limit.
        if msgs:
            bob.request("message.ack", {"ids": [m.get("id") for m in msgs]},
                        lambda r, e, t: e is not None and
                        st.__setitem__("err", "message.ack: %r" % (e,)))
        if st["recv_again"] or msgs:
            receive()

    def bob_note(method, params, now):
        if method != "message":
            return
        t_note.setdefault(params.get("id"), now)
        if st["recv_pending"]:
            st["recv_again"] = True
        else:
            receive()

    alice.on_note = alice_note
    bob.on_note = bob_note
    sel = selectors.DefaultSelector()
    sel.register(alice.sock, selectors.EVENT_READ, alice)
    sel.register(bob.sock, selectors.EVENT_READ, bob)
    t_start = time.perf_counter()
    deadline = t_start + timeout
    t_first = None
    try:
        while st["delivered"] < count or st["received"] < count:
            if st["err"]:
                raise BenchError(st["err"])
            # In flight: sent and not yet delivered.
            while (st["sent"] < count and
                   st["sent"] - st["delivered"] < conc):
                n = st["sent"]
                st["sent"] += 1
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                rid = alice.request("message.send", {
                    "to": pair.alice_sees,
                    "text": ("%08d " % n) + pad}, None)
                t_send[rid] = now
                alice.pending[rid] = on_sent(rid)
            left = deadline - time.perf_counter()
            if left <= 0:
                raise BenchError(
                    "veil %s: timed out after %.0f s: %d sent, %d answered, "
                    "%d delivered, %d received" % (
                        mode, timeout, st["sent"], st["answered"],
                        st["delivered"], st["received"]))
            for key, _ in sel.select(min(left, 1.0)):
                app = key.data
                if not app.readable():
                    raise BenchError("veild closed the %s socket"
                                     % ("Alice" if app is alice else "Bob"))
                app.flush()
        t_end = max(t_deliv.values())
    finally:
        sel.close()
    elapsed = t_end - t_first
    if st["dups"]:
        raise BenchError("veil %s: %d duplicates reached Bob's app"
                         % (mode, st["dups"]))
    us = lambda xs: summarize([x * 1e6 for x in xs])  # noqa: E731
    res = {
        "tool": "veil", "mode": mode, "transport": pair.transport,
        "count": count, "size": size, "text_bytes": text_size + 9,
        "concurrency": conc, "received": st["received"],
        "delivered": st["delivered"], "duplicates": st["dups"],
        "elapsed_s": elapsed, "msgs_per_s": count / elapsed if elapsed else None,
        "oneway_us": us(oneway), "ack_us": us(ack),
    }
    res["latency_us"] = res["oneway_us"] if mode == "latency" \
        else res["ack_us"]
    return res


def status(daemon, verbose=False):
    return daemon.rpc("status", verbose=verbose) if verbose \
        else daemon.rpc("status")


# --- the loop stall probe -------------------------------------------------

def _stall_probe(path, stop, conn):
    """Child process: call status in a tight loop on one connection until
    stop is set; send back every response time (s) and when it ran."""
    lat = []
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        f = s.makefile("rwb")
        req = b'{"jsonrpc":"2.0","id":1,"method":"status"}\n'
        conn.send("up")
        t_begin = time.perf_counter()
        while not stop.is_set():
            t0 = time.perf_counter()
            f.write(req)
            f.flush()
            line = f.readline()
            t1 = time.perf_counter()
            if not line:
                break
            lat.append(t1 - t0)
        conn.send({"lat": lat, "span_s": time.perf_counter() - t_begin})
    except Exception as e:  # reported by the parent
        conn.send({"error": repr(e), "lat": lat})


class StallProbe:
    """A separate process (no GIL shared with the bench) that measures how
    long veild's loop takes to answer status while something else runs."""

    def __init__(self, sockpath):
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        self.stop_ev = ctx.Event()
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_stall_probe,
                                args=(sockpath, self.stop_ev, child))
        self.proc.start()
        if not self.parent.poll(10) or self.parent.recv() != "up":
            self.proc.kill()
            raise BenchError("stall probe did not connect")

    def finish(self):
        self.stop_ev.set()
        if not self.parent.poll(30):
            self.proc.kill()
            raise BenchError("stall probe did not report")
        r = self.parent.recv()
        self.proc.join(5)
        if "error" in r:
            raise BenchError("stall probe: %s" % r["error"])
        ms = [x * 1e3 for x in r["lat"]]
        out = summarize(ms)
        out["calls"] = len(ms)
        out["span_s"] = r["span_s"]
        return out


# --- scale ----------------------------------------------------------------

def mkcontacts(exe, state_dir, n, frame_size, key_file):
    """veil-mkcontacts: n established contacts into a stopped veild's state
    (sealed under the data key key_file unwraps); returns the seconds it
    took."""
    t0 = time.monotonic()
    r = subprocess.run([exe, "-f", str(frame_size), "-o", "2", "-k", key_file,
                        state_dir, str(n)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=1800)
    if r.returncode != 0:
        raise BenchError("veil-mkcontacts %s %d: exit %d: %s"
                         % (state_dir, n, r.returncode, r.stderr.strip()))
    return time.monotonic() - t0


def measure_rotation(daemon, timeout=300.0, poll=0.02):
    """One forced rotation while a StallProbe hammers status: seconds until
    every UPDATE row is in the outbox and until that many frames left, and
    the loop's response times meanwhile (ms)."""
    before = daemon.rpc("status")
    probe = StallProbe(daemon.socket)
    try:
        time.sleep(0.2)	# the probe's idle baseline
        t0 = time.monotonic()
        r = daemon.rpc("rotate", timeout=60.0)
        t_answer = time.monotonic() - t0
        n = r["announced"]
        t_rows = t_frames = None
        deadline = t0 + timeout
        while t_rows is None or t_frames is None:
            if time.monotonic() > deadline:
                raise BenchError("rotation to %d contacts not done in %.0f s"
                                 % (n, timeout))
            s = daemon.rpc("status")
            now = time.monotonic() - t0
            # Contacts that answer (Bob) take their UPDATE out again: the
            # synthetic ones never do, so rows reach n - (real contacts).
            if t_rows is None and s["outbox"] - before["outbox"] >= n - 1:
                t_rows = now
            if t_frames is None and \
                    s["frames"]["out"] - before["frames"]["out"] >= n:
                t_frames = now
            time.sleep(poll)
        time.sleep(0.2)
    finally:
        stall = probe.finish()
    return {"announced": n, "epoch": r["epoch"], "rotate_call_s": t_answer,
            "outbox_rows_s": t_rows, "frames_out_s": t_frames,
            "status_ms": stall}


# --- the raw baseline matrix ----------------------------------------------

RAW_COLUMNS = [
    ("broker", "broker", None),
    ("mode", "mode", None),
    ("conc", "concurrency", None),
    ("window", "window", None),
    ("count", "count", None),
    ("msg/s", "msgs_per_s", "%.0f"),
    ("p50 us", "p50", "%.1f"),
    ("p90 us", "p90", "%.1f"),
    ("p99 us", "p99", "%.1f"),
    ("max us", "max", "%.1f"),
    ("latency", "latency_kind", None),
]


def raw_matrix(exe, windows, size, tput_count, lat_count, nodelay_too,
               ack_pipelined, timeout, repeat):
    """bench-raw in every mode and window on one fresh broker per broker
    configuration; returns a list of result rows (the median run by msg/s
    when repeat > 1, with every run's msg/s kept in "runs_msgs_per_s")."""
    rows = []
    configs = [("default", False)] + ([("nodelay", True)] if nodelay_too
                                      else [])
    for label, nodelay in configs:
        with tempfile.TemporaryDirectory(prefix="bench-raw-") as tmp:
            with start_mosquitto(tmp, tcp_nodelay=nodelay) as m:
                plan = []
                for w in windows:
                    plan.append(("throughput", tput_count, w, None))
                    plan.append(("latency", lat_count, w, None))
                    plan.append(("ack", lat_count, w, None))
                    if ack_pipelined:
                        plan.append(("ack", tput_count, w, 0))
                for mode, count, w, conc in plan:
                    runs = [run_bench_raw(exe, m.uri, mode, count, size, w,
                                          conc, nodelay, timeout)
                            for _ in range(repeat)]
                    runs.sort(key=lambda r: r["msgs_per_s"])
                    res = dict(runs[len(runs) // 2])
                    res["runs_msgs_per_s"] = [r["msgs_per_s"] for r in runs]
                    res["broker"] = label
                    res.update({k: res["latency_us"][k]
                                for k in ("p50", "p90", "p99", "max")})
                    res["uri"] = "tcp://127.0.0.1:PORT"
                    res["argv"] = ["tcp://127.0.0.1:PORT" if a == m.uri
                                   else a for a in res["argv"]]
                    rows.append(res)
                    print("  %s" % " ".join(res["argv"]), file=sys.stderr)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Raw broker baseline: bench-raw on a loopback mosquitto "
        "in every mode and window.")
    ap.add_argument("--bench-raw", default="tools/bench-raw",
                    help="the bench-raw binary (default %(default)s)")
    ap.add_argument("--windows", default="10,64,100")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--count", type=int, default=20000,
                    help="frames in throughput mode (default %(default)s)")
    ap.add_argument("--latency-count", type=int, default=2000,
                    help="frames in latency and ack modes "
                    "(default %(default)s)")
    ap.add_argument("--nodelay", action="store_true",
                    help="also run with TCP_NODELAY on broker and clients")
    ap.add_argument("--ack-pipelined", action="store_true",
                    help="also run ack mode with --concurrency 0 and --count")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per cell; the median by msg/s is shown")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        windows = [int(w) for w in a.windows.split(",")]
    except ValueError:
        ap.error("--windows: comma-separated integers")
    if not os.access(a.bench_raw, os.X_OK):
        ap.error("--bench-raw: %s is not an executable" % a.bench_raw)
    try:
        rows = raw_matrix(a.bench_raw, windows, a.size, a.count,
                          a.latency_count, a.nodelay, a.ack_pipelined,
                          a.timeout, max(1, a.repeat))
    except BenchError as e:
        print("bench_lib: %s" % e, file=sys.stderr)
        return 1
    if a.json:
        print_json({"machine": machine_info(), "raw": rows})
    else:
        mi = machine_info()
        print("machine: %d cpus, %s, %s" % (mi["nproc"], mi["cpu"],
                                             mi["kernel"]))
        print_table(rows, RAW_COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
