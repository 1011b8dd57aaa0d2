#!/usr/bin/env python3
"""test_files.py: files between two veild through a real broker — 20 MiB across a SIGKILL of either side, progress bar, limits, hostile names, permissions; prints TAP."""

import grp
import hashlib
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import RpcError, expect, wait_for  # noqa: E402

MIB = 1 << 20
# The big file: 20 MiB over mosquitto (protocol.md 7.1: 325 chunks, 22,100
# frames of 1 KiB).  prosody's pubsub carries about a tenth of mosquitto's
# frame rate (docs/benchmarks.md), so the XMPP run sends 4 MiB: the same
# crash and restart, in the same time.
BIG = 20 * MIB if veil.transport() == "mqtt" else 4 * MIB
# Long enough for progress notifications (at most 4 a second) between.
NOTES = 10 * MIB if veil.transport() == "mqtt" else MIB
# The unit of the limits test: Bob takes 4 of them at most, 6 in all.
UNIT = MIB if veil.transport() == "mqtt" else 256 << 10
# At the default frame size of 1024 (protocol.md 7.1): 68 frames a chunk.
FRAMES_PER_CHUNK = 68
CHUNK = FRAMES_PER_CHUNK * 952 - 21


def blake(path):
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def mkfile(w, name, size, data=None):
    path = os.path.join(w.tmp, name)
    with open(path, "wb") as f:
        f.write(data if data is not None else os.urandom(size))
    return path


def send_fd(d, to, path, name=None, **extra):
    """file.send with the open file passed along (SCM_RIGHTS), as veilctl
    and clients do: the result, or RpcError."""
    with open(path, "rb") as f, d.client(timeout=60) as c:
        params = {"to": to, "fd": True, "path": path}
        if name is not None:
            params["name"] = name
        params.update(extra)
        req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "file.send",
                          "params": params}).encode() + b"\n"
        socket.send_fds(c.sock, [req], [f.fileno()])
        msg = c.read_msg(60)
        while "id" not in msg:
            msg = c.read_msg(60)
        if "error" in msg:
            raise RpcError(msg["error"]["code"], msg["error"]["message"])
        return msg["result"]


def transfer(d, tid, direction):
    for t in d.rpc("transfer.list")["transfers"]:
        if t["id"] == tid and t["direction"] == direction:
            return t
    return None


def ended(d, tid, direction):
    t = transfer(d, tid, direction)
    return t if t is not None and t["state"] in ("done", "failed") else None


def files_in(d):
    return sorted(os.listdir(os.path.join(d.state_dir, "files")))


def leftovers(d):
    """What transfers left in the state dir: spools and .part files."""
    out = []
    for sub in ("outgoing", "incoming"):
        p = os.path.join(d.state_dir, sub)
        out += [sub + "/" + f for f in os.listdir(p)] if os.path.isdir(p) else []
    return out


def setup(w):
    m = w.broker(log_all=False)
    # Bob takes files of at most 4 MiB... except the big one, which goes
    # to Carol; Bob's quota is 6 MiB.
    # socket_group: another uid in it may use Alice's socket (t_other_user).
    alice = w.daemon("Alice", m, socket_group=grp.getgrgid(os.getegid()).gr_name)
    bob = w.daemon("Bob", m, files={"max_size": 4 * UNIT, "quota": 6 * UNIT})
    carol = w.daemon("Carol", m, files={"max_size": "64MiB"})
    veil.pair(alice, bob)
    veil.pair(alice, carol)
    return {"m": m, "alice": alice, "bob": bob, "carol": carol}


