#!/bin/sh
# xmpp_rotation.sh: tests/test_rotation.py with VEIL_TRANSPORT=xmpp (a private prosody instead of mosquitto).
VEIL_TRANSPORT=xmpp
# prosody keeps every item on disk here (the broker's view is read from
# it): fewer messages keep the suite inside its time on two cores.
VEIL_ROT_MESSAGES=${VEIL_ROT_MESSAGES:-60}
export VEIL_TRANSPORT VEIL_ROT_MESSAGES
exec python3 "${VEIL_TOP_SRCDIR:?run through make check}/tests/test_rotation.py"
