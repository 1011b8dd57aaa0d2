"""bench_lib.py: helpers of the benchmark harness (broker, bench-raw runs, percentiles, RSS, output); Python 3 stdlib only.

As a program it runs the raw broker baseline matrix that docs/benchmarks.md
records:

    python3 tools/bench_lib.py --bench-raw /tmp/bench-raw --windows 10,64,100
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, os.pardir, "tests", "lib"))
from brokers import Mosquitto  # noqa: E402  (needs the path above)

BENCH_RAW_MODES = ("throughput", "latency", "ack")


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


# --- broker ---------------------------------------------------------------

def start_mosquitto(tmpdir, tcp_nodelay=False):
    """A loopback mosquitto logging at its default levels (info, not "all").

    "log_type all" writes a line per PUBLISH and costs throughput; the
    benchmark measures the broker path, not its logging.  tcp_nodelay adds
    "set_tcp_nodelay true" (mosquitto's default is false, so its small
    writes to clients wait for delayed ACKs; see docs/benchmarks.md).
    Use as a context manager or call .stop().
    """
    m = Mosquitto(tmpdir, log_all=False)
    if tcp_nodelay:
        # brokers.py writes its config and starts at once: amend, restart.
        m.stop()
        with open(m.conf_path, "a") as f:
            f.write("set_tcp_nodelay true\n")
        m.start()
    return m


# --- statistics -----------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile (the same rule as bench-raw): the smallest
    value with at least p% of the values at or below it.  None if empty."""
    if not values:
        return None
    if not 0 < p <= 100:
        raise ValueError("percentile: p must be in (0, 100], got %r" % p)
    s = sorted(values)
    return s[max(1, math.ceil(p * len(s) / 100.0)) - 1]


