#!/usr/bin/env python3
"""test_reload.py: SIGHUP (veild.8): an invalid file keeps the running configuration, accept and the log level apply at once, every other change is logged as needing a restart and ignored; prints TAP."""

import copy
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import expect, wait_for  # noqa: E402

DEBUG_LINE = r"control: client uid \d+ pid \d+ connected"	# log_debug, on every connection
RESTART = r"reload: (\S+) changed: needs a restart, ignored until then"


def setup(w):
    return {"m": w.broker()}


def debug_on_connect(d):
    """Whether a new connection now makes veild log a debug line.  The
    line is written when the connection is accepted, before the answer."""
    mark = d.log_mark()
    d.rpc("status")
    return re.search(DEBUG_LINE, d.log_since(mark)) is not None


def t_log_level(tap, w, x):
    # Without -v: the level is the file's.
    d = w.daemon("Lou", x["m"], verbose=False, log={"level": "info"})
    tap.ok(not debug_on_connect(d), "log.level info: no debug line for a connection")
    d.reload(log={"level": "debug"})
    tap.ok(debug_on_connect(d), "reload to log.level debug: debug lines at once")
    d.reload(log={"level": "info"})
    tap.ok(not debug_on_connect(d), "reload back to info: no debug lines again")
    x["lou"] = d


def t_invalid(tap, w, x):
    d = x.get("lou") or w.daemon("Lou", x["m"], verbose=False, log={"level": "info"})
    d.reload(log={"level": "debug"})
    good = open(d.conf_path).read()
    with open(d.conf_path, "w") as f:
        f.write(good + "\nlog = { level = \"info\"; };\nthis is not libconfig\n")
    out = d.hup(r"keeping the running configuration")
    tap.ok(re.search(r"^reload: .*veild\.conf:\d+: .*; keeping the running configuration$",
                     out, re.M) and "configuration reloaded" not in out,
           "an invalid file: the error (file and line) is logged, nothing reloaded", out)
    tap.ok(d.alive() and debug_on_connect(d),
           "and the running configuration stays (still at log level debug)", d.log_tail(5))
    # An invalid value, not syntax: the same.
    with open(d.conf_path, "w") as f:
        f.write(good.replace('level = "debug"', 'level = "loud"'))
    out = d.hup(r"keeping the running configuration")
    tap.ok("log.level" in out and debug_on_connect(d),
           "an invalid value: logged with its key, the running configuration stays", out)
    with open(d.conf_path, "w") as f:
        f.write(good)
    d.reload(log={"level": "info"})
    tap.ok(not debug_on_connect(d), "the file fixed, a reload applies it again")


def t_accept(tap, w, x):
    m = x["m"]
    a = w.daemon("Ann", m, accept="ask")
    r1, r2 = w.daemon("Rob", m), w.daemon("Rae", m)
    r1.ctl_ok("contact", "add", a.ctl_ok("card")["uri"], "--name", "Ann")
    row = expect(lambda: [c for c in a.contacts().values() if c["peer_name"] == "Rob"],
                 15, "Rob's request at Ann")[0]
    tap.ok(row["state"] == "pending", "accept = \"ask\": a request waits", repr(row))
    out = a.reload(accept="auto")
    tap.ok(not re.search(RESTART, out), "accept is applied by a reload, not deferred", out)
    r2.ctl_ok("contact", "add", a.ctl_ok("card")["uri"], "--name", "Ann")
    ok = wait_for(lambda: any(c["peer_name"] == "Rae" and c["state"] == "established"
                              for c in a.contacts().values()) and
                  r2.contacts()["Ann"]["state"] == "established", 15)
    tap.ok(ok, "after a reload to accept = \"auto\" the next request is accepted at once",
           repr((a.contacts(), r2.contacts())))
    for d in (a, r1, r2):
        d.kill9()


def t_restart_keys(tap, w, x):
    m = x["m"]
    d = w.daemon("Ray", m)
    st0 = expect(lambda: (lambda st: st["connected"] and st)(d.status()), 15, "Ray connected")
    other = "xmpp" if w.transport == "mqtt" else "mqtt"
    new_sock = d.socket + ".new"
    new_state = d.state_dir + ".new"
    changes = {
        "state_dir": new_state,
        "socket": new_sock,
        "transport": other,
        "identity": {"name": "Raymond", "obscurity": 3},
        "frames": {"size": 2048, "cover_rate": 60.0},
        "socket_group": "nogroup" if os.geteuid() == 0 else "",
    }
    if other == "xmpp":
        # Loopback only, should the change be applied by mistake.
        changes["xmpp"] = {"domain": "example.invalid", "host": "127.0.0.1", "port": 9}
    # Everything the test changes, and nothing a reload applies.
    keep = copy.deepcopy(d.cfg)
    out = d.reload(**changes)
    named = set(re.findall(RESTART, out))
    want = {"state_dir", "socket", "transport", "identity.name", "identity.obscurity",
            "frames.size", "frames.cover_rate"}
    if os.geteuid() == 0:
        want.add("socket_group")
    tap.ok(want <= named, "each key that needs a restart is logged as such (%s)"
           % ", ".join(sorted(named)), "missing: %r\n%s" % (sorted(want - named), out))
    tap.ok(not any(k.startswith(("retransmit", "rotation", "accept", "log")) for k in named),
           "no key a reload applies is among them", repr(named))
    st = d.status()
    tap.ok(all(st[k] == st0[k] for k in ("name", "transport", "obscurity", "frame_size")) and
           wait_for(lambda: d.status()["connected"], 10), "they are ignored until a restart: name, transport, obscurity, "
           "frame size as before, still connected", repr((st0, st)))
    tap.ok(not os.path.exists(new_sock) and not os.path.exists(new_state),
           "still on the old socket; no new socket or state directory", repr(os.listdir(d.dir)))
    tap.ok(not re.search(r"Raymond|example\.invalid|nogroup", out),
           "the log names the keys, not their new values", out)
    # A reload of changes it applies only: no restart lines.
    d.cfg = keep
    d.write_config()
    out = d.reload(retransmit={"initial": "2s", "max": "10s"},
                   rotation={"mean": "2h", "min": "1h", "max": "3h", "grace": "5m"})
    tap.ok(not re.search(RESTART, out), "retransmit and rotation changes: applied, no "
           "restart asked", out)
    d.kill9()


TESTS = [
    ("log level", t_log_level),
    ("invalid file", t_invalid),
    ("accept ask to auto", t_accept),
    ("keys that need a restart", t_restart_keys),
]

if __name__ == "__main__":
    veil.main(TESTS, setup=setup, world_args={"watchdog": 100})
