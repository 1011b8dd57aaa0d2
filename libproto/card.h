/* libveil card: the public contact card CPub = (CID, KP, name, hints, expiry, one-time). */
#ifndef VEIL_CARD_H
#define VEIL_CARD_H

#include "ids.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VEIL_CARD_VERSION 2	/* a version 1 card is refused: VERSION */
#define VEIL_HINTS_MAX 512
#define VEIL_CARD_URI_MAX 1024 /* upper bound of an encoded card, NUL included */
#define VEIL_CARD_ONE_TIME 0x01

struct veil_card {
	struct veil_id cid;		/* public inbox for REQUESTs */
	uint8_t pk[VEIL_KEY_BYTES];	/* owner's X25519 identity key */
	char name[VEIL_NAME_MAX + 1];	/* display name, UTF-8 */
	char hints[VEIL_HINTS_MAX + 1]; /* optional broker hints, may be "" */
	uint64_t expires;		/* unix seconds; 0 = never */
	uint8_t flags;			/* VEIL_CARD_ONE_TIME */
};

/* Writes "veil:..." and its NUL; returns the length without NUL or < 0. */
int veil_card_encode(const struct veil_card *c, char *out, size_t outlen);
/* Parses and validates a URI (surrounding whitespace allowed).  now is unix
 * seconds, used for the expiry check; pass 0 to skip it.  Errors:
 * FORMAT, TRUNCATED, CHECKSUM, VERSION, EXPIRED, TOOBIG, INVAL (bad name). */
int veil_card_decode(struct veil_card *c, const char *uri, uint64_t now);

/* QR code of any text (a card or config URI).  *out is a NUL-terminated
 * string the caller releases with free(). */
int veil_qr_utf8(const char *text, char **out); /* terminal, half blocks */
int veil_qr_svg(const char *text, char **out);	/* standalone SVG document */

#ifdef __cplusplus
}
#endif
#endif
