#!/usr/bin/env python3
"""test_clients.py: programs on veil — the Python client (clients/python/veil.py), the echo bot and the bridge, veilctl recv --exec and --follow --json, local names and the API version; prints TAP."""

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import veil  # noqa: E402
from veil import RpcError, expect, wait_for  # noqa: E402

SRC = os.environ.get("VEIL_TOP_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CLIENT = os.path.join(SRC, "clients", "python", "veil.py")
EXAMPLES = os.path.join(SRC, "clients", "python", "examples")

# The client module, under a name that is not tests/lib/veil.py's.
_spec = importlib.util.spec_from_file_location("veilclient", CLIENT)
vc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vc)


def setup(w):
    m = w.broker()
    alice = w.daemon("Alice", m)
    bob = w.daemon("Bob", m)
    veil.pair(alice, bob)
    return {"m": m, "alice": alice, "bob": bob}


def has_ack(d):
    """Whether veild has message.ack (receive hands out, ack takes) or
    takes what message.receive hands out."""
    try:
        d.rpc("message.ack", ids=[])
        return True
    except RpcError as e:
        if e.code == -32601:
            return False
        return True


def texts(d, wait=10, want=1):
    """Texts received by d (taken), waiting up to wait s for want of them."""
    got = []
    deadline = time.monotonic() + wait
    while len(got) < want and time.monotonic() < deadline:
        got += d.receive_all(wait=max(1, int(deadline - time.monotonic())))
    return [(m["from"], m.get("text")) for m in got]


def t_api(tap, w, x):
    alice = x["alice"]
    st = alice.status()
    tap.ok(st.get("api") == vc.API_VERSION == 1,
           "status has the socket API version (api: 1), the one the client knows",
           repr(st))
    with vc.Client(alice.socket) as c:
        tap.ok(c.check_api(1) == 1, "Client.check_api(1) passes")
        try:
            c.check_api(2)
            tap.ok(False, "Client.check_api(2) raises")
        except vc.VeilError as e:
            tap.ok("needs 2" in str(e), "Client.check_api(2) raises VeilError", str(e))


def t_client(tap, w, x):
    """send, receive, ack, the subscribe generator, errors as exceptions."""
    alice, bob = x["alice"], x["bob"]
    with vc.Client(alice.socket) as a, vc.Client(bob.socket) as b:
        notes = b.subscribe(["message"])
        mid = a.send("Bob", "hello from Python ✓")
        tap.ok(isinstance(mid, str) and len(mid) == 32, "send returns the message ID", mid)
        n = next(notes)
        tap.ok(n.method == "message" and n.params.get("from") == "Alice" and
               n.params.get("id") == mid and n.params.get("type") == "text",
               "subscribe yields the message notification (from, id, type)", repr(n))
        msgs = b.receive(wait=5)
        tap.ok([(m.id, m.sender, m.type, m.text) for m in msgs] ==
               [(mid, "Alice", "text", "hello from Python ✓")],
               "receive returns the message as a Message", repr(msgs))
        b.ack(msgs)
        tap.ok(b.receive() == [], "after ack it is gone", "")
        # A keyed send repeated (as after a lost answer) is one message.
        k1 = a.send("Bob", "once", key="py-key-1")
        k2 = a.send("Bob", "once", key="py-key-1")
        tap.ok(k1 == k2, "send with the same key twice: one message ID", "%s %s" % (k1, k2))
        tap.ok(wait_for(lambda: len(b.receive()) == 1, 10) and
               [m.text for m in b.receive()] == ["once"], "and one message arrives", "")
        b.ack(b.receive())
        try:
            a.send("Bob", "another text", key="py-key-1")
            tap.ok(False, "the same key with another text is refused")
        except vc.Exists as e:
            tap.ok(True, "the same key with another text is refused (Exists)", str(e))
        # Errors by code.
        for call, cls, what in ((lambda: a.send("Nobody", "x"), vc.NoSuchContact,
                                 "an unknown contact: NoSuchContact"),
                                (lambda: a.call("message.send", to="Bob"), vc.InvalidParams,
                                 "a missing param: InvalidParams"),
                                (lambda: a.call("no.such.method"), vc.MethodNotFound,
                                 "an unknown method: MethodNotFound"),
                                (lambda: a.accept("Bob"), vc.WrongState,
                                 "accepting an established contact: WrongState"),
                                (lambda: a.send("Bob", "x" * (4 << 20 | 1)), vc.TooLarge,
                                 "a text over 4 MiB: TooLarge")):
            try:
                call()
                tap.ok(False, what)
            except cls as e:
                tap.ok(isinstance(e, vc.VeilError) and e.code is not None, what, repr(e))
            except Exception as e:
                tap.ok(False, what, repr(e))
        # A file through the client: the open file goes to veild.
        path = os.path.join(w.tmp, "from-python.txt")
        with open(path, "w") as f:
            f.write("a file from the Python client\n")
        t = a.send_file("Bob", path)
        tap.ok(t.get("state") == "sending" and t.get("name") == "from-python.txt",
               "send_file passes the open file and returns the transfer", repr(t))
        n = next(n for n in notes if n.params.get("type") == "file")
        msgs = b.receive(wait=5)
        tap.ok(n.params.get("id") == t["id"] and len(msgs) == 1 and msgs[0].type == "file" and
               msgs[0].file["name"] == "from-python.txt" and
               open(msgs[0].file["path"]).read() == "a file from the Python client\n",
               "the file arrives, as a Message of type file with its path", repr(msgs))
        b.ack(msgs)
        # The messages() generator: each message taken once the loop
        # body that got it is done.
        a.send("Bob", "first")
        a.send("Bob", "second")
        got = []
        for m in b.messages(wait=10):
            got.append((m.sender, m.text))
            if len(got) == 2:
                break
        tap.ok(got == [("Alice", "first"), ("Alice", "second")],
               "messages() yields what comes, in order", repr(got))
        left_msgs = b.receive()
        left = [m.text for m in left_msgs]
        if has_ack(bob):
            tap.ok(left == ["second"], "the one the loop broke out of is not taken",
                   repr(left))
            b.ack(left_msgs)
        else:
            tap.ok(left == [], "this veild took them as it handed them out "
                   "(no message.ack): nothing is left", repr(left))
    with vc.Client(bob.socket, timeout=5) as b:
        try:
            next(b.subscribe(["message"], timeout=0.3))
            tap.ok(False, "subscribe(timeout) raises when nothing comes")
        except OSError as e:
            tap.ok("timed out" in str(e) or isinstance(e, TimeoutError),
                   "subscribe(timeout) raises socket.timeout when nothing comes", repr(e))
    try:
        vc.Client(os.path.join(w.tmp, "no-such-socket"))
        tap.ok(False, "connecting to a missing socket raises")
    except OSError as e:
        tap.ok(isinstance(e, (FileNotFoundError, ConnectionRefusedError)),
               "connecting to a missing socket raises OSError", repr(e))


