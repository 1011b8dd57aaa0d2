/* Tests for libproto reasm: ordering, duplicates, bounds, expiry and per-sender separation. */
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

#define CAP 184		/* capacity of a 256-byte AEAD frame */

static void
frag(struct veil_frame_hdr *h, const uint8_t *msgid, uint8_t type,
    uint16_t idx, uint16_t cnt, uint16_t len)
{
	memset(h, 0, sizeof(*h));
	h->type = type;
	memcpy(h->msgid, msgid, VEIL_MSGID_BYTES);
	h->frag_idx = idx;
	h->frag_cnt = cnt;
	h->len = len;
}

/* Fragment idx of a body of len bytes split at CAP (protocol.md §2). */
static int
add_part(struct veil_reasm *r, uint64_t peer, const uint8_t *msgid,
    const uint8_t *body, size_t len, uint16_t idx, uint64_t now,
    uint8_t **out, size_t *outlen)
{
	struct veil_frame_hdr h;
	uint16_t cnt = (uint16_t)(len == 0 ? 1 : (len + CAP - 1) / CAP);
	size_t off = (size_t)idx * CAP;
	size_t n = len - off < CAP ? len - off : CAP;

	frag(&h, msgid, VEIL_T_FILE, idx, cnt, (uint16_t)n);
	return veil_reasm_add(r, peer, &h, body + off, CAP, now, out, outlen);
}

static void
test_in_order(void **state)
{
	struct veil_reasm *r;
	uint8_t msgid[16], body[CAP * 2 + 50], *out;
	size_t outlen;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	assert_non_null(r);
	veil_msgid_new(msgid);
	randombytes_buf(body, sizeof(body));
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 0, 10, &out,
	    &outlen), 0);
	assert_null(out);
	assert_int_equal(veil_reasm_pending(r), 1);
	assert_int_equal(veil_reasm_bytes(r), 3 * CAP);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 1, 10, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 2, 10, &out,
	    &outlen), 1);
	assert_non_null(out);
	assert_int_equal(outlen, sizeof(body));
	assert_memory_equal(out, body, sizeof(body));
	free(out);
	assert_int_equal(veil_reasm_pending(r), 0);
	assert_int_equal(veil_reasm_bytes(r), 0);
	veil_reasm_free(r);
}

static void
test_reverse_order(void **state)
{
	struct veil_reasm *r;
	uint8_t msgid[16], body[CAP * 5], *out;
	size_t outlen;
	int i;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	veil_msgid_new(msgid);
	randombytes_buf(body, sizeof(body));
	for (i = 4; i > 0; i--)
		assert_int_equal(add_part(r, 1, msgid, body, sizeof(body),
		    (uint16_t)i, 10, &out, &outlen), 0);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 0, 10, &out,
	    &outlen), 1);
	assert_int_equal(outlen, sizeof(body));
	assert_memory_equal(out, body, sizeof(body));
	free(out);
	veil_reasm_free(r);
}

static void
test_single_frame(void **state)
{
	struct veil_reasm *r;
	struct veil_frame_hdr h;
	uint8_t msgid[16], body[CAP], *out;
	size_t outlen;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	veil_msgid_new(msgid);
	randombytes_buf(body, sizeof(body));
	frag(&h, msgid, VEIL_T_TEXT, 0, 1, 17);
	assert_int_equal(veil_reasm_add(r, 3, &h, body, CAP, 0, &out, &outlen),
	    1);
	assert_int_equal(outlen, 17);
	assert_memory_equal(out, body, 17);
	free(out);
	/* an empty body is a message too */
	frag(&h, msgid, VEIL_T_TEXT, 0, 1, 0);
	assert_int_equal(veil_reasm_add(r, 3, &h, NULL, CAP, 0, &out, &outlen),
	    1);
	assert_non_null(out);
	assert_int_equal(outlen, 0);
	free(out);
	assert_int_equal(veil_reasm_pending(r), 0);
	veil_reasm_free(r);
}

static void
test_duplicate(void **state)
{
	struct veil_reasm *r;
	uint8_t msgid[16], body[CAP * 3], *out;
	size_t outlen;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	veil_msgid_new(msgid);
	randombytes_buf(body, sizeof(body));
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 1, 0, &out,
	    &outlen), 0);
	/* a duplicate must not count towards completion */
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 1, 0, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 1, 0, &out,
	    &outlen), 0);
	assert_int_equal(veil_reasm_pending(r), 1);
	assert_int_equal(veil_reasm_bytes(r), 3 * CAP);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 0, 0, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 2, 0, &out,
	    &outlen), 1);
	assert_memory_equal(out, body, sizeof(body));
	free(out);
	veil_reasm_free(r);
}

