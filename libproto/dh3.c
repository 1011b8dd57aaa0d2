/* libveil internal: two direction roots from three DH terms keyed by a shared secret (the agreement's and the contact reset's key schedule). */
#include <string.h>

#include <sodium.h>

#include "dh3.h"

int
veil_dh3_roots(uint8_t d1[VEIL_KEY_BYTES], uint8_t d2[VEIL_KEY_BYTES],
    const uint8_t key[VEIL_KEY_BYTES], const char *ctx,
    const uint8_t t[VEIL_KEY_BYTES], const char kdf[8],
    const uint8_t *const sk[3], const uint8_t *const pk[3])
{
	crypto_generichash_state st;
	uint8_t rk[VEIL_KEY_BYTES], dh[crypto_scalarmult_BYTES];
	int ret = VEIL_OK;

	crypto_generichash_init(&st, key, VEIL_KEY_BYTES, sizeof(rk));
	crypto_generichash_update(&st, (const uint8_t *)ctx, strlen(ctx));
	for (int i = 0; i < 3 && ret == VEIL_OK; i++) {
		if (crypto_scalarmult(dh, sk[i], pk[i]) != 0 ||
		    sodium_is_zero(dh, sizeof(dh)))
			ret = VEIL_ERR_CRYPTO;
		else
			crypto_generichash_update(&st, dh, sizeof(dh));
	}
	if (ret == VEIL_OK) {
		crypto_generichash_update(&st, t, VEIL_KEY_BYTES);
		crypto_generichash_final(&st, rk, sizeof(rk));
		crypto_kdf_derive_from_key(d1, VEIL_KEY_BYTES, 1, kdf, rk);
		crypto_kdf_derive_from_key(d2, VEIL_KEY_BYTES, 2, kdf, rk);
	}
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(rk, sizeof(rk));
	sodium_memzero(dh, sizeof(dh));
	return ret;
}