def t_echo_bot(tap, w, x):
    """The echo bot on Bob answers what Alice sends with veilctl."""
    alice, bob = x["alice"], x["bob"]
    env = dict(os.environ, VEIL_SOCKET=bob.socket, PYTHONUNBUFFERED="1")
    bot = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "echo_bot.py")],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        line = bot.stdout.readline()
        tap.ok(line.strip() == "echo_bot: ready", "the echo bot starts and subscribes",
               line + (bot.stderr.read() if bot.poll() is not None else ""))
        alice.ctl_ok("send", "Bob", "ping one")
        alice.ctl_ok("send", "Bob", "ping two")
        got = texts(alice, wait=15, want=2)
        tap.ok(got == [("Bob", "echo: ping one"), ("Bob", "echo: ping two")],
               "the echo bot answers each message sent with veilctl", repr(got))
        tap.ok(wait_for(lambda: bob.rpc("message.receive")["messages"] == [], 10),
               "the bot took what it answered", "")
    finally:
        bot.terminate()
        bot.wait(10)


def t_bridge(tap, w, x):
    """bridge.py forwards a program's output (a monitoring check) to Alice,
    lines within a second as one message; and its standard input."""
    alice, bob = x["alice"], x["bob"]
    env = dict(os.environ, VEIL_SOCKET=bob.socket)
    check = [sys.executable, "-c",
             "import time\nprint('DISK CRITICAL - / 97%', flush=True)\n"
             "print('load 12.3', flush=True)\ntime.sleep(1.5)\n"
             "print('RECOVERED', flush=True)"]
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "bridge.py"), "--to",
                        "Alice", "--batch", "0.5", "--prefix", "[host1] ", "--"] + check,
                       env=env, capture_output=True, text=True, timeout=30)
    got = texts(alice, wait=15, want=2)
    tap.ok(r.returncode == 0 and got == [("Bob", "[host1] DISK CRITICAL - / 97%\nload 12.3"),
                                         ("Bob", "[host1] RECOVERED")],
           "the bridge sends the program's output: a burst as one message, a later "
           "line as another", repr((r.returncode, r.stderr, got)))
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "bridge.py"), "--to",
                        "Alice", "--batch", "0"], input="from stdin\n", env=env,
                       capture_output=True, text=True, timeout=30)
    got = texts(alice, wait=15, want=1)
    tap.ok(r.returncode == 0 and got == [("Bob", "from stdin")],
           "without a command the bridge forwards its standard input", repr((r, got)))
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "bridge.py"), "--to",
                        "Nobody", "--", "echo", "x"], env=env, capture_output=True,
                       text=True, timeout=30)
    tap.ok(r.returncode != 0 and "no contact named Nobody" in r.stderr,
           "an unknown contact: the bridge says so and fails", repr((r.returncode, r.stderr)))


