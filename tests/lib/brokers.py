"""brokers.py: private loopback MQTT brokers (mosquitto; ejabberd is in ejabberd.py) and what they share with the other servers."""

import os
import signal
import socket
import subprocess
import time

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=5.0, proc=None):
    """True once 127.0.0.1:port accepts, False after timeout or if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Server:
    """A broker process on a loopback port: start (wait until the port
    accepts), stop (SIGTERM), kill (SIGKILL), restart (same port and data).
    Subclasses set name, port, log_path, proc = None and argv()."""

    name = "server"

    def argv(self):
        raise NotImplementedError

    def start(self, timeout=5.0):
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        if not wait_port(self.port, timeout, self.proc):
            self.kill()
            raise RuntimeError("%s did not start on port %d, see %s"
                               % (self.name, self.port, self.log_path))

    def stop(self, timeout=5.0):
        """SIGTERM: the server saves what it keeps and exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        """SIGKILL: only what the server had already saved survives."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, down_for=0.0):
        """Same port, same data."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Mosquitto(Server):
    """A mosquitto on a free loopback port, configured and logging in tmpdir.

    Persistence is on, so restart() keeps sessions and queued QoS 1
    messages like a production broker would.  max_queued_messages 0: the
    default of 1000 silently drops frames for a slow subscriber.
    """

    name = "mosquitto"

    def __init__(self, tmpdir, log_all=True, port=None, tls=()):
        """tls: (name, certificate chain file, key file) for extra TLS
        listeners on loopback; tls_ports[name] is each one's port."""
        self.dir = os.path.join(tmpdir, "mosquitto")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self.proc = None
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous true",
            "persistence true",
            "persistence_location %s/" % self.dir,
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest file %s" % self.log_path,
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "pid_file %s" % os.path.join(self.dir, "mosquitto.pid"),
        ]
        self.tls_ports = {}
        for name, crt, key in tls:
            self.tls_ports[name] = free_port()
            lines += ["listener %d 127.0.0.1" % self.tls_ports[name],
                      "certfile %s" % crt, "keyfile %s" % key]
        if log_all:
            lines.append("log_type all")
        if os.geteuid() == 0:
            # Else it switches to user mosquitto and cannot write here.
            lines.append("user root")
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.start()
        for port in self.tls_ports.values():
            if not wait_port(port, 5.0, self.proc):
                raise RuntimeError("mosquitto: no TLS listener on %d, see %s"
                                   % (port, self.log_path))

    @property
    def uri(self):
        return "tcp://127.0.0.1:%d" % self.port

    def drop_sessions(self):
        """While stopped: forget every session and queued message."""
        os.remove(os.path.join(self.dir, "mosquitto.db"))

    def argv(self):
        return [MOSQUITTO, "-c", self.conf_path]
