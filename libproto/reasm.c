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
 *
 * With per-sender limits (veil_reasm_limit_peer) every sender that holds a
 * partial message has an account: a sender over its own limit loses its
 * own oldest message, and when the totals are reached the sender holding
 * the most bytes loses its oldest.  A sender can then only ever evict
 * another's message by holding less than it, whatever it sends.  Senders
 * without partial messages cost nothing.
 */
struct rpeer {
	struct rpeer *next;
	uint64_t peer;
	size_t msgs, bytes;
};

struct rmsg {
	struct rmsg *prev, *next;
	struct rpeer *acct;	/* with per-sender limits, else NULL */
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
	size_t peer_bytes, peer_msgs;	/* 0: no per-sender limits */
	struct rpeer *peers;		/* senders holding partial messages */
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

int
veil_reasm_limit_peer(struct veil_reasm *r, size_t peer_bytes, size_t peer_msgs)
{
	if (r == NULL || peer_bytes == 0 || peer_msgs == 0 || r->head != NULL)
		return VEIL_ERR_INVAL;
	r->peer_bytes = peer_bytes;
	r->peer_msgs = peer_msgs;
	return VEIL_OK;
}

static struct rpeer *
rpeer_find(struct veil_reasm *r, uint64_t peer)
{
	struct rpeer *p;

	for (p = r->peers; p != NULL; p = p->next)
		if (p->peer == peer)
			return p;
	return NULL;
}

static void
rpeer_free(struct veil_reasm *r, struct rpeer *p)
{
	struct rpeer **pp;

	for (pp = &r->peers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			free(p);
			return;
		}
}

static void
rmsg_unlink(struct veil_reasm *r, struct rmsg *m)
{
	if (m->acct != NULL) {
		m->acct->msgs--;
		m->acct->bytes -= m->size;
		if (m->acct->msgs == 0)
			rpeer_free(r, m->acct);
		m->acct = NULL;
	}
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

/* The oldest partial message of peer (acct), or of anyone (NULL). */
static struct rmsg *
rmsg_oldest(struct veil_reasm *r, const struct rpeer *acct)
{
	struct rmsg *m;

	for (m = r->head; m != NULL; m = m->next)
		if (acct == NULL || m->acct == acct)
			return m;
	return NULL;
}

/* Whose message goes when the totals are reached: without per-sender
 * limits the oldest of all, else the oldest of the largest holder. */
static struct rmsg *
rmsg_victim(struct veil_reasm *r)
{
	struct rpeer *p, *big = NULL;

	if (r->peer_bytes == 0)
		return r->head;
	for (p = r->peers; p != NULL; p = p->next)
		if (big == NULL || p->bytes > big->bytes)
			big = p;
	return big != NULL ? rmsg_oldest(r, big) : r->head;
}

/*
 * Room for a new message of need bytes from peer: the peer's own limits
 * first (its own oldest go), then the totals (the largest holder's oldest
 * go).  Its account is returned in *acct (created if it had none).
 */
static int
make_room(struct veil_reasm *r, uint64_t peer, size_t need, struct rpeer **acct)
{
	struct rpeer *p = NULL;
	struct rmsg *m;

	*acct = NULL;
	if (need > r->max_bytes || (r->peer_bytes != 0 && need > r->peer_bytes))
		return VEIL_ERR_TOOBIG;
	if (r->peer_bytes != 0 && (p = rpeer_find(r, peer)) != NULL)
		while (p->msgs >= r->peer_msgs || p->bytes + need > r->peer_bytes) {
			int last = p->msgs == 1;

			rmsg_drop(r, rmsg_oldest(r, p));
			if (last) {	/* its account went with it */
				p = NULL;
				break;
			}
		}
	while (r->head != NULL && (r->pending >= r->max_msgs ||
	    r->bytes + need > r->max_bytes)) {
		m = rmsg_victim(r);
		if (p != NULL && m->acct == p && p->msgs == 1)
			p = NULL;
		rmsg_drop(r, m);
	}
	if (r->peer_bytes != 0 && p == NULL) {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return VEIL_ERR_NOMEM;
		p->peer = peer;
		p->next = r->peers;
		r->peers = p;
	}
	*acct = p;
	return VEIL_OK;
}

static struct rmsg *
rmsg_new(struct veil_reasm *r, uint64_t peer, const struct veil_frame_hdr *h,
    size_t cap, uint64_t now, struct rpeer *acct)
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
	if ((m->acct = acct) != NULL) {
		acct->msgs++;
		acct->bytes += m->size;
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
		struct rpeer *acct;

		if (h->frag_cnt == 1)
			return complete_single(h, body, out, outlen);
		need = (size_t)h->frag_cnt * cap;
		if ((rc = make_room(r, peer, need, &acct)) < 0)
			return rc;
		if ((m = rmsg_new(r, peer, h, cap, now, acct)) == NULL) {
			if (acct != NULL && acct->msgs == 0)
				rpeer_free(r, acct);
			return VEIL_ERR_NOMEM;
		}
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

size_t
veil_reasm_peer_bytes(const struct veil_reasm *r, uint64_t peer)
{
	const struct rmsg *m;
	size_t n = 0;

	if (r == NULL)
		return 0;
	for (m = r->head; m != NULL; m = m->next)
		if (m->peer == peer)
			n += m->size;
	return n;
}
