/* Tests for libproto file.c: the FILE bodies (offer, chunk, end) against docs/protocol.md 7.1, garbage, and the file name rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "veil.h"
#include "testutil.h"

static const uint8_t ID[VEIL_FILE_ID_BYTES] = {
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
};

/* The OFFER layout byte by byte, as docs/protocol.md 7.1 writes it. */
static void
test_offer_layout(void **state)
{
	uint8_t hash[32], buf[VEIL_FILE_OFFER_MAX], want[128];
	struct veil_file_msg m;
	size_t n = 0;
	int len;

	(void)state;
	memset(hash, 0xab, sizeof hash);
	len = veil_file_offer_encode(buf, sizeof buf, ID, 0x0102030405ULL, 60907,
	    hash, "a.txt");
	want[n++] = 1;
	memcpy(want + n, ID, 16), n += 16;
	memcpy(want + n, "\0\0\0\x01\x02\x03\x04\x05", 8), n += 8;
	memcpy(want + n, "\0\0\xed\xeb", 4), n += 4;	/* 60907 */
	memcpy(want + n, hash, 32), n += 32;
	want[n++] = 5;
	memcpy(want + n, "a.txt", 5), n += 5;
	assert_int_equal(len, (int)n);
	assert_memory_equal(buf, want, n);

	assert_int_equal(veil_file_decode(buf, n, &m), VEIL_OK);
	assert_int_equal(m.kind, VEIL_FILE_OFFER);
	assert_memory_equal(m.id, ID, 16);
	assert_true(m.size == 0x0102030405ULL);
	assert_int_equal(m.chunk, 60907);
	assert_memory_equal(m.hash, hash, 32);
	assert_string_equal(m.name, "a.txt");
}

static void
test_chunk_end_layout(void **state)
{
	uint8_t buf[VEIL_FILE_CHUNK_HDR + 3], end[VEIL_FILE_END_BYTES];
	struct veil_file_msg m;

	(void)state;
	assert_int_equal(veil_file_chunk_header(buf, ID, 0x01020304), 21);
	assert_int_equal(buf[0], 2);
	assert_memory_equal(buf + 1, ID, 16);
	assert_memory_equal(buf + 17, "\x01\x02\x03\x04", 4);
	memcpy(buf + 21, "xyz", 3);
	assert_int_equal(veil_file_decode(buf, sizeof buf, &m), VEIL_OK);
	assert_int_equal(m.kind, VEIL_FILE_CHUNK);
	assert_int_equal(m.index, 0x01020304);
	assert_int_equal(m.len, 3);
	assert_memory_equal(m.data, "xyz", 3);
	/* A CHUNK without data is not one. */
	assert_int_equal(veil_file_decode(buf, 21, &m), VEIL_ERR_FORMAT);

	assert_int_equal(veil_file_end_encode(end, ID, VEIL_FILE_BADNAME), 18);
	assert_int_equal(end[0], 3);
	assert_int_equal(end[17], 3);
	assert_int_equal(veil_file_decode(end, sizeof end, &m), VEIL_OK);
	assert_int_equal(m.kind, VEIL_FILE_END);
	assert_int_equal(m.status, VEIL_FILE_BADNAME);
	assert_int_equal(veil_file_decode(end, sizeof end - 1, &m), VEIL_ERR_TRUNCATED);
}

static void
test_offer_rejects(void **state)
{
	uint8_t hash[32] = { 0 }, buf[VEIL_FILE_OFFER_MAX + 8];
	char longname[VEIL_FILE_NAME_MAX + 2];
	struct veil_file_msg m;
	int len;

	(void)state;
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(veil_file_offer_encode(buf, sizeof buf, ID, 1, 1, hash,
	    longname), VEIL_ERR_INVAL);
	longname[VEIL_FILE_NAME_MAX] = '\0';
	assert_int_equal(veil_file_offer_encode(buf, sizeof buf, ID, 1, 1, hash,
	    longname), VEIL_FILE_OFFER_MAX);
	assert_int_equal(veil_file_offer_encode(buf, sizeof buf, ID, 1, 1, hash, ""),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_file_offer_encode(buf, sizeof buf, ID, 1, 0, hash, "a"),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_file_offer_encode(buf, sizeof buf, ID, 1,
	    VEIL_FILE_CHUNK_MAX + 1, hash, "a"), VEIL_ERR_INVAL);
	/* 2^32 chunks of one byte is one too many. */
	assert_int_equal(veil_file_offer_encode(buf, sizeof buf, ID, 1ULL << 32, 1,
	    hash, "a"), VEIL_ERR_INVAL);
	assert_int_equal(veil_file_offer_encode(buf, 10, ID, 1, 1, hash, "a"),
	    VEIL_ERR_TOOBIG);

	len = veil_file_offer_encode(buf, sizeof buf, ID, 10, 4, hash, "ab");
	assert_true(len > 0);
	/* Every shorter prefix is truncated, a longer body has trailing bytes. */
	for (int i = 0; i < len; i++)
		assert_int_not_equal(veil_file_decode(buf, (size_t)i, &m), VEIL_OK);
	buf[len] = 'c';
	assert_int_equal(veil_file_decode(buf, (size_t)len + 1, &m), VEIL_ERR_FORMAT);
	/* A NUL inside the name. */
	buf[len - 1] = '\0';
	assert_int_equal(veil_file_decode(buf, (size_t)len, &m), VEIL_ERR_FORMAT);
	/* Chunk size 0. */
	len = veil_file_offer_encode(buf, sizeof buf, ID, 10, 4, hash, "ab");
	memset(buf + 25, 0, 4);
	assert_int_equal(veil_file_decode(buf, (size_t)len, &m), VEIL_ERR_FORMAT);
	/* Unknown kind. */
	buf[0] = 9;
	assert_int_equal(veil_file_decode(buf, (size_t)len, &m), VEIL_ERR_FORMAT);
	assert_int_not_equal(veil_file_decode(buf, 0, &m), VEIL_OK);
}

