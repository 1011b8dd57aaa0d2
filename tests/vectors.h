/* Known-answer vector scenario shared by tests/mkvectors and tests/test_vectors. */
#ifndef VEIL_VECTORS_H
#define VEIL_VECTORS_H

#include <stddef.h>

/* The seed given to tu_deterministic_rng() before veil_init(). */
#define VECTORS_SEED "veil-vectors-v2"
/* The frame size of every frame in the scenario (the protocol minimum). */
#define VECTORS_FRAME 512
/* Comfortably above the few kilobytes the scenario writes. */
#define VECTORS_BUF_MAX 65536

/*
 * Runs the fixed scenario (see tests/vectors/README.md) and writes one
 * "name = value" line per value, hex for bytes, plain text for URIs, JSON
 * and fingerprints, then a NUL.  The deterministic RNG must be installed
 * (tu_deterministic_rng()) before veil_init(); the stream is restarted from
 * seed here, so what drew from it before (sodium_init() does) is irrelevant.
 * The file uses VECTORS_SEED.  Returns the length written, or -1 with *why
 * naming the step that failed.
 */
int vectors_generate(const char *seed, char *out, size_t outlen, const char **why);

#endif
