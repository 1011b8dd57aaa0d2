"""veil: a client for veild's control socket, standard library only.

veild speaks newline-delimited JSON-RPC 2.0 on a Unix socket (README.md,
"The socket API").  This module wraps it for programs:

    import veil

    with veil.Client() as c:                 # $VEIL_SOCKET or /run/veil/veild.sock
        c.check_api(1)                       # the socket API this code was written for
        c.send("alice", "the backup finished")
        for m in c.receive(wait=30):         # handed out, not yet taken
            print(m.sender, m.text)
        c.ack(...)                           # taken: gone from veild

        for note in c.subscribe(["message"]):    # a generator of notifications
            ...

Receiving is two steps on purpose: receive() hands messages out and ack()
takes them, so a program that dies in between sees them again.  A veild
without message.ack (an older one, which takes what it hands out) is
recognised and ack() does nothing there.

Errors from veild are raised as VeilError or one of its subclasses, by
JSON-RPC code; a lost connection as Disconnected.
"""

import collections
import json
import os
import socket
import time

__all__ = ["Client", "Message", "Notification", "VeilError", "NoSuchContact",
           "Exists", "WrongState", "TooLarge", "Busy", "InvalidParams",
           "MethodNotFound", "Disconnected", "API_VERSION", "DEFAULT_SOCKET"]

#: The socket API version this module was written against (status "api").
API_VERSION = 1
DEFAULT_SOCKET = "/run/veil/veild.sock"
_LINE_MAX = 64 << 20


class VeilError(Exception):
    """An error answer from veild: .code (JSON-RPC), .message, .data."""

    def __init__(self, code, message, data=None):
        super().__init__("%s (%s)" % (message, code))
        self.code = code
        self.message = message
        self.data = data


class InvalidParams(VeilError):
    """-32602: a parameter is missing, unknown or of the wrong kind."""


class MethodNotFound(VeilError):
    """-32601: this veild does not have the method."""


class NoSuchContact(VeilError):
    """-32000: no contact (or transfer) of that name."""


class Exists(VeilError):
    """-32001: the name or contact exists already."""


class WrongState(VeilError):
    """-32002: not possible in the contact's (or transfer's) state."""


class TooLarge(VeilError):
    """-32004: a message or file over the limit."""


class Busy(VeilError):
    """-32005: too many clients or waiting calls."""


class StorageTrouble(VeilError):
    """-32006: the disk takes no changes (full, read-only, failing, damaged)."""


class Locked(VeilError):
    """-32007: veild is locked until veilctl unlock (or its key file or
    credential) opens its state."""


class Denied(VeilError):
    """-32008: a wrong passphrase or recovery key."""


class BadBackup(VeilError):
    """-32009: not a veil backup, truncated, tampered, or of a newer format."""


class Disconnected(VeilError, ConnectionError):
    """veild closed the connection (or it broke)."""

    def __init__(self, message="veild closed the connection"):
        VeilError.__init__(self, None, message)


_ERRORS = {-32602: InvalidParams, -32601: MethodNotFound, -32000: NoSuchContact,
           -32001: Exists, -32002: WrongState, -32004: TooLarge, -32005: Busy,
           -32006: StorageTrouble, -32007: Locked, -32008: Denied, -32009: BadBackup}

#: A received message.  type is "text" (text holds it; data, bytes, when
#: the peer sent something that is not UTF-8) or "file" (file is a dict:
#: name, path, size, hash).  received: Unix seconds.
Message = collections.namedtuple("Message", "id sender type text data file received")

#: A notification: method ("message", "delivery", "transfer",
#: "contact.request", "contact.state") and its params (a dict).
Notification = collections.namedtuple("Notification", "method params")


def _message(m):
    data = None
    if "data" in m:
        import base64
        data = base64.b64decode(m["data"])
    return Message(id=m.get("id"), sender=m.get("from"), type=m.get("type", "text"),
                   text=m.get("text"), data=data, file=m.get("file"),
                   received=m.get("received"))


