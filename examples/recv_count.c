/* recv_count.c - accept one TCP connection and count its bytes with zcnet.
 * Build: cc recv_count.c $(pkg-config --cflags --libs zcnet) */
#include <errno.h>
#include <stdio.h>
#include <zcnet.h>

int main(int argc, char **argv)
{
	const char *addr = argc > 1 ? argv[1] : "127.0.0.1:0";
	unsigned long long bytes = 0;
	struct zc_event ev[64];
	zc_ctx *ctx = NULL;
	zc_handle l;
	int n, err, done = 0;

	if ((err = zc_ctx_create(NULL, &ctx)) || (err = zc_listen(ctx, addr, 0, &l))) {
		fprintf(stderr, "recv_count: %s\n", zc_strerror(err));
		zc_ctx_destroy(ctx);
		return 1;
	}
	printf("listening on port %d, engine %s\n", zc_local_port(ctx, l), zc_engine_name(ctx));
	fflush(stdout);
	while (!done) {
		if ((n = zc_wait(ctx, ev, 64, -1)) == -EINTR)
			continue;
		if (n < 0) {
			err = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_DATA) {
				bytes += ev[i].bytes; /* the data: ev[i].pieces[k].data, .len */
				for (unsigned k = 0; k < ev[i].npieces; k++)
					zc_release(ctx, &ev[i].pieces[k]);
			} else if (ev[i].type == ZC_EV_EOF || ev[i].type == ZC_EV_ERROR) {
				err = ev[i].res;
				done = 1;
			}
		}
	}
	printf("received %llu bytes%s%s\n", bytes, err ? ": " : "", err ? zc_strerror(err) : "");
	zc_ctx_destroy(ctx);
	return err ? 1 : 0;
}
