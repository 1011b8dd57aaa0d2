/* libveil reasm: bounded reassembly of multi-frame messages per (sender, message ID). */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "reasm.h"

/*
 * Partial messages live on one list in arrival order, oldest first, which
 * is the eviction order.  Lookup is a linear scan: the list is bounded by
 * max_msgs, which is small (a few dozen partial messages in practice).
 * Each message reserves count * cap bytes up front, and that reservation
 * is what max_bytes bounds: it is the memory actually held.
 */
struct rmsg {
	struct rmsg *prev, *next;
	uint64_t peer;
	uint64_t first;		/* caller's clock at the first fragment */
	uint8_t msgid[VEIL_MSGID_BYTES];
	uint8_t type;
	uint16_t count;
	uint16_t got;
	size_t cap;
	size_t total;		/* known once the final fragment arrived */
	size_t size;		/* bytes reserved: count * cap */
	uint8_t *seen;		/* bitmap of received fragment indexes */
	uint8_t *buf;
};

struct veil_reasm {
	struct rmsg *head, *tail;
	size_t max_bytes, max_msgs;
	size_t pending, bytes;
};

struct veil_reasm *
veil_reasm_new(size_t max_bytes, size_t max_msgs)
{
	struct veil_reasm *r;

	if (max_bytes == 0 || max_msgs == 0)
		return NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->max_bytes = max_bytes;
	r->max_msgs = max_msgs;
	return r;
}

static void
rmsg_unlink(struct veil_reasm *r, struct rmsg *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		r->head = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	else
		r->tail = m->prev;
	r->pending--;
	r->bytes -= m->size;
}

/* Unlinks and frees m; the partial body is plaintext and is wiped. */
static void
rmsg_drop(struct veil_reasm *r, struct rmsg *m)
{
	rmsg_unlink(r, m);
	if (m->buf != NULL) {
		sodium_memzero(m->buf, m->size);
		free(m->buf);
	}
	free(m->seen);
	free(m);
}

void
veil_reasm_free(struct veil_reasm *r)
{
	if (r == NULL)
		return;
	while (r->head != NULL)
		rmsg_drop(r, r->head);
	free(r);
}

static struct rmsg *
rmsg_find(struct veil_reasm *r, uint64_t peer, const uint8_t *msgid)
{
	struct rmsg *m;

	for (m = r->head; m != NULL; m = m->next)
		if (m->peer == peer &&
		    memcmp(m->msgid, msgid, VEIL_MSGID_BYTES) == 0)
			return m;
	return NULL;
}

/* Checks one fragment on its own: index, length, and the size it implies. */
static int
frag_check(const struct veil_frame_hdr *h, size_t cap)
{
	uint64_t min_total;

	if (h->frag_cnt < 1 || h->frag_idx >= h->frag_cnt || h->len > cap)
		return VEIL_ERR_FORMAT;
	if (h->frag_idx + 1 < h->frag_cnt) {
		if (h->len != cap)
			return VEIL_ERR_FORMAT;
	} else if (h->frag_cnt > 1 && h->len == 0)
		return VEIL_ERR_FORMAT;	/* a sender never adds an empty tail */
	/* The smallest body this count allows (a 1-byte last fragment),
	 * or the exact one once the last fragment is here. */
	min_total = (uint64_t)(h->frag_cnt - 1) * cap;
	if (h->frag_idx + 1 == h->frag_cnt)
		min_total += h->len;
	else if (h->frag_cnt > 1)
		min_total += 1;
	if (min_total > VEIL_MESSAGE_MAX)
		return VEIL_ERR_TOOBIG;
	return VEIL_OK;
}

static int
complete_single(const struct veil_frame_hdr *h, const uint8_t *body,
    uint8_t **out, size_t *outlen)
{
	/* malloc(0) may return NULL: always ask for one byte. */
	if ((*out = malloc(h->len ? h->len : 1)) == NULL)
		return VEIL_ERR_NOMEM;
	if (h->len > 0)
		memcpy(*out, body, h->len);
	*outlen = h->len;
	return 1;
}