def pty_run(argv, on_output, timeout):
    """Runs argv with standard error (and out) on a pseudo-terminal:
    (exit status, all it wrote).  on_output(text so far) is called as it
    writes."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            out += data
            on_output(out.decode("utf-8", "replace"))
    _, status = os.waitpid(pid, 0) if status is None else (pid, status)
    os.close(fd)
    return (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1,
            out.decode("utf-8", "replace"))


def t_big_receiver_killed(tap, w, x):
    """veilctl send-file of 20 MiB on a terminal: a progress bar; Carol is
    SIGKILLed half way and started again; the file arrives intact and the
    bar ends at 100 %."""
    alice, carol = x["alice"], x["carol"]
    path = mkfile(w, "big.bin", BIG)
    want = blake(path)
    watch = carol.client(timeout=30)
    watch.call("subscribe", {"events": ["transfer"]})
    state = {"killed_at": None, "restarted": False}

    def killer():
        # Kill Carol once she has half: her own notification says so.
        n = watch.wait_notification(lambda m: m["params"]["direction"] == "in" and
                                    m["params"]["state"] == "receiving" and
                                    m["params"]["bytes"] >= BIG // 2, 120)
        if n is not None:
            carol.kill9()
            state["killed_at"] = n["params"]["bytes"]
            carol.start()
            state["restarted"] = True

    th = threading.Thread(target=killer, daemon=True)
    th.start()

    out0 = alice.status()["frames"]["out"]
    t0 = time.monotonic()
    rc, out = pty_run([alice.veilctl, "-s", alice.socket, "send-file", "Carol", path],
                      lambda text: None, 150)
    took = time.monotonic() - t0
    th.join(10)
    watch.close()
    tap.note("%d MiB in %.1f s with a crash and restart of the receiver" % (BIG // MIB, took))
    tap.ok(state["restarted"] and 0 < state["killed_at"] < BIG,
           "Carol SIGKILLed mid-transfer (at %s of %d bytes) and started again"
           % (state["killed_at"], BIG), out[-400:])
    tap.ok(rc == 0 and "arrived intact" in out,
           "veilctl send-file exits 0: the file arrived intact", out[-600:] + carol.log_tail())
    bars = re.findall(r"\r\[[#-]+\] +(\d+)%", out)
    tap.ok(len(bars) >= 3 and bars[-1] == "100" and "#" in out and
           sorted(map(int, bars)) == list(map(int, bars)),
           "on a terminal: a progress bar redrawn in place, rising to 100 %",
           repr(bars[:20]) + repr(out[-300:]))
    # Resumed, not restarted: what Carol had stays hers; only the window
    # in flight (16 chunks) and what was lost with her is sent again.
    frames = -(-BIG // CHUNK) * FRAMES_PER_CHUNK
    sent = alice.status()["frames"]["out"] - out0
    redo = (state["killed_at"] or 0) // 952
    tap.ok(sent < frames + redo,
           "the transfer resumed where Carol was: Alice published %d frames for %d "
           "of file (from the start again would be %d more)" % (sent, frames, redo),
           repr((sent, frames, redo)))
    got = os.path.join(carol.state_dir, "files", "big.bin")
    tap.ok(os.path.exists(got) and blake(got) == want,
           "Carol's copy has the same BLAKE2b-256 as the original", repr(files_in(carol)))
    tap.ok(leftovers(alice) == [] and leftovers(carol) == [],
           "no spool or .part file left on either side",
           repr((leftovers(alice), leftovers(carol))))
    msgs = carol.receive_all()
    tap.ok([(m.get("type"), m["from"], m.get("file", {}).get("path"),
             m.get("file", {}).get("hash")) for m in msgs] ==
           [("file", "Alice", got, want)],
           "Carol's message.receive announces the file: type, sender, path, hash",
           repr(msgs))


def t_big_sender_killed(tap, w, x):
    """The sender is SIGKILLed mid-transfer and started again: it carries
    on from its copy in the state dir; the file arrives intact."""
    alice, carol = x["alice"], x["carol"]
    path = mkfile(w, "big2.bin", BIG)
    want = blake(path)
    watch = carol.client(timeout=30)
    watch.call("subscribe", {"events": ["transfer"]})
    r = send_fd(alice, "Carol", path)
    tid = r["id"]
    n = watch.wait_notification(lambda m: m["params"]["id"] == tid and
                                m["params"]["bytes"] >= BIG // 2, 120)
    watch.close()
    tap.ok(n is not None and n["params"]["bytes"] < BIG,
           "Carol had half of it (%s bytes) when Alice was killed"
           % (n and n["params"]["bytes"]), carol.log_tail())
    alice.kill9()
    spool = [f for f in leftovers(alice) if f.startswith("outgoing/")]
    alice.start()
    t = expect(lambda: ended(carol, tid, "in"), 120, "Carol's transfer ended",
               lambda: carol.log_tail() + alice.log_tail())
    got = os.path.join(carol.state_dir, "files", "big2.bin")
    tap.ok(spool != [] and t["state"] == "done" and blake(got) == want,
           "after Alice's restart the transfer resumed from her copy and "
           "arrived intact", repr((spool, t)))
    t = expect(lambda: ended(alice, tid, "out"), 30, "Alice learns the verdict")
    tap.ok(t["state"] == "done" and t["bytes"] == BIG and leftovers(alice) == [],
           "Alice's transfer is done and her copy is gone", repr((t, leftovers(alice))))
    carol.receive_all()


def notes_for(c, tid, timeout):
    """The transfer notifications of tid until it ended."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = c.wait_notification(lambda m: m["method"] == "transfer" and
                                m["params"]["id"] == tid, deadline - time.monotonic())
        if n is None:
            break
        out.append(n["params"])
        if n["params"]["state"] in ("done", "failed"):
            break
    return out


