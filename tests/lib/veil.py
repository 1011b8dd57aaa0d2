"""veil.py: veild daemons, their JSON-RPC socket, veilctl and TAP output for the integration tests.

VEIL_TRANSPORT=mqtt|xmpp (default mqtt) picks the broker World.broker()
starts (mosquitto or prosody) and so the transport section every Daemon's
config gets: the same test file runs on both.  VEIL_SERVER=ejabberd starts
an ejabberd instead, as MQTT broker or XMPP server by VEIL_TRANSPORT."""

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from brokers import Mosquitto  # noqa: E402,F401  (re-exported for the tests)
from prosody import PROSODY, Prosody  # noqa: E402,F401
from ejabberd import ERL, Ejabberd  # noqa: E402,F401

TRANSPORTS = ("mqtt", "xmpp")
SERVERS = ("", "ejabberd")


def server():
    """$VEIL_SERVER: "" (mosquitto or prosody) or "ejabberd"."""
    s = os.environ.get("VEIL_SERVER", "")
    if s not in SERVERS:
        print("Bail out! VEIL_SERVER=%s: expected ejabberd or nothing" % s)
        sys.exit(99)
    return s


def transport():
    """The transport this run tests: $VEIL_TRANSPORT, default mqtt."""
    t = os.environ.get("VEIL_TRANSPORT", "") or "mqtt"
    if t not in TRANSPORTS:
        print("Bail out! VEIL_TRANSPORT=%s: expected one of %s" % (t, ", ".join(TRANSPORTS)))
        sys.exit(99)
    return t


def broker_transport(broker):
    """The transport name a broker object serves: xmpp for a Prosody, an
    ejabberd's own choice."""
    if isinstance(broker, Ejabberd):
        return broker.transport
    return "xmpp" if isinstance(broker, Prosody) else "mqtt"


def transport_config(broker):
    """The config keys that point a daemon at broker."""
    if broker_transport(broker) == "xmpp":
        return {"transport": "xmpp",
                "xmpp": {"domain": broker.domain, "host": "127.0.0.1",
                         "port": broker.port, "pubsub": broker.pubsub, "tls": "off"}}
    mqtt = {"uris": [broker.uri], "keepalive": "5s"}
    if isinstance(broker, Ejabberd):
        # mod_mqtt refuses a CONNECT without a username.
        mqtt["random_username"] = True
    return {"transport": "mqtt", "mqtt": mqtt}


def builddir():
    """The build tree holding daemon/veild and tools/veilctl.

    Required: with out-of-tree builds nothing relative to this file is
    right, and a stale in-tree binary would be worse than an error."""
    top = os.environ.get("VEIL_TOP_BUILDDIR")
    if not top:
        sys.stderr.write("VEIL_TOP_BUILDDIR is not set: run through `make check`, or "
                         "VEIL_TOP_BUILDDIR=/path/to/build python3 %s\n" % sys.argv[0])
        print("Bail out! VEIL_TOP_BUILDDIR is not set")
        sys.exit(99)
    return top


def binary(rel):
    path = os.path.join(builddir(), rel)
    if not os.access(path, os.X_OK):
        print("Bail out! %s is missing: build it first (make)" % path)
        sys.exit(99)
    return path


def sanitized():
    """True when the build under test was configured --enable-sanitizers
    (make check says so in VEIL_SANITIZERS): ASan and UBSan in veild and
    veilctl, so memory and time figures mean nothing."""
    return os.environ.get("VEIL_SANITIZERS") == "yes"


def _log_paths():
    """The log_path prefixes of ASAN_OPTIONS and UBSAN_OPTIONS, if set:
    where sanitized processes write their reports (one file per pid)."""
    out = []
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        for opt in re.split(r"[:,]", os.environ.get(var, "")):
            if opt.startswith("log_path="):
                out.append(opt[len("log_path="):])
    return out


def sanitizer_reports(since=0.0):
    """Reports sanitized processes (veild, veilctl, test helpers) wrote to
    their log_path files since the time since: [(file, text)]."""
    out = []
    for prefix in _log_paths():
        d, base = os.path.split(prefix)
        try:
            names = os.listdir(d or ".")
        except FileNotFoundError:
            continue
        for n in sorted(names):
            p = os.path.join(d, n)
            try:
                if n.startswith(base + ".") and os.path.getmtime(p) >= since:
                    with open(p, errors="replace") as f:
                        out.append((p, f.read()))
            except OSError:
                pass
    return out


# --- variables that shrink a suite -----------------------------------------

def shrink_env(names):
    """The variables among names (exact, or a prefix ending in "_") that
    are set, as {name: value}, each noted in the TAP output.  Under make
    check (VEIL_MAKE_CHECK=1) they are refused unless VEIL_DEV=1: the
    result of make check is for the suites as written.  Bails out (exit 99)
    when refused."""
    found = {}
    for k, v in sorted(os.environ.items()):
        if v and any(k == n or (n.endswith("_") and k.startswith(n)) for n in names):
            found[k] = v
    if found and os.environ.get("VEIL_MAKE_CHECK") == "1" and \
            os.environ.get("VEIL_DEV") != "1":
        print("Bail out! %s set under make check: these shrink the suite; "
              "set VEIL_DEV=1 to allow them" % ", ".join(
                  "%s=%s" % kv for kv in found.items()))
        sys.stdout.flush()
        os._exit(99)
    for k, v in found.items():
        print("# %s=%s: this run differs from the suite as written" % (k, v))
    sys.stdout.flush()
    return found


