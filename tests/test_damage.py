#!/usr/bin/env python3
"""test_damage.py: a damaged veil.db, a full disk, a read-only state directory: veild refuses or stops accepting with a clear error, loses nothing it acknowledged, and recovers when the cause is gone; prints TAP.

The full disk is a small tmpfs, the read-only directory a read-only bind
mount: both need a mount namespace of our own, so that nothing is
mounted on the host.  The file re-runs itself under unshare(1): as root
`unshare -m`, else `unshare -Urm` (a user namespace whose root is us).
Where neither can be had the tests that need mounts are skipped with the
reason; the damaged-file tests run anyway."""

import collections
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import RpcError, wait_for  # noqa: E402

NS_ENV = "VEIL_DAMAGE_NS"


def enter_namespace():
    """Re-runs this file in a mount namespace of its own; returns only
    when that cannot be done (the reason), or inside it (None)."""
    state = os.environ.get(NS_ENV)
    if state == "1":
        return None
    if state:
        return state	# the outer run found no way in
    unshare = shutil.which("unshare")
    if unshare is None:
        return "no unshare(1) (util-linux)"
    argv = [unshare, "-m", "--propagation", "private"] if os.geteuid() == 0 else \
        [unshare, "-Urm"]
    probe = subprocess.run(argv + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "cannot make a mount namespace (%s): %s" % (
            " ".join(argv[1:]), probe.stderr.strip())
    sys.stdout.flush()
    os.environ[NS_ENV] = "1"
    os.execv(unshare, argv + [sys.executable, os.path.abspath(__file__)])


def mount(*args):
    r = subprocess.run(["mount"] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("mount %s: %s" % (" ".join(args), r.stderr.strip()))


def fill(path):
    """Writes path until the file system is full; its size."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    n += f.write(b"\0" * chunk)
                except OSError:
                    break
    return n


def settle(sender, peer, receiver, patience=30):
    """Waits for the sender's outbox to peer to drain and the receiver's
    frame counter to stand still; every message the receiver holds."""
    wait_for(lambda: sender.contacts()[peer]["queued"] == 0, patience)
    veil.wait_stable(lambda: receiver.status()["frames"]["in"], still=1.0, timeout=patience)
    return receiver.receive_all()


def exactly_once(tap, what, got, want):
    count = collections.Counter(m.get("text") for m in got)
    missing = [t for t in want if count[t] == 0]
    extra = {t: n for t, n in count.items() if n > 1 or t not in want}
    tap.ok(not missing and not extra,
           "%s: all %d delivered exactly once" % (what, len(want)),
           "missing %r, extra or twice %r" % (missing[:5], extra))


def send_code(d, text, **kw):
    """(result or None, error code or None, error message)."""
    try:
        return d.rpc("message.send", to=kw.get("to", "Bob"), text=text), None, ""
    except RpcError as e:
        return None, e.code, e.message


def setup(w):
    m = w.broker()
    bob = w.daemon("Bob", m, accept="auto")
    return {"m": m, "bob": bob, "ns": NS_REASON is None}


# --- a damaged veil.db ---------------------------------------------------

def t_damaged_file(tap, w, x):
    m, bob = x["m"], x["bob"]
    eve = w.daemon("Eve", m)
    veil.pair(bob, eve)
    card = eve.rpc("card.get")["uri"]
    want = ["for Eve %d" % i for i in range(5)]
    for t in want:
        bob.rpc("message.send", to="Eve", text=t)
    wait_for(lambda: bob.contacts()["Eve"]["queued"] == 0, 20)
    tap.ok(eve.status()["unread"] == 5, "Eve holds 5 unread messages")
    tap.ok(eve.stop() == 0, "Eve stopped (her WAL checkpointed into veil.db)")
    db = os.path.join(eve.state_dir, "veil.db")
    backup = os.path.join(w.tmp, "eve-backup")
    shutil.copytree(eve.state_dir, backup)
    size = os.path.getsize(db)

    def damaged(what, how, expect):
        shutil.rmtree(eve.state_dir)
        shutil.copytree(backup, eve.state_dir)
        how(db)
        try:
            rc, log = eve.run_to_exit()
        except subprocess.TimeoutExpired:
            rc, log = None, "veild was still running after 10 s: it started on it"
        tap.ok(rc != 0 and all(e in log for e in expect),
               "%s: veild refuses to start and says what to do" % what,
               "exit %r:\n%s" % (rc, log[-1500:]))

    def truncate(n):
        return lambda p: os.truncate(p, n)

    def scribble(p):
        with open(p, "r+b") as f:
            f.seek(3 * 4096)
            f.write(os.urandom(3 * 4096))

    def header(p):
        with open(p, "r+b") as f:
            f.write(b"not a database at all, sorry")
    damaged("veil.db truncated to nothing", truncate(0), ["is empty", "backup"])
    damaged("veil.db truncated to half (%d of %d bytes)" % (size // 2, size),
            truncate(size // 2), ["damaged", "backup"])
    damaged("veil.db with pages overwritten", scribble, ["damaged", "backup"])
    damaged("veil.db with its header overwritten", header, ["damaged", "backup"])
    # The backup back: same identity, nothing lost, nothing twice.
    shutil.rmtree(eve.state_dir)
    shutil.copytree(backup, eve.state_dir)
    eve.start()
    tap.ok(eve.rpc("card.get")["uri"] == card, "the restored veil.db: the same identity")
    exactly_once(tap, "the restored veil.db: its unread messages", eve.receive_all(), want)
    eve.kill9()


# --- a full disk ---------------------------------------------------------

def t_full_disk(tap, w, x):
    if not x["ns"]:
        tap.skip("a full disk", NS_REASON)
        return
    m, bob = x["m"], x["bob"]
    disk = os.path.join(w.tmp, "small-disk")
    os.makedirs(disk)
    mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", disk)
    try:
        full_disk(tap, w, m, bob, disk)
    finally:
        for d in w.daemons:
            if d.name == "Alice":
                d.kill9()
        subprocess.run(["umount", disk])


def full_disk(tap, w, m, bob, disk):
    alice = w.daemon("Alice", m, start=False, state_dir=os.path.join(disk, "state"))
    alice.state_dir = alice.cfg["state_dir"]
    alice.start()
    veil.pair(bob, alice)
    # Acknowledged while Bob is away: they wait in Alice's outbox.
    bob.stop()
    acked = ["before the disk filled %d" % i for i in range(20)]
    for t in acked:
        alice.rpc("message.send", to="Bob", text=t)
    filler = os.path.join(disk, "filler")
    n = fill(filler)
    tap.note("filled the tmpfs with %d bytes" % n)
    # The next commit needs space: a send is refused, with a clear error.
    # (One may still fit in the last free bytes; it is then acknowledged
    # and must be delivered like the rest.)
    code = msg = None
    for i in range(20):
        t = "while the disk is full %d" % i
        r, code, msg = send_code(alice, t)
        if r is not None:
            acked.append(t)
            continue
        break
    tap.ok(code == -32006 and "full" in msg and alice.state_dir in msg,
           "disk full: message.send is refused with -32006 saying so", "%r %r" % (code, msg))
    st = alice.status()
    tap.ok(st.get("store") == "full", "disk full: status says store full", repr(st))
    tap.ok(alice.wait_log(r"state database: the disk holding state_dir .* is full", 5),
           "disk full: the log says so", alice.log_tail())
    # Bob is back and writes to Alice: she cannot store it, so it waits
    # in Bob's outbox (his frames arrive, no ACK comes back).
    bob.start()
    to_alice = ["to a full disk %d" % i for i in range(10)]
    for t in to_alice:
        bob.rpc("message.send", to="Alice", text=t)
    frames0 = alice.status()["frames"]["in"]
    tap.ok(wait_for(lambda: alice.status()["frames"]["in"] >= frames0 + 10, 20),
           "disk full: Bob's frames reach Alice")
    tap.ok(alice.status()["unread"] == 0 and bob.contacts()["Alice"]["queued"] == 10,
           "disk full: Alice stored none of them and acknowledged none",
           repr((alice.status(), bob.contacts()["Alice"])))
    # A SIGKILL while the disk is full, then a start on the full disk:
    # either veild comes up (and still refuses) or it refuses to start
    # saying why; nothing it acknowledged may be lost either way.
    alice.kill9()
    try:
        alice.start(timeout=10)
        up = True
        why = ""
    except RuntimeError as e:
        up, why = False, str(e)
    tap.ok(up or "full" in why, "disk full: after a SIGKILL veild starts, or refuses to "
           "saying the disk is full (%s)" % ("started" if up else "refused"), why[-1500:])
    if up:
        r, code, msg = send_code(alice, "after the restart, still full")
        if r is not None:
            acked.append("after the restart, still full")
        tap.ok(r is not None or code == -32006, "disk full after the restart: a send is "
               "refused with -32006 (or fits)", "%r %r" % (code, msg))
    # Space again: veild notices by itself, accepts, and everything moves.
    os.unlink(filler)
    if not alice.alive():
        alice.start()
    tap.ok(wait_for(lambda: alice.status().get("store") == "ok", 15),
           "space again: status says store ok within 15 s", repr(alice.status()))
    tap.ok(alice.wait_log(r"state database: changes are stored again", 5),
           "space again: the log says so", alice.log_tail())
    r, code, msg = send_code(alice, "after the space came back")
    tap.ok(r is not None, "space again: message.send is accepted", "%r %r" % (code, msg))
    acked.append("after the space came back")
    exactly_once(tap, "disk full: every message Alice acknowledged, at Bob",
                 settle(alice, "Bob", bob), acked)
    exactly_once(tap, "disk full: Bob's messages to Alice, once she had space",
                 settle(bob, "Alice", alice), to_alice)


# --- a read-only state directory -----------------------------------------

def t_read_only(tap, w, x):
    if not x["ns"]:
        tap.skip("a read-only state directory", NS_REASON)
        return
    m, bob = x["m"], x["bob"]
    dora = w.daemon("Dora", m)
    veil.pair(bob, dora)
    want = ["for Dora %d" % i for i in range(5)]
    for t in want:
        bob.rpc("message.send", to="Dora", text=t)
    wait_for(lambda: bob.contacts()["Dora"]["queued"] == 0, 20)
    dora.kill9()	# WAL not checkpointed: a start must write to recover it
    mount("--bind", dora.state_dir, dora.state_dir)
    try:
        read_only(tap, dora, bob, want)
    finally:
        dora.kill9()
        subprocess.run(["umount", dora.state_dir])


def read_only(tap, dora, bob, want):
    mount("-o", "remount,bind,ro", dora.state_dir)
    rc, log = dora.run_to_exit()
    tap.ok(rc != 0 and "read-only" in log and dora.state_dir in log,
           "read-only state_dir: veild refuses to start and says why",
           "exit %r:\n%s" % (rc, log[-1500:]))
    mount("-o", "remount,bind,rw", dora.state_dir)
    dora.start()
    tap.ok(dora.status().get("store") == "ok", "read-write again: veild starts")
    exactly_once(tap, "read-write again: the unread messages", dora.receive_all(), want)
    r, code, msg = send_code(dora, "from Dora, writable again")
    tap.ok(r is not None, "read-write again: message.send is accepted", repr((code, msg)))
    exactly_once(tap, "read-write again: Dora's message at Bob",
                 settle(dora, "Bob", bob), ["from Dora, writable again"])


TESTS = [
    ("a damaged veil.db", t_damaged_file),
    ("a full disk", t_full_disk),
    ("a read-only state directory", t_read_only),
]

NS_REASON = None

if __name__ == "__main__":
    NS_REASON = enter_namespace()
    veil.main(TESTS, setup=setup, world_args={"watchdog": 150})
