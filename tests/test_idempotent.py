#!/usr/bin/env python3
"""test_idempotent.py: message.send with a client key: a retry after a lost reply returns the first message, never a second; veilctl retries with one; prints TAP."""

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import RpcError, wait_for  # noqa: E402


def setup(w):
    m = w.broker()
    alice = w.daemon("Alice", m)
    bob = w.daemon("Bob", m)
    veil.pair(alice, bob)
    return {"m": m, "alice": alice, "bob": bob}


def delivered(tap, what, sender, receiver, want, patience=20):
    """Waits until the sender's outbox drained and the receiver's frame
    counter stands still, then takes every message: each text in want
    must have arrived exactly once, and nothing else."""
    got = settle(sender, receiver, patience)
    count = collections.Counter(m.get("text") for m in got)
    ok = all(count[t] == 1 for t in want) and sum(count.values()) == len(want)
    tap.ok(ok, "%s: each message delivered exactly once (%d)" % (what, len(want)),
           "received %r, wanted %r" % (dict(count), want))
    return got


def settle(sender, receiver, patience=20):
    """Everything the sender queued for Bob delivered, taken from the
    receiver: the list."""
    if veil.transport() == "xmpp":
        patience *= 3
    wait_for(lambda: sender.contacts()["Bob"]["queued"] == 0, patience)
    veil.wait_stable(lambda: receiver.status()["frames"]["in"], still=1.0, timeout=patience)
    return receiver.receive_all()


def code_of(d, **params):
    try:
        d.rpc("message.send", **params)
    except RpcError as e:
        return e.code
    return None


def t_same_key(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    r1 = alice.rpc("message.send", to="Bob", text="once, keyed", key="k-1")
    r2 = alice.rpc("message.send", to="Bob", text="once, keyed", key="k-1")
    tap.ok(r1 == r2 and len(r1.get("id", "")) == 32,
           "the same key twice: the first result both times", repr((r1, r2)))
    r3 = alice.rpc("message.send", to="Bob", text="once, keyed", key="k-2")
    tap.ok(r3["id"] != r1["id"], "another key: another message", repr((r1, r3)))
    got = settle(alice, bob)
    ids = collections.Counter(m["id"] for m in got)
    tap.ok(ids == collections.Counter([r1["id"], r3["id"]]),
           "two keys, three calls: Bob got two messages, one per key", repr(got))


def t_key_misuse(tap, w, x):
    alice, m = x["alice"], x["m"]
    alice.rpc("message.send", to="Bob", text="first text", key="k-misuse")
    tap.ok(code_of(alice, to="Bob", text="other text", key="k-misuse") == -32001,
           "the key of another text: -32001")
    carol = w.daemon("Carol", m)
    veil.pair(carol, alice)
    tap.ok(code_of(alice, to="Carol", text="first text", key="k-misuse") == -32001,
           "the key of a message to another contact: -32001")
    tap.ok(code_of(alice, to="Bob", text="x", key="") == -32602,
           "an empty key: -32602")
    tap.ok(code_of(alice, to="Bob", text="x", key="k" * 129) == -32602,
           "a key of 129 bytes: -32602")
    tap.ok(code_of(alice, to="Bob", text="x", key=7) == -32602,
           "a key that is no string: -32602")
    r = alice.rpc("message.send", to="Bob", text="x", key="é" * 64)	# 128 bytes
    tap.ok(len(r.get("id", "")) == 32, "a key of 128 bytes of UTF-8 is taken", repr(r))
    tap.ok(code_of(alice, to="Nobody", text="x", key="k-nobody") == -32000,
           "an unknown contact with a key: -32000")
    carol.kill9()
    settle(alice, x["bob"])


def t_reply_lost(tap, w, x):
    """The caller hangs up before the reply: veild stores the message
    anyway; the retry under the same key finds it."""
    alice, bob = x["alice"], x["bob"]
    with alice.client() as c:
        c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"message.send","params":'
                   b'{"to":"Bob","text":"reply lost","key":"k-lost"}}\n')
    # Stored, though nobody heard the answer: it is in the outbox or
    # already at Bob.
    stored = wait_for(lambda: alice.status()["frames"]["out"] > 0 and
                      (alice.contacts()["Bob"]["queued"] > 0 or
                       bob.status()["unread"] > 0), 10)
    tap.ok(stored, "a send whose caller hung up was stored")
    r = alice.rpc("message.send", to="Bob", text="reply lost", key="k-lost")
    got = delivered(tap, "reply lost, then a retry", alice, bob, ["reply lost"])
    tap.ok([m["id"] for m in got] == [r["id"]],
           "the retry returned the ID of the message that was delivered",
           repr((r, got)))