# --- TAP ------------------------------------------------------------------

class Tap:
    """TAP with the plan printed at the end; exit status 1 if anything failed.

    skip() prints "ok N - desc # SKIP reason", which automake's TAP driver
    counts as SKIP (tools/quickstart prints the total, and fails CI on a
    skip that .ci/allowed-skips does not explain)."""

    def __init__(self):
        self.n = 0
        self.failed = 0
        self.skipped = 0
        self.started = time.monotonic()
        self.diag_hooks = []	# callables returning text for a failure

    def ok(self, cond, desc, diag=""):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, desc))
        if not cond:
            text = diag if isinstance(diag, str) else repr(diag)
            for line in text.rstrip().splitlines()[-40:]:
                print("# " + line)
        sys.stdout.flush()
        return bool(cond)

    def todo(self, cond, desc, reason, diag=""):
        """A check of a known bug, not yet fixed: "not ok N - desc # TODO
        reason" is an expected failure (XFAIL, its own bucket in
        quickstart's total) and does not fail the file; once it passes it
        prints as "ok ... # TODO", an XPASS, which quickstart counts as a
        failure, so that the TODO is removed when the bug is fixed."""
        self.n += 1
        print("%s %d - %s # TODO %s" % ("ok" if cond else "not ok", self.n,
                                        desc.replace("#", ""), reason))
        if not cond:
            text = diag if isinstance(diag, str) else repr(diag)
            for line in text.rstrip().splitlines()[-20:]:
                print("# " + line)
        sys.stdout.flush()
        return bool(cond)

    def skip(self, desc, reason):
        """A check that cannot run here: counted as a skip, with the reason."""
        self.n += 1
        self.skipped += 1
        print("ok %d - %s # SKIP %s" % (self.n, desc.replace("#", ""), reason))
        sys.stdout.flush()

    def note(self, text):
        for line in str(text).rstrip().splitlines():
            print("# " + line)
        sys.stdout.flush()

    def run(self, name, fn, *args):
        """Runs one test function; an exception is a failure with its traceback
        and the daemons' log tails, not the end of the file."""
        t0 = time.monotonic()
        try:
            fn(*args)
        except Exception:
            diag = ""
            for hook in self.diag_hooks:
                try:
                    diag += hook()
                except Exception:
                    pass
            # The traceback last: ok() keeps the last lines.
            self.ok(False, "%s: raised" % name, diag + "\n" + traceback.format_exc())
        self.note("%s: %.1f s" % (name, time.monotonic() - t0))

    def finish(self):
        """The plan; exit status 1 if a check failed (a TODO is no
        failure) or none ran."""
        print("1..%d" % self.n)
        self.note("%d of %d failed, %d skipped, %.1f s" % (
            self.failed, self.n, self.skipped, time.monotonic() - self.started))
        sys.stdout.flush()
        return 1 if self.failed or self.n == 0 else 0


# --- JSON-RPC -------------------------------------------------------------

class RpcError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__("%s (%s)" % (message, code))
        self.code = code
        self.message = message
        self.data = data


