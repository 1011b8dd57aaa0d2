/* libveil: the bodies of FILE messages (offer, chunk, end) and the rule for a file name a receiver may use. */
#include <string.h>

#include "file.h"
#include "frame.h"
#include "wire.h"

#define CHUNK_TARGET	65536	/* bytes of one CHUNK message, roughly */

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint64_t
veil_file_chunks(uint64_t size, uint32_t chunk)
{
	if (chunk == 0)
		return 0;
	return size / chunk + (size % chunk != 0);
}

uint32_t
veil_file_chunk_size(size_t frame_size)
{
	size_t cap = veil_frame_capacity(frame_size, 0), n;

	if (cap <= VEIL_FILE_CHUNK_HDR)
		return 0;
	n = CHUNK_TARGET / cap;
	if (n == 0)
		n = 1;
	return (uint32_t)(n * cap - VEIL_FILE_CHUNK_HDR);
}

static int
decode_offer(struct wire_reader *r, struct veil_file_msg *m)
{
	const uint8_t *name, *p;
	size_t n;

	m->size = wire_u64(r);
	p = wire_take(r, 4);
	m->chunk = p != NULL ? get32(p) : 0;
	if (wire_copy(r, m->hash, sizeof m->hash) == -1)
		return VEIL_ERR_TRUNCATED;
	n = wire_u8(r);
	if (r->err || (name = wire_take(r, n)) == NULL)
		return VEIL_ERR_TRUNCATED;
	if (r->left != 0)
		return VEIL_ERR_FORMAT;
	if (n == 0 || memchr(name, '\0', n) != NULL)
		return VEIL_ERR_FORMAT;
	if (m->chunk == 0 || m->chunk > VEIL_FILE_CHUNK_MAX ||
	    veil_file_chunks(m->size, m->chunk) > UINT32_MAX)
		return VEIL_ERR_FORMAT;
	memcpy(m->name, name, n);
	m->name[n] = '\0';
	return VEIL_OK;
}

int
veil_file_decode(const uint8_t *body, size_t len, struct veil_file_msg *out)
{
	struct wire_reader r;
	int rc = VEIL_OK;

	memset(out, 0, sizeof *out);
	if (body == NULL && len != 0)
		return VEIL_ERR_INVAL;
	wire_reader_init(&r, body, len);
	out->kind = wire_u8(&r);
	if (wire_copy(&r, out->id, sizeof out->id) == -1)
		rc = VEIL_ERR_TRUNCATED;
	else switch (out->kind) {
	case VEIL_FILE_OFFER:
		rc = decode_offer(&r, out);
		break;
	case VEIL_FILE_CHUNK: {
		const uint8_t *p = wire_take(&r, 4);

		if (p == NULL) {
			rc = VEIL_ERR_TRUNCATED;
			break;
		}
		out->index = get32(p);
		out->len = r.left;
		out->data = r.p;
		if (out->len == 0 || out->len > VEIL_FILE_CHUNK_MAX)
			rc = VEIL_ERR_FORMAT;
		break;
	}
	case VEIL_FILE_END:
		out->status = wire_u8(&r);
		if (r.err)
			rc = VEIL_ERR_TRUNCATED;
		else if (r.left != 0)
			rc = VEIL_ERR_FORMAT;
		break;
	default:
		rc = len == 0 ? VEIL_ERR_TRUNCATED : VEIL_ERR_FORMAT;
		break;
	}
	if (rc != VEIL_OK) {
		memset(out, 0, sizeof *out);
		out->data = NULL;
	}
	return rc;
}

int
veil_file_offer_encode(uint8_t *out, size_t outlen,
    const uint8_t id[VEIL_FILE_ID_BYTES], uint64_t size, uint32_t chunk,
    const uint8_t hash[VEIL_FILE_HASH_BYTES], const char *name)
{
	struct wire_writer w;
	uint8_t b4[4];
	size_t n;

	if (out == NULL || id == NULL || hash == NULL || name == NULL)
		return VEIL_ERR_INVAL;
	n = strnlen(name, VEIL_FILE_NAME_MAX + 1);
	if (n == 0 || n > VEIL_FILE_NAME_MAX || chunk == 0 ||
	    chunk > VEIL_FILE_CHUNK_MAX ||
	    veil_file_chunks(size, chunk) > UINT32_MAX)
		return VEIL_ERR_INVAL;
	wire_writer_init(&w, out, outlen);
	wire_w8(&w, VEIL_FILE_OFFER);
	wire_write(&w, id, VEIL_FILE_ID_BYTES);
	wire_w64(&w, size);
	put32(b4, chunk);
	wire_write(&w, b4, 4);
	wire_write(&w, hash, VEIL_FILE_HASH_BYTES);
	wire_w8(&w, (uint8_t)n);
	wire_write(&w, name, n);
	return w.err ? VEIL_ERR_TOOBIG : (int)w.len;
}

int
veil_file_chunk_header(uint8_t out[VEIL_FILE_CHUNK_HDR],
    const uint8_t id[VEIL_FILE_ID_BYTES], uint32_t index)
{
	if (out == NULL || id == NULL)
		return VEIL_ERR_INVAL;
	out[0] = VEIL_FILE_CHUNK;
	memcpy(out + 1, id, VEIL_FILE_ID_BYTES);
	put32(out + 1 + VEIL_FILE_ID_BYTES, index);
	return VEIL_FILE_CHUNK_HDR;
}

int
veil_file_end_encode(uint8_t out[VEIL_FILE_END_BYTES],
    const uint8_t id[VEIL_FILE_ID_BYTES], uint8_t status)
{
	if (out == NULL || id == NULL)
		return VEIL_ERR_INVAL;
	out[0] = VEIL_FILE_END;
	memcpy(out + 1, id, VEIL_FILE_ID_BYTES);
	out[1 + VEIL_FILE_ID_BYTES] = status;
	return VEIL_FILE_END_BYTES;
}

/* Code points that are there to be unseen or to reorder what is seen:
 * with them "photo_gpj.exe" can read as "photo_exe.jpg". */
static int
invisible(uint32_t cp)
{
	return (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

int
veil_file_name_check(const char *name)
{
	const uint8_t *s = (const uint8_t *)name;
	size_t len, i, n, k;
	uint32_t cp;

	if (name == NULL)
		return VEIL_ERR_INVAL;
	len = strnlen(name, VEIL_FILE_NAME_MAX + 1);
	if (len == 0 || len > VEIL_FILE_NAME_MAX)
		return VEIL_ERR_INVAL;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return VEIL_ERR_INVAL;
	/* Strict UTF-8 without C0, C1 or DEL first; then the code points. */
	if (!wire_text_valid(s, len))
		return VEIL_ERR_INVAL;
	for (i = 0; i < len; i += n) {
		if (s[i] == '/' || s[i] == '\\')
			return VEIL_ERR_INVAL;
		n = s[i] < 0x80 ? 1 : s[i] < 0xe0 ? 2 : s[i] < 0xf0 ? 3 : 4;
		cp = n == 1 ? s[i] : n == 2 ? (s[i] & 0x1fu) : n == 3 ?
		    (s[i] & 0x0fu) : (s[i] & 0x07u);
		for (k = 1; k < n; k++)
			cp = cp << 6 | (s[i + k] & 0x3fu);
		if (invisible(cp))
			return VEIL_ERR_INVAL;
	}
	return VEIL_OK;
}
