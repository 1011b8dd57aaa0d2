#!/usr/bin/env python3
"""test_soak.py: tools/veil-soak in small (1,000 messages among three users, a SIGKILL of each, a broker restart, fast rotation and cover traffic): nothing lost, nothing twice; prints TAP."""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402

SRC = os.environ.get("VEIL_TOP_SRCDIR") or os.path.join(os.path.dirname(
    os.path.abspath(__file__)), os.pardir)
SOAK = os.path.join(SRC, "tools", "veil-soak")
MESSAGES = 1000
SECONDS = 45	# to send them in: ~22 a second; the broker's stays far below its limits


def main():
    tap = veil.Tap()
    t = veil.transport()
    tap.note("transport %s" % t)
    if t == "xmpp" and not os.access(veil.PROSODY, os.X_OK):
        print("1..0 # SKIP VEIL_TRANSPORT=xmpp but no prosody at %s" % veil.PROSODY)
        return 0
    started = time.time()
    out = tempfile.NamedTemporaryFile(prefix="veil-soak-", suffix=".json", delete=False)
    out.close()
    cmd = [sys.executable, SOAK, "--builddir", veil.builddir(), "--transport", t,
           "--users", "3", "--messages", str(MESSAGES), "--duration", str(SECONDS),
           "--kills", "1", "--broker-restarts", "1", "--rotation", "4s",
           "--cover-rate", "600", "--json", out.name]
    tap.note(" ".join(cmd[1:]))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=900 if veil.sanitized() else 600)
        code, text, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        code, text, err = None, str(e.stdout or ""), str(e.stderr or "")
    try:
        with open(out.name) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = None
    os.unlink(out.name)
    tap.note(text)
    tap.ok(code == 0, "veil-soak passes (exit %r)" % code, text[-3000:] + err[-3000:])
    if res is None:
        tap.ok(False, "veil-soak wrote its results", err[-3000:])
        return tap.finish()
    tot = res["totals"]
    tap.ok(tot["sent"] == MESSAGES, "all %d messages sent (message.send answered)" % MESSAGES,
           repr(tot))
    tap.ok(tot["lost"] == 0 and tot["delivered"] == tot["sent"],
           "none lost: %d delivered of %d" % (tot["delivered"], tot["sent"]),
           repr([f for f in res["flows"] if f["lost"]]))
    tap.ok(tot["duplicated"] == 0, "none duplicated (%d)" % tot["duplicated"],
           repr([f["duplicates"] for f in res["flows"] if f["duplicated"]]))
    tap.ok(tot["damaged"] == 0 and tot["unsent_but_delivered"] == 0 and not res["errors"],
           "every text arrived whole, and only texts that were sent", repr(res["errors"]))
    tap.ok(tot["multi_frame"] >= MESSAGES // 10,
           "%d of them took several frames" % tot["multi_frame"])
    kills = res["kills"]
    tap.ok(len(kills) == 3 and all(n >= 1 for n in kills.values()),
           "every daemon was SIGKILLed at a random moment (%r)" % kills)
    tap.ok(res["broker_restarts_done"] == 1, "the broker restarted once")
    epochs = res["epochs_seen"]
    tap.ok(len(epochs) == 3 and min(epochs.values()) >= SECONDS // 4 // 2,
           "each daemon went through new epochs every 4 s (%r)" % epochs)
    tap.ok(tot["retried_sends"] >= 1,
           "sends cut off by a SIGKILL were repeated with their key (%d)"
           % tot["retried_sends"])
    tap.ok(not res["deaths"] and all(c in (0, None) for c in res["exit_codes"].values()),
           "no veild died by itself; each stopped cleanly at the end",
           repr((res["deaths"], res["exit_codes"])))
    hits = res["sanitizer"] + ["%s: %s" % (p, x[:2000]) for p, x in
                               veil.sanitizer_reports(started)]
    tap.ok(not hits, "no sanitizer report", "\n".join(hits[:40]))
    lat = res["latency_s"]
    tap.note("latency p50 %.3f s, p99 %.3f s, max %.3f s; longest outage %.1f s"
             % (lat["p50"], lat["p99"], lat["max"], res["longest_outage"]["seconds"]))
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
