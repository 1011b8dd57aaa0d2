#!/usr/bin/env python3
"""test_backup.py: encrypted backups with real daemons and a real broker: a user with three contacts, unread and queued messages backs up, talks on, rotates, loses the state directory and restores it into a fresh one; every contact and the restored daemon talk both ways, nothing the backup held is lost or delivered twice, and no frame after the restore is sealed under a key of the backup.  Bad input (wrong passphrase, a cut or tampered file, a newer format, the wrong recovery key, a state directory in use) is refused, saying which, with nothing overwritten.  Scheduled backups sealed to a backup key.  Prints TAP."""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import wait_for  # noqa: E402

PERIOD_S = 10		# keys.period: several periods pass during the test
KEYS = {"keys": {"period": "%ds" % PERIOD_S, "heal": "0s"}}
BACKUP_PASS = "correct horse battery staple"
STATE_PASS = "a new one for the new machine"


def capture(m, path):
    """Every frame published at the broker, hex, one per line."""
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(m.port), "-t", "#",
         "-F", "%x", "-q", "0", "-V", "mqttv5"],
        stdout=open(path, "w"), stderr=subprocess.DEVNULL)


def frames(path, size=1024):
    return [bytes.fromhex(ln.strip()) for ln in open(path)
            if len(ln.strip()) == 2 * size]


def kdf(key, i, ctx=b"veildir2"):
    """libsodium crypto_kdf_derive_from_key (BLAKE2b, salt = u64le id,
    personal = ctx), 32 bytes."""
    return hashlib.blake2b(b"", digest_size=32, key=key,
                           salt=struct.pack("<Q", i) + b"\0" * 8,
                           person=ctx + b"\0" * 8).digest()


def chain_tags(root, period, until, seqs):
    """The lookup tags (first 8 bytes of a frame) a transmit chain whose
    root of `period` is root would use in periods period..until for the
    sequence numbers seqs (protocol.md 2.1)."""
    out = set()
    for _ in range(period, until + 1):
        nkey = kdf(root, 2)
        for s in seqs:
            out.add(hashlib.blake2b(struct.pack(">Q", s), digest_size=16,
                                    key=nkey).digest()[:8])
        root = kdf(root, 3)
    return out


