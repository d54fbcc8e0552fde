/*
 * test_engine_choice.c - which engine ZC_ENGINE_AUTO picks.
 *  - Here, where io_uring works: "uring".
 *  - In a child process whose seccomp filter makes io_uring_setup() fail
 *    with EPERM: ZC_ENGINE_AUTO falls back to "socket" and receives a
 *    verified stream; ZC_ENGINE_URING returns an error instead.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#endif

static bool io_uring_works(void)
{
	struct io_uring_params p;
	long fd;

	memset(&p, 0, sizeof(p));
	fd = syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0)
		return false;
	close((int)fd);
	return true;
}

static void test_auto_picks_uring_where_it_works(void **state)
{
	struct zc_config cfg;
	zc_ctx *ctx;

	if (!io_uring_works())
		skip();
	zc_config_init(&cfg);
	assert_int_equal(cfg.engine, ZC_ENGINE_AUTO);
	assert_int_equal(zc_ctx_create(&cfg, &ctx), 0);
	assert_string_equal(zc_engine_name(ctx), "uring");
	zc_ctx_destroy(ctx);
}

#ifdef NATIVE_ARCH
/* io_uring_setup() fails with EPERM; other calls go through. Calls of
 * another architecture's numbering fail too: their numbers mean other
 * things there. */
static int block_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
#ifdef __x86_64__
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x40000000u | __NR_io_uring_setup, 1, 0),
#else
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 1, 0),
#endif
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return -errno;
	return 0;
}

/* The child's part. Returns the exit status: 0 when all went well. */
static int child_main(void)
{
	struct h_sender s = { .bytes = 64 * MiB, .seed = 9999 };
	struct zc_config cfg;
	struct h_recv r;
	zc_ctx *ctx = NULL;
	zc_handle l;
	int err, port, rc = 0;

	err = block_io_uring();
	if (err) {
		fprintf(stderr, "child: seccomp filter: %s\n", strerror(-err));
		return 3;
	}
	if (io_uring_works()) {
		fprintf(stderr, "child: io_uring_setup() still works\n");
		return 4;
	}

	zc_config_init(&cfg);
	cfg.engine = ZC_ENGINE_URING;
	err = zc_ctx_create(&cfg, &ctx);
	printf("# ZC_ENGINE_URING without io_uring: %d (%s)\n", err, zc_strerror(err));
	if (err != -ENOSYS && err != -EPERM) {
		fprintf(stderr, "child: ZC_ENGINE_URING gave %d, not -ENOSYS or -EPERM\n",
			err);
		if (!err)
			zc_ctx_destroy(ctx);
		return 5;
	}

	cfg.engine = ZC_ENGINE_AUTO;
	err = zc_ctx_create(&cfg, &ctx);
	if (err) {
		fprintf(stderr, "child: ZC_ENGINE_AUTO: %s\n", zc_strerror(err));
		return 6;
	}
	if (strcmp(zc_engine_name(ctx), "socket")) {
		fprintf(stderr, "child: ZC_ENGINE_AUTO picked \"%s\"\n",
			zc_engine_name(ctx));
		zc_ctx_destroy(ctx);
		return 7;
	}
	err = zc_listen(ctx, "127.0.0.1:0", 0, &l);
	port = err ? err : zc_local_port(ctx, l);
	if (port <= 0) {
		fprintf(stderr, "child: listen: %s\n", zc_strerror(port));
		zc_ctx_destroy(ctx);
		return 8;
	}
	h_recv_init(&r, ctx);
	r.listener = l;
	s.port = (uint16_t)port;
	if (h_sender_start(&s) == 0) {
		h_recv_until_ended(&r, 1, 60);
		h_check_ctx_stats(&r);
	} else {
		h_failf(&r, "no sender thread");
	}
	zc_ctx_destroy(ctx);
	h_sender_join(&s);
	if (s.err) {
		fprintf(stderr, "child: sender: %s\n", s.msg);
		rc = 9;
	} else if (r.nfail) {
		fprintf(stderr, "child: %s\n", r.fail);
		rc = 10;
	} else if (r.nconns != 1 || r.conns[0]->bytes != s.bytes ||
		   r.conns[0]->end != H_EOF) {
		fprintf(stderr, "child: the stream did not arrive whole\n");
		rc = 11;
	}
	h_recv_fini(&r, true);
	return rc;
}

static void test_auto_falls_back_to_socket_without_io_uring(void **state)
{
	uint64_t deadline = h_deadline_ms(90000);
	int status = 0;
	pid_t pid, w;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		exit(child_main());
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && !h_expired(deadline))
		usleep(10000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("the child did not end within 90 s");
	}
	assert_int_equal(w, pid);
	if (WIFSIGNALED(status))
		fail_msg("the child died of signal %d", WTERMSIG(status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}
#else
static void test_auto_falls_back_to_socket_without_io_uring(void **state)
{
	skip(); /* no seccomp architecture value for this machine here */
}
#endif

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto_picks_uring_where_it_works),
		cmocka_unit_test(test_auto_falls_back_to_socket_without_io_uring),
	};

	h_setup(argc, argv, false, 110);
	return cmocka_run_group_tests_name("engine choice", tests, NULL, NULL);
}
