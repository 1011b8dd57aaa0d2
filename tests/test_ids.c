/* Tests for libproto ids (random IDs, their text form, client IDs) and common.c strings. */
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

static int
is_b64u(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

static int
is_alnum(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9')))
			return 0;
	return 1;
}

static void
test_id_default(void **state)
{
	struct veil_id id, back;
	char text[VEIL_ID_TEXT_MAX];

	(void)state;
	assert_int_equal(veil_id_new(&id, 0), VEIL_OK);
	assert_int_equal(id.len, 16);
	assert_true(veil_id_is_set(&id));
	assert_int_equal(veil_id_to_text(&id, text, sizeof(text)), VEIL_OK);
	assert_int_equal(strlen(text), 22);
	assert_true(is_b64u(text));
	assert_int_equal(veil_id_from_text(&back, text), VEIL_OK);
	assert_true(veil_id_equal(&id, &back));
}

/* Every allowed size: length ceil(8n / 6), alphabet, round trip. */
static void
test_id_sizes(void **state)
{
	struct veil_id id, back;
	char text[VEIL_ID_TEXT_MAX];
	unsigned bits;

	(void)state;
	for (bits = VEIL_ID_MIN_BITS; bits <= VEIL_ID_MAX_BITS; bits += 8) {
		assert_int_equal(veil_id_new(&id, bits), VEIL_OK);
		assert_int_equal(id.len, bits / 8);
		assert_int_equal(veil_id_to_text(&id, text, sizeof(text)),
		    VEIL_OK);
		assert_int_equal(strlen(text), (bits + 5) / 6);
		assert_true(is_b64u(text));
		assert_int_equal(veil_id_from_text(&back, text), VEIL_OK);
		assert_true(veil_id_equal(&id, &back));
	}
	assert_int_equal(veil_id_new(&id, 80), VEIL_OK);
	assert_int_equal(veil_id_to_text(&id, text, sizeof(text)), VEIL_OK);
	assert_int_equal(strlen(text), 14);
	assert_int_equal(veil_id_new(&id, 256), VEIL_OK);
	assert_int_equal(veil_id_to_text(&id, text, sizeof(text)), VEIL_OK);
	assert_int_equal(strlen(text), 43);
}

static void
test_id_bad_bits(void **state)
{
	static const unsigned bad[] = { 1, 8, 72, 79, 81, 84, 127, 264, 512 };
	struct veil_id id;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&id, 0xaa, sizeof(id));
		assert_int_equal(veil_id_new(&id, bad[i]), VEIL_ERR_INVAL);
		assert_false(veil_id_is_set(&id));
	}
	assert_int_equal(veil_id_new(NULL, 0), VEIL_ERR_INVAL);
}

/* Known answers: the URL-safe alphabet, not '+' '/', and no padding. */
static void
test_id_known_text(void **state)
{
	struct veil_id id, back;
	char text[VEIL_ID_TEXT_MAX];
	int i;

	(void)state;
	memset(&id, 0, sizeof(id));
	id.len = 12;
	memset(id.b, 0xff, 12);
	assert_int_equal(veil_id_to_text(&id, text, sizeof(text)), VEIL_OK);
	assert_string_equal(text, "________________");
	for (i = 0; i < 12; i += 3) {
		id.b[i] = 0xfb;
		id.b[i + 1] = 0xef;
		id.b[i + 2] = 0xbe;
	}
	assert_int_equal(veil_id_to_text(&id, text, sizeof(text)), VEIL_OK);
	assert_string_equal(text, "----------------");

	assert_int_equal(veil_id_from_text(&back, "AAAAAAAAAAAAAB"), VEIL_ERR_FORMAT);
	assert_int_equal(veil_id_from_text(&back, "AAAAAAAAAAAAAQ"), VEIL_OK);
	assert_int_equal(back.len, 10);
	assert_int_equal(back.b[9], 1);
	for (i = 0; i < 9; i++)
		assert_int_equal(back.b[i], 0);
}

