#!/usr/bin/env python3
"""test_observe.py: tools/veil-observe on synthetic mosquitto logs; prints TAP."""

import importlib.machinery
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile

TOP = os.environ.get("VEIL_TOP_SRCDIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..")
TOOL = os.path.join(TOP, "tools", "veil-observe")
T0 = 1795763700
TMP = tempfile.mkdtemp(prefix="test_observe.")

results = []


def tap(ok, name, diag=""):
    results.append(bool(ok))
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), name))
    if not ok and diag:
        for line in str(diag).rstrip().splitlines()[-25:]:
            print("# " + line)
    sys.stdout.flush()


def run(args, log=None, name="log"):
    """Run the tool; log is the text of a log file passed as the first argument."""
    argv = [sys.executable, TOOL]
    if log is not None:
        path = os.path.join(TMP, name)
        with open(path, "wb") as fh:
            fh.write(log.encode("utf-8", "surrogateescape") if isinstance(log, str) else log)
        argv.append(path)
    r = subprocess.run(argv + args, capture_output=True, text=True, timeout=30)
    return r


def report(log, args=(), name="log"):
    r = run(["--json"] + list(args), log, name)
    try:
        return r, json.loads(r.stdout)
    except ValueError:
        return r, None


# --- writing logs in mosquitto 2.0's exact formats --------------------------------


class Log:
    def __init__(self):
        self.lines = ["%d: mosquitto version 2.0.11 starting" % T0,
                      "%d: Config loaded from /etc/mosquitto/test.conf." % T0,
                      "%d: Opening ipv4 listen socket on port 1883." % T0,
                      "%d: mosquitto version 2.0.11 running" % T0]
        self.mid = {}

    def add(self, t, text):
        if isinstance(t, float):   # a stamp finer than a second
            self.lines.append("%.6f: %s" % (T0 + t, text))
        else:
            self.lines.append("%d: %s" % (T0 + t, text))

    def connect(self, t, cid, addr, clean=1, proto=5):
        self.add(t, "New connection from %s on port 1883." % addr)
        self.add(t, "New client connected from %s as %s (p%d, c%d, k30)." %
                 (addr, cid, proto, clean))
        self.add(t, "No will message specified.")
        self.add(t, "Sending CONNACK to %s (0, 0)" % cid)

    def subscribe(self, t, cid, topic, qos=1):
        self.add(t, "Received SUBSCRIBE from %s" % cid)
        self.add(t, "\t%s (QoS %d)" % (topic, qos))
        self.add(t, "%s %d %s" % (cid, qos, topic))
        self.add(t, "Sending SUBACK to %s" % cid)

    def unsubscribe(self, t, cid, topic):
        self.add(t, "Received UNSUBSCRIBE from %s" % cid)
        self.add(t, "\t%s" % topic)
        self.add(t, "%s %s" % (cid, topic))
        self.add(t, "Sending UNSUBACK to %s" % cid)

    def publish(self, t, cid, topic, size, to=()):
        m = self.mid[cid] = self.mid.get(cid, 0) + 1
        self.add(t, "Received PUBLISH from %s (d0, q1, r0, m%d, '%s', ... (%d bytes))" %
                 (cid, m, topic, size))
        for sub in to:
            self.add(t, "Sending PUBLISH to %s (d0, q1, r0, m%d, '%s', ... (%d bytes))" %
                     (sub, m, topic, size))
        self.add(t, "Sending PUBACK to %s (m%d, rc0)" % (cid, m))
        for sub in to:
            self.add(t, "Received PUBACK from %s (Mid: %d, RC:0)" % (sub, m))

    def ping(self, t, cid):
        self.add(t, "Received PINGREQ from %s" % cid)
        self.add(t, "Sending PINGRESP to %s" % cid)

    def disconnect(self, t, cid):
        self.add(t, "Received DISCONNECT from %s" % cid)
        self.add(t, "Client %s disconnected." % cid)

    def text(self):
        return "\n".join(self.lines) + "\n"