EXEC_PROG = r'''import json, os, sys
out = {k: v for k, v in os.environ.items() if k.startswith("VEIL_")}
out["stdin"] = sys.stdin.read()
out["argv"] = sys.argv[1:]
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(out) + "\n")
'''


def exec_runs(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def t_recv_exec(tap, w, x):
    """veilctl recv --exec runs a program per message, never through a
    shell: the sender and the text in its environment, the text on its
    standard input; it is acknowledged only after."""
    alice, bob = x["alice"], x["bob"]
    prog = os.path.join(w.tmp, "exec_prog.py")
    with open(prog, "w") as f:
        f.write(EXEC_PROG)
    log = os.path.join(w.tmp, "exec.log")
    canary = os.path.join(w.tmp, "canary")
    evil = "$(touch %s); `touch %s`; echo hi > %s | & ; 'quoted' \"dq\"\nline two" % (
        canary, canary, canary)
    bob.ctl_ok("send", "Alice", evil)
    expect(lambda: alice.status()["unread"] == 1, 15, "Alice has the message")
    rc, out, err = alice.ctl("recv", "--exec", sys.executable, "--", prog, log,
                             json_out=False, timeout=30)
    runs = exec_runs(log)
    tap.ok(rc == 0 and len(runs) == 1, "recv --exec ran the program once for one message",
           repr((rc, out, err, runs)))
    r = runs[0] if runs else {}
    tap.ok(r.get("VEIL_FROM") == "Bob" and r.get("VEIL_TEXT") == evil and
           r.get("VEIL_TYPE") == "text" and len(r.get("VEIL_ID", "")) == 32 and
           r.get("VEIL_RECEIVED", "").isdigit() and r.get("argv") == [log],
           "its environment: VEIL_FROM, VEIL_TEXT (exactly), VEIL_TYPE, VEIL_ID, "
           "VEIL_RECEIVED; its arguments as given", repr(r))
    tap.ok(r.get("stdin") == evil, "the text on its standard input", repr(r.get("stdin")))
    tap.ok(not os.path.exists(canary), "no shell ever saw the text (nothing ran it)", "")
    tap.ok("Bob:" in out, "recv still prints the message", out)
    tap.ok(alice.rpc("message.receive")["messages"] == [], "the message was taken", "")
    # A program that cannot run: the message stays.
    bob.ctl_ok("send", "Alice", "stays")
    expect(lambda: alice.status()["unread"] == 1, 15, "Alice has the second message")
    rc, out, err = alice.ctl("recv", "--exec", os.path.join(w.tmp, "no-such-program"),
                             json_out=False, timeout=30)
    tap.ok(rc != 0 and "no-such-program" in err,
           "a program that cannot run: recv fails and says so", repr((rc, err)))
    left = [m["text"] for m in alice.rpc("message.receive")["messages"]]
    if has_ack(alice):
        tap.ok(left == ["stays"], "and the message stays for the next recv", repr(left))
    else:
        tap.ok(left == [], "this veild took it as it handed it out (no message.ack)",
               repr(left))


def t_follow(tap, w, x):
    """recv --follow --json: one JSON value per line as messages come;
    with --exec the program runs for each, as they come."""
    alice, bob = x["alice"], x["bob"]
    alice.receive_all()
    prog = os.path.join(w.tmp, "exec_prog.py")
    with open(prog, "w") as f:
        f.write(EXEC_PROG)
    log = os.path.join(w.tmp, "follow.log")
    p = subprocess.Popen([alice.veilctl, "-s", alice.socket, "--json", "recv", "--follow",
                          "--exec", sys.executable, "--", prog, log],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []

    def reader():
        for line in p.stdout:
            lines.append(line)
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    taken = False
    try:
        for i in range(3):
            bob.ctl_ok("send", "Alice", "follow %d" % i)
        ok = wait_for(lambda: len(lines) >= 3 and len(exec_runs(log)) >= 3, 20)
        vals = [json.loads(l) for l in lines]
        tap.ok(ok and [(v["from"], v["text"]) for v in vals] ==
               [("Bob", "follow %d" % i) for i in range(3)] and
               all(l.count("\n") == 1 and isinstance(json.loads(l), dict) for l in lines),
               "recv --follow --json prints one JSON object per line as messages come",
               repr(lines) + p.stderr.read() if p.poll() is not None else repr(lines))
        tap.ok([r["VEIL_TEXT"] for r in exec_runs(log)] == ["follow %d" % i for i in range(3)],
               "and --exec runs for each as it comes", repr(exec_runs(log)))
        # A file is announced in follow mode too, with VEIL_FILE.
        path = os.path.join(w.tmp, "followed.txt")
        with open(path, "w") as f:
            f.write("followed\n")
        bob.ctl_ok("send-file", "Alice", path)
        ok = wait_for(lambda: len(exec_runs(log)) >= 4, 20)
        r = exec_runs(log)[-1] if ok else {}
        tap.ok(r.get("VEIL_TYPE") == "file" and r.get("VEIL_FILE_NAME") == "followed.txt" and
               r.get("VEIL_FILE", "").endswith("/followed.txt") and
               r.get("VEIL_FILE_SIZE") == "9" and "VEIL_TEXT" not in r,
               "a file that comes: VEIL_TYPE=file, VEIL_FILE, VEIL_FILE_NAME, "
               "VEIL_FILE_SIZE", repr(r))
        # veilctl acknowledges each message after its --exec ran: wait for
        # that before stopping it, not just for the run.
        taken = wait_for(lambda: alice.rpc("message.receive")["messages"] == [], 20)
    finally:
        p.terminate()
        p.wait(10)
    tap.ok(taken and alice.rpc("message.receive")["messages"] == [],
           "what --follow printed was taken", "")


def t_names(tap, w, x):
    """contact rename and contact accept --as: local names only; nothing
    goes to the broker or the peer."""
    alice, bob, m = x["alice"], x["bob"], x["m"]
    carol = w.daemon("Carol Builder", m)
    uri = alice.ctl_ok("card")["uri"]
    carol.ctl_ok("contact", "add", uri)
    c = expect(lambda: [k for k, v in alice.contacts().items()
                        if v["peer_name"] == "Carol Builder"], 15, "Carol's request")
    tap.ok(c == ["Carol Builder"], "a request is named after the card's name", repr(c))
    rc, out, err = alice.ctl("contact", "accept", "Carol Builder", "--as", "Bob")
    tap.ok(rc != 0 and "taken" in err and
           alice.contacts()["Carol Builder"]["state"] == "pending",
           "accept --as a taken name is refused, and the request stays pending",
           repr((rc, err)))
    alice.ctl_ok("contact", "accept", "Carol Builder", "--as", "carol")
    ok = wait_for(lambda: alice.contacts().get("carol", {}).get("state") == "established",
                  15)
    tap.ok(ok and "Carol Builder" not in alice.contacts(),
           "contact accept NAME --as carol: accepted under the local name carol",
           repr(alice.contacts()))
    before = alice.status()["frames"]["out"]
    alice.ctl_ok("contact", "rename", "Bob", "bobby")
    after = alice.status()["frames"]["out"]
    cs = alice.contacts()
    tap.ok("bobby" in cs and "Bob" not in cs and cs["bobby"]["peer_name"] == "Bob",
           "contact rename Bob bobby: the local name changes, the peer's name stays",
           repr(cs))
    tap.ok(after == before, "the rename sent nothing (frames out %d, then %d)"
           % (before, after), "")
    tap.ok(bob.contacts().get("Alice", {}).get("peer_name") == "Alice",
           "Bob still knows Alice as she named herself", repr(bob.contacts()))
    bob.ctl_ok("send", "Alice", "after the rename")
    got = texts(alice, want=1)
    tap.ok(got == [("bobby", "after the rename")],
           "messages from Bob now come from bobby", repr(got))
    alice.ctl_ok("send", "bobby", "to bobby")
    got = texts(bob, want=1)
    tap.ok(got == [("Alice", "to bobby")], "and messages to bobby reach Bob", repr(got))
    for args, code, what in ((("bobby", "carol"), -32001, "a taken name"),
                             (("bobby", ""), -32602, "an empty name"),
                             (("bobby", "a\x01b"), -32602, "a control character"),
                             (("nobody", "x"), -32000, "an unknown contact")):
        try:
            alice.rpc("contact.rename", name=args[0], new_name=args[1])
            tap.ok(False, "rename to %s is refused" % what)
        except RpcError as e:
            tap.ok(e.code == code, "rename with %s is refused (%d)" % (what, code), repr(e))
    alice.ctl_ok("contact", "rename", "bobby", "Bob")
    tap.ok("Bob" in alice.contacts(), "and back to Bob", "")


TESTS = [
    ("api", t_api),
    ("client", t_client),
    ("echo_bot", t_echo_bot),
    ("bridge", t_bridge),
    ("recv_exec", t_recv_exec),
    ("follow", t_follow),
    ("names", t_names),
]

if __name__ == "__main__":
    veil.main(TESTS, world_args={"watchdog": 150}, setup=setup)
