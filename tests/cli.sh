#!/usr/bin/env bash
# cli.sh - the zcnet command-line tool end to end over loopback:
#  - `zcnet recv --verify pattern` gets `zcnet send --bytes 256M --pattern`
#    whole, with every engine including plain;
#  - several connections at once;
#  - `recv --out FILE` writes exactly what `send --file` sent;
#  - random data fails `--verify pattern` with an offset named;
#  - bad sizes, options and commands exit non-zero with a message.
#
# usage: cli.sh PATH/TO/zcnet
set -uo pipefail

zcnet=${1:?usage: cli.sh PATH/TO/zcnet}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-cli.XXXXXX")
pids=()
failures=0

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '# %s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}
show() { # show FILE: its content, indented, for a failure report
	sed 's/^/    | /' "$1" 2>/dev/null | tail -n 20
}

# start_recv NAME ARGS...: start `zcnet recv --listen 127.0.0.1:0 ARGS` in the
# background; sets recv_pid, recv_port and recv_engine. Returns 1 when it
# did not come up within 20 s.
start_recv() {
	local name=$1 line i
	shift
	: >"$tmp/$name.err"
	timeout -k 5 120 "$zcnet" recv --listen 127.0.0.1:0 "$@" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" &
	recv_pid=$!
	pids+=("$recv_pid")
	recv_port=
	for ((i = 0; i < 200; i++)); do
		line=$(grep -m1 'listening on' "$tmp/$name.err")
		if [ -n "$line" ]; then
			recv_port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\) engine=.*/\1/p' <<<"$line")
			recv_engine=$(sed -n 's/.* engine=\([^ ]*\).*/\1/p' <<<"$line")
			break
		fi
		kill -0 "$recv_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$recv_port" ]; then
		fail "$name: zcnet recv did not report its port"
		show "$tmp/$name.err"
		return 1
	fi
	return 0
}

# wait_recv: wait for the receiver started last; sets recv_status.
wait_recv() {
	wait "$recv_pid"
	recv_status=$?
}

# field FILE KEY: the value of KEY=... on the summary line of FILE
field() {
	sed -n "s/^summary.* $2=\([^ ]*\).*/\1/p" "$1" | head -n1
}

# run_send NAME ARGS...: `zcnet send --connect 127.0.0.1:$recv_port ARGS`
run_send() {
	local name=$1
	shift
	timeout -k 5 120 "$zcnet" send --connect "127.0.0.1:$recv_port" "$@" \
		>"$tmp/$name.send.out" 2>"$tmp/$name.send.err"
	send_status=$?
}

# ---------------------------------------------------------------------
# 256 MiB pattern stream, verified, per engine

size=$((256 * 1024 * 1024))
for engine in uring socket plain; do
	name=pattern-$engine
	start_recv "$name" --engine "$engine" --verify pattern || continue
	[ "$recv_engine" = "$engine" ] ||
		fail "$name: recv says engine=$recv_engine"
	run_send "$name" --bytes 256M --pattern
	wait_recv
	if [ "$send_status" -ne 0 ] || [ "$recv_status" -ne 0 ]; then
		fail "$name: send exited $send_status, recv exited $recv_status"
		show "$tmp/$name.send.err"
		show "$tmp/$name.err"
		continue
	fi
	got=$(field "$tmp/$name.out" bytes)
	sent=$(field "$tmp/$name.send.out" bytes)
	[ "$got" = "$size" ] || fail "$name: recv summary bytes=$got, expected $size"
	[ "$sent" = "$size" ] || fail "$name: send summary bytes=$sent, expected $size"
	if [ "$engine" != plain ]; then
		copied=$(field "$tmp/$name.out" copied)
		[ "$copied" = 0 ] || fail "$name: copied=$copied, expected 0"
	fi
	say "$name: $(head -n1 "$tmp/$name.out")"
done

# ---------------------------------------------------------------------
# the mmap engine gets a zero-copy, page-aligned zcnet sender's stream mapped

