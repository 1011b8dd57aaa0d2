#!/usr/bin/env python3
"""test_atrest.py: encryption at rest with real daemons and a real broker: the database, WAL and shared-memory files of a running veild hold none of its secrets (identity key, chain roots and keys, seeds, the pair secret, an unread message) in the clear; a veild without a credential or key file starts locked, connected to nothing, until veilctl unlock (a wrong passphrase refused, slowed and never logged); the passphrase changes without re-encrypting; key files are checked and enrolled; a state directory from before encryption at rest is sealed in place on its first unlock, with nothing of the plaintext left in the file, its free list or the WAL, and its owners keep talking.  Prints TAP."""

import os
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import wait_for  # noqa: E402

FIXTURES = os.path.join(os.environ.get("VEIL_TOP_SRCDIR") or
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
                        "tests", "fixtures", "plain-v3")
NO_KEY = {"unlock": {"key_file": ""}}


def db_files(d):
    return [os.path.join(d.state_dir, n) for n in ("veil.db", "veil.db-wal", "veil.db-shm")]


def found(d, needles):
    """(needle, file) for every needle (bytes) found in d's database files."""
    hits = []
    for p in db_files(d):
        if not os.path.exists(p):
            continue
        data = open(p, "rb").read()
        hits += [(n.hex()[:16], os.path.basename(p)) for n in needles if n in data]
    return hits


def dump(args, stdin=None):
    r = subprocess.run([veil.binary("tests/pairdump")] + args, input=stdin,
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError("pairdump: " + r.stderr)
    return [ln.split() for ln in r.stdout.splitlines()]


def secrets(d):
    return [bytes.fromhex(x[2]) for x in dump([os.path.join(d.state_dir, "veil.db"),
                                               d.key_file])]


def raw(d, sql):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "veil.db"),
                          uri=True, timeout=5)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def connections(m):
    return m.log().count("New client connected")


def t_nothing_in_the_clear(tap, w, x):
    m = x["m"]
    a = w.daemon("Alice", m, accept="auto", identity={"name": "Alice", "obscurity": 3})
    b = w.daemon("Bob", m, identity={"name": "Bob", "obscurity": 3})
    veil.pair(a, b)
    text = "the text of an unread message 7f3a9c"
    b.rpc("message.send", to="Alice", text=text)
    a.rpc("message.send", to="Bob", text="and one the other way")
    tap.ok(wait_for(lambda: a.status()["unread"] == 1, 15), "Alice holds one unread message")
    keys = secrets(a)
    kinds = sorted({k[0] for k in dump([os.path.join(a.state_dir, "veil.db"), a.key_file])})
    tap.ok("identity.sk" in kinds and "shared_seed" in kinds and "tx.root" in kinds and
           "rx.key" in kinds and "secret" in kinds and "peer_inbox.seed" in kinds,
           "%d secrets read through the data key (%s)" % (len(keys), ", ".join(kinds)))
    sealed = raw(a, "SELECT pair FROM contact")[0][0]
    tap.ok(found(a, [sealed]), "the sealed pair is found on disk (the search works)")
    hits = found(a, keys + [text.encode()])
    tap.ok(not hits, "none of them, nor the unread text, is in veil.db, "
           "veil.db-wal or veil.db-shm", repr(hits))
    sk = raw(a, "SELECT identity_sk FROM meta")[0][0]
    tap.ok(len(sk) == 32 + 41, "the identity key is stored sealed (%d bytes)" % len(sk))
    got = [mm["text"] for mm in a.receive_all()]
    tap.ok(got == [text], "the message reads back", repr(got))
    a.stop()
    b.stop()


