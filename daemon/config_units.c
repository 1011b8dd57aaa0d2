/* veild configuration: durations and sizes, parsed from and formatted as text. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "config_int.h"

struct unit {
	const char	*name;
	uint64_t	 scale;
};

/* Digits, then one of units (the last one may be ""): the number times
 * the unit's scale.  0, or -1 on junk, a sign, a bad unit or overflow. */
static int
parse_scaled(const char *s, const struct unit *units, size_t n, uint64_t *out)
{
	uint64_t	 v = 0;
	size_t		 i;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	for (i = 0; i < n; i++) {
		if (strcmp(s, units[i].name) != 0)
			continue;
		if (v > UINT64_MAX / units[i].scale)
			return -1;
		*out = v * units[i].scale;
		return 0;
	}
	return -1;
}

/* "250ms", "90s", "5m", "1h", "7d" or a plain number of seconds, to ms. */
int
config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct unit units[] = {
		{ "ms", 1 }, { "s", SEC }, { "m", MIN }, { "h", HOUR },
		{ "d", DAY }, { "", SEC }
	};

	return parse_scaled(s, units, sizeof(units) / sizeof(units[0]), ms);
}

/* "64KiB", "4MiB", "1GiB", "512B" or a plain number of bytes. */
int
config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
		{ "B", 1 }, { "KiB", KIB }, { "MiB", MIB }, { "GiB", GIB },
		{ "", 1 }
	};

	return parse_scaled(s, units, sizeof(units) / sizeof(units[0]), bytes);
}

void
config_format_size(char *buf, size_t len, uint64_t n)
{
	if (n != 0 && n % GIB == 0)
		snprintf(buf, len, "%lluGiB", (unsigned long long)(n / GIB));
	else if (n != 0 && n % MIB == 0)
		snprintf(buf, len, "%lluMiB", (unsigned long long)(n / MIB));
	else if (n != 0 && n % KIB == 0)
		snprintf(buf, len, "%lluKiB", (unsigned long long)(n / KIB));
	else
		snprintf(buf, len, "%lluB", (unsigned long long)n);
}

/* The largest unit that states the value exactly: what config_print and
 * error messages show. */
void
config_format_duration(char *buf, size_t len, uint64_t ms)
{
	if (ms != 0 && ms % DAY == 0)
		snprintf(buf, len, "%llud", (unsigned long long)(ms / DAY));
	else if (ms != 0 && ms % HOUR == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / HOUR));
	else if (ms != 0 && ms % MIN == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / MIN));
	else if (ms % SEC == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / SEC));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
}

