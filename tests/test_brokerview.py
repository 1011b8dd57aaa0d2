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
CID_RE = re.compile(r"^[0-9A-Za-z]{22}$")
TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


def setup(w):
    # On XMPP the operator's view includes prosody's item store: on disk.
    m = w.broker(log_all=True, storage="internal") if w.transport == "xmpp" \
        else w.broker(log_all=True)
    # Neutral directory names: the paths show up in veild's own log.  A
    # logs at info (no -v): no identifier may show in its log; B at debug.
    a = w.daemon(NAME_A, m, dirname="a", accept="ask", frames={"size": FRAME},
                 verbose=False)
    b = w.daemon(NAME_B, m, dirname="b", frames={"size": FRAME})
    ids = set()	# every identifier the daemons report (status --verbose)

    def note_ids():
        for d in (a, b):
            v = d.status(verbose=True)["ids"]
            ids.update(v[k] for k in ("client_id", "card", "shared_inbox") if v.get(k))
    note_ids()
    cards = [d.rpc("card.get")["uri"] for d in (a, b)]
    veil.pair(a, b)
    sent = []
    msgids = []
    for i, t in enumerate(TEXTS):
        src, dst, to = (a, b, NAME_B) if i % 2 == 0 else (b, a, NAME_A)
        msgids.append(src.ctl_ok("send", to, input=t.encode())["id"])
        sent.append((dst, t))

    def drained():
        return a.contacts()[NAME_B]["queued"] == 0 and b.contacts()[NAME_A]["queued"] == 0
    veil.expect(drained, 15, "both outboxes drained before the rotation")
    # Prosody's log and item times have 1 s resolution: the rotation
    # starts in a second of its own.
    t = time.time()
    veil.expect(lambda: time.time() >= int(t) + 1, 2, "the next second")
    mark = len(m.log())
    mark_t = int(t) + 1
    for d in (a, b):
        d.ctl_ok("rotate")
    note_ids()
    # The UPDATEs go through the outbox: drained means both moves were
    # acknowledged.  From then on (and once the broker's log is still)
    # nothing may go to an old inbox.
    veil.expect(drained, 15, "both rotations acknowledged")
    veil.expect(lambda: veil.wait_stable(lambda: len(m.log())), 20, "the broker log settled")
    t_conf = time.time()
    veil.expect(lambda: time.time() >= int(t_conf) + 1, 2, "the next second")
    confirmed, confirmed_t = len(m.log()), int(t_conf) + 1
    # After the rotation: traffic on the new inboxes, both ways.
    msgids.append(a.ctl_ok("send", NAME_B, "after rotation " + TEXTS[1])["id"])
    msgids.append(b.ctl_ok("send", NAME_A, "after rotation " + TEXTS[0])["id"])
    got = {a.name: [], b.name: []}

    def all_in():
        for d in (a, b):
            got[d.name].extend(m["text"] for m in d.receive_all())
        return len(got[a.name]) + len(got[b.name]) == len(TEXTS) + 2
    veil.expect(all_in, 15, "every message received")
    veil.expect(drained, 15, "every message acknowledged")
    # Nothing more on its way: the log is complete.
    veil.expect(lambda: veil.wait_stable(lambda: len(m.log())), 20, "the broker log settled")
    note_ids()
    fps = {c["fingerprint"] for d in (a, b) for c in d.contacts().values()}
    return {"m": m, "a": a, "b": b, "got": got, "mark": mark, "mark_t": mark_t,
            "confirmed": confirmed, "confirmed_t": confirmed_t, "ids": ids,
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


def x_rotation_seen(tap, w, x):
    r = veil.observe(x["m"])
    topics = [i for i in r["identifiers"] if i["kind"] == "topic"]
    # Log stamps have 1 s resolution: the rotation began on a new second.
    new = {i["name"] for i in topics if i["first"] >= x["mark_t"]}
    old = {i["name"] for i in topics if i["first"] < x["mark_t"]}
    tap.ok(len(new) >= 2 and len(old) >= 2,
           "the rotation creates fresh nodes (%d before, %d new)" % (len(old), len(new)),
           repr((old, new)))
    # Items stored from the second after both moves were acknowledged.
    used = {i["name"] for i in topics
            if i["last"] >= x["confirmed_t"] and i.get("publishers")}
    tap.ok(used and used <= new,
           "once the rotation is acknowledged, traffic goes to the new nodes only "
           "(%d nodes used)" % len(used), repr((used - new, new)))


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
    log = x["m"].log()
    before, after = log[:x["mark"]], log[x["mark"]:]
    sub_re = re.compile(r"^\S+: \t(\S+) \(QoS \d\)$", re.M)
    old, new = set(sub_re.findall(before)), set(sub_re.findall(after))
    tap.ok(len(new) >= 2 and not (old & new),
           "the rotation subscribes fresh inboxes (%d before, %d new)" % (len(old), len(new)),
           repr((old, new)))
    # Once both moves were acknowledged, every frame goes to a new inbox.
    pub_new = {p[2] for p in publishes(log[x["confirmed"]:]) if p[0] == "Received"}
    tap.ok(pub_new and pub_new <= new,
           "once the rotation is acknowledged, traffic goes to the new inboxes only "
           "(%d topics used)" % len(pub_new), repr((pub_new - new, new)))


XMPP_TESTS = [
    ("traffic", lambda tap, w, x: t_traffic(tap, w, x)),
    ("payload sizes", x_sizes),
    ("no plaintext", x_no_plaintext),
    ("daemon logs", lambda tap, w, x: t_daemon_logs(tap, w, x)),
    ("JIDs", x_client_ids),
    ("nodes", x_topics),
    ("rotation", x_rotation_seen),
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