class Client:
    """One connection to veild.  Not thread-safe: one thread per Client.

    timeout: seconds a call may wait for its answer (None: forever);
    receive(wait=...) and subscribe() wait longer by themselves."""

    def __init__(self, path=None, timeout=30.0):
        self.path = path or os.environ.get("VEIL_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout
        self._connect()
        self._next_id = 1
        self._notes = collections.deque()
        self._ack_unknown = False

    def _connect(self):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(self.path)
        except OSError:
            self._sock.close()
            raise
        self._buf = b""

    # -- plumbing --

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, timeout):
        while b"\n" not in self._buf:
            if len(self._buf) > _LINE_MAX:
                raise Disconnected("a line from veild is too long")
            self._sock.settimeout(timeout)
            try:
                chunk = self._sock.recv(1 << 16)
            except socket.timeout:
                raise
            except OSError as e:
                raise Disconnected(str(e))
            if not chunk:
                raise Disconnected()
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line.decode("utf-8"))

    def _send(self, method, params, fds=None):
        myid = self._next_id
        self._next_id += 1
        req = {"jsonrpc": "2.0", "method": method, "id": myid}
        if params:
            req["params"] = params
        data = json.dumps(req, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            if fds:
                # The descriptors travel with the request's first bytes.
                n = socket.send_fds(self._sock, [data], fds)
                data = data[n:]
            if data:
                self._sock.sendall(data)
        except OSError as e:
            raise Disconnected(str(e))
        return myid

    def _answer(self, myid, timeout):
        while True:
            msg = self._read(timeout)
            if "id" not in msg and "method" in msg:
                self._notes.append(Notification(msg["method"], msg.get("params", {})))
                continue
            if msg.get("id") not in (myid, None):
                continue
            if "error" in msg:
                e = msg["error"]
                cls = _ERRORS.get(e.get("code"), VeilError)
                raise cls(e.get("code"), e.get("message"), e.get("data"))
            return msg.get("result")

    def call(self, method, _fds=None, _timeout=None, **params):
        """Any method: its result, or VeilError.  Notifications that arrive
        meanwhile are kept for subscribe()."""
        myid = self._send(method, params, _fds)
        return self._answer(myid, _timeout if _timeout is not None else self.timeout)

    # -- the daemon --

    def status(self):
        return self.call("status")

    def check_api(self, need=API_VERSION):
        """Raises VeilError unless veild's socket API version is need."""
        api = self.status().get("api")
        if api != need:
            raise VeilError(None, "veild speaks socket API %s, this program "
                            "needs %s" % (api, need))
        return api

    # -- messages --

    def send(self, to, text, key=None, retry=30.0):
        """Sends text to contact to; its message ID once it is on disk.

        Every send carries a key (yours, 1 to 128 bytes of text, else a
        random one): when the connection breaks before the answer (veild
        killed or restarted after storing the message), the call is made
        again with the same key, on a new connection, for up to retry
        seconds, and veild answers with the first message's ID instead of
        sending it twice.  Pass your own key to be safe across restarts of
        your program too: veild remembers keys for 7 days."""
        if key is None:
            key = os.urandom(16).hex()
        deadline = time.monotonic() + retry
        pause = 0.1
        while True:
            try:
                return self.call("message.send", to=to, text=text, key=key)["id"]
            except (Disconnected, OSError):
                if time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            try:
                self.close()
                self._connect()
            except OSError:
                pass

    def receive(self, wait=0, limit=100):
        """The messages waiting (up to limit), waiting up to wait seconds
        for one.  They are handed out, not taken: ack() them once done."""
        r = self.call("message.receive", _timeout=(None if self.timeout is None
                                                   else self.timeout + wait),
                      wait=wait, limit=limit)
        return [_message(m) for m in r["messages"]]

    def ack(self, messages):
        """Takes messages (Message objects or IDs) for good."""
        ids = [m.id if isinstance(m, Message) else m for m in messages]
        if not ids or self._ack_unknown:
            return
        try:
            self.call("message.ack", ids=ids)
        except MethodNotFound:
            # A veild that took them as it handed them out.
            self._ack_unknown = True

    def messages(self, wait=60):
        """A generator of messages as they come, each taken once the loop
        body that got it is done (the next one is asked for)."""
        while True:
            for m in self.receive(wait=wait):
                yield m
                self.ack([m])

    def subscribe(self, events=None, timeout=None):
        """Subscribes now to events (a list of names; None: all) and
        returns a generator of the Notifications from then on.  timeout:
        seconds without one before socket.timeout (None: wait forever)."""
        params = {"events": list(events)} if events else {}
        self.call("subscribe", **params)
        return self._notifications(timeout)

    def _notifications(self, timeout):
        while True:
            while self._notes:
                yield self._notes.popleft()
            msg = self._read(timeout)
            if "id" not in msg and "method" in msg:
                yield Notification(msg["method"], msg.get("params", {}))

    # -- files --

    def send_file(self, to, path, name=None):
        """Sends the file at path to contact to.  The open file is passed
        to veild, which reads it with this process's permissions.  Returns
        the transfer (a dict: id, state, ...) once veild holds its copy;
        "transfer" notifications tell the rest (or see transfers())."""
        with open(path, "rb") as f:
            params = {"to": to, "fd": True, "path": os.path.abspath(path)}
            if name is not None:
                params["name"] = name
            return self.call("file.send", _fds=[f.fileno()], **params)

    def transfers(self):
        return self.call("transfer.list")["transfers"]

    def cancel_transfer(self, transfer_id):
        return self.call("transfer.cancel", id=transfer_id)

    # -- contacts --

    def card(self, one_time=False):
        return self.call("card.get", one_time=one_time)["uri"]

    def contacts(self):
        return self.call("contact.list")["contacts"]

    def add_contact(self, card, name=None):
        return self.call("contact.add", card=card, **({"name": name} if name else {}))

    def accept(self, name, as_name=None):
        return self.call("contact.accept", name=name,
                         **({"as": as_name} if as_name else {}))

    def rename(self, name, new_name):
        return self.call("contact.rename", name=name, new_name=new_name)

    def rotate(self):
        return self.call("rotate")
