#!/usr/bin/env python3
"""bridge.py: forwards a local program's output to a contact, a message per line (a veil client example).

    bridge.py --to alice -- /usr/lib/nagios/plugins/check_disk -w 10% /
    tail -F /var/log/alerts.log | bridge.py --to alice
    bridge.py --to alice --every 60 -- sh -c 'uptime'   # run it each minute

With a command, it runs it (no shell unless you name one) and sends what
it prints on its standard output, one message per line; with --every N it
runs it again every N seconds.  Without one it reads its own standard
input.  Lines that come within --batch seconds of each other go as one
message, so a burst of output is one notification at the other end, not
many.  veild keeps each message until the contact's device has it, so
alerts sent while the contact is offline arrive when it is back.
"""

import argparse
import os
import selectors
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import veil  # noqa: E402

TEXT_MAX = 60000	# bytes per message; longer output is split


def forward(c, to, fd, batch, prefix):
    """Sends the lines read from fd to `to`; returns how many messages went."""
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    buf, pending, since, sent = b"", [], None, 0

    def flush():
        nonlocal pending, sent
        text = "\n".join(pending)
        pending = []
        while text:
            chunk, text = text[:TEXT_MAX], text[TEXT_MAX:]
            c.send(to, prefix + chunk)
            sent += 1
    eof = False
    while not eof:
        timeout = None if not pending else max(0.0, since + batch - time.monotonic())
        if sel.select(timeout):
            data = os.read(fd, 65536)
            eof = not data
            buf += data
            *lines, buf = buf.split(b"\n")
            if eof and buf:
                lines, buf = lines + [buf], b""
            if lines and not pending:
                since = time.monotonic()
            pending += [l.decode("utf-8", "replace") for l in lines]
        if pending and (eof or time.monotonic() - since >= batch):
            flush()
    sel.close()
    return sent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--to", required=True, help="the contact's local name")
    ap.add_argument("--socket", help="veild's socket (default: $VEIL_SOCKET or %s)"
                    % veil.DEFAULT_SOCKET)
    ap.add_argument("--batch", type=float, default=1.0,
                    help="seconds within which lines go as one message (0: each alone)")
    ap.add_argument("--every", type=float, default=0,
                    help="run the command again every so many seconds")
    ap.add_argument("--prefix", default="", help="put before every message")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="the program and its arguments, after --")
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    with veil.Client(args.socket) as c:
        c.check_api(1)
        if not cmd:
            forward(c, args.to, sys.stdin.fileno(), args.batch, args.prefix)
            return 0
        while True:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            forward(c, args.to, p.stdout.fileno(), args.batch, args.prefix)
            rc = p.wait()
            if rc != 0:
                print("bridge: %s exited with %d" % (cmd[0], rc), file=sys.stderr)
            if args.every <= 0:
                return 0
            time.sleep(args.every)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except veil.VeilError as e:
        sys.exit("bridge: %s" % e)