static void
test_chunks(void **state)
{
	(void)state;
	assert_true(veil_file_chunks(0, 10) == 0);
	assert_true(veil_file_chunks(1, 10) == 1);
	assert_true(veil_file_chunks(10, 10) == 1);
	assert_true(veil_file_chunks(11, 10) == 2);
	assert_true(veil_file_chunks(20 << 20, veil_file_chunk_size(1024)) == 325);
	/* Whole frames: header and data fill n frames exactly. */
	for (size_t fs = VEIL_FRAME_MIN; fs <= VEIL_FRAME_MAX; fs *= 2) {
		uint32_t c = veil_file_chunk_size(fs);
		size_t cap = veil_frame_capacity(fs, 0);

		assert_true(c > 0 && c <= VEIL_FILE_CHUNK_MAX);
		assert_int_equal((c + VEIL_FILE_CHUNK_HDR) % cap, 0);
		assert_int_equal(veil_message_frames(c + VEIL_FILE_CHUNK_HDR, fs, 0),
		    (int)((c + VEIL_FILE_CHUNK_HDR) / cap));
	}
	assert_int_equal(veil_file_chunk_size(1024), 68 * 952 - 21);
	assert_int_equal(veil_file_chunk_size(100), 0);
}

static void
test_names(void **state)
{
	static const char *const good[] = {
		"a", "report.pdf", "Foto 2026-11-27 (1).jpg", ".bashrc", "...",
		"naïve café.txt", "日本語.txt", "a..b", "-rf", "x y", NULL
	};
	static const char *const bad[] = {
		"", ".", "..", "../etc/passwd", "a/b", "/abs", "a\\b", "..\\x",
		"a\nb", "a\tb", "\x7f", "a\x1b[31m", "\xc2\x9b" "31m",
		"\xe2\x80\xae" "gpj.exe",	/* U+202E RIGHT-TO-LEFT OVERRIDE */
		"a\xe2\x80\x8b" "b",		/* U+200B ZERO WIDTH SPACE */
		"\xe2\x81\xa6" "x",		/* U+2066 */
		"\xef\xbb\xbf" "x",		/* U+FEFF */
		"\xff", "\xc0\xaf", "\xed\xa0\x80",	/* not UTF-8 */
		NULL
	};
	char longname[VEIL_FILE_NAME_MAX + 2];

	(void)state;
	for (int i = 0; good[i] != NULL; i++)
		assert_int_equal(veil_file_name_check(good[i]), VEIL_OK);
	for (int i = 0; bad[i] != NULL; i++)
		if (veil_file_name_check(bad[i]) != VEIL_ERR_INVAL)
			fail_msg("accepted bad name #%d", i);
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(veil_file_name_check(longname), VEIL_ERR_INVAL);
	longname[VEIL_FILE_NAME_MAX] = '\0';
	assert_int_equal(veil_file_name_check(longname), VEIL_OK);
	assert_int_equal(veil_file_name_check(NULL), VEIL_ERR_INVAL);
}

/* Mutated valid bodies never crash the decoder or read past the end. */
static void
test_garbage(void **state)
{
	uint8_t hash[32] = { 7 }, base[3][VEIL_FILE_OFFER_MAX], buf[VEIL_FILE_OFFER_MAX + 64];
	size_t blen[3], len;
	struct veil_file_msg m;
	struct tu_prng p;
	unsigned long iters = tu_iters(20000);

	(void)state;
	blen[0] = (size_t)veil_file_offer_encode(base[0], sizeof base[0], ID, 12345,
	    1000, hash, "name.bin");
	veil_file_chunk_header(base[1], ID, 3);
	memcpy(base[1] + VEIL_FILE_CHUNK_HDR, "data", 4);
	blen[1] = VEIL_FILE_CHUNK_HDR + 4;
	blen[2] = (size_t)veil_file_end_encode(base[2], ID, 0);
	tu_prng_seed(&p, 42);
	for (unsigned long i = 0; i < iters; i++) {
		int k = (int)(tu_prng_next(&p) % 3);

		memcpy(buf, base[k], blen[k]);
		len = blen[k];
		tu_mutate(&p, buf, &len, sizeof buf);
		/* A heap copy of exactly len bytes: ASan sees an overread. */
		uint8_t *h = malloc(len ? len : 1);
		memcpy(h, buf, len);
		if (veil_file_decode(h, len, &m) == VEIL_OK) {
			if (m.kind == VEIL_FILE_OFFER)
				assert_int_equal(strlen(m.name) + 62, len);
			if (m.kind == VEIL_FILE_CHUNK)
				assert_true(m.data == h + VEIL_FILE_CHUNK_HDR &&
				    m.len == len - VEIL_FILE_CHUNK_HDR);
		}
		free(h);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offer_layout),
		cmocka_unit_test(test_chunk_end_layout),
		cmocka_unit_test(test_offer_rejects),
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_garbage),
	};

	if (veil_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
