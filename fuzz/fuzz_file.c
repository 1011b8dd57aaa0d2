/* libFuzzer harness: FILE message bodies (veil_file_decode), their re-encoding, and the file name rule. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil.h"

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
	uint8_t out[VEIL_FILE_OFFER_MAX], hdr[VEIL_FILE_CHUNK_HDR];
	struct veil_file_msg m;
	uint8_t *copy;
	int n;

	if (size > VEIL_FILE_OFFER_MAX + 4096)
		return 0;
	/* An exact-size heap copy: ASan sees any read past the end. */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	if (veil_file_decode(copy, size, &m) == VEIL_OK) {
		/* What decodes encodes back to the same bytes. */
		switch (m.kind) {
		case VEIL_FILE_OFFER:
			n = veil_file_offer_encode(out, sizeof out, m.id, m.size,
			    m.chunk, m.hash, m.name);
			if (n < 0 || (size_t)n != size || memcmp(out, copy, size) != 0)
				abort();
			(void)veil_file_name_check(m.name);
			break;
		case VEIL_FILE_CHUNK:
			if (veil_file_chunk_header(hdr, m.id, m.index) != VEIL_FILE_CHUNK_HDR ||
			    memcmp(hdr, copy, sizeof hdr) != 0 ||
			    m.data != copy + sizeof hdr || m.len != size - sizeof hdr)
				abort();
			break;
		case VEIL_FILE_END:
			if (veil_file_end_encode(out, m.id, m.status) != VEIL_FILE_END_BYTES ||
			    size != VEIL_FILE_END_BYTES || memcmp(out, copy, size) != 0)
				abort();
			break;
		default:
			abort();
		}
	}
	free(copy);
	return 0;
}