def fig1_log():
    """The paper's Fig. 1: fixed client IDs, per-user topics, plaintext sizes."""
    g = Log()
    g.connect(1, "alice", "10.0.0.1:40001", proto=4)
    g.connect(2, "bob", "10.0.0.2:50001", proto=4)
    g.subscribe(3, "alice", "chat/bob")
    g.subscribe(3, "bob", "chat/alice")
    g.publish(10, "alice", "chat/alice", 5, to=["bob"])
    g.publish(12, "bob", "chat/bob", 17, to=["alice"])
    g.publish(20, "alice", "chat/alice", 230, to=["bob"])
    g.publish(21, "alice", "chat/alice", 5, to=["bob"])
    g.ping(40, "bob")
    g.disconnect(60, "alice")
    g.disconnect(61, "bob")
    return g.text()


# Random-looking identifiers as veild would use them (base32, 128 bits).
A = ["q7h2m4xkp3zr5tfw6ycn8bvdja", "e5rt9kw2nq8vmzc4xh7py3gfsb", "w3dk8fy6ta2pqe9hnu4zmc5vxr"]
B = ["n8vc3xz5qw2mkt7rhy4pe6gdfa", "t2yh6pm9ck4wz8fqnx3rb5vjea", "f9ke4rb7xq3nyd2wmt6ph8zcua"]
IA = ["vmq3k8z2hx7ptc4nyr5fw6bjde", "zr7w2q9xk4pmy8hcn3td6fbv5e", "k4n8z3fw7qy2hmx5pr9tc6vbda"]
IB = ["p6x2nr8kz4wq7hmy3tc5fv9bje", "h3t7yq2xn8wkz4mp5rf6cv9dbe", "c8z5q3wn7kx2hy4rtp6mf9vdbe"]


def veil_log(alice_ip="10.0.0.1", bob_ip="10.0.0.2"):
    """Three rotations, make-before-break, one frame size, fresh inboxes each epoch."""
    g = Log()
    for k in range(3):
        base = k * 100
        g.connect(base + 1, A[k], "%s:%d" % (alice_ip, 40001 + k), clean=0)
        g.subscribe(base + 1, A[k], IA[k])
        g.connect(base + 6, B[k], "%s:%d" % (bob_ip, 50001 + k), clean=0)
        g.subscribe(base + 6, B[k], IB[k])
        if k:
            # The old IDs leave after the grace period, within this epoch.
            g.disconnect(base + 8, A[k - 1])
            g.disconnect(base + 9, B[k - 1])
        for i in range(4):
            t = base + 20 + 15 * i
            g.publish(t, A[k], IB[k], 1024, to=[B[k]])
            g.publish(t + 2, B[k], IA[k], 1024, to=[A[k]])
    g.disconnect(290, A[2])
    g.disconnect(291, B[2])
    return g.text()


def reuse_log():
    """A rotated client ID resubscribes the old inbox: the operator links the two."""
    g = Log()
    g.connect(0, "xoldxoldxoldxold", "10.0.0.7:40000")
    g.subscribe(1, "xoldxoldxoldxold", "inbox/zz9")
    g.disconnect(50, "xoldxoldxoldxold")
    g.connect(200, "ynewynewynewynew", "10.0.0.8:40000")
    g.subscribe(201, "ynewynewynewynew", "inbox/zz9")
    g.subscribe(201, "ynewynewynewynew", "inbox/fresh")
    g.publish(205, "zsendzsendzsend", "inbox/zz9", 1024, to=["ynewynewynewynew"])
    g.disconnect(260, "ynewynewynewynew")
    return g.text()


def edges(rep):
    out = set()
    for e in rep["epochs"]:
        for g in e["edges"]:
            out.add((e["index"], g["from"], g["to"]))
    return out


def ident(rep, kind, name):
    for d in rep["identifiers"]:
        if d["kind"] == kind and d["name"] == name:
            return d
    return None


# --- the tests -------------------------------------------------------------------