def t_kill_after_send(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    r1 = alice.rpc("message.send", to="Bob", text="before the SIGKILL", key="k-kill")
    alice.kill9()
    alice.start()
    r2 = alice.rpc("message.send", to="Bob", text="before the SIGKILL", key="k-kill")
    tap.ok(r1 == r2, "the key survives a SIGKILL: the retry returns the first ID",
           repr((r1, r2)))
    delivered(tap, "SIGKILL between send and retry", alice, bob, ["before the SIGKILL"])


class DropFirstReply:
    """A Unix socket in front of veild's: the first connection's request
    goes to veild, its reply is read and dropped, and the connection is
    closed, as if veild had died after storing the message.  Later
    connections pass through."""

    def __init__(self, path, target):
        self.path, self.target = path, target
        self.dropped = []
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen(4)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        first = True
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.target)
            f = conn.makefile("rb")
            line = f.readline()
            up.sendall(line)
            reply = up.makefile("rb").readline()
            if first:
                first = False
                self.dropped.append(reply)
            else:
                conn.sendall(reply)
            # makefile() keeps the descriptor open: shut it down.
            conn.shutdown(socket.SHUT_RDWR)
            f.close()
            conn.close()
            up.close()

    def close(self):
        self.srv.close()


def t_veilctl_reply_lost(tap, w, x):
    import json
    alice, bob = x["alice"], x["bob"]
    proxy = DropFirstReply(os.path.join(w.tmp, "drop.sock"), alice.socket)
    try:
        r = subprocess.run([alice.veilctl, "-s", proxy.path, "--json", "send", "Bob",
                            "through a lossy socket"], capture_output=True, text=True,
                           timeout=40)
    finally:
        proxy.close()
    first = json.loads(proxy.dropped[0]) if proxy.dropped else {}
    try:
        printed = json.loads(r.stdout)
    except ValueError:
        printed = {}
    tap.ok(r.returncode == 0 and "trying again" in r.stderr,
           "veilctl send: the reply is lost, veilctl says so and tries again",
           "exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    tap.ok(printed.get("id") and printed.get("id") == first.get("result", {}).get("id"),
           "veilctl printed the ID of the message stored the first time",
           "printed %r, dropped reply %r" % (printed, first))
    delivered(tap, "veilctl's retry after a lost reply", alice, bob,
              ["through a lossy socket"])


def t_veilctl_restart(tap, w, x):
    """veild stopped (SIGSTOP) while veilctl waits, then SIGKILLed and
    started again: veilctl's retry reaches the new veild."""
    alice, bob = x["alice"], x["bob"]
    alice.proc.send_signal(signal.SIGSTOP)
    p = subprocess.Popen([alice.veilctl, "-s", alice.socket, "send", "Bob",
                          "across a restart"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)	# veilctl connects and writes: there is no event for it
    alice.proc.send_signal(signal.SIGKILL)
    alice.proc.wait()
    alice.proc = None
    told = wait_for(lambda: p.poll() is None and os.path.exists(alice.socket), 5)
    alice.start()
    try:
        out, err = p.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    tap.ok(p.returncode == 0 and out.startswith("queued, id "),
           "veilctl send across a SIGKILL and restart of veild succeeds",
           "exit %r told %r\n%s%s" % (p.returncode, told, out, err))
    delivered(tap, "veilctl across a restart", alice, bob, ["across a restart"])


def t_veilctl_no_daemon(tap, w, x):
    t0 = time.monotonic()
    r = subprocess.run([x["alice"].veilctl, "-s", os.path.join(w.tmp, "nothing.sock"),
                        "send", "Bob", "x"], capture_output=True, text=True, timeout=40)
    took = time.monotonic() - t0
    tap.ok(r.returncode == 1 and "is veild running?" in r.stderr and took < 5,
           "veilctl send with no veild at all fails at once (%.1f s)" % took,
           r.stderr)


def t_veilctl_key(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    a = alice.ctl_ok("send", "--key", "from-a-script-1", "Bob", "keyed by hand")
    b = alice.ctl_ok("send", "--key=from-a-script-1", "Bob", "keyed by hand")
    tap.ok(isinstance(a, dict) and a == b, "veilctl send --key twice: the same ID",
           repr((a, b)))
    rc, out, err = alice.ctl("send", "--key", "from-a-script-1", "Bob", "another text")
    tap.ok(rc == 1 and "another message" in err,
           "veilctl send --key with another text: refused", err)
    rc, out, err = alice.ctl("send", "Bob", "--key", "literal")
    tap.ok(rc == 0, "after the name, --key is text", err)
    delivered(tap, "veilctl --key", alice, bob, ["keyed by hand", "--key literal"])


TESTS = [
    ("the same key twice", t_same_key),
    ("a key misused", t_key_misuse),
    ("reply lost, retry", t_reply_lost),
    ("SIGKILL, then a retry", t_kill_after_send),
    ("veilctl: reply lost", t_veilctl_reply_lost),
    ("veilctl: veild restarted", t_veilctl_restart),
    ("veilctl: no veild", t_veilctl_no_daemon),
    ("veilctl --key", t_veilctl_key),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 120})
