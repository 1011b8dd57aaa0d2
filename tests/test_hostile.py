#!/usr/bin/env python3
"""test_hostile.py: whoever publishes to us (a card holder, the broker, a contact) or shares the machine cannot make veild's memory, CPU, disk or names run away, nor lose what is legitimate; prints TAP.

Every test attacks a daemon through the broker or its socket, then checks
that it lives, that its peak RSS (VmHWM) stayed under 32 MiB, that nothing
legitimate was lost, and that a new contact still pairs and talks within
seconds.  VEIL_TRANSPORT=xmpp (tests/xmpp_hostile.sh) runs the attacks that
go through the transport against prosody; the socket's are the same on
both and run once, over MQTT."""

import base64
import json
import os
import secrets
import socket
import sqlite3
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import wait_for  # noqa: E402
import rawpub  # noqa: E402

RSS_MAX_KIB = 32 * 1024
LEGIT_S = 20		# a pairing and a message each way, after an attack
FS = 1024		# frames.size (the default)
XMPP = veil.transport() == "xmpp"


def hostile_bin():
    return veil.binary("tests/hostile")


def vmhwm(d):
    """Peak RSS of d's veild, KiB."""
    with open("/proc/%d/status" % d.proc.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def sanitized():
    """An ASan build's RSS means nothing (make check says which build it
    is; ldd cannot tell through libtool's wrapper script)."""
    return veil.sanitized()


def check_rss(tap, d, what):
    kib = vmhwm(d)
    tap.note("%s: %s peak RSS %d KiB" % (what, d.name, kib))
    if sanitized():
        tap.ok(True, "%s: peak RSS # SKIP sanitizer build" % what)
        return
    tap.ok(0 < kib < RSS_MAX_KIB, "%s: %s's peak RSS %.1f MiB stays under 32 MiB"
           % (what, d.name, kib / 1024.0), d.log_tail())


def alive(tap, d, what):
    ok = d.alive()
    try:
        st = d.rpc("status", timeout=5)
    except Exception as e:	# reported as the failure
        ok, st = False, repr(e)
    tap.ok(ok, "%s: %s lives and answers" % (what, d.name), repr(st)[:300] + d.log_tail())
    return st if ok else None


def counters(d):
    f = d.rpc("status")["frames"]
    return f["in"] + f["dropped"]


def card_topic(uri):
    """The topic of a card: the text form of its contact ID (protocol.md 3)."""
    raw = base64.urlsafe_b64decode(uri[len("veil:"):] + "=" * (-len(uri[5:]) % 4))
    cidlen = raw[2]
    return base64.urlsafe_b64encode(raw[3:3 + cidlen]).decode().rstrip("=")


def wait_subscribed(d, pub, topic, timeout=20):
    """Junk on topic until d sees one: its subscription is in place (a
    publish before it would reach nobody)."""
    base = counters(d)
    deadline = time.monotonic() + timeout
    while counters(d) == base:
        if time.monotonic() > deadline:
            raise RuntimeError("%s never got a frame on %s" % (d.name, topic))
        pub.publish_many(topic, [os.urandom(FS)])
        time.sleep(0.1)


def publish_paced(d, pub, topic, frames, chunk=200, timeout=120):
    """Publishes frames in chunks, each after the daemon took in (or
    dropped) the one before: the hand-off queue never overflows, so what
    is measured is veild's handling, not the drop."""
    wait_subscribed(d, pub, topic)
    base = counters(d)
    done = 0
    deadline = time.monotonic() + timeout
    for i in range(0, len(frames), chunk):
        part = frames[i:i + chunk]
        pub.publish_many(topic, part)
        done += len(part)
        while counters(d) - base < done:
            if time.monotonic() > deadline or not d.alive():
                return False
            time.sleep(0.02)
    return True


def requests(card_uri, n, name):
    """n valid sealed REQUESTs to the card, each claiming a fresh key."""
    nh = name.encode("utf-8").hex() if isinstance(name, str) else name.hex()
    r = subprocess.run([hostile_bin(), "requests", card_uri, str(n), str(FS), nh],
                       capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("hostile requests: %s" % r.stderr.decode())
    return [r.stdout[i:i + FS] for i in range(0, len(r.stdout), FS)]


def pair_card(a, b, one_time=False, timeout=15.0):
    """b asks for a's card (one-time or not), a accepts: (b's name at a)."""
    uri = a.rpc("card.get", one_time=one_time)["uri"]
    fp = b.rpc("contact.add", card=uri, name=a.name)["fingerprint"]

    def seen():
        # By the safety number: floods claim the same peer name.
        return [c for c in a.contacts().values() if c["fingerprint"] == fp and
                c["state"] in ("pending", "accepted", "established")]
    c = wait_for(seen, timeout)
    if not c:
        raise RuntimeError("%s never saw %s's request\n%s%s" % (a.name, b.name,
                           a.log_tail(), b.log_tail()))
    name = c[0]["name"]
    if c[0]["state"] == "pending":
        a.rpc("contact.accept", name=name)
    if not wait_for(lambda: a.contacts()[name]["state"] == "established" and
                    b.contacts()[a.name]["state"] == "established", timeout):
        raise RuntimeError("%s and %s did not pair\n%s%s" % (a.name, b.name,
                           a.log_tail(), b.log_tail()))
    return name


def talk(a, a_name_at_b, b, b_name_at_a, timeout=15.0):
    """A message each way: True once both arrived."""
    t1 = "hello from %s %s" % (a.name, secrets.token_hex(4))
    t2 = "hello from %s %s" % (b.name, secrets.token_hex(4))
    a.rpc("message.send", to=b_name_at_a, text=t1)
    b.rpc("message.send", to=a_name_at_b, text=t2)
    got_a, got_b = [], []

    def both():
        got_a.extend(m["text"] for m in a.receive_all() if "text" in m)
        got_b.extend(m["text"] for m in b.receive_all() if "text" in m)
        return t2 in got_a and t1 in got_b
    return wait_for(both, timeout)


def legit_after(tap, w, x, d, what, one_time=False):
    """A new contact pairs with d and they talk, within LEGIT_S."""
    t0 = time.monotonic()
    z = w.daemon("Zed" + secrets.token_hex(3), x["m"])
    ok = False
    try:
        name = pair_card(d, z, one_time=one_time)
        ok = talk(d, d.name, z, name)
    except Exception as e:	# reported as the failure
        tap.note(repr(e))
    dt = time.monotonic() - t0
    tap.ok(ok and dt < LEGIT_S, "%s: afterwards a new contact pairs with %s%s and they "
           "talk (%.1f s)" % (what, d.name, " (one-time card)" if one_time else "", dt),
           d.log_tail() + z.log_tail())
    z.stop()


def setup(w):
    return {"m": w.broker(log_all=False)}


# --- the broker, or anyone holding a card --------------------------------

def t_oversize(tap, w, x):
    """192 MiB of oversized payloads and wrong-size ones on the card topic,
    thousands of junk frames of the right size on the card and on a pair
    topic, while a contact sends: veild stays small, the contact's
    messages all arrive."""
    m = x["m"]
    alice = w.daemon("Alice", m)
    bob = w.daemon("Bob", m)
    bob_at_alice = pair_card(alice, bob)
    base = vmhwm(alice)
    st = alice.rpc("status", verbose=True)
    card = st["ids"]["card"]
    pair_topics = [t for t in st["ids"]["topics"] if t != card]
    pub = rawpub.publisher(m)
    sent = {}
    witness = None
    if not XMPP:
        # A plain subscriber of the card topic, which asks for no size
        # limit: it gets the oversized publishes, veild must not.
        witness = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(m.port), "-t", card,
             "-F", "%l", "-V", "mqttv5", "-C", "12", "-W", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.5)	# its SUBSCRIBE before the publishes (no retain)
    t0 = time.monotonic()
    try:
        if not XMPP:
            big = os.urandom(16 << 20)
            for i in range(12):
                pub.publish(card, big[:-i - 1] + b"x" * (i + 1), qos=0)
                sent[alice.rpc("message.send", to=bob_at_alice,
                               text="during the flood %d" % i)["id"]] = i
            del big
        else:
            # prosody refuses stanzas over 256 KiB itself; below that,
            # veild drops an item of the wrong size before decoding it.
            big = os.urandom(100 << 10)
            for i in range(12):
                pub.publish_many(card, [big] * 16)
                sent[alice.rpc("message.send", to=bob_at_alice,
                               text="during the flood %d" % i)["id"]] = i
        for i in range(5):
            pub.publish_many(card, [os.urandom(FS - 1) for _ in range(200)] +
                             [os.urandom(FS + 1) for _ in range(200)])
        before = counters(alice)
        junk = [os.urandom(FS) for _ in range(3000)]
        ok_card = publish_paced(alice, pub, card, junk, chunk=500)
        junk_t = time.monotonic() - t0
        ok_pair = bool(pair_topics) and publish_paced(alice, pub, pair_topics[0],
                                                      junk, chunk=500)
        # And all at once, faster than the loop takes them: the hand-off
        # queue is bounded, what does not fit is dropped and counted.
        before_burst = counters(alice)
        pub.publish_many(card, [os.urandom(FS) for _ in range(8000)])
        ok_burst = wait_for(lambda: counters(alice) - before_burst >= 8000, 60)
        burst = alice.rpc("status")["frames"]
    finally:
        pub.close()
    tap.ok(ok_burst, "a burst of 8000 junk frames is taken in or dropped at the "
           "hand-off queue, all counted (%r)" % burst, alice.log_tail())
    tap.note("flood: %.1f s; 3000 junk frames on the card and 3000 on a pair topic "
             "taken in %d frames' time" % (time.monotonic() - t0,
                                           counters(alice) - before))
    tap.ok(ok_card and ok_pair, "junk of the right size on the card and on a pair "
           "topic is taken in and dropped (%d on the card in %.1f s)"
           % (len(junk), junk_t), alice.log_tail())
    tap.note("peak RSS before the flood %d KiB" % base)
    if witness is not None:
        try:
            out, _ = witness.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            witness.kill()
            out, _ = witness.communicate()
        sizes = [int(v) for v in out.split()]
        tap.ok(len(sizes) == 12 and sum(sizes) == 12 * (16 << 20),
               "the broker took 12 publishes of 16 MiB (192 MiB) on the card topic "
               "and delivered them to a subscriber without a size limit", repr(sizes))
    alive(tap, alice, "oversized and junk publishes")
    check_rss(tap, alice, "oversized and junk publishes")
    # What the contact sent meanwhile all arrives.
    got = {}

    def all_in():
        for mm in bob.receive_all():
            got[mm["id"]] = mm["text"]
        return all(i in got for i in sent)
    tap.ok(wait_for(all_in, 20), "Bob got all %d messages sent during the flood"
           % len(sent), repr((sorted(got.values()), bob.log_tail())))
    st = alice.rpc("status")
    tap.ok(st["contacts"]["pending"] == 0, "no junk became a contact request", repr(st))
    legit_after(tap, w, x, alice, "oversized and junk publishes")
    for d in (alice, bob):
        d.stop()


def t_request_flood(tap, w, x):
    """Thousands of valid sealed REQUESTs (each one X25519 and a claimed
    key) to the card: at most requests.per_hour become pending; with
    accept = "auto" at most auto_accept_per_hour are accepted and at most
    pending_max wait; a one-time card still pairs at once."""
    m = x["m"]
    alice = w.daemon("Alice2", m)
    uri = alice.rpc("card.get")["uri"]
    frames = requests(uri, 1500 if XMPP else 3000, "bob")
    pub = rawpub.publisher(m)
    t0 = time.monotonic()
    try:
        ok = publish_paced(alice, pub, card_topic(uri), frames, chunk=250, timeout=240)
    finally:
        pub.close()
    dt = time.monotonic() - t0
    tap.ok(ok, "%d valid REQUESTs taken in (or dropped) in %.1f s" % (len(frames), dt),
           alice.log_tail())
    pend = wait_for(lambda: alice.rpc("status")["contacts"]["pending"] >= 30, 10)
    st = alice.rpc("status")["contacts"]
    tap.ok(pend and st["pending"] == 30,
           "exactly requests.per_hour (30) of them wait as pending requests (%d)"
           % st["pending"], repr(st) + alice.log_tail())
    tap.ok("dropped: more than requests.per_hour" in alice.log() and
           alice.log().count("dropped: more than") <= 3,
           "the log says that requests were dropped, and why, once a minute",
           alice.log_tail())
    alive(tap, alice, "a REQUEST flood")
    check_rss(tap, alice, "a REQUEST flood")
    # The user hands out a one-time card: not counted per hour.
    legit_after(tap, w, x, alice, "a REQUEST flood", one_time=True)
    # Refusing the flood is one call each; the names were not exhausted.
    names = [c["name"] for c in alice.contacts().values() if c["state"] == "pending"]
    for n in names:
        alice.rpc("contact.reject", name=n)
    tap.ok(alice.rpc("status")["contacts"]["pending"] == 0,
           "the %d pending requests are rejected by name" % len(names))
    alice.stop()

    # accept = "auto": the quota, and pending_max.
    bea = w.daemon("Bea", m, accept="auto",
                   requests={"per_hour": 1000, "pending_max": 50,
                             "auto_accept_per_hour": 5})
    uri = bea.rpc("card.get")["uri"]
    frames = requests(uri, 300, "bob")
    pub = rawpub.publisher(m)
    try:
        publish_paced(bea, pub, card_topic(uri), frames, chunk=100, timeout=240)
    finally:
        pub.close()
    wait_for(lambda: sum(bea.rpc("status")["contacts"][k]
                         for k in ("pending", "accepted")) >= 50, 10)
    st = bea.rpc("status")["contacts"]
    tap.ok(st["accepted"] == 5 and st["pending"] == 45,
           "accept = auto: auto_accept_per_hour (5) accepted, the rest up to pending_max "
           "(50) pending: %d accepted, %d pending" % (st["accepted"], st["pending"]),
           repr(st) + bea.log_tail())
    check_rss(tap, bea, "a REQUEST flood on accept = auto")
    legit_after(tap, w, x, bea, "a REQUEST flood on accept = auto", one_time=True)
    bea.stop()


def t_names(tap, w, x):
    """Name exhaustion: 1100 requests all named "bob" each get a name of
    their own, and the real Bob still pairs.  Names cut to make room for a
    suffix stay whole characters; names with bidi controls or zero-width
    characters are refused; veilctl warns about lookalikes."""
    m = x["m"]
    n_bob = 300 if XMPP else 1100
    cleo = w.daemon("Cleo", m, requests={"per_hour": 5000, "pending_max": 5000})
    uri = cleo.rpc("card.get")["uri"]
    topic = card_topic(uri)
    pub = rawpub.publisher(m)
    try:
        ok = publish_paced(cleo, pub, topic, requests(uri, n_bob, "bob"), chunk=200,
                           timeout=300)
        got = wait_for(lambda: cleo.rpc("status")["contacts"]["pending"] >= n_bob, 30)
        tap.ok(ok and got, "%d requests named \"bob\" are all pending" % n_bob,
               repr(cleo.rpc("status")["contacts"]) + cleo.log_tail())
        names = [c["name"] for c in cleo.contacts().values()]
        tap.ok(len(set(names)) == n_bob and all(n == "bob" or n.startswith("bob-")
                                                for n in names),
               "each got a name of its own (bob, bob-2 .. bob-9, then random suffixes)",
               repr(sorted(names)[:20]))
        # The real Bob, named "bob" too.
        bob = w.daemon("bob", m)
        t0 = time.monotonic()
        bname = pair_card(cleo, bob)
        ok = talk(cleo, "Cleo", bob, bname)
        tap.ok(ok and time.monotonic() - t0 < LEGIT_S,
               "the real bob still pairs (as %s) and talks (%.1f s)"
               % (bname, time.monotonic() - t0), cleo.log_tail())
        bob.stop()
        # 64-byte names of 2- and 3-byte characters, twice each: the
        # suffix cuts at a character boundary.
        longs = ["\u00e9" * 32, "\u65e5" * 21 + "a"]
        for name in longs:
            pub.publish_many(topic, requests(uri, 3, name))
        want = n_bob + 1 + 6
        wait_for(lambda: len(cleo.contacts()) >= want, 15)
        cs = cleo.contacts()
        mine = [n for n in cs if n.startswith("\u00e9") or n.startswith("\u65e5")]
        tap.ok(len(mine) == 6 and all(len(n.encode()) <= 64 for n in mine),
               "six 64-byte multibyte names: six contacts, each listed with a valid "
               "name of at most 64 bytes", repr(mine))
        rejected = 0
        for n in mine:
            try:
                cleo.rpc("contact.reject", name=n)
                rejected += 1
            except veil.RpcError:
                pass
        tap.ok(rejected == 6, "each of them can be addressed by name (rejected %d)"
               % rejected)
        # Invisible characters: refused by libveil, so no request.
        before = len(cleo.contacts())
        for bad in ("bob\u202e", "b\u200bob", "\u2066bob\u2069", "\u3164"):
            pub.publish_many(topic, requests(uri, 1, bad))
        pub.publish_many(topic, requests(uri, 1, "marker"))
        wait_for(lambda: "marker" in cleo.contacts(), 10)
        cs = cleo.contacts()
        tap.ok("marker" in cs and len(cs) == before + 1,
               "requests whose names hold bidi controls, zero-width characters or a "
               "filler are refused (only the plain one that followed came in)",
               repr(len(cs) - before))
    finally:
        pub.close()
    check_rss(tap, cleo, "%d requests named bob" % n_bob)
    cleo.stop()

    # Lookalikes: veilctl warns before an accept, and on contact add.
    dina = w.daemon("Dina", m)
    eve = w.daemon("Bob", m, dirname="veild-bob-real")
    pair_card(dina, eve)
    uri = dina.rpc("card.get")["uri"]
    pub = rawpub.publisher(m)
    try:
        pub.publish_many(card_topic(uri), requests(uri, 1, "B\u043eb"))	# Cyrillic o
    finally:
        pub.close()
    fake = wait_for(lambda: [c["name"] for c in dina.contacts().values()
                             if c["state"] == "pending"], 10)
    rc, out, err = dina.ctl("contact", "accept", fake[0] if fake else "none")
    tap.ok(fake and rc == 0 and "looks like" in err and '"Bob"' in err,
           "veilctl contact accept warns that \"B\u043eb\" looks like the contact Bob",
           repr((rc, out, err)))
    fay = w.daemon("B0B", m)
    rc, out, err = dina.ctl("contact", "add", fay.rpc("card.get")["uri"])
    tap.ok(rc == 0 and "looks like" in err and '"Bob"' in err,
           "veilctl contact add of a card named \"B0B\" warns that it looks like Bob",
           repr((rc, out, err)))
    rc, out, err = dina.ctl("contact", "add", fay.rpc("card.get", one_time=True)["uri"],
                            "--name", "Fay")
    tap.ok(rc != 0 or "looks like" not in err or "Fay" not in err.split("looks like")[0],
           "no warning for a name unlike any other", repr((rc, out, err)))
    fay.stop()
    rc, out, err = dina.ctl("contact", "add", "veil:AAAA", "--name", "B\u200bob")
    tap.ok(rc != 0, "a local name with a zero-width space is refused", repr((rc, err)))
    dina.stop()
    eve.stop()


# --- a contact -------------------------------------------------------------

def stored_pair(d, contact):
    """The packed pair of d's contact, hex, from its stopped database (sealed
    on disk: tests/pairdump opens it with d's key file)."""
    r = subprocess.run([veil.binary("tests/pairdump"), os.path.join(d.state_dir, "veil.db"),
                        d.key_file, "--pair", contact], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError("pairdump: " + r.stderr)
    return r.stdout.strip()


def frames_of(path):
    data = open(path, "rb").read()
    return [data[i:i + FS] for i in range(0, len(data), FS)]


def t_fragment_bomb(tap, w, x):
    """A paired contact sends message after message of thousands of
    fragments, never the last: it evicts only its own partial messages.
    Another contact's long message, half there when the bomb starts and
    completed after it, arrives intact; memory stays small."""
    m = x["m"]
    ident = {"obscurity": 1}
    alice = w.daemon("Ada", m, identity=ident)
    mal = w.daemon("Mal", m, identity=ident)
    ben = w.daemon("Ben", m, identity=ident)
    pair_card(alice, mal)
    ben_at = pair_card(alice, ben)
    # Both send by hand from here on, with their own keys (each of their
    # daemons stopped: two senders on one chain would collide).
    tap.ok(mal.stop() == 0 and ben.stop() == 0, "both contacts stopped to send by hand")
    n_msgs = 4 if XMPP else 5	# more than limits.reassembly (16 MiB) in all
    bomb_path = os.path.join(w.tmp, "bomb.bin")
    r = subprocess.run([hostile_bin(), "bomb", stored_pair(mal, "Ada"), str(FS),
                        str(n_msgs), "4406", bomb_path],
                       capture_output=True, text=True, timeout=120)
    msg_path = os.path.join(w.tmp, "ben.bin")
    r2 = subprocess.run([hostile_bin(), "message", stored_pair(ben, "Ada"), str(FS),
                         "600000", msg_path], capture_output=True, text=True, timeout=60)
    tap.ok(r.returncode == 0 and r2.returncode == 0,
           "the bomb and Ben's 600 KB message are sealed under their senders' keys",
           r.stderr + r2.stderr)
    topic, ben_topic, mid = r.stdout.split()[0], r2.stdout.split()[0], r2.stdout.split()[1]
    bomb = frames_of(bomb_path)
    legit = frames_of(msg_path)
    text = open(msg_path + ".txt").read()
    half = len(legit) // 2
    pub = rawpub.publisher(m)
    t0 = time.monotonic()
    try:
        ok = publish_paced(alice, pub, ben_topic, legit[:half], chunk=200)
        ok = publish_paced(alice, pub, topic, bomb, chunk=400, timeout=600) and ok
        ok = publish_paced(alice, pub, ben_topic, legit[half:], chunk=200) and ok
    finally:
        pub.close()
    st = alice.rpc("status")
    tap.note("bomb: %d frames (%d messages of 4405 of 4406 fragments, %.0f MiB) between "
             "the halves of a %d-frame message, in %.1f s; frames in %d, dropped %d"
             % (len(bomb), n_msgs, len(bomb) * FS / 1048576.0, len(legit),
                time.monotonic() - t0, st["frames"]["in"], st["frames"]["dropped"]))
    tap.ok(ok, "every frame reached the daemon", alice.log_tail())
    alive(tap, alice, "a fragment bomb")
    check_rss(tap, alice, "a fragment bomb")
    got = wait_for(lambda: [mm for mm in alice.receive_all() if mm["id"] == mid], 30)
    tap.ok(got and got[0]["text"] == text and got[0]["from"] == ben_at,
           "Ben's message, half received before the bomb, completes intact after it",
           alice.log_tail())
    legit_after(tap, w, x, alice, "a fragment bomb")
    alice.stop()


def t_quotas(tap, w, x):
    """A contact over its unread quota is not acknowledged: it keeps and
    resends, and everything arrives once an app takes what is there.  Our
    outbox for a contact that acknowledges nothing is bounded.  A message
    larger than limits.message_max is refused at both ends and is not
    lost: a later, larger limit takes it."""
    m = x["m"]
    alice = w.daemon("Ava", m, limits={"unread_messages": 20, "outbox_messages": 5,
                                       "message_max": "64KiB", "reassembly": "1MiB"})
    bob = w.daemon("Bo", m)
    bo_at = pair_card(alice, bob)
    dropped = alice.rpc("status")["frames"]["dropped"]
    ids = [bob.rpc("message.send", to="Ava", text="q %d" % i)["id"] for i in range(30)]
    full = wait_for(lambda: alice.rpc("status")["unread"] >= 20, 20)
    # The ten over the quota were refused, and their copies too.
    refused = wait_for(lambda: alice.rpc("status")["frames"]["dropped"] - dropped >= 20,
                       20)
    st = alice.rpc("status")
    tap.ok(refused and "over its unread quota" in alice.log(),
           "the messages over the quota were refused, copies included, and the log "
           "says why", repr(st["frames"]) + alice.log_tail())
    tap.ok(full and st["unread"] == 20,
           "unread_messages = 20: 20 of 30 kept (%d)" % st["unread"], repr(st))
    tap.ok(bob.contacts()["Ava"]["queued"] == 10,
           "the other 10 wait at the sender, unacknowledged (%d queued)"
           % bob.contacts()["Ava"]["queued"])
    got = {}

    def all_in():
        for mm in alice.receive_all():
            got.setdefault(mm["id"], 0)
            got[mm["id"]] += 1
        return all(i in got for i in ids)
    tap.ok(wait_for(all_in, 40) and all(v == 1 for v in got.values()),
           "once an app acknowledged them, all 30 arrive, each once",
           repr((len(got), alice.log_tail())))
    tap.ok(wait_for(lambda: bob.contacts()["Ava"]["queued"] == 0, 20),
           "and the sender's outbox drains")

    # Our outbox for a contact that does not answer.
    tap.ok(bob.stop() == 0, "Bo goes away")
    sent = 0
    for i in range(5):
        alice.rpc("message.send", to=bo_at, text="while away %d" % i)
        sent += 1
    try:
        alice.rpc("message.send", to=bo_at, text="one too many")
        code = None
    except veil.RpcError as e:
        code = e.code
    tap.ok(code == -32005, "outbox_messages = 5: the 6th message.send is refused "
           "(-32005), the five are kept", repr(code))
    # Too large, both ways.
    try:
        alice.rpc("message.send", to=bo_at, text="x" * (65 << 10))
        code = None
    except veil.RpcError as e:
        code = e.code
    tap.ok(code == -32004, "message_max = 64KiB: a 65 KiB message.send is refused",
           repr(code))
    bob.start()
    got = wait_for(lambda: len([mm for mm in bob.receive_all()
                                if mm["text"].startswith("while away")]) or None, 20)
    tap.ok(wait_for(lambda: alice.contacts()[bo_at]["queued"] == 0, 20),
           "when Bo is back the five are delivered", alice.log_tail())
    alice.rpc("message.send", to=bo_at, text="room again")
    big = "L" * (100 << 10)
    dropped = alice.rpc("status")["frames"]["dropped"]
    bid = bob.rpc("message.send", to="Ava", text=big)["id"]
    # Refused at its first frame, each copy (the sender retries).
    wait_for(lambda: alice.rpc("status")["frames"]["dropped"] - dropped >= 2 * 108, 20)
    tap.ok(alice.rpc("status")["frames"]["dropped"] - dropped >= 2 * 108 and
           bob.contacts()["Ava"]["queued"] == 1 and
           not [mm for mm in alice.receive_all() if mm["id"] == bid],
           "a 100 KiB message to a 64 KiB limit is not taken, and not acknowledged",
           repr(bob.contacts()["Ava"]))
    alice.stop()
    alice.cfg["limits"] = {"message_max": "4MiB", "reassembly": "16MiB"}
    alice.write_config()
    alice.start()
    got = wait_for(lambda: [mm for mm in alice.receive_all() if mm["id"] == bid], 30)
    tap.ok(got and got[0]["text"] == big,
           "after the limit was raised (restart) the sender's copy arrives: not lost",
           alice.log_tail())
    check_rss(tap, alice, "quotas")
    for d in (alice, bob):
        d.stop()


# --- the socket --------------------------------------------------------------

def insert_backlog(d, contact, rows):
    """rows of (body bytes) as received messages of contact, unread, into d's
    stopped database, sealed as veild seals them (tests/pairdump --rx);
    returns their ids (hex)."""
    ids = []
    now = int(time.time() * 1000)
    lines = []
    for i, body in enumerate(rows):
        mid = os.urandom(16)
        ids.append(mid.hex())
        lines.append("%s %s %d\n" % (mid.hex(), body.hex(), now + i))
    r = subprocess.run([veil.binary("tests/pairdump"), os.path.join(d.state_dir, "veil.db"),
                        d.key_file, "--rx", contact], input="".join(lines).encode(),
                       capture_output=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("pairdump --rx: " + r.stderr.decode())
    return ids


def read_all(d, budget, ack=True, limit=256):
    """message.receive (+ ack) until empty over one connection; each reply
    checked against the byte budget.  (messages, reply sizes, violations)."""
    got, sizes, bad = [], [], []
    with veil.Client(d.socket, 60) as c:
        rid = 0
        while True:
            rid += 1
            c.send_raw(json.dumps({"jsonrpc": "2.0", "method": "message.receive",
                                   "params": {"limit": limit}, "id": rid}).encode() + b"\n")
            line = c.read_line(60)
            sizes.append(len(line))
            msgs = json.loads(line)["result"]["messages"]
            if len(msgs) > 1 and len(line) > budget + 200:
                bad.append((len(msgs), len(line)))
            if not msgs:
                return got, sizes, bad
            got.extend((mm["id"], len(mm.get("text") or mm.get("data"))) for mm in msgs)
            if ack:
                c.call("message.ack", {"ids": [mm["id"] for mm in msgs]}, timeout=60)


def t_backlog(tap, w, x):
    """A huge unread backlog (24 messages of 4 MiB of control bytes, which
    as JSON text would take 24 MiB each, and 3000 small ones) read
    through the socket: every reply within the budget but for a single
    large message, all of it delivered, memory small."""
    m = x["m"]
    alice = w.daemon("Aria", m)
    bob = w.daemon("Bert", m)
    pair_card(alice, bob)
    tap.ok(alice.stop() == 0, "Aria stopped to fill her database")
    big = bytes(range(1, 32)) * ((4 << 20) // 31) + b"\x01" * ((4 << 20) % 31)
    rows = [big] * 24 + [("small %d \u2713" % i).encode() * 20 for i in range(3000)]
    ids = insert_backlog(alice, "Bert", rows)
    del rows
    alice.start()
    t0 = time.monotonic()
    got, sizes, bad = read_all(alice, 1 << 20)
    dt = time.monotonic() - t0
    tap.note("backlog: %d messages read in %.1f s, %d replies, largest %d bytes"
             % (len(got), dt, len(sizes), max(sizes)))
    tap.ok(sorted(i for i, _ in got) == sorted(ids) and len(got) == len(set(i for i, _ in got)),
           "all %d messages handed out, each once" % len(ids), repr(len(got)))
    tap.ok(not bad, "no reply of several messages passes receive_reply (1 MiB)", repr(bad[:5]))
    tap.ok(max(sizes) < 6 << 20, "a 4 MiB message of control bytes goes as base64 "
           "(largest reply %.1f MiB, not 24)" % (max(sizes) / 1048576.0))
    st = alice.rpc("status")
    tap.ok(st["unread"] == 0, "all acknowledged: nothing unread", repr(st))
    alive(tap, alice, "a huge backlog")
    check_rss(tap, alice, "a huge backlog")

    # veilctl recv: prints, then acknowledges; --peek leaves them.
    tap.ok(alice.stop() == 0, "stopped again")
    ids = insert_backlog(alice, "Bert", [("line %d\x1b[2J" % i).encode() for i in range(300)])
    alice.start()
    rc, out, err = alice.ctl("recv", "--peek", json_out=False, timeout=60)
    tap.ok(rc == 0 and out.count("Bert: line") == 100 and "\x1b" not in out and
           alice.rpc("status")["unread"] == 300,
           "veilctl recv --peek prints the first 100 (escape sequences escaped) and "
           "takes none", repr((rc, out[-200:], err)))
    rc, text, err = alice.ctl("recv", json_out=False, timeout=60)
    tap.ok(rc == 0 and all("Bert: line %d\\x1b[2J" % i in text for i in range(300)) and
           alice.rpc("status")["unread"] == 0,
           "veilctl recv prints all 300, batch after batch, and acknowledges them",
           repr((rc, err, len(text))))
    # A reader that cannot take the output: nothing is acknowledged.
    alice.stop()
    insert_backlog(alice, "Bert", [b"kept"] * 5)
    alice.start()
    r = subprocess.run("%s -s %s recv >/dev/full" % (alice.veilctl, alice.socket),
                       shell=True, capture_output=True, text=True, timeout=30)
    tap.ok(r.returncode != 0 and alice.rpc("status")["unread"] == 5,
           "veilctl recv whose output cannot be written fails and acknowledges nothing",
           repr((r.returncode, r.stderr, alice.rpc("status")["unread"])))
    for d in (alice, bob):
        d.stop()


def t_vanish(tap, w, x):
    """Clients that ask for messages and go away mid-reply, or before it,
    lose nothing: the next receive hands out the same messages."""
    m = x["m"]
    alice = w.daemon("Ali", m)
    bob = w.daemon("Bas", m)
    pair_card(alice, bob)
    alice.stop()
    ids = insert_backlog(alice, "Bas", [os.urandom(5000).hex().encode() for _ in range(400)])
    alice.start()
    for i in range(5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(alice.socket)
        s.sendall(b'{"jsonrpc":"2.0","method":"message.receive","params":{"limit":256},'
                  b'"id":1}\n')
        if i % 2 == 0:
            s.recv(1000)	# part of the reply, then gone
        s.close()
    # A waiting receive whose client vanishes before anything comes.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(alice.socket)
    s.sendall(b'{"jsonrpc":"2.0","method":"message.ack","params":{"ids":[]},"id":1}\n')
    s.close()
    st = alive(tap, alice, "clients that vanish mid-reply")
    tap.ok(st and st["unread"] == 400, "nothing was taken by the replies nobody read",
           repr(st))
    got, sizes, bad = read_all(alice, 1 << 20)
    tap.ok(sorted(i for i, _ in got) == sorted(ids),
           "the next client gets all 400, each once", repr(len(got)))
    check_rss(tap, alice, "clients that vanish mid-reply")
    try:
        alice.rpc("message.ack", ids=["not hex"])
        code = None
    except veil.RpcError as e:
        code = e.code
    tap.ok(code == -32602, "message.ack refuses an id that is not one", repr(code))
    for d in (alice, bob):
        d.stop()


def t_socket_modes(tap, w, x):
    """No socket_group: 0600, and a member of veild's own primary group is
    refused.  With one: 0660 of that group, and its members get in."""
    m = x["m"]
    d = w.daemon("Sol", m)
    mode = stat.S_IMODE(os.stat(d.socket).st_mode)
    tap.ok(mode == 0o600, "no socket_group: the socket is 0600", oct(mode))
    if os.geteuid() != 0:
        tap.skip("socket modes: a member of veild's primary group refused, socket_group's "
                 "members served", "root only: setpriv to another uid and group needs root")
        d.stop()
        return
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            "s.settimeout(3)\n"
            "try:\n"
            "    s.connect(sys.argv[1])\n"
            "    s.sendall(b'{\"jsonrpc\":\"2.0\",\"method\":\"status\",\"id\":1}\\n')\n"
            "    print('reply', repr(s.recv(4096)))\n"
            "except OSError as e:\n"
            "    print('error', e.errno)\n")

    def as_nobody(sock, gid):
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=%d" % gid,
                            "--clear-groups", sys.executable, "-c", code, sock],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() + r.stderr.strip()
    tmp_mode = stat.S_IMODE(os.stat(w.tmp).st_mode)
    try:
        os.chmod(w.tmp, 0o711)
        os.chmod(d.dir, 0o711)
        os.chmod(d.socket, 0o666)
        out = as_nobody(d.socket, os.getegid())
        tap.ok('"result"' not in out, "without socket_group a member of veild's own "
               "primary group is refused even through a 0666 socket", out)
        d.stop()
        g = w.daemon("Sig", m, socket_group="nogroup")
        import grp
        gid = grp.getgrnam("nogroup").gr_gid
        st = os.stat(g.socket)
        tap.ok(stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid,
               "socket_group = nogroup: the socket is 0660 of that group",
               "%o %d" % (st.st_mode, st.st_gid))
        os.chmod(g.dir, 0o711)
        out = as_nobody(g.socket, gid)
        tap.ok(out.startswith("reply b'{") and '"result"' in out,
               "a member of socket_group is served", out + g.log_tail(3))
        g.stop()
    finally:
        os.chmod(w.tmp, tmp_mode)


def t_pending_expiry(tap, w, x):
    """Requests left unanswered for requests.pending_ttl are forgotten."""
    m = x["m"]
    d = w.daemon("Pia", m)
    uri = d.rpc("card.get")["uri"]
    pub = rawpub.publisher(m)
    try:
        wait_subscribed(d, pub, card_topic(uri))
        pub.publish_many(card_topic(uri), requests(uri, 5, "old"))
    finally:
        pub.close()
    tap.ok(wait_for(lambda: d.rpc("status")["contacts"]["pending"] == 5, 10),
           "five pending requests")
    d.stop()
    con = sqlite3.connect(os.path.join(d.state_dir, "veil.db"))
    con.execute("UPDATE contact SET created = created - 8 * 86400000 "
                "WHERE name IN ('old', 'old-2')")
    con.commit()
    con.close()
    d.start()
    ok = wait_for(lambda: d.rpc("status")["contacts"]["pending"] == 3, 10)
    tap.ok(ok and "old" not in d.contacts() and "old-3" in d.contacts(),
           "the two older than pending_ttl (7d) are gone a moment after start, the "
           "others stay", repr(sorted(d.contacts())) + d.log_tail())
    d.stop()


TRANSPORT_TESTS = [
    ("oversized and junk publishes", t_oversize),
    ("REQUEST flood", t_request_flood),
    ("name exhaustion", t_names),
    ("fragment bomb", t_fragment_bomb),
]
LOCAL_TESTS = [
    ("quotas", t_quotas),
    ("huge unread backlog", t_backlog),
    ("clients that vanish", t_vanish),
    ("socket modes", t_socket_modes),
    ("pending expiry", t_pending_expiry),
]

if __name__ == "__main__":
    veil.main(TRANSPORT_TESTS + ([] if XMPP else LOCAL_TESTS), setup=setup,
              world_args={"watchdog": 500})
