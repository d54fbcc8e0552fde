#!/usr/bin/env bash
# ingest.sh - `zcnet ingest` end to end, with curl and raw sockets:
#  - curl -T uploads of random files (0 B to a few hundred MiB) land on
#    disk byte for byte (sha256), plain, with --direct and with --fsync,
#    and GET serves them back identical;
#  - two uploads on one kept-alive connection; 100 uploads at once;
#  - a client stalled mid-body holds up no other upload;
#  - a client killed mid-body, a body over --max-body (413), a full
#    filesystem (507, on a small tmpfs): no file under the final name and
#    no temporary file left;
#  - bad names and malformed requests get 400 (or the precise 4xx/5xx),
#    touch nothing, and the server lives on;
#  - symlinks in DIR are replaced, never followed; leftover temporary
#    files go at start; an idle connection is closed; SIGTERM stops it
#    cleanly.
#
# usage: ingest.sh PATH/TO/zcnet ENGINE
# $ZC_INGEST_BIG_MB sets the size of the large upload in MiB (default
# 256; it is that plus 7 bytes, so 2048 or more crosses 2^31). It shrinks,
# saying so, when the filesystem of $TMPDIR cannot hold three copies.
set -uo pipefail

zcnet=${1:?usage: ingest.sh PATH/TO/zcnet ENGINE}
engine=${2:?usage: ingest.sh PATH/TO/zcnet ENGINE}
big_mb=${ZC_INGEST_BIG_MB:-256}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-ingest.XXXXXX")
pids=()
mounts=()
shm=
failures=0
srv_pid=
port=