static void
test_missing_and_expiry(void **state)
{
	struct veil_reasm *r;
	uint8_t msgid[16], other[16], body[CAP * 4], *out;
	size_t outlen;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	veil_msgid_new(msgid);
	veil_msgid_new(other);
	randombytes_buf(body, sizeof(body));
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 0, 100,
	    &out, &outlen), 0);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 1, 100,
	    &out, &outlen), 0);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 3, 130,
	    &out, &outlen), 0);
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 3, 130,
	    &out, &outlen), 0);
	assert_int_equal(add_part(r, 1, other, body, sizeof(body), 0, 150,
	    &out, &outlen), 0);
	assert_int_equal(veil_reasm_pending(r), 2);

	/* age counts from the first fragment: 100 is not before 160 - 60 */
	assert_int_equal(veil_reasm_expire(r, 160, 60), 0);
	assert_int_equal(veil_reasm_expire(r, 5, 60), 0);
	assert_int_equal(veil_reasm_pending(r), 2);
	assert_int_equal(veil_reasm_expire(r, 161, 60), 1);
	assert_int_equal(veil_reasm_pending(r), 1);
	assert_int_equal(veil_reasm_bytes(r), 4 * CAP);

	/* the missing fragment arrives late: a new partial, not a message */
	assert_int_equal(add_part(r, 1, msgid, body, sizeof(body), 2, 170,
	    &out, &outlen), 0);
	assert_null(out);
	assert_int_equal(veil_reasm_pending(r), 2);
	assert_int_equal(veil_reasm_expire(r, 1000, 60), 2);
	assert_int_equal(veil_reasm_pending(r), 0);
	assert_int_equal(veil_reasm_bytes(r), 0);
	veil_reasm_free(r);
}

/* The oldest partial goes first, whichever bound is hit. */
static void
test_memory_bound(void **state)
{
	struct veil_reasm *r;
	uint8_t id[5][16], body[CAP * 2], *out;
	size_t outlen;
	int i;

	(void)state;
	randombytes_buf(body, sizeof(body));
	for (i = 0; i < 5; i++)
		veil_msgid_new(id[i]);

	/* room for three 2-fragment messages by bytes */
	r = veil_reasm_new(3 * 2 * CAP, 100);
	for (i = 0; i < 3; i++)
		assert_int_equal(add_part(r, 1, id[i], body, sizeof(body), 0,
		    (uint64_t)i, &out, &outlen), 0);
	assert_int_equal(veil_reasm_pending(r), 3);
	assert_int_equal(veil_reasm_bytes(r), 6 * CAP);
	assert_int_equal(add_part(r, 1, id[3], body, sizeof(body), 0, 3, &out,
	    &outlen), 0);
	assert_int_equal(veil_reasm_pending(r), 3);
	assert_true(veil_reasm_bytes(r) <= 6 * CAP);
	/* id[0] was evicted: its second half does not complete it */
	assert_int_equal(add_part(r, 1, id[0], body, sizeof(body), 1, 4, &out,
	    &outlen), 0);
	/* ... which evicted id[1], whose late half evicts id[2]; id[3]
	 * survives */
	assert_int_equal(add_part(r, 1, id[1], body, sizeof(body), 1, 4, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 1, id[3], body, sizeof(body), 1, 5, &out,
	    &outlen), 1);
	free(out);
	/* a message that can never fit */
	assert_int_equal(add_part(r, 1, id[4], body, 6 * CAP + 1, 0, 6, &out,
	    &outlen), VEIL_ERR_TOOBIG);
	veil_reasm_free(r);

	/* by count */
	r = veil_reasm_new(1 << 20, 2);
	for (i = 0; i < 3; i++)
		assert_int_equal(add_part(r, 1, id[i], body, sizeof(body), 0,
		    (uint64_t)i, &out, &outlen), 0);
	assert_int_equal(veil_reasm_pending(r), 2);
	assert_int_equal(add_part(r, 1, id[2], body, sizeof(body), 1, 4, &out,
	    &outlen), 1);
	assert_memory_equal(out, body, sizeof(body));
	free(out);
	assert_int_equal(add_part(r, 1, id[1], body, sizeof(body), 1, 4, &out,
	    &outlen), 1);
	free(out);
	assert_int_equal(add_part(r, 1, id[0], body, sizeof(body), 1, 4, &out,
	    &outlen), 0);
	veil_reasm_free(r);
}

