/*
 * cli.h - declarations shared by the files of the zcnet command-line tool.
 */
#ifndef ZCNET_CLI_H
#define ZCNET_CLI_H

#include <stdint.h>
#include <stddef.h>

/* Exit statuses: 0 success, 1 a failed run, 2 a bad command line. */
#define EXIT_USAGE 2

/* The subcommands. argv[0] is the subcommand's own name. */
int cmd_recv(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_ingest(int argc, char **argv);

/* Usage texts, printed by `--help` and `zcnet help CMD`. */
extern const char recv_usage[];
extern const char send_usage[];
extern const char demo_usage[];
extern const char ingest_usage[];

/* ---- command-line parsing ---- */

/*
 * Match argv[*i] against the option @name taking a value, given either as
 * "--name VALUE" or "--name=VALUE". Returns 1 and sets *@val on a match
 * (advancing *@i past a separate value), 0 if argv[*i] is another option,
 * -1 if the value is missing (a message naming @cmd is printed).
 */
int opt_value(const char *cmd, int argc, char **argv, int *i,
	      const char *name, const char **val);

/* Report an unknown option or stray argument and return EXIT_USAGE. */
int opt_unknown(const char *cmd, const char *arg);

/*
 * Parse a byte count: decimal digits with an optional K, M or G suffix
 * (powers of 1024, either case). Rejects signs, garbage and overflow with
 * a message naming @cmd and @opt. Returns 0 or -1.
 */
int parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out);

/*
 * Parse an engine name: "auto", "uring", "socket", "mmap", and with @allow_plain
 * also "plain" (plain sockets, not the library). Returns the
 * enum zc_engine_kind value, ENGINE_PLAIN, or -1 after a message.
 */
#define ENGINE_PLAIN 100
int parse_engine(const char *cmd, const char *s, int allow_plain);

/* Parse a plain decimal number in [@min, @max]. Returns 0 or -1. */
int parse_uint(const char *cmd, const char *opt, const char *s,
	       uint64_t min, uint64_t max, uint64_t *out);

/*
 * Split "host:port" (host may be "[v6addr]") into its host text and port.
 * @host gets the host as written, brackets included. Returns 0 or -EINVAL.
 */
int split_hostport(const char *addr, char *host, size_t hostlen, long *port);

/* ---- clocks and resources ---- */

uint64_t now_ns(void);    /* CLOCK_MONOTONIC */
uint64_t cpu_ns(void);    /* user + system time of the whole process */
long peak_rss_kb(void);   /* largest resident set size so far */

/* ---- progress ---- */

/* Once-a-second progress: remembers where the last report left off. */
struct progress {
	uint64_t t_last;
	uint64_t bytes_last;
};

void progress_init(struct progress *p);
/*
 * If a second or more passed since the last report, set *@gbps to the rate
 * of @bytes (a running total) since then and return 1; else return 0.
 */
int progress_due(struct progress *p, uint64_t bytes, double *gbps);

/* "1.50 GiB": a byte count for people. Returns @buf. */
const char *fmt_bytes(char *buf, size_t len, uint64_t bytes);

/* write() all of @len bytes, retrying short writes. 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);

#endif
