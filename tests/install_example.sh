#!/usr/bin/env bash
# install_example.sh - zcnet as a user outside the tree gets it: install the
# build into a fresh prefix, build examples/recv_count.c there with the
# flags of the installed zcnet.pc, run it against the installed shared
# library, send it a file from a plain socket, and check what it counted.
#
# usage: install_example.sh BUILD_DIR EXAMPLE.c SANITIZE(0|1) [CC]
set -uo pipefail

build=${1:?usage: install_example.sh BUILD_DIR EXAMPLE.c SANITIZE [CC]}
example=${2:?}
sanitize=${3:-0}
cc=${4:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-install.XXXXXX")
prefix=$tmp/prefix
pid=
failures=0

cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}
die() {
	printf 'FAIL: %s\n' "$*"
	exit 1
}

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; die "cmake --install failed"; }

# The library directory follows GNUInstallDirs: lib/ for a prefix other
# than /usr, lib/<multiarch>/ or lib64/ elsewhere. Find it.
pc=$(find "$prefix" -name zcnet.pc -path '*/pkgconfig/*' | head -n1)
[ -n "$pc" ] || die "no zcnet.pc installed under $prefix"
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
[ -f "$prefix/include/zcnet.h" ] || fail "zcnet.h is not installed in $prefix/include"
ls "$libdir"/libzcnet.so* >/dev/null 2>&1 || fail "no libzcnet.so in $libdir"
[ -f "$libdir/libzcnet.a" ] || fail "no libzcnet.a in $libdir"
[ -x "$prefix/bin/zcnet" ] || fail "no zcnet tool in $prefix/bin"

flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs zcnet) ||
	die "pkg-config --cflags --libs zcnet failed"
echo "# pkg-config: $flags"
# The flags must lead to the installed copy, not to wherever the build
# was configured to go.
pc_prefix=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=prefix zcnet)
if [ "$(realpath -m "$pc_prefix")" != "$(realpath -m "$prefix")" ]; then
	fail "zcnet.pc installed in $pcdir says prefix=$pc_prefix, not $prefix"
	# go on with the prefix pkg-config derives from where the file lies
	flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --define-prefix --cflags --libs zcnet)
	echo "# pkg-config --define-prefix: $flags"
fi

san=()
[ "$sanitize" = 1 ] && san=(-fsanitize=address,undefined -fno-omit-frame-pointer)
mkdir -p "$tmp/out-of-tree"
cp "$example" "$tmp/out-of-tree/recv_count.c"
# shellcheck disable=SC2086 # $flags is a list of words
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic "${san[@]}" \
	-o "$tmp/out-of-tree/recv_count" "$tmp/out-of-tree/recv_count.c" $flags \
	>"$tmp/cc.log" 2>&1 || { cat "$tmp/cc.log"; die "the example does not build"; }

export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
lib=$(ldd "$tmp/out-of-tree/recv_count" | sed -n 's/.*libzcnet[^ ]* => \([^ ]*\).*/\1/p')
case "$lib" in
"$libdir"/*) ;;
*) fail "the example loads libzcnet from '$lib', not from $libdir" ;;
esac

size=$((8 * 1024 * 1024 + 4321))
head -c "$size" /dev/urandom >"$tmp/data"
timeout -k 5 60 "$tmp/out-of-tree/recv_count" 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for ((i = 0; i < 200; i++)); do
	port=$(sed -n 's/^listening on port \([0-9][0-9]*\).*/\1/p' "$tmp/out")
	[ -n "$port" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/out" "$tmp/err"; die "the example did not report its port"; }
# a plain socket, from bash
if ! timeout 30 bash -c 'cat "$1" >"/dev/tcp/127.0.0.1/$2"' _ "$tmp/data" "$port"; then
	fail "could not send to the example on port $port"
fi
wait "$pid"
status=$?
pid=
cat "$tmp/out"
[ "$status" -eq 0 ] || { cat "$tmp/err"; fail "the example exited $status"; }
grep -qx "received $size bytes" "$tmp/out" ||
	fail "the example did not count $size bytes"

if [ "$failures" -ne 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "the installed library works from outside the tree"
