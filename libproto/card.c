/* libveil card: binary layout, checksum and "veil:" URI of the public contact card. */
#include <string.h>

#include <sodium.h>

#include "card.h"
#include "wire.h"

#define CARD_PREFIX "veil:"
#define CARD_PREFIX_LEN (sizeof(CARD_PREFIX) - 1)
#define CARD_CHECK_BYTES 4
#define CARD_B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* version, flags, cidlen, pk, expires, namelen, hintslen */
#define CARD_FIXED (1 + 1 + 1 + VEIL_KEY_BYTES + 8 + 1 + 2)
/* The smallest card that could be valid: shortest ID, one-byte name. */
#define CARD_MIN (CARD_FIXED + VEIL_ID_MIN_BITS / 8 + 1 + CARD_CHECK_BYTES)
#define CARD_MAX (CARD_FIXED + VEIL_ID_MAX_BYTES + VEIL_NAME_MAX + \
    VEIL_HINTS_MAX + CARD_CHECK_BYTES)
#define CARD_B64_MAX ((CARD_MAX * 4 + 2) / 3)

_Static_assert(CARD_PREFIX_LEN + CARD_B64_MAX + 1 <= VEIL_CARD_URI_MAX,
    "VEIL_CARD_URI_MAX too small for the largest card");

static void
card_checksum(uint8_t out[CARD_CHECK_BYTES], const uint8_t *card, size_t len)
{
	uint8_t h[crypto_generichash_BYTES];

	crypto_generichash(h, sizeof(h), card, len, NULL, 0);
	memcpy(out, h, CARD_CHECK_BYTES);
}

int
veil_card_encode(const struct veil_card *c, char *out, size_t outlen)
{
	uint8_t buf[CARD_MAX];
	struct wire_writer w;
	size_t namelen, hintslen, need;
	int rc;

	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (c == NULL || out == NULL)
		return VEIL_ERR_INVAL;
	if (!veil_id_is_set(&c->cid) || (c->flags & ~VEIL_CARD_ONE_TIME))
		return VEIL_ERR_INVAL;
	if ((rc = veil_name_valid(c->name)) != VEIL_OK)
		return rc;
	namelen = strlen(c->name);
	hintslen = strnlen(c->hints, sizeof(c->hints));
	if (hintslen > VEIL_HINTS_MAX)
		return VEIL_ERR_TOOBIG;
	/* Shown to the user like the name: the same rules, minus the
	 * name's length limit (veil_name_valid() stops at 64 bytes). */
	if (!wire_text_valid((const uint8_t *)c->hints, hintslen))
		return VEIL_ERR_INVAL;

	wire_writer_init(&w, buf, sizeof(buf));
	wire_w8(&w, VEIL_CARD_VERSION);
	wire_w8(&w, c->flags);
	wire_w8(&w, c->cid.len);
	wire_write(&w, c->cid.b, c->cid.len);
	wire_write(&w, c->pk, sizeof(c->pk));
	wire_w64(&w, c->expires);
	wire_w8(&w, (uint8_t)namelen);
	wire_write(&w, c->name, namelen);
	wire_w16(&w, (uint16_t)hintslen);
	wire_write(&w, c->hints, hintslen);
	if (w.err || w.len + CARD_CHECK_BYTES > w.cap)
		return VEIL_ERR_TOOBIG;	/* cannot happen: buf sized for max */
	card_checksum(buf + w.len, buf, w.len);
	w.len += CARD_CHECK_BYTES;

	need = CARD_PREFIX_LEN +
	    sodium_base64_ENCODED_LEN(w.len, CARD_B64_VARIANT);
	if (outlen < need)
		return VEIL_ERR_TOOBIG;
	memcpy(out, CARD_PREFIX, CARD_PREFIX_LEN);
	sodium_bin2base64(out + CARD_PREFIX_LEN, outlen - CARD_PREFIX_LEN,
	    buf, w.len, CARD_B64_VARIANT);
	return (int)(need - 1);
}

static int
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' ||
	    ch == '\v' || ch == '\f';
}