def secrets(d):
    """tests/pairdump's lines for d's database: (what, period, hex)."""
    r = subprocess.run([veil.binary("tests/pairdump"),
                        os.path.join(d.state_dir, "veil.db"), d.key_file],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError("pairdump: " + r.stderr)
    return [ln.split() for ln in r.stdout.splitlines()]


def texts(msgs):
    out = {}
    for m in msgs:
        out.setdefault(m.get("text"), []).append(m["from"])
    return out


def restore(d, path, secret, new=None, recovery=False):
    """veilctl backup restore PATH on d: (exit status, stdout, stderr)."""
    lines = secret + "\n" + (new + "\n" if new is not None else "")
    args = ["backup", "restore", path] + (["--recovery-key"] if recovery else [])
    return d.ctl(*args, input=lines.encode())


def t_restore(tap, w, x):
    m = x["m"]
    pre = os.path.join(w.tmp, "frames-before.hex")
    post = os.path.join(w.tmp, "frames-after.hex")
    cap = capture(m, pre)
    a = w.daemon("Alice", m, accept="auto", **KEYS)
    b = w.daemon("Bob", m, **KEYS)
    c = w.daemon("Carol", m, **KEYS)
    d = w.daemon("Dave", m, **KEYS)
    for p in (b, c, d):
        veil.pair(a, p)
    ids = {p.name: p.rpc("message.send", to="Alice", text="hello from %s" % p.name)["id"]
           for p in (b, c, d)}
    took = set()
    veil.expect(lambda: took.update(mm["id"] for mm in a.receive_all()) or
                took >= set(ids.values()), 20,
                "Alice reads her contacts' first messages", a.log_tail)
    # Held by the backup: three unread at Alice, two queued for Dave.
    for p, t in ((b, "unread 1"), (b, "unread 2"), (c, "unread 3")):
        p.rpc("message.send", to="Alice", text=t)
    tap.ok(wait_for(lambda: a.status()["unread"] == 3, 20),
           "three messages wait unread at Alice", repr(a.status()))
    d.stop()
    for t in ("queued 1", "queued 2"):
        a.rpc("message.send", to="Dave", text=t)
    tap.ok(a.contacts()["Dave"]["queued"] == 2, "two messages queued for Dave (offline)")
    old = secrets(a)	# the chains as they are now: the backup's, or earlier
    bk = os.path.join(w.tmp, "alice.vbk")
    out = a.ctl_ok("backup", "create", bk, input=(BACKUP_PASS + "\n").encode())
    tap.ok(os.path.getsize(bk) > 0 and out.get("contacts") == 3 and
           out.get("unread") == 3 and out.get("outbox") >= 2,
           "veilctl backup create: 3 contacts, 3 unread, 2 queued", repr(out))
    tap.ok(os.stat(bk).st_mode & 0o077 == 0, "the backup file is mode 0600")
    raw = open(bk, "rb").read()
    tap.ok(not any(bytes.fromhex(k[2]) in raw for k in old) and
           b"unread 1" not in raw and b"queued 1" not in raw,
           "the backup file holds none of the keys or texts in the clear")

    # After the backup: talk on, then move to new inboxes and keys.
    sent = [a.rpc("message.send", to="Bob", text="after the backup %d" % i)["id"]
            for i in range(2)]
    took = set()
    veil.expect(lambda: took.update(mm["id"] for mm in b.receive_all()) or
                set(sent) <= took, 20,
                "Bob gets Alice's messages sent after the backup", b.log_tail)
    a.rpc("rotate")
    tap.ok(wait_for(lambda: a.contacts()["Bob"]["queued"] == 0 and
                    a.contacts()["Carol"]["queued"] == 0, 30),
           "after the backup Alice re-keyed Bob and Carol (rotate)", a.log_tail())
    mid = a.rpc("message.send", to="Carol", text="after the rotation")["id"]
    veil.expect(lambda: mid in {mm["id"] for mm in c.receive_all()}, 20,
                "Carol gets it under the new keys", c.log_tail)
    tap.ok(a.stop() == 0, "Alice stopped")
    cap.terminate()
    cap.wait(5)
    shutil.rmtree(a.state_dir)

    # A fresh state directory, unlocked by a passphrase of its own.
    cap = capture(m, post)
    a2 = w.daemon("Alice", m, dirname="alice2", unlock={"key_file": ""}, **KEYS)
    st = a2.status()
    tap.ok(st.get("locked") is True and st.get("state") == "new",
           "the new daemon starts locked, with a new state directory", repr(st))
    rc, out, err = restore(a2, bk, BACKUP_PASS, STATE_PASS)
    tap.ok(rc == 0 and out.get("contacts") == 3 and out.get("unread") == 3 and
           out.get("outbox") >= 2, "veilctl backup restore into it", err + repr(out) +
           a2.log_tail())
    st = a2.status()
    tap.ok(st.get("locked") is False and st["contacts"]["established"] == 3,
           "restored and unlocked: three established contacts", repr(st))
    d.start()
    tap.ok(wait_for(lambda: not any(cc["resetting"] for cc in a2.contacts().values()),
                    60), "every contact's keys renewed (RESET answered)",
           repr(a2.contacts()) + a2.log_tail())
    tap.ok("it restored a backup" in b.log() and "it restored a backup" in d.log(),
           "Bob and Dave were told (contact update after the restore)")

    got = texts(a2.receive_all())
    tap.ok(got.get("unread 1") == ["Bob"] and got.get("unread 2") == ["Bob"] and
           got.get("unread 3") == ["Carol"],
           "the three unread messages, once each", repr(got))
    tap.ok(not any(t and t.startswith("hello from") for t in got),
           "messages read before the backup are not delivered again", repr(got))
    dq = {}

    def dave_got():
        for k, v in texts(d.receive_all()).items():
            dq.setdefault(k, []).extend(v)
        return "queued 1" in dq and "queued 2" in dq
    tap.ok(wait_for(dave_got, 60), "Dave gets the two messages the backup held queued",
           repr(dq) + a2.log_tail() + d.log_tail())
    time.sleep(1)
    dave_got()
    tap.ok(dq.get("queued 1") == ["Alice"] and dq.get("queued 2") == ["Alice"],
           "each once", repr(dq))

    # Both ways, with every contact.
    out_ids = {p.name: a2.rpc("message.send", to=p.name, text="restored to %s" % p.name)["id"]
               for p in (b, c, d)}
    in_ids = {p.rpc("message.send", to="Alice", text="back to you from %s" % p.name)["id"]
              for p in (b, c, d)}
    for p in (b, c, d):
        veil.expect(lambda p=p: out_ids[p.name] in {mm["id"] for mm in p.receive_all()},
                    30, "%s gets the restored Alice's message" % p.name, p.log_tail)
    tap.ok(True, "Bob, Carol and Dave get messages from the restored Alice")
    seen = {}

    def a2_got():
        for mm in a2.receive_all():
            seen.setdefault(mm["id"], []).append(mm["text"])
        return in_ids <= set(seen)
    tap.ok(wait_for(a2_got, 30), "the restored Alice gets messages from all three",
           repr(seen) + a2.log_tail())
    tap.ok(all(len(v) == 1 for v in seen.values()), "each once", repr(seen))
    tap.ok(wait_for(lambda: all(cc["queued"] == 0 for cc in a2.contacts().values()), 30),
           "the restored Alice's outbox drains", repr(a2.contacts()))
    cap.terminate()
    cap.wait(5)

    # No frame after the restore was sealed under a key of the backup:
    # the tags every old transmit chain would put on its frames, for
    # every period since, never appear; before the loss they did.
    now_p = int(time.time()) // PERIOD_S + 1
    seqs = list(range(0, 512)) + list(range(512, 1 << 21, 256))
    tags = set()
    for what, period, root in old:
        if what in ("tx.root", "tx_next.root"):
            tags |= chain_tags(bytes.fromhex(root), int(period), now_p, seqs)
    before = [f for f in frames(pre) if f[:8] in tags]
    after = [f for f in frames(post) if f[:8] in tags]
    tap.ok(len(tags) > 0 and before, "%d frames before the loss carry tags of the "
           "backup's chains (the check finds them)" % len(before))
    tap.ok(len(frames(post)) > 20 and not after,
           "none of the %d frames after the restore does" % len(frames(post)),
           "%d do" % len(after))
    for p in (a2, b, c, d):
        p.stop()


def t_bad_input(tap, w, x):
    """Each bad backup, and a state directory in use, refused saying
    which; the target stays as it was (still new, nothing left over)."""
    m = x["m"]
    a = w.daemon("Ann", m, accept="auto", **KEYS)
    b = w.daemon("Ben", m, **KEYS)
    veil.pair(a, b)
    bk = os.path.join(w.tmp, "ann.vbk")
    a.ctl_ok("backup", "create", bk, input=b"pw\n")
    rc, _, err = a.ctl("backup", "create", bk, input=b"pw\n")
    tap.ok(rc != 0 and "not overwritten" in err and open(bk, "rb").read()[:8] == b"VEILBKUP",
           "create refuses an existing file and leaves it alone", err)
    raw = open(bk, "rb").read()
    t = w.daemon("Target", m, unlock={"key_file": ""}, **KEYS)

    def variant(name, data):
        p = os.path.join(w.tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def untouched():
        st = t.status()
        return (st.get("locked") is True and st.get("state") == "new" and
                not os.path.exists(os.path.join(t.state_dir, "veil.db.restore")))

    hdr = 12 + 88 + 24 if raw[10] == 2 else 12 + 104 + 24
    newer = bytearray(raw)
    newer[9] = 2
    tampered = bytearray(raw)
    tampered[hdr + 100] ^= 0x01
    cases = [
        ("wrong passphrase", bk, "not the one", "wrong passphrase", -32008),
        ("a file cut short", variant("cut.vbk", raw[:len(raw) - 1000]), "pw",
         "truncated", -32009),
        ("a file without its last chunk", variant("cut2.vbk", raw[:hdr]), "pw",
         "truncated", -32009),
        ("a tampered file", variant("tampered.vbk", bytes(tampered)), "pw",
         "tampered", -32009),
        ("a newer format", variant("newer.vbk", bytes(newer)), "pw", "newer", -32009),
        ("not a backup", variant("junk.vbk", os.urandom(4000)), "pw",
         "not a veil backup", -32009),
        ("bytes after the end", variant("trail.vbk", raw + b"x"), "pw",
         "after the end", -32009),
        ("an empty file", variant("empty.vbk", b""), "pw", "empty", -32009),
    ]
    for what, path, pw, words, code in cases:
        time.sleep(1.05)	# the rate limit after a wrong passphrase
        with open(path, "rb") as f:
            try:
                r = veil_restore_rpc(t, f, pw)
                e = None
            except veil.RpcError as ex:
                r, e = None, ex
        tap.ok(e is not None and e.code == code and words in e.message and untouched(),
               "restore refuses %s (%s), the state directory untouched" % (what, words),
               repr((r, e and (e.code, e.message))))
    rc, _, err = restore(t, bk, "not the one", "x")
    tap.ok(rc != 0 and "wrong passphrase" in err, "veilctl says so too", err)
    rc, _, err = restore(t, bk, "pw", "x")
    tap.ok(rc != 0 and "too soon" in err and untouched(),
           "a second try within a second is turned away (rate limit)", err)
    tap.ok("not the one" not in t.log() and "not the one" not in a.log(),
           "no passphrase in any log")
    # A state directory in use (contacts, a card handed out): refused.
    time.sleep(1.05)
    before = b.contacts()
    rc, _, err = restore(b, bk, "pw", None)
    tap.ok(rc != 0 and "not empty" in err and b.contacts() == before,
           "restore into Ben's state directory (in use) is refused, Ben unchanged",
           err + repr(b.contacts()))
    # The recovery key of another backup key.
    kg = a.ctl_ok("backup", "keygen")
    kg2 = a.ctl_ok("backup", "keygen")
    sealed = os.path.join(w.tmp, "sealed.vbk")
    a.ctl_ok("backup", "create", sealed, "--public-key", kg["public_key"])
    rc, _, err = restore(t, sealed, kg2["recovery_key"], "x", recovery=True)
    tap.ok(rc != 0 and "another backup key" in err and untouched(),
           "a backup sealed to another key is refused, saying so", err)
    bad = kg["recovery_key"][:-1] + ("A" if kg["recovery_key"][-1] != "A" else "B")
    rc, _, err = restore(t, sealed, bad, "x", recovery=True)
    tap.ok(rc != 0 and "typo" in err and untouched(), "a mistyped recovery code: a typo",
           err)
    rc, _, err = restore(t, sealed, "pw", "x")
    tap.ok(rc != 0 and "recovery key" in err and untouched(),
           "a sealed backup given a passphrase: told to use the recovery key", err)
    # And then the good one works: the same identity as Ann's.
    rc, out, err = restore(t, sealed, kg["recovery_key"], "pw2", recovery=True)
    tap.ok(rc == 0 and out.get("contacts") == 1, "the right recovery code restores it",
           err + t.log_tail())
    card_a = veil_card_key(a.rpc("card.get")["uri"])
    card_t = veil_card_key(t.rpc("card.get")["uri"])
    tap.ok(card_a == card_t, "the restored identity is Ann's")
    for p in (a, b, t):
        p.stop()


def veil_card_key(uri):
    """The identity public key in a card (protocol.md 3)."""
    import base64
    raw = base64.urlsafe_b64decode(uri[5:] + "=" * (-len(uri[5:]) % 4))
    cidlen = raw[2]
    return raw[3 + cidlen:3 + cidlen + 32]


def veil_restore_rpc(d, f, passphrase):
    """backup.restore over the socket, the file passed along (SCM_RIGHTS)."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(d.socket)
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "backup.restore",
                      "params": {"passphrase": passphrase,
                                 "new_passphrase": "unused"}}).encode() + b"\n"
    s.sendmsg([req], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                       struct.pack("i", f.fileno()))])
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    msg = json.loads(buf.split(b"\n")[0])
    if "error" in msg:
        raise veil.RpcError(msg["error"]["code"], msg["error"]["message"])
    return msg["result"]


def t_scheduled(tap, w, x):
    """backup.dir: written without any passphrase, sealed to the backup
    public key, the newest `keep` kept; one of them restores with the
    recovery code."""
    m = x["m"]
    r = subprocess.run([veil.binary("tools/veilctl"), "--json", "backup", "keygen"],
                       capture_output=True, text=True, timeout=10)
    kg = json.loads(r.stdout)
    tap.ok(kg["public_key"].startswith("veilbk:") and kg["recovery_key"].startswith("VRK1-"),
           "backup keygen prints a public key and a recovery code")
    bdir = os.path.join(w.tmp, "backups")
    a = w.daemon("Ada", m, accept="auto",
                 backup={"dir": bdir, "interval": "1d", "keep": 2,
                         "public_key": kg["public_key"]}, **KEYS)
    b = w.daemon("Bea", m, **KEYS)
    veil.pair(a, b)
    b.rpc("message.send", to="Ada", text="keep me")
    wait_for(lambda: a.status()["unread"] == 1, 15)
    first = wait_for(lambda: [f for f in os.listdir(bdir) if f.endswith(".vbk")]
                     if os.path.isdir(bdir) else None, 20)
    tap.ok(first, "a scheduled backup is written soon after the start", repr(first))
    paths = []
    for _ in range(3):
        time.sleep(1.1)	# one name a second
        paths.append(a.ctl_ok("backup", "now")["path"])
    left = sorted(f for f in os.listdir(bdir) if f.endswith(".vbk"))
    tap.ok(len(left) == 2 and [os.path.basename(p) for p in paths[-2:]] == left,
           "keep = 2: the two newest are kept", repr(left))
    tap.ok(all(os.stat(os.path.join(bdir, f)).st_mode & 0o077 == 0 for f in left),
           "mode 0600")
    t = w.daemon("Ada", m, dirname="ada2", unlock={"key_file": ""}, **KEYS)
    rc, out, err = restore(t, paths[-1], kg["recovery_key"], "pw", recovery=True)
    tap.ok(rc == 0 and out.get("contacts") == 1 and out.get("unread") == 1,
           "the newest restores with the recovery code", err + repr(out))
    tap.ok(texts(t.receive_all()).get("keep me") == ["Bea"],
           "with its unread message")
    # Into a daemon that runs unlocked by its key file with a new, unused
    # identity (a fresh install under systemd): it is replaced, and the
    # key file unlocks the restored state (no new passphrase asked).
    k = w.daemon("Ada", m, dirname="ada3", **KEYS)
    tap.ok(not k.status()["locked"], "a fresh daemon with a key file runs unlocked")
    rc, out, err = k.ctl("backup", "restore", paths[-1], "--recovery-key",
                         input=(kg["recovery_key"] + "\n").encode())
    tap.ok(rc == 0 and out.get("contacts") == 1 and not k.status()["locked"],
           "restore replaces its unused identity, unlocked by the key file",
           err + repr(out) + k.log_tail())
    tap.ok(veil_card_key(k.rpc("card.get")["uri"]) == veil_card_key(a.rpc("card.get")["uri"]),
           "it is Ada now")
    # A fresh identity whose card was handed out is in use: someone may
    # be pairing with it.  A restore must not replace it.
    u = w.daemon("Ada", m, dirname="ada4", **KEYS)
    card = u.rpc("card.get")["uri"]
    rc, out, err = u.ctl("backup", "restore", paths[-1], "--recovery-key",
                         input=(kg["recovery_key"] + "\n").encode())
    tap.ok(rc != 0 and "not empty" in err and
           veil_card_key(u.rpc("card.get")["uri"]) == veil_card_key(card),
           "a fresh identity whose card was shown is not replaced by a restore",
           err + repr(out))
    u.stop()
    # veilctl backup create with no veild: an error, and no file left.
    nofile = os.path.join(w.tmp, "never.vbk")
    r = subprocess.run([veil.binary("tools/veilctl"), "-s", os.path.join(w.tmp, "no.sock"),
                        "backup", "create", nofile], input=b"pw\npw\n",
                       capture_output=True, timeout=30)
    tap.ok(r.returncode != 0 and not os.path.exists(nofile),
           "backup create without a veild fails and leaves no file", r.stderr.decode())
    k.restart()
    tap.ok(not k.status()["locked"] and k.contacts()["Bea"]["state"] == "established",
           "and after a restart the key file still unlocks it")
    for p in (a, b, t, k):
        p.stop()


def setup(w):
    return {"m": w.broker()}


TESTS = [
    ("restore after losing the state directory", t_restore),
    ("bad backups and a state directory in use", t_bad_input),
    ("scheduled backups and recovery codes", t_scheduled),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 300})
