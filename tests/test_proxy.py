#!/usr/bin/env python3
"""test_proxy.py: every broker connection of veild goes through mqtt.proxy (none direct), and no two client IDs present the same proxy credentials; prints TAP."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from connect_proxy import ConnectProxy  # noqa: E402
from veil import wait_for  # noqa: E402

# Short epochs: several client IDs per daemon within the test.
FAST = {"rotation": {"mean": "6s", "min": "2s", "max": "30s", "grace": "2s"}}


def setup(w):
    if w.transport != "mqtt":
        return None
    m = w.broker(log_all=True)
    proxy = ConnectProxy()
    w.proxy = proxy
    a = w.daemon("Alice", m, accept="auto", mqtt={"proxy": proxy.url}, **FAST)
    b = w.daemon("Bob", m, mqtt={"proxy": proxy.url}, **FAST)
    veil.pair(a, b)
    return {"m": m, "a": a, "b": b, "proxy": proxy}


def t_all_through_proxy(tap, w, x):
    a, b, m, proxy = x["a"], x["b"], x["m"], x["proxy"]
    sent = {}
    for i in range(6):
        src, dst = (a, "Bob") if i % 2 == 0 else (b, "Alice")
        t = "through the tunnel %d" % i
        sent[src.rpc("message.send", to=dst, text=t)["id"]] = t
        time.sleep(1.5)		# across epochs: new client IDs meanwhile
    got = {}

    def all_in():
        for d in (a, b):
            for msg in d.receive_all():
                got[msg["id"]] = msg["text"]
        return set(sent) <= set(got)
    tap.ok(wait_for(all_in, 40), "6 messages through the proxy arrive, across rotations",
           repr((sent, got)) + a.log_tail() + b.log_tail())
    # The broker's view: every connection it saw came from a tunnel.
    log = m.log()
    conns = re.findall(r"New client connected from 127\.0\.0\.1:(\d+) as (\S+) \(", log)
    recs = proxy.records()
    out_ports = {r["out_port"]: r for r in recs if r["ok"]}
    direct = [(p, c) for p, c in conns if int(p) not in out_ports]
    tap.ok(conns and not direct,
           "every one of the %d connections the broker saw came through the proxy" % len(conns),
           "direct: %r\nproxy ports: %r" % (direct[:5], sorted(out_ports)[:10]))
    # Each client ID's credentials, as the proxy saw them on its tunnel.
    by_id = {}
    for p, cid in conns:
        r = out_ports.get(int(p))
        if r is not None:
            by_id.setdefault(cid, set()).add(r["auth"])
    ids = sorted(by_id)
    auths = [a for s in by_id.values() for a in s]
    owners = {}
    for cid, s in by_id.items():
        for au in s:
            owners.setdefault(au, set()).add(cid)
    shared = {au: sorted(c) for au, c in owners.items() if len(c) > 1}
    tap.ok(len(ids) >= 4 and None not in auths and not shared,
           "%d client IDs, each with its own proxy credentials (none shared, none missing)"
           % len(ids), "shared: %r, ids: %r" % (shared, by_id))
    tap.ok(all(re.fullmatch(r"[0-9A-Za-z]{16}:[0-9A-Za-z]{24}", au) for au in auths if au),
           "the credentials are random (16 + 24 characters of [0-9A-Za-z])", repr(auths[:3]))
    tap.ok(all(r["target"] == "127.0.0.1:%d" % m.port for r in recs),
           "every tunnel asked for the broker, nothing else", repr({r["target"] for r in recs}))


def t_no_proxy_no_tunnel(tap, w, x):
    """Control: without mqtt.proxy nothing goes through it, even with
    http_proxy in the environment (veild clears it)."""
    m, proxy = x["m"], x["proxy"]
    c = w.daemon("Carol", m, env={"http_proxy": proxy.url, "https_proxy": proxy.url})
    ok = wait_for(lambda: c.rpc("status").get("connected"), 10)
    time.sleep(1)
    # Alice and Bob still rotate through the proxy: tell Carol's
    # connections apart by her client IDs and the broker's source ports.
    mine = set(re.findall(r"mqtt: connecting as (\S+)", c.log()))
    conns = re.findall(r"New client connected from 127\.0\.0\.1:(\d+) as (\S+) \(", m.log())
    tunneled = {r["out_port"] for r in proxy.records() if r["ok"]}
    hers = [int(p) for p, cid in conns if cid in mine]
    tap.ok(ok and hers and not any(p in tunneled for p in hers),
           "without mqtt.proxy: %d connections straight to the broker, http_proxy from "
           "the environment ignored" % len(hers), repr((mine, hers)) + c.log_tail())


def t_xmpp_refused(tap, w, x):
    """XMPP cannot go through a proxy: refused at start, saying so."""
    p = w.prosody(storage="memory")
    d = w.daemon("Xena", p, start=False, mqtt={"proxy": "http://127.0.0.1:9"})
    try:
        d.start(timeout=5)
        started = True
    except RuntimeError:
        started = False
    tap.ok(not started and "the XMPP transport cannot connect through a proxy" in d.log(),
           "transport xmpp with mqtt.proxy: veild refuses to start, saying why", d.log_tail())


TESTS = [
    ("every connection through the proxy, credentials per client ID", t_all_through_proxy),
    ("no proxy configured, none used", t_no_proxy_no_tunnel),
    ("xmpp with a proxy refused", t_xmpp_refused),
]

if __name__ == "__main__":
    if veil.transport() != "mqtt":
        print("1..0 # SKIP the proxy is MQTT's (XMPP through a proxy is refused)")
        sys.exit(0)
    veil.main(TESTS, setup=setup, world_args={"watchdog": 150})