def summarize(values):
    """min/mean/p50/p90/p99/max of a list of numbers (None when empty)."""
    if not values:
        return {k: None for k in ("n", "min", "mean", "p50", "p90", "p99",
                                  "max")}
    return {
        "n": len(values),
        "min": min(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def median(values):
    """Median of a non-empty list (mean of the middle two when even)."""
    if not values:
        raise ValueError("median of nothing")
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0


# --- processes ------------------------------------------------------------

def read_rss(pid):
    """{"rss_kib": VmRSS, "hwm_kib": VmHWM} from /proc/PID/status.

    VmHWM is the peak resident set since the process started: read it
    before the process exits.  Raises BenchError if the process is gone
    or the kernel does not report the fields.
    """
    path = "/proc/%d/status" % pid
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    num, unit = rest.split()[:2]
                    if unit != "kB":
                        raise BenchError("%s: %s in %r, expected kB"
                                         % (path, key, unit))
                    out["rss_kib" if key == "VmRSS" else "hwm_kib"] = int(num)
    except FileNotFoundError:
        raise BenchError("read_rss: no process %d" % pid) from None
    if len(out) != 2:
        raise BenchError("%s: no VmRSS/VmHWM (kernel thread or zombie?)"
                         % path)
    return out


def run_bench_raw(exe, uri, mode, count, size, window, concurrency=None,
                  nodelay=False, timeout=60):
    """Run bench-raw once with --json and return its parsed object.

    The returned dict gains "argv" (the exact command).  Raises BenchError
    with bench-raw's own message if it fails or times out.
    """
    if mode not in BENCH_RAW_MODES:
        raise ValueError("run_bench_raw: unknown mode %r" % mode)
    argv = [exe, "--uri", uri, "--mode", mode, "--count", str(count),
            "--size", str(size), "--window", str(window),
            "--timeout", str(timeout), "--json"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if nodelay:
        argv.append("--nodelay")
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True,
                           timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        raise BenchError("%s did not exit within %d s"
                         % (" ".join(argv), timeout + 15)) from None
    if r.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                              r.stderr.strip()))
    try:
        res = json.loads(r.stdout)
    except ValueError as e:
        raise BenchError("%s: unparsable output %r: %s"
                         % (" ".join(argv), r.stdout[:200], e)) from None
    if res.get("received") != count:
        raise BenchError("%s: %r of %d arrived"
                         % (" ".join(argv), res.get("received"), count))
    res["argv"] = argv
    return res


def machine_info():
    """nproc, CPU model and kernel, for the record next to the numbers."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "machine": platform.machine(),
    }


# --- output ---------------------------------------------------------------

def format_table(rows, columns):
    """A plain-text table.  columns: [(header, key, fmt)], fmt a format
    string such as "%.1f" or None for str(); missing values print "-"."""
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        line = []
        for _, key, fmt in columns:
            v = row.get(key)
            line.append("-" if v is None else (fmt % v if fmt else str(v)))
        cells.append(line)
    # Numbers right-aligned, words left-aligned, by the first data row.
    numeric = [isinstance(rows[0].get(k), (int, float)) if rows else False
               for _, k, _ in columns]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(c.rjust(w) if n and num else c.ljust(w)
                             for c, w, num in zip(line, widths, numeric))
                   .rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def print_table(rows, columns, file=None):
    print(format_table(rows, columns), file=file or sys.stdout)


def print_json(obj, file=None):
    """One JSON document, keys sorted so runs diff cleanly."""
    json.dump(obj, file or sys.stdout, indent=2, sort_keys=True)
    (file or sys.stdout).write("\n")


# --- the veil side: written by the lead with veil-bench -------------------

def start_veil_pair(tmpdir, broker):
    """Two veild with fresh state dirs on broker, paired through the real
    agreement protocol; returns handles with their sockets and pids.
    Not written yet: veil-bench adds it."""
    raise NotImplementedError("start_veil_pair: part of tools/veil-bench")


def run_veil_messages(pair, mode, count, size, concurrency):
    """App->app messages through the pair (socket in, broker, socket out,
    delivery ACK back) in the same modes as bench-raw, same result keys.
    Not written yet: veil-bench adds it."""
    raise NotImplementedError("run_veil_messages: part of tools/veil-bench")


# --- the raw baseline matrix ----------------------------------------------

RAW_COLUMNS = [
    ("broker", "broker", None),
    ("mode", "mode", None),
    ("conc", "concurrency", None),
    ("window", "window", None),
    ("count", "count", None),
    ("msg/s", "msgs_per_s", "%.0f"),
    ("p50 us", "p50", "%.1f"),
    ("p90 us", "p90", "%.1f"),
    ("p99 us", "p99", "%.1f"),
    ("max us", "max", "%.1f"),
    ("latency", "latency_kind", None),
]


def raw_matrix(exe, windows, size, tput_count, lat_count, nodelay_too,
               ack_pipelined, timeout, repeat):
    """bench-raw in every mode and window on one fresh broker per broker
    configuration; returns a list of result rows (the median run by msg/s
    when repeat > 1, with every run's msg/s kept in "runs_msgs_per_s")."""
    rows = []
    configs = [("default", False)] + ([("nodelay", True)] if nodelay_too
                                      else [])
    for label, nodelay in configs:
        with tempfile.TemporaryDirectory(prefix="bench-raw-") as tmp:
            with start_mosquitto(tmp, tcp_nodelay=nodelay) as m:
                plan = []
                for w in windows:
                    plan.append(("throughput", tput_count, w, None))
                    plan.append(("latency", lat_count, w, None))
                    plan.append(("ack", lat_count, w, None))
                    if ack_pipelined:
                        plan.append(("ack", tput_count, w, 0))
                for mode, count, w, conc in plan:
                    runs = [run_bench_raw(exe, m.uri, mode, count, size, w,
                                          conc, nodelay, timeout)
                            for _ in range(repeat)]
                    runs.sort(key=lambda r: r["msgs_per_s"])
                    res = dict(runs[len(runs) // 2])
                    res["runs_msgs_per_s"] = [r["msgs_per_s"] for r in runs]
                    res["broker"] = label
                    res.update({k: res["latency_us"][k]
                                for k in ("p50", "p90", "p99", "max")})
                    res["uri"] = "tcp://127.0.0.1:PORT"
                    res["argv"] = ["tcp://127.0.0.1:PORT" if a == m.uri
                                   else a for a in res["argv"]]
                    rows.append(res)
                    print("  %s" % " ".join(res["argv"]), file=sys.stderr)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Raw broker baseline: bench-raw on a loopback mosquitto "
        "in every mode and window.")
    ap.add_argument("--bench-raw", default="tools/bench-raw",
                    help="the bench-raw binary (default %(default)s)")
    ap.add_argument("--windows", default="10,64,100")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--count", type=int, default=20000,
                    help="frames in throughput mode (default %(default)s)")
    ap.add_argument("--latency-count", type=int, default=2000,
                    help="frames in latency and ack modes "
                    "(default %(default)s)")
    ap.add_argument("--nodelay", action="store_true",
                    help="also run with TCP_NODELAY on broker and clients")
    ap.add_argument("--ack-pipelined", action="store_true",
                    help="also run ack mode with --concurrency 0 and --count")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per cell; the median by msg/s is shown")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        windows = [int(w) for w in a.windows.split(",")]
    except ValueError:
        ap.error("--windows: comma-separated integers")
    if not os.access(a.bench_raw, os.X_OK):
        ap.error("--bench-raw: %s is not an executable" % a.bench_raw)
    try:
        rows = raw_matrix(a.bench_raw, windows, a.size, a.count,
                          a.latency_count, a.nodelay, a.ack_pipelined,
                          a.timeout, max(1, a.repeat))
    except BenchError as e:
        print("bench_lib: %s" % e, file=sys.stderr)
        return 1
    if a.json:
        print_json({"machine": machine_info(), "raw": rows})
    else:
        mi = machine_info()
        print("machine: %d cpus, %s, %s" % (mi["nproc"], mi["cpu"],
                                             mi["kernel"]))
        print_table(rows, RAW_COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
