# bash completion for veilctl(1): commands, their options, contact names and transfer IDs from the running veild.
_veilctl_socket()
{
	local i
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-s | --socket) echo "${COMP_WORDS[i + 1]}"; return ;;
		esac
	done
	echo "${VEIL_SOCKET:-/run/veil/veild.sock}"
}

# Names and IDs from veild itself; nothing when it does not answer.
_veilctl_contacts()
{
	veilctl -s "$(_veilctl_socket)" --json contact list 2>/dev/null |
	    python3 -c 'import json, sys
for c in json.load(sys.stdin).get("contacts", []): print(c["name"])' 2>/dev/null
}

_veilctl_transfers()
{
	veilctl -s "$(_veilctl_socket)" --json transfer list 2>/dev/null |
	    python3 -c 'import json, sys
for t in json.load(sys.stdin).get("transfers", []):
    if t["state"] not in ("done", "failed"): print(t["id"])' 2>/dev/null
}

# COMPREPLY from newline-separated words that may hold spaces ("Bob Builder").
_veilctl_words()
{
	local w
	COMPREPLY=()
	while IFS= read -r w; do
		[[ -n $w && $w == "$cur"* ]] && COMPREPLY+=("$(printf '%q' "$w")")
	done <<< "$1"
}

_veilctl()
{
	local cur prev words cword i cmd= sub= nargs=0
	_init_completion -n : 2>/dev/null || {
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD - 1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	}
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-s | --socket) i=$((i + 1)) ;;
		-*) ;;
		*)
			if [[ -z $cmd ]]; then cmd=${words[i]}
			elif [[ ( $cmd == contact || $cmd == transfer ) && -z $sub ]]; then sub=${words[i]}
			else nargs=$((nargs + 1)); fi ;;
		esac
	done
	case $prev in
	-s | --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--wait) return ;;
	--exec) COMPREPLY=($(compgen -c -- "$cur")); return ;;
	--as | --name) return ;;
	esac
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "status card contact send recv send-file transfer rotate help
		    -s --socket --json --help" -- "$cur"))
		return
	fi
	case $cmd in
	status) COMPREPLY=($(compgen -W "--verbose --json" -- "$cur")) ;;
	card) COMPREPLY=($(compgen -W "--qr --one-time --json" -- "$cur")) ;;
	rotate) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
	help) COMPREPLY=($(compgen -W "status card contact send recv send-file transfer rotate" -- "$cur")) ;;
	recv) COMPREPLY=($(compgen -W "--follow --wait --exec --json" -- "$cur")) ;;
	send)
		[[ $nargs == 0 ]] && _veilctl_words "$(_veilctl_contacts)" ;;
	send-file)
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--as --no-wait --json" -- "$cur"))
		elif [[ $nargs == 0 ]]; then
			_veilctl_words "$(_veilctl_contacts)"
		else
			COMPREPLY=($(compgen -f -- "$cur"))
		fi ;;
	contact)
		if [[ -z $sub ]]; then
			COMPREPLY=($(compgen -W "add list accept rename reject remove verify" -- "$cur"))
		elif [[ $cur == -* ]]; then
			case $sub in
			add) COMPREPLY=($(compgen -W "--name --json" -- "$cur")) ;;
			accept) COMPREPLY=($(compgen -W "--as --json" -- "$cur")) ;;
			verify) COMPREPLY=($(compgen -W "--mark --json" -- "$cur")) ;;
			*) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
			esac
		elif [[ $sub != add && $sub != list && $nargs == 0 ]]; then
			_veilctl_words "$(_veilctl_contacts)"
		fi ;;
	transfer)
		if [[ -z $sub ]]; then
			COMPREPLY=($(compgen -W "list cancel" -- "$cur"))
		elif [[ $sub == cancel && $nargs == 0 ]]; then
			_veilctl_words "$(_veilctl_transfers)"
		fi ;;
	esac
}
complete -F _veilctl veilctl
