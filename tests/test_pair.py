#!/usr/bin/env python3
"""test_pair.py: two veild through a real broker (mosquitto or prosody, by $VEIL_TRANSPORT) become contacts with veilctl and talk; prints TAP."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import RpcError, wait_for  # noqa: E402


def setup(w):
    m = w.broker()
    alice = w.daemon("Alice", m, accept="ask")
    bob = w.daemon("Bob", m)
    return {"m": m, "alice": alice, "bob": bob}


def t_pair_ask(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    watch = alice.client()
    watch.call("subscribe", {"events": ["contact.request", "contact.state"]})
    rc, card, err = alice.ctl("card")
    tap.ok(rc == 0 and card.get("uri", "").startswith("veil:"),
           "veilctl card prints a veil: URI", repr((rc, card, err)))
    rc, out, err = bob.ctl("contact", "add", card["uri"], "--name", "Alice")
    tap.ok(rc == 0, "veilctl contact add on Bob", repr((rc, out, err)))

    n = watch.wait_notification(lambda m: m["method"] == "contact.request", 10)
    tap.ok(n is not None and n["params"].get("peer_name") == "Bob" and
           n["params"].get("name") == "Bob" and n["params"].get("fingerprint"),
           "Alice's subscriber gets contact.request from Bob", repr(n) + alice.log_tail())
    rc, lst, err = alice.ctl("contact", "list")
    rows = {c["name"]: c for c in lst.get("contacts", [])} if rc == 0 else {}
    tap.ok(rows.get("Bob", {}).get("state") == "pending",
           "veilctl contact list on Alice: Bob is pending", repr((rc, lst, err)))
    tap.ok(bob.contacts().get("Alice", {}).get("state") == "requested",
           "Bob sees Alice as requested until she accepts", repr(bob.contacts()))
    # Text output too: the human table names the pending contact.
    rc, text, err = alice.ctl("contact", "list", json_out=False)
    tap.ok(rc == 0 and "Bob" in text and "pending" in text,
           "veilctl contact list (human) shows Bob pending", text + err)

    rc, out, err = alice.ctl("contact", "accept", "Bob")
    tap.ok(rc == 0, "veilctl contact accept Bob", repr((rc, out, err)))
    ok = wait_for(lambda: alice.contacts()["Bob"]["state"] == "established" and
                  bob.contacts()["Alice"]["state"] == "established", 10)
    tap.ok(ok, "both sides established", repr((alice.contacts(), bob.contacts())))
    n = watch.wait_notification(lambda m: m["method"] == "contact.state" and
                                m["params"].get("state") == "established", 5)
    tap.ok(n is not None and n["params"].get("name") == "Bob",
           "Alice's subscriber gets contact.state established", repr(n))
    watch.close()
    rc, out, err = alice.ctl("contact", "accept", "Bob")
    tap.ok(rc != 0 and err.strip(), "accepting an established contact again fails",
           repr((rc, out, err)))


def t_messages(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    rc, out, err = bob.ctl("send", "Alice", "hello", "Alice")
    tap.ok(rc == 0 and isinstance(out, dict) and len(out.get("id", "")) >= 16,
           "veilctl send on Bob returns an id", repr((rc, out, err)))
    bid = out.get("id") if isinstance(out, dict) else None
    rc, out, err = alice.ctl("send", "Bob", input=b"hi Bob\n")
    tap.ok(rc == 0, "veilctl send on Alice from stdin", repr((rc, out, err)))
    aid = out.get("id") if isinstance(out, dict) else None

    rc, got, err = alice.ctl("recv", "--wait", "10")
    msgs = got.get("messages", []) if isinstance(got, dict) else []
    tap.ok(rc == 0 and [(m["id"], m["from"], m["text"]) for m in msgs] ==
           [(bid, "Bob", "hello Alice")],
           "Alice receives Bob's message (id, sender, text)", repr((rc, got, err)))
    rc, got, err = bob.ctl("recv", "--wait", "10")
    msgs = got.get("messages", []) if isinstance(got, dict) else []
    tap.ok(rc == 0 and [(m["id"], m["from"], m["text"]) for m in msgs] ==
           [(aid, "Alice", "hi Bob")],
           "Bob receives Alice's message (stdin, trailing newline dropped)",
           repr((rc, got, err)))
    rc, got, err = alice.ctl("recv")
    tap.ok(rc == 0 and got == {"messages": []},
           "a message taken by recv is not returned again", repr((rc, got, err)))

    bob.ctl_ok("send", "Alice", "plain", "text")
    rc, text, err = alice.ctl("recv", "--wait", "10", json_out=False)
    tap.ok(rc == 0 and "Bob: plain text" in text, "veilctl recv (human) shows 'Bob: text'",
           repr((rc, text, err)))


def t_delivery(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    watch = bob.client()
    watch.call("subscribe", {"events": ["delivery"]})
    r = watch.call("message.send", {"to": "Alice", "text": "ack me"})
    mid = r.get("id")
    # Receipts for earlier messages may still come in: wait for this one.
    n = watch.wait_notification(lambda m: m["method"] == "delivery" and
                                m["params"].get("id") == mid, 10)
    tap.ok(n is not None and n["params"].get("id") == mid and
           n["params"].get("to") == "Alice",
           "delivery notification carries message.send's id and the recipient",
           repr((mid, n)) + bob.log_tail())
    # The id veilctl printed is the one the delivery receipt names.
    rc, out, err = bob.ctl("send", "Alice", "ack me too")
    n = watch.wait_notification(lambda m: m["method"] == "delivery" and
                                m["params"].get("id") == out.get("id"), 10)
    tap.ok(rc == 0 and n is not None and n["params"].get("id") == out.get("id"),
           "delivery for the id printed by veilctl send", repr((out, n)))
    tap.ok(wait_for(lambda: bob.contacts()["Alice"]["queued"] == 0, 5),
           "nothing left queued after the receipts", repr(bob.contacts()))
    watch.close()
    got = alice.receive_all()
    tap.ok(sorted(m["text"] for m in got) == ["ack me", "ack me too"],
           "both delivered messages are at Alice", repr(got))


def t_fingerprint(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    ra = alice.ctl_ok("contact", "verify", "Bob")
    rb = bob.ctl_ok("contact", "verify", "Alice")
    fa, fb = ra.get("fingerprint"), rb.get("fingerprint")
    tap.ok(fa and fa == fb, "the fingerprint is the same on both sides", repr((ra, rb)))
    tap.ok(ra.get("verified") is False, "not verified before --mark", repr(ra))
    rm = alice.ctl_ok("contact", "verify", "Bob", "--mark")
    tap.ok(rm.get("verified") is True and alice.contacts()["Bob"]["verified"] is True,
           "contact verify --mark marks it verified", repr((rm, alice.contacts())))
    tap.ok(alice.contacts()["Bob"]["fingerprint"] == fa,
           "contact list shows the same fingerprint", repr(alice.contacts()))


def t_auto(tap, w, x):
    m = x["m"]
    carol = w.daemon("Carol", m, accept="auto")
    dave = w.daemon("Dave", m)
    x["carol"], x["dave"] = carol, dave
    watch = carol.client()
    watch.call("subscribe", {"events": ["contact.request", "contact.state"]})
    uri = carol.ctl_ok("card")["uri"]
    dave.ctl_ok("contact", "add", uri)
    ok = wait_for(lambda: carol.contacts().get("Dave", {}).get("state") == "established"
                  and dave.contacts().get("Carol", {}).get("state") == "established", 10)
    tap.ok(ok, "accept = \"auto\": established without contact accept "
           "(name defaults to the card's)",
           repr((carol.contacts(), dave.contacts())) + carol.log_tail())
    n = watch.wait_notification(lambda n: n["method"] == "contact.request", 2)
    tap.ok(n is not None, "auto-accept still tells the subscriber about the request",
           repr(watch.notes))
    watch.close()
    dave.ctl_ok("send", "Carol", "auto works")
    got = carol.receive_all(wait=10)
    tap.ok([m["text"] for m in got] == ["auto works"], "messages flow after auto-accept",
           repr(got))


def t_reject(tap, w, x):
    alice = x["alice"]
    mallory = w.daemon("Mallory", x["m"])
    uri = alice.ctl_ok("card")["uri"]
    mallory.ctl_ok("contact", "add", uri, "--name", "Alice")
    ok = wait_for(lambda: alice.contacts().get("Mallory", {}).get("state") == "pending", 10)
    tap.ok(ok, "Mallory's request is pending at Alice", repr(alice.contacts()))
    rc, out, err = alice.ctl("contact", "reject", "Mallory")
    tap.ok(rc == 0, "veilctl contact reject Mallory", repr((rc, out, err)))
    tap.ok("Mallory" not in alice.contacts() and "Bob" in alice.contacts(),
           "the rejected request is gone, other contacts stay", repr(alice.contacts()))
    # Give retransmissions (initial 1 s) a chance to resurrect it.
    wait_for(lambda: False, 3)
    tap.ok("Mallory" not in alice.contacts(),
           "the rejected request does not come back with retransmissions",
           repr(alice.contacts()))
    tap.ok(mallory.contacts().get("Alice", {}).get("state") == "requested",
           "the requester stays requested", repr(mallory.contacts()))
    rc, out, err = mallory.ctl("send", "Alice", "let me in")
    tap.ok(rc != 0 and "requested" in err, "sending to a requested contact fails",
           repr((rc, out, err)))
    mallory.kill9()


def t_remove(tap, w, x):
    carol, dave = x.get("carol"), x.get("dave")
    if carol is None:
        tap.ok(False, "contact remove: needs the auto-accept pair")
        return
    rc, out, err = dave.ctl("contact", "remove", "Carol")
    tap.ok(rc == 0 and "Carol" not in dave.contacts(), "veilctl contact remove Carol",
           repr((rc, out, err, dave.contacts())))
    rc, out, err = dave.ctl("send", "Carol", "gone?")
    tap.ok(rc != 0 and err.startswith("veilctl:"), "sending to a removed contact fails",
           repr((rc, out, err)))
    rc, out, err = dave.ctl("contact", "remove", "Carol")
    tap.ok(rc != 0, "removing it twice fails", repr((rc, out, err)))
    dave.kill9()
    carol.kill9()


def t_large(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    # Printable, not repetitive, so a lost or swapped frame changes it.
    text = "".join("%05d:%s|" % (i, "abcdefghijklmnopqrstuvwxyz"[i % 26] * (i % 7))
                   for i in range(1400))[:10240]
    rc, out, err = bob.ctl("send", "Alice", input=text.encode())
    tap.ok(rc == 0, "veilctl send of a 10 KiB message", repr((rc, err)))
    got = alice.receive_all(wait=10)
    tap.ok(len(got) == 1 and got[0]["text"] == text,
           "10 KiB message (several frames) arrives intact",
           "got %d messages, lengths %r" % (len(got), [len(m.get("text", "")) for m in got]))
    big = "B" * 300000 + "end"
    mid = bob.rpc("message.send", to="Alice", text=big)["id"]
    got = alice.receive_all(wait=15)
    tap.ok(len(got) == 1 and got[0]["id"] == mid and got[0]["text"] == big,
           "300 KB message arrives intact", repr([len(m.get("text", "")) for m in got]))


def t_unicode(tap, w, x):
    alice, bob = x["alice"], x["bob"]
    texts = ["Grüße, 日本語, Ελληνικά, עברית, emoji \U0001F600\U0001F469\u200D\U0001F4BB",
             "line one\nline two\ttab",
             "combining e\u0301 and \u00e9, nbsp\u00a0, bom \ufeff",
             "-5 degrees"]
    ids = []
    for t in texts:
        ids.append(alice.ctl_ok("send", "Bob", t)["id"])
    via_stdin = "stdin: ¿qué? ✓ \U0001F680"
    ids.append(alice.ctl_ok("send", "Bob", input=via_stdin.encode())["id"])
    want = dict(zip(ids, texts + [via_stdin]))
    got = {}

    def all_in():
        for m in bob.receive_all():
            got[m["id"]] = m.get("text")
        return len(got) >= len(want)
    wait_for(all_in, 10)
    tap.ok(got == want, "UTF-8 texts (multi-byte, ZWJ, newline, tab, BOM) arrive "
           "byte for byte", repr((want, got)))
    rc, out, err = alice.ctl("send", "Bob", input=b"bad \xff\xfe utf-8")
    tap.ok(rc != 0, "veilctl refuses a message that is not UTF-8", repr((rc, out, err)))
    try:
        alice.rpc("message.send", to="Bob", text="")
        got_empty = wait_for(lambda: bob.receive_all(), 5)
        tap.ok(got_empty and got_empty[0]["text"] == "", "an empty message arrives empty",
               repr(got_empty))
    except RpcError as e:
        tap.ok(e.code == -32602, "an empty message is refused as a bad parameter",
               repr(e))


def t_unknown(tap, w, x):
    bob = x["bob"]
    rc, out, err = bob.ctl("send", "Nobody", "hello?")
    tap.ok(rc != 0 and "Nobody" in err and err.startswith("veilctl:"),
           "veilctl send to an unknown name: non-zero exit, daemon's error on stderr",
           repr((rc, out, err)))
    try:
        bob.rpc("message.send", to="Nobody", text="x")
        tap.ok(False, "message.send to an unknown name is an error")
    except RpcError as e:
        tap.ok(e.code == -32000, "message.send to an unknown name: error -32000",
               repr((e.code, e.message)))
    for args in (("contact", "accept", "Nobody"), ("contact", "verify", "Nobody"),
                 ("contact", "reject", "Nobody")):
        rc, out, err = bob.ctl(*args)
        tap.ok(rc != 0 and err.strip(), "veilctl %s: non-zero exit" % " ".join(args),
               repr((rc, out, err)))
    rc, out, err = bob.ctl("contact", "add", "veil:notacard", "--name", "X")
    tap.ok(rc != 0 and err.strip(), "veilctl contact add with a broken card fails",
           repr((rc, out, err)))
    rc, out, err = bob.ctl("send")
    tap.ok(rc == 2, "veilctl send without a name: usage, exit 2", repr((rc, out, err)))
    for d in (x["alice"], bob):
        tap.ok(d.alive(), "%s still running at the end" % d.name, d.log_tail())


TESTS = [
    ("pair with accept=ask", t_pair_ask),
    ("messages both ways", t_messages),
    ("delivery receipts", t_delivery),
    ("fingerprints", t_fingerprint),
    ("accept=auto", t_auto),
    ("reject", t_reject),
    ("remove", t_remove),
    ("large messages", t_large),
    ("unicode", t_unicode),
    ("unknown names", t_unknown),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 100})
