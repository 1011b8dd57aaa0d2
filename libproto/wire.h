/* libveil internal: big-endian packing and bounded readers shared by the decoders. */
#ifndef VEIL_WIRE_H
#define VEIL_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void
wire_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
wire_put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint16_t
wire_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint64_t
wire_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* A cursor over untrusted input: every take checks the remaining length. */
struct wire_reader {
	const uint8_t *p;
	size_t left;
	int err;		/* sticky: set on the first short read */
};

static inline void
wire_reader_init(struct wire_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->left = len;
	r->err = 0;
}

/* Returns a pointer to n bytes, or NULL (and sets err) when fewer remain. */
static inline const uint8_t *
wire_take(struct wire_reader *r, size_t n)
{
	const uint8_t *p;

	if (r->err || n > r->left) {
		r->err = 1;
		return NULL;
	}
	p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static inline int
wire_copy(struct wire_reader *r, void *dst, size_t n)
{
	const uint8_t *p = wire_take(r, n);

	if (p == NULL)
		return -1;
	memcpy(dst, p, n);
	return 0;
}

static inline uint8_t
wire_u8(struct wire_reader *r)
{
	const uint8_t *p = wire_take(r, 1);
	return p ? p[0] : 0;
}

static inline uint16_t
wire_u16(struct wire_reader *r)
{
	const uint8_t *p = wire_take(r, 2);
	return p ? wire_get16(p) : 0;
}

static inline uint64_t
wire_u64(struct wire_reader *r)
{
	const uint8_t *p = wire_take(r, 8);
	return p ? wire_get64(p) : 0;
}

/* Growing writer into a caller buffer; err set when it would overflow. */
struct wire_writer {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static inline void
wire_writer_init(struct wire_writer *w, uint8_t *buf, size_t cap)
{
	w->p = buf;
	w->len = 0;
	w->cap = cap;
	w->err = 0;
}

static inline void
wire_write(struct wire_writer *w, const void *src, size_t n)
{
	if (w->err || n > w->cap - w->len) {
		w->err = 1;
		return;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static inline void
wire_w8(struct wire_writer *w, uint8_t v)
{
	wire_write(w, &v, 1);
}

static inline void
wire_w16(struct wire_writer *w, uint16_t v)
{
	uint8_t b[2];
	wire_put16(b, v);
	wire_write(w, b, 2);
}

static inline void
wire_w64(struct wire_writer *w, uint64_t v)
{
	uint8_t b[8];
	wire_put64(b, v);
	wire_write(w, b, 8);
}

/*
 * Strict UTF-8 without control characters (common.c): 1 if the len bytes
 * at s are.  Names and card hints, both shown to the user, share it.
 * Hidden: a helper of the library, not part of its ABI.
 */
int	wire_text_valid(const uint8_t *s, size_t len)
	    __attribute__((visibility("hidden")));

#endif
