/* Test helpers shared by the cmocka suites and the vector generator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "testutil.h"

static uint8_t tu_seed[randombytes_SEEDBYTES];
static uint64_t tu_counter;

static void
tu_seed_from(const char *seed)
{
	crypto_generichash(tu_seed, sizeof tu_seed, (const uint8_t *)seed, strlen(seed), NULL, 0);
	tu_counter = 0;
}

static void
tu_buf(void *const buf, const size_t size)
{
	uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = { 0 };

	/* One fresh nonce per call keeps the stream reproducible and call-ordered. */
	memcpy(nonce, &tu_counter, sizeof tu_counter);
	tu_counter++;
	crypto_stream_chacha20_ietf(buf, size, nonce, tu_seed);
}

static uint32_t
tu_random(void)
{
	uint32_t v;

	tu_buf(&v, sizeof v);
	return v;
}

static const char *
tu_name(void)
{
	return "veil-test-deterministic";
}

static randombytes_implementation tu_impl = {
	.implementation_name = tu_name,
	.random = tu_random,
	.stir = NULL,
	.uniform = NULL,
	.buf = tu_buf,
	.close = NULL,
};

void
tu_deterministic_rng(const char *seed)
{
	tu_seed_from(seed);
	randombytes_set_implementation(&tu_impl);
}

void
tu_rng_reseed(const char *seed)
{
	tu_seed_from(seed);
}

void
tu_hex(char *out, const uint8_t *in, size_t n)
{
	sodium_bin2hex(out, 2 * n + 1, in, n);
}

int
tu_unhex(uint8_t *out, size_t outlen, const char *hex)
{
	size_t len;

	if (sodium_hex2bin(out, outlen, hex, strlen(hex), NULL, &len, NULL) != 0)
		return -1;
	return (int)len;
}

void
tu_prng_seed(struct tu_prng *p, uint64_t seed)
{
	p->s = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

uint64_t
tu_prng_next(struct tu_prng *p)
{
	p->s ^= p->s >> 12;
	p->s ^= p->s << 25;
	p->s ^= p->s >> 27;
	return p->s * 0x2545f4914f6cdd1dULL;
}

void
tu_prng_fill(struct tu_prng *p, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(tu_prng_next(p) >> 56);
}

void
tu_mutate(struct tu_prng *p, uint8_t *buf, size_t *len, size_t cap)
{
	unsigned n = 1 + (unsigned)(tu_prng_next(p) % 4);

	for (unsigned i = 0; i < n; i++) {
		uint64_t r = tu_prng_next(p);
		size_t at = *len ? (size_t)(r >> 8) % *len : 0;

		switch (r % 5) {
		case 0: /* flip one bit */
			if (*len)
				buf[at] ^= (uint8_t)(1u << ((r >> 4) % 8));
			break;
		case 1: /* overwrite a byte */
			if (*len)
				buf[at] = (uint8_t)(r >> 40);
			break;
		case 2: /* truncate */
			*len = at;
			break;
		case 3: /* insert a byte */
			if (*len < cap) {
				memmove(buf + at + 1, buf + at, *len - at);
				buf[at] = (uint8_t)(r >> 32);
				(*len)++;
			}
			break;
		default: /* interesting values */
			if (*len)
				buf[at] = (r & 0x100) ? 0xff : 0x00;
			break;
		}
	}
}

unsigned long
tu_iters(unsigned long def)
{
	static int noted;
	const char *e = getenv("VEIL_FUZZ_ITERS"), *dev = getenv("VEIL_DEV"),
	    *mc = getenv("VEIL_MAKE_CHECK");
	char *end;
	unsigned long n;

	if (e == NULL || *e == '\0')
		return def;
	n = strtoul(e, &end, 10);
	if (*end != '\0' || n == 0) {
		printf("Bail out! VEIL_FUZZ_ITERS=%s: not a positive number\n", e);
		fflush(stdout);
		exit(99);
	}
	if (mc != NULL && strcmp(mc, "1") == 0 && (dev == NULL || strcmp(dev, "1") != 0)) {
		printf("Bail out! VEIL_FUZZ_ITERS=%s changes the garbage loops under "
		    "make check; set VEIL_DEV=1 to allow it\n", e);
		fflush(stdout);
		exit(99);
	}
	if (!noted++)
		printf("# VEIL_FUZZ_ITERS=%lu: garbage loops run that many times "
		    "(this one's default %lu)\n", n, def);
	return n;
}

void
tu_skipped(void **state)
{
	(void)state;	/* listed as "name # SKIP why": never runs a check */
}

const char *
tu_skip_name(const char *name, const char *why)
{
	size_t len = strlen(name) + strlen(why) + sizeof " # SKIP ";
	char *s = malloc(len);	/* lives as long as the test table */

	if (s == NULL)
		abort();	/* never a plain "ok" for a test that did not run */
	snprintf(s, len, "%s # SKIP %s", name, why);
	return s;
}
