# netns_lib.sh - two network namespaces of the calling test, joined by a
# veth pair, and the impairments of the link; sourced by netns_impair.sh
# and netns_ingest.sh.
#
# 10.200.0.1 is the sending end ($ns_tx), 10.200.0.2 the receiving one
# ($ns_rx); the addresses exist only inside them, nothing is routed out.
# The sender's veth makes GSO packets of at most 16 KiB and both ends route
# with rto_min 10ms, so that a run measures recovery rather than the
# default 200 ms minimum retransmission timer.
#
# The caller sources it, then: netns_require TOOLS... (exits 77 without
# root or `ip netns`), sets $tmp to a directory of its own, and calls
# netns_link PATH/TO/reorder.bpf.c. The namespaces and $tmp are removed on
# exit, on failure and on INT/TERM too; namespaces left by an earlier run
# that died (its pid is gone) are removed by netns_require.

prefix=zcimp-
ns_tx=$prefix$$-tx
ns_rx=$prefix$$-rx
ip_tx=10.200.0.1
ip_rx=10.200.0.2
failures=0
tmp=

skip() {
	echo "SKIP: $*"
	exit 77
}

say() { printf '# %s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}
show() { sed 's/^/    | /' "$1" 2>/dev/null | tail -n 20; }

# Kill what runs inside a namespace of ours, then delete it.
ns_remove() {
	local ns=$1 pid
	for pid in $(ip netns pids "$ns" 2>/dev/null); do
		kill -9 "$pid" 2>/dev/null
	done
	ip netns del "$ns" 2>/dev/null
}

cleanup() {
	ns_remove "$ns_tx"
	ns_remove "$ns_rx"
	wait 2>/dev/null
	[ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# netns_require TOOLS...: root, `ip netns` and TOOLS, else skip or fail;
# then remove the leftovers of earlier runs whose process is gone.
netns_require() {
	local tool ns pid
	[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, nftables, tc)"
	ip netns list >/dev/null 2>&1 || skip "'ip netns' is not available"
	for tool in "$@"; do
		command -v "$tool" >/dev/null ||
			{ echo "FAIL: $tool is missing (scripts/deps.sh installs it)"; exit 1; }
	done
	for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix"); do
		pid=${ns#"$prefix"}
		pid=${pid%%-*}
		if ! kill -0 "$pid" 2>/dev/null; then
			say "removing leftover namespace $ns"
			ns_remove "$ns"
		fi
	done
}

# must CMD...: CMD must work; a failure ends the test.
must() {
	"$@" 2>"$tmp/must.err" || {
		echo "FAIL: set-up: $*"
		show "$tmp/must.err"
		exit 1
	}
}

# netns_link PATH/TO/reorder.bpf.c: the namespaces, the link, the BPF
# classifier built. Any failure ends the test.
netns_link() {
	local ns
	must ip netns add "$ns_tx"
	must ip netns add "$ns_rx"
	must ip link add veth-tx netns "$ns_tx" type veth peer name veth-rx netns "$ns_rx"
	must ip -n "$ns_tx" addr add "$ip_tx/24" dev veth-tx
	must ip -n "$ns_rx" addr add "$ip_rx/24" dev veth-rx
	for ns in "$ns_tx" "$ns_rx"; do
		must ip -n "$ns" link set lo up
	done
	must ip -n "$ns_tx" link set veth-tx gso_max_size 16384 up
	must ip -n "$ns_rx" link set veth-rx up
	must ip -n "$ns_tx" route replace 10.200.0.0/24 dev veth-tx rto_min 10ms
	must ip -n "$ns_rx" route replace 10.200.0.0/24 dev veth-rx rto_min 10ms

	must clang -O2 -target bpf -I"/usr/include/$(gcc -print-multiarch 2>/dev/null)" \
		-c "$1" -o "$tmp/reorder.bpf.o"
}

# loss_on PCT: nftables drops PCT% of what enters the receiver's veth;
# the first counter counts every packet, the second the dropped ones.
loss_on() {
	must ip netns exec "$ns_rx" nft -f - <<-EOF
	table netdev zcnet_loss {
		chain ingress {
			type filter hook ingress device "veth-rx" priority 0; policy accept;
			counter
			numgen random mod 100 < $1 counter drop
		}
	}
	EOF
}
loss_off() {
	ip netns exec "$ns_rx" nft delete table netdev zcnet_loss 2>/dev/null
}
# loss_counts: "PACKETS DROPPED" seen by the loss table
loss_counts() {
	ip netns exec "$ns_rx" nft list table netdev zcnet_loss 2>/dev/null |
		sed -n 's/.*counter packets \([0-9]*\) .*/\1/p' | tr '\n' ' '
}

# reorder_on: HTB on the sender's veth, fast class 1:1, slow class 1:2
# (200 Mbit/s: a backlog forms, its packets leave after later fast ones),
# the BPF classifier picking the class.
reorder_on() {
	must tc -n "$ns_tx" qdisc add dev veth-tx root handle 1: htb default 1
	must tc -n "$ns_tx" class add dev veth-tx parent 1: classid 1:1 htb \
		rate 10gbit quantum 60000
	must tc -n "$ns_tx" class add dev veth-tx parent 1: classid 1:2 htb \
		rate 200mbit ceil 200mbit quantum 60000
	must tc -n "$ns_tx" filter add dev veth-tx parent 1: bpf da \
		obj "$tmp/reorder.bpf.o" sec tc classid 1:1
}
reorder_off() {
	tc -n "$ns_tx" qdisc del dev veth-tx root 2>/dev/null
}
# class_packets CLASSID: packets sent by that HTB class
class_packets() {
	tc -n "$ns_tx" -s class show dev veth-tx classid "$1" 2>/dev/null |
		sed -n 's/.*Sent [0-9]* bytes \([0-9]*\) pkt.*/\1/p' | head -n1
}

# tcp_stat NS NAME: a TCP counter of a namespace (nstat without history)
tcp_stat() {
	ip netns exec "$1" nstat -as "$2" 2>/dev/null | awk -v n="$2" '$1 == n {print $2}' |
		grep . || echo 0
}
