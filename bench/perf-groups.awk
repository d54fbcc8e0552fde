# perf-groups.awk - count a server's perf samples by what their call chain
# shows it doing: the copy into the page cache, the rest of the page-cache
# write (ext4), the copy out of a socket, splicing from it, io_uring, TCP
# receive work, system call entry. The README's receive-to-disk figures
# come from it.
#
# usage: perf script -i FILE -F comm,ip,sym | awk -v want='^(zcnet|iou-wrk)' -f perf-groups.awk
#   want  a regular expression for the sampled threads' names
BEGIN { RS = "" }
{
	n = split($0, l, "\n")
	split(l[1], h, " ")
	if (h[1] !~ want)
		next
	chain = ""
	for (i = 2; i <= n; i++) {
		split(l[i], f, " ")
		chain = chain " " f[2]
	}
	split(l[2], lf, " ")
	leaf = lf[2]
	if (chain ~ / generic_perform_write/)
		g = leaf ~ /memcpy|copy_folio|copy_from_iter|rep_movs/ ? \
			"page cache copy" : "page cache / ext4, other"
	else if (chain ~ / (net_rx_action|__netif_receive_skb|tcp_v4_rcv|__release_sock|tcp_v4_do_rcv)/)
		g = "TCP receive processing"
	else if (chain ~ / (skb_copy_datagram_iter|__skb_datagram_iter)/)
		g = "copy out of the socket"
	else if (chain ~ / (tcp_recvmsg|sock_recvmsg|sock_read_iter)/)
		g = "recv(), other"
	else if (chain ~ / (tcp_splice_read|__x64_sys_splice|do_splice)/)
		g = "splice socket -> pipe"
	else if (chain ~ /io_uring|io_wq|io_cqring|io_submit/)
		g = "io_uring"
	else if (chain ~ / (vfs_write|ksys_write|vfs_read|ksys_read)/)
		g = "read()/write(), other"
	else if (leaf ~ /irq_enable/ && chain ~ /do_syscall_64/)
		g = "system call entry"
	else
		g = "other"
	c[g]++
	total++
}
END {
	for (g in c)
		printf "%7d %5.1f%%  %s\n", c[g], 100 * c[g] / total, g | "sort -rn"
	close("sort -rn")
	printf "%7d samples\n", total
}