def t_notifications(tap, w, x):
    """transfer notifications on both sides: progress, then done; the file
    message notification; a small file through the Python client's
    send_file; an empty file."""
    alice, carol = x["alice"], x["carol"]
    a, b = alice.client(timeout=30), carol.client(timeout=30)
    a.call("subscribe", {"events": ["transfer"]})
    b.call("subscribe", {"events": ["transfer", "message"]})
    path = mkfile(w, "notes.bin", NOTES)
    r = send_fd(alice, "Carol", path)
    tap.ok(r.get("direction") == "out" and r.get("size") == NOTES and
           r.get("name") == "notes.bin" and r.get("state") == "sending" and
           re.fullmatch(r"[0-9a-f]{32}", r.get("id", "")),
           "file.send answers with the transfer: id, name, size, state sending", repr(r))
    out = notes_for(a, r["id"], 60)
    inn = notes_for(b, r["id"], 60)
    tap.ok(out and out[-1]["state"] == "done" and out[-1]["bytes"] == NOTES and
           any(0 < n["bytes"] < NOTES for n in out) and
           [n["bytes"] for n in out] == sorted(n["bytes"] for n in out),
           "the sender's notifications: progress that rises, then done",
           repr([(n["state"], n["bytes"]) for n in out]))
    tap.ok(inn and inn[0]["direction"] == "in" and inn[0]["contact"] == "Alice" and
           inn[-1]["state"] == "done" and
           inn[-1].get("path") == os.path.join(carol.state_dir, "files", "notes.bin"),
           "the receiver's notifications: from Alice, done, with the path",
           repr(inn[-2:]))
    msg = b.wait_notification(lambda m: m["method"] == "message", 10)
    tap.ok(msg is not None and msg["params"].get("type") == "file" and
           msg["params"].get("id") == r["id"] and msg["params"].get("from") == "Alice",
           "a message notification of type file announces it", repr(msg))
    # An empty file: an OFFER and no chunk.
    empty = mkfile(w, "empty.txt", 0, b"")
    r = send_fd(alice, "Carol", empty)
    t = expect(lambda: ended(alice, r["id"], "out"), 30, "the empty file's verdict")
    tap.ok(t["state"] == "done" and
           os.path.getsize(os.path.join(carol.state_dir, "files", "empty.txt")) == 0,
           "an empty file arrives as an empty file", repr(t))
    a.close()
    b.close()
    carol.receive_all()


