/*
 * zcnet.c - the zcnet command-line tool: receive, send, a loopback demo and
 * an HTTP upload server.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "zcnet.h"
#include "cli.h"

static const char usage[] =
	"usage: zcnet COMMAND [OPTIONS]\n"
	"\n"
	"commands:\n"
	"  recv    listen and receive connections through zcnet\n"
	"  send    connect and send a test pattern, zeros or a file\n"
	"  demo    compare plain recv() with the zcnet engines over loopback\n"
	"  ingest  HTTP/1.1 upload server: PUT bodies go to files through zcnet\n"
	"  help [COMMAND]   this text, or a command's options\n"
	"\n"
	"  zcnet --version  print the version\n"
	"\n"
	"Sizes take K, M or G suffixes (powers of 1024).\n";

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
};

static const struct command commands[] = {
	{ "recv", cmd_recv, recv_usage },
	{ "send", cmd_send, send_usage },
	{ "demo", cmd_demo, demo_usage },
	{ "ingest", cmd_ingest, ingest_usage },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int help(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2) {
		fputs(usage, stdout);
		return 0;
	}
	c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "zcnet: unknown command '%s'; see 'zcnet --help'\n", argv[1]);
		return EXIT_USAGE;
	}
	fputs(c->usage, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	const struct command *c;

	/*
	 * A peer that goes away while we send must show up as an error
	 * from the send call, not kill the process.
	 */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help"))
		return help(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version")) {
		printf("zcnet %d.%d.%d\n", ZCNET_VERSION_MAJOR,
		       ZCNET_VERSION_MINOR, ZCNET_VERSION_PATCH);
		return 0;
	}
	c = find_command(argv[1]);
	if (!c) {
		if (argv[1][0] == '-')
			fprintf(stderr, "zcnet: unknown option '%s'; see 'zcnet --help'\n", argv[1]);
		else
			fprintf(stderr, "zcnet: unknown command '%s'; see 'zcnet --help'\n", argv[1]);
		return EXIT_USAGE;
	}
	return c->run(argc - 1, argv + 1);
}
