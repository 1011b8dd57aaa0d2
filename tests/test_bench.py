#!/usr/bin/env python3
"""test_bench.py: tools/veil-bench runs once in its tiny configuration, reports every field, judges each SPEC target consistently, and trips on memory, start time and rotation stalls; no speed is asserted."""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("VEIL_TOP_SRCDIR") or os.path.join(HERE, os.pardir)
BENCH = os.path.join(SRC, "tools", "veil-bench")

n = 0
failed = 0


def ok(cond, desc, diag=""):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, desc))
    if not cond and diag:
        for line in str(diag).rstrip().splitlines()[-40:]:
            print("# " + line)
    sys.stdout.flush()


def skip(desc, reason):
    global n
    n += 1
    print("ok %d - %s # SKIP %s" % (n, desc, reason))
    sys.stdout.flush()


def has(obj, path):
    """obj's value at the dotted path, or KeyError naming what is missing."""
    for k in path.split("."):
        if not isinstance(obj, dict) or k not in obj:
            raise KeyError(path)
        obj = obj[k]
    return obj


MSG_STATS = ("n", "min", "mean", "p50", "p90", "p99", "max")
VEIL_RUN = ["count", "received", "delivered", "duplicates", "elapsed_s",
            "msgs_per_s"] + ["%s_us.%s" % (w, s) for w in ("oneway", "ack",
                                                           "latency")
                             for s in MSG_STATS]
RAW_RUN = ["received", "msgs_per_s"] + ["latency_us.%s" % s
                                         for s in MSG_STATS if s != "n"]


def fields(res):
    """Every field a run must report, as dotted paths."""
    want = ["machine.nproc", "machine.kernel", "tmp_fstype",
            "options.frame_size", "options.count", "options.contacts",
            "mqtt.alice_start_0.ready_s", "mqtt.alice_start_0.status_s",
            "mqtt.alice_rss_0.rss_kib", "mqtt.alice_rss_0.hwm_kib"]
    for base in ("mqtt", "mqtt.scale"):
        want += ["%s.throughput_ratio" % base]
        want += ["%s.added_oneway_us.%s" % (base, p) for p in
                 ("p50", "p90", "p99")]
        want += ["%s.added_ack_us.%s" % (base, p) for p in
                 ("p50", "p90", "p99")]
        for run in ("veil_throughput", "veil_latency"):
            want += ["%s.%s.%s" % (base, run, f) for f in VEIL_RUN]
        for run in ("raw_throughput", "raw_latency", "raw_ack",
                    "raw_throughput_nodelay", "raw_ack_nodelay"):
            want += ["%s.%s.%s" % (base, run, f) for f in RAW_RUN]
    sc = "mqtt.scale."
    want += [sc + f for f in (
        "contacts", "mkcontacts_s", "start.ready_s", "start.status_s",
        "connect_s", "rss_at_status.rss_kib", "rss_settled.rss_kib",
        "rss_after_rotation.hwm_kib", "rotation.announced",
        "rotation.rotate_call_s", "rotation.outbox_rows_s",
        "rotation.frames_out_s", "rotation.status_ms.calls",
        "rotation.status_ms.p99", "rotation.status_ms.max")]
    return want


