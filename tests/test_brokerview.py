#!/usr/bin/env python3
"""test_brokerview.py: what the broker sees (mosquitto log_type all, or prosody's debug log and storage): no names, no text, one frame size, random IDs; prints TAP."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import wait_for  # noqa: E402

# Distinctive, so that a hit in the log cannot be a coincidence.
NAME_A = "Zelda Quokkafeather"
NAME_B = "Yorick Wombatstone"
TEXTS = ["secret rendezvous at the lighthouse",
         "plaintext-canary-7f3a9b",
         "Grüße aus Übersee \U0001F511",
         "longcanary " + "the quick brown fox jumps over the lazy dog " * 300]
FRAME = 1024
# Epochs of 6 s (docs/protocol.md 5): the setup crosses a boundary.
L, GRACE = 6, 2
FAST = {"mean": "6s", "min": "3s", "max": "12s", "grace": "2s"}
CID_RE = re.compile(r"^[0-9A-Za-z]{22}$")
TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


def ids(d):
    return d.rpc("status", verbose=True)["ids"]


def setup(w):
    # On XMPP the operator's view includes prosody's item store (on disk)
    # and every stanza (stanza_debug).
    m = w.broker(log_all=True, storage="internal", stanza_debug=True) \
        if w.transport == "xmpp" else w.broker(log_all=True)
    # Neutral directory names: the paths show up in veild's own log.
    a = w.daemon(NAME_A, m, dirname="a", accept="ask", frames={"size": FRAME},
                 rotation=FAST)
    b = w.daemon(NAME_B, m, dirname="b", frames={"size": FRAME}, rotation=FAST)
    veil.pair(a, b)
    sent = []
    for i, t in enumerate(TEXTS):
        src, dst, to = (a, b, NAME_B) if i % 2 == 0 else (b, a, NAME_A)
        src.ctl_ok("send", to, input=t.encode())
        sent.append((dst, t))
    wait_for(lambda: a.contacts()[NAME_B]["queued"] == 0 and
             b.contacts()[NAME_A]["queued"] == 0, 15)
    # rotate: a new inbox seed for the contact, by UPDATE (confirmed when
    # the outboxes are empty again); the client IDs change at the boundary.
    rotated = [d.ctl_ok("rotate") for d in (a, b)]
    wait_for(lambda: a.contacts()[NAME_B]["queued"] == 0 and
             b.contacts()[NAME_A]["queued"] == 0, 15)
    # Then across an epoch boundary: everything the daemons hold in the
    # middle of an epoch (the next connection comes in the last grace),
    # and after the old connections have left.
    wait_for(lambda: GRACE + 0.3 <= time.time() % L <= L - GRACE - 0.7, 2 * L, 0.02)
    before = {d.name: ids(d) for d in (a, b)}
    boundary = (before[NAME_A]["epoch"] + 1) * L
    wait_for(lambda: time.time() >= boundary + GRACE + 0.5, L + GRACE + 2)
    after = {d.name: ids(d) for d in (a, b)}
    mark_t = time.time()
    # After the boundary: traffic on the new connections, both ways.
    a.ctl_ok("send", NAME_B, "after rotation " + TEXTS[1])
    b.ctl_ok("send", NAME_A, "after rotation " + TEXTS[0])
    got = {a.name: [], b.name: []}

    def all_in():
        for d in (a, b):
            got[d.name].extend(m["text"] for m in d.receive_all())
        return len(got[a.name]) + len(got[b.name]) == len(TEXTS) + 2
    wait_for(all_in, 15)
    # Every UPDATE acknowledged and every message acknowledged: the log is complete.
    wait_for(lambda: a.contacts()[NAME_B]["queued"] == 0 and
             b.contacts()[NAME_A]["queued"] == 0, 15)
    time.sleep(0.5)
    return {"m": m, "a": a, "b": b, "got": got, "mark_t": mark_t, "rotated": rotated,
            "before": before, "after": after, "boundary": boundary,
            "xmpp": veil.broker_transport(m) == "xmpp"}


# XMPP: the same promises, from prosody's debug log and its storage (what
# the server's operator has); node names play the topics, the anonymous
# JIDs the client IDs (veil.xmpp_observe).

def x_sizes(tap, w, x):
    r = veil.observe(x["m"], expect_size=FRAME)
    tap.ok(r["publishes"] > 10 and not r["unexpected_sizes"],
           "one payload length across all %d stored items: %r"
           % (r["publishes"], [s["size"] for s in r["sizes"]]), repr(r["sizes"]))


def x_no_plaintext(tap, w, x):
    m = x["m"]
    hits = [n for n in NEEDLES if n.lower() in m.log().lower()]
    tap.ok(not hits, "no display name and no message text in prosody's log", repr(hits))
    blob = b""
    for root, _, files in os.walk(m.data):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                blob += fh.read()
    hits = [n for n in NEEDLES if n.encode() in blob]
    tap.ok(blob and not hits, "nor in its storage (%d bytes)" % len(blob), repr(hits))


def x_client_ids(tap, w, x):
    r = veil.observe(x["m"])
    jids = [i["name"] for i in r["identifiers"] if i["kind"] == "client"]
    tap.ok(len(jids) >= 4, "every connection got its own server-assigned JID (%d)"
           % len(jids), repr(jids))
    for d in (x["a"], x["b"]):
        hits = [j for j in jids if d.name.split()[0].lower() in j.lower()]
        tap.ok(not hits, "no JID contains %s's name" % d.name, repr(hits))


def x_topics(tap, w, x):
    r = veil.observe(x["m"])
    nodes = {i["name"] for i in r["identifiers"] if i["kind"] == "topic"}
    bad = [t for t in nodes if not TOPIC_RE.match(t)]
    tap.ok(len(nodes) >= 3 and not bad, "node names (%d) are 22 characters of "
           "[A-Za-z0-9_-]" % len(nodes), repr(bad or nodes))
    prefix = os.path.commonprefix(sorted(nodes)) if nodes else ""
    tap.ok(len(nodes) >= 3 and prefix == "", "no prefix shared by all nodes",
           repr((prefix, sorted(nodes))))


def publishes(log):
    """(direction, client id, topic, payload bytes) for each PUBLISH line."""
    return re.findall(r"(Received|Sending) PUBLISH (?:from|to) (\S+) \(d\d, q\d, r\d, m\d+, "
                      r"'([^']*)', \.\.\. \((\d+) bytes\)\)", log)


def t_traffic(tap, w, x):
    got = x["got"]
    want_b = [TEXTS[0], TEXTS[2], "after rotation " + TEXTS[1]]
    want_a = [TEXTS[1], TEXTS[3], "after rotation " + TEXTS[0]]
    tap.ok(sorted(got[NAME_B]) == sorted(want_b) and sorted(got[NAME_A]) == sorted(want_a),
           "the messages (one of 13 KB, some after a rotation) arrived",
           repr({k: [t[:40] for t in v] for k, v in got.items()}))


def t_sizes(tap, w, x):
    log = x["m"].log()
    pubs = publishes(log)
    lines = len(re.findall(r"PUBLISH (?:from|to) ", log))
    sizes = sorted({int(p[3]) for p in pubs})
    tap.ok(lines > 20 and len(pubs) == lines,
           "every PUBLISH line in the log parsed (%d)" % lines,
           "\n".join(l for l in log.splitlines() if "PUBLISH" in l and
                     not publishes(l))[:2000])
    tap.ok(sizes == [FRAME], "one payload length across all PUBLISHes: %r" % sizes,
           repr(sizes))


def t_no_plaintext(tap, w, x):
    m = x["m"]
    log = m.log()
    needles = NEEDLES
    hits = [n for n in needles if n.lower() in log.lower()]
    tap.ok(not hits, "no display name and no message text in the broker log", repr(hits))
    # What the broker keeps on disk is its view too.
    m.stop()
    blob = b""
    for root, _, files in os.walk(m.dir):
        for f in files:
            if f.endswith(".db"):
                with open(os.path.join(root, f), "rb") as fh:
                    blob += fh.read()
    m.start()
    hits = [n for n in needles if n.encode() in blob]
    tap.ok(blob and not hits, "nor in its persistence file (%d bytes)" % len(blob),
           repr(hits))


NEEDLES = [NAME_A, NAME_B, "Zelda", "Wombat"] + [t[:24] for t in TEXTS] + \
    ["canary", "lighthouse", "Übersee", "quick brown"]


def t_daemon_logs(tap, w, x):
    # Not the broker's view, but the same promise: veild's log at debug
    # level (-v) holds no display name and no message text.
    for d in (x["a"], x["b"]):
        log = d.log().lower()
        hits = [n for n in NEEDLES if n.lower() in log]
        tap.ok(not hits, "veild -v log of %s: no names, no texts" % d.name, repr(hits))


def t_client_ids(tap, w, x):
    log = x["m"].log()
    cids = set(re.findall(r"New client connected from \S+ as (\S+) \(", log))
    cids |= {p[1] for p in publishes(log)}
    bad = [c for c in cids if not CID_RE.match(c)]
    tap.ok(len(cids) >= 2 and not bad,
           "client IDs (%d) are 22 characters of [0-9A-Za-z]" % len(cids), repr(bad or cids))
    for d in (x["a"], x["b"]):
        pid_hits = [c for c in cids if d.name.split()[0].lower() in c.lower()]
        tap.ok(not pid_hits, "no client ID contains %s's name" % d.name, repr(pid_hits))


def t_topics(tap, w, x):
    log = x["m"].log()
    topics = {p[2] for p in publishes(log)}
    topics |= set(re.findall(r"^\S+: \t(\S+) \(QoS \d\)$", log, re.M))
    topics |= set(re.findall(r"^\S+: \t(\S+)$", log, re.M))
    bad = [t for t in topics if not TOPIC_RE.match(t)]
    tap.ok(len(topics) >= 3 and not bad,
           "topics (%d) are 22 characters of [A-Za-z0-9_-], no '/' or wildcard"
           % len(topics), repr(bad or topics))
    prefix = os.path.commonprefix(sorted(topics)) if topics else ""
    tap.ok(len(topics) >= 3 and prefix == "",
           "no prefix shared by all topics", repr((prefix, sorted(topics))))
    # Topics and client IDs are unrelated strings.
    cids = set(re.findall(r"New client connected from \S+ as (\S+) \(", log))
    tap.ok(not (topics & cids), "no topic doubles as a client ID", repr(topics & cids))
    subs = set(re.findall(r"^\S+: \t(\S+) \(QoS \d\)$", log, re.M))
    tap.ok(subs and all("#" not in t and "+" not in t for t in subs),
           "no wildcard subscriptions (%d topics subscribed)" % len(subs), repr(subs))


def t_rotation_seen(tap, w, x):
    """What the operator sees across an epoch boundary (docs/protocol.md
    5): new client IDs with new topics, the old ones gone within the
    grace, nothing used on both sides, and the traffic after it on the new
    ones only.  MQTT: mosquitto's log; XMPP: prosody's stanza log (JIDs,
    nodes)."""
    bare = lambda c: c.split("/", 1)[0]	# an XMPP full JID's bare part
    tap.ok(all(isinstance(r, dict) and r.get("announced") == 1 and r.get("epoch", 0) > 0
               for r in x["rotated"]),
           "rotate answers {announced, epoch} %r" % x["rotated"], repr(x["rotated"]))
    ev = veil.broker_events(x["m"])
    b = x["boundary"]
    cards = {x["before"][d]["card"] for d in x["before"]}
    card_conn = {c for t, c, topic, op in ev["subs"] if topic in cards}
    old = {bare(c) for d in x["before"].values() for c in d["client_ids"]} - card_conn
    new = {bare(c) for d in x["after"].values() for c in d["client_ids"]} - card_conn
    tap.ok(len(old) >= 2 and len(new) >= 2 and not (old & new),
           "the boundary gives each daemon new client IDs (%d before, %d after, none in "
           "both)" % (len(old), len(new)), repr((old, new)))
    ends = {}
    for s in ev["sessions"]:
        if s["client"] in old:
            ends[s["client"]] = max(ends.get(s["client"], 0), s["end"] or 1e12)
    late = {c: e - b for c, e in ends.items() if e > b + GRACE + 1}
    tap.ok(set(ends) == old and not late,
           "the old client IDs left within the grace after the boundary", repr((ends, late)))
    held = {"old": set(), "new": set()}
    for t, c, topic, op in ev["subs"]:
        for k, cs in (("old", old), ("new", new)):
            if c in cs and op == "subscribe":
                held[k].add(topic)
    tap.ok(held["old"] and held["new"] and not (held["old"] & held["new"]),
           "the new connections subscribe topics the old ones never held (%d, %d)"
           % (len(held["old"]), len(held["new"])), repr(held["old"] & held["new"]))
    touched_old = held["old"] | {topic for t, c, topic in ev["pubs"] if c in old}
    pub_after = [(c, topic) for t, c, topic in ev["pubs"] if t >= int(x["mark_t"])]
    # (From any later client ID: the next boundary may come meanwhile.)
    tap.ok(pub_after and all(c not in old and topic not in touched_old
                             for c, topic in pub_after),
           "traffic after the boundary: %d publishes, none from an old client ID or to a "
           "topic used before" % len(pub_after),
           repr([p for p in pub_after if p[0] in old or p[1] in touched_old][:6]))


XMPP_TESTS = [
    ("traffic", lambda tap, w, x: t_traffic(tap, w, x)),
    ("payload sizes", x_sizes),
    ("no plaintext", x_no_plaintext),
    ("daemon logs", lambda tap, w, x: t_daemon_logs(tap, w, x)),
    ("JIDs", x_client_ids),
    ("nodes", x_topics),
    ("rotation", t_rotation_seen),
]

TESTS = [
    ("traffic", t_traffic),
    ("payload sizes", t_sizes),
    ("no plaintext", t_no_plaintext),
    ("daemon logs", t_daemon_logs),
    ("client IDs", t_client_ids),
    ("topics", t_topics),
    ("rotation", t_rotation_seen),
]

if __name__ == "__main__":
    veil.main(XMPP_TESTS if veil.transport() == "xmpp" else TESTS, setup=setup,
              world_args={"watchdog": 100})
