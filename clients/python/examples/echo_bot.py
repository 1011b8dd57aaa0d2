#!/usr/bin/env python3
"""echo_bot.py: answers every text message with "echo: TEXT" (a veil client example).

    python3 echo_bot.py [--socket PATH] [--prefix "echo: "] [--once]

It subscribes to "message" notifications and drains message.receive
whenever one comes (and once at start, for what came while it was not
running).  Each message is acknowledged only after the answer is on disk
in veild's outbox: a bot killed in between answers again after a restart,
it never loses one.  Files are answered with their name and size.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import veil  # noqa: E402


def answer(c, m, prefix):
    if m.type == "file":
        reply = "%sa file, %s (%d bytes)" % (prefix, m.file["name"], m.file["size"])
    elif m.text is not None:
        reply = prefix + m.text
    else:
        reply = "%s%d bytes that are not text" % (prefix, len(m.data or b""))
    try:
        c.send(m.sender, reply)
    except veil.NoSuchContact:
        pass	# removed meanwhile: nothing to answer
    c.ack([m])


def drain(c, prefix):
    n = 0
    while True:
        batch = c.receive(wait=0)
        if not batch:
            return n
        for m in batch:
            answer(c, m, prefix)
            n += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", help="veild's socket (default: $VEIL_SOCKET or %s)"
                    % veil.DEFAULT_SOCKET)
    ap.add_argument("--prefix", default="echo: ")
    ap.add_argument("--once", action="store_true",
                    help="answer what is waiting, then exit")
    args = ap.parse_args()
    with veil.Client(args.socket) as c:
        c.check_api(1)
        if args.once:
            drain(c, args.prefix)
            return 0
        # Subscribe first: a message that comes during the first drain is
        # then announced too, so none is missed.
        notes = c.subscribe(["message"])
        print("echo_bot: ready", flush=True)
        drain(c, args.prefix)
        for _ in notes:
            drain(c, args.prefix)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except veil.Disconnected as e:
        sys.exit("echo_bot: %s" % e)