def t_names(tap, w, x):
    """Names the receiver refuses (path traversal, separators, controls,
    invisible characters, dot names); a leading dot made '_'; a name that
    is taken gets " (1)", the existing file untouched."""
    alice, bob = x["alice"], x["bob"]
    small = mkfile(w, "small.txt", 0, b"hello\n")
    outside = os.path.join(os.path.dirname(bob.state_dir), "evil")
    hostile = ["../evil", "../../evil", "a/b", "..", ".", "x\\y",
               "bad\x1b[31mname", "gpj\u202e.exe", "zero\u200bwidth"]
    before = files_in(bob)
    for name in hostile:
        r = send_fd(alice, "Bob", small, name=name)
        t = expect(lambda: ended(alice, r["id"], "out"), 30,
                   "the verdict on %r" % name, bob.log_tail)
        tap.ok(t["state"] == "failed" and t.get("reason") == "a name the receiver refuses",
               "a file named %r is refused by the receiver, and the sender told why" % name,
               repr(t))
    tap.ok(files_in(bob) == before and not os.path.exists(outside) and
           not os.path.exists(os.path.join(bob.state_dir, "evil")),
           "nothing was written for them, in files/ or outside it",
           repr(files_in(bob)))
    tap.ok(leftovers(bob) == [], "and no .part file stays", repr(leftovers(bob)))
    r = send_fd(alice, "Bob", small, name=".bashrc")
    t = expect(lambda: ended(bob, r["id"], "in"), 30, ".bashrc arrives")
    tap.ok(t["state"] == "done" and t["path"].endswith("/files/_bashrc"),
           "a leading dot is made '_' (.bashrc lands as _bashrc, not hidden)", repr(t))
    mine = os.path.join(bob.state_dir, "files", "report.txt")
    with open(mine, "w") as f:
        f.write("Bob's own\n")
    r1 = send_fd(alice, "Bob", small, name="report.txt")
    r2 = send_fd(alice, "Bob", small, name="report.txt")
    t1 = expect(lambda: ended(bob, r1["id"], "in"), 30, "the first report.txt")
    t2 = expect(lambda: ended(bob, r2["id"], "in"), 30, "the second report.txt")
    with open(mine) as f:
        kept = f.read()
    tap.ok(kept == "Bob's own\n" and
           sorted([os.path.basename(t1["path"]), os.path.basename(t2["path"])]) ==
           ["report (1).txt", "report (2).txt"],
           "an existing report.txt is never replaced: the new ones are report (1).txt "
           "and report (2).txt", repr((kept, t1, t2)))
    # A name over 255 bytes does not fit the OFFER: refused at once.
    try:
        send_fd(alice, "Bob", small, name="x" * 256)
        tap.ok(False, "a name over 255 bytes is refused by file.send")
    except RpcError as e:
        tap.ok(e.code == -32602, "a name over 255 bytes is refused by file.send (-32602)",
               repr(e))
    bob.receive_all()
    for f in files_in(bob):
        os.unlink(os.path.join(bob.state_dir, "files", f))


def t_limits(tap, w, x):
    """Bob takes files of at most 4 units and 6 units from one contact (a
    unit: 1 MiB, 256 KiB over XMPP): an oversized offer is refused, the
    quota counts what is on disk, and deleting a file frees its share."""
    alice, bob = x["alice"], x["bob"]
    big = mkfile(w, "five.bin", 5 * UNIT)
    r = send_fd(alice, "Bob", big)
    t = expect(lambda: ended(alice, r["id"], "out"), 30, "the verdict on 5 MiB")
    tap.ok(t["state"] == "failed" and t.get("reason") == "too large for the receiver" and
           files_in(bob) == [] and leftovers(bob) == [],
           "an offer over Bob's files.max_size (5 units > 4) is refused, nothing kept",
           repr((t, files_in(bob))))
    three = [mkfile(w, "q%d.bin" % i, 3 * UNIT) for i in range(3)]
    r = send_fd(alice, "Bob", three[0])
    t = expect(lambda: ended(bob, r["id"], "in"), 60, "q0 arrives")
    tap.ok(t["state"] == "done", "3 units of a 6 unit quota: taken", repr(t))
    r = send_fd(alice, "Bob", three[1])
    t = expect(lambda: ended(bob, r["id"], "in"), 60, "q1 arrives")
    tap.ok(t["state"] == "done", "3 more: 6 MiB, the whole quota, taken", repr(t))
    r = send_fd(alice, "Bob", three[2])
    t = expect(lambda: ended(alice, r["id"], "out"), 30, "the verdict on q2")
    tap.ok(t["state"] == "failed" and t.get("reason") == "over the receiver's quota",
           "3 more would be over the quota: refused, and Alice told why", repr(t))
    os.unlink(os.path.join(bob.state_dir, "files", "q0.bin"))
    r = send_fd(alice, "Bob", three[2])
    t = expect(lambda: ended(bob, r["id"], "in"), 60, "q2 arrives")
    tap.ok(t["state"] == "done", "once Bob deleted a file, the next one is taken", repr(t))
    # The sender's own limit: Carol's 64 MiB is not Alice's 100 MiB default;
    # a sparse file over Alice's refuses at file.send.
    huge = os.path.join(w.tmp, "huge.bin")
    with open(huge, "wb") as f:
        f.truncate(101 * MIB)
    try:
        send_fd(alice, "Carol", huge)
        tap.ok(False, "a file over the sender's files.max_size is refused by file.send")
    except RpcError as e:
        tap.ok(e.code == -32004, "a file over the sender's files.max_size is refused "
               "by file.send (-32004, too large)", repr(e))
    bob.receive_all()
    for f in files_in(bob):
        os.unlink(os.path.join(bob.state_dir, "files", f))