static void
test_inconsistent(void **state)
{
	struct veil_reasm *r;
	struct veil_frame_hdr h;
	uint8_t msgid[16], body[CAP * 3], *out;
	size_t outlen;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	veil_msgid_new(msgid);
	randombytes_buf(body, sizeof(body));

	frag(&h, msgid, VEIL_T_FILE, 0, 3, CAP);
	assert_int_equal(veil_reasm_add(r, 1, &h, body, CAP, 0, &out, &outlen),
	    0);
	/* count changed */
	frag(&h, msgid, VEIL_T_FILE, 1, 4, CAP);
	assert_int_equal(veil_reasm_add(r, 1, &h, body + CAP, CAP, 0, &out,
	    &outlen), VEIL_ERR_FORMAT);
	/* count 1 for a message under reassembly */
	frag(&h, msgid, VEIL_T_FILE, 0, 1, 10);
	assert_int_equal(veil_reasm_add(r, 1, &h, body, CAP, 0, &out, &outlen),
	    VEIL_ERR_FORMAT);
	/* type changed */
	frag(&h, msgid, VEIL_T_TEXT, 1, 3, CAP);
	assert_int_equal(veil_reasm_add(r, 1, &h, body + CAP, CAP, 0, &out,
	    &outlen), VEIL_ERR_FORMAT);
	/* frame capacity changed */
	frag(&h, msgid, VEIL_T_FILE, 1, 3, CAP - 8);
	assert_int_equal(veil_reasm_add(r, 1, &h, body + CAP, CAP - 8, 0, &out,
	    &outlen), VEIL_ERR_FORMAT);
	/* index out of range */
	frag(&h, msgid, VEIL_T_FILE, 3, 3, 10);
	assert_int_equal(veil_reasm_add(r, 1, &h, body, CAP, 0, &out, &outlen),
	    VEIL_ERR_FORMAT);
	/* a short non-final fragment */
	frag(&h, msgid, VEIL_T_FILE, 1, 3, CAP - 1);
	assert_int_equal(veil_reasm_add(r, 1, &h, body + CAP, CAP, 0, &out,
	    &outlen), VEIL_ERR_FORMAT);
	/* an empty final fragment (a sender never makes one) */
	frag(&h, msgid, VEIL_T_FILE, 2, 3, 0);
	assert_int_equal(veil_reasm_add(r, 1, &h, NULL, CAP, 0, &out, &outlen),
	    VEIL_ERR_FORMAT);
	/* longer than the frame */
	frag(&h, msgid, VEIL_T_FILE, 2, 3, CAP + 1);
	assert_int_equal(veil_reasm_add(r, 1, &h, body, CAP, 0, &out, &outlen),
	    VEIL_ERR_FORMAT);
	assert_null(out);
	assert_int_equal(veil_reasm_pending(r), 1);

	/* none of that damaged the partial message */
	frag(&h, msgid, VEIL_T_FILE, 2, 3, 5);
	assert_int_equal(veil_reasm_add(r, 1, &h, body + 2 * CAP, CAP, 0, &out,
	    &outlen), 0);
	frag(&h, msgid, VEIL_T_FILE, 1, 3, CAP);
	assert_int_equal(veil_reasm_add(r, 1, &h, body + CAP, CAP, 0, &out,
	    &outlen), 1);
	assert_int_equal(outlen, 2 * CAP + 5);
	assert_memory_equal(out, body, 2 * CAP + 5);
	free(out);
	veil_reasm_free(r);
}