static struct rmsg *
rmsg_new(struct veil_reasm *r, uint64_t peer, const struct veil_frame_hdr *h,
    size_t cap, uint64_t now)
{
	struct rmsg *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->size = (size_t)h->frag_cnt * cap;
	if ((m->buf = malloc(m->size)) == NULL ||
	    (m->seen = calloc(((size_t)h->frag_cnt + 7) / 8, 1)) == NULL) {
		free(m->buf);
		free(m);
		return NULL;
	}
	m->peer = peer;
	m->first = now;
	memcpy(m->msgid, h->msgid, VEIL_MSGID_BYTES);
	m->type = h->type;
	m->count = h->frag_cnt;
	m->cap = cap;
	m->prev = r->tail;
	if (r->tail != NULL)
		r->tail->next = m;
	else
		r->head = m;
	r->tail = m;
	r->pending++;
	r->bytes += m->size;
	return m;
}

int
veil_reasm_add(struct veil_reasm *r, uint64_t peer, const struct veil_frame_hdr *h,
    const uint8_t *body, size_t cap, uint64_t now, uint8_t **out, size_t *outlen)
{
	struct rmsg *m;
	size_t need, idx;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	if (r == NULL || h == NULL || out == NULL || outlen == NULL ||
	    (h->len > 0 && body == NULL) || cap == 0 ||
	    cap > veil_frame_capacity(VEIL_FRAME_MAX, 0))
		return VEIL_ERR_INVAL;
	if ((rc = frag_check(h, cap)) < 0)
		return rc;

	m = rmsg_find(r, peer, h->msgid);
	if (m != NULL && (m->count != h->frag_cnt || m->type != h->type ||
	    m->cap != cap))
		return VEIL_ERR_FORMAT;
	if (m == NULL) {
		if (h->frag_cnt == 1)
			return complete_single(h, body, out, outlen);
		need = (size_t)h->frag_cnt * cap;
		if (need > r->max_bytes)
			return VEIL_ERR_TOOBIG;
		while (r->head != NULL && (r->pending >= r->max_msgs ||
		    r->bytes + need > r->max_bytes))
			rmsg_drop(r, r->head);
		if ((m = rmsg_new(r, peer, h, cap, now)) == NULL)
			return VEIL_ERR_NOMEM;
	}

	idx = h->frag_idx;
	if (m->seen[idx / 8] & (1u << (idx % 8)))
		return 0;
	m->seen[idx / 8] |= (uint8_t)(1u << (idx % 8));
	m->got++;
	if (h->len > 0)
		memcpy(m->buf + idx * cap, body, h->len);
	if (idx + 1 == m->count)
		m->total = idx * cap + h->len;
	if (m->got < m->count)
		return 0;

	/* Complete: hand the buffer over (it is at least total bytes). */
	*out = m->buf;
	*outlen = m->total;
	m->buf = NULL;
	rmsg_drop(r, m);
	return 1;
}

size_t
veil_reasm_expire(struct veil_reasm *r, uint64_t now, uint64_t max_age)
{
	struct rmsg *m, *next;
	uint64_t limit;
	size_t n = 0;

	if (r == NULL || now < max_age)
		return 0;
	limit = now - max_age;
	for (m = r->head; m != NULL; m = next) {
		next = m->next;
		if (m->first < limit) {
			rmsg_drop(r, m);
			n++;
		}
	}
	return n;
}

void
veil_reasm_forget(struct veil_reasm *r, uint64_t peer)
{
	struct rmsg *m, *next;

	if (r == NULL)
		return;
	for (m = r->head; m != NULL; m = next) {
		next = m->next;
		if (m->peer == peer)
			rmsg_drop(r, m);
	}
}

size_t
veil_reasm_pending(const struct veil_reasm *r)
{
	return r == NULL ? 0 : r->pending;
}

size_t
veil_reasm_bytes(const struct veil_reasm *r)
{
	return r == NULL ? 0 : r->bytes;
}
