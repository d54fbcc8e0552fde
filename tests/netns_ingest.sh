#!/usr/bin/env bash
# netns_ingest.sh - uploads to `zcnet ingest` over an impaired link land
# on disk byte for byte.
#
# The link of netns_impair.sh (netns_lib.sh): `zcnet ingest` listens in the
# receiving namespace, curl uploads from the sending one. Each run sends
# three files of random data at once (64, 128 and 256 MiB, a few bytes
# off whole MiB) and compares the sha256 of every stored file with its
# source:
#  - loss3:          nftables drops a random 3% of what enters the server;
#  - reorder:        the HTB + BPF reordering of netns_impair.sh;
#  - loss3+reorder:  both;
#  - loss3+reorder --direct: both, the files written with O_DIRECT.
# Each run must have met its impairment (drop counter, slow class and
# out-of-order queue moved), got 201 for every upload, and the server
# must exit 0 on SIGTERM with no temporary file left.
#
# Needs root and `ip netns` (else exits 77, skipped). The namespaces and
# every file are removed, on failure and on INT/TERM too.
#
# usage: netns_ingest.sh PATH/TO/zcnet PATH/TO/reorder.bpf.c
# env:   ZC_NETNS_INGEST_MB (default "64 128 256") the files' sizes in MiB;
#        ZC_NETNS_INGEST_ENGINE (default uring) the server's engine.
set -uo pipefail

zcnet=${1:?usage: netns_ingest.sh PATH/TO/zcnet PATH/TO/reorder.bpf.c}
bpf_src=${2:?usage: netns_ingest.sh PATH/TO/zcnet PATH/TO/reorder.bpf.c}
sizes_mb=${ZC_NETNS_INGEST_MB:-64 128 256}
engine=${ZC_NETNS_INGEST_ENGINE:-uring}
port=9080

# shellcheck source=netns_lib.sh
. "$(dirname "$0")/netns_lib.sh"
netns_require nft tc clang curl sha256sum
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-netns-ingest.XXXXXX")
start_s=$SECONDS
netns_link "$bpf_src"

sha() { sha256sum <"$1" | cut -d' ' -f1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The sources, odd sizes so that the last block is a partial one.
names=()
declare -A src_sha
mkdir -p "$tmp/src"
total=0
for mb in $sizes_mb; do
	name=f$mb
	size=$((mb * 1024 * 1024 - mb))
	head -c "$size" /dev/urandom >"$tmp/src/$name"
	src_sha[$name]=$(sha "$tmp/src/$name")
	names+=("$name")
	total=$((total + size))
done

# start_server NAME DIR [INGEST OPTIONS...]: sets srv_pid, or returns 1
start_server() {
	local name=$1 dir=$2 i
	shift 2
	srv_log=$tmp/$name.log
	: >"$srv_log"
	ip netns exec "$ns_rx" timeout -k 5 150 "$zcnet" ingest \
		--listen "$ip_rx:$port" --dir "$dir" --engine "$engine" \
		--idle-timeout 30 "$@" 2>"$srv_log" &
	srv_pid=$!
	for ((i = 0; i < 200; i++)); do
		grep -q 'listening on' "$srv_log" && return 0
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	fail "$name: zcnet ingest did not start"
	show "$srv_log"
	return 1
}

# stop_server NAME DIR: SIGTERM; exit 0, no temporary file left
stop_server() {
	local name=$1 dir=$2 st left
	kill -TERM "$srv_pid" 2>/dev/null
	wait "$srv_pid"
	st=$?
	[ "$st" -eq 0 ] || { fail "$name: zcnet ingest exited $st"; show "$srv_log"; }
	left=$(find "$dir" -maxdepth 1 -name '.zcnet-ingest-*' -printf '%f ' 2>/dev/null)
	[ -z "$left" ] || fail "$name: temporary files left: $left"
}

# upload_all NAME: every file at once from the sending namespace; 0 if
# each got 201 and landed identical
upload_all() {
	local name=$1 dir=$2 f code ok=0 pids=()
	for f in "${names[@]}"; do
		ip netns exec "$ns_tx" timeout -k 5 120 curl -sS --max-time 110 \
			-o /dev/null -w '%{http_code}' -T "$tmp/src/$f" \
			"http://$ip_rx:$port/$f" >"$tmp/$name.$f.code" 2>"$tmp/$name.$f.err" &
		pids+=($!)
	done
	# one at a time: `wait` lets the INT/TERM trap run at once
	for f in "${pids[@]}"; do
		wait "$f"
	done
	for f in "${names[@]}"; do
		code=$(cat "$tmp/$name.$f.code" 2>/dev/null)
		if [ "$code" != 201 ]; then
			fail "$name: PUT $f: status '$code'"
			show "$tmp/$name.$f.err"
		elif [ "$(sha "$dir/$f" 2>/dev/null)" != "${src_sha[$f]}" ]; then
			fail "$name: $f stored differs from what was sent (sha256)"
		else
			ok=$((ok + 1))
		fi
	done
	[ "$ok" -eq "${#names[@]}" ]
}

# run_case NAME IMPAIRMENTS [INGEST OPTIONS...]: "loss3", "reorder" or both
run_case() {
	local name=$1 imp=$2 dir=$tmp/store-$1 pct= reorder=0 t0 ms lc pk dr
	local retr0 ofo0 retr ofo slow msg
	shift 2
	case " $imp " in *" loss3 "*) pct=3 ;; esac
	case " $imp " in *" reorder "*) reorder=1 ;; esac
	mkdir -p "$dir"
	[ -n "$pct" ] && loss_on "$pct"
	[ "$reorder" = 1 ] && reorder_on
	retr0=$(tcp_stat "$ns_tx" TcpRetransSegs)
	ofo0=$(tcp_stat "$ns_rx" TcpExtTCPOFOQueue)
	if start_server "$name" "$dir" "$@"; then
		t0=$(now_ms)
		if upload_all "$name" "$dir"; then
			ms=$(($(now_ms) - t0))
			retr=$(($(tcp_stat "$ns_tx" TcpRetransSegs) - retr0))
			ofo=$(($(tcp_stat "$ns_rx" TcpExtTCPOFOQueue) - ofo0))
			msg="$name: ${#names[@]} of ${#names[@]} uploads identical (sha256),"
			msg+=" $((total / 1048576)) MiB in $ms ms ($((total / 1000 / (ms + 1))) MB/s),"
			msg+=" retransmitted $retr segments, out-of-order queued $ofo"
			if [ -n "$pct" ]; then
				lc=$(loss_counts)
				read -r pk dr <<<"$lc"
				msg+=", nft dropped ${dr:-?} of ${pk:-?} packets"
				[ "${dr:-0}" -gt 0 ] 2>/dev/null ||
					fail "$name: the nft drop counter did not move (${lc:-none})"
			fi
			if [ "$reorder" = 1 ]; then
				slow=$(class_packets 1:2)
				msg+=", slow class ${slow:-?} packets"
				[ "${slow:-0}" -gt 0 ] 2>/dev/null ||
					fail "$name: the slow class carried no packets"
				[ "$ofo" -gt 0 ] ||
					fail "$name: the server queued no out-of-order segment"
			fi
			say "$msg"
		fi
		stop_server "$name" "$dir"
	fi
	loss_off
	reorder_off
	rm -rf "$dir"
}

run_case loss3 "loss3"
run_case reorder "reorder"
run_case loss3+reorder "loss3 reorder"
run_case loss3+reorder-direct "loss3 reorder" --direct

say "total $((SECONDS - start_s)) s"
if [ "$failures" -ne 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all impaired-link uploads stored intact"
