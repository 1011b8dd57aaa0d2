"""prosody.py: a private loopback prosody (anonymous login, pubsub component) for the XMPP tests."""

import os
import shutil
import signal
import subprocess
import sys

from brokers import Server, free_port, wait_port

PROSODY = os.environ.get("PROSODY", "/usr/bin/prosody")
PROSODYCTL = os.environ.get("PROSODYCTL", "/usr/bin/prosodyctl")

# Stock mod_pubsub (0.12) lets only admins create nodes, and a node created
# by autocreate only takes items from admins: an anonymous user could never
# make an inbox.  This module lets any user who may see the service create
# nodes; what the nodes allow is then their own configuration (veil asks for
# open access and open publishing).  docs/xmpp.md shows it to operators.
PLUGIN = r'''-- mod_pubsub_anon_create: let any user create nodes on this pubsub service.
local pubsub = module:depends("pubsub");

local function open_create(service)
	local caps = {};
	for aff, c in pairs(service.config.capabilities) do
		local copy = {};
		for k, v in pairs(c) do copy[k] = v; end
		caps[aff] = copy;
	end
	caps.none.create = true;
	caps.member.create = true;
	rawset(service.config, "capabilities", caps);
end

open_create(pubsub.get_service());
'''


class Prosody(Server):
    """A prosody on a free loopback port, configured and logging in tmpdir.

    VirtualHost domain with anonymous authentication, Component
    pubsub.<domain> with pubsub_max_items max_items and the plugin above;
    STARTTLS, and direct TLS (XEP-0368) on tls_port, only when tls gives a
    certificate and its key.
    Its data directory survives restart(), so nodes and their items do,
    like on a production server.  stanza_debug (with debug): every stanza
    is logged in full, for tests that read what each JID did.
    """

    def __init__(self, tmpdir, domain="localhost", port=None, anonymous=True,
                 max_items=500, debug=True, storage="internal", tls=None,
                 stanza_debug=False):
        self.dir = os.path.abspath(os.path.join(tmpdir, "prosody"))
        self.domain = domain
        self.pubsub = "pubsub." + domain
        self.port = port or free_port()
        self.tls_port = free_port() if tls is not None else None
        self.data = os.path.join(self.dir, "data")
        self.certs = os.path.join(self.dir, "certs")
        self.plugins = os.path.join(self.dir, "plugins")
        self.conf_path = os.path.join(self.dir, "prosody.cfg.lua")
        self.log_path = os.path.join(self.dir, "prosody.log")
        self.pid_path = os.path.join(self.dir, "prosody.pid")
        self.proc = None
        for d in (self.dir, self.data, self.certs, self.plugins):
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(self.plugins, "mod_pubsub_anon_create.lua"), "w") as f:
            f.write(PLUGIN)
        # tls = (certificate, key) files: installed for the domain, with
        # mod_tls, so that STARTTLS is offered.
        if tls is not None:
            for src, ext in zip(tls, (".crt", ".key")):
                shutil.copyfile(src, os.path.join(self.certs, domain + ext))
        lines = [
            'pidfile = "%s"' % self.pid_path,
            'data_path = "%s"' % self.data,
            'certificates = "%s"' % self.certs,
            'plugin_paths = { "%s" }' % self.plugins,
            'log = { { levels = { min = "%s" }, to = "file", filename = "%s" } }'
            % ("debug" if debug else "info", self.log_path),
            'interfaces = { "127.0.0.1" }',
            'local_interfaces = { "127.0.0.1" }',
            'c2s_ports = { %d }' % self.port,
            'c2s_direct_tls_ports = { %s }' % (self.tls_port or ""),
            's2s_ports = { }',
            'component_ports = { }',
            'http_ports = { }',
            'https_ports = { }',
            'c2s_require_encryption = false',
            's2s_require_encryption = false',
            'allow_registration = false',
            # stanza_debug: every stanza in full in the debug log (RECV: /
            # SEND:), the operator's complete view: who subscribed, created
            # and published which node.
            'modules_enabled = { "roster", "saslauth", "disco", "ping"%s%s }'
            % (', "tls"' if tls is not None else "",
               ', "stanza_debug"' if stanza_debug and debug else ""),
            'modules_disabled = { "s2s" }',
            # "internal" (files) rewrites a node's whole item list on every
            # publish past max_items: fine for persistence tests, slow for
            # throughput ones, which use "memory" (lost at restart).
            'storage = "%s"' % storage,
            'pubsub_max_items = %d' % max_items,
            # A node's items are an archive truncated to max_items after
            # each append: the append fails once the archive quota is
            # reached, so the quota must stay above max_items.
            'storage_archive_item_limit = %d' % (max_items * 4),
            # Defaults would reject a busy sender on loopback.
            'limits = { c2s = { rate = "100mb/s" } }',
        ]
        if os.geteuid() == 0:
            lines.append("run_as_root = true")
        lines += [
            'VirtualHost "%s"' % domain,
            '    authentication = "%s"' % ("anonymous" if anonymous else "internal_hashed"),
            'Component "%s" "pubsub"' % self.pubsub,
            '    modules_enabled = { "pubsub_anon_create" }',
            '    pubsub_max_items = %d' % max_items,
        ]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.start()

    def check(self):
        """prosodyctl's opinion of the config: (returncode, output)."""
        r = subprocess.run([PROSODYCTL, "--config", self.conf_path, "check", "config"],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    name = "prosody"

    def argv(self):
        return [PROSODY, "-F", "--config", self.conf_path]

    def start(self, timeout=10.0):
        Server.start(self, timeout)
        if self.tls_port and not wait_port(self.tls_port, timeout, self.proc):
            raise RuntimeError("prosody: no direct TLS port %d, see %s"
                               % (self.tls_port, self.log_path))

    def wipe(self):
        """Stop and delete everything, for a clean start."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

def _serve(argv):
    """python3 prosody.py --serve DIR PORT: run a test server until killed
    (used by tools/demo.sh xmpp)."""
    import signal
    import time
    if len(argv) != 4 or argv[1] != "--serve":
        sys.stderr.write("usage: prosody.py --serve DIR PORT\n")
        return 2
    os.makedirs(argv[2], exist_ok=True)
    server = Prosody(argv[2], port=int(argv[3]), debug=True)
    server.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    try:
        while not stop:
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv))
