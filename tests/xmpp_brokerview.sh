#!/bin/sh
# xmpp_brokerview.sh: tests/test_brokerview.py with VEIL_TRANSPORT=xmpp (a private prosody instead of mosquitto).
VEIL_TRANSPORT=xmpp
export VEIL_TRANSPORT
exec python3 "${VEIL_TOP_SRCDIR:?run through make check}/tests/test_brokerview.py"
