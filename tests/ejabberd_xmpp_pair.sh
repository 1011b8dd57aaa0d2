#!/bin/sh
# ejabberd_xmpp_pair.sh: tests/test_pair.py against ejabberd (Debian's, stock modules) as XMPP server (mod_pubsub).
VEIL_TRANSPORT=xmpp
VEIL_SERVER=ejabberd
export VEIL_TRANSPORT VEIL_SERVER
exec python3 "${VEIL_TOP_SRCDIR:?run through make check}/tests/test_pair.py"