static int
is_b64u(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

/* The order of the checks is part of the protocol (docs/protocol.md §3). */
int
veil_card_decode(struct veil_card *c, const char *uri, uint64_t now)
{
	uint8_t buf[CARD_MAX], sum[CARD_CHECK_BYTES];
	struct veil_card t;
	struct wire_reader r;
	const char *s, *e, *end = NULL;
	const uint8_t *p;
	size_t len, i, blen = 0;
	uint8_t version, cidlen, namelen;
	uint16_t hintslen;

	if (c == NULL)
		return VEIL_ERR_INVAL;
	memset(c, 0, sizeof(*c));
	if (uri == NULL)
		return VEIL_ERR_INVAL;

	for (s = uri; is_space(*s); s++)
		;
	for (e = s + strlen(s); e > s && is_space(e[-1]); e--)
		;
	if ((size_t)(e - s) < CARD_PREFIX_LEN ||
	    memcmp(s, CARD_PREFIX, CARD_PREFIX_LEN) != 0)
		return VEIL_ERR_FORMAT;
	s += CARD_PREFIX_LEN;
	len = (size_t)(e - s);
	for (i = 0; i < len; i++)
		if (!is_b64u(s[i]))
			return VEIL_ERR_FORMAT;
	if (len > CARD_B64_MAX)
		return VEIL_ERR_TOOBIG;
	/* Fails on a dangling character or non-zero leftover bits. */
	if (sodium_base642bin(buf, sizeof(buf), s, len, NULL, &blen, &end,
	    CARD_B64_VARIANT) != 0 || end != e)
		return VEIL_ERR_FORMAT;
	if (blen < CARD_MIN)
		return VEIL_ERR_TRUNCATED;

	blen -= CARD_CHECK_BYTES;
	card_checksum(sum, buf, blen);
	if (sodium_memcmp(sum, buf + blen, CARD_CHECK_BYTES) != 0)
		return VEIL_ERR_CHECKSUM;

	memset(&t, 0, sizeof(t));
	wire_reader_init(&r, buf, blen);
	version = wire_u8(&r);
	if (version != VEIL_CARD_VERSION)
		return VEIL_ERR_VERSION;
	t.flags = wire_u8(&r);
	if (t.flags & ~VEIL_CARD_ONE_TIME)
		return VEIL_ERR_FORMAT;

	cidlen = wire_u8(&r);
	if (cidlen > r.left)
		return VEIL_ERR_TRUNCATED;
	if (cidlen > VEIL_ID_MAX_BYTES)
		return VEIL_ERR_TOOBIG;
	if (cidlen < VEIL_ID_MIN_BITS / 8)
		return VEIL_ERR_FORMAT;
	t.cid.len = cidlen;
	if (wire_copy(&r, t.cid.b, cidlen) != 0 ||
	    wire_copy(&r, t.pk, sizeof(t.pk)) != 0)
		return VEIL_ERR_TRUNCATED;
	t.expires = wire_u64(&r);

	namelen = wire_u8(&r);
	if (r.err || namelen > r.left)
		return VEIL_ERR_TRUNCATED;
	if (namelen > VEIL_NAME_MAX)
		return VEIL_ERR_TOOBIG;
	p = wire_take(&r, namelen);
	memcpy(t.name, p, namelen);

	hintslen = wire_u16(&r);
	if (r.err || hintslen > r.left)
		return VEIL_ERR_TRUNCATED;
	if (hintslen > VEIL_HINTS_MAX)
		return VEIL_ERR_TOOBIG;
	p = wire_take(&r, hintslen);
	if (hintslen > 0)
		memcpy(t.hints, p, hintslen);
	if (r.err)
		return VEIL_ERR_TRUNCATED;
	if (r.left != 0)
		return VEIL_ERR_FORMAT;

	/* An embedded NUL would silently shorten the name: refuse it. */
	if (strlen(t.name) != namelen || veil_name_valid(t.name) != VEIL_OK)
		return VEIL_ERR_INVAL;
	if (strlen(t.hints) != hintslen ||
	    !wire_text_valid((const uint8_t *)t.hints, hintslen))
		return VEIL_ERR_INVAL;
	/* expires is the first second at which the card is no longer valid. */
	if (now != 0 && t.expires != 0 && now >= t.expires)
		return VEIL_ERR_EXPIRED;

	*c = t;
	return VEIL_OK;
}
