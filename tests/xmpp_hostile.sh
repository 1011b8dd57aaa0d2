#!/bin/sh
# xmpp_hostile.sh: tests/test_hostile.py with VEIL_TRANSPORT=xmpp (a private prosody instead of mosquitto).
VEIL_TRANSPORT=xmpp
export VEIL_TRANSPORT
exec python3 "${VEIL_TOP_SRCDIR:?run through make check}/tests/test_hostile.py"
