/* libveil: error codes, limits and library initialisation shared by every module. */
#ifndef VEIL_COMMON_H
#define VEIL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every function that can fail returns a negative enum veil_err value and
 * leaves its outputs in a defined (zeroed) state.  veil_strerror() gives a
 * sentence a user can read.
 */
enum veil_err {
	VEIL_OK = 0,
	VEIL_ERR_INVAL = -1,	 /* bad argument from the caller */
	VEIL_ERR_NOMEM = -2,	 /* allocation failed or a bound was hit */
	VEIL_ERR_TRUNCATED = -3, /* input shorter than its declared length */
	VEIL_ERR_CHECKSUM = -4,	 /* card checksum mismatch (corrupt/mistyped) */
	VEIL_ERR_VERSION = -5,	 /* unknown format version */
	VEIL_ERR_EXPIRED = -6,	 /* card or request past its expiry */
	VEIL_ERR_DECRYPT = -7,	 /* authentication failed: not for us, or forged */
	VEIL_ERR_REPLAY = -8,	 /* sequence number already seen or too old */
	VEIL_ERR_STALE = -9,	 /* UPDATE older than the last accepted one */
	VEIL_ERR_SECRET = -10,	 /* secret hash does not match the stored one */
	VEIL_ERR_STATE = -11,	 /* event not valid in the current state */
	VEIL_ERR_TOOBIG = -12,	 /* value exceeds a limit */
	VEIL_ERR_FORMAT = -13,	 /* malformed encoding */
	VEIL_ERR_PADDING = -14,	 /* non-zero padding in a frame */
	VEIL_ERR_TYPE = -15,	 /* unexpected frame type for this step */
	VEIL_ERR_CRYPTO = -16,	 /* a libsodium primitive failed (weak key, ...) */
	VEIL_ERR_DUPLICATE = -17, /* already present */
	VEIL_ERR_RATCHET = -18,	 /* a chain is more ratchet steps behind than one call takes */
	VEIL_ERR_FUTURE = -19	 /* a timestamp lies too far ahead of our clock */
};

const char *veil_strerror(int err);

/* Calls sodium_init(); returns 0 or VEIL_ERR_CRYPTO.  Safe to call twice. */
int veil_init(void);

/* The wire protocol this library speaks (docs/protocol.md).  Version 2
 * does not interoperate with version 1: cards, requests and stored state
 * of version 1 are refused with VEIL_ERR_VERSION. */
#define VEIL_PROTOCOL_VERSION 2

#define VEIL_KEY_BYTES 32	/* every symmetric and X25519 key */
#define VEIL_SEED_BYTES 32	/* an inbox seed J (protocol.md 5) */
#define VEIL_MSGID_BYTES 16
#define VEIL_NAME_MAX 64	/* display name, bytes of UTF-8 */

/* Validates a display name: 1..VEIL_NAME_MAX bytes of UTF-8, no control
 * characters, no bidi controls, zero-width or other invisible characters
 * (INVAL; TOOBIG when longer). */
int veil_name_valid(const char *name);
/* Strict UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF), as JSON text must be; control characters allowed.  1 or 0. */
int veil_utf8_valid(const uint8_t *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