def t_refusals(tap, w, x):
    """What file.send refuses: no descriptor, one not open for reading, a
    directory, an unknown contact, a relative path; a path veild opens
    itself for its own user."""
    alice = x["alice"]
    small = mkfile(w, "p.txt", 0, b"by path\n")
    with alice.client() as c:
        try:
            c.call("file.send", {"to": "Bob", "fd": True})
            tap.ok(False, "fd: true without a descriptor is refused")
        except RpcError as e:
            tap.ok(e.code == -32602 and "descriptor" in e.message,
                   "fd: true without a descriptor is refused (-32602)", repr(e))
    for what, flags, code in (("a descriptor open only for writing", os.O_WRONLY, -32602),
                              ("a directory", os.O_RDONLY | os.O_DIRECTORY, -32602)):
        target = w.tmp if flags & os.O_DIRECTORY else small
        fd = os.open(target, flags)
        try:
            with alice.client() as c:
                req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "file.send",
                                  "params": {"to": "Bob", "fd": True, "name": "x"}}).encode()
                socket.send_fds(c.sock, [req + b"\n"], [fd])
                msg = c.read_msg(10)
            tap.ok(msg.get("error", {}).get("code") == code,
                   "file.send with %s is refused" % what, repr(msg))
        finally:
            os.close(fd)
    for params, code, what in (({"to": "Nobody", "path": small}, -32000, "an unknown contact"),
                               ({"to": "Bob", "path": "p.txt"}, -32602, "a relative path")):
        try:
            alice.rpc("file.send", **params)
            tap.ok(False, "file.send to %s is refused" % what)
        except RpcError as e:
            tap.ok(e.code == code, "file.send with %s is refused (%d)" % (what, code), repr(e))
    # veild's own user may name a path: veild opens it.
    r = alice.rpc("file.send", to="Bob", path=small)
    t = expect(lambda: ended(alice, r["id"], "out"), 30, "the path send's verdict")
    tap.ok(t["state"] == "done", "veild's own user may give a path instead of a descriptor",
           repr(t))
    x["bob"].receive_all()


def t_other_user(tap, w, x):
    """Another uid in the socket_group may use the socket, but veild will
    not open a path for it (it could name a file only veild may read); it
    must pass the open file."""
    alice = x["alice"]
    secret = mkfile(w, "secret.txt", 0, b"only for veild's user\n")
    os.chmod(secret, 0o600)
    uid, why = veil.other_uid()
    what = "another uid is refused a path (veild would read what it may not)"
    if uid is None:
        tap.skip(what, why)
        return
    st = os.stat(alice.socket)
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "file.send",
                      "params": {"to": "Bob", "path": secret}})
    dirs = [w.tmp, alice.dir]
    modes = [(p, os.stat(p).st_mode & 0o777) for p in dirs]
    try:
        for p, _ in modes:
            os.chmod(p, 0o711)
        rc, out = veil.peer_probe(alice.socket, gid=st.st_gid, request=req)
    finally:
        for p, mode in reversed(modes):
            os.chmod(p, mode)
    tap.ok(out.startswith("reply ") and '"code":-32602' in out and
           "own user and root" in out,
           "uid %d (in the socket's group) is refused a path: veild opens files "
           "only for its own user and root" % uid, out)
    tap.ok(not any(t["name"] == "secret.txt" for t in
                   alice.rpc("transfer.list")["transfers"]),
           "and no transfer of it exists", "")