def test_fig1():
    r, rep = report(fig1_log())
    tap(r.returncode == 0 and rep is not None, "Fig. 1 log parses, exit 0", r.stderr)
    if rep is None:
        return
    sizes = {s["size"]: s["count"] for s in rep["sizes"]}
    tap(sizes == {5: 2, 17: 1, 230: 1}, "Fig. 1: every distinct size with its count",
        sizes)
    pairs = {(a, b) for _, a, b in edges(rep)}
    tap(pairs == {("alice", "bob"), ("bob", "alice")},
        "Fig. 1: graph alice -> bob and bob -> alice", pairs)
    n = sum(g["messages"] for e in rep["epochs"] for g in e["edges"]
            if (g["from"], g["to"]) == ("alice", "bob"))
    tap(n == 3, "Fig. 1: alice -> bob counted three times", n)
    a, t = ident(rep, "client", "alice"), ident(rep, "topic", "chat/alice")
    tap(a and a["first"] == T0 + 1 and a["last"] == T0 + 60 and a["life"] == 59,
        "Fig. 1: alice first/last sighting and lifetime", a)
    tap(t and t["publishers"] == {"alice": 3} and t["subscribers"] == ["bob"],
        "Fig. 1: topic chat/alice with its publisher and subscriber", t)
    tap(rep["unknown"] == 0 and rep["malformed"] == 0, "Fig. 1: every line understood",
        rep["unknown_samples"])
    r = run(["--expect-size", "1024"], fig1_log())
    tap(r.returncode == 3 and "other sizes seen" in r.stdout,
        "--expect-size on varying sizes: exit 3", r.stdout + r.stderr)
    r = run([], fig1_log())
    tap(r.returncode == 0 and "alice -> bob" in r.stdout and "3 distinct sizes" in r.stdout,
        "human summary names the edge and the sizes", r.stdout)


def test_veil():
    log = veil_log()
    r, rep = report(log, ["--ignore-ip"])
    tap(rep is not None and [s["size"] for s in rep["sizes"]] == [1024],
        "veil-like: one payload size", r.stdout[-500:] + r.stderr)
    if rep is None:
        return
    gen = {c: k for k, c in enumerate(A)}
    gen.update({c: k for k, c in enumerate(B)})
    bad = [(e, a, b) for e, a, b in edges(rep) if gen.get(a) != gen.get(b)]
    pairs = {(a, b) for _, a, b in edges(rep)}
    tap(not bad and len(pairs) == 6,
        "veil-like: edges only within one generation of IDs", (bad, pairs))
    tap(rep["chains"] == [], "veil-like without source IPs: nothing links across epochs",
        json.dumps(rep["chains"], indent=1))
    tap(len(rep["epochs"]) >= 6 and all(len(e["clients"]) <= 4 for e in rep["epochs"]),
        "veil-like: epochs split where the connected set changes",
        [(e["start"] - T0, e["clients"]) for e in rep["epochs"]])
    r = run(["--expect-size", "1024", "--max-life", "120"], log)
    tap(r.returncode == 0, "--expect-size 1024 --max-life 120: exit 0", r.stdout + r.stderr)
    r, rep2 = report(log, ["--max-life", "90"])
    flagged = sorted(d["name"] for d in (rep2 or {}).get("too_long_lived", []))
    tap(r.returncode == 3 and flagged == sorted(A[:2] + B[:2]),
        "--max-life 90: exit 3, the client IDs living 107 s flagged, not the last (89 s)",
        (r.returncode, flagged))
    # With source addresses, the operator ties each user's IDs together, but
    # never alice's to bob's: they come from different hosts.
    r, rep = report(log)
    chains = [set(c["members"]) for c in (rep or {}).get("chains", [])]
    want = [{"client:" + c for c in A}, {"client:" + c for c in B}]
    tap(sorted(map(sorted, chains)) == sorted(map(sorted, want)),
        "veil-like with IPs: one chain per host, never across", chains)
    kinds = {ln["kind"] for ln in (rep or {}).get("links", [])}
    tap(kinds == {"overlap-same-ip"}, "make-before-break shows as overlapping lifetimes",
        kinds)
    # Same IP for both: everyone is linked, and the evidence says why.
    r, rep = report(veil_log("127.0.0.1", "127.0.0.1"))
    ev = [ln["evidence"] for ln in (rep or {}).get("links", [])]
    tap(rep and len(rep["chains"]) == 1 and all("127.0.0.1" in e for e in ev),
        "one shared IP links all IDs, evidence names the IP", ev[:3])


