/* bkkey.c: the text forms of a backup key pair (veilctl prints them, veild.conf and veilctl restore read them). */
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "bkkey.h"

#define PK_PREFIX	"veilbk:"
#define CODE_PREFIX	"VRK1"
#define CHECK_BYTES	3
#define CODE_BYTES	(BKKEY_BYTES + CHECK_BYTES)	/* 35 = 56 base32 digits */

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

_Static_assert(CODE_BYTES * 8 % 5 == 0, "whole base32 digits");
_Static_assert(sizeof(CODE_PREFIX) - 1 + CODE_BYTES * 8 / 5 / 4 * 5 <
    BKKEY_CODE_TEXT, "code text");

void
bkkey_pk_encode(const uint8_t pk[BKKEY_BYTES], char out[BKKEY_PK_TEXT])
{
	memcpy(out, PK_PREFIX, sizeof(PK_PREFIX) - 1);
	sodium_bin2base64(out + sizeof(PK_PREFIX) - 1,
	    BKKEY_PK_TEXT - (sizeof(PK_PREFIX) - 1), pk, BKKEY_BYTES,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int
bkkey_pk_decode(const char *s, uint8_t pk[BKKEY_BYTES])
{
	const char *end;
	size_t len = 0;

	if (s == NULL || strncmp(s, PK_PREFIX, sizeof(PK_PREFIX) - 1) != 0)
		return -1;
	s += sizeof(PK_PREFIX) - 1;
	if (sodium_base642bin(pk, BKKEY_BYTES, s, strlen(s), NULL, &len, &end,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || *end != '\0' ||
	    len != BKKEY_BYTES || sodium_is_zero(pk, BKKEY_BYTES))
		return -1;
	return 0;
}

static void
checksum(const uint8_t sk[BKKEY_BYTES], uint8_t out[CHECK_BYTES])
{
	crypto_generichash_state st;
	uint8_t h[crypto_generichash_BYTES];

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const uint8_t *)"veil-recovery-v1", 16);
	crypto_generichash_update(&st, sk, BKKEY_BYTES);
	crypto_generichash_final(&st, h, sizeof(h));
	memcpy(out, h, CHECK_BYTES);
}

void
bkkey_code_encode(const uint8_t sk[BKKEY_BYTES], char out[BKKEY_CODE_TEXT])
{
	uint8_t b[CODE_BYTES];
	unsigned acc = 0, bits = 0, digits = 0;
	size_t o;

	memcpy(b, sk, BKKEY_BYTES);
	checksum(sk, b + BKKEY_BYTES);
	memcpy(out, CODE_PREFIX, sizeof(CODE_PREFIX) - 1);
	o = sizeof(CODE_PREFIX) - 1;
	for (size_t i = 0; i < CODE_BYTES; i++) {
		acc = (acc << 8 | b[i]) & 0xfff;
		bits += 8;
		while (bits >= 5) {
			if (digits++ % 4 == 0)
				out[o++] = '-';
			out[o++] = b32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	out[o] = '\0';
	sodium_memzero(b, sizeof(b));
}

int
bkkey_code_decode(const char *s, uint8_t sk[BKKEY_BYTES])
{
	uint8_t b[CODE_BYTES], check[CHECK_BYTES];
	unsigned acc = 0, bits = 0;
	size_t n = 0;
	const char *p, *d;
	int c, rc = -1;

	if (s == NULL)
		return -1;
	s += strspn(s, " \t");
	if (strncasecmp(s, CODE_PREFIX, sizeof(CODE_PREFIX) - 1) != 0)
		return -1;
	for (p = s + sizeof(CODE_PREFIX) - 1; *p != '\0'; p++) {
		if (*p == '-' || *p == ' ' || *p == '\t' || *p == '\n' ||
		    *p == '\r')
			continue;
		c = *p >= 'a' && *p <= 'z' ? *p - 32 : *p;
		if ((d = strchr(b32, c)) == NULL)
			goto out;
		acc = (acc << 5 | (unsigned)(d - b32)) & 0xfff;
		bits += 5;
		if (bits >= 8) {
			if (n == CODE_BYTES)
				goto out;
			b[n++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	if (n != CODE_BYTES || bits != 0)
		goto out;
	checksum(b, check);
	if (sodium_memcmp(check, b + BKKEY_BYTES, CHECK_BYTES) != 0) {
		rc = -2;
		goto out;
	}
	memcpy(sk, b, BKKEY_BYTES);
	rc = 0;
out:
	sodium_memzero(b, sizeof(b));
	return rc;
}
