/* Tests for libproto card (layout, checksum, URI, decode checks), display names and QR output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "veil.h"
#include "testutil.h"

#define B64U sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define NOW 1800000000ULL

static void
make_card(struct veil_card *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(veil_id_new(&c->cid, 0), VEIL_OK);
	randombytes_buf(c->pk, sizeof(c->pk));
	strcpy(c->name, "Alice");
}

static void
assert_card_equal(const struct veil_card *a, const struct veil_card *b)
{
	assert_true(veil_id_equal(&a->cid, &b->cid));
	assert_memory_equal(a->pk, b->pk, sizeof(a->pk));
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->hints, b->hints);
	assert_true(a->expires == b->expires);
	assert_int_equal(a->flags, b->flags);
}

/*
 * Test-side builder of raw cards, written from docs/protocol.md §3 rather
 * than from card.c, so that the decoder can be fed hand-made mistakes.
 */
struct raw {
	uint8_t b[2048];
	size_t len;
};

static void
raw_put(struct raw *r, const void *p, size_t n)
{
	assert_true(r->len + n <= sizeof(r->b));
	memcpy(r->b + r->len, p, n);
	r->len += n;
}

static void
raw_u8(struct raw *r, uint8_t v)
{
	raw_put(r, &v, 1);
}

static void
raw_card(struct raw *r, uint8_t version, uint8_t flags, const uint8_t *cid,
    size_t cidlen, const uint8_t pk[32], uint64_t expires, const char *name,
    size_t namelen, const char *hints, size_t hintslen)
{
	uint8_t e[8];
	int i;

	r->len = 0;
	raw_u8(r, version);
	raw_u8(r, flags);
	raw_u8(r, (uint8_t)cidlen);
	raw_put(r, cid, cidlen);
	raw_put(r, pk, 32);
	for (i = 0; i < 8; i++)
		e[i] = (uint8_t)(expires >> (56 - 8 * i));
	raw_put(r, e, 8);
	raw_u8(r, (uint8_t)namelen);
	raw_put(r, name, namelen);
	raw_u8(r, (uint8_t)(hintslen >> 8));
	raw_u8(r, (uint8_t)hintslen);
	raw_put(r, hints, hintslen);
}

/* "veil:" + b64u(bytes || first 4 bytes of H(bytes)); out is malloc'd. */
static char *
raw_uri(const struct raw *r, int good_checksum)
{
	uint8_t buf[2100], h[32];
	size_t n = r->len;
	char *out;

	memcpy(buf, r->b, n);
	crypto_generichash(h, 32, r->b, n, NULL, 0);
	if (!good_checksum)
		h[0] ^= 0x01;
	memcpy(buf + n, h, 4);
	n += 4;
	out = malloc(5 + sodium_base64_ENCODED_LEN(n, B64U));
	assert_non_null(out);
	memcpy(out, "veil:", 5);
	sodium_bin2base64(out + 5, sodium_base64_ENCODED_LEN(n, B64U), buf, n,
	    B64U);
	return out;
}

static const uint8_t cid16[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    13, 14, 15, 16 };
static uint8_t pk32[32];

static int
decode_raw(struct raw *r, int good_checksum, uint64_t now)
{
	struct veil_card c;
	char *uri = raw_uri(r, good_checksum);
	int rc;

	memset(&c, 0xaa, sizeof(c));
	rc = veil_card_decode(&c, uri, now);
	if (rc != VEIL_OK) {
		/* Failure leaves the output zeroed. */
		assert_int_equal(c.cid.len, 0);
		assert_int_equal(c.name[0], '\0');
		assert_int_equal(c.flags, 0);
	}
	free(uri);
	return rc;
}

/* ------------------------------------------------------------------ */