/* A 4 MiB body is the limit: exactly that reassembles, one byte more not. */
static void
test_oversize(void **state)
{
	struct veil_reasm *r;
	struct veil_frame_hdr h;
	struct tu_prng p;
	const size_t cap = 952;
	const uint16_t cnt = (uint16_t)((VEIL_MESSAGE_MAX + cap - 1) / cap);
	const uint16_t last = (uint16_t)(VEIL_MESSAGE_MAX - (size_t)(cnt - 1) * cap);
	uint8_t msgid[16], *body, *out;
	uint16_t *order, i, j, tmp;
	size_t outlen;
	int rc = 0;

	(void)state;
	r = veil_reasm_new(8u << 20, 4);
	veil_msgid_new(msgid);

	/* one fragment more than 4 MiB can need */
	frag(&h, msgid, VEIL_T_FILE, 0, (uint16_t)(cnt + 1), (uint16_t)cap);
	body = calloc(1, VEIL_MESSAGE_MAX);
	assert_int_equal(veil_reasm_add(r, 1, &h, body, cap, 0, &out, &outlen),
	    VEIL_ERR_TOOBIG);
	/* right count, final fragment one byte too long */
	frag(&h, msgid, VEIL_T_FILE, (uint16_t)(cnt - 1), cnt,
	    (uint16_t)(last + 1));
	assert_int_equal(veil_reasm_add(r, 1, &h, body, cap, 0, &out, &outlen),
	    VEIL_ERR_TOOBIG);
	assert_int_equal(veil_reasm_pending(r), 0);
	/* bigger than this reassembler's byte bound */
	{
		struct veil_reasm *small = veil_reasm_new(10 * cap, 4);

		frag(&h, msgid, VEIL_T_FILE, 0, 11, (uint16_t)cap);
		assert_int_equal(veil_reasm_add(small, 1, &h, body, cap, 0,
		    &out, &outlen), VEIL_ERR_TOOBIG);
		frag(&h, msgid, VEIL_T_FILE, 0, 10, (uint16_t)cap);
		assert_int_equal(veil_reasm_add(small, 1, &h, body, cap, 0,
		    &out, &outlen), 0);
		veil_reasm_free(small);
	}

	/* exactly 4 MiB, fragments shuffled */
	tu_prng_seed(&p, 4242);
	tu_prng_fill(&p, body, VEIL_MESSAGE_MAX);
	order = malloc(cnt * sizeof(*order));
	for (i = 0; i < cnt; i++)
		order[i] = i;
	for (i = cnt - 1; i > 0; i--) {
		j = (uint16_t)(tu_prng_next(&p) % (i + 1u));
		tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	for (i = 0; i < cnt; i++) {
		uint16_t k = order[i];

		frag(&h, msgid, VEIL_T_FILE, k, cnt,
		    (uint16_t)(k + 1 == cnt ? last : cap));
		rc = veil_reasm_add(r, 1, &h, body + (size_t)k * cap, cap, 0,
		    &out, &outlen);
		if (i + 1 < cnt)
			assert_int_equal(rc, 0);
	}
	assert_int_equal(rc, 1);
	assert_int_equal(outlen, VEIL_MESSAGE_MAX);
	assert_memory_equal(out, body, VEIL_MESSAGE_MAX);
	free(out);
	free(order);
	free(body);
	veil_reasm_free(r);
}

static void
test_two_peers_same_msgid(void **state)
{
	struct veil_reasm *r;
	uint8_t msgid[16], a[CAP * 3], b[CAP * 3 - 7], *out;
	size_t outlen;
	int i;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	veil_msgid_new(msgid);
	randombytes_buf(a, sizeof(a));
	randombytes_buf(b, sizeof(b));
	for (i = 0; i < 2; i++) {
		assert_int_equal(add_part(r, 1, msgid, a, sizeof(a),
		    (uint16_t)i, 0, &out, &outlen), 0);
		assert_int_equal(add_part(r, 2, msgid, b, sizeof(b),
		    (uint16_t)(2 - i), 0, &out, &outlen), 0);
	}
	assert_int_equal(veil_reasm_pending(r), 2);
	assert_int_equal(add_part(r, 2, msgid, b, sizeof(b), 0, 0, &out,
	    &outlen), 1);
	assert_int_equal(outlen, sizeof(b));
	assert_memory_equal(out, b, sizeof(b));
	free(out);
	assert_int_equal(add_part(r, 1, msgid, a, sizeof(a), 2, 0, &out,
	    &outlen), 1);
	assert_int_equal(outlen, sizeof(a));
	assert_memory_equal(out, a, sizeof(a));
	free(out);
	veil_reasm_free(r);
}

static void
test_forget(void **state)
{
	struct veil_reasm *r;
	uint8_t m1[16], m2[16], m3[16], body[CAP * 2], *out;
	size_t outlen;

	(void)state;
	r = veil_reasm_new(1 << 20, 16);
	veil_msgid_new(m1);
	veil_msgid_new(m2);
	veil_msgid_new(m3);
	randombytes_buf(body, sizeof(body));
	assert_int_equal(add_part(r, 7, m1, body, sizeof(body), 0, 0, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 8, m2, body, sizeof(body), 0, 0, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 7, m3, body, sizeof(body), 0, 0, &out,
	    &outlen), 0);
	veil_reasm_forget(r, 7);
	assert_int_equal(veil_reasm_pending(r), 1);
	assert_int_equal(veil_reasm_bytes(r), 2 * CAP);
	assert_int_equal(add_part(r, 7, m1, body, sizeof(body), 1, 0, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 8, m2, body, sizeof(body), 1, 0, &out,
	    &outlen), 1);
	free(out);
	veil_reasm_free(r);
}

/* Per-sender budgets: a sender flooding partial messages evicts its own,
 * never another sender's smaller one, and a message over the sender's
 * budget is refused. */
static void
test_peer_budget(void **state)
{
	struct veil_reasm *r;
	uint8_t id[8][16], mine[16], body[CAP * 4], *out;
	size_t outlen;
	int i;

	(void)state;
	randombytes_buf(body, sizeof(body));
	veil_msgid_new(mine);
	for (i = 0; i < 8; i++)
		veil_msgid_new(id[i]);
	/* 12 fragments in all, 8 a sender, 3 messages a sender */
	r = veil_reasm_new(12 * CAP, 100);
	assert_int_equal(veil_reasm_limit_peer(r, 8 * CAP, 3), 0);
	/* the honest sender's message, half there */
	assert_int_equal(add_part(r, 1, mine, body, 2 * CAP, 0, 0, &out,
	    &outlen), 0);
	/* the flood: 4-fragment messages, one fragment each */
	for (i = 0; i < 8; i++) {
		assert_int_equal(add_part(r, 2, id[i], body, 4 * CAP, 0,
		    (uint64_t)i + 1, &out, &outlen), 0);
		assert_true(veil_reasm_peer_bytes(r, 2) <= 8 * CAP);
		assert_true(veil_reasm_bytes(r) <= 12 * CAP);
	}
	/* the flooder kept its two latest; the honest message completes */
	assert_int_equal(veil_reasm_peer_bytes(r, 2), 8 * CAP);
	assert_int_equal(add_part(r, 1, mine, body, 2 * CAP, 1, 9, &out,
	    &outlen), 1);
	assert_memory_equal(out, body, 2 * CAP);
	free(out);
	/* over one sender's budget: refused, nothing evicted */
	assert_int_equal(add_part(r, 3, mine, body, 9 * CAP, 0, 10, &out,
	    &outlen), VEIL_ERR_TOOBIG);
	assert_int_equal(veil_reasm_peer_bytes(r, 2), 8 * CAP);
	/* totals reached: the largest holder loses, not the small one */
	assert_int_equal(add_part(r, 4, id[0], body, 2 * CAP, 0, 11, &out,
	    &outlen), 0);
	assert_int_equal(add_part(r, 5, id[1], body, 4 * CAP, 0, 12, &out,
	    &outlen), 0);
	assert_int_equal(veil_reasm_peer_bytes(r, 4), 2 * CAP);
	assert_int_equal(veil_reasm_peer_bytes(r, 2), 4 * CAP);
	assert_true(veil_reasm_bytes(r) <= 12 * CAP);
	/* its count limit: a fourth message of one sender evicts its first */
	veil_reasm_forget(r, 2);
	veil_reasm_forget(r, 4);
	veil_reasm_forget(r, 5);
	assert_int_equal(veil_reasm_bytes(r), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(add_part(r, 6, id[i], body, 2 * CAP, 0,
		    (uint64_t)i, &out, &outlen), 0);
	assert_int_equal(veil_reasm_pending(r), 3);
	assert_int_equal(add_part(r, 6, id[0], body, 2 * CAP, 1, 5, &out,
	    &outlen), 0);	/* evicted: starts again, evicting id[1] */
	assert_int_equal(add_part(r, 6, id[3], body, 2 * CAP, 1, 5, &out,
	    &outlen), 1);
	free(out);
	/* no limits once messages are held */
	assert_int_equal(veil_reasm_limit_peer(r, 1, 1), VEIL_ERR_INVAL);
	veil_reasm_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_reverse_order),
		cmocka_unit_test(test_single_frame),
		cmocka_unit_test(test_duplicate),
		cmocka_unit_test(test_missing_and_expiry),
		cmocka_unit_test(test_memory_bound),
		cmocka_unit_test(test_inconsistent),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_two_peers_same_msgid),
		cmocka_unit_test(test_forget),
		cmocka_unit_test(test_peer_budget),
	};

	tu_deterministic_rng("test_reasm");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("reasm", tests, NULL, NULL);
}
