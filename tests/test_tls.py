#!/usr/bin/env python3
"""test_tls.py: TLS to the broker on both transports (mosquitto's TLS listeners, prosody's STARTTLS and direct TLS) with certificates made here; prints TAP."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import certs  # noqa: E402
from brokers import MOSQUITTO, Mosquitto  # noqa: E402
from prosody import PROSODY, Prosody  # noqa: E402

TOP = os.environ.get("VEIL_TOP_BUILDDIR", os.path.dirname(os.path.abspath(__file__)) + "/..")
PROBE = os.environ.get("TRANSPORT_PROBE") or os.path.join(TOP, "tests", "transport_probe")
VEILD = os.path.join(TOP, "daemon", "veild")

results = []


def tap(ok, name, diag=""):
    results.append(ok)
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), name))
    if not ok and diag:
        for line in diag.rstrip().splitlines()[-25:]:
            print("# " + line)
    sys.stdout.flush()


def probe(args, timeout=30):
    return subprocess.run([PROBE] + args, capture_output=True, text=True, timeout=timeout)


def down(r):
    """The probe's first "down" line (why the connection ended)."""
    for line in r.stderr.splitlines():
        if line.startswith("probe: down ("):
            return line
    return ""


REFUSED = "TLS: the server's certificate was refused: "
CASES = (
    # (what, listener, probe options, the reason expected, or None: connects)
    ("a certificate chain of the trusted CA", "good", [], None),
    ("a certificate of a CA we do not trust", "good", ["--ca-file", "OTHER"],
     REFUSED + "self-signed certificate in certificate chain"),
    ("an expired certificate", "old", [], REFUSED + "certificate has expired"),
    ("a certificate for another host name", "misnamed", [], REFUSED + "IP address mismatch"),
    ("the right key pinned", "good", ["--pin", "GOODPIN"], None),
    ("a key that is not the pinned one", "good", ["--pin", "OTHERPIN"],
     "TLS: the server's key is not one of the pinned keys (pin_sha256)"),
    ("verify = false with the right pin: a server no trusted CA signed", "self", ["--no-verify",
                                                                       "--pin", "SELFPIN"], None),
)


def options(opts, pki):
    return [pki.get(o, o) for o in opts]


def make_pki(tmp):
    ca = certs.CA(tmp)
    other = certs.CA(tmp, "other")
    good = ca.issue("good")
    old = ca.issue("old", expired=True)
    mis = ca.issue("misnamed", sans=("DNS:elsewhere.example",))
    selfsigned = other.issue("self")
    pki = {
        "ca": ca, "OTHER": other.crt, "GOODPIN": certs.spki_sha256(good[0]),
        "OTHERPIN": certs.spki_sha256(other.crt), "SELFPIN": certs.spki_sha256(selfsigned[0]),
        "listeners": {
            "good": (certs.chain_file(good[0], ca, os.path.join(tmp, "good.pem")), good[1]),
            "old": old, "misnamed": mis, "self": selfsigned,
        },
    }
    return pki


def test_mqtt(tmp, pki):
    m = Mosquitto(os.path.join(tmp, "mqtt"), tls=[(n, c, k) for n, (c, k) in
                                                  pki["listeners"].items()])
    try:
        for what, name, opts, reason in CASES:
            uri = "ssl://127.0.0.1:%d" % m.tls_ports[name]
            o = options(opts, pki)
            if "--ca-file" not in o:
                o = ["--ca-file", pki["ca"].crt] + o
            before = len(m.log())
            r = probe(["-n", "20", "-t", "5"] + o + [uri])
            log = m.log()[before:]
            if reason is None:
                tap(r.returncode == 0 and "New client connected" in log,
                    "mqtt: %s: connects, every frame back" % what, r.stdout + r.stderr)
            else:
                tap(r.returncode != 0 and down(r) == "probe: down (connect failed: %s)" % reason
                    and "New client connected" not in log,
                    "mqtt: %s: refused before any MQTT, saying \"%s\"" % (what, reason),
                    r.stderr + log[-800:])
        # The password never goes out in the clear to another machine:
        # veild refuses the configuration before it starts.
        conf = os.path.join(tmp, "plain.conf")
        with open(conf, "w") as f:
            f.write('identity = { name = "P"; };\nmqtt = { uris = [ "tcp://broker.example.org:1883" ]; '
                    'password = "s3cret"; };\n')
        r = subprocess.run([VEILD, "-n", "-c", conf], capture_output=True, text=True, timeout=30)
        tap(r.returncode == 1 and "mqtt.password: would travel unencrypted to broker.example.org"
            in r.stderr, "a password over tcp:// to a remote broker is refused at load",
            r.stdout + r.stderr)
    finally:
        m.stop()