static void
test_name_valid(void **state)
{
	static const char *good[] = {
		"Alice", "A", "Zo\xc3\xab", "\xe6\x97\xa5\xe6\x9c\xac",
		"\xf0\x9f\x98\x80 smile", "\xc2\xa0nbsp", "\xef\xbf\xbf",
		"\xf4\x8f\xbf\xbf", "a b~c",
		/* near the refused ranges, and emoji presentation */
		"\xe2\x80\x8a", "\xe2\x80\x90", "\xe2\x80\xaf", "\xe2\x81\xb0",
		"\xe2\x9d\xa4\xef\xb8\x8f", "\xef\xbb\xbe",
		"0123456789012345678901234567890123456789012345678901234567890123",
	};
	static const char *bad[] = {
		"", "\x01", "a\x7f", "tab\there", "new\nline", "\x1b[2J",
		"\xc2\x85", "\xc2\x9f", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf",
		"\xf0\x80\x80\xaf", "\xed\xa0\x80", "\xed\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\x80",
		"abc\xe6\x97", "\xe6\x97" "a", "\xf0\x9f\x98",
		/* invisible: bidi override, isolates, marks, zero widths,
		 * fillers, a BOM, a tag character */
		"bob\xe2\x80\xae", "\xe2\x80\xaa" "bob", "\xe2\x81\xa6" "bob",
		"b\xe2\x81\xa9ob", "bob\xe2\x80\x8f", "b\xe2\x80\x8bob",
		"b\xe2\x80\x8dob", "bob\xe2\x81\xa0", "bo\xc2\xad" "b",
		"\xe3\x85\xa4", "\xef\xbb\xbf" "bob", "bob\xf3\xa0\x80\x81",
		"b\xd8\x9cob", "bo\xcd\x8f" "b", "bob\xe2\x80\xa8",
	};
	char name[80];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(veil_name_valid(good[i]), VEIL_OK);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(veil_name_valid(bad[i]), VEIL_ERR_INVAL);
	assert_int_equal(veil_name_valid(NULL), VEIL_ERR_INVAL);
	memset(name, 'a', 65);
	name[65] = '\0';
	assert_int_equal(veil_name_valid(name), VEIL_ERR_TOOBIG);
	/* 32 two-byte characters: exactly 64 bytes. */
	for (i = 0; i < 32; i++)
		memcpy(name + 2 * i, "\xc3\xa9", 2);
	name[64] = '\0';
	assert_int_equal(veil_name_valid(name), VEIL_OK);
	name[63] = '\0';	/* cut inside a character */
	assert_int_equal(veil_name_valid(name), VEIL_ERR_INVAL);
	memset(name, 'a', 63);
	memcpy(name + 63, "\xc3\xa9", 3);
	assert_int_equal(veil_name_valid(name), VEIL_ERR_TOOBIG);
}

static void
test_roundtrip_plain(void **state)
{
	struct veil_card c, d;
	char uri[VEIL_CARD_URI_MAX];
	int n;

	(void)state;
	make_card(&c);
	n = veil_card_encode(&c, uri, sizeof(uri));
	assert_true(n > 5);
	assert_int_equal((size_t)n, strlen(uri));
	assert_memory_equal(uri, "veil:", 5);
	assert_int_equal(veil_card_decode(&d, uri, NOW), VEIL_OK);
	assert_card_equal(&c, &d);
	assert_int_equal(veil_card_decode(&d, uri, 0), VEIL_OK);
	assert_card_equal(&c, &d);
}

static void
test_roundtrip_full(void **state)
{
	struct veil_card c, d;
	char uri[VEIL_CARD_URI_MAX], *padded;
	int n;

	(void)state;
	make_card(&c);
	strcpy(c.hints, "mqtt://127.0.0.1:1883 xmpp:localhost");
	strcpy(c.name, "Bj\xc3\xb6rk \xf0\x9f\x90\xa7");
	c.flags = VEIL_CARD_ONE_TIME;
	c.expires = NOW + 3600;
	n = veil_card_encode(&c, uri, sizeof(uri));
	assert_true(n > 0);
	assert_int_equal(veil_card_decode(&d, uri, NOW), VEIL_OK);
	assert_card_equal(&c, &d);
	assert_int_equal(d.flags, VEIL_CARD_ONE_TIME);
	assert_true(d.expires == NOW + 3600);
	/* The expiry is only checked against a clock. */
	assert_int_equal(veil_card_decode(&d, uri, NOW + 3599), VEIL_OK);
	assert_int_equal(veil_card_decode(&d, uri, NOW + 3600), VEIL_ERR_EXPIRED);
	assert_int_equal(veil_card_decode(&d, uri, NOW + 99999), VEIL_ERR_EXPIRED);
	assert_int_equal(d.cid.len, 0);
	assert_int_equal(veil_card_decode(&d, uri, 0), VEIL_OK);

	/* Surrounding whitespace is what copy and paste adds. */
	padded = malloc(strlen(uri) + 16);
	assert_non_null(padded);
	sprintf(padded, " \t\n%s\r\n ", uri);
	assert_int_equal(veil_card_decode(&d, padded, NOW), VEIL_OK);
	assert_card_equal(&c, &d);
	free(padded);
}

