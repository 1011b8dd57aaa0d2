#!/usr/bin/env python3
"""test_keys.py: wire protocol 2's guarantees about identities and keys, tested with real daemons: a claimed key cannot pair, one daemon per state directory, nonces stay unique after a rollback, old keys leave the disk; prints TAP."""

import os
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import wait_for  # noqa: E402

PERIOD_S = 4	# keys.period for the key-erasure test: short, so periods pass


def db_rows(d, sql, args=()):
    """Reads d's database from the side (WAL mode lets a reader in)."""
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "veil.db"),
                          uri=True, timeout=5)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def t_claimed_key(tap, w, x):
    """Mallory's daemon claims Bob's public key (her stored public key is
    replaced with his; her secret key stays hers).  Her request reaches
    Alice, who accepts it, yet it never becomes an established contact:
    establishing needs a DH only the holder of Bob's secret key can
    compute.  Meanwhile the claim blocks nothing: Bob still pairs with
    Alice and they talk."""
    m = x["m"]
    alice = w.daemon("Alice", m, accept="ask")
    bob = w.daemon("Bob", m)
    mallory = w.daemon("Mallory", m, identity={"name": "Bob"})
    bob_pk = db_rows(bob, "SELECT identity_pk FROM meta")[0][0]
    mal_pk = db_rows(mallory, "SELECT identity_pk FROM meta")[0][0]
    tap.ok(len(bob_pk) == 32 and bob_pk != mal_pk, "Bob and Mallory have keys of their own")
    tap.ok(mallory.stop() == 0, "Mallory stopped to swap her public key")
    con = sqlite3.connect(os.path.join(mallory.state_dir, "veil.db"))
    con.execute("UPDATE meta SET identity_pk = ?", (bob_pk,))
    con.commit()
    con.close()
    mallory.start()

    card = alice.rpc("card.get")["uri"]
    mallory.rpc("contact.add", card=card, name="Alice")
    pending = wait_for(lambda: [c for c in alice.contacts().values()
                                if c["state"] == "pending"], 15)
    tap.ok(pending and pending[0]["peer_name"] == "Bob",
           "Alice sees a request claiming to be Bob", repr(alice.contacts()))
    fake = pending[0]["name"] if pending else None
    tap.ok(pending and pending[0]["key_proven"] is False,
           "the request's key is marked as not proven", repr(pending))
    if fake:
        alice.rpc("contact.accept", name=fake)
    # Mallory keeps resending her REQUEST (her side cannot take Alice's
    # ACCEPT) and Alice answers each copy with the ACCEPT again: let
    # several rounds pass, and prove they did.
    copies = wait_for(lambda: alice.log().count("REQUEST again, ACCEPT again") >= 2
                      or mallory.log().count("bad ACCEPT") >= 2, 30)
    tap.ok(copies, "the claimed request went several rounds",
           alice.log_tail() + mallory.log_tail())
    st = alice.contacts().get(fake, {}).get("state")
    tap.ok(st == "accepted",
           "Alice never established the claimed Bob (state %s)" % st,
           repr(alice.contacts()))
    tap.ok(mallory.contacts().get("Alice", {}).get("state") != "established",
           "nor did Mallory", repr(mallory.contacts()))
    try:
        alice.rpc("message.send", to=fake, text="for the real Bob")
        sent = True
    except veil.RpcError:
        sent = False
    tap.ok(not sent, "Alice cannot send to the unproven contact")
    try:
        alice.rpc("contact.verify", name=fake, mark=True)
        marked = True
    except veil.RpcError:
        marked = False
    tap.ok(not marked, "nor mark its fingerprint as verified")

    # The real Bob: not taken for a copy, not refused, not "already a
    # contact" because of the claim.
    bob.rpc("contact.add", card=card, name="Alice")
    real = wait_for(lambda: [c["name"] for c in alice.contacts().values()
                             if c["state"] == "pending" and c["name"] != fake], 15)
    name = real[0] if real else None
    tap.ok(name is not None, "the real Bob's request is a request of its own",
           repr(alice.contacts()))
    if name:
        alice.rpc("contact.accept", name=name)
    ok = name and wait_for(lambda: alice.contacts()[name]["state"] == "established" and
                           bob.contacts()["Alice"]["state"] == "established", 15)
    tap.ok(ok and alice.contacts()[name]["key_proven"] is True,
           "the real Bob pairs with Alice despite the claim",
           repr(alice.contacts()) + alice.log_tail())
    mid = bob.rpc("message.send", to="Alice", text="it is really me")["id"]
    got = wait_for(lambda: [mm for mm in alice.receive_all() if mm["id"] == mid], 15)
    tap.ok(got and got[0]["from"] == name, "and they talk", repr(got))
    # Alice adding Bob's card is "already a contact" now that Bob is
    # proven, not before.
    try:
        alice.rpc("contact.add", card=bob.rpc("card.get")["uri"])
        dup = None
    except veil.RpcError as e:
        dup = e.code
    tap.ok(dup == -32001, "Bob's card is 'already a contact' once his key is proven",
           repr(dup))
    for d in (alice, bob, mallory):
        d.stop()


