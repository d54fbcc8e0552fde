/*
 * engine_config.h - the engine configurations the tests and the API fuzzer
 * run under, by name. Header-only so that the fuzzer, built by clang apart
 * from the test harness, uses the same table.
 */
#ifndef ZCNET_TEST_ENGINE_CONFIG_H
#define ZCNET_TEST_ENGINE_CONFIG_H
#include <string.h>
#include "zcnet.h"

/*
 * Set @cfg's engine, flags and batch_usec for configuration @name and keep
 * its other fields: "uring" (the defaults), "uring-nobundle",
 * "uring-oneshot", "uring-nobatch" (batch_usec 0), "socket", "mmap".
 * Returns 0, or -1 for an unknown name.
 */
static inline int zc_test_engine_config(const char *name, struct zc_config *cfg)
{
	struct zc_config def;

	zc_config_init(&def);
	cfg->flags = 0;
	cfg->batch_usec = def.batch_usec;
	if (!strcmp(name, "uring") || !strcmp(name, "uring-nobundle") ||
	    !strcmp(name, "uring-oneshot") || !strcmp(name, "uring-nobatch"))
		cfg->engine = ZC_ENGINE_URING;
	else if (!strcmp(name, "socket"))
		cfg->engine = ZC_ENGINE_SOCKET;
	else if (!strcmp(name, "mmap"))
		cfg->engine = ZC_ENGINE_MMAP;
	else
		return -1;
	if (!strcmp(name, "uring-nobundle"))
		cfg->flags = ZC_CFG_NO_BUNDLE;
	else if (!strcmp(name, "uring-oneshot"))
		cfg->flags = ZC_CFG_NO_MULTISHOT;
	else if (!strcmp(name, "uring-nobatch"))
		cfg->batch_usec = 0; /* every wait ends at its first completion */
	return 0;
}

#endif