/* The largest card fits VEIL_CARD_URI_MAX; the output size is checked. */
static void
test_encode_limits(void **state)
{
	struct veil_card c, d;
	char uri[VEIL_CARD_URI_MAX];
	int n;

	(void)state;
	make_card(&c);
	assert_int_equal(veil_id_new(&c.cid, 256), VEIL_OK);
	memset(c.name, 'n', VEIL_NAME_MAX);
	c.name[VEIL_NAME_MAX] = '\0';
	memset(c.hints, 'h', VEIL_HINTS_MAX);
	c.hints[VEIL_HINTS_MAX] = '\0';
	c.expires = UINT64_MAX;
	n = veil_card_encode(&c, uri, sizeof(uri));
	assert_true(n > 0 && n < VEIL_CARD_URI_MAX);
	assert_int_equal(veil_card_decode(&d, uri, NOW), VEIL_OK);
	assert_card_equal(&c, &d);

	memset(uri, 'x', sizeof(uri));
	assert_true(veil_card_encode(&c, uri, (size_t)n) < 0);
	assert_int_equal(uri[0], '\0');
	assert_int_equal(veil_card_encode(&c, uri, (size_t)n + 1), n);
}

static void
test_encode_rejects(void **state)
{
	struct veil_card c;
	char uri[VEIL_CARD_URI_MAX];

	(void)state;
	make_card(&c);
	c.name[0] = '\0';
	assert_int_equal(veil_card_encode(&c, uri, sizeof(uri)), VEIL_ERR_INVAL);
	strcpy(c.name, "bell\a");
	assert_int_equal(veil_card_encode(&c, uri, sizeof(uri)), VEIL_ERR_INVAL);
	strcpy(c.name, "ok");
	c.flags = 0x02;
	assert_int_equal(veil_card_encode(&c, uri, sizeof(uri)), VEIL_ERR_INVAL);
	c.flags = 0;
	strcpy(c.hints, "esc\x1b]0;owned\a");
	assert_int_equal(veil_card_encode(&c, uri, sizeof(uri)), VEIL_ERR_INVAL);
	c.hints[0] = '\0';
	memset(&c.cid, 0, sizeof(c.cid));
	assert_int_equal(veil_card_encode(&c, uri, sizeof(uri)), VEIL_ERR_INVAL);
	assert_int_equal(veil_card_encode(NULL, uri, sizeof(uri)), VEIL_ERR_INVAL);
}

/* Encoder output equals the layout built by hand from the protocol text. */
static void
test_encode_layout(void **state)
{
	struct veil_card c;
	struct raw r;
	char uri[VEIL_CARD_URI_MAX], *want;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.cid.len = 16;
	memcpy(c.cid.b, cid16, 16);
	memcpy(c.pk, pk32, 32);
	strcpy(c.name, "Carol");
	strcpy(c.hints, "h1");
	c.expires = 0x0102030405060708ULL;
	c.flags = VEIL_CARD_ONE_TIME;
	raw_card(&r, 2, 1, cid16, 16, pk32, 0x0102030405060708ULL,
	    "Carol", 5, "h1", 2);
	assert_int_equal(r.len, 3 + 16 + 32 + 8 + 1 + 5 + 2 + 2);
	want = raw_uri(&r, 1);
	assert_true(veil_card_encode(&c, uri, sizeof(uri)) > 0);
	assert_string_equal(uri, want);
	free(want);
}

