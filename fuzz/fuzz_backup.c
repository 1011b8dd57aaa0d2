/* libFuzzer harness: the backup file format (daemon/bkfile.c: header, file key, secretstream, record framing) and its records (daemon/backup_rec.c), past the encryption with a fixed recipient key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bkfile.h"
#include "backup_rec.h"
#include "fuzz_backup.h"

int LLVMFuzzerInitialize(int *argc, char **argv[]);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * First byte, modulo 3, picks the entry point:
 *   0  a whole backup file: the header, the file key when it is sealed to
 *      FUZZ_BACKUP_SK's public key (a passphrase header is parsed only:
 *      Argon2id per input would stall the fuzzer), the stream in pieces
 *      whose size the second byte sets, every record decoded;
 *   1  one record;
 *   2  a header only.
 * Invariants (abort on failure): an error says why; a record that decodes
 * encodes, and its encoding decodes and encodes again byte for byte.
 */
int
LLVMFuzzerInitialize(int *argc, char **argv[])
{
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	return 0;
}

static void
record(const uint8_t *d, size_t n)
{
	struct brec r, r2;
	char err[256], *e1, *e2;
	size_t l1 = 0, l2 = 0;

	if (brec_decode(d, n, &r, err, sizeof(err)) != 0) {
		if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		return;
	}
	if ((e1 = brec_encode(&r, &l1)) == NULL)
		abort();
	if (brec_decode((const uint8_t *)e1, l1, &r2, err, sizeof(err)) != 0)
		abort();
	if ((e2 = brec_encode(&r2, &l2)) == NULL || l1 != l2 ||
	    memcmp(e1, e2, l1) != 0)
		abort();
	free(e1);
	free(e2);
	brec_free(&r);
	brec_free(&r2);
}

static int
on_record(void *arg, const uint8_t *rec, size_t len)
{
	(*(int *)arg)++;
	record(rec, len);
	return 0;
}

static void
file(const uint8_t *d, size_t n, size_t piece)
{
	uint8_t sk[BK_KEY_BYTES], key[BK_KEY_BYTES];
	struct bk_header h;
	struct bk_secret s;
	struct bk_reader r;
	int hl, rc, count = 0;
	size_t off, k;

	if ((hl = bk_header_parse(d, n, &h)) <= 0) {
		if (hl == 0)
			abort();
		return;
	}
	if (h.kind != BK_SEALED)
		return;
	memset(sk, FUZZ_BACKUP_SK, sizeof(sk));
	memset(&s, 0, sizeof(s));
	s.sk = sk;
	if (bk_header_key(&h, &s, key) != BK_OK)
		return;
	if (bk_reader_init(&r, &h, key, on_record, &count) != BK_OK)
		abort();
	rc = BK_OK;
	for (off = (size_t)hl; off < n && rc == BK_OK; off += k) {
		k = n - off < piece ? n - off : piece;
		rc = bk_reader_feed(&r, d + off, k);
	}
	if (rc == BK_OK)
		rc = bk_reader_finish(&r);
	if (rc > 0 || bk_strerror(rc) == NULL)
		abort();
	bk_reader_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bk_header h;

	if (size < 2)
		return 0;
	switch (data[0] % 3) {
	case 0:
		file(data + 2, size - 2, (size_t)data[1] * 257 + 1);
		break;
	case 1:
		record(data + 1, size - 1);
		break;
	default:
		(void)bk_header_parse(data + 1, size - 1, &h);
		break;
	}
	return 0;
}
