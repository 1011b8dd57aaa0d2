/* libFuzzer harness: card URIs (veil_card_decode) and their encode/decode round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "veil.h"

/*
 * Two kinds of input.  A text (first byte not NUL) is the URI itself.
 * An input starting with a NUL byte is a binary card body instead: the
 * harness appends its checksum (the first 4 bytes of an unkeyed 32-byte
 * BLAKE2b, docs/protocol.md) and wraps it in "veil:" + base64url, so the
 * fuzzer reaches the field parser behind the checksum.
 */
#define CARD_BODY_MAX 1024

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (veil_init() != 0)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_card c, c2;
	char out[VEIL_CARD_URI_MAX];
	uint8_t bin[CARD_BODY_MAX + crypto_generichash_BYTES];
	char *uri;
	size_t ulen;
	int n;

	if (size > 0 && data[0] == 0) {
		data++;
		size--;
		if (size > CARD_BODY_MAX)
			return 0;
		memcpy(bin, data, size);
		crypto_generichash(bin + size, crypto_generichash_BYTES, data,
		    size, NULL, 0);
		size += 4;
		ulen = 5 + sodium_base64_ENCODED_LEN(size,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		if ((uri = malloc(ulen)) == NULL)
			return 0;
		memcpy(uri, "veil:", 5);
		sodium_bin2base64(uri + 5, ulen - 5, bin, size,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	} else {
		/* An exact-size heap copy: ASan sees any read past the NUL. */
		if ((uri = malloc(size + 1)) == NULL)
			return 0;
		memcpy(uri, data, size);
		uri[size] = '\0';
	}

	/* now = 0 skips the expiry check; a fixed now covers it too. */
	if (veil_card_decode(&c, uri, 0) == 0) {
		/* A card that decodes must encode, and come back unchanged. */
		n = veil_card_encode(&c, out, sizeof(out));
		if (n <= 0 || (size_t)n >= sizeof(out) || out[n] != '\0')
			abort();
		if (veil_card_decode(&c2, out, 0) != 0)
			abort();
		if (memcmp(&c, &c2, sizeof(c)) != 0)
			abort();
	}
	(void)veil_card_decode(&c, uri, 1767225600ULL);
	free(uri);
	return 0;
}
