/* libveil ids: fresh random identifiers the broker sees (inboxes, client IDs). */
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

/* MQTT 3.1.1 safe client identifier: 1..23 characters of [0-9a-zA-Z]. */
#define VEIL_CLIENTID_MAX 23
/* bits: 0 for the default (128), else in [80, 136]; each character carries
 * log2(62) bits, drawn with randombytes_uniform(). */
int veil_clientid_new(char out[VEIL_CLIENTID_MAX + 1], unsigned bits);

#ifdef __cplusplus
}
#endif
#endif
