/*
 * uring_compat.h - io_uring interface values newer than the liburing
 * headers zcnet may be built with (Debian bookworm ships liburing 2.3 and
 * Linux 6.1 headers). These are stable kernel ABI values; whether the
 * running kernel supports them is probed at run time, never assumed.
 */
#ifndef ZCNET_URING_COMPAT_H
#define ZCNET_URING_COMPAT_H

#include <liburing.h>

#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)      /* sqe->ioprio, Linux 6.10 */
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14) /* params.features, 6.10 */
#endif
#ifndef IORING_ASYNC_CANCEL_ALL
#define IORING_ASYNC_CANCEL_ALL (1U << 0)
#endif
#ifndef IORING_ASYNC_CANCEL_FD
#define IORING_ASYNC_CANCEL_FD (1U << 1)
#endif
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)     /* params.features, 6.12 */
#endif

/* struct io_uring_getevents_arg as of Linux 6.12, with min_wait_usec
 * where older headers have a pad field. */
struct zc_getevents_arg {
	__u64 sigmask;
	__u32 sigmask_sz;
	__u32 min_wait_usec;
	__u64 ts;
};

#endif
