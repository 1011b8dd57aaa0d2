/* libveil ids: random inbox/contact IDs, derived inbox topics, their text form, and MQTT client IDs. */
#include <string.h>

#include <sodium.h>

#include "ids.h"

#include "wire.h"

#define ID_B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define TOPIC_CTX "veil-inbox-v2"

static int
id_bits_valid(unsigned bits)
{
	return bits >= VEIL_ID_MIN_BITS && bits <= VEIL_ID_MAX_BITS &&
	    bits % 8 == 0;
}

int
veil_id_new(struct veil_id *id, unsigned bits)
{
	if (id == NULL)
		return VEIL_ERR_INVAL;
	memset(id, 0, sizeof(*id));
	if (bits == 0)
		bits = VEIL_ID_DEFAULT_BITS;
	if (!id_bits_valid(bits))
		return VEIL_ERR_INVAL;
	id->len = (uint8_t)(bits / 8);
	randombytes_buf(id->b, id->len);
	return VEIL_OK;
}

int
veil_id_to_text(const struct veil_id *id, char *out, size_t outlen)
{
	size_t need;

	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (id == NULL || out == NULL || !veil_id_is_set(id))
		return VEIL_ERR_INVAL;
	need = sodium_base64_ENCODED_LEN(id->len, ID_B64_VARIANT);
	if (outlen < need)
		return VEIL_ERR_TOOBIG;
	sodium_bin2base64(out, outlen, id->b, id->len, ID_B64_VARIANT);
	return VEIL_OK;
}

static int
id_b64u_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

/*
 * The text comes from the network or a user, so the alphabet is checked
 * here first: libsodium 1.0.18 was seen to decode bytes >= 0x80 (UTF-8
 * "\xc3\xa9") as if they were base64 characters.  sodium_base642bin() rejects
 * a dangling character and non-zero leftover bits, so each ID has exactly
 * one text form.
 */
int
veil_id_from_text(struct veil_id *id, const char *text)
{
	uint8_t buf[VEIL_ID_MAX_BYTES];
	const char *end = NULL;
	size_t tlen, i, blen = 0;

	if (id == NULL)
		return VEIL_ERR_INVAL;
	memset(id, 0, sizeof(*id));
	if (text == NULL)
		return VEIL_ERR_INVAL;
	tlen = strnlen(text, VEIL_ID_TEXT_MAX);
	if (tlen >= VEIL_ID_TEXT_MAX)
		return VEIL_ERR_FORMAT;
	for (i = 0; i < tlen; i++)
		if (!id_b64u_char(text[i]))
			return VEIL_ERR_FORMAT;
	if (sodium_base642bin(buf, sizeof(buf), text, tlen, NULL, &blen,
	    &end, ID_B64_VARIANT) != 0 || end != text + tlen ||
	    blen < VEIL_ID_MIN_BITS / 8 || blen > VEIL_ID_MAX_BYTES)
		return VEIL_ERR_FORMAT;
	id->len = (uint8_t)blen;
	memcpy(id->b, buf, blen);
	return VEIL_OK;
}

int
veil_id_equal(const struct veil_id *a, const struct veil_id *b)
{
	if (a == NULL || b == NULL || a->len != b->len ||
	    a->len > VEIL_ID_MAX_BYTES)
		return 0;
	return memcmp(a->b, b->b, a->len) == 0;
}

int
veil_id_is_set(const struct veil_id *id)
{
	return id != NULL && id->len >= VEIL_ID_MIN_BITS / 8 &&
	    id->len <= VEIL_ID_MAX_BYTES;
}

int
veil_epoch_len_valid(uint32_t epoch_len)
{
	return epoch_len <= VEIL_EPOCH_MAX;
}

uint64_t
veil_epoch_number(uint64_t t, uint32_t epoch_len)
{
	return epoch_len == 0 ? 0 : t / epoch_len;
}

int
veil_seed_valid(const uint8_t seed[VEIL_SEED_BYTES])
{
	return seed != NULL && !sodium_is_zero(seed, VEIL_SEED_BYTES);
}

int
veil_inbox_valid(const struct veil_inbox *in)
{
	return in != NULL && veil_seed_valid(in->seed) &&
	    veil_epoch_len_valid(in->epoch) && in->period >= 1 &&
	    in->period <= VEIL_EPOCH_MAX;
}

void
veil_seed_new(uint8_t seed[VEIL_SEED_BYTES])
{
	do
		randombytes_buf(seed, VEIL_SEED_BYTES);
	while (sodium_is_zero(seed, VEIL_SEED_BYTES));
}

int
veil_topic_id(const uint8_t seed[VEIL_SEED_BYTES], uint64_t n, struct veil_id *out)
{
	crypto_generichash_state st;
	uint8_t h[crypto_generichash_BYTES], be[8];

	if (out == NULL)
		return VEIL_ERR_INVAL;
	memset(out, 0, sizeof(*out));
	if (!veil_seed_valid(seed))
		return VEIL_ERR_INVAL;
	wire_put64(be, n);
	crypto_generichash_init(&st, seed, VEIL_SEED_BYTES, sizeof(h));
	crypto_generichash_update(&st, (const uint8_t *)TOPIC_CTX,
	    sizeof(TOPIC_CTX) - 1);
	crypto_generichash_update(&st, be, sizeof(be));
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_memzero(&st, sizeof(st));
	out->len = VEIL_TOPIC_BYTES;
	memcpy(out->b, h, VEIL_TOPIC_BYTES);
	sodium_memzero(h, sizeof(h));
	return VEIL_OK;
}

int
veil_topic_text(const uint8_t seed[VEIL_SEED_BYTES], uint64_t n, char *out, size_t outlen)
{
	struct veil_id id;
	int rc;

	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (out == NULL)
		return VEIL_ERR_INVAL;
	if ((rc = veil_topic_id(seed, n, &id)) != VEIL_OK)
		return rc;
	rc = veil_id_to_text(&id, out, outlen);
	sodium_memzero(&id, sizeof(id));
	return rc;
}

/*
 * Smallest n with 62^n >= 2^bits, i.e. ceil(bits / log2(62)), in integer
 * arithmetic: log2(62) = 5.954196310...; no bits in range lies near a
 * rounding boundary at this precision.
 */
static size_t
clientid_len(unsigned bits)
{
	const uint64_t log2_62 = 5954196310ULL;	/* x 1e9 */

	return (size_t)(((uint64_t)bits * 1000000000ULL + log2_62 - 1) /
	    log2_62);
}

int
veil_clientid_new(char out[VEIL_CLIENTID_MAX + 1], unsigned bits)
{
	static const char alphabet[] =
	    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	size_t i, n;

	if (out == NULL)
		return VEIL_ERR_INVAL;
	out[0] = '\0';
	if (bits == 0)
		bits = VEIL_ID_DEFAULT_BITS;
	if (bits < VEIL_ID_MIN_BITS || bits > 136)
		return VEIL_ERR_INVAL;
	n = clientid_len(bits);
	if (n > VEIL_CLIENTID_MAX)
		return VEIL_ERR_INVAL;
	for (i = 0; i < n; i++)
		out[i] = alphabet[randombytes_uniform(62)];
	out[n] = '\0';
	return VEIL_OK;
}