def t_one_daemon(tap, w, x):
    """A second veild on the same state directory (another socket) is
    refused, naming the first one's pid; once the first is gone it starts."""
    m = x["m"]
    a = w.daemon("Solo", m)
    twin = w.daemon("Twin", m, start=False, dirname="twin", state_dir=a.state_dir)
    try:
        twin.start(timeout=5)
        started = True
    except RuntimeError as e:
        started = False
        why = str(e)
    tap.ok(not started, "a second veild on the same state_dir does not start")
    tap.ok(not started and "in use by another veild" in why and
           str(a.proc.pid) in why, "the error names the other daemon's pid",
           why if not started else "")
    tap.ok(a.alive() and a.rpc("status")["connected"] in (True, False),
           "the first one runs on, untouched")
    a.stop()
    twin.start()
    tap.ok(twin.alive(), "after the first stopped, the second starts")
    twin.stop()


def capture(m, path):
    """Every frame published to the broker, hex, one per line."""
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(m.port), "-t", "#",
         "-F", "%x", "-q", "0", "-V", "mqttv5"],
        stdout=open(path, "w"), stderr=subprocess.DEVNULL)


def t_rollback(tap, w, x):
    """Alice's state directory is copied, she sends, the copy is put back
    (a restored backup, a VM snapshot), she sends again: her counters went
    back, so the same key and sequence numbers are used twice.  No nonce
    repeats at the broker (the random half of each nonce differs) although
    sequence numbers (the tags) do; Bob gets everything exactly once."""
    m = x["m"]
    cap_path = os.path.join(w.tmp, "frames.hex")
    sub = capture(m, cap_path)
    x["hour"] = int(time.time()) // 3600
    a = w.daemon("Ann", m, accept="auto", keys={"period": "1h"})
    b = w.daemon("Ben", m, keys={"period": "1h"})
    veil.pair(a, b)
    tap.ok(a.stop() == 0, "rollback: Ann stopped for the snapshot")
    snap = a.state_dir + ".snap"
    shutil.copytree(a.state_dir, snap)
    a.start()
    sent = {}
    for i in range(5):
        t = "before the rollback %d" % i
        sent[a.rpc("message.send", to="Ben", text=t)["id"]] = t
    got = {}

    def drain():
        for mm in b.receive_all():
            got.setdefault(mm["id"], []).append(mm["text"])
        return all(i in got for i in sent)
    tap.ok(wait_for(drain, 20), "rollback: the first five arrive")
    tap.ok(a.stop() == 0, "rollback: Ann stopped again")
    shutil.rmtree(a.state_dir)
    shutil.copytree(snap, a.state_dir)
    a.start()
    for i in range(5):
        t = "after the rollback %d" % i
        sent[a.rpc("message.send", to="Ben", text=t)["id"]] = t
    ok = wait_for(lambda: drain() and a.contacts()["Ben"]["queued"] == 0, 60)
    tap.ok(ok, "rollback: all ten arrive and Ann's outbox drains",
           repr((sorted(got), a.contacts())) + a.log_tail() + b.log_tail())
    dups = {i: v for i, v in got.items() if len(v) > 1}
    tap.ok(not dups and all(got.get(i) == [t] for i, t in sent.items()),
           "rollback: each exactly once, texts intact", repr(dups))
    time.sleep(0.5)
    sub.terminate()
    sub.wait(5)
    frames = [ln.strip() for ln in open(cap_path) if len(ln.strip()) == 2048]
    # A frame retransmitted byte for byte (the ACK was slow) repeats its tag
    # and nonce harmlessly: what counts is one tag or nonce on two
    # different frames.
    by_tag, by_nonce = {}, {}
    for f in frames:
        by_tag.setdefault(f[:16], set()).add(f)
        by_nonce.setdefault(f[:48], set()).add(f)
    seq_twice = [t for t, v in by_tag.items() if len(v) > 1]
    nonce_twice = [n for n, v in by_nonce.items() if len(v) > 1]
    tap.ok(len(frames) > 20, "rollback: %d frames captured (%d distinct)"
           % (len(frames), len(set(frames))))
    if not seq_twice and int(time.time()) // 3600 != x["hour"]:
        tap.note("rollback: an hour boundary passed, new keys: seq reuse not shown")
    else:
        tap.ok(len(seq_twice) > 0,
               "rollback: sequence numbers were used twice, for different frames "
               "(%d tags)" % len(seq_twice))
    tap.ok(not nonce_twice,
           "rollback: no nonce sealed two different frames (%d frames, %d distinct)"
           % (len(frames), len(set(frames))), repr(nonce_twice[:3]))
    a.stop()
    b.stop()


