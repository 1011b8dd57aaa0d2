/* bkkey: the text forms of a backup key pair — the public key for veild.conf and the recovery code, the secret key as a user writes it down. */
#ifndef VEILD_BKKEY_H
#define VEILD_BKKEY_H

#include <stdint.h>

#define BKKEY_BYTES	32	/* X25519 (crypto_box) keys */
#define BKKEY_PK_TEXT	64	/* "veilbk:" and 43 characters, NUL */
#define BKKEY_CODE_TEXT	80	/* "VRK1" and 14 groups of 4, NUL */

/*
 * The public key: "veilbk:" and base64url (no padding) of its 32 bytes.
 * The recovery code: "VRK1" and the 32-byte secret key with a 3-byte
 * checksum (BLAKE2b-256 of "veil-recovery-v1" and the key, first three
 * bytes), in RFC 4648 base32 (A-Z, 2-7: no 0/O or 1/I to confuse), four
 * characters a group, groups joined by '-'.  Reading a code ignores case,
 * spaces and dashes.  decode: 0, -1 not that form, -2 a typo (the
 * checksum does not match).
 */
void	bkkey_pk_encode(const uint8_t pk[BKKEY_BYTES], char out[BKKEY_PK_TEXT]);
int	bkkey_pk_decode(const char *s, uint8_t pk[BKKEY_BYTES]);
void	bkkey_code_encode(const uint8_t sk[BKKEY_BYTES],
	    char out[BKKEY_CODE_TEXT]);
int	bkkey_code_decode(const char *s, uint8_t sk[BKKEY_BYTES]);

#endif
