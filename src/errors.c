/*
 * errors.c - zc_strerror(): zcnet's errors are negative errno values.
 */
#include <limits.h>
#include <string.h>

#include "internal.h"

ZC_EXPORT const char *zc_strerror(int err)
{
	const char *s;

	if (err == 0)
		return "Success";
	if (err == INT_MIN) /* has no positive counterpart */
		return "Unknown error";
	/* Unlike strerror(), a static text for every value: thread-safe. */
	s = strerrordesc_np(err < 0 ? -err : err);
	return s ? s : "Unknown error";
}