cleanup() {
	local p m
	for p in "${pids[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	for m in "${mounts[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	rm -rf "$tmp" ${shm:+"$shm"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '# %s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}
show() { # show FILE: its last lines, indented, for a failure report
	sed 's/^/    | /' "$1" 2>/dev/null | tail -n 20
}
sha() { sha256sum <"$1" | cut -d' ' -f1; }
# sha_src FILE: sha FILE, from sums[] for the source files (hashed once)
declare -A sums
sha_src() {
	if [ -n "${sums[$1]:-}" ]; then
		printf '%s\n' "${sums[$1]}"
	else
		sha "$1"
	fi
}

# leftovers DIR: the temporary files in DIR, if any
leftovers() {
	find "$1" -maxdepth 1 -name '.zcnet-ingest-*' -printf '%f ' 2>/dev/null
}

# ---------------------------------------------------------------------
# the server

# start_ingest NAME DIR ARGS...: start the server in the background; sets
# srv_pid and port. Returns 1 when it did not come up within 20 s.
start_ingest() {
	local name=$1 dir=$2 line i
	shift 2
	srv_log=$tmp/$name.log
	: >"$srv_log"
	# A short --idle-timeout: an upload that stalls fails in seconds.
	timeout -k 30 300 "$zcnet" ingest --listen 127.0.0.1:0 --dir "$dir" \
		--engine "$engine" --idle-timeout 5 "$@" 2>"$srv_log" &
	srv_pid=$!
	pids+=("$srv_pid")
	port=
	for ((i = 0; i < 200; i++)); do
		line=$(grep -m1 'listening on' "$srv_log")
		if [ -n "$line" ]; then
			port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\) engine=.*/\1/p' <<<"$line")
			break
		fi
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$port" ]; then
		fail "$name: zcnet ingest did not report its port"
		show "$srv_log"
		return 1
	fi
	url=http://127.0.0.1:$port
	return 0
}

# stop_ingest NAME DIR: SIGTERM; it must exit 0, leaving no temporary
# file in DIR. (Exiting can take seconds when the disk is busy writing
# back what earlier tests wrote: the wrapper's SIGKILL comes after 30 s.)
stop_ingest() {
	local name=$1 dir=$2 st t0
	t0=$(date +%s%N)
	kill -TERM "$srv_pid" 2>/dev/null
	wait "$srv_pid"
	st=$?
	t0=$((($(date +%s%N) - t0) / 1000000))
	((t0 < 2000)) || say "$name: exiting after SIGTERM took $t0 ms"
	if [ "$st" -ne 0 ]; then
		fail "$name: zcnet ingest exited $st after SIGTERM"
		show "$srv_log"
	elif ! grep -q 'stopped:' "$srv_log"; then
		fail "$name: no 'stopped:' line"
		show "$srv_log"
	fi
	[ -z "$(leftovers "$dir")" ] || fail "$name: temporary files left: $(leftovers "$dir")"
}

alive() { kill -0 "$srv_pid" 2>/dev/null; }

# put FILE NAME [CURL ARGS...]: upload; sets code (the HTTP status)
put() {
	local file=$1 name=$2
	shift 2
	code=$(timeout -k 5 90 curl -sS --max-time 60 -o "$tmp/put.body" -w '%{http_code}' \
		"$@" -T "$file" "$url/$name" 2>"$tmp/put.err")
}

# check_put FILE NAME DIR [CURL ARGS...]: upload, expect 201 and the same
# bytes in DIR/NAME
check_put() {
	local file=$1 name=$2 dir=$3
	shift 3
	put "$file" "$name" "$@"
	if [ "$code" != 201 ]; then
		fail "PUT $name ($(stat -c %s "$file") bytes): status $code"
		show "$tmp/put.err"
		return 1
	fi
	if [ "$(sha_src "$file")" != "$(sha "$dir/$name" 2>/dev/null)" ]; then
		fail "PUT $name: $dir/$name differs from what was sent"
		return 1
	fi
	return 0
}

# check_get FILE NAME: GET returns exactly FILE
check_get() {
	local file=$1 name=$2 got
	got=$(timeout -k 5 90 curl -sS --max-time 60 -w '%{http_code}' -o "$tmp/get.out" "$url/$name" 2>&1)
	if [ "$got" != 200 ] || ! cmp -s "$file" "$tmp/get.out"; then
		fail "GET $name: status $got, or bytes differ"
		return 1
	fi
	return 0
}

# raw FORMAT: send printf(FORMAT) on a new connection and print the status
# line of the answer (empty if none within 5 s)
raw() {
	{
		exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
		# shellcheck disable=SC2059 # the format is the request
		printf "$1" >&3
		timeout -k 1 5 cat <&3
	} 2>/dev/null | head -n1 | tr -d '\r'
}

# expect_raw STATUS FORMAT: the answer to a raw request has STATUS
nraw=0
expect_raw() {
	local want=$1 got
	nraw=$((nraw + 1))
	got=$(raw "$2")
	case "$got" in
	"HTTP/1.1 $want "*) ;;
	*) fail "raw $(printf '%q' "$2" | cut -c1-70): got '$got', expected $want" ;;
	esac
}

# ---------------------------------------------------------------------
# test files

sizes=(0 1 4095 4096 4097 65537 $((1024 * 1024 + 1)) $((16 * 1024 * 1024 + 3)))
mkdir -p "$tmp/src"
for s in "${sizes[@]}"; do
	head -c "$s" /dev/urandom >"$tmp/src/f$s"
done
# free_mb DIR: MiB free in DIR's filesystem
free_mb() { echo $(($(df -Pk "$1" | awk 'NR == 2 { print $4 }') / 1024)); }
# The large source goes to /dev/shm when it fits there: on the disk it
# would still be being written back while the uploads land, halving them.
big=$tmp/src/big
copies=3 # the source, one landed copy and one read back
if [ -d /dev/shm ] && (($(free_mb /dev/shm) > big_mb + 1024)) &&
	shm=$(mktemp -d /dev/shm/zcnet-ingest.XXXXXX); then
	big=$shm/big
	copies=2
fi
if (($(free_mb "$tmp") < copies * big_mb + 1024)); then
	say "only $(free_mb "$tmp") MiB free in $tmp: the large upload shrinks from $big_mb MiB"
	big_mb=$((($(free_mb "$tmp") - 1024) / copies))
	((big_mb >= 16)) || big_mb=16
fi
head -c $((big_mb * 1024 * 1024 + 7)) /dev/urandom >"$big"
head -c $((1024 * 1024)) /dev/urandom >"$tmp/src/one-mib"
for f in "$tmp"/src/* "$big"; do
	[ -n "${sums[$f]:-}" ] || sums[$f]=$(sha "$f")
done

# ---------------------------------------------------------------------
# uploads of every size, plain, --direct and --fsync; GET them back

for mode in plain direct fsync; do
	dir=$tmp/store-$mode
	mkdir -p "$dir"
	args=()
	[ "$mode" = plain ] || args=("--$mode")
	start_ingest "$mode" "$dir" "${args[@]}" || continue
	ok=0
	for s in "${sizes[@]}"; do
		check_put "$tmp/src/f$s" "f$s" "$dir" && ok=$((ok + 1))
	done
	t0=$(date +%s%N)
	check_put "$big" big.bin "$dir" && ok=$((ok + 1))
	t1=$(date +%s%N)
	say "$mode: $ok of $((${#sizes[@]} + 1)) uploads identical; $big_mb MiB in $(((t1 - t0) / 1000000)) ms"
	grep -m1 'stored big.bin' "$srv_log" | sed 's/^/# /'
	if [ "$mode" = plain ]; then
		for s in "${sizes[@]}"; do
			check_get "$tmp/src/f$s" "f$s"
		done
		check_get "$big" big.bin
		# HEAD: the length, no body
		h=$(timeout 10 curl -sSI "$url/f4097" | tr -d '\r' | sed -n 's/^Content-Length: //p')
		[ "$h" = 4097 ] || fail "HEAD f4097: Content-Length '$h'"
		# two uploads, one connection
		out=$(timeout 60 curl -sS -o /dev/null -w '%{http_code} %{num_connects}\n' \
			-T "$tmp/src/f4097" "$url/ka1" -T "$tmp/src/f65537" "$url/ka2" 2>&1)
		[ "$out" = $'201 1\n201 0' ] ||
			fail "keep-alive: two PUTs on one connection gave: $(tr '\n' ' ' <<<"$out")"
		cmp -s "$tmp/src/f4097" "$dir/ka1" && cmp -s "$tmp/src/f65537" "$dir/ka2" ||
			fail "keep-alive: the files differ"
		# a file replaced by a new upload
		check_put "$tmp/src/f1" f4097 "$dir"
	fi
	rm -f "$dir/big.bin" "$tmp/get.out" # room for the next mode's
	stop_ingest "$mode" "$dir"
done

# ---------------------------------------------------------------------
# 100 uploads at once

dir=$tmp/store-many
mkdir -p "$dir"
if start_ingest many "$dir"; then
	cpids=()
	for i in $(seq 1 100); do
		timeout -k 5 90 curl -sS --max-time 60 -o /dev/null -w '%{http_code}\n' \
			-T "$tmp/src/one-mib" "$url/c$i" >"$tmp/many.$i" 2>&1 &
		cpids+=($!)
	done
	pids+=("${cpids[@]}")
	wait "${cpids[@]}"
	codes=0
	for i in $(seq 1 100); do
		[ "$(<"$tmp/many.$i")" = 201 ] && codes=$((codes + 1))
	done
	want=$(sha "$tmp/src/one-mib")
	good=$(cd "$dir" && sha256sum c* 2>/dev/null | grep -c "^$want ")
	[ "$codes" = 100 ] || fail "100 concurrent uploads: $codes answered 201"
	[ "$good" = 100 ] || fail "100 concurrent uploads: $good stored intact"
	say "many: $good of 100 concurrent uploads intact"
	alive || fail "many: the server died"
	stop_ingest many "$dir"
fi

# ---------------------------------------------------------------------
# a client killed mid-body; a slow one does not hold up the others;
# --max-body; the server stopped during an upload

dir=$tmp/store-abort
mkdir -p "$dir"
if start_ingest abort "$dir" --max-body 1M; then
	curl -sS -o /dev/null --limit-rate 128K -T "$tmp/src/one-mib" \
		"$url/killed" 2>/dev/null &
	cpid=$!
	pids+=("$cpid")
	sleep 1
	# meanwhile, another upload goes through at once
	check_put "$tmp/src/f65537" beside "$dir" --max-time 10
	kill -9 "$cpid"
	wait "$cpid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		grep -q 'failed killed' "$srv_log" && break
		sleep 0.1
	done
	grep -q 'failed killed' "$srv_log" || fail "killed client: the server did not notice"
	[ ! -e "$dir/killed" ] || fail "killed client: a file under the final name"
	[ -z "$(leftovers "$dir")" ] || fail "killed client: temporary files left: $(leftovers "$dir")"
	say "abort: a client killed mid-body left nothing behind"

	# a client that stops in the middle of its body, connection open,
	# holds up nobody: another upload goes through meanwhile
	exec 5<>"/dev/tcp/127.0.0.1/$port"
	{
		printf 'PUT /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n'
		head -c 100000 /dev/zero
	} >&5
	sleep 0.5
	t0=$(date +%s%N)
	check_put "$tmp/src/f65537" beside-stalled "$dir" --max-time 5
	t0=$((($(date +%s%N) - t0) / 1000000))
	((t0 < 2000)) || fail "an upload beside a stalled one took $t0 ms"
	exec 5>&-
	say "abort: an upload beside a stalled client took $t0 ms"

	# over --max-body: 413 before the body (curl waits for 100-continue),
	# and without Expect, the body already on its way
	put "$tmp/src/f$((16 * 1024 * 1024 + 3))" over
	[ "$code" = 413 ] || fail "over --max-body: status $code"
	put "$tmp/src/f$((1024 * 1024 + 1))" over2 -H 'Expect:'
	[ "$code" = 413 ] || fail "over --max-body without Expect: status $code"
	[ ! -e "$dir/over" ] && [ ! -e "$dir/over2" ] && [ -z "$(leftovers "$dir")" ] ||
		fail "over --max-body: something was written: $(ls -A "$dir")"
	check_put "$tmp/src/one-mib" exactly-max "$dir" && say "abort: --max-body refused with 413, nothing written"

	# SIGTERM while an upload is in progress: exits 0, discards it
	curl -sS -o /dev/null --limit-rate 128K -T "$tmp/src/one-mib" \
		"$url/interrupted" 2>/dev/null &
	pids+=($!)
	sleep 1
	[ -n "$(leftovers "$dir")" ] || fail "interrupted: no temporary file during the upload"
	stop_ingest abort "$dir"
	[ ! -e "$dir/interrupted" ] || fail "interrupted: a file under the final name"
fi

# ---------------------------------------------------------------------
# a full filesystem: 507, nothing left; then it still works

if [ "$(id -u)" = 0 ]; then
	dir=$tmp/small
	mkdir -p "$dir"
	if mount -t tmpfs -o size=8m zcnet-ingest "$dir"; then
		mounts+=("$dir")
		if start_ingest full "$dir"; then
			put "$tmp/src/f$((16 * 1024 * 1024 + 3))" full
			[ "$code" = 507 ] || fail "full disk: status $code"
			# Buffered, the blocks are reserved up front: refused
			# before the body is sent.
			grep -Eq 'failed full|refused a request: 507' "$srv_log" ||
				fail "full disk: no failure logged"
			[ -z "$(ls -A "$dir")" ] || fail "full disk: left behind: $(ls -A "$dir")"
			check_put "$tmp/src/f$((1024 * 1024 + 1))" fits "$dir" &&
				say "full: 507 on a full tmpfs, nothing left, then a file that fits"
			stop_ingest full "$dir"
		fi
		rm -f "$dir/fits"
		# --direct reserves nothing: the disk fills while writing.
		if start_ingest full-direct "$dir" --direct; then
			put "$tmp/src/f$((16 * 1024 * 1024 + 3))" full
			[ "$code" = 507 ] || fail "full disk, --direct: status $code"
			grep -q 'failed full' "$srv_log" || fail "full disk, --direct: no failure logged"
			[ -z "$(ls -A "$dir")" ] ||
				fail "full disk, --direct: left behind: $(ls -A "$dir")"
			say "full: 507 with --direct too, the disk full while writing"
			stop_ingest full-direct "$dir"
		fi
		umount "$dir" && mounts=()
	else
		say "full disk: cannot mount a tmpfs here, skipped"
	fi
else
	say "full disk: needs root to mount a tmpfs, skipped"
fi

# ---------------------------------------------------------------------
# names and malformed requests, over raw sockets

dir=$tmp/store-raw
mkdir -p "$dir"
echo outside >"$tmp/outside"
ln -s "$tmp/outside" "$dir/link"
ln -s "$tmp/outside" "$dir/readlink"
: >"$dir/.zcnet-ingest-999-1"
if start_ingest raw "$dir" --idle-timeout 2; then
	[ ! -e "$dir/.zcnet-ingest-999-1" ] || fail "a leftover temporary file was not removed"
	h='Host: x\r\nConnection: close\r\n'
	for t in '/..' '/.' '/.hidden' '/a/b' '/a%%2fb' '/%%2e%%2e' '/a%%00b' '/a\0b' \
		'/../outside' '//etc' '/' '/a?b' '/a%%20b' '/caf\xc3\xa9'; do
		expect_raw 400 "PUT $t HTTP/1.1\r\n${h}Content-Length: 3\r\n\r\nabc"
	done
	expect_raw 400 "GET /.. HTTP/1.1\r\n$h\r\n"
	expect_raw 400 'GARBAGE\r\n\r\n'
	expect_raw 400 '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'
	expect_raw 400 "PUT /a HTTP/1.1\nHost: x\nContent-Length: 1\n\nz"
	expect_raw 400 "PUT /a HTTP/1.1\r\n${h}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
	expect_raw 400 "PUT /a HTTP/1.1\r\n${h}Content-Length: -3\r\n\r\nabc"
	expect_raw 400 "PUT /a HTTP/1.1\r\n${h}Content-Length: 3\r\n folded\r\n\r\nabc"
	expect_raw 400 "PUT /a HTTP/1.1\r\n${h}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"
	expect_raw 400 "PUT /a HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc"
	expect_raw 411 "PUT /a HTTP/1.1\r\n$h\r\n"
	expect_raw 411 "PUT /a HTTP/1.1\r\n${h}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	expect_raw 501 "PUT /a HTTP/1.1\r\n${h}Transfer-Encoding: gzip\r\n\r\n"
	expect_raw 501 "DELETE /a HTTP/1.1\r\n$h\r\n"
	expect_raw 505 "PUT /a HTTP/2.0\r\n${h}Content-Length: 3\r\n\r\nabc"
	expect_raw 417 "PUT /a HTTP/1.1\r\n${h}Content-Length: 3\r\nExpect: tea\r\n\r\nabc"
	expect_raw 413 "PUT /a HTTP/1.1\r\n${h}Content-Length: 99999999999999999999999\r\n\r\n"
	expect_raw 431 "GET /a HTTP/1.1\r\n${h}X: $(head -c 20000 /dev/zero | tr '\0' x)\r\n\r\n"
	expect_raw 404 "GET /nothing HTTP/1.1\r\n$h\r\n"
	# never read through a symlink; a PUT replaces it, not its target
	expect_raw 404 "GET /readlink HTTP/1.1\r\n$h\r\n"
	expect_raw 201 "PUT /link HTTP/1.1\r\n${h}Content-Length: 3\r\n\r\nnew"
	[ "$(cat "$tmp/outside")" = outside ] || fail "PUT over a symlink wrote through it"
	[ -f "$dir/link" ] && [ ! -L "$dir/link" ] && [ "$(cat "$dir/link")" = new ] ||
		fail "PUT over a symlink did not replace it with the file"
	# HTTP/1.0, a body in the head's own segment, pipelined requests
	expect_raw 201 'PUT /ten HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello'
	[ "$(cat "$dir/ten" 2>/dev/null)" = hello ] || fail "HTTP/1.0 PUT: wrong content"
	out=$({
		exec 3<>"/dev/tcp/127.0.0.1/$port"
		printf 'PUT /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab%b%b' \
			'PUT /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\ncd' \
			'GET /p1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
		timeout -k 1 5 cat <&3
	} 2>/dev/null | tr -d '\r' | grep -c '^HTTP/1.1 20[01]')
	[ "$out" = 3 ] && [ "$(cat "$dir/p1" "$dir/p2" 2>/dev/null)" = abcd ] ||
		fail "pipelined requests: $out answers, files '$(cat "$dir/p1" "$dir/p2" 2>/dev/null)'"
	# idle: a head that never ends is answered 408 and closed
	t0=$(date +%s)
	expect_raw 408 'PUT /slow HTTP/1.1\r\nHost: x\r\n'
	(($(date +%s) - t0 <= 4)) || fail "idle timeout: took $(($(date +%s) - t0)) s"
	# none of the refused requests wrote anything, and it still works
	unexpected=$(ls -A "$dir" | grep -Ev '^(link|readlink|ten|p1|p2)$')
	[ -z "$unexpected" ] || fail "refused requests left files: $unexpected"
	alive || fail "raw: the server died"
	check_put "$tmp/src/f4097" after-raw "$dir"
	say "raw: $nraw raw requests answered"
	stop_ingest raw "$dir"
fi

# ---------------------------------------------------------------------
# bad command lines

for args in "--listen 127.0.0.1:0" "--dir $tmp/nope --listen 127.0.0.1:0" \
	"--dir $tmp --max-body 12Q" "--dir $tmp --idle-timeout 0" \
	"--dir $tmp --engine warp" "--dir $tmp --bogus" "--dir $tmp --listen nohost"; do
	# shellcheck disable=SC2086 # word splitting intended
	timeout -k 2 20 "$zcnet" ingest $args >"$tmp/bad.out" 2>"$tmp/bad.err" </dev/null
	st=$?
	if [ "$st" -eq 0 ] || [ "$st" -ge 124 ]; then
		fail "zcnet ingest $args: exit status $st"
	elif [ ! -s "$tmp/bad.err" ]; then
		fail "zcnet ingest $args: no message"
	fi
done
timeout 10 "$zcnet" help ingest | grep -q -- '--max-body' || fail "zcnet help ingest"

if [ "$failures" -ne 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all ingest checks passed ($engine)"
