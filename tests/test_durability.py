#!/usr/bin/env python3
"""test_durability.py: no message lost or duplicated across SIGKILLs and broker restarts; prints TAP."""

import collections
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import wait_for  # noqa: E402


def setup(w):
    m = w.broker()
    alice = w.daemon("Alice", m)
    bob = w.daemon("Bob", m)
    veil.pair(alice, bob)
    return {"m": m, "alice": alice, "bob": bob}


class Inbox:
    """Every message one daemon handed to its app, in order, duplicates kept."""

    def __init__(self, d):
        self.d = d
        self.got = []

    def drain(self, wait=0):
        r = self.d.receive_all(wait=wait)
        self.got.extend(r)
        return r

    def until(self, ids, timeout):
        """Receives until every id in ids was seen or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.drain(wait=1)
            except (OSError, ConnectionError, veil.RpcError):
                time.sleep(0.1)
            if set(ids) <= {m["id"] for m in self.got}:
                return True
        return False


def check_exactly_once(tap, what, sent, inbox, sender, peer, patience=20):
    """sent: {id: text}.  Waits up to patience for every message and for
    the sender's outbox to drain (every ACK in), then until the receiver's
    frame counter stands still (a duplicate would be a retransmission
    still on its way), and checks each id arrived once with its text."""
    if veil.transport() == "xmpp":
        patience *= 3	# prosody's pubsub is several times slower
    inbox.until(sent, patience)
    drained = wait_for(lambda: sender.contacts()[peer]["queued"] == 0, patience)
    veil.wait_stable(lambda: inbox.d.status()["frames"]["in"], still=1.0, timeout=patience)
    inbox.drain()
    count = collections.Counter(m["id"] for m in inbox.got)
    missing = [i for i in sent if i not in count]
    dups = {i: n for i, n in count.items() if n > 1}
    extra = [i for i in count if i not in sent]
    wrong = [m["id"] for m in inbox.got if m["id"] in sent and m.get("text") != sent[m["id"]]]
    tap.ok(not missing, "%s: all %d messages arrived" % (what, len(sent)),
           "%d missing, e.g. %r\n%s%s" % (len(missing), [sent[i] for i in missing[:5]],
                                          sender.log_tail(), inbox.d.log_tail()))
    tap.ok(not dups and len(inbox.got) == len(sent) and not extra,
           "%s: none twice (%d received)" % (what, len(inbox.got)),
           "duplicated: %r, unexpected: %r" % (dups, extra))
    tap.ok(not wrong, "%s: every text intact" % what, repr(wrong[:5]))
    tap.ok(drained, "%s: the sender's outbox drained (delivery ACKs)" % what,
           repr(sender.contacts()))


def t_kill_receiver(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    inbox = Inbox(bob)
    sent = {}
    t0 = time.monotonic()
    with alice.client() as c:
        for i in range(200):
            text = "kill-receiver %03d" % i
            sent[c.call("message.send", {"to": "Bob", "text": text})["id"]] = text
            if i == 24:
                # Some taken before the crash: they must not come back.
                veil.expect(lambda: inbox.drain() is not None and len(inbox.got) >= 10, 15,
                            "Bob took 10 messages before the SIGKILL")
            if i == 49:
                bob.kill9()
            if i == 149:
                bob.start()
    tap.note("200 sends in %.1f s; bob had taken %d before SIGKILL"
             % (time.monotonic() - t0, len(inbox.got)))
    check_exactly_once(tap, "SIGKILL of the receiver", sent, inbox, alice, "Bob")


def t_kill_receiver_twice(tap, w, x):
    # Two SIGKILLs of the receiver while it works through a backlog, a few
    # rounds.  Its own pair: if the contact breaks, the other tests are not
    # dragged down with it.
    carol = w.daemon("Carol", x["m"])
    dave = w.daemon("Dave", x["m"])
    veil.pair(carol, dave)
    for rnd in range(4):
        inbox = Inbox(carol)
        sent = {}
        # Carol down while Dave sends: a backlog waits for her (at the
        # broker, in Dave's outbox).
        carol.kill9()
        with dave.client() as c:
            for i in range(60):
                text = "backlog %d.%02d " % (rnd, i) + "x" * (i * 37)  # 1 to 3 frames
                sent[c.call("message.send", {"to": "Carol", "text": text})["id"]] = text
        carol.start()
        # The second SIGKILL while Carol works through the backlog.
        busy = wait_for(lambda: carol.status()["frames"]["in"] >= 10, 15, 0.01)
        frames_in = carol.status()["frames"]["in"] if busy else 0
        carol.kill9()
        tap.ok(busy, "round %d: Carol was killed while taking in the backlog (%d frames "
               "in)" % (rnd, frames_in))
        carol.start()
        check_exactly_once(tap, "two SIGKILLs during a backlog (round %d)" % rnd, sent,
                           inbox, dave, "Carol")
    carol.kill9()
    dave.kill9()


def t_broker_restart(tap, w, x):
    alice, bob, m = x["alice"], x["bob"], x["m"]
    inbox_b, inbox_a = Inbox(bob), Inbox(alice)
    sent_ab, sent_ba = {}, {}
    errors = []

    def sender(d, to, sent, tag):
        try:
            with d.client(timeout=20) as c:
                for i in range(120):
                    text = "%s %03d" % (tag, i)
                    sent[c.call("message.send", {"to": to, "text": text},
                                timeout=20)["id"]] = text
                    time.sleep(0.01)
        except Exception as e:	# reported below
            errors.append("%s: %r" % (tag, e))
    threads = [threading.Thread(target=sender, args=(alice, "Bob", sent_ab, "a->b")),
               threading.Thread(target=sender, args=(bob, "Alice", sent_ba, "b->a"))]
    for t in threads:
        t.start()
    veil.expect(lambda: len(sent_ab) >= 30, 10, "30 messages sent before the restart")
    m.restart(down_for=1.0)
    for t in threads:
        t.join(30)
    tap.ok(not errors and len(sent_ab) == 120 and len(sent_ba) == 120,
           "message.send keeps answering while the broker restarts", repr(errors))
    ok = wait_for(lambda: alice.rpc("status")["connected"] and bob.rpc("status")["connected"],
                  15)
    tap.ok(ok, "both daemons reconnect to the restarted broker",
           alice.log_tail() + bob.log_tail())
    check_exactly_once(tap, "broker restart, Alice to Bob", sent_ab, inbox_b, alice, "Bob")
    check_exactly_once(tap, "broker restart, Bob to Alice", sent_ba, inbox_a, bob, "Alice")


def t_kill_sender(tap, w, x):
    alice, bob, m = x["alice"], x["bob"], x["m"]
    inbox = Inbox(bob)
    # (1) SIGKILL the moment message.send answered.
    with alice.client() as c:
        mid = c.call("message.send", {"to": "Bob", "text": "durable 1"})["id"]
        alice.kill9()
    alice.start()
    check_exactly_once(tap, "SIGKILL of the sender right after message.send",
                       {mid: "durable 1"}, inbox, alice, "Bob")

    # (2) The frames cannot have left: the broker is down.  Only the
    # sender's outbox can deliver these.
    inbox = Inbox(bob)
    m.stop()
    veil.expect(lambda: not alice.rpc("status")["connected"], 10, "Alice saw the broker go")
    sent = {}
    with alice.client() as c:
        for i in range(5):
            t = "durable, broker down %d" % i
            sent[c.call("message.send", {"to": "Bob", "text": t})["id"]] = t
    queued = alice.contacts()["Bob"]["queued"]
    tap.ok(queued == 5, "with the broker down the 5 messages are queued", repr(queued))
    alice.kill9()
    m.start()
    alice.start()
    check_exactly_once(tap, "sender SIGKILLed while the broker was down", sent, inbox,
                       alice, "Bob")


def t_reconnect_flush(tap, w, x):
    # More queued messages than one outbox batch (64 in engine.c) when the
    # broker comes back: each must go out about once, not once per batch.
    alice, bob, m = x["alice"], x["bob"], x["m"]
    inbox = Inbox(bob)
    m.stop()
    veil.expect(lambda: not alice.rpc("status")["connected"], 10, "Alice saw the broker go")
    sent = {}
    with alice.client() as c:
        for i in range(100):
            t = "queued while the broker is down %03d" % i
            sent[c.call("message.send", {"to": "Bob", "text": t})["id"]] = t
    out0 = alice.rpc("status")["frames"]["out"]
    m.start()
    check_exactly_once(tap, "100 queued, then the broker returns", sent, inbox, alice, "Bob")
    out = alice.rpc("status")["frames"]["out"] - out0
    # 100 frames, plus at most a couple of retransmission rounds and the
    # ACKs for what Bob sent meanwhile (nothing here).
    tap.ok(out <= 300, "after the reconnect Alice published %d frames for 100 one-frame "
           "messages (at most 300)" % out,
           "flush_outbox(1) re-selects rows it just rescheduled: horizon is "
           "INT64_MAX/2, so with more than DUE_BATCH rows every round resends "
           "the same ones, up to 64 rounds")


def t_kept_until_taken(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    sent = {}
    with alice.client() as c:
        for i in range(10):
            t = "kept %d" % i
            sent[c.call("message.send", {"to": "Bob", "text": t})["id"]] = t
    ok = wait_for(lambda: alice.contacts()["Bob"]["queued"] == 0, 15)
    tap.ok(ok, "Bob acknowledged all 10 while no app took them", repr(alice.contacts()))
    st = bob.rpc("status")
    tap.ok(st.get("unread") == 10, "status counts 10 unread", repr(st))
    rc = bob.stop()
    tap.ok(rc == 0, "SIGTERM: veild exits 0", "exit %r\n%s" % (rc, bob.log_tail()))
    bob.start()
    first = bob.rpc("message.receive", limit=3)["messages"]
    bob.kill9()
    bob.start()
    got = bob.receive_all()
    tap.ok(len(first) == 3 and len(got) == 10 and
           {m["id"]: m["text"] for m in got} == sent and
           {m["id"] for m in first} <= {m["id"] for m in got},
           "after a restart all 10 are there; the 3 that limit=3 handed out "
           "without an ack come again after a SIGKILL",
           repr((len(first), [m["text"] for m in got])))
    bob.restart()
    again = bob.receive_all()
    tap.ok(again == [] and bob.rpc("status").get("unread") == 0,
           "acknowledged messages are not returned again after a restart", repr(again))


def t_session_lost(tap, w, x):
    """Bob is away, and the broker restarts without its store: his session,
    and every frame Alice sends meanwhile, are gone.  Her retransmissions
    climb the whole resync ladder into the void; when Bob is back, the next
    key period starts both sides at sequence number 0 (protocol.md 2.1).
    The key period is 8 s here instead of an hour.  MQTT only: prosody
    keeps no sessions to lose."""
    if veil.transport() == "xmpp":
        tap.skip("session lost at the broker while the receiver was away",
                 "MQTT only: XMPP pubsub keeps no sessions to lose")
        return
    m = w.broker(subdir="lost")
    fast = {"retransmit": {"initial": "500ms", "max": "2s"},
            "keys": {"period": "%ds" % KEY_PERIOD_S}}
    a = w.daemon("Alice", m, dirname="lost-alice", accept="auto", **fast)
    b = w.daemon("Bob", m, dirname="lost-bob", **fast)
    veil.pair(a, b)
    warm = {a.rpc("message.send", to="Bob", text="before")["id"]: "before"}
    inbox = Inbox(b)
    inbox.until(warm, 15)
    tap.ok(b.stop() == 0, "session loss: Bob stopped", b.log_tail())
    m.stop()
    m.drop_sessions()
    m.start()
    sent = dict(warm)
    out0 = a.status()["frames"]["out"]
    for i in range(5):
        t = "while your session was lost %d" % i
        sent[a.rpc("message.send", to="Bob", text=t)["id"]] = t
    # Attempts 1 to 5 climb the ladder (0.5, 1, 2, 2, 2 s apart), all
    # lost; from then on only a new key period meets Bob.  Wait for those
    # five rounds of five frames to have left Alice.
    tap.ok(wait_for(lambda: a.status()["frames"]["out"] - out0 >= 25, 30),
           "session loss: Alice climbed the retransmission ladder (%d frames out)"
           % (a.status()["frames"]["out"] - out0))
    tap.ok(a.contacts()["Bob"]["queued"] == 5,
           "session loss: nothing was delivered while Bob was away",
           repr(a.contacts()))
    b.start()
    check_exactly_once(tap, "session loss, Alice to Bob after Bob's return", sent,
                       inbox, a, "Bob", patience=2 * KEY_PERIOD_S + 15)
    a.kill9()
    b.kill9()


# The receiver's clock landmarks move every CLOCK_SLOT_S seconds
# (docs/protocol.md 2.1): a sender beyond the resync ladder meets one at
# its first retransmission in a slot it has not jumped in yet.
CLOCK_SLOT_S = 64
AWAY_S = 40
AWAY_RETRANSMIT_MAX_S = 5
SLOT_EDGE_S = AWAY_RETRANSMIT_MAX_S + 3	# a retransmission and a start


def t_away_past_ladder(tap, w, x):
    """Bob is away for AWAY_S seconds across several epoch boundaries
    while Alice writes to him, under the default key period (an hour):
    every frame to his topics is lost at the broker (nobody holds them),
    and Alice's retransmissions climb the whole resync ladder into the
    void, past the highest landmark Bob arms.  After his return everything
    must arrive, exactly once, within a clock slot, a retransmission and a
    few seconds, not at the next key period."""
    m = w.broker(subdir="away")
    cfg = {"rotation": {"mean": "6s", "min": "3s", "max": "12s", "grace": "2s"},
           "retransmit": {"initial": "1s", "max": "%ds" % AWAY_RETRANSMIT_MAX_S}}
    a = w.daemon("Alice", m, dirname="away-alice", accept="auto", **cfg)
    b = w.daemon("Bob", m, dirname="away-bob", **cfg)
    veil.pair(a, b, timeout=30)
    inbox = Inbox(b)
    warm = {a.rpc("message.send", to="Bob", text="before")["id"]: "before"}
    tap.ok(inbox.until(warm, 15), "away: a first message reached Bob", b.log_tail())
    tap.ok(b.stop() == 0, "away: Bob stopped with SIGTERM", b.log_tail())
    gone = time.time()
    e0 = a.status(verbose=True)["ids"]["epoch"]
    sent = {}
    i = 0
    while time.time() < gone + AWAY_S:
        t = "while you were away %02d" % i
        sent[a.rpc("message.send", to="Bob", text=t)["id"]] = t
        i += 1
        time.sleep(3)	# pacing Alice's writing, not waiting for anything
    e1 = a.status(verbose=True)["ids"]["epoch"]
    tap.ok(e1 - e0 >= 3, "away: Bob was away for %d epoch boundaries (%.0f s), Alice "
           "wrote %d messages" % (e1 - e0, time.time() - gone, len(sent)))
    period = 3600
    back = time.time()
    if int(gone) // period != int(back + CLOCK_SLOT_S + 20) // period:
        tap.note("away: a key period boundary falls within this test: the new "
                 "period alone may bring the messages")
    # A landmark frame sent while Bob is still starting and subscribing
    # is lost, and a lost landmark frame costs a slot (docs/protocol.md
    # 2.1, point 5): the claim measured here is for a receiver that is
    # back before the next slot boundary, so Bob does not return in the
    # last seconds of a slot, nor in the first seconds of one (Alice may
    # not have used its landmark yet).
    offset = (time.time() - period * (int(time.time()) // period)) % CLOCK_SLOT_S
    if not SLOT_EDGE_S <= offset <= CLOCK_SLOT_S - 2 * SLOT_EDGE_S:
        wait = (SLOT_EDGE_S - offset) % CLOCK_SLOT_S
        tap.note("away: %.0f s into a clock slot; Bob returns %.0f s later, %d s "
                 "into a slot" % (offset, wait, SLOT_EDGE_S))
        time.sleep(wait)
    back = time.time()
    mark = b.log_mark()
    b.start()
    bound = CLOCK_SLOT_S + AWAY_RETRANSMIT_MAX_S + 6
    if veil.transport() == "xmpp":
        bound += 10	# prosody's pubsub is slower
    arrived = inbox.until(sent, bound)
    took = time.time() - back
    log = b.log_since(mark)
    drops = log.count("no key expects it")
    got = {mm["id"] for mm in inbox.got}
    tap.note("away: %d of %d messages arrived %.1f s after Bob's return, %.0f s into a "
             "clock slot; Bob dropped %d frames no key expected"
             % (len(set(sent) & got), len(sent), took, (back - period * (int(back) // period))
                % CLOCK_SLOT_S, drops))
    tap.ok(arrived, "away: every message arrived within %d s of Bob's return (a clock "
           "slot of %d s, retransmit.max %d s and a few seconds), not at the next key "
           "period (%d missing)" % (bound, CLOCK_SLOT_S, AWAY_RETRANSMIT_MAX_S,
                                    len(set(sent) - got)),
           a.log_tail() + b.log_tail())
    tap.ok("at the clock landmark of slot" in log,
           "away: Alice's frames met Bob again at a clock landmark", b.log_tail())
    check_exactly_once(tap, "away past the resync ladder", dict(warm, **sent), inbox, a,
                       "Bob")
    a.kill9()
    b.kill9()


KEY_PERIOD_S = 8

TESTS = [
    ("SIGKILL the receiver during 200 sends", t_kill_receiver),
    ("SIGKILL the receiver twice during a backlog", t_kill_receiver_twice),
    ("broker restart mid-traffic", t_broker_restart),
    ("SIGKILL the sender", t_kill_sender),
    ("reconnect with a full outbox", t_reconnect_flush),
    ("kept until taken", t_kept_until_taken),
    ("session lost at the broker while the receiver was away", t_session_lost),
    ("receiver away past the resync ladder, hour-long key periods", t_away_past_ladder),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 240})
