#!/usr/bin/env bash
# soak.sh - a bounded mixed workload against two long-lived `zcnet recv`
# processes over loopback, watching them for growth.
#
#  receiver U: uring engine, 2 threads (SO_REUSEPORT), 8 MiB pools;
#  receiver S: socket engine, a 1 MiB pool of 16 KiB pieces each held 1 ms
#              (the pool runs dry all the time).
# Both verify the pattern of every connection and stay up for the whole
# run. Each round sends, to each receiver in turn: one 256 MiB stream,
# 8 connections of 16 MiB, 64 connections of 64 KiB, through zcnet send's
# uring and socket engines alternately; every send waits until the receiver
# has closed its connections, so between rounds nothing is open.
#
# Every few seconds it prints each receiver's RSS, open descriptors and the
# throughput of the last round. It fails when a send or a receiver fails,
# when a receiver's descriptors between rounds differ from the first round's,
# or when its RSS grew by more than SOAK_RSS_SLACK_MB (default 4) from the
# end of the first quarter of the run to the end.
#
# usage: soak.sh PATH/TO/zcnet     env: SOAK_SECONDS (default 600)
set -uo pipefail

zcnet=${1:?usage: soak.sh PATH/TO/zcnet}
seconds=${SOAK_SECONDS:-600}
slack_kb=$((${SOAK_RSS_SLACK_MB:-4} * 1024))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-soak.XXXXXX")
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "soak: FAIL: $*" >&2
	exit 1
}

# start_recv NAME ARGS...: sets port_NAME and pid_NAME
start_recv() {
	local name=$1 line i port
	shift
	"$zcnet" recv --connections 1000000 --verify pattern "$@" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" &
	pids+=($!)
	eval "pid_$name=$!"
	for ((i = 0; i < 100; i++)); do
		line=$(grep -m1 'listening on' "$tmp/$name.err")
		[ -n "$line" ] && break
		sleep 0.1
	done
	port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' <<<"$line")
	[ -n "$port" ] || die "receiver $name did not start: $(tail -n3 "$tmp/$name.err")"
	eval "port_$name=$port"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# A free port for the two-thread receiver (it needs a fixed one).
free_port() {
	local p
	for p in $(shuf -i 20000-60000 -n 50); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo 0
}

start_recv U --listen "127.0.0.1:$(free_port)" --engine uring --threads 2 --pool-mb 8
start_recv S --listen 127.0.0.1:0 --engine socket --pool-mb 1 --piece-kb 16 --hold-ms 1

# send NAME PORT ARGS...
send() {
	local name=$1 port=$2
	shift 2
	timeout -k 5 300 "$zcnet" send --connect "127.0.0.1:$port" --pattern "$@" \
		>"$tmp/send.out" 2>"$tmp/send.err" ||
		die "send to $name ($*) failed: $(tail -n3 "$tmp/send.err")"
	sed -n 's/^summary bytes=\([0-9]*\).*/\1/p' "$tmp/send.out"
}

start=$SECONDS
round=0
last_print=-100
base_fds_U= base_fds_S= quarter_rss_U= quarter_rss_S=
total=0
echo "soak: $seconds s; receivers U (uring, pid $pid_U) and S (socket, tiny pool, pid $pid_S)"
while ((SECONDS - start < seconds)); do
	round=$((round + 1))
	engine=$([ $((round % 2)) -eq 0 ] && echo socket || echo uring)
	t0=$(date +%s.%N)
	bytes=0
	for r in U S; do
		port=$(eval echo "\$port_$r")
		for args in "--bytes 256M" "--bytes 16M --connections 8" "--bytes 64K --connections 64"; do
			# shellcheck disable=SC2086
			b=$(send "$r" "$port" $args --engine "$engine") || exit 1
			bytes=$((bytes + b))
		done
		kill -0 "$(eval echo "\$pid_$r")" 2>/dev/null ||
			die "receiver $r exited: $(tail -n3 "$tmp/$r.err")"
	done
	t1=$(date +%s.%N)
	total=$((total + bytes))
	rU=$(rss_kb "$pid_U") rS=$(rss_kb "$pid_S") fU=$(nfds "$pid_U") fS=$(nfds "$pid_S")
	if [ -z "$base_fds_U" ]; then
		base_fds_U=$fU base_fds_S=$fS
	fi
	[ "$fU" = "$base_fds_U" ] || die "receiver U: $fU open descriptors between rounds, $base_fds_U after the first"
	[ "$fS" = "$base_fds_S" ] || die "receiver S: $fS open descriptors between rounds, $base_fds_S after the first"
	if [ -z "$quarter_rss_U" ] && ((SECONDS - start >= seconds / 4)); then
		quarter_rss_U=$rU quarter_rss_S=$rS
	fi
	if ((SECONDS - last_print >= 5)); then
		last_print=$SECONDS
		printf 'soak: %4d s round %d: U rss %d KiB fds %d | S rss %d KiB fds %d | %.2f GB/s this round, %d GiB in all\n' \
			$((SECONDS - start)) "$round" "$rU" "$fU" "$rS" "$fS" \
			"$(echo "$bytes / ($t1 - $t0) / 1000000000" | bc -l)" $((total >> 30))
	fi
done
[ -n "$quarter_rss_U" ] || quarter_rss_U=$rU quarter_rss_S=$rS
echo "soak: $round rounds, $((total >> 30)) GiB verified; RSS U $quarter_rss_U -> $rU KiB, S $quarter_rss_S -> $rS KiB; fds U $fU, S $fS"
((rU <= quarter_rss_U + slack_kb)) || die "receiver U grew from $quarter_rss_U to $rU KiB"
((rS <= quarter_rss_S + slack_kb)) || die "receiver S grew from $quarter_rss_S to $rS KiB"
echo "soak: passed"