static void
test_decode_checksum(void **state)
{
	struct veil_card c, d;
	char uri[VEIL_CARD_URI_MAX];
	struct raw r;
	size_t i, len;
	char orig;

	(void)state;
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Dave", 4, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_OK);
	assert_int_equal(decode_raw(&r, 0, NOW), VEIL_ERR_CHECKSUM);
	/* A corrupt card byte under the original checksum. */
	{
		char *u = raw_uri(&r, 1);
		uint8_t bin[200];
		size_t blen;

		assert_int_equal(sodium_base642bin(bin, sizeof(bin), u + 5,
		    strlen(u + 5), NULL, &blen, NULL, B64U), 0);
		bin[20] ^= 0x40;
		sodium_bin2base64(u + 5, strlen(u + 5) + 1, bin, blen, B64U);
		assert_int_equal(veil_card_decode(&d, u, NOW), VEIL_ERR_CHECKSUM);
		free(u);
	}

	/* Every single mistyped character (other than the last, whose
	 * spare bits may make it FORMAT) is caught by the checksum. */
	make_card(&c);
	assert_true(veil_card_encode(&c, uri, sizeof(uri)) > 0);
	len = strlen(uri);
	for (i = 5; i + 1 < len; i++) {
		orig = uri[i];
		uri[i] = orig == 'A' ? 'B' : 'A';
		assert_int_equal(veil_card_decode(&d, uri, NOW),
		    VEIL_ERR_CHECKSUM);
		uri[i] = orig;
	}
	assert_int_equal(veil_card_decode(&d, uri, NOW), VEIL_OK);
}

static void
test_decode_truncated(void **state)
{
	struct veil_card c, d;
	char uri[VEIL_CARD_URI_MAX];
	struct raw r;
	size_t len;

	(void)state;
	assert_int_equal(veil_card_decode(&d, "veil:", NOW), VEIL_ERR_TRUNCATED);
	assert_int_equal(veil_card_decode(&d, "veil:AAAA", NOW),
	    VEIL_ERR_TRUNCATED);
	/* Shortest valid card (10-byte ID, 1-byte name) minus one byte. */
	raw_card(&r, 2, 0, cid16, 10, pk32, 0, "E", 1, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_OK);
	r.len--;
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TRUNCATED);

	/* Lengths that overrun what remains, under a valid checksum. */
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Frank", 5, "hint", 4);
	r.b[2] = 30;			/* cidlen */
	r.len = 3 + 16;			/* nothing after the ID */
	{
		uint8_t pad[40] = { 0 };
		raw_put(&r, pad, 40);	/* above the minimum, but short */
	}
	r.b[2] = 32 + 40 + 1;		/* beyond the end, not over 255 */
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TRUNCATED);

	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Frank", 5, "hint", 4);
	r.b[3 + 16 + 32 + 8] = 60;	/* namelen past the end */
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TRUNCATED);

	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Frank", 5, "hint", 4);
	r.b[r.len - 4 - 1] = 5;		/* hintslen 5, 4 bytes follow */
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TRUNCATED);

	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Frank", 5, "", 0);
	r.len -= 1;			/* half of hintslen */
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TRUNCATED);

	/* A URI cut short: checksum or encoding, never success. */
	make_card(&c);
	assert_true(veil_card_encode(&c, uri, sizeof(uri)) > 0);
	for (len = strlen(uri); len > 0; len--) {
		uri[len - 1] = '\0';
		assert_true(veil_card_decode(&d, uri, NOW) < 0);
	}
}

static void
test_decode_version_flags(void **state)
{
	struct raw r;

	(void)state;
	/* A version 1 card (protocol version 1) says so. */
	raw_card(&r, 1, 0, cid16, 16, pk32, 0, "Gina", 4, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_VERSION);
	r.b[0] = 3;
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_VERSION);
	r.b[0] = 0;
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_VERSION);
	r.b[0] = 0xff;
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_VERSION);
	/* The checksum is checked before the version. */
	assert_int_equal(decode_raw(&r, 0, NOW), VEIL_ERR_CHECKSUM);
	/* The version before the lengths and the trailing bytes. */
	raw_u8(&r, 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_VERSION);

	raw_card(&r, 2, 0x02, cid16, 16, pk32, 0, "Gina", 4, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_FORMAT);
	r.b[1] = 0x81;
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_FORMAT);
	r.b[1] = 0x01;
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_OK);
}

