#!/usr/bin/env bash
# netns_impair.sh - zcnet over an impaired link: every byte still arrives,
# in order, verified.
#
# Two network namespaces of this run, joined by a veth pair, addresses only
# inside them (10.200.0.1 sends, 10.200.0.2 receives; nothing is routed
# out). For each impairment and each engine (uring, socket), `zcnet recv
# --verify pattern` in one namespace gets `zcnet send --pattern` from the
# other and must see the whole stream, byte for byte:
#  - loss:    nftables on the receiver's ingress drops a random 2% of packets
#             (`numgen random mod 100 < 2 drop`); the drop counter must move;
#  - reorder: an HTB qdisc on the sending end of the pair with a fast and a
#             slow class, and a BPF classifier (bpf/reorder.bpf.c, built here
#             with clang -target bpf) sending a random 10% of packets to the
#             slow one; the slow class must have carried packets and the
#             receiver's TCP must have queued out-of-order segments;
#  - both at once;
#  - 1% loss into a tiny pool (1 MiB of 16 KiB pieces, each held 1 ms): loss
#    and backpressure together; the receiver must have stalled.
# (netem does not exist on every kernel; these need only nf_tables, HTB and
# cls_bpf.) Qdiscs act on egress, so reordering sits on the sender's end of
# the pair: the receiver sees the same thing as if its own link reordered.
#
# The sender's veth makes GSO packets of at most 16 KiB (11 segments; at
# 64 KiB one drop loses 44 segments at once), and both namespaces route
# with rto_min 10ms, so that a run measures recovery rather than the
# default 200 ms minimum retransmission timer.
#
# The namespaces and the impairments are netns_lib.sh's, shared with
# netns_ingest.sh.
#
# Needs root and `ip netns`: otherwise exits 77 (skipped). The namespaces
# are always removed, on failure and on INT/TERM too; namespaces left by an
# earlier run that died (its pid is gone) are removed at start.
#
# usage: netns_impair.sh PATH/TO/zcnet PATH/TO/reorder.bpf.c
# env:   ZC_IMPAIR_BYTES (default 1G) stream size of each loss / reorder /
#        both run; ZC_IMPAIR_POOL_BYTES (default 256M) of the tiny-pool run.
set -uo pipefail

zcnet=${1:?usage: netns_impair.sh PATH/TO/zcnet PATH/TO/reorder.bpf.c}
bpf_src=${2:?usage: netns_impair.sh PATH/TO/zcnet PATH/TO/reorder.bpf.c}
bytes=${ZC_IMPAIR_BYTES:-1G}
pool_bytes=${ZC_IMPAIR_POOL_BYTES:-256M}
port=9000

# shellcheck source=netns_lib.sh
. "$(dirname "$0")/netns_lib.sh"
netns_require nft tc clang
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-impair.XXXXXX")
start_s=$SECONDS
netns_link "$bpf_src"

# ---------------------------------------------------------------------
# One run

# field FILE KEY: KEY=... of the summary line in FILE
field() {
	sed -n "s/^summary.* $2=\([^ ]*\).*/\1/p" "$1" | head -n1
}

to_bytes() {
	local v=$1
	case $v in
	*G) echo $((${v%G} * 1024 * 1024 * 1024)) ;;
	*M) echo $((${v%M} * 1024 * 1024)) ;;
	*K) echo $((${v%K} * 1024)) ;;
	*) echo "$v" ;;
	esac
}

# transfer NAME ENGINE SIZE [RECV OPTIONS...]: one verified stream from
# the sending namespace to the receiving one. Returns 0 when it arrived
# whole and verified.
transfer() {
	local name=$1 engine=$2 size=$3 i line recv_pid rs ss got sent
	shift 3
	: >"$tmp/$name.err"
	ip netns exec "$ns_rx" timeout -k 5 180 "$zcnet" recv \
		--listen "$ip_rx:$port" --engine "$engine" --verify pattern "$@" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" &
	recv_pid=$!
	line=
	for ((i = 0; i < 200; i++)); do
		line=$(grep -m1 'listening on' "$tmp/$name.err")
		[ -n "$line" ] && break
		kill -0 "$recv_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$line" ]; then
		fail "$name: zcnet recv did not start"
		show "$tmp/$name.err"
		kill "$recv_pid" 2>/dev/null
		wait "$recv_pid" 2>/dev/null
		return 1
	fi
	# in the background: `wait` lets the INT/TERM trap run at once
	ip netns exec "$ns_tx" timeout -k 5 180 "$zcnet" send \
		--connect "$ip_rx:$port" --bytes "$size" --pattern \
		>"$tmp/$name.send.out" 2>"$tmp/$name.send.err" &
	wait $!
	ss=$?
	wait "$recv_pid"
	rs=$?
	if [ "$ss" -ne 0 ] || [ "$rs" -ne 0 ]; then
		fail "$name: send exited $ss, recv exited $rs"
		show "$tmp/$name.send.err"
		show "$tmp/$name.err"
		return 1
	fi
	got=$(field "$tmp/$name.out" bytes)
	sent=$(field "$tmp/$name.send.out" bytes)
	if [ "$got" != "$(to_bytes "$size")" ] || [ "$sent" != "$got" ]; then
		fail "$name: received $got bytes, sent $sent, expected $(to_bytes "$size")"
		return 1
	fi
	if [ "$(field "$tmp/$name.out" copied)" != 0 ]; then
		fail "$name: copied=$(field "$tmp/$name.out" copied), expected 0"
	fi
	return 0
}

