/* util.c: small helpers every engine module uses (clock, strings, timers, random gaps). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

#include "core.h"

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A clock for durations: microseconds, never set back. */
int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t
now_s(void)
{
	int64_t ms = now_ms();

	return ms > 0 ? (uint64_t)(ms / 1000) : 0;
}

/* Truncating copy that always terminates (glibc 2.36 has no strlcpy). */
void
copystr(char *dst, const char *src, size_t len)
{
	size_t n = strnlen(src, len - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

void
seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

void
msgid_hex(const uint8_t id[VEIL_MSGID_BYTES], char out[ENGINE_ID_TEXT])
{
	sodium_bin2hex(out, ENGINE_ID_TEXT, id, VEIL_MSGID_BYTES);
}

int
timer_add_ms(struct event *ev, int64_t ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return evtimer_add(ev, &tv);
}

/* u in (0, 1]: never 0, so the log is finite. */
double
random_exp(double mean)
{
	double u = ((double)randombytes_uniform(UINT32_MAX) + 1.0) / 4294967296.0;

	return -log(u) * mean;
}

int64_t
random_below(int64_t n)
{
	uint64_t r;

	if (n <= 1)
		return 0;
	if (n <= UINT32_MAX)
		return (int64_t)randombytes_uniform((uint32_t)n);
	randombytes_buf(&r, sizeof r);
	return (int64_t)(r % (uint64_t)n);	/* n > 2^32: the bias is tiny */
}
