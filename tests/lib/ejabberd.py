"""ejabberd.py: a private loopback ejabberd (Debian's, stock modules) serving XMPP (anonymous login, mod_pubsub) and MQTT 5 (mod_mqtt) for the tests."""

import os
import shutil
import subprocess

from brokers import Server, free_port, wait_port

ERL = os.environ.get("ERL", "/usr/bin/erl")
EJABBERD_LIBS = os.environ.get("EJABBERD_LIBS", "/usr/lib/x86_64-linux-gnu")

# Stock modules only.  Anonymous login by SASL ANONYMOUS (XMPP) and by
# any username and password (login_anon: what mod_mqtt needs, since it
# refuses a CONNECT without a username).  mod_pubsub's defaults let any
# user create nodes; the node configuration veil asks for does the rest.
CONFIG = """hosts:
  - {domain}
loglevel: {loglevel}
log_rotate_count: 0
hide_sensitive_log_data: false
certfiles: []
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    max_stanza_size: 1048576
    shaper: none
  -
    port: {mqtt_port}
    ip: "127.0.0.1"
    module: mod_mqtt
    max_payload_size: 1048576
auth_method: anonymous
anonymous_protocol: both
allow_multiple_connections: true
shaper_rules:
  c2s_shaper: none
  max_user_sessions: 10000
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_pubsub:
    access_createnode: all
    max_items_node: {max_items}
    plugins:
      - flat
  mod_mqtt:
    session_expiry: 7d
    max_queue: unlimited
"""

# mod_pubsub keeps items in a disc_only_copies table (dets): every publish
# writes and trims it on disk, and on the test machine the server then
# delivered about 330 items/s to a subscriber while veild published 1,400/s:
# 15 s after a 4 MiB message the next one was still 30 s behind.  A table in RAM
# with a disc log (disc_copies, like its other pubsub tables) keeps them
# as durably.  ejabberd.schema in the Mnesia directory asks for that, but
# 23.01 applies it only to a table that exists (ejabberd_mnesia:do_create
# makes a missing one from the module's definition), and changing the type
# of one that exists loses its index (mnesia then lists the index twice
# and ejabberd_mnesia:update deletes "the extra one").  So the table is
# made here, before ejabberd first starts, as the schema file describes it.
SCHEMA = """pubsub_item:
  storage_type: disc_copies
  index: [nodeidx]
"""
MAKE_TABLES = ("ok = mnesia:create_schema([node()]), ok = mnesia:start(), "
               "{atomic, ok} = mnesia:create_table(pubsub_item, [{disc_copies, [node()]}, "
               "{index, [nodeidx]}, {attributes, [itemid, nodeidx, creation, modification, "
               "payload]}]), stopped = mnesia:stop(), halt().")


class Ejabberd(Server):
    """An ejabberd on two free loopback ports, configured, logging and
    keeping its Mnesia database in tmpdir: XMPP c2s on port (domain, pubsub
    service pubsub.<domain>) and MQTT 5 on mqtt_port.  transport ("mqtt"
    or "xmpp") is what the tests use it for.  No Erlang distribution (no
    epmd, no node name): nothing listens beyond the two ports."""

    name = "ejabberd"

    def __init__(self, tmpdir, transport="xmpp", domain="localhost", debug=False,
                 max_items=1000):
        self.dir = os.path.abspath(os.path.join(tmpdir, "ejabberd"))
        self.transport = transport
        self.domain = domain
        self.pubsub = "pubsub." + domain
        self.port = free_port()
        self.mqtt_port = free_port()
        self.spool = os.path.join(self.dir, "spool")
        self.conf_path = os.path.join(self.dir, "ejabberd.yml")
        self.log_path = os.path.join(self.dir, "ejabberd.log")
        self.proc = None
        os.makedirs(self.spool, exist_ok=True)
        with open(self.conf_path, "w") as f:
            f.write(CONFIG.format(domain=domain, port=self.port, mqtt_port=self.mqtt_port,
                                  loglevel="debug" if debug else "info",
                                  max_items=max_items))
        if transport == "xmpp":
            with open(os.path.join(self.spool, "ejabberd.schema"), "w") as f:
                f.write(SCHEMA)
            subprocess.run([ERL, "-noinput", "-noshell", "-mnesia", "dir", '"%s"' % self.spool,
                            "-eval", MAKE_TABLES], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=self.dir, env=dict(os.environ, HOME=self.dir,
                                                  ERL_CRASH_DUMP_BYTES="0"),
                           check=True, timeout=60)
        self.start()

    @property
    def uri(self):
        return "tcp://127.0.0.1:%d" % self.mqtt_port

    def argv(self):
        return [ERL, "-noinput", "-noshell", "-mnesia", "dir", '"%s"' % self.spool,
                "-s", "ejabberd"]

    def start(self, timeout=40.0):
        if self.proc is not None and self.proc.poll() is None:
            return
        env = dict(os.environ, EJABBERD_CONFIG_PATH=self.conf_path,
                   EJABBERD_LOG_PATH=self.log_path, ERL_LIBS=EJABBERD_LIBS,
                   ERL_CRASH_DUMP_BYTES="0", HOME=self.dir)
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env, cwd=self.dir)
        for port in (self.port, self.mqtt_port):
            if not wait_port(port, timeout, self.proc):
                self.kill()
                raise RuntimeError("ejabberd did not start on port %d, see %s"
                                   % (port, self.log_path))

    def drop_sessions(self):
        """While stopped: mod_mqtt keeps sessions in RAM tables only, so
        a restart has already dropped them."""

    def wipe(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
