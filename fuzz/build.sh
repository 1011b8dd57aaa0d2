#!/bin/sh
# Builds the libFuzzer harnesses (and mkseeds) with clang, out of tree, without autotools.
# Usage: fuzz/build.sh [OUTDIR]   (default: fuzz/build)
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$SRC/fuzz/build}
CC=${CC:-clang}
mkdir -p "$OUT/obj"

PKGS="libsodium jansson libqrencode libconfig libsystemd libevent"
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
PKG_LIBS=$(pkg-config --libs $PKGS)

WARN="-Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wformat=2 -Wno-unused-parameter"
BASE="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $WARN $PKG_CFLAGS"
# methods.c wants autoconf's config.h for PACKAGE_VERSION: a stand-in.
mkdir -p "$OUT/include"
[ -f "$OUT/include/config.h" ] || printf '#define PACKAGE_VERSION "fuzz"\n' > "$OUT/include/config.h"
INC="-I$SRC/libproto -I$SRC/daemon -I$SRC/tests -I$SRC/fuzz"
# Code under test gets coverage instrumentation; the harness link adds libFuzzer's main.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
INSTR="$SAN -fsanitize=fuzzer-no-link"

compile() { # obj src extra-flags
	obj=$1 src=$2
	shift 2
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$0" -nt "$obj" ] ||
	    [ -n "$(find "$SRC/libproto" "$SRC/daemon" "$SRC/fuzz" "$SRC/tests" -name '*.h' -newer "$obj" 2>/dev/null | head -1)" ]; then
		echo "  CC $(basename "$src")"
		# shellcheck disable=SC2086
		$CC $BASE "$@" $INC -c -o "$obj" "$src"
	fi
}

LIBOBJS=""
for f in "$SRC"/libproto/*.c; do
	o="$OUT/obj/libproto_$(basename "$f" .c).o"
	compile "$o" "$f" $INSTR
	LIBOBJS="$LIBOBJS $o"
done
compile "$OUT/obj/testutil.o" "$SRC/tests/testutil.c" $INSTR
compile "$OUT/obj/world.o" "$SRC/fuzz/world.c" $INSTR
compile "$OUT/obj/rpc.o" "$SRC/daemon/rpc.c" $INSTR
compile "$OUT/obj/log.o" "$SRC/daemon/log.c" $INSTR
compile "$OUT/obj/config.o" "$SRC/daemon/config.c" $INSTR
compile "$OUT/obj/config_print.o" "$SRC/daemon/config_print.c" $INSTR
compile "$OUT/obj/config_check.o" "$SRC/daemon/config_check.c" $INSTR
compile "$OUT/obj/config_units.o" "$SRC/daemon/config_units.c" $INSTR
compile "$OUT/obj/bkkey.o" "$SRC/daemon/bkkey.c" $INSTR
compile "$OUT/obj/bkfile.o" "$SRC/daemon/bkfile.c" $INSTR
compile "$OUT/obj/backup_rec.o" "$SRC/daemon/backup_rec.c" $INSTR
compile "$OUT/obj/stub_control.o" "$SRC/fuzz/stub_control.c" $INSTR
# <config.h> there is autoconf's: the stand-in must come before daemon/.
compile "$OUT/obj/methods.o" "$SRC/daemon/methods.c" -I"$OUT/include" $INSTR
compile "$OUT/obj/stub_engine.o" "$SRC/fuzz/stub_engine.c" $INSTR
compile "$OUT/obj/methods_vault.o" "$SRC/daemon/methods_vault.c" -I"$OUT/include" $INSTR
compile "$OUT/obj/stub_vault.o" "$SRC/fuzz/stub_vault.c" $INSTR

WORLD="$OUT/obj/world.o $OUT/obj/testutil.o"
link() { # name objs...
	name=$1
	shift
	compile "$OUT/obj/$name.o" "$SRC/fuzz/$name.c" $INSTR
	echo "  LD $name"
	# shellcheck disable=SC2086
	$CC $SAN -fsanitize=fuzzer -o "$OUT/$name" "$OUT/obj/$name.o" "$@" $PKG_LIBS -lm
}

link fuzz_card $LIBOBJS
link fuzz_file $LIBOBJS
link fuzz_frame $WORLD $LIBOBJS
link fuzz_ccm $WORLD $LIBOBJS
link fuzz_agree $WORLD $LIBOBJS
link fuzz_rpc "$OUT/obj/rpc.o" "$OUT/obj/log.o" "$OUT/obj/stub_control.o"
link fuzz_config "$OUT/obj/config.o" "$OUT/obj/config_print.o" "$OUT/obj/config_check.o" \
    "$OUT/obj/config_units.o" "$OUT/obj/bkkey.o" $LIBOBJS
link fuzz_methods "$OUT/obj/methods.o" "$OUT/obj/rpc.o" "$OUT/obj/log.o" \
    "$OUT/obj/stub_control.o" "$OUT/obj/stub_engine.o" \
    "$OUT/obj/methods_vault.o" "$OUT/obj/stub_vault.o" "$OUT/obj/bkkey.o" \
    $LIBOBJS
BACKUP="$OUT/obj/bkfile.o $OUT/obj/backup_rec.o"
link fuzz_backup $BACKUP

# mkseeds is an ordinary program: the sanitizer runtimes supply no-op
# coverage callbacks for the instrumented objects it shares.
compile "$OUT/obj/mkseeds.o" "$SRC/fuzz/mkseeds.c" $SAN
echo "  LD mkseeds"
# shellcheck disable=SC2086
$CC $SAN -o "$OUT/mkseeds" "$OUT/obj/mkseeds.o" $WORLD $BACKUP $LIBOBJS $PKG_LIBS -lm
echo "fuzz: harnesses in $OUT"