static void
test_id_to_text_small(void **state)
{
	struct veil_id id;
	char text[VEIL_ID_TEXT_MAX];

	(void)state;
	assert_int_equal(veil_id_new(&id, 128), VEIL_OK);
	memset(text, 'x', sizeof(text));
	/* 22 characters need 23 bytes. */
	assert_true(veil_id_to_text(&id, text, 22) < 0);
	assert_int_equal(text[0], '\0');
	assert_int_equal(veil_id_to_text(&id, text, 23), VEIL_OK);
	assert_int_equal(strlen(text), 22);
	memset(&id, 0, sizeof(id));
	assert_true(veil_id_to_text(&id, text, sizeof(text)) < 0);
}

static void
test_id_from_text_rejects(void **state)
{
	static const char *bad[] = {
		"",
		"A",
		"AAAAAAAAAAAA",			/* 9 bytes: too short */
		"AAAAAAAAAAAAA",		/* dangling character */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 33 bytes */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"AAAAAAAAAAAAAAAAAAAAAA==",	/* padding */
		"AAAAAAAAAAAAAAAAAAAA+A",	/* standard alphabet */
		"AAAAAAAAAAAAAAAAAAAA/A",
		"AAAAAAAAAAAAAAAAAAAAAA ",	/* trailing junk */
		" AAAAAAAAAAAAAAAAAAAAAA",
		"AAAAAAAAAAAAAAAAAAAAAA\n",
		"AAAAAAAAAAA#AAAAAAAAAA",
		"AAAAAAAAAAAAAAAAAAAAAB",	/* non-zero leftover bits */
		"AAAAAAAAAAAA\xc3\xa9" "AAAAAAAA",
	};
	struct veil_id id;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&id, 0xaa, sizeof(id));
		assert_true(veil_id_from_text(&id, bad[i]) < 0);
		assert_false(veil_id_is_set(&id));
		assert_int_equal(id.len, 0);
	}
	assert_true(veil_id_from_text(&id, NULL) < 0);
	assert_true(veil_id_from_text(NULL, "AAAAAAAAAAAAAAAAAAAAAA") < 0);
	/* The longest valid text, for contrast with the 33-byte one above. */
	assert_int_equal(veil_id_from_text(&id,
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), VEIL_OK);
	assert_int_equal(id.len, 32);
}

static void
test_id_equal(void **state)
{
	struct veil_id a, b;

	(void)state;
	assert_int_equal(veil_id_new(&a, 0), VEIL_OK);
	b = a;
	assert_true(veil_id_equal(&a, &b));
	b.b[15] ^= 1;
	assert_false(veil_id_equal(&a, &b));
	b = a;
	b.len = 15;			/* a prefix of a is not a */
	assert_false(veil_id_equal(&a, &b));
	assert_false(veil_id_equal(&a, NULL));
	memset(&b, 0, sizeof(b));
	assert_false(veil_id_is_set(&b));
	assert_false(veil_id_is_set(NULL));
}

