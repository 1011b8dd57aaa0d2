"""rawpub.py: a hostile publisher for the tests, speaking just enough MQTT 3.1.1 or XMPP to put arbitrary payloads on a topic, with no veil involved."""

import base64
import os
import re
import socket
import struct
import threading
import time


def _varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


class MqttPub:
    """One MQTT 3.1.1 connection to a loopback broker that publishes
    anything of any size (QoS 0, or QoS 1 with PUBACKs counted); a thread
    drains what the broker sends back."""

    def __init__(self, port, host="127.0.0.1", client_id=None):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id or "hostile" + os.urandom(6).hex()
        var = _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 600)
        body = var + _str(cid)
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        ack = self._read_exact(4)
        if ack[0] != 0x20 or ack[3] != 0:
            raise RuntimeError("CONNACK refused: %r" % ack)
        self.acked = 0
        self.next_pid = 1
        self.lock = threading.Lock()
        self.closed = False
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed")
            buf += chunk
        return buf

    def _drain(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2:
                    # remaining length
                    mult, rl, i = 1, 0, 1
                    while i < len(buf):
                        rl += (buf[i] & 0x7f) * mult
                        mult *= 128
                        if not buf[i] & 0x80:
                            break
                        i += 1
                    else:
                        break
                    if len(buf) < i + 1 + rl:
                        break
                    if buf[0] >> 4 == 4:	# PUBACK
                        with self.lock:
                            self.acked += 1
                    buf = buf[i + 1 + rl:]
        except OSError:
            return

    def packet(self, topic, payload, qos=0):
        if qos:
            pid = self.next_pid
            self.next_pid = self.next_pid % 65535 + 1
            body = _str(topic) + struct.pack("!H", pid) + payload
            return b"\x32" + _varint(len(body)) + body
        body = _str(topic) + payload
        return b"\x30" + _varint(len(body)) + body

    def publish(self, topic, payload, qos=0):
        self.sock.sendall(self.packet(topic, payload, qos))

    def publish_many(self, topic, payloads, qos=1):
        """Sends them all in one write; with QoS 1 returns once the broker
        acknowledged every one (or raises after a minute)."""
        before = self.acked
        self.sock.sendall(b"".join(self.packet(topic, p, qos) for p in payloads))
        if qos:
            deadline = time.monotonic() + 60
            while self.acked - before < len(payloads):
                if time.monotonic() > deadline:
                    raise RuntimeError("broker acknowledged %d of %d"
                                       % (self.acked - before, len(payloads)))
                time.sleep(0.01)

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


class XmppPub:
    """One anonymous XMPP c2s session (no TLS) that publishes payloads as
    veil items (base64 in the veil namespace) to pubsub nodes, any node,
    any size the server lets through; counts the answers."""

    NS = "urn:xmpp:veil:0"

    def __init__(self, port, domain, pubsub, host="127.0.0.1"):
        self.domain, self.pubsub = domain, pubsub
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        self._open()
        self._until(b"</stream:features>")
        self.sock.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                          b"mechanism='ANONYMOUS'/>")
        self._until(b"<success")
        self.buf = b""
        self._open()
        self._until(b"</stream:features>")
        self.sock.sendall(b"<iq type='set' id='bind1'><bind "
                          b"xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        self._until(b"</iq>")
        self.answered = 0
        self.errors = 0
        self.n = 0
        self.lock = threading.Lock()
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _open(self):
        self.sock.sendall(("<?xml version='1.0'?><stream:stream to='%s' "
                           "xmlns='jabber:client' xmlns:stream="
                           "'http://etherx.jabber.org/streams' version='1.0'>"
                           % self.domain).encode())

    def _until(self, marker, timeout=10):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if time.monotonic() > deadline:
                raise RuntimeError("XMPP: no %r in %r" % (marker, self.buf[-300:]))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("XMPP server closed: %r" % self.buf[-300:])
            self.buf += chunk
        self.buf = self.buf[self.buf.index(marker) + len(marker):]

    def _drain(self):
        pat = re.compile(rb"<iq[^>]*id=['\"]hp\d+['\"][^>]*>")
        tail = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                tail += chunk
                for m in pat.finditer(tail):
                    with self.lock:
                        self.answered += 1
                        if b"type='error'" in m.group(0) or b'type="error"' in m.group(0):
                            self.errors += 1
                cut = tail.rfind(b">")
                tail = tail[cut + 1:] if cut >= 0 else tail
        except OSError:
            return

    def stanza(self, node, payload):
        self.n += 1
        return ("<iq type='set' to='%s' id='hp%d'><pubsub xmlns="
                "'http://jabber.org/protocol/pubsub'><publish node='%s'><item>"
                "<f xmlns='%s'>%s</f></item></publish></pubsub></iq>"
                % (self.pubsub, self.n, node, self.NS,
                   base64.b64encode(payload).decode())).encode()

    def publish_many(self, node, payloads, qos=1):
        before = self.answered
        self.sock.sendall(b"".join(self.stanza(node, p) for p in payloads))
        deadline = time.monotonic() + 120
        while self.answered - before < len(payloads):
            if time.monotonic() > deadline:
                raise RuntimeError("server answered %d of %d publishes"
                                   % (self.answered - before, len(payloads)))
            time.sleep(0.01)

    def publish(self, node, payload, qos=0):
        self.publish_many(node, [payload])

    def close(self):
        try:
            self.sock.sendall(b"</stream:stream>")
        except OSError:
            pass
        self.sock.close()


def publisher(broker):
    """A MqttPub or XmppPub on broker (a brokers.Mosquitto or prosody.Prosody)."""
    if hasattr(broker, "pubsub"):
        return XmppPub(broker.port, broker.domain, broker.pubsub)
    return MqttPub(broker.port)