def test_xmpp(tmp, pki):
    crt, key = pki["listeners"]["good"]
    p = Prosody(os.path.join(tmp, "xmpp"), storage="memory", tls=(crt, key))
    ca = pki["ca"].crt
    base = ["--transport", "xmpp", "--domain", p.domain, "--host", "127.0.0.1",
            "--pubsub", p.pubsub, "-n", "20", "-t", "6"]
    try:
        for what, port, opts, reason in (
                ("STARTTLS (the default, \"required\") with the trusted CA", p.port,
                 ["--ca-file", ca], None),
                ("direct TLS with the trusted CA", p.tls_port, ["--tls", "direct", "--ca-file", ca],
                 None),
                ("direct TLS, the right key pinned", p.tls_port,
                 ["--tls", "direct", "--ca-file", ca, "--pin", pki["GOODPIN"]], None),
                ("STARTTLS, a CA we do not trust", p.port, ["--ca-file", pki["OTHER"]],
                 REFUSED + "self-signed certificate in certificate chain"),
                ("direct TLS, a CA we do not trust", p.tls_port,
                 ["--tls", "direct", "--ca-file", pki["OTHER"]],
                 REFUSED + "self-signed certificate in certificate chain"),
                ("direct TLS, a key that is not the pinned one", p.tls_port,
                 ["--tls", "direct", "--ca-file", ca, "--pin", pki["OTHERPIN"]],
                 "TLS: the server's key is not one of the pinned keys (pin_sha256)")):
            before = len(p.log())
            r = probe(base + ["--port", str(port)] + opts)
            log = p.log()[before:]
            if reason is None:
                tap(r.returncode == 0 and "xmpp: connected (TLS)" in r.stderr and
                    "Authenticated as" in log, "xmpp: %s: connects encrypted" % what,
                    r.stderr + log[-800:])
            else:
                tap(r.returncode != 0 and down(r) == "probe: down (%s)" % reason and
                    "Authenticated as" not in log,
                    "xmpp: %s: refused before login, saying \"%s\"" % (what, reason),
                    r.stderr + log[-800:])
    finally:
        p.stop()
    # Expired and misnamed certificates, each on a server of its own.
    for what, name, reason in (("an expired certificate", "old", "certificate has expired"),
                               ("a certificate for another domain", "misnamed",
                                "hostname mismatch")):
        c, k = pki["listeners"][name]
        q = Prosody(os.path.join(tmp, "xmpp-" + name), storage="memory", tls=(c, k))
        try:
            r = probe(["--transport", "xmpp", "--domain", q.domain, "--host", "127.0.0.1",
                       "--pubsub", q.pubsub, "-n", "2", "-t", "4", "--port", str(q.tls_port),
                       "--tls", "direct", "--ca-file", ca])
            tap(r.returncode != 0 and down(r) == "probe: down (%s%s)" % (REFUSED, reason)
                and "Authenticated as" not in q.log(),
                "xmpp: %s: refused, saying \"%s\"" % (what, reason), r.stderr)
        finally:
            q.stop()


def main():
    for path, what in ((MOSQUITTO, "mosquitto"), (PROSODY, "prosody")):
        if not os.path.exists(path):
            print("1..0 # SKIP no %s at %s" % (what, path))
            return 0
    if not os.access(PROBE, os.X_OK):
        print("1..0 # SKIP %s not built" % PROBE)
        return 0
    with tempfile.TemporaryDirectory(prefix="veil-tls-") as tmp:
        pki = make_pki(tmp)
        for t in (test_mqtt, test_xmpp):
            try:
                t(tmp, pki)
            except Exception as e:  # a crash in one part is a failure, not an abort
                tap(False, t.__name__, repr(e))
    print("1..%d" % len(results))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