def test_reuse():
    r, rep = report(reuse_log(), ["--ignore-ip"])
    links = [ln for ln in (rep or {}).get("links", []) if ln["kind"] == "shared-topic"]
    tap(len(links) == 1 and {links[0]["a"], links[0]["b"]} ==
        {"client:xoldxoldxoldxold", "client:ynewynewynewynew"}
        and "inbox/zz9" in links[0]["evidence"],
        "topic reused by a new client ID: chain with the topic as evidence", rep and rep["links"])
    members = set((rep or {"chains": [{"members": []}]})["chains"][0]["members"]) \
        if rep and rep["chains"] else set()
    tap({"client:xoldxoldxoldxold", "client:ynewynewynewynew", "topic:inbox/zz9",
         "topic:inbox/fresh"} <= members,
        "the chain also ties the new inbox to the old one", members)
    tap(rep and ("zsendzsendzsend", "ynewynewynewynew") in
        {(g["from"], g["to"]) for e in rep["epochs"] for g in e["edges"]},
        "a client seen without its connect line still counts as a publisher", rep and rep["epochs"])
    r = run([], reuse_log())
    tap(r.returncode == 0 and "shared-topic" in r.stdout and "inbox/zz9" in r.stdout,
        "human output prints the chain and its evidence", r.stdout)
    # (c) timing: X leaves, Y arrives 2 s later from the same IP.
    g = Log()
    g.connect(0, "gone1", "10.1.1.1:1000")
    g.disconnect(30, "gone1")
    g.connect(32, "born2", "10.1.1.1:1001")
    g.disconnect(60, "born2")
    g.connect(100, "late3", "10.1.1.1:1002")
    r, rep = report(g.text())
    kinds = {(ln["a"], ln["b"], ln["kind"]) for ln in (rep or {}).get("links", [])}
    tap(kinds == {("client:gone1", "client:born2", "timing-same-ip")},
        "timing link within --link-window only", kinds)
    r, rep = report(g.text(), ["--link-window", "1"])
    tap(rep is not None and rep["links"] == [], "--link-window 1 drops the 2 s gap",
        rep and rep["links"])
    # (d) a stored session that expires long after its connection closed
    # (a daemon stopped with its session left) ends no connection of its own.
    e = Log()
    e.connect(0, "stored1", "10.1.1.1:1000", clean=0)
    e.add(0, "Client stored1 closed its connection.")
    e.add(70, "Expiring client stored1 due to timeout.")
    r, rep = report(e.text())
    ss = [(x["client"], x["start"], x["end"]) for x in (rep or {}).get("sessions", [])]
    tap(len(ss) == 1 and ss[0][1] == ss[0][2],
        "a session expiry after the close is not a second connection (one session, 0 s)", ss)


def test_garbage():
    clean = fig1_log()
    lines = clean.splitlines()
    junk = ["", "garbage", "\x00\x01\x02 binary", "1795763712: ",
            "1795763712: Received PUBLISH from alice (d0, q1",
            "1795763712: Received PUBLISH from bob (d0, q1, r0, m9, 'x', ... (lots bytes))",
            "1795763712: \tstray continuation",
            "1795763712: Client  disconnected.", "99999999999999999999999: x",
            "2026-01-02T03:04:05: Something new in a future mosquitto"]
    mixed = lines[:10] + junk + lines[10:]
    r, rep = report("\n".join(mixed) + "\n\udcff\udcfe\n")
    tap(r.returncode == 0 and rep is not None, "garbage lines: no crash, exit 0", r.stderr)
    if rep:
        _, base = report(clean)
        tap(rep["sizes"] == base["sizes"] and edges(rep) == edges(base),
            "garbage lines do not change the findings", (rep["sizes"], base["sizes"]))
        tap(rep["unknown"] >= 4 and rep["malformed"] == 2,
            "unknown and malformed lines are counted",
            (rep["unknown"], rep["malformed"], rep["unknown_samples"]))
    r = run(["--strict"], "\n".join(mixed) + "\n")
    tap(r.returncode == 2 and (os.path.join(TMP, "log") + ":12:") in r.stderr,
        "--strict: exit 2 naming file and line", r.stderr)
    r = run([], "hello\nworld\n")
    tap(r.returncode == 2 and ":1: not a mosquitto log" in r.stderr,
        "a file that is not a mosquitto log: exit 2, file:line", r.stderr)
    r = run([], None)
    tap(r.returncode == 2, "no input: usage error, exit 2", r.stderr)
    r = run([os.path.join(TMP, "missing")])
    tap(r.returncode == 2 and "missing" in r.stderr and "Traceback" not in r.stderr,
        "missing file: exit 2 with its name", r.stderr)
    r = run(["--max-life", "soon"], clean)
    tap(r.returncode == 2, "bad option value: exit 2", r.stderr)
    for host in ("192.0.2.1:1883", "example.org:1883", "localhost:1883"):
        r = run(["--live", host, "--duration", "0"])
        tap(r.returncode == 2 and "only 127.0.0.1 and ::1" in r.stderr,
            "--live %s refused" % host, r.stderr)
    # Mutations of a real-format log never crash the tool.
    rng = random.Random(4)
    text = veil_log()
    crashes = []
    for i in range(12):
        b = bytearray(text.encode())
        for _ in range(40):
            op, at = rng.randrange(3), rng.randrange(len(b))
            if op == 0:
                b[at] = rng.randrange(256)
            elif op == 1:
                del b[at:at + rng.randrange(1, 30)]
            else:
                b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 10)))
        r = run(["--json", "--max-life", "50"], bytes(b), name="mut")
        if r.returncode not in (0, 3) or "Traceback" in r.stderr:
            crashes.append((i, r.returncode, r.stderr[-300:]))
    tap(not crashes, "12 mutated logs: never a crash", crashes)


