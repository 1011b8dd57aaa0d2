/* libveil ids: identifiers the broker sees: random IDs, derived inbox topics, client IDs. */
#ifndef VEIL_IDS_H
#define VEIL_IDS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VEIL_ID_MIN_BITS 80
#define VEIL_ID_DEFAULT_BITS 128
#define VEIL_ID_MAX_BITS 256
#define VEIL_ID_MAX_BYTES (VEIL_ID_MAX_BITS / 8)
/* base64url without padding of 32 bytes is 43 characters. */
#define VEIL_ID_TEXT_MAX 44

/* An inbox / contact ID: len random bytes (10..32).  Not secret. */
struct veil_id {
	uint8_t len;
	uint8_t b[VEIL_ID_MAX_BYTES];
};

/* bits: 0 for the default (128), else a multiple of 8 in [80, 256]. */
int veil_id_new(struct veil_id *id, unsigned bits);
/* Text form (topic / pubsub node name): base64url, no padding; only
 * [A-Za-z0-9_-], so no MQTT wildcard or level separator can appear. */
int veil_id_to_text(const struct veil_id *id, char *out, size_t outlen);
int veil_id_from_text(struct veil_id *id, const char *text);
/* 1 if equal, 0 if not (lengths compared too). */
int veil_id_equal(const struct veil_id *a, const struct veil_id *b);
int veil_id_is_set(const struct veil_id *id);

/*
 * Derived inbox topics (protocol.md 5).  Each side gives the other an inbox
 * seed J (32 secret bytes) and an epoch length L (seconds: 0 for a fixed
 * inbox, else 1..VEIL_EPOCH_MAX).  The topic of epoch n is
 * topic(J, n) = first 16 bytes of H_J("veil-inbox-v2" || u64(n)), written as
 * b64u (22 characters): indistinguishable from a random 16-byte ID without J.
 */
#define VEIL_EPOCH_MAX 2592000u
#define VEIL_TOPIC_BYTES 16
#define VEIL_TOPIC_TEXT 23	/* 22 characters and NUL */
/* 1 if L is 0 or 1..VEIL_EPOCH_MAX. */
int veil_epoch_len_valid(uint32_t epoch_len);
/* n = floor(t / L), 0 when L is 0 (a fixed inbox). */
uint64_t veil_epoch_number(uint64_t t, uint32_t epoch_len);
/* A seed is well formed unless it is all zero (an unset field). */
int veil_seed_valid(const uint8_t seed[VEIL_SEED_BYTES]);
/* A fresh random seed. */
void veil_seed_new(uint8_t seed[VEIL_SEED_BYTES]);
/*
 * What one side of a pair gives the other (agreement, UPDATE): where to
 * send to it (seed J, epoch length L) and the key period Pd of the chain
 * towards it (chain.h).  Valid: a valid seed, L valid, Pd in
 * 1..VEIL_EPOCH_MAX (the same bound as chain.h's VEIL_PERIOD_MAX).
 */
struct veil_inbox {
	uint8_t seed[VEIL_SEED_BYTES];
	uint32_t epoch;		/* L, seconds; 0: a fixed inbox */
	uint32_t period;	/* Pd, seconds */
};
int veil_inbox_valid(const struct veil_inbox *in);

/* topic(J, n) as a 16-byte ID (its text form is the topic, see
 * veil_id_to_text), or as text into out (at least VEIL_TOPIC_TEXT bytes).
 * INVAL for an invalid seed; TOOBIG for a short buffer. */
int veil_topic_id(const uint8_t seed[VEIL_SEED_BYTES], uint64_t n, struct veil_id *out);
int veil_topic_text(const uint8_t seed[VEIL_SEED_BYTES], uint64_t n, char *out, size_t outlen);

/* MQTT 3.1.1 safe client identifier: 1..23 characters of [0-9a-zA-Z]. */
#define VEIL_CLIENTID_MAX 23
/* bits: 0 for the default (128), else in [80, 136]; each character carries
 * log2(62) bits, drawn with randombytes_uniform(). */
int veil_clientid_new(char out[VEIL_CLIENTID_MAX + 1], unsigned bits);

#ifdef __cplusplus
}
#endif
#endif