def t_cancel(tap, w, x):
    """transfer.cancel on the sender: the receiver is told, drops its
    .part file; the transfer cannot be cancelled twice."""
    alice, carol = x["alice"], x["carol"]
    path = mkfile(w, "cancel.bin", BIG)
    watch = carol.client(timeout=30)
    watch.call("subscribe", {"events": ["transfer"]})
    r = send_fd(alice, "Carol", path)
    n = watch.wait_notification(lambda m: m["params"]["id"] == r["id"] and
                                m["params"]["bytes"] > 0, 60)
    alice.rpc("transfer.cancel", id=r["id"])
    t = expect(lambda: ended(carol, r["id"], "in"), 30, "Carol hears of the cancel",
               carol.log_tail)
    watch.close()
    tap.ok(n is not None and t["state"] == "failed" and t.get("reason") == "cancelled" and
           leftovers(carol) == [] and not os.path.exists(
               os.path.join(carol.state_dir, "files", "cancel.bin")),
           "a cancelled transfer ends on both sides, nothing kept by the receiver",
           repr((t, leftovers(carol))))
    tap.ok(transfer(alice, r["id"], "out")["state"] == "failed" and
           leftovers(alice) == [], "the sender's copy is gone", repr(leftovers(alice)))
    try:
        alice.rpc("transfer.cancel", id=r["id"])
        tap.ok(False, "cancelling an ended transfer is refused")
    except RpcError as e:
        tap.ok(e.code == -32002, "cancelling an ended transfer is refused (-32002)", repr(e))


def t_other_fs(tap, w, x):
    """files.dir on another filesystem than the state dir (tmpfs): the
    verified file is copied there (rename cannot cross filesystems), under
    a name of its own, and nothing stays behind."""
    alice = x["alice"]
    what = "a file lands in a files.dir on another filesystem"
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(w.tmp).st_dev:
        tap.skip(what, "no other filesystem than the temp dir's here (/dev/shm)")
        return
    fdir = os.path.join(shm, "veil-test-files-%d-%d" % (os.getpid(), int(time.time())))
    os.mkdir(fdir, 0o700)
    try:
        dave = w.daemon("Dave", x["m"], files={"dir": fdir})
        veil.pair(alice, dave)
        path = mkfile(w, "cross.bin", 3 * MIB + 123)
        want = blake(path)
        with open(os.path.join(fdir, "cross.bin"), "w") as f:
            f.write("already here\n")
        r = send_fd(alice, "Dave", path)
        t = expect(lambda: ended(dave, r["id"], "in"), 60, "Dave has it", dave.log_tail)
        got = os.path.join(fdir, "cross (1).bin")
        tap.ok(t["state"] == "done" and t.get("path") == got and blake(got) == want and
               open(os.path.join(fdir, "cross.bin")).read() == "already here\n",
               what + ", intact, beside the existing one (copied across)",
               repr((t, sorted(os.listdir(fdir)))))
        tap.ok(sorted(os.listdir(fdir)) == ["cross (1).bin", "cross.bin"] and
               leftovers(dave) == [],
               "no temporary copy in files.dir, no .part in the state dir",
               repr((os.listdir(fdir), leftovers(dave))))
        tap.ok(os.stat(got).st_mode & 0o777 == 0o640, "the file is 0640 (for the "
               "socket's group)", oct(os.stat(got).st_mode))
        dave.kill9()
    finally:
        for f in os.listdir(fdir):
            os.unlink(os.path.join(fdir, f))
        os.rmdir(fdir)


TESTS = [
    ("big_receiver_killed", t_big_receiver_killed),
    ("big_sender_killed", t_big_sender_killed),
    ("notifications", t_notifications),
    ("names", t_names),
    ("limits", t_limits),
    ("refusals", t_refusals),
    ("other_user", t_other_user),
    ("cancel", t_cancel),
    ("other_fs", t_other_fs),
]

if __name__ == "__main__":
    veil.main(TESTS, world_args={"watchdog": 240}, setup=setup)
