"""background.py: a tests/transport_probe running in the background, for test_mqtt.py and test_xmpp.py."""

import subprocess


def start(argv):
    """Start the probe and read its output up to "ready": (process, the
    lines read, without newlines).  The rest is for finish()."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("ready"):
            break
    return p, lines


def finish(p, timeout=40):
    """The rest of its stdout and its stderr, once it exits (killed after
    timeout seconds)."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return out, err
