#!/bin/sh
# demo.sh: the main job on one machine — a private mosquitto (or prosody), two
# daemons, Alice and Bob pair and talk; then what the broker operator saw.
# Usage: tools/demo.sh BUILD_DIR [mqtt|xmpp]
set -eu

build=$(cd "${1:?usage: demo.sh BUILD_DIR [mqtt|xmpp]}" && pwd)
transport=${2:-mqtt}
top=$(cd "$(dirname "$0")/.." && pwd)
veild=$build/daemon/veild
veilctl=$build/tools/veilctl
tmp=$(mktemp -d /tmp/veil-demo.XXXXXX)
pids=""

cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	[ -n "${VEIL_DEMO_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
alice() { printf '[alice]$ veilctl %s\n' "$*"; "$veilctl" -s "$tmp/alice/sock" "$@" | sed 's/^/    /'; }
bob() { printf '[bob]$ veilctl %s\n' "$*"; "$veilctl" -s "$tmp/bob/sock" "$@" | sed 's/^/    /'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	i=0
	while ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: broker did not start" >&2; exit 1; }
		sleep 0.1
	done
}

port=$(free_port)
case $transport in
mqtt)
	mkdir -p "$tmp/broker"
	cat > "$tmp/broker/mosquitto.conf" <<EOC
listener $port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $tmp/broker/
max_queued_messages 0
log_dest file $tmp/broker/broker.log
log_type all
connection_messages true
EOC
	[ "$(id -u)" = 0 ] && echo "user root" >> "$tmp/broker/mosquitto.conf"
	mosquitto -c "$tmp/broker/mosquitto.conf" >/dev/null 2>&1 &
	pids="$pids $!"
	transport_conf="transport = \"mqtt\"; mqtt = { uris = [\"tcp://127.0.0.1:$port\"]; };"
	;;
xmpp)
	python3 "$top/tests/lib/prosody.py" --serve "$tmp/broker" "$port" > "$tmp/prosody.out" 2>&1 &
	pids="$pids $!"
	transport_conf="transport = \"xmpp\"; xmpp = { domain = \"localhost\"; host = \"127.0.0.1\"; port = $port; tls = \"off\"; };"
	;;
*)	echo "demo: unknown transport $transport (mqtt or xmpp)" >&2; exit 2 ;;
esac
wait_port "$port"

for who in alice bob; do
	name=$(echo "$who" | sed 's/./\U&/')
	mkdir -p "$tmp/$who"
	# The state is sealed at rest: a key file unlocks it at start (a demo;
	# a real install uses a systemd credential or a passphrase, README).
	(umask 077; head -c 32 /dev/urandom > "$tmp/$who.key")
	cat > "$tmp/$who/veild.conf" <<EOC
state_dir = "$tmp/$who";
socket = "$tmp/$who/sock";
unlock = { key_file = "$tmp/$who.key"; kdf = "interactive"; };
$transport_conf
identity = { name = "$name"; obscurity = 2; };
accept = "ask";
retransmit = { initial = "1s"; max = "10s"; };
EOC
	"$veild" -d -c "$tmp/$who/veild.conf" > "$tmp/$who/veild.log" 2>&1 &
	pids="$pids $!"
done
for who in alice bob; do
	i=0
	until "$veilctl" -s "$tmp/$who/sock" status >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: veild did not start:"; cat "$tmp/$who/veild.log"; exit 1; }
		sleep 0.1
	done
done

step "Two daemons are up, talking to a private $transport broker on 127.0.0.1:$port"
alice status

step "Alice shows her contact card (a veil: URI and a QR code)"
uri=$("$veilctl" -s "$tmp/alice/sock" card)
alice card --qr

step "Bob scans it: step 1, a REQUEST sealed to Alice's key"
bob contact add "$uri"
sleep 1

step "Alice is asked; nothing is established without her consent"
alice contact list
step "Alice accepts: step 2 (ACCEPT) and step 3 (CONFIRM) follow"
alice contact accept Bob
sleep 1
alice contact list
bob contact list
step "Both can compare this safety number out of band"
alice contact verify Bob

step "Messages both ways, each durable until the peer's end-to-end ACK"
bob send Alice "Hi Alice, it's Bob."
alice send Bob "Hello Bob! Nobody at the broker knows we talk."
sleep 1
alice recv
bob recv

step "A rotation: Alice moves to a new random inbox (UPDATE / UPDATE-ACK)"
alice rotate
sleep 1
bob send Alice "Still reaching you after your rotation."
sleep 1
alice recv

step "What the broker operator saw ($transport log)"
if [ "$transport" = mqtt ]; then
	log=$tmp/broker/broker.log
	printf 'client IDs:     '; grep -oE 'connected from [^ ]+ as [A-Za-z0-9]+' "$log" | awk '{print $NF}' | sort -u | tr '\n' ' '; echo
	printf 'topics:         '; grep -E "Received PUBLISH from" "$log" | grep -oE "'[^']+'" | tr -d "'" | sort -u | tr '\n' ' '; echo
	printf 'payload sizes:  '; grep -E 'Received PUBLISH' "$log" | grep -oE '\([0-9]+ bytes\)' | sort | uniq -c | tr -s ' ' | tr '\n' ' '; echo
	printf 'names or text in the log: '; if grep -qiE 'alice|bob|hello' "$log"; then echo "FOUND (this is a bug)"; else echo "none"; fi
else
	log=$tmp/broker/prosody/prosody.log
	printf "anonymous JIDs: "; grep -oE "Authenticated as [^ ]+" "$log" | awk '{print $3}' | sort -u | tr "\n" " "; echo
	printf "pubsub nodes:   "; grep -oE "itemstore for node [A-Za-z0-9_-]+" "$log" | awk '{print $4}' | sort -u | tr "\n" " "; echo
	printf "names or text in the log: "
	if grep -v "welcome to Prosody" "$log" | grep -qiE "alice|bob|hello"; then echo "FOUND (this is a bug)"; else echo "none"; fi
fi
if [ "$transport" = mqtt ]; then
	step "The same log through tools/veil-observe (the operator's audit tool)"
	python3 "$top/tools/veil-observe" --ignore-ip "$log" | sed -n '1,/^3\./p' | sed '$d'
fi
echo
echo "Done. Everything ran in $tmp and is removed now."
