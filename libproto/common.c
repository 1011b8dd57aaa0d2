/* libveil common: error strings, library initialisation, display-name validation. */
#include <string.h>

#include <sodium.h>

#include "common.h"
#include "wire.h"

const char *
veil_strerror(int err)
{
	switch (err) {
	case VEIL_OK:
		return "Success.";
	case VEIL_ERR_INVAL:
		return "Invalid argument.";
	case VEIL_ERR_NOMEM:
		return "Out of memory, or a size limit was reached.";
	case VEIL_ERR_TRUNCATED:
		return "The input is shorter than its declared length.";
	case VEIL_ERR_CHECKSUM:
		return "The checksum does not match: the card is corrupt or "
		    "was mistyped.";
	case VEIL_ERR_VERSION:
		return "Unknown format version.";
	case VEIL_ERR_EXPIRED:
		return "The card or request has expired.";
	case VEIL_ERR_DECRYPT:
		return "Authentication failed: the data is not for us, or was "
		    "forged.";
	case VEIL_ERR_REPLAY:
		return "The sequence number was already seen or is too old.";
	case VEIL_ERR_STALE:
		return "The update is older than the last accepted one.";
	case VEIL_ERR_SECRET:
		return "The shared secret does not match the stored one.";
	case VEIL_ERR_STATE:
		return "The event is not valid in the current state.";
	case VEIL_ERR_TOOBIG:
		return "A value exceeds its limit.";
	case VEIL_ERR_FORMAT:
		return "Malformed encoding.";
	case VEIL_ERR_PADDING:
		return "The frame has non-zero padding.";
	case VEIL_ERR_TYPE:
		return "Unexpected frame type for this step.";
	case VEIL_ERR_CRYPTO:
		return "A cryptographic primitive failed (weak or invalid key).";
	case VEIL_ERR_DUPLICATE:
		return "The item is already present.";
	case VEIL_ERR_RATCHET:
		return "The key chain is further behind the clock than one call "
		    "may ratchet; call again.";
	case VEIL_ERR_FUTURE:
		return "A timestamp lies too far ahead of our clock.";
	}
	return "Unknown error.";
}

int
veil_init(void)
{
	/* 1 means "already initialised", which is fine. */
	if (sodium_init() < 0)
		return VEIL_ERR_CRYPTO;
	return VEIL_OK;
}

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF.  Without controls, control characters (C0, DEL, C1) are
 * refused too.
 */
static int
utf8_check(const uint8_t *s, size_t len, int controls)
{
	size_t i, n, k;
	uint32_t cp, min;

	for (i = 0; i < len; i += n) {
		uint8_t c = s[i];

		if (c < 0x80) {
			if (!controls && (c < 0x20 || c == 0x7f))
				return 0;
			n = 1;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else
			return 0;	/* continuation, C0/C1, F5+ */
		if (n > len - i)
			return 0;
		for (k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff) ||
		    (!controls && cp >= 0x80 && cp <= 0x9f))
			return 0;
	}
	return 1;
}

int
veil_utf8_valid(const uint8_t *s, size_t len)
{
	return utf8_check(s, len, 1);
}

/* Names and hints are shown in terminals, where control characters could
 * rewrite the screen: they are refused. */
int
wire_text_valid(const uint8_t *s, size_t len)
{
	return utf8_check(s, len, 0);
}

/*
 * Code points that change how a name is shown without being seen: bidi
 * embeddings, overrides and isolates (a name that reads "bob" but sorts
 * and compares as something else, or that reorders the rest of the
 * line), zero-width joiners and spaces, fillers that render as nothing,
 * and tag characters.  A name holding one can pose as another name, so
 * names refuse them; every name on the wire (card, REQUEST, UPDATE's
 * CName) and every local one goes through veil_name_valid().  Variation
 * selectors (emoji presentation) stay allowed: they change a glyph, not
 * which name it is.  Sorted ranges, inclusive.
 */
static const struct {
	uint32_t lo, hi;
} name_invisible[] = {
	{ 0x00ad, 0x00ad },	/* soft hyphen */
	{ 0x034f, 0x034f },	/* combining grapheme joiner */
	{ 0x061c, 0x061c },	/* arabic letter mark */
	{ 0x115f, 0x1160 },	/* hangul choseong and jungseong fillers */
	{ 0x17b4, 0x17b5 },	/* khmer inherent vowels */
	{ 0x180b, 0x180f },	/* mongolian free variation selectors, vowel separator */
	{ 0x200b, 0x200f },	/* zero-width space, non-joiner, joiner, LRM, RLM */
	{ 0x2028, 0x202e },	/* line and paragraph separators, LRE RLE PDF LRO RLO */
	{ 0x2060, 0x206f },	/* word joiner, invisible operators, LRI RLI FSI PDI */
	{ 0x3164, 0x3164 },	/* hangul filler */
	{ 0xfeff, 0xfeff },	/* zero-width no-break space (BOM) */
	{ 0xffa0, 0xffa0 },	/* halfwidth hangul filler */
	{ 0xfff9, 0xfffb },	/* interlinear annotation */
	{ 0x1d173, 0x1d17a },	/* musical symbol formatting */
	{ 0xe0000, 0xe007f },	/* tags */
};

/* 1 if the valid UTF-8 text s (len bytes) holds an invisible code point. */
static int
has_invisible(const uint8_t *s, size_t len)
{
	size_t i = 0, n, k;
	uint32_t cp;

	while (i < len) {
		uint8_t c = s[i];

		n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		cp = n == 1 ? c : n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) :
		    (c & 0x07u);
		for (k = 1; k < n && i + k < len; k++)
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		i += n;
		for (k = 0; k < sizeof(name_invisible) / sizeof(name_invisible[0]);
		    k++) {
			if (cp < name_invisible[k].lo)
				break;
			if (cp <= name_invisible[k].hi)
				return 1;
		}
	}
	return 0;
}

int
veil_name_valid(const char *name)
{
	size_t len;

	if (name == NULL)
		return VEIL_ERR_INVAL;
	len = strnlen(name, VEIL_NAME_MAX + 1);
	if (len == 0)
		return VEIL_ERR_INVAL;
	if (len > VEIL_NAME_MAX)
		return VEIL_ERR_TOOBIG;
	if (!wire_text_valid((const uint8_t *)name, len) ||
	    has_invisible((const uint8_t *)name, len))
		return VEIL_ERR_INVAL;
	return VEIL_OK;
}
