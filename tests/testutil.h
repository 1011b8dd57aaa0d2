/* Test helpers: deterministic randomness, hex, seeded PRNG for garbage inputs. */
#ifndef VEIL_TESTUTIL_H
#define VEIL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Replaces libsodium's randombytes with a ChaCha20 stream from seed, so
 * every "random" value (keys, IDs, nonces, sealed boxes) is reproducible.
 * Call before veil_init()/sodium_init(). */
void tu_deterministic_rng(const char *seed);
/* Re-seeds the deterministic stream (after tu_deterministic_rng). */
void tu_rng_reseed(const char *seed);

/* Lowercase hex of n bytes into out (2n+1). */
void tu_hex(char *out, const uint8_t *in, size_t n);
/* Parses hex; returns bytes written or -1. */
int tu_unhex(uint8_t *out, size_t outlen, const char *hex);

/* Small fast PRNG (xorshift64*) for mutating inputs, independent of libsodium. */
struct tu_prng { uint64_t s; };
void tu_prng_seed(struct tu_prng *p, uint64_t seed);
uint64_t tu_prng_next(struct tu_prng *p);
void tu_prng_fill(struct tu_prng *p, uint8_t *buf, size_t n);
/* Flips, overwrites, inserts or truncates a few bytes of buf (len in/out, cap max). */
void tu_mutate(struct tu_prng *p, uint8_t *buf, size_t *len, size_t cap);

/*
 * A cmocka test that cannot run here, e.g. one needing another uid.
 * cmocka 1.1's skip() prints "not ok N # SKIP", which automake's TAP
 * driver counts as a FAILURE; so such a test is listed instead as
 * TU_SKIPPED("name", why) (decided before cmocka_run_group_tests):
 * cmocka then prints "ok N - name # SKIP why", a skip to every TAP
 * reader.
 */
void tu_skipped(void **state);
const char *tu_skip_name(const char *name, const char *why);
#define TU_SKIPPED(name, why) \
	((struct CMUnitTest){ tu_skip_name(name, why), tu_skipped, NULL, NULL, NULL })

/*
 * Iteration count for garbage loops: $VEIL_FUZZ_ITERS or def.  A setting
 * is noted in the TAP output; under `make check` (VEIL_MAKE_CHECK=1) it is
 * refused unless VEIL_DEV=1: the suite's result is for its own counts.
 */
unsigned long tu_iters(unsigned long def);

#endif