static void
test_decode_toobig(void **state)
{
	uint8_t cid33[33] = { 0 };
	char name65[65], hints513[513];
	struct raw r;

	(void)state;
	memset(name65, 'x', sizeof(name65));
	memset(hints513, 'y', sizeof(hints513));
	raw_card(&r, 2, 0, cid33, 33, pk32, 0, "Hal", 3, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TOOBIG);
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, name65, 65, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TOOBIG);
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Hal", 3, hints513, 513);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_TOOBIG);
	/* At the limits it is fine. */
	raw_card(&r, 2, 0, cid33, 32, pk32, 0, name65, 64, hints513, 512);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_OK);
	/* An ID shorter than 80 bits is not an ID. */
	raw_card(&r, 2, 0, cid16, 9, pk32, 0, "Hal", 3, "", 0);
	assert_true(decode_raw(&r, 1, NOW) < 0);
}

static void
test_decode_trailing(void **state)
{
	struct raw r;

	(void)state;
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Ivy", 3, "", 0);
	raw_u8(&r, 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_FORMAT);
	/* Trailing bytes are found before the name is looked at. */
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "I\x01", 2, "", 0);
	raw_u8(&r, 'x');
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_FORMAT);
}

static void
test_decode_bad_name(void **state)
{
	struct raw r;

	(void)state;
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "", 0, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_INVAL);
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "J\x1b[2J", 5, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_INVAL);
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Ja\0ck", 5, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_INVAL);
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "\xc0\xaf", 2, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_INVAL);
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Jack", 4, "h\x07", 2);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_INVAL);
	raw_card(&r, 2, 0, cid16, 16, pk32, 0, "Jack", 4, "h\0i", 3);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_INVAL);
	/* The name is checked before the expiry. */
	raw_card(&r, 2, 0, cid16, 16, pk32, 1000, "\x7f", 1, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_INVAL);
	raw_card(&r, 2, 0, cid16, 16, pk32, 1000, "Jack", 4, "", 0);
	assert_int_equal(decode_raw(&r, 1, NOW), VEIL_ERR_EXPIRED);
	assert_int_equal(decode_raw(&r, 1, 0), VEIL_OK);
	assert_int_equal(decode_raw(&r, 1, 999), VEIL_OK);
}

static void
test_decode_prefix_alphabet(void **state)
{
	struct veil_card c, d;
	char uri[VEIL_CARD_URI_MAX], buf[VEIL_CARD_URI_MAX + 8];
	size_t len;

	(void)state;
	make_card(&c);
	assert_true(veil_card_encode(&c, uri, sizeof(uri)) > 0);
	len = strlen(uri);

	assert_int_equal(veil_card_decode(&d, "", NOW), VEIL_ERR_FORMAT);
	assert_int_equal(veil_card_decode(&d, "   ", NOW), VEIL_ERR_FORMAT);
	assert_int_equal(veil_card_decode(&d, "veil", NOW), VEIL_ERR_FORMAT);
	assert_true(veil_card_decode(&d, NULL, NOW) < 0);
	assert_true(veil_card_decode(NULL, uri, NOW) < 0);

	snprintf(buf, sizeof(buf), "vail:%s", uri + 5);
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	snprintf(buf, sizeof(buf), "http:%s", uri + 5);
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	snprintf(buf, sizeof(buf), "%s", uri + 5);	/* no prefix */
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	snprintf(buf, sizeof(buf), "xveil:%s", uri + 5);
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);

	/* Alphabet: standard base64, padding, inner whitespace. */
	memcpy(buf, uri, len + 1);
	buf[10] = '+';
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	buf[10] = '/';
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	buf[10] = ' ';
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	buf[10] = '\xc3';	/* libsodium 1.0.18 would take it as base64 */
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	buf[10] = '\0';
	assert_true(veil_card_decode(&d, buf, NOW) < 0);
	snprintf(buf, sizeof(buf), "%s=", uri);
	assert_int_equal(veil_card_decode(&d, buf, NOW), VEIL_ERR_FORMAT);
	snprintf(buf, sizeof(buf), "%sA", uri);	/* base64 trailing junk */
	assert_true(veil_card_decode(&d, buf, NOW) < 0);
	/* The alphabet is checked before the length. */
	assert_int_equal(veil_card_decode(&d, "veil:AA=A", NOW), VEIL_ERR_FORMAT);
	/* Still fine when left alone. */
	assert_int_equal(veil_card_decode(&d, uri, NOW), VEIL_OK);
}

