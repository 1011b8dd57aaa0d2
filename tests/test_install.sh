#!/bin/sh
# What `make install` puts where (into a DESTDIR): the systemd snippets under names systemd reads, a unit naming the configured directories, veild's default config there too, shell completion, no demo; the sysusers and tmpfiles snippets work (systemd-sysusers / -tmpfiles --root).
set -u
top=${VEIL_TOP_SRCDIR:?VEIL_TOP_SRCDIR is not set (run through make check)}
build=${VEIL_TOP_BUILDDIR:?VEIL_TOP_BUILDDIR is not set (run through make check)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..11"
n=1
failed=0
ok() {	# description, then a command whose status decides
	d=$1; shift
	if out=$("$@" 2>&1); then
		echo "ok $n - $d"
	else
		echo "not ok $n - $d"
		printf '%s\n' "$out" | tail -n 20 | sed 's/^/# /'
		failed=1
	fi
	n=$((n + 1))
}

# The directories as configure set them, expanded by make itself.
dir() {
	printf 'p:\n\t@echo $(%s)\n' "$1" | env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	    make -s --no-print-directory -C "$build" -f Makefile -f - p
}
sbindir=$(dir sbindir)
sysconfdir=$(dir sysconfdir)
bindir=$(dir bindir)
libdir=$(dir libdir)
unitdir=$(dir systemdsystemunitdir)
sysusersdir=$(dir sysusersdir)
tmpfilesdir=$(dir tmpfilesdir)
bashdir=$(dir bashcompletiondir)
zshdir=$(dir zshcompletiondir)
dest=$tmp/dest

ok "make install DESTDIR=... succeeds" make -s -C "$build" install DESTDIR="$dest"
ok "sysusers and tmpfiles snippets are *.conf (systemd reads no other name)" \
    sh -c "test -f '$dest$sysusersdir/veil.conf' && test -f '$dest$tmpfilesdir/veil.conf' &&
	! ls '$dest$sysusersdir' '$dest$tmpfilesdir' | grep -v -e '^veil.conf\$' -e ':\$' -e '^\$'"
ok "the unit's ExecStart names the configured sbindir and sysconfdir" \
    grep -qx "ExecStart=$sbindir/veild -c $sysconfdir/veil/veild.conf" "$dest$unitdir/veild.service"
ok "the unit has no directory left unsubstituted" \
    sh -c "! grep -n '@[a-z]*@' '$dest$unitdir/veild.service'"
ok "the example config is installed as \$(sysconfdir)/veil/veild.conf" \
    test -f "$dest$sysconfdir/veil/veild.conf"
# veild's compiled-in default: the same file (it does not exist outside
# DESTDIR, so veild names it in its error).
ok "veild without -c reads \$(sysconfdir)/veil/veild.conf" \
    sh -c "LD_LIBRARY_PATH='$dest$libdir' '$dest$sbindir/veild' -n 2>&1 |
	grep -qF '$sysconfdir/veil/veild.conf'"
ok "veil-demo is not installed (a demo, not a command)" \
    sh -c "! find '$dest' -name 'veil-demo*' | grep ."
ok "bash and zsh completion for veilctl are installed" \
    sh -c "test -f '$dest$bashdir/veilctl' && test -f '$dest$zshdir/_veilctl' &&
	test -x '$dest$bindir/veilctl'"
ok "the bash completion loads and completes veilctl's commands" \
    bash -c "source '$dest$bashdir/veilctl' && COMP_WORDS=(veilctl se) && COMP_CWORD=1 &&
	COMP_LINE='veilctl se' && COMP_POINT=10 && _veilctl &&
	test \"\${COMPREPLY[*]}\" = 'send send-file'"
# The snippets do what they say on a root of their own.
root=$tmp/root
mkdir -p "$root/etc" "$root/var/lib"
ok "systemd-sysusers creates the user veil from the installed snippet" \
    sh -c "systemd-sysusers --root='$root' '$dest$sysusersdir/veil.conf' &&
	grep -q '^veil:' '$root/etc/passwd' && grep -q '^veil:' '$root/etc/group'"
# Not root: the directory is made but cannot be given to veil (EPERM).
tmpfiles_ok() {
	systemd-tmpfiles --root="$root" --create "$dest$tmpfilesdir/veil.conf" || [ "$(id -u)" != 0 ]
	uid=$(awk -F: '/^veil:/ { print $3 }' "$root/etc/passwd")
	got=$(stat -c %a:%u "$root/var/lib/veil") || return 1
	if [ "$(id -u)" = 0 ]; then
		[ "$got" = "750:$uid" ] || { echo "got $got, want 750:$uid"; return 1; }
	else
		[ "${got%%:*}" = 750 ] || { echo "got $got, want 750"; return 1; }
	fi
}
ok "systemd-tmpfiles creates /var/lib/veil from the installed snippet (0750, veil's when root)" \
    tmpfiles_ok
exit $failed