name=pattern-mmap-zerocopy
if start_recv "$name" --engine mmap --verify pattern; then
	run_send "$name" --bytes 256M --pattern --zerocopy --page-aligned
	wait_recv
	if [ "$send_status" -ne 0 ] || [ "$recv_status" -ne 0 ]; then
		fail "$name: send exited $send_status, recv exited $recv_status"
		show "$tmp/$name.send.err"
		show "$tmp/$name.err"
	else
		got=$(field "$tmp/$name.out" bytes)
		mapped=$(field "$tmp/$name.out" mapped)
		[ "$got" = "$size" ] || fail "$name: recv summary bytes=$got"
		[ -n "$mapped" ] && [ $((mapped * 100)) -ge $((size * 95)) ] ||
			fail "$name: mapped=$mapped of $size, expected at least 95%"
		done_n=$(sed -n 's/^summary.* send_done=\([0-9]*\).*/\1/p' "$tmp/$name.send.out")
		sends=$(sed -n 's/^summary.* sends=\([0-9]*\).*/\1/p' "$tmp/$name.send.out")
		[ -n "$sends" ] && [ "$done_n" = "$sends" ] ||
			fail "$name: send_done=$done_n for sends=$sends"
		say "$name: $(head -n1 "$tmp/$name.out")"
	fi
fi

# ---------------------------------------------------------------------
# several connections at once, sent through the library's socket engine

name=four-connections
if start_recv "$name" --engine socket --verify pattern --connections 4; then
	run_send "$name" --bytes 16M --pattern --connections 4 --engine socket
	wait_recv
	if [ "$send_status" -ne 0 ] || [ "$recv_status" -ne 0 ]; then
		fail "$name: send exited $send_status, recv exited $recv_status"
		show "$tmp/$name.send.err"
		show "$tmp/$name.err"
	else
		got=$(field "$tmp/$name.out" bytes)
		[ "$got" = $((4 * 16 * 1024 * 1024)) ] ||
			fail "$name: recv summary bytes=$got"
		conns=$(field "$tmp/$name.out" connections)
		[ "$conns" = 4 ] || fail "$name: recv summary connections=$conns"
	fi
fi

# ---------------------------------------------------------------------
# --out FILE gets exactly the bytes of --file

head -c $((24 * 1024 * 1024 + 12345)) /dev/urandom >"$tmp/random.bin"
for engine in uring socket plain; do
	name=out-$engine
	rm -f "$tmp/$name.bin"
	start_recv "$name" --engine "$engine" --out "$tmp/$name.bin" || continue
	run_send "$name" --file "$tmp/random.bin"
	wait_recv
	if [ "$send_status" -ne 0 ] || [ "$recv_status" -ne 0 ]; then
		fail "$name: send exited $send_status, recv exited $recv_status"
		show "$tmp/$name.send.err"
		show "$tmp/$name.err"
		continue
	fi
	cmp "$tmp/random.bin" "$tmp/$name.bin" >"$tmp/$name.cmp" 2>&1 ||
		{ fail "$name: the --out file differs from the --file upload"; show "$tmp/$name.cmp"; }
done

# ---------------------------------------------------------------------
# random data is not the pattern: recv fails and names an offset

for engine in uring plain; do
	name=mismatch-$engine
	start_recv "$name" --engine "$engine" --verify pattern || continue
	run_send "$name" --file "$tmp/random.bin"
	wait_recv
	if [ "$recv_status" -eq 0 ] || [ "$recv_status" -ge 124 ]; then
		fail "$name: recv exited $recv_status on random data"
		show "$tmp/$name.err"
	elif ! grep -Eq 'offset [0-9]+' "$tmp/$name.err"; then
		fail "$name: recv's error names no offset"
		show "$tmp/$name.err"
	else
		say "$name: $(grep -Em1 'offset [0-9]+' "$tmp/$name.err")"
	fi
done

# ---------------------------------------------------------------------
# bad command lines: non-zero, with a message, at once

