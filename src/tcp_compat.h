/*
 * tcp_compat.h - the kernel's TCP zero-copy interfaces under zcnet names.
 *
 * glibc's <netinet/tcp.h> declares only the first 16 bytes of struct
 * tcp_zerocopy_receive and cannot be included together with
 * <linux/tcp.h>. This is the kernel's full layout (Linux 5.11 and later,
 * 64 bytes); the kernel accepts any length from the first 8 bytes on and
 * fills in only the fields the length covers. Values are stable kernel ABI.
 */
#ifndef ZCNET_TCP_COMPAT_H
#define ZCNET_TCP_COMPAT_H

#include <stdint.h>
#include <sys/socket.h>

#ifndef TCP_MAXSEG
#define TCP_MAXSEG 2
#endif
#ifndef TCP_ZEROCOPY_RECEIVE
#define TCP_ZEROCOPY_RECEIVE 35
#endif
#ifndef TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT
#define TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT 0x1
#endif
#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

/* struct tcp_zerocopy_receive of <linux/tcp.h> */
struct zc_tcp_zerocopy_receive {
	uint64_t address;         /* in: start of the range to map into */
	uint32_t length;          /* in: bytes to map; out: bytes mapped */
	uint32_t recv_skip_hint;  /* out: bytes to read with recv() next */
	uint32_t inq;             /* out: bytes in the receive queue */
	int32_t err;              /* out: pending socket error */
	uint64_t copybuf_address; /* in: buffer for small reads */
	int32_t copybuf_len;      /* in/out */
	uint32_t flags;           /* in: TCP_RECEIVE_ZEROCOPY_FLAG_* */
	uint64_t msg_control;
	uint64_t msg_controllen;
	uint32_t msg_flags;
	uint32_t reserved;
};

_Static_assert(sizeof(struct zc_tcp_zerocopy_receive) == 64,
	       "struct tcp_zerocopy_receive is 64 bytes");

/* struct sock_extended_err of <linux/errqueue.h> */
struct zc_sock_extended_err {
	uint32_t ee_errno;
	uint8_t ee_origin;
	uint8_t ee_type;
	uint8_t ee_code;
	uint8_t ee_pad;
	uint32_t ee_info;
	uint32_t ee_data;
};

#endif
