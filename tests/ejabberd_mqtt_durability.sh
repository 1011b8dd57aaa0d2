#!/bin/sh
# ejabberd_mqtt_durability.sh: tests/test_durability.py against ejabberd (Debian's, stock modules) as MQTT 5 broker (mod_mqtt).
VEIL_TRANSPORT=mqtt
VEIL_SERVER=ejabberd
export VEIL_TRANSPORT VEIL_SERVER
exec python3 "${VEIL_TOP_SRCDIR:?run through make check}/tests/test_durability.py"
