/*
 * reorder.bpf.c - a tc classifier that reorders packets: it sends a random
 * SLOW_PCT percent of them to the slow class of an HTB qdisc and the rest
 * to the fast class. Packets queued behind the slow class's rate limit
 * leave after later packets of the fast class: the receiver sees them out
 * of order (late, not lost).
 *
 * Attach in direct-action mode to an HTB root qdisc 1: with classes 1:1
 * (fast) and 1:2 (slow):
 *   tc filter add dev IF parent 1: bpf da obj reorder.bpf.o sec tc classid 1:1
 * In direct-action mode the class comes from skb->tc_classid; a BPF program
 * may write only its minor number (16 bits), the major (1:) comes from the
 * filter's classid.
 *
 * Build: clang -O2 -target bpf -c reorder.bpf.c -o reorder.bpf.o
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#ifndef SLOW_PCT
#define SLOW_PCT 10 /* percent of packets delayed; -DSLOW_PCT=N to change */
#endif

SEC("tc")
int reorder(struct __sk_buff *skb)
{
	skb->tc_classid = bpf_get_prandom_u32() % 100 < SLOW_PCT ? 2 : 1;
	return TC_ACT_OK; /* classified: take the class above */
}

char LICENSE[] SEC("license") = "GPL";
