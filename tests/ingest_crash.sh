#!/usr/bin/env bash
# ingest_crash.sh - `zcnet ingest` killed with SIGKILL in the middle of many
# uploads: no partial file under a final name, the temporary files it left
# are removed when it starts again, and new uploads succeed.
#
# usage: ingest_crash.sh PATH/TO/zcnet ENGINE
set -uo pipefail
zcnet=${1:?usage: ingest_crash.sh PATH/TO/zcnet ENGINE}
engine=${2:?usage: ingest_crash.sh PATH/TO/zcnet ENGINE}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-crash.XXXXXX")
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*"; exit 1; }
temps() { find "$tmp/dir" -maxdepth 1 -name '.zcnet-ingest-*' | wc -l; }

# start: the server in the background; sets srv and port
start() {
	: >"$tmp/srv.log"
	"$zcnet" ingest --listen 127.0.0.1:0 --dir "$tmp/dir" --engine "$engine" \
		2>"$tmp/srv.log" &
	srv=$!
	pids+=("$srv")
	for _ in $(seq 200); do
		port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/srv.log")
		[ -n "$port" ] && return 0
		sleep 0.05
	done
	cat "$tmp/srv.log"
	fail "the server did not start"
}

mkdir -p "$tmp/dir"
head -c $((8 << 20)) /dev/urandom >"$tmp/body"
start
# Twenty uploads, slowed down so that all are mid-body at the kill.
for i in $(seq 20); do
	curl -s -o /dev/null --limit-rate 1M -T "$tmp/body" \
		"http://127.0.0.1:$port/up$i" &
	pids+=($!)
done
for _ in $(seq 100); do
	[ "$(temps)" -ge 20 ] && break
	sleep 0.05
done
[ "$(temps)" -ge 20 ] || fail "only $(temps) uploads under way before the kill"
kill -9 "$srv"
wait "$srv" 2>/dev/null
echo "# killed with $(temps) temporary files in DIR"
ls "$tmp/dir" | grep -q '^up' && fail "a partial file under a final name: $(ls "$tmp/dir")"

start
for _ in $(seq 100); do
	[ "$(temps)" -eq 0 ] && break
	sleep 0.05
done
[ "$(temps)" -eq 0 ] || fail "$(temps) temporary files left after the restart"
code=$(curl -s -o /dev/null -w '%{http_code}' -T "$tmp/body" "http://127.0.0.1:$port/after")
[ "$code" = 201 ] || fail "upload after the restart: HTTP $code"
cmp -s "$tmp/body" "$tmp/dir/after" || fail "upload after the restart differs"
ls "$tmp/dir" | grep -q '^up' && fail "a partial file under a final name after the restart"
echo "# restart: temporaries removed, a new upload stored intact"
echo "1 passed, 0 failed"
