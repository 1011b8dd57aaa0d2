/* libveil internal: two direction roots from three DH terms keyed by a shared secret (the agreement's and the contact reset's key schedule). */
#ifndef VEIL_DH3_H
#define VEIL_DH3_H

#include <stdint.h>

#include "common.h"

/*
 * RK = BLAKE2b keyed by key ( ctx || DH(sk[0], pk[0]) || DH(sk[1], pk[1])
 * || DH(sk[2], pk[2]) || t ), then d1 = KDF(RK, 1, kdf), d2 = KDF(RK, 2,
 * kdf) (crypto_kdf, an 8-byte context).  A DH term that fails or is all
 * zero (a low-order point) is refused: it would drop its contribution.
 * VEIL_OK or VEIL_ERR_CRYPTO; every intermediate is wiped.
 */
int	veil_dh3_roots(uint8_t d1[VEIL_KEY_BYTES], uint8_t d2[VEIL_KEY_BYTES],
	    const uint8_t key[VEIL_KEY_BYTES], const char *ctx,
	    const uint8_t t[VEIL_KEY_BYTES], const char kdf[8],
	    const uint8_t *const sk[3], const uint8_t *const pk[3]);

#endif