def test_matcher():
    """The MQTT filter matcher, loaded from the tool itself."""
    loader = importlib.machinery.SourceFileLoader("veil_observe", TOOL)
    spec = importlib.util.spec_from_loader("veil_observe", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    cases = [("a/#", "a", True), ("a/#", "a/b/c", True), ("a/+", "a/b", True),
             ("a/+", "a/b/c", False), ("+/b", "a/b", True), ("#", "$SYS/x", False),
             ("a/b", "a/c", False), ("$share/g/a/+", "a/x", True), ("+", "a/b", False)]
    bad = [c for c in cases if mod.topic_matches(c[0], c[1]) != c[2]]
    tap(not bad, "topic filter matching (+, #, $, $share)", bad)
    g = Log()
    g.connect(0, "watcher", "10.0.0.9:1")
    g.subscribe(0, "watcher", "chat/#")
    g.connect(1, "talker", "10.0.0.8:1")
    g.publish(2, "talker", "chat/x", 9, to=["watcher"])
    _, rep = report(g.text())
    tap(rep and edges(rep) and {(a, b) for _, a, b in edges(rep)} == {("talker", "watcher")},
        "a wildcard subscriber is a receiver", rep and rep["epochs"])


def shared_epochs_log():
    """Three users, epochs of 10 s shared by all: each new client ID
    connects in the 2 s before a boundary and subscribes 8 topics, the old
    one leaves in the 2 s after it.  User a's new CONNECT always comes
    0.1 ms after a PINGREQ of its old client ID (one process, one client
    library thread); the others' times are independent."""
    rng = random.Random(7)
    g = Log()
    users = ("a", "b", "c")
    cid = {(u, k): "%s%d%s" % (u, k, "x" * 20) for u in users for k in range(5)}
    for k in range(5):
        b = 10.0 * k
        for u in users:
            if k == 0:
                at = 0.5 + 0.1 * users.index(u)
            elif u == "a":
                at = b - 0.7
                g.ping(at - 0.0001, cid[(u, k - 1)])
            else:
                at = b - rng.uniform(0.1, 1.9)
            g.connect(at, cid[(u, k)], "10.9.9.%d:%d" % (k, 4000 + users.index(u)))
            for i in range(8):
                g.subscribe(at + 0.001 * (i + 1), cid[(u, k)], "t%s%d_%d" % (u, k, i))
            if k:
                g.disconnect(b + rng.uniform(0.1, 1.9), cid[(u, k - 1)])
        for u, v in (("a", "b"), ("b", "c")):
            g.publish(b + 5.0, cid[(u, k)], "t%s%d_0" % (v, k), 1024, to=[cid[(v, k)]])
    g.lines[4:] = sorted(g.lines[4:], key=lambda l: float(l.split(":")[0]))
    return g.text(), cid


def test_successors():
    log, cid = shared_epochs_log()
    r, rep = report(log, ["--successors", "--ignore-ip"])
    sc = (rep or {}).get("successors") or {}
    tap(sc.get("epoch_length") == 10 and sc.get("epoch_length_inferred"),
        "--successors infers the shared epoch length (10 s)", sc.get("epoch_length"))
    groups = sc.get("boundaries", [])
    tap(len(groups) == 4 and all(len(g["new"]) == 3 and len(g["old"]) == 3 for g in groups),
        "four boundaries, three client IDs leave and three arrive at each",
        [(g["boundary"] - T0, len(g["new"]), len(g["old"])) for g in groups])
    co = sc.get("guesses", {}).get("activity", {}).get(
        "control packets within 0.5ms of each other", {})
    tap(all(co.get(cid[("a", k)]) == cid[("a", k - 1)] for k in range(1, 5)),
        "a CONNECT 0.1 ms after the old client's PINGREQ gives it away", co)
    subs = sc.get("guesses", {}).get("subscriptions", {})
    tap(subs and all(len(g) == 12 for g in subs.values()),
        "every rule guesses for every new client ID", {k: len(v) for k, v in subs.items()})
    r, rep = report(log, ["--successors", "--epoch-length", "10"])
    tap(rep and rep["successors"]["epoch_length"] == 10 and
        not rep["successors"]["epoch_length_inferred"], "--epoch-length is taken as given",
        rep and rep["successors"]["epoch_length"])
    r = run(["--successors"], log)
    tap(r.returncode == 0 and "5. Successors at shared epoch boundaries" in r.stdout and
        "epoch length 10s (inferred" in r.stdout, "human output has the successors section",
        r.stdout[-800:])
    loader = importlib.machinery.SourceFileLoader("veil_observe", TOOL)
    spec = importlib.util.spec_from_loader("veil_observe", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    tap(mod.assignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]]) == {0: 1, 1: 0, 2: 2} and
        mod.assignment([[1, 2], [2, 1], [0, 0]]) == {2: 0, 1: 1},
        "assignment: minimum cost, rectangular", mod.assignment([[1, 2], [2, 1], [0, 0]]))