# run_case NAME ENGINE SIZE IMPAIRMENTS [RECV OPTIONS...]: set up the
# impairments ("loss2", "reorder", "loss2 reorder", "loss1"), run one
# transfer, prove the impairments acted, take them down.
run_case() {
	local name=$1 engine=$2 size=$3 imp=$4 pct= reorder=0 lc pk dr slow fast
	local retr0 retr1 ofo0 ofo1 msg
	shift 4
	case " $imp " in *" loss1 "*) pct=1 ;; *" loss2 "*) pct=2 ;; esac
	case " $imp " in *" reorder "*) reorder=1 ;; esac
	[ -n "$pct" ] && loss_on "$pct"
	[ "$reorder" = 1 ] && reorder_on
	retr0=$(tcp_stat "$ns_tx" TcpRetransSegs)
	ofo0=$(tcp_stat "$ns_rx" TcpExtTCPOFOQueue)

	if transfer "$name" "$engine" "$size" "$@"; then
		retr1=$(tcp_stat "$ns_tx" TcpRetransSegs)
		ofo1=$(tcp_stat "$ns_rx" TcpExtTCPOFOQueue)
		msg="$name: $(field "$tmp/$name.out" bytes) bytes verified,"
		msg+=" $(field "$tmp/$name.out" gbps) GB/s in $(field "$tmp/$name.out" seconds) s,"
		msg+=" stalls $(field "$tmp/$name.out" stalls),"
		msg+=" retransmitted $((retr1 - retr0)) segments, out-of-order queued $((ofo1 - ofo0))"
		if [ -n "$pct" ]; then
			lc=$(loss_counts)
			read -r pk dr <<<"$lc"
			msg+=", nft dropped ${dr:-?} of ${pk:-?} packets"
			[ "${dr:-0}" -gt 0 ] 2>/dev/null ||
				fail "$name: the nft drop counter did not move (${lc:-none})"
		fi
		if [ "$reorder" = 1 ]; then
			fast=$(class_packets 1:1)
			slow=$(class_packets 1:2)
			msg+=", HTB fast/slow ${fast:-?}/${slow:-?} packets"
			[ "${slow:-0}" -gt 0 ] 2>/dev/null ||
				fail "$name: the slow class carried no packets"
			[ "${fast:-0}" -gt 0 ] 2>/dev/null ||
				fail "$name: the fast class carried no packets"
			[ $((ofo1 - ofo0)) -gt 0 ] ||
				fail "$name: the receiver queued no out-of-order segment"
		fi
		say "$msg"
	fi
	loss_off
	reorder_off
}

# ---------------------------------------------------------------------

for engine in uring socket; do
	run_case "loss2-$engine" "$engine" "$bytes" "loss2"
	run_case "reorder-$engine" "$engine" "$bytes" "reorder"
	run_case "loss2+reorder-$engine" "$engine" "$bytes" "loss2 reorder"
done

# Loss and backpressure: a 64-piece pool, each piece held 1 ms.
for engine in uring socket; do
	name=loss1-tinypool-$engine
	run_case "$name" "$engine" "$pool_bytes" "loss1" \
		--pool-mb 1 --piece-kb 16 --hold-ms 1
	stalls=$(field "$tmp/$name.out" stalls)
	[ -z "$stalls" ] || [ "$stalls" -gt 0 ] ||
		fail "$name: the receiver never stalled: no backpressure was exercised"
done

say "total $((SECONDS - start_s)) s"
if [ "$failures" -ne 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all impaired-link checks passed"