/*
 * Random mutations of a valid URI: no crash (ASan/UBSan catch the rest),
 * and whatever decodes is a card that passes every rule and re-encodes.
 */
static void
test_decode_mutations(void **state)
{
	struct veil_card c, d, e;
	char uri[VEIL_CARD_URI_MAX], buf[VEIL_CARD_URI_MAX + 1];
	char again[VEIL_CARD_URI_MAX];
	struct tu_prng p;
	unsigned long i, n = tu_iters(4000), ok = 0;
	size_t len;
	int rc;

	(void)state;
	make_card(&c);
	strcpy(c.hints, "mqtt://127.0.0.1:1883");
	c.expires = NOW + 10;
	assert_true(veil_card_encode(&c, uri, sizeof(uri)) > 0);
	tu_prng_seed(&p, 0x5eed);
	for (i = 0; i < n; i++) {
		len = strlen(uri);
		memcpy(buf, uri, len);
		tu_mutate(&p, (uint8_t *)buf, &len, sizeof(buf) - 1);
		buf[len] = '\0';
		memset(&d, 0x55, sizeof(d));
		rc = veil_card_decode(&d, buf, (i & 1) ? NOW : 0);
		if (rc != VEIL_OK) {
			assert_true(rc == VEIL_ERR_FORMAT ||
			    rc == VEIL_ERR_TRUNCATED || rc == VEIL_ERR_CHECKSUM ||
			    rc == VEIL_ERR_VERSION || rc == VEIL_ERR_EXPIRED ||
			    rc == VEIL_ERR_TOOBIG || rc == VEIL_ERR_INVAL);
			assert_int_equal(d.cid.len, 0);
			continue;
		}
		ok++;
		assert_true(veil_id_is_set(&d.cid));
		assert_int_equal(veil_name_valid(d.name), VEIL_OK);
		assert_true(d.flags <= VEIL_CARD_ONE_TIME);
		assert_true(strlen(d.hints) <= VEIL_HINTS_MAX);
		assert_true(veil_card_encode(&d, again, sizeof(again)) > 0);
		assert_int_equal(veil_card_decode(&e, again, 0), VEIL_OK);
		assert_card_equal(&d, &e);
	}
	assert_true(ok < n);

	/* The same on the card bytes under a recomputed checksum, so the
	 * mutations reach the field parser instead of stopping at CHECKSUM. */
	{
		struct raw r, base;
		char *u;
		unsigned long deep = 0;

		raw_card(&base, 2, 1, cid16, 16, pk32, NOW + 10, "Mallory", 7,
		    "mqtt://127.0.0.1:1883", 21);
		for (i = 0, ok = 0; i < n; i++) {
			r = base;
			tu_mutate(&p, r.b, &r.len, 700);
			u = raw_uri(&r, 1);
			memset(&d, 0x55, sizeof(d));
			rc = veil_card_decode(&d, u, (i & 1) ? NOW : 0);
			free(u);
			if (rc != VEIL_ERR_CHECKSUM && rc != VEIL_ERR_TRUNCATED)
				deep++;
			if (rc != VEIL_OK) {
				assert_true(rc == VEIL_ERR_FORMAT ||
				    rc == VEIL_ERR_TRUNCATED ||
				    rc == VEIL_ERR_VERSION ||
				    rc == VEIL_ERR_EXPIRED ||
				    rc == VEIL_ERR_TOOBIG ||
				    rc == VEIL_ERR_INVAL);
				assert_int_equal(d.cid.len, 0);
				continue;
			}
			ok++;
			assert_true(veil_id_is_set(&d.cid));
			assert_int_equal(veil_name_valid(d.name), VEIL_OK);
			assert_true(d.flags <= VEIL_CARD_ONE_TIME);
			assert_true(veil_card_encode(&d, again, sizeof(again)) > 0);
			assert_int_equal(veil_card_decode(&e, again, 0), VEIL_OK);
			assert_card_equal(&d, &e);
			/* Re-encoding gives back exactly the mutated bytes. */
			u = raw_uri(&r, 1);
			assert_string_equal(again, u);
			free(u);
		}
		/* Both outcomes happen, or the loop tests little. */
		assert_true(ok > 0 && ok < n);
		assert_true(deep > n / 4);
	}
}