class Client:
    """One connection to veild's socket: calls, and the notifications that
    arrive in between, kept in order for wait_notification()."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1
        self.notes = []

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_line(self, timeout):
        """One line (bytes, LF stripped) or None on EOF; socket.timeout on timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line within %.1f s" % timeout)
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def read_msg(self, timeout):
        line = self.read_line(timeout)
        if line is None:
            return None
        return json.loads(line.decode("utf-8"))

    def call(self, method, params=None, timeout=10.0):
        """The result, or RpcError; notifications seen meanwhile are kept."""
        myid = self.next_id
        self.next_id += 1
        req = {"jsonrpc": "2.0", "method": method, "id": myid}
        if params is not None:
            req["params"] = params
        self.send_raw(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read_msg(max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise ConnectionError("veild closed the connection during %s" % method)
            if "id" not in msg and "method" in msg:
                self.notes.append(msg)
                continue
            if msg.get("id") not in (myid, None):
                continue
            if "error" in msg:
                e = msg["error"]
                raise RpcError(e.get("code"), e.get("message"), e.get("data"))
            return msg.get("result")

    def wait_notification(self, pred, timeout=10.0):
        """The first kept or arriving notification msg with pred(msg), removed
        from the queue; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for i, n in enumerate(self.notes):
                if pred(n):
                    return self.notes.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                msg = self.read_msg(left)
            except socket.timeout:
                return None
            if msg is None:
                return None
            if "id" not in msg and "method" in msg:
                self.notes.append(msg)


# --- daemons --------------------------------------------------------------

def _conf_value(v, indent):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)	# libconfig strings escape like JSON's
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(_conf_value(x, indent) for x in v) + " ]"
    if isinstance(v, dict):
        pad = "  " * (indent + 1)
        body = "".join("%s%s = %s;\n" % (pad, k, _conf_value(x, indent + 1))
                       for k, x in v.items())
        return "{\n" + body + "  " * indent + "}"
    raise TypeError("cannot write %r to a libconfig file" % (v,))


def _merge(base, over):
    """Merges over into base, copying: no dict of the caller's (a test's
    module-level rotation settings) ends up inside base, where a later
    merge would change it for every other test."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


class Daemon:
    """One veild with its own state dir, socket, config and log in tmpdir.

    cfg: top-level config keys; dicts merge into the defaults, e.g.
    Daemon(tmp, "Alice", broker, accept="auto", identity={"obscurity": 3}).
    dirname: its directory under tmpdir (default from the name).
    verbose: veild -v (debug log, identifiers included); False leaves the
    log level to the config (info unless log.level says debug).

    A veild that exits without stop() or kill9() having been asked is
    recorded in deaths (exit status, log tail); World.cleanup reports it."""

    def __init__(self, tmpdir, name, broker, dirname=None, env=None, verbose=True, **cfg):
        self.name = name
        self.verbose = verbose
        self.deaths = []
        self.broker = broker
        self.dir = os.path.join(tmpdir, dirname or
                                "veild-" + re.sub(r"[^A-Za-z0-9]", "_", name))
        os.makedirs(self.dir, exist_ok=True)
        self.state_dir = os.path.join(self.dir, "state")
        self.socket = os.path.join(self.dir, "veild.sock")
        self.conf_path = os.path.join(self.dir, "veild.conf")
        self.log_path = os.path.join(self.dir, "veild.log")
        self.proc = None
        self.env = dict(env or {})	# added to veild's environment
        self.veild = binary("daemon/veild")
        self.veilctl = binary("tools/veilctl")
        # The data key is unlocked by a key file of the daemon's own
        # (outside its state dir, so a copied state dir keeps working);
        # unlock={"key_file": ""} starts it locked, for a passphrase.
        self.key_file = os.path.join(self.dir, "veil.key")
        if not os.path.exists(self.key_file):
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, os.urandom(32))
            os.close(fd)
        self.cfg = {
            "state_dir": self.state_dir,
            "socket": self.socket,
            "unlock": {"key_file": self.key_file, "kdf": "interactive"},
        }
        self.cfg.update(transport_config(broker))
        self.cfg.update({
            "identity": {"name": name, "obscurity": 2},
            "accept": "ask",
            "retransmit": {"initial": "1s", "max": "5s"},
        })
        _merge(self.cfg, cfg)
        self.write_config()

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write("# written by tests/lib/veil.py\n")
            for k, v in self.cfg.items():
                f.write("%s = %s;\n" % (k, _conf_value(v, 0)))

    # -- process --

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _reap_death(self):
        """A process that exited on its own, noted once."""
        if self.proc is not None and self.proc.poll() is not None:
            self.deaths.append("exit status %s\n%s" % (self.proc.returncode,
                                                      self.log_tail(15)))
            self.proc = None

    def start(self, timeout=10.0):
        if self.alive():
            return
        self._reap_death()
        os.makedirs(self.state_dir, exist_ok=True)
        logf = open(self.log_path, "ab")
        logf.write(("=== start %s\n" % time.strftime("%H:%M:%S")).encode())
        logf.flush()
        self.proc = subprocess.Popen(
            [self.veild, "-d"] + (["-v"] if self.verbose else []) + ["-c", self.conf_path],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            env=dict(os.environ, **self.env) if self.env else None)
        logf.close()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc, self.proc = self.proc.returncode, None	# reported here
                raise RuntimeError("veild %s exited with %s at start:\n%s"
                                   % (self.name, rc, self.log_tail()))
            try:
                self.rpc("status", timeout=1.0)
                return
            except (OSError, ConnectionError, RpcError, ValueError) as e:
                last = e
                time.sleep(0.05)
        self.kill9()
        raise RuntimeError("veild %s did not answer status within %.0f s (%s):\n%s"
                           % (self.name, timeout, last, self.log_tail()))

    def stop(self, timeout=10.0):
        """SIGTERM and wait; SIGKILL if it hangs.  The exit status, or None
        (also when it had already died: that is a death, see deaths)."""
        self._reap_death()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def run_to_exit(self, timeout=10.0):
        """Runs veild in the foreground until it exits by itself (a start
        that must fail): (exit status, what it logged)."""
        mark = self.log_mark()
        with open(self.log_path, "ab") as logf:
            r = subprocess.run([self.veild, "-d", "-c", self.conf_path],
                               stdin=subprocess.DEVNULL, stdout=logf,
                               stderr=subprocess.STDOUT, timeout=timeout)
        return r.returncode, self.log_since(mark)

    def reload(self, timeout=10.0, **cfg):
        """Merges cfg into the config file, SIGHUP, waits for the daemon
        to log that it took it.  The log written since the signal."""
        _merge(self.cfg, cfg)
        self.write_config()
        return self.hup("configuration reloaded", timeout)

    def hup(self, expect, timeout=10.0):
        """SIGHUP with the config file as it is; waits for a log line
        matching expect (a regex) after the signal, or raises.  The log
        written since the signal."""
        mark = self.log_mark()
        self.proc.send_signal(signal.SIGHUP)
        if not self.wait_log(expect, timeout, mark):
            raise RuntimeError("%s: no %r in the log after SIGHUP:\n%s"
                               % (self.name, expect, self.log_tail()))
        return self.log_since(mark)

    def log_mark(self):
        """A position in the log, for log_since() and wait_log()."""
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10.0, mark=0):
        """The first match of regex pattern in the log after mark, waited
        for; None after timeout."""
        rx = re.compile(pattern, re.M)
        return wait_for(lambda: rx.search(self.log_since(mark)), timeout)

    def status(self, verbose=False):
        return self.rpc("status", verbose=True) if verbose else self.rpc("status")

    def kill9(self):
        if self.proc is None:
            return
        self._reap_death()	# dead before we killed it: still a death
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, timeout=10.0):
        self.stop()
        self.start(timeout)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=30):
        # Without the control socket's chatter, which the tests cause.
        lines = [l for l in self.log().rstrip().splitlines()
                 if not l.startswith("control: client ")][-n:]
        return "".join("[%s] %s\n" % (self.name, l) for l in lines)

    # -- socket and CLI --

    def client(self, timeout=10.0):
        return Client(self.socket, timeout)

    def rpc(self, method, _timeout=None, timeout=10.0, **params):
        """One call on a fresh connection: the result or RpcError."""
        with Client(self.socket, timeout) as c:
            return c.call(method, params if params else None,
                          timeout=_timeout or timeout)

    def ctl(self, *args, input=None, timeout=15.0, json_out=True):
        """Runs veilctl -s SOCKET [--json] ARGS: (exit status, parsed stdout,
        stderr).  Parsed: one JSON value, a list of them (one a line), or the
        text when it is not JSON."""
        cmd = [self.veilctl, "-s", self.socket] + (["--json"] if json_out else []) + \
            [str(a) for a in args]
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        if REPORT_RE.search(err):	# a sanitized veilctl's report
            TOOL_REPORTS.append("veilctl %s:\n%s" % (" ".join(map(str, args))[:200],
                                                     err[-3000:]))
        parsed = out
        if json_out and out.strip():
            try:
                parsed = json.loads(out)
            except ValueError:
                try:
                    parsed = [json.loads(l) for l in out.splitlines() if l.strip()]
                except ValueError:
                    parsed = out
        return r.returncode, parsed, err

    def ctl_ok(self, *args, **kw):
        """ctl() that raises unless veilctl exited 0; the parsed output."""
        rc, out, err = self.ctl(*args, **kw)
        if rc != 0:
            raise RuntimeError("veilctl %s on %s: exit %d: %s%s" % (
                " ".join(map(str, args)), self.name, rc, err.strip(),
                "\n" + self.log_tail()))
        return out

    def contacts(self):
        return {c["name"]: c for c in self.rpc("contact.list")["contacts"]}

    def receive_all(self, wait=0, limit=256):
        """message.receive and message.ack until empty (the first call may
        long-poll): what an app gets, each message once."""
        out = []
        while True:
            r = self.rpc("message.receive", wait=wait, limit=limit,
                         timeout=wait + 10)["messages"]
            if r:
                self.rpc("message.ack", ids=[m["id"] for m in r])
            out.extend(r)
            if not r or wait:
                return out