static int
cmp_text(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static void
test_id_unique(void **state)
{
	enum { N = 4000 };
	char (*texts)[VEIL_ID_TEXT_MAX];
	struct veil_id id;
	size_t i;

	(void)state;
	texts = calloc(N, sizeof(*texts));
	assert_non_null(texts);
	for (i = 0; i < N; i++) {
		/* 80 bits: the smallest IDs are the likeliest to collide. */
		assert_int_equal(veil_id_new(&id, 80), VEIL_OK);
		assert_int_equal(veil_id_to_text(&id, texts[i], VEIL_ID_TEXT_MAX),
		    VEIL_OK);
	}
	qsort(texts, N, sizeof(*texts), cmp_text);
	for (i = 1; i < N; i++)
		assert_string_not_equal(texts[i - 1], texts[i]);
	free(texts);
}

/* Bit length of 62^n, by exact multiplication: independent of the library's
 * fixed-point log. */
static unsigned
pow62_bitlen(unsigned n)
{
	uint32_t w[8] = { 1 };
	unsigned i, k, bits;

	for (i = 0; i < n; i++) {
		uint64_t carry = 0;
		for (k = 0; k < 8; k++) {
			uint64_t v = (uint64_t)w[k] * 62 + carry;
			w[k] = (uint32_t)v;
			carry = v >> 32;
		}
	}
	for (k = 8; k-- > 0;)
		if (w[k] != 0)
			break;
	for (bits = 32; bits > 0 && !(w[k] >> (bits - 1)); bits--)
		;
	return k * 32 + bits;
}

/* Smallest n with 62^n >= 2^bits (62^n is never a power of two). */
static size_t
expect_clientid_len(unsigned bits)
{
	unsigned n;

	for (n = 1; pow62_bitlen(n) - 1 < bits; n++)
		;
	return n;
}

static void
test_clientid_lengths(void **state)
{
	char cid[VEIL_CLIENTID_MAX + 1];
	unsigned bits;

	(void)state;
	assert_int_equal(veil_clientid_new(cid, 0), VEIL_OK);
	assert_int_equal(strlen(cid), 22);
	assert_true(is_alnum(cid));
	assert_int_equal(veil_clientid_new(cid, 80), VEIL_OK);
	assert_int_equal(strlen(cid), 14);
	assert_int_equal(veil_clientid_new(cid, 136), VEIL_OK);
	assert_int_equal(strlen(cid), 23);
	for (bits = 80; bits <= 136; bits++) {
		assert_int_equal(veil_clientid_new(cid, bits), VEIL_OK);
		assert_int_equal(strlen(cid), expect_clientid_len(bits));
		assert_true(is_alnum(cid));
	}
}

static void
test_clientid_bad_bits(void **state)
{
	static const unsigned bad[] = { 1, 64, 79, 137, 144, 256 };
	char cid[VEIL_CLIENTID_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(cid, 'x', sizeof(cid));
		assert_int_equal(veil_clientid_new(cid, bad[i]), VEIL_ERR_INVAL);
		assert_int_equal(cid[0], '\0');
	}
}

/* Every one of the 62 characters shows up, and no other. */
static void
test_clientid_alphabet(void **state)
{
	char cid[VEIL_CLIENTID_MAX + 1], seen[256];
	const char *p;
	int i, distinct = 0;

	(void)state;
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 1000; i++) {
		assert_int_equal(veil_clientid_new(cid, 0), VEIL_OK);
		assert_true(is_alnum(cid));
		for (p = cid; *p != '\0'; p++)
			seen[(unsigned char)*p] = 1;
	}
	for (i = 0; i < 256; i++)
		distinct += seen[i];
	assert_int_equal(distinct, 62);
}