def pair_keys(d, contact):
    """Every root and derived key in d's stored pair with contact (the
    pair is sealed on disk: tests/pairdump opens it with d's key file)."""
    out = subprocess.run([veil.binary("tests/pairdump"),
                          os.path.join(d.state_dir, "veil.db"), d.key_file, contact],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError("pairdump: " + out.stderr)
    return [ln.split() for ln in out.stdout.splitlines()]


def on_disk(d, hexkey):
    """The first of d's database files holding these bytes, or None."""
    key = bytes.fromhex(hexkey)
    for name in ("veil.db", "veil.db-wal", "veil.db-shm"):
        p = os.path.join(d.state_dir, name)
        if os.path.exists(p) and key in open(p, "rb").read():
            return name
    return None


def sealed_pair(d, contact):
    """The pair column as stored: sealed under the data key."""
    return db_rows(d, "SELECT pair FROM contact WHERE name = ?", (contact,))[0][0]


def t_old_keys_leave(tap, w, x):
    """Keys ratchet every period.  On disk they are sealed under the data
    key (never found in the clear); once a period and its grace are over,
    the stored pair holds none of its keys any more, and the sealed copy
    that held them is gone from veil.db and veil.db-wal too (the WAL is
    checkpointed and truncated, freed pages zeroed): even with the data
    key, a copy of the disk taken then opens no ended period."""
    m = x["m"]
    fast = {"keys": {"period": "%ds" % PERIOD_S, "heal": "0s"}}
    a = w.daemon("Kim", m, accept="auto", **fast)
    b = w.daemon("Lee", m, **fast)
    veil.pair(a, b)
    ids = {b.rpc("message.send", to="Kim", text="k%d" % i)["id"] for i in range(3)}
    seen = set()

    def recv():
        seen.update(mm["id"] for mm in a.receive_all())
        return ids <= seen
    tap.ok(wait_for(recv, 15), "old keys: traffic under the first keys")
    old = pair_keys(a, "Lee")
    sealed = sealed_pair(a, "Lee")
    tap.ok(old and any(k[0].endswith(".root") for k in old),
           "old keys: %d keys read from Kim's stored pair" % len(old), repr(old))
    tap.ok(on_disk(a, sealed.hex()) is not None,
           "old keys: the sealed pair is on disk (the search finds stored bytes)")
    clear = [(k[0], on_disk(a, k[2])) for k in old if on_disk(a, k[2])]
    tap.ok(not clear, "old keys: none of them is on disk in the clear", repr(clear))
    periods = {int(k[1]) for k in old}
    # Two periods and their grace (min(P/4, 120 s) = 1 s), plus the sweep
    # and a checkpoint (5 s).
    moved = wait_for(lambda: min(int(k[1]) for k in pair_keys(a, "Lee")) > max(periods)
                     and on_disk(a, sealed.hex()) is None, 2 * PERIOD_S + 15,
                     interval=0.5)
    new = pair_keys(a, "Lee")
    tap.ok(moved, "old keys: the chains moved on past periods %s, and the sealed "
           "pair that held their keys left veil.db and veil.db-wal"
           % sorted(periods), repr(new) + repr(on_disk(a, sealed.hex())))
    left = set(k[2] for k in old) & set(k[2] for k in new)
    tap.ok(not left, "old keys: the stored pair holds no key of periods %s"
           % sorted(periods), repr(left))
    mid = b.rpc("message.send", to="Kim", text="still talking")["id"]
    tap.ok(wait_for(lambda: any(mm["id"] == mid for mm in a.receive_all()), 15),
           "old keys: they still talk under the new keys")
    a.stop()
    b.stop()


def setup(w):
    return {"m": w.broker()}


TESTS = [
    ("a claimed key cannot pair", t_claimed_key),
    ("one daemon per state directory", t_one_daemon),
    ("nonces after a rollback", t_rollback),
    ("old keys leave the disk", t_old_keys_leave),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 200})