def peer_probe(sock, gid=None, group=None, request=None):
    """tests/peer_probe: connects to sock as another uid (nobody when we
    are root, else our first subordinate uid) and reports:
    (exit status, its line: "connect EACCES", "closed EOF", "reply {...}",
    ...).  gid: its primary group; group: one supplementary group;
    request: the line to send instead of a status request.  Exit
    status 77: no other uid can be had here (the reason is the line)."""
    cmd = [binary("tests/peer_probe")]
    if gid is not None:
        cmd += ["-g", str(gid)]
    if group is not None:
        cmd += ["-G", str(group)]
    if request is not None:
        cmd += ["-r", request]
    r = subprocess.run(cmd + [sock], capture_output=True, text=True, timeout=20)
    return r.returncode, (r.stdout.strip() if r.returncode == 0 else r.stderr.strip())


def other_uid():
    """The uid peer_probe becomes here, or (None, why not)."""
    r = subprocess.run([binary("tests/peer_probe"), "-n"], capture_output=True, text=True,
                       timeout=20)
    if r.returncode == 0:
        return int(r.stdout.split()[1]), ""
    return None, r.stderr.strip() or "peer_probe -n: exit %d" % r.returncode


def wait_for(pred, timeout=10.0, interval=0.05):
    """pred()'s first true value, or None after timeout.  Exceptions from
    pred (a daemon restarting) count as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ConnectionError, RpcError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_stable(fn, still=0.5, timeout=15.0):
    """Waits until fn() returns the same value for `still` seconds (the
    broker log stopped growing, say); that value, or None after timeout."""
    deadline = time.monotonic() + timeout
    last, since = fn(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        v = fn()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= still:
            return v
    return None


def expect(pred, timeout, what, diag=lambda: ""):
    """wait_for() for a precondition: its value, or RuntimeError naming
    what did not happen (a test's own failure, reported by Tap.run)."""
    v = wait_for(pred, timeout)
    if not v:
        raise RuntimeError("not within %.0f s: %s\n%s" % (timeout, what, diag()))
    return v


def b64u(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def card_with_expiry(uri, expires):
    """The card URI with its expires field set to expires and the checksum
    recomputed (cards are not signed: protocol.md 3)."""
    import base64
    import hashlib
    import struct
    body = uri[5:]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    card = bytearray(raw[:-4])
    p = 3 + card[2] + 32
    card[p:p + 8] = struct.pack(">Q", expires)
    card = bytes(card)
    out = card + hashlib.blake2b(card, digest_size=32).digest()[:4]
    return "veil:" + base64.urlsafe_b64encode(out).decode().rstrip("=")


def decode_card(uri):
    """A card URI's fields, per docs/protocol.md section 3: {flags,
    one_time, cid (bytes), cid_text (the topic), pk (bytes), expires,
    name, hints}.  Raises ValueError on a bad checksum or layout."""
    import base64
    import hashlib
    import struct
    if not uri.startswith("veil:"):
        raise ValueError("no veil: prefix")
    body = uri[5:]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    card, check = raw[:-4], raw[-4:]
    if hashlib.blake2b(card, digest_size=32).digest()[:4] != check:
        raise ValueError("bad checksum")
    version, flags, cidlen = card[0], card[1], card[2]
    if version != 2:	# wire protocol 2's card (version 1's had the same layout)
        raise ValueError("version %d" % version)
    p = 3
    cid = card[p:p + cidlen]
    p += cidlen
    pk = card[p:p + 32]
    p += 32
    (expires,) = struct.unpack(">Q", card[p:p + 8])
    p += 8
    name = card[p + 1:p + 1 + card[p]].decode("utf-8")
    p += 1 + card[p]
    (hlen,) = struct.unpack(">H", card[p:p + 2])
    hints = card[p + 2:p + 2 + hlen].decode("utf-8")
    if p + 2 + hlen != len(card):
        raise ValueError("trailing bytes")
    return {"flags": flags, "one_time": bool(flags & 1), "cid": cid, "cid_text": b64u(cid),
            "pk": pk, "expires": expires, "name": name, "hints": hints}


def pair(a, b, timeout=15.0):
    """b adds a's card, a accepts (unless a accepts automatically), both
    established; all user-facing steps through veilctl.  Returns (the name
    b gave a, the name a gave b)."""
    uri = a.ctl_ok("card")
    if isinstance(uri, dict):
        uri = uri.get("uri")
    if not isinstance(uri, str) or not uri.startswith("veil:"):
        raise RuntimeError("veilctl card on %s printed %r" % (a.name, uri))
    b.ctl_ok("contact", "add", uri, "--name", a.name)
    a_sees = None

    def request_at_a():
        for c in a.contacts().values():
            if c["peer_name"] == b.name and c["state"] in ("pending", "accepted",
                                                            "established"):
                return c
        return None
    c = wait_for(request_at_a, timeout)
    if c is None:
        raise RuntimeError("%s never saw %s's request:\n%s%s" % (
            a.name, b.name, a.log_tail(), b.log_tail()))
    a_sees = c["name"]
    if c["state"] == "pending" and a.cfg.get("accept") != "auto":
        a.ctl_ok("contact", "accept", a_sees)
    ok = wait_for(lambda: a.contacts()[a_sees]["state"] == "established" and
                  b.contacts()[a.name]["state"] == "established", timeout)
    if not ok:
        raise RuntimeError("pairing %s and %s did not finish: %r / %r\n%s%s" % (
            a.name, b.name, a.contacts(), b.contacts(), a.log_tail(), b.log_tail()))
    return a.name, a_sees


# --- the broker operator's view -------------------------------------------

def observe(broker, max_life=None, expect_size=None, extra=()):
    """What the broker's operator learns, as tools/veil-observe --json puts
    it: {"sizes": [{size, count}], "identifiers": [{kind, name, first,
    last, life, ...}], "too_long_lived": [...], "unexpected_sizes": [...]}.
    MQTT: veil-observe on mosquitto's log.  XMPP: prosody's debug log (the
    anonymous JIDs, their sessions, node creations) and its storage (every
    item kept in a node, with its publisher and time): see xmpp_observe()."""
    if broker_transport(broker) == "xmpp":
        r = xmpp_observe(broker)
    else:
        tool = os.path.join(os.environ.get("VEIL_TOP_SRCDIR") or
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
                            "tools", "veil-observe")
        p = subprocess.run([sys.executable, tool, "--json"] + list(extra) +
                           [broker.log_path], capture_output=True, text=True, timeout=60)
        if p.returncode not in (0, 3):
            raise RuntimeError("veil-observe exited %d: %s" % (p.returncode, p.stderr))
        r = json.loads(p.stdout)
    r["too_long_lived"] = [d for d in r["identifiers"]
                           if max_life is not None and d["life"] > max_life]
    r["unexpected_sizes"] = sorted(s["size"] for s in r["sizes"]
                                   if expect_size is not None and s["size"] != expect_size)
    return r


_MQTT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d): (.*)$")
_MQTT_DISCONNECT = re.compile(
    r"^(?:Client (\S+) (?:disconnected|closed its connection|has exceeded timeout|"
    r"been disconnected)|Socket error on client (\S+),)")


def mqtt_spans(log, still_open=None):
    """How long each identifier was held at a mosquitto broker, from its
    log (log_type all): {("client", id): [start, end]} from connect to
    disconnect, {("topic", name): [start, end]} from the first SUBSCRIBE
    to the last UNSUBSCRIBE or its subscriber's disconnect.  What is still
    open at the end of the log ends there.  Unlike veil-observe's
    sightings, a topic that stays subscribed but silent keeps growing."""
    spans = {}
    clients = {}	# client id -> start of its open session
    subs = {}	# (client, topic) -> start
    pending = None	# ("sub" | "unsub", client) while its topic lines follow
    t = None

    def close(key, start, end):
        s0 = spans.setdefault(key, [start, end])
        s0[0], s0[1] = min(s0[0], start), max(s0[1], end)
    for line in log.splitlines():
        mt = _MQTT_LINE.match(line)
        if not mt:
            continue
        t = time.mktime(time.strptime(mt.group(1), "%Y-%m-%dT%H:%M:%S"))
        msg = mt.group(2)
        if msg.startswith("\t") and pending:
            topic = msg[1:].split(" (QoS")[0]
            key = (pending[1], topic)
            if pending[0] == "sub":
                subs.setdefault(key, t)
            elif key in subs:
                close(("topic", topic), subs.pop(key), t)
            continue
        pending = None
        m = re.match(r"^Received (SUBSCRIBE|UNSUBSCRIBE) from (\S+)$", msg)
        if m:
            pending = ("sub" if m.group(1) == "SUBSCRIBE" else "unsub", m.group(2))
            continue
        m = re.match(r"^New client connected from \S+ as (\S+) \(", msg)
        if m:
            clients.setdefault(m.group(1), t)
            continue
        m = _MQTT_DISCONNECT.match(msg)
        if m:
            cid = m.group(1) or m.group(2)
            if cid in clients:
                close(("client", cid), clients.pop(cid), t)
            for key in [k for k in subs if k[0] == cid]:
                close(("topic", key[1]), subs.pop(key), t)
    for cid, start in clients.items():
        close(("client", cid), start, t)
        if still_open is not None:
            still_open.add(cid)
    for key, start in subs.items():
        close(("topic", key[1]), start, t)
    return spans


def mosquitto_db(path):
    """The sessions and subscriptions in a mosquitto 2.0 persistence file
    (format version 6: chunks of PF_client and PF_sub, persist.h):
    {"sessions": {client id: session expiry interval}, "subs": {(client
    id, topic)}}.  The client IDs that merely published a stored message
    are not sessions, hence no plain substring search."""
    import struct
    with open(path, "rb") as f:
        d = f.read()
    if d[:15] != b"\x00\xb5\x00mosquitto db" or struct.unpack(">I", d[19:23])[0] != 6:
        raise ValueError("%s: not a version 6 mosquitto db" % path)
    out = {"sessions": {}, "subs": set()}
    pos = 23
    while pos + 8 <= len(d):
        kind, n = struct.unpack(">II", d[pos:pos + 8])
        p = d[pos + 8:pos + 8 + n]
        pos += 8 + n
        if kind == 6:	# DB_CHUNK_CLIENT
            _, expiry, _, idlen, _, _ = struct.unpack(">qIHHHH", p[:20])
            out["sessions"][p[24:24 + idlen].decode()] = expiry
        elif kind == 5:	# DB_CHUNK_SUB
            _, idlen, tlen = struct.unpack(">IHH", p[:8])
            out["subs"].add((p[12:12 + idlen].decode(), p[12 + idlen:12 + idlen + tlen].decode()))
    return out


_PROSODY_LINE = re.compile(r"^(\w{3} +\d+ \d\d:\d\d:\d\d) (\S+)\t(\w+)\t(.*)$")
_PROSODY_ITEM = re.compile(r'item\(\{\n\t"([^"]*)";\n(.*?)\n\}\);', re.S)


def _prosody_time(stamp):
    """prosody's "Nov 27 07:34:36" (local time, no year) as unix seconds."""
    t = time.strptime("%d %s" % (time.localtime().tm_year, stamp), "%Y %b %d %H:%M:%S")
    return time.mktime(t)


def xmpp_observe(server):
    """The XMPP operator's view, shaped like veil-observe --json.

    client identifiers: bare JIDs, from "Authenticated as" to their
    session's "Client disconnected" (or the end of the log when still
    connected), widened by every stanza addressed to them and every item
    they published.  topic identifiers: pubsub nodes, from their creation
    (log) or first stored item to the last stored item (storage "internal"
    keeps each item with publisher JID and time; items are never retracted
    by veil).  sizes: decoded length of each stored item's payload."""
    import base64
    from urllib.parse import unquote
    idents = {}
    sizes = {}
    t_end = [None]

    def see(kind, name, t):
        d = idents.setdefault((kind, name), {"kind": kind, "name": name, "first": t,
                                             "last": t, "sightings": 0})
        d["first"], d["last"] = min(d["first"], t), max(d["last"], t)
        d["sightings"] += 1
        return d
    sessions = {}	# prosody session id -> bare JID
    dom = re.escape(server.domain)
    for line in server.log().splitlines():
        m = _PROSODY_LINE.match(line)
        if not m:
            continue
        try:
            t = _prosody_time(m.group(1))
        except ValueError:
            continue
        t_end[0] = t
        src, msg = m.group(2), m.group(4)
        a = re.match(r"Authenticated as (\S+@%s)$" % dom, msg)
        if a:
            sessions[src] = a.group(1)
            see("client", a.group(1), t)["connected_at_end"] = True
            continue
        if msg.startswith("Client disconnected") and src in sessions:
            see("client", sessions.pop(src), t)["connected_at_end"] = False
            continue
        c = re.match(r"Creation of archive itemstore for node (\S+) with", msg)
        if c:
            see("topic", c.group(1), t)
            continue
        for jid in re.findall(r" to='([^'@/]+@%s)/" % dom, msg):
            if ("client", jid) in idents:
                see("client", jid, t)
    for d in idents.values():
        if d.get("connected_at_end") and t_end[0] is not None:
            d["last"] = max(d["last"], t_end[0])
    store = os.path.join(server.data, server.pubsub.replace(".", "%2e"))
    try:
        names = os.listdir(store)
    except FileNotFoundError:
        names = []
    for fn in names:
        if not (fn.startswith("pubsub_") and fn.endswith(".list")):
            continue
        node = unquote(fn[len("pubsub_"):-len(".list")])
        with open(os.path.join(store, fn)) as f:
            text = f.read()
        for payload, rest in _PROSODY_ITEM.findall(text):
            w = re.search(r'\["when"\] = (\d+(?:\.\d+)?);', rest)
            pub = re.search(r'\["with"\] = "([^"]+)";', rest)
            if not w:
                continue
            t = float(w.group(1))
            d = see("topic", node, t)
            try:
                n = len(base64.b64decode(payload, validate=True))
            except ValueError:
                n = -len(payload)
            sizes[n] = sizes.get(n, 0) + 1
            if pub:
                jid = pub.group(1).split("/")[0]
                d.setdefault("publishers", {})
                d["publishers"][jid] = d["publishers"].get(jid, 0) + 1
                see("client", jid, t)
    metadir = os.path.join(store, "pubsub_nodes")
    for fn in (os.listdir(metadir) if os.path.isdir(metadir) else []):
        if not fn.endswith(".dat"):
            continue
        with open(os.path.join(metadir, fn)) as f:
            meta = f.read()
        nm = re.search(r'\["name"\] = "([^"]+)";', meta)
        node = nm.group(1) if nm else unquote(fn[:-len(".dat")])
        subs = re.findall(r'\["([^"@]+@%s)/[^"]*"\] = true;' % dom, meta)
        if ("topic", node) in idents:
            idents[("topic", node)]["subscribers"] = sorted(set(subs))
    out = []
    for d in sorted(idents.values(), key=lambda d: (d["kind"], d["first"], d["name"])):
        d["life"] = d["last"] - d["first"]
        d.setdefault("subscribers", [])
        out.append(d)
    return {"source": server.log_path, "identifiers": out,
            "sizes": [{"size": k, "count": v} for k, v in sorted(sizes.items())],
            "publishes": sum(sizes.values())}


# prosody writes a stanza's attributes in no fixed order.
_STANZA_OP = re.compile(r"<(subscribe|unsubscribe|create|publish)\b[^>]*?\snode='([^']*)'")


def broker_events(broker):
    """The operator's raw view, the same for both transports: which client
    held which topic when.  {"sessions": [{client, start, end, username}],
    "subs": [(t, client, topic, op)] with op subscribe, unsubscribe or
    create (XMPP), "pubs": [(t, client, topic)], "end": the log's last
    time}, each list in log order; a session still open has end None.

    MQTT: tools/veil-observe --json on mosquitto's log (log_type all,
    connection_messages).  XMPP: prosody's debug log with stanza_debug
    (every stanza in full): clients are bare JIDs, sessions run from
    "Authenticated as" to "Client disconnected"."""
    if broker_transport(broker) == "mqtt":
        r = observe(broker)
        return {"sessions": [{"client": x["client"], "start": x["start"], "end": x["end"],
                              "username": x.get("username")} for x in r["sessions"]],
                "subs": [(e["time"], e["client"], e["topic"], e["op"])
                         for e in r["subscription_log"]],
                "pubs": [(e["time"], e["client"], e["topic"]) for e in r["publish_log"]
                         if e["client"] is not None],
                "end": r["end"]}
    sessions, subs, pubs = [], [], []
    live = {}	# prosody session id -> its session dict
    end = None
    dom = re.escape(broker.domain)
    for line in broker.log().splitlines():
        m = _PROSODY_LINE.match(line)
        if not m:
            continue
        try:
            t = _prosody_time(m.group(1))
        except ValueError:
            continue
        end = t
        src, msg = m.group(2), m.group(4)
        a = re.match(r"Authenticated as (\S+@%s)$" % dom, msg)
        if a:
            live[src] = {"client": a.group(1), "start": t, "end": None, "username": None}
            sessions.append(live[src])
            continue
        if msg.startswith("Client disconnected") and src in live:
            live.pop(src)["end"] = t
            continue
        if msg.startswith("RECV: <iq") and src in live:
            for op, node in _STANZA_OP.findall(msg):
                if op == "publish":
                    pubs.append((t, live[src]["client"], node))
                else:
                    subs.append((t, live[src]["client"], node, op))
    return {"sessions": sessions, "subs": subs, "pubs": pubs, "end": end}


# --- one test file's world ------------------------------------------------

# What a crashed or sanitized veild leaves in its log.
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                          r"runtime error|\bfatal\b", re.I)
# A sanitizer's report in another program's output (UBSan writes to
# stderr whatever log_path says).
REPORT_RE = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                       r"runtime error:")
# Reports found in the output of the tools the tests ran (veilctl).
TOOL_REPORTS = []