static void
test_clientid_unique(void **state)
{
	enum { N = 2000 };
	char (*ids)[VEIL_ID_TEXT_MAX];
	size_t i;

	(void)state;
	ids = calloc(N, sizeof(*ids));
	assert_non_null(ids);
	for (i = 0; i < N; i++)
		assert_int_equal(veil_clientid_new(ids[i], 80), VEIL_OK);
	qsort(ids, N, sizeof(*ids), cmp_text);
	for (i = 1; i < N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	free(ids);
}

/* Same seed, same IDs: the library draws only through libsodium. */
static void
test_id_deterministic(void **state)
{
	struct veil_id a, b;
	char c1[VEIL_CLIENTID_MAX + 1], c2[VEIL_CLIENTID_MAX + 1];

	(void)state;
	tu_rng_reseed("ids");
	assert_int_equal(veil_id_new(&a, 0), VEIL_OK);
	assert_int_equal(veil_clientid_new(c1, 0), VEIL_OK);
	tu_rng_reseed("ids");
	assert_int_equal(veil_id_new(&b, 0), VEIL_OK);
	assert_int_equal(veil_clientid_new(c2, 0), VEIL_OK);
	assert_true(veil_id_equal(&a, &b));
	assert_string_equal(c1, c2);
	tu_rng_reseed("other");
	assert_int_equal(veil_id_new(&b, 0), VEIL_OK);
	assert_false(veil_id_equal(&a, &b));
}

static void
test_strerror(void **state)
{
	int e, f;

	(void)state;
	for (e = VEIL_OK; e >= VEIL_ERR_FUTURE; e--) {
		const char *s = veil_strerror(e);
		assert_non_null(s);
		assert_true(strlen(s) > 5);
		assert_string_not_equal(s, veil_strerror(-1000));
		for (f = e - 1; f >= VEIL_ERR_FUTURE; f--)
			assert_string_not_equal(s, veil_strerror(f));
	}
	assert_non_null(veil_strerror(1));
	assert_int_equal(veil_init(), VEIL_OK);	/* twice is fine */
}

/* ---- derived inbox topics (protocol.md 5) ----------------------------- */

/* b64u(first 16 bytes of H_J("veil-inbox-v2" || u64(n))), with libsodium. */
static void
spec_topic(char out[23], const uint8_t seed[32], uint64_t n)
{
	crypto_generichash_state st;
	uint8_t h[32], be[8];
	int i;

	for (i = 7; i >= 0; i--, n >>= 8)
		be[i] = (uint8_t)n;
	crypto_generichash_init(&st, seed, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)"veil-inbox-v2", 13);
	crypto_generichash_update(&st, be, 8);
	crypto_generichash_final(&st, h, 32);
	sodium_bin2base64(out, 23, h, 16, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void
test_topic_spec(void **state)
{
	static const uint64_t ns[] = { 0, 1, 493000, UINT64_MAX };
	uint8_t seed[32];
	char got[VEIL_TOPIC_TEXT], want[23];
	struct veil_id id, back;
	size_t i;

	(void)state;
	veil_seed_new(seed);
	for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		assert_int_equal(veil_topic_text(seed, ns[i], got, sizeof(got)), VEIL_OK);
		spec_topic(want, seed, ns[i]);
		assert_string_equal(got, want);
		assert_int_equal(strlen(got), 22);
		assert_int_equal(strspn(got, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 22);
		assert_int_equal(veil_topic_id(seed, ns[i], &id), VEIL_OK);
		assert_int_equal(id.len, VEIL_TOPIC_BYTES);
		/* the ID's text form is the topic, and it reads back */
		assert_int_equal(veil_id_from_text(&back, got), VEIL_OK);
		assert_true(veil_id_equal(&id, &back));
	}
}

/* Deterministic; a new epoch or another seed gives another topic. */
static void
test_topic_differ(void **state)
{
	uint8_t j1[32], j2[32];
	char a[VEIL_TOPIC_TEXT], b[VEIL_TOPIC_TEXT], c[VEIL_TOPIC_TEXT];
	uint64_t n;

	(void)state;
	veil_seed_new(j1);
	memcpy(j2, j1, 32);
	j2[31] ^= 1;
	for (n = 490000; n < 490050; n++) {
		assert_int_equal(veil_topic_text(j1, n, a, sizeof(a)), VEIL_OK);
		assert_int_equal(veil_topic_text(j1, n, b, sizeof(b)), VEIL_OK);
		assert_string_equal(a, b);
		assert_int_equal(veil_topic_text(j1, n + 1, c, sizeof(c)), VEIL_OK);
		assert_string_not_equal(a, c);
		assert_int_equal(veil_topic_text(j2, n, c, sizeof(c)), VEIL_OK);
		assert_string_not_equal(a, c);
	}
}

static void
test_topic_epochs(void **state)
{
	uint8_t seed[32];
	char a[VEIL_TOPIC_TEXT], b[VEIL_TOPIC_TEXT];

	(void)state;
	assert_int_equal(veil_epoch_number(0, 3600), 0);
	assert_int_equal(veil_epoch_number(3599, 3600), 0);
	assert_int_equal(veil_epoch_number(3600, 3600), 1);
	assert_int_equal(veil_epoch_number(1767225600, 3600), 490896);
	/* L = 0: a fixed inbox, always epoch 0 */
	assert_int_equal(veil_epoch_number(1767225600, 0), 0);
	assert_int_equal(veil_epoch_number(UINT64_MAX, 0), 0);
	assert_true(veil_epoch_len_valid(0) && veil_epoch_len_valid(1) &&
	    veil_epoch_len_valid(VEIL_EPOCH_MAX));
	assert_false(veil_epoch_len_valid(VEIL_EPOCH_MAX + 1));
	/* same epoch, same topic; the next hour, another */
	veil_seed_new(seed);
	assert_int_equal(veil_topic_text(seed, veil_epoch_number(7200, 3600), a,
	    sizeof(a)), VEIL_OK);
	assert_int_equal(veil_topic_text(seed, veil_epoch_number(10799, 3600), b,
	    sizeof(b)), VEIL_OK);
	assert_string_equal(a, b);
	assert_int_equal(veil_topic_text(seed, veil_epoch_number(10800, 3600), b,
	    sizeof(b)), VEIL_OK);
	assert_string_not_equal(a, b);
}

static void
test_topic_rejects(void **state)
{
	uint8_t zero[32] = { 0 }, seed[32];
	char t[VEIL_TOPIC_TEXT];
	struct veil_id id;
	struct veil_inbox in;

	(void)state;
	assert_int_equal(veil_topic_text(zero, 1, t, sizeof(t)), VEIL_ERR_INVAL);
	assert_string_equal(t, "");
	assert_int_equal(veil_topic_id(zero, 1, &id), VEIL_ERR_INVAL);
	assert_int_equal(id.len, 0);
	assert_int_equal(veil_topic_id(NULL, 1, &id), VEIL_ERR_INVAL);
	veil_seed_new(seed);
	assert_true(veil_seed_valid(seed));
	assert_false(veil_seed_valid(zero));
	assert_int_equal(veil_topic_text(seed, 1, t, 22), VEIL_ERR_TOOBIG);
	assert_int_equal(veil_topic_text(seed, 1, NULL, 23), VEIL_ERR_INVAL);

	memset(&in, 0, sizeof(in));
	assert_false(veil_inbox_valid(&in));
	memcpy(in.seed, seed, 32);
	in.epoch = 3600;
	in.period = 3600;
	assert_true(veil_inbox_valid(&in));
	in.period = 0;
	assert_false(veil_inbox_valid(&in));
	in.period = VEIL_PERIOD_MAX + 1;
	assert_false(veil_inbox_valid(&in));
	in.period = 1;
	in.epoch = VEIL_EPOCH_MAX + 1;
	assert_false(veil_inbox_valid(&in));
	assert_false(veil_inbox_valid(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_default),
		cmocka_unit_test(test_id_sizes),
		cmocka_unit_test(test_id_bad_bits),
		cmocka_unit_test(test_id_known_text),
		cmocka_unit_test(test_id_to_text_small),
		cmocka_unit_test(test_id_from_text_rejects),
		cmocka_unit_test(test_id_equal),
		cmocka_unit_test(test_id_unique),
		cmocka_unit_test(test_clientid_lengths),
		cmocka_unit_test(test_clientid_bad_bits),
		cmocka_unit_test(test_clientid_alphabet),
		cmocka_unit_test(test_clientid_unique),
		cmocka_unit_test(test_id_deterministic),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_topic_spec),
		cmocka_unit_test(test_topic_differ),
		cmocka_unit_test(test_topic_epochs),
		cmocka_unit_test(test_topic_rejects),
	};

	tu_deterministic_rng("test_ids");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("ids", tests, NULL, NULL);
}