/* ------------------------------------------------------------------ */

/* Splits the terminal QR into a module grid: 1 = dark.  Returns width. */
static int
qr_utf8_grid(const char *s, uint8_t *grid, int maxw, int *rows)
{
	int x = 0, y = 0, width = -1;

	while (*s != '\0') {
		int top, bot;

		if (*s == '\n') {
			if (width < 0)
				width = x;
			assert_int_equal(x, width);	/* equal widths */
			x = 0;
			y += 2;
			s++;
			continue;
		}
		if (*s == ' ') {
			top = 0, bot = 0;
			s++;
		} else if (memcmp(s, "\xe2\x96\x88", 3) == 0) {
			top = 1, bot = 1;
			s += 3;
		} else if (memcmp(s, "\xe2\x96\x80", 3) == 0) {
			top = 1, bot = 0;
			s += 3;
		} else if (memcmp(s, "\xe2\x96\x84", 3) == 0) {
			top = 0, bot = 1;
			s += 3;
		} else {
			fail_msg("unexpected byte 0x%02x", (unsigned char)*s);
			return -1;
		}
		assert_true(x < maxw && y + 1 < maxw);
		/* A glyph is a LIGHT module: the output is inverted. */
		grid[y * maxw + x] = !top;
		grid[(y + 1) * maxw + x] = !bot;
		x++;
	}
	assert_int_equal(x, 0);		/* ends with a newline */
	*rows = y;
	return width;
}

/* Parses the SVG path ("M x y h n v1 h-n z" per run) into a grid. */
static int
qr_svg_grid(const char *svg, uint8_t *grid, int maxw)
{
	const char *p;
	int n, n2, x, y, k, run, run2, cnt = 0;

	p = strstr(svg, "viewBox=\"0 0 ");
	assert_non_null(p);
	assert_int_equal(sscanf(p, "viewBox=\"0 0 %d %d\"", &n, &n2), 2);
	assert_int_equal(n, n2);
	assert_true(n <= maxw);
	p = strstr(svg, " d=\"");
	assert_non_null(p);
	p += 4;
	while (*p == 'M') {
		assert_int_equal(sscanf(p, "M%d %dh%dv1h-%dz%n", &x, &y, &run,
		    &run2, &k), 4);
		assert_int_equal(run, run2);
		/* Inside the 4-module quiet zone. */
		assert_true(x >= 4 && y >= 4 && run >= 1 && x + run <= n - 4 &&
		    y < n - 4);
		for (; run > 0; run--, x++)
			grid[y * maxw + x] = 1;
		p += k;
		cnt++;
	}
	assert_int_equal(*p, '"');
	assert_true(cnt > 0);
	return n;
}