class Watchdog(BaseException):
    """Not an Exception: a test's own except clauses must not swallow it."""


class World:
    """A fresh temp dir, its brokers and daemons, all killed on exit, on
    SIGTERM/SIGINT from the test driver and on a watchdog timeout.  The
    directory is removed unless something failed or VEIL_KEEP_TMP is set."""

    def __init__(self, tap, watchdog=110):
        self.tap = tap
        self.transport = transport()
        self.started = time.time()
        self.tmp = tempfile.mkdtemp(prefix="veil-it-%s-" % self.transport)
        self.daemons = []
        self.brokers = []
        tap.diag_hooks.append(self.log_tails)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGALRM, self._on_alarm)
        # prosody's pubsub is several times slower than mosquitto, and a
        # parallel make check shares two cores among all the suites; a
        # sanitized veild is slower too.
        if sanitized():
            watchdog = watchdog * 3 // 2
        signal.alarm(watchdog * 2 if self.transport == "xmpp" else watchdog)

    def _on_signal(self, signum, frame):
        self.cleanup(keep=True)
        print("Bail out! signal %d" % signum)
        sys.stdout.flush()
        os._exit(1)

    def _on_alarm(self, signum, frame):
        raise Watchdog("watchdog: the test file ran too long")

    def mosquitto(self, **kw):
        m = Mosquitto(self.tmp, **kw)
        self.brokers.append(m)
        return m

    def prosody(self, **kw):
        p = Prosody(self.tmp, **kw)
        self.brokers.append(p)
        return p

    def broker(self, log_all=True, subdir=None, **kw):
        """The broker of $VEIL_TRANSPORT: a Mosquitto (log_type all when
        log_all) or a Prosody (debug log when log_all; kw such as storage
        go to Prosody only).  subdir: its directory's parent under tmp, for
        more than one broker per file."""
        where = os.path.join(self.tmp, subdir) if subdir else self.tmp
        if server() == "ejabberd":
            b = Ejabberd(where, transport=self.transport, debug=False)
        elif self.transport == "xmpp":
            # In-memory pubsub storage: prosody's file store slows to ~13
            # items/s per node as items pile up.  veil does not need the
            # server to keep items across its restart: the senders'
            # outboxes resend whatever was not acknowledged.
            kw.setdefault("storage", "memory")
            b = Prosody(where, debug=log_all, **kw)
        else:
            b = Mosquitto(where, log_all=log_all)
        self.brokers.append(b)
        return b

    def daemon(self, name, broker, start=True, **cfg):
        d = Daemon(self.tmp, name, broker, **cfg)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def log_tails(self):
        return "\n" + "".join(d.log_tail(8) for d in self.daemons if d.alive())

    def check_daemons(self):
        """Two results: no veild exited by itself (one that did is shown
        with its exit status and log tail), and no veild log holds a
        sanitizer report or a fatal error."""
        deaths = []
        for d in self.daemons:
            d._reap_death()
            deaths += ["%s: %s" % (d.name, x) for x in d.deaths]
        self.tap.ok(not deaths, "no veild exited by itself during the tests (%d daemons)"
                    % len(self.daemons), "\n".join(deaths))
        hits = []
        for d in self.daemons:
            hits += ["[%s] %s" % (d.name, l) for l in d.log().splitlines()
                     if SANITIZER_RE.search(l)]
        # Under ASAN_OPTIONS/UBSAN_OPTIONS log_path the reports of every
        # sanitized process (veild, veilctl, helpers) go to files instead.
        for path, text in sanitizer_reports(self.started):
            hits += ["%s:" % path] + text.splitlines()[:30]
        for text in TOOL_REPORTS:
            hits += text.splitlines()[:30]
        self.tap.ok(not hits, "no sanitizer report or fatal error in any veild log",
                    "\n".join(hits[:80]))

    def cleanup(self, keep=None):
        signal.alarm(0)
        if keep is None:
            try:
                self.check_daemons()
            except Exception:
                self.tap.ok(False, "checking the daemons at cleanup", traceback.format_exc())
        for d in self.daemons:
            try:
                d.kill9()
            except Exception:
                pass
        for b in self.brokers:
            try:
                b.kill()
            except Exception:
                pass
        if keep is None:
            keep = self.tap.failed > 0 or bool(os.environ.get("VEIL_KEEP_TMP"))
        if keep:
            self.tap.note("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main(tests, world_args=None, setup=None):
    """Runs tests [(name, fn)] with fn(world, ctx) where ctx = setup(world);
    prints TAP and exits 1 if any failed."""
    if server() == "ejabberd" and not os.access(ERL, os.X_OK):
        print("1..0 # SKIP VEIL_SERVER=ejabberd but no erl at %s" % ERL)
        sys.exit(0)
    if transport() == "xmpp" and not os.access(PROSODY, os.X_OK):
        print("1..0 # SKIP VEIL_TRANSPORT=xmpp but no prosody at %s" % PROSODY)
        sys.exit(0)
    # VEIL_TESTS="word,word": only the tests whose names contain one
    # (noted; refused under make check unless VEIL_DEV=1).
    only = [w for w in shrink_env(["VEIL_TESTS"]).get("VEIL_TESTS", "").split(",") if w]
    tap = Tap()
    world = World(tap, **(world_args or {}))
    tap.note("transport %s" % world.transport)
    try:
        ctx = None
        if setup is not None:
            try:
                ctx = setup(world)
            except Exception:
                tap.ok(False, "setup", traceback.format_exc() + world.log_tails())
                ctx = None
        if setup is None or ctx is not None:
            for name, fn in tests:
                if not only or any(w in name for w in only):
                    tap.run(name, fn, tap, world, ctx)
                else:
                    tap.skip(name, "not in VEIL_TESTS")
    except Watchdog:
        tap.ok(False, "watchdog", traceback.format_exc() + world.log_tails())
    finally:
        world.cleanup()
    code = tap.finish()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: a test's helper threads (paced senders, pollers) may
    # still be sleeping after a watchdog, and must not keep us alive.
    os._exit(code)