def main():
    top = os.environ.get("VEIL_TOP_BUILDDIR")
    if not top:
        print("Bail out! VEIL_TOP_BUILDDIR is not set (run through make check)")
        return 99
    for rel in ("daemon/veild", "tools/bench-raw", "tools/veil-mkcontacts"):
        if not os.access(os.path.join(top, rel), os.X_OK):
            print("Bail out! %s/%s is missing: build it first (make)"
                  % (top, rel))
            return 99
    # Small enough for a few seconds, big enough that every code path runs
    # (pipelining, a full message.receive page is not needed).
    cmd = [sys.executable, BENCH, "--builddir", top, "--quick", "--json",
           "--quiet", "--count", "200", "--latency-count", "20",
           "--ack-count", "5", "--contacts", "100", "--timeout", "60"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=150,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        ok(False, "veil-bench --quick finished", "timed out: %s" % e)
        return finish()
    ok(r.returncode == 0, "veil-bench --quick exits 0 (%.1f s)"
       % (time.monotonic() - t0), r.stderr)
    try:
        res = json.loads(r.stdout)
    except ValueError as e:
        ok(False, "its --json output parses", "%s\n%s" % (e, r.stdout[:2000]))
        return finish()
    ok(isinstance(res, dict), "its --json output is one object")
    missing = []
    for path in fields(res):
        try:
            v = has(res, path)
            if v is None:
                missing.append(path + " (null)")
        except KeyError:
            missing.append(path)
    ok(not missing, "every field is reported", "\n".join(missing))
    try:
        for base in ("mqtt", "mqtt.scale"):
            for run, want in (("veil_throughput", 200), ("veil_latency", 20)):
                v = has(res, "%s.%s" % (base, run))
                ok(v["received"] == want and v["delivered"] == want and
                   v["duplicates"] == 0,
                   "%s %s: every message received and delivered once"
                   % (base, run), json.dumps(v, indent=1))
        ok(has(res, "mqtt.scale.rotation.announced") == 101,
           "the rotation was announced to 100 synthetic contacts and Bob",
           json.dumps(has(res, "mqtt.scale.rotation"), indent=1))
        ok(has(res, "mqtt.scale.rotation.status_ms.calls") > 0,
           "the stall probe answered status during the rotation")
        tg = res.get("targets")
        ok(isinstance(tg, list) and len(tg) == 6 and
           all(set(t) == {"target", "value", "limit", "met"} for t in tg),
           "the six SPEC section 8 targets are evaluated", repr(tg))
        # Each verdict is the comparison its name states.
        wrong = []
        for t in tg:
            op = ">=" if ">=" in t["target"] else "<"
            want = t["value"] >= t["limit"] if op == ">=" else t["value"] < t["limit"]
            if t["met"] is not want:
                wrong.append(t)
        ok(not wrong, "every target's 'met' is its value against its limit", repr(wrong))
        # Tripwires that hold on any machine: memory and start time do not
        # depend on a quiet CPU, and a rotation of 100 contacts that holds
        # the loop for 50 ms is broken, not slow.  Throughput and latency
        # are only noted: --quick runs are too short and this box is shared
        # (docs/benchmarks.md has the full measurement).
        by = {t["target"]: t for t in tg}
        for key in ("RSS (VmRSS settled)", "peak RSS", "start (spawn -> status)",
                    "rotation: max status time"):
            t = [v for k, v in by.items() if k.startswith(key)]
            if os.environ.get("VEIL_SANITIZERS") == "yes":
                # ASan's shadow memory and quarantine, and its slower
                # code: a sanitized veild's memory and time say nothing.
                skip("tripwire: %s" % key, "sanitizer build: memory and time "
                     "of an ASan veild mean nothing (the plain build checks it)")
                continue
            if key.startswith("rotation"):
                # One status call's worst time on a shared CPU is noise
                # at the scale of the 50 ms target (a run under load once
                # saw 75 ms); a broken rotation holds the loop for far
                # longer.  Five times the target trips it; the target
                # itself is measured by the benchmark (docs/benchmarks.md).
                ok(len(t) == 1 and t[0]["value"] < 5 * t[0]["limit"],
                   "tripwire: rotation: max status time < %g ms (%.3g; the "
                   "target, %g ms, is %s)" % (5 * t[0]["limit"], t[0]["value"],
                                              t[0]["limit"], "met" if t[0]["met"]
                                              else "not met in this short run")
                   if t else "tripwire: " + key, repr(t))
                continue
            ok(len(t) == 1 and t[0]["met"], "tripwire: %s (%.3g against %g)" % (
                t[0]["target"] if t else key, t[0]["value"] if t else -1,
                t[0]["limit"] if t else -1), repr(t))
        for t in tg:
            if t["target"].startswith(("throughput", "p50")):
                print("# not asserted (--quick, shared CPU): %s: %.3g, %s" % (
                    t["target"], t["value"], "met" if t["met"] else "not met"))
    except KeyError as e:
        ok(False, "result structure", "missing %s" % e)
    # The human table: same run, no JSON.
    r = subprocess.run([sys.executable, BENCH, "--help"], capture_output=True,
                       text=True, timeout=30)
    ok(r.returncode == 0 and "--concurrency" in r.stdout and
       "--transport" in r.stdout, "veil-bench --help", r.stdout + r.stderr)
    return finish()


def finish():
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