def test_live_unlinkable():
    """A short level 2 run of two users through tools/veil-metadata: no
    topic is shared by two client IDs of a user (docs/metadata.md)."""
    top = os.environ.get("VEIL_TOP_BUILDDIR")
    tool = os.path.join(TOP, "tools", "veil-metadata")
    missing = [w for w, ok in (
        ("VEIL_TOP_BUILDDIR", top and os.access(os.path.join(top, "daemon", "veild"), os.X_OK)),
        ("mosquitto", os.access(os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto"), os.X_OK)),
        ("stdbuf", any(os.access(os.path.join(d, "stdbuf"), os.X_OK)
                       for d in os.environ.get("PATH", "").split(":"))))
        if not ok]
    if missing:
        print("ok %d # SKIP live level 2 run: no %s" % (len(results) + 1, ", ".join(missing)))
        results.append(True)
        return
    r = subprocess.run([sys.executable, tool, "--builddir", top, "--users", "2",
                        "--scenarios", "L2", "--duration", "20", "--gap", "4", "--drain", "20",
                        "--json", "-q"], capture_output=True, text=True, timeout=150)
    try:
        res = json.loads(r.stdout)["scenarios"]["L2"]
    except (ValueError, KeyError):
        tap(False, "veil-metadata --users 2 --scenarios L2 ran", r.stderr[-2000:])
        return
    st = res["shared_topics"]
    tap(res["successive_pairs"] >= 2, "two users rotated", res["successive_pairs"])
    tap(all(st[m]["successive_linked_by_path"] == 0 for m in
            ("subscriptions", "publishes", "either")),
        "level 2: no shared topic links two client IDs of a user",
        json.dumps({m: st[m]["evidence"] for m in ("subscriptions", "publishes")}))
    un = res["identifiers"]["unattributed"]
    tap(not un["client_ids"] and not un["topics"],
        "every client ID and topic in the log was attributed", un)
    tap(set(res["cost"]["subscriptions_per_chat_connection"]) == {"8"},
        "every chat connection starts with 8 subscriptions (padded)",
        res["cost"]["subscriptions_per_chat_connection"])
    d = res["delivery"]
    tap(d["sent"] and d["delivered_once"] == d["sent"] and not d["duplicates"] and
        not any(d["outbox_at_end"].values()), "every message once, outboxes empty", d)


def main():
    for t in (test_fig1, test_veil, test_reuse, test_garbage, test_matcher, test_successors,
              test_live_unlinkable):
        try:
            t()
        except Exception as e:  # a crash in one group must not hide the others
            tap(False, "%s raised %r" % (t.__name__, e))
    print("1..%d" % len(results))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
