#!/usr/bin/env python3
"""test_brokerview.py: what the broker sees (mosquitto log_type all, or prosody's debug log and storage): no names, no text, one frame size, random IDs; prints TAP."""

import base64
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
    # Neutral directory names: the paths show up in veild's own log.  A
    # logs at info (no -v): no identifier may show in its log; B at debug.
    a = w.daemon(NAME_A, m, dirname="a", accept="ask", frames={"size": FRAME},
                 rotation=FAST, verbose=False)
    b = w.daemon(NAME_B, m, dirname="b", frames={"size": FRAME}, rotation=FAST)
    known = set()	# every identifier the daemons report (status --verbose)

    def note_ids():
        for d in (a, b):
            v = ids(d)
            known.update(c for k in ("client_ids", "topics") for c in v.get(k) or [])
            if v.get("card"):
                known.add(v["card"])
    note_ids()
    cards = [d.rpc("card.get")["uri"] for d in (a, b)]
    veil.pair(a, b)
    sent = []
    msgids = []
    for i, t in enumerate(TEXTS):
        src, dst, to = (a, b, NAME_B) if i % 2 == 0 else (b, a, NAME_A)
        msgids.append(src.ctl_ok("send", to, input=t.encode())["id"])
        sent.append((dst, t))
    wait_for(lambda: a.contacts()[NAME_B]["queued"] == 0 and
             b.contacts()[NAME_A]["queued"] == 0, 15)
    # rotate: a new inbox seed for the contact, by UPDATE (confirmed when
    # the outboxes are empty again); the client IDs change at the boundary.
    rotated = [d.ctl_ok("rotate") for d in (a, b)]
    note_ids()
    wait_for(lambda: a.contacts()[NAME_B]["queued"] == 0 and
             b.contacts()[NAME_A]["queued"] == 0, 15)
    # Then across an epoch boundary: everything the daemons hold in the
    # middle of an epoch (the next connection comes in the last grace),
    # and after the old connections have left.
    wait_for(lambda: GRACE + 0.3 <= time.time() % L <= L - GRACE - 0.7, 2 * L, 0.02)
    before = {d.name: ids(d) for d in (a, b)}
    note_ids()
    boundary = (before[NAME_A]["epoch"] + 1) * L
    wait_for(lambda: time.time() >= boundary + GRACE + 0.5, L + GRACE + 2)
    after = {d.name: ids(d) for d in (a, b)}
    note_ids()
    mark_t = time.time()
    # After the boundary: traffic on the new connections, both ways.
    msgids.append(a.ctl_ok("send", NAME_B, "after rotation " + TEXTS[1])["id"])
    msgids.append(b.ctl_ok("send", NAME_A, "after rotation " + TEXTS[0])["id"])
    got = {a.name: [], b.name: []}

    def all_in():
        for d in (a, b):
            got[d.name].extend(m["text"] for m in d.receive_all())
        return len(got[a.name]) + len(got[b.name]) == len(TEXTS) + 2
    veil.expect(all_in, 15, "every message received")
    # Every UPDATE and every message acknowledged; nothing more on its
    # way: the log is complete.
    veil.expect(lambda: a.contacts()[NAME_B]["queued"] == 0 and
                b.contacts()[NAME_A]["queued"] == 0, 15, "every message acknowledged")
    veil.expect(lambda: veil.wait_stable(lambda: len(m.log())), 20, "the broker log settled")
    note_ids()
    fps = {c["fingerprint"] for d in (a, b) for c in d.contacts().values()}
    return {"m": m, "a": a, "b": b, "got": got, "mark_t": mark_t, "rotated": rotated,
            "before": before, "after": after, "boundary": boundary, "ids": known,
            "cards": cards, "msgids": msgids, "fingerprints": fps,
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
    needles = secrets(x)
    hits = [n for n in needles if n.lower() in m.log().lower()]
    tap.ok(not hits, "no display name, text, card or key in prosody's log", repr(hits))
    blob = b""
    for root, _, files in os.walk(m.data):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                blob += fh.read()
    hits = [n for n in needles if n.encode() in blob]
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
    needles = secrets(x)
    hits = [n for n in needles if n.lower() in log.lower()]
    tap.ok(not hits, "no display name, text, card or key in the broker log", repr(hits))
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


def secrets(x):
    """What no veild log may hold at any level (README, log.h): display
    names, texts, cards, public keys (b64u, base64, hex), safety numbers."""
    out = list(NEEDLES)
    for uri in x["cards"]:
        c = veil.decode_card(uri)
        out += [uri, uri[5:45], veil.b64u(c["pk"]), c["pk"].hex(), c["pk"].hex().upper(),
                base64.b64encode(c["pk"]).decode().rstrip("=")]
    for fp in x["fingerprints"]:
        out += [fp, fp.replace(" ", "")]
    return out


def identifiers(x):
    """What only a debug log may hold: every identifier the daemons
    reported and the broker saw, and the message IDs."""
    r = veil.observe(x["m"])
    ids = set(x["ids"]) | {i["name"] for i in r["identifiers"]}
    # A JID's local part is the identifier (the domain is not).
    ids |= {i.split("@")[0] for i in ids if "@" in i}
    return sorted(i for i in ids if len(i) >= 10) + list(x["msgids"])


def t_daemon_logs(tap, w, x):
    # Not the broker's view, but the same promise: veild's log holds no
    # display name, text or key, and identifiers only at debug level.
    needles = secrets(x)
    for d in (x["a"], x["b"]):
        log = d.log()
        hits = [n for n in needles if n.lower() in log.lower()]
        tap.ok(not hits, "veild log of %s (%s): no names, texts, cards, keys, safety "
               "numbers (%d needles)" % (d.name, "debug" if d.verbose else "info",
                                         len(needles)), repr(hits))
    ids = identifiers(x)
    a, b = x["a"], x["b"]
    hits = [i for i in ids if i in a.log()]
    tap.ok(len(ids) >= 8 and not hits, "veild log at info level (no -v) of %s, through "
           "pairing, messages and a rotation: none of %d identifiers" % (a.name, len(ids)),
           repr(hits))
    # The control: the same list finds identifiers where they may be.
    shown = [i for i in ids if i in b.log()]
    tap.ok(shown, "the debug log (-v) of %s does show identifiers (%d of them): the list "
           "above is the right one" % (b.name, len(shown)), repr(ids[:5]))


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