def t_locked(tap, w, x):
    m = x["m"]
    n0 = connections(m)
    a = w.daemon("Ann", m, accept="auto", **NO_KEY)
    st = a.status()
    tap.ok(st.get("locked") is True and st.get("state") == "new" and
           "veilctl unlock" in st.get("why", ""), "no key: veild starts locked", repr(st))
    for method, params in (("contact.list", {}), ("card.get", {}),
                           ("message.send", {"to": "x", "text": "y"}), ("rotate", {})):
        try:
            a.rpc(method, **params)
            code = None
        except veil.RpcError as e:
            code = e.code
        tap.ok(code == -32007, "%s while locked: -32007" % method, repr(code))
    time.sleep(1.5)
    tap.ok(connections(m) == n0, "connected to nothing while locked")
    rc, _, err = a.ctl("unlock", input=b"first passphrase\n", json_out=False)
    tap.ok(rc == 0, "veilctl unlock sets the first passphrase", err + a.log_tail())
    tap.ok(wait_for(lambda: a.status()["connected"], 15), "unlocked: it connects")
    b = w.daemon("Bo", m)
    veil.pair(a, b)
    a.restart()
    st = a.status()
    tap.ok(st.get("locked") is True and st.get("state") == "locked" and
           st["unlock"]["passphrase"] is True, "after a restart: locked again", repr(st))
    t0 = time.monotonic()
    rc, _, err = a.ctl("unlock", input=b"not it\n")
    t1 = time.monotonic()
    tap.ok(rc != 0 and "wrong passphrase" in err, "a wrong passphrase is refused", err)
    rc, _, err = a.ctl("unlock", input=b"first passphrase\n")
    tap.ok(rc != 0 and "too soon" in err, "and the next try within a second turned away",
           err)
    tap.note("a wrong passphrase took %.2f s (Argon2id interactive)" % (t1 - t0))
    time.sleep(1.05)
    rc, _, err = a.ctl("unlock", input=b"first passphrase\n")
    tap.ok(rc == 0 and not a.status()["locked"], "the right one unlocks", err)
    tap.ok("not it" not in a.log() and "first passphrase" not in a.log(),
           "no passphrase in the log")
    mid = b.rpc("message.send", to="Ann", text="after the unlock")["id"]
    tap.ok(wait_for(lambda: any(mm["id"] == mid for mm in a.receive_all()), 20),
           "and the contact is there: they talk")
    rc, _, err = a.ctl("passphrase", input=b"first passphrase\nsecond passphrase\n")
    tap.ok(rc == 0, "veilctl passphrase changes it", err)
    a.restart()
    rc, _, err = a.ctl("unlock", input=b"first passphrase\n")
    tap.ok(rc != 0 and "wrong" in err, "the old one no longer unlocks", err)
    time.sleep(1.05)
    rc, _, err = a.ctl("unlock", input=b"second passphrase\n")
    tap.ok(rc == 0 and a.contacts()["Bo"]["state"] == "established",
           "the new one does, nothing re-encrypted or lost", err)
    # A key file added: enrolled by the next unlock, then it unlocks alone.
    kf = os.path.join(a.dir, "added.key")
    with open(kf, "wb") as f:
        f.write(os.urandom(48))
    os.chmod(kf, 0o644)
    a.cfg["unlock"]["key_file"] = kf
    a.write_config()
    a.restart()
    st = a.status()
    tap.ok(st["locked"] and "chmod 600" in st.get("why", ""),
           "a key file others may read is refused, saying so", repr(st))
    os.chmod(kf, 0o600)
    a.restart()
    st = a.status()
    tap.ok(st["locked"] and "enrol" in st.get("why", ""),
           "a key file the state directory does not know: still locked", repr(st))
    a.ctl_ok("unlock", input=b"second passphrase\n")
    tap.ok(not a.status()["locked"] and a.status()["unlock"]["keys"] == 1,
           "the passphrase unlocks, and enrols the key file")
    a.restart()
    tap.ok(not a.status()["locked"], "then the key file unlocks it at start")
    with open(kf, "wb") as f:
        f.write(b"short")
    a.restart()
    st = a.status()
    tap.ok(st["locked"] and "32 to 4096 bytes" in st.get("why", ""),
           "a key file too short is refused, saying so", repr(st))
    a.stop()
    b.stop()


def t_migration(tap, w, x):
    """Two daemons' state from before encryption at rest (the fixture was
    made by veild at commit fa3bd02: schema 3, everything in the clear)."""
    m = x["m"]
    a = w.daemon("Alice", m, start=False, accept="auto")
    b = w.daemon("Bob", m, start=False, **NO_KEY)
    plain = {}
    for d, n in ((a, "alice.db"), (b, "bob.db")):
        os.makedirs(d.state_dir, exist_ok=True)
        shutil.copyfile(os.path.join(FIXTURES, n), os.path.join(d.state_dir, "veil.db"))
        con = sqlite3.connect(os.path.join(d.state_dir, "veil.db"))
        sk, seed = con.execute("SELECT identity_sk, shared_seed FROM meta").fetchone()
        blob = con.execute("SELECT pair FROM contact").fetchone()[0]
        body = con.execute("SELECT body FROM rx WHERE taken = 0").fetchone()[0]
        con.close()
        keys = [bytes.fromhex(k[2]) for k in dump(["--blob"], blob.hex() + "\n")]
        plain[d.name] = [sk, seed, blob, body] + keys
    tap.ok(found(a, plain["Alice"]) and found(b, plain["Bob"]),
           "before: the identity keys, pair keys and unread texts are on disk in the clear")
    a.start()
    tap.ok(not a.status()["locked"] and "encrypted now" in a.log(),
           "Alice (a key file) is sealed in place at start", a.log_tail())
    b.start()
    st = b.status()
    tap.ok(st["locked"] and st["state"] == "plaintext",
           "Bob (no key): locked, not encrypted yet", repr(st))
    b.ctl_ok("unlock", input=b"bob's new passphrase\n")
    tap.ok(not b.status()["locked"] and "encrypted now" in b.log(),
           "Bob's first unlock sets the passphrase and seals in place", b.log_tail())
    for d in (a, b):
        fl = raw(d, "PRAGMA freelist_count")[0][0]
        tap.ok(fl == 0, "%s: no free page left (%d)" % (d.name, fl))
        hits = found(d, plain[d.name])
        tap.ok(not hits, "%s: nothing of the plaintext era in veil.db, -wal or -shm"
               % d.name, repr(hits))
    ga = [mm["text"] for mm in a.receive_all()]
    gb = [mm["text"] for mm in b.receive_all()]
    tap.ok(ga == ["plain unread for Alice"] and gb == ["plain unread for Bob"],
           "the unread messages read back", repr((ga, gb)))
    ia = a.rpc("message.send", to="Bob", text="after the migration")["id"]
    ib = b.rpc("message.send", to="Alice", text="and back")["id"]
    tap.ok(wait_for(lambda: any(mm["id"] == ia for mm in b.receive_all()), 30) and
           wait_for(lambda: any(mm["id"] == ib for mm in a.receive_all()), 30),
           "they keep talking, both ways", a.log_tail() + b.log_tail())
    a.stop()
    b.stop()


def setup(w):
    return {"m": w.broker()}


TESTS = [
    ("nothing secret on disk in the clear", t_nothing_in_the_clear),
    ("locked until unlocked", t_locked),
    ("a plaintext state directory sealed in place", t_migration),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 240})