static void
test_qr_shapes(void **state)
{
	enum { MAXW = 200 };
	struct veil_card c;
	char uri[VEIL_CARD_URI_MAX], *txt, *svg;
	uint8_t *tg, *sg;
	int tw, rows, sw, w, x, y;

	(void)state;
	make_card(&c);
	strcpy(c.hints, "mqtt://127.0.0.1:1883");
	assert_true(veil_card_encode(&c, uri, sizeof(uri)) > 0);
	assert_int_equal(veil_qr_utf8(uri, &txt), VEIL_OK);
	assert_int_equal(veil_qr_svg(uri, &svg), VEIL_OK);
	assert_non_null(txt);
	assert_non_null(svg);

	tg = calloc(MAXW * MAXW, 1);
	sg = calloc(MAXW * MAXW, 1);
	assert_non_null(tg);
	assert_non_null(sg);
	tw = qr_utf8_grid(txt, tg, MAXW, &rows);
	sw = qr_svg_grid(svg, sg, MAXW);

	/* QR sizes are 17 + 4v; quiet zones 2 (text) and 4 (SVG). */
	w = tw - 4;
	assert_true(w >= 21 && (w - 17) % 4 == 0);
	assert_int_equal(sw - 8, w);
	assert_int_equal(rows, tw + 1);	/* odd size: one spare half row */
	assert_memory_equal(svg, "<svg", 4);
	assert_non_null(strstr(svg, "</svg>"));
	assert_null(strstr(strstr(svg, "<path") + 1, "<path"));

	for (y = 0; y < tw; y++)
		for (x = 0; x < tw; x++) {
			int in = x >= 2 && y >= 2 && x < tw - 2 && y < tw - 2;
			if (!in) {	/* quiet zone is light */
				assert_int_equal(tg[y * MAXW + x], 0);
				continue;
			}
			/* Both renderings show the same modules. */
			assert_int_equal(tg[y * MAXW + x],
			    sg[(y + 2) * MAXW + x + 2]);
		}
	/* The top-left finder: 7 dark, then the light separator. */
	for (x = 0; x < 7; x++)
		assert_int_equal(sg[4 * MAXW + 4 + x], 1);
	assert_int_equal(sg[4 * MAXW + 11], 0);
	assert_int_equal(sg[5 * MAXW + 5], 0);
	assert_int_equal(sg[6 * MAXW + 6], 1);

	free(tg);
	free(sg);
	free(txt);
	free(svg);
}

static void
test_qr_errors(void **state)
{
	char *out = (char *)1, *big;

	(void)state;
	big = malloc(4000);
	assert_non_null(big);
	memset(big, 'a', 3999);
	big[3999] = '\0';
	assert_int_equal(veil_qr_utf8(big, &out), VEIL_ERR_TOOBIG);
	assert_null(out);
	out = (char *)1;
	assert_int_equal(veil_qr_svg(big, &out), VEIL_ERR_TOOBIG);
	assert_null(out);
	/* The largest card URI still fits. */
	big[VEIL_CARD_URI_MAX - 1] = '\0';
	assert_int_equal(veil_qr_utf8(big, &out), VEIL_OK);
	free(out);
	assert_int_equal(veil_qr_svg(big, &out), VEIL_OK);
	free(out);
	free(big);
	assert_true(veil_qr_utf8("", &out) < 0);
	assert_true(veil_qr_utf8(NULL, &out) < 0);
	assert_true(veil_qr_svg("x", NULL) < 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_roundtrip_plain),
		cmocka_unit_test(test_roundtrip_full),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_encode_layout),
		cmocka_unit_test(test_decode_checksum),
		cmocka_unit_test(test_decode_truncated),
		cmocka_unit_test(test_decode_version_flags),
		cmocka_unit_test(test_decode_toobig),
		cmocka_unit_test(test_decode_trailing),
		cmocka_unit_test(test_decode_bad_name),
		cmocka_unit_test(test_decode_prefix_alphabet),
		cmocka_unit_test(test_decode_mutations),
		cmocka_unit_test(test_qr_shapes),
		cmocka_unit_test(test_qr_errors),
	};
	size_t i;

	tu_deterministic_rng("test_card");
	if (veil_init() != VEIL_OK)
		return 1;
	for (i = 0; i < sizeof(pk32); i++)
		pk32[i] = (uint8_t)(0xa0 + i);
	return cmocka_run_group_tests_name("card", tests, NULL, NULL);
}