# expect_usage_error ARGS...: zcnet ARGS must fail (not time out) and say why
expect_usage_error() {
	local st
	timeout -k 2 20 "$zcnet" "$@" >"$tmp/bad.out" 2>"$tmp/bad.err" </dev/null
	st=$?
	if [ "$st" -eq 0 ] || [ "$st" -ge 124 ]; then
		fail "zcnet $*: exit status $st"
	elif [ ! -s "$tmp/bad.err" ]; then
		fail "zcnet $*: exit status $st without a message on stderr"
	fi
}

expect_usage_error
expect_usage_error frobnicate
expect_usage_error --frobnicate
expect_usage_error send --connect 127.0.0.1:9 --bytes 12Q
expect_usage_error send --connect 127.0.0.1:9 --bytes -5
# ---------------------------------------------------------------------
# small zero-copy sends (every one through MSG_ZEROCOPY), verified

name=pattern-small-zerocopy
if start_recv "$name" --engine uring --verify pattern; then
	run_send "$name" --bytes 256M --pattern --zerocopy --chunk-kb 4 --zerocopy-min 1
	wait_recv
	if [ "$send_status" -ne 0 ] || [ "$recv_status" -ne 0 ]; then
		fail "$name: send exited $send_status, recv exited $recv_status"
		show "$tmp/$name.send.err"
		show "$tmp/$name.err"
	else
		got=$(field "$tmp/$name.out" bytes)
		sends=$(sed -n 's/^summary.* sends=\([0-9]*\).*/\1/p' "$tmp/$name.send.out")
		[ "$got" = "$size" ] || fail "$name: recv summary bytes=$got"
		[ "$sends" = $((size / 4096)) ] ||
			fail "$name: sends=$sends, expected one per 4 KiB"
		say "$name: $(head -n1 "$tmp/$name.send.out")"
	fi
fi

expect_usage_error send --connect 127.0.0.1:9 --bytes ''
expect_usage_error send --connect 127.0.0.1:9 --bytes 1.5M
expect_usage_error send --connect 127.0.0.1:9 --bytes 99999999999999999999
expect_usage_error send --connect 127.0.0.1:9 --bytes 99999999999G
expect_usage_error send --connect 127.0.0.1:9 --bytes
expect_usage_error send --connect 127.0.0.1:9
expect_usage_error send --bytes 1M
expect_usage_error send --connect 127.0.0.1:9 --bytes 1M --connections 0
expect_usage_error send --connect 127.0.0.1:9 --bytes 1M --engine warp
expect_usage_error send --connect 127.0.0.1:9 --bytes 1M --zerocopy --bogus
expect_usage_error send --connect 127.0.0.1:9 --bytes 1M --chunk-kb 0
expect_usage_error send --connect 127.0.0.1:9 --bytes 1M --zerocopy --zerocopy-min 0
expect_usage_error send --connect 127.0.0.1:9 --bytes 1M --bogus
expect_usage_error send --connect 127.0.0.1:9 --file "$tmp/no-such-file"
expect_usage_error send --connect 127.0.0.1:9 --file "$tmp/random.bin" --pattern
expect_usage_error send --connect nohost --bytes 1M
expect_usage_error recv
expect_usage_error recv --bogus
expect_usage_error recv --listen 127.0.0.1:0 --verify crc
expect_usage_error recv --listen 127.0.0.1:0 --engine warp
expect_usage_error recv --listen 127.0.0.1:0 --connections 0
expect_usage_error recv --listen 127.0.0.1:0 --pool-mb -1
expect_usage_error recv --listen 127.0.0.1:0 --piece-kb 12Q
expect_usage_error recv --listen nohost
expect_usage_error recv --listen 1.2.3.4:99999
expect_usage_error recv --listen 127.0.0.1:0 extra-argument
expect_usage_error help frobnicate

timeout 10 "$zcnet" --version >"$tmp/version" 2>&1 || fail "zcnet --version failed"
grep -q '^zcnet [0-9]' "$tmp/version" || fail "zcnet --version printed: $(cat "$tmp/version")"
timeout 10 "$zcnet" --help >/dev/null 2>&1 || fail "zcnet --help failed"

if [ "$failures" -ne 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all CLI checks passed"
