/* Tests for libproto reset: RESET/RESET-ACK after a restore — new chains on both sides, independent of the stale ones, copies, replays, forgeries and damaged bodies refused. */
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

#define T0 UINT64_C(1767225600)	/* 2026-01-01 00:00 UTC */
#define PA 3600u		/* Alice's key period (Bob -> Alice) */
#define PB 600u			/* Bob's (Alice -> Bob) */

/*
 * Alice (x, responder) restored a backup; Bob (y, initiator) went on.
 * Their pairs share the secret and the identity keys, and nothing else
 * need match: Bob's chains moved on (a heal after the backup).
 */
struct world {
	struct veil_identity ida, idb, mallory;
	struct veil_pair a, b;
	struct veil_inbox a_inbox, a_new, b_inbox;
	struct veil_clock clk;
};

static void
chains(struct veil_pair *p, int init, uint64_t now)
{
	uint8_t r1[VEIL_KEY_BYTES], r2[VEIL_KEY_BYTES];

	randombytes_buf(r1, sizeof(r1));
	randombytes_buf(r2, sizeof(r2));
	assert_int_equal(veil_txchain_init(&p->tx, r1, init ? VEIL_DIR_I2R :
	    VEIL_DIR_R2I, p->peer_inbox.period, veil_period_of(now,
	    p->peer_inbox.period)), VEIL_OK);
	assert_int_equal(veil_rxchain_init(&p->rx, r2, init ? VEIL_DIR_R2I :
	    VEIL_DIR_I2R, p->my_inbox.period, veil_period_of(now,
	    p->my_inbox.period)), VEIL_OK);
}

static void
world_init(struct world *w)
{
	uint8_t s[VEIL_KEY_BYTES];

	memset(w, 0, sizeof(*w));
	w->clk.now = T0 + 1000;
	w->clk.grace = w->clk.lead = 120;
	assert_int_equal(veil_identity_new(&w->ida), VEIL_OK);
	assert_int_equal(veil_identity_new(&w->idb), VEIL_OK);
	assert_int_equal(veil_identity_new(&w->mallory), VEIL_OK);
	randombytes_buf(s, sizeof(s));
	veil_seed_new(w->a_inbox.seed);
	w->a_inbox.epoch = 3600;
	w->a_inbox.period = PA;
	veil_seed_new(w->a_new.seed);
	w->a_new.epoch = 3600;
	w->a_new.period = PA;
	veil_seed_new(w->b_inbox.seed);
	w->b_inbox.epoch = 0;
	w->b_inbox.period = PB;
	w->a.role = VEIL_ROLE_RESPONDER;
	w->b.role = VEIL_ROLE_INITIATOR;
	veil_pair_set_secret(&w->a, s);
	veil_pair_set_secret(&w->b, s);
	memcpy(w->a.peer_pk, w->idb.pk, VEIL_KEY_BYTES);
	memcpy(w->b.peer_pk, w->ida.pk, VEIL_KEY_BYTES);
	w->a.my_inbox = w->b.peer_inbox = w->a_inbox;
	w->b.my_inbox = w->a.peer_inbox = w->b_inbox;
	/* Unrelated chains on each side: what a stale backup looks like. */
	chains(&w->a, 0, w->clk.now);
	chains(&w->b, 1, w->clk.now);
	w->b.upd_recv_seq = 7;
	w->b.upd_sent_seq = 3;
	w->b.upd_pending = 1;
	sodium_memzero(s, sizeof(s));
}

static void
world_wipe(struct world *w)
{
	veil_pair_wipe(&w->a);
	veil_pair_wipe(&w->b);
	veil_identity_wipe(&w->ida);
	veil_identity_wipe(&w->idb);
	veil_identity_wipe(&w->mallory);
}

static void
assert_same_chain(const struct veil_txchain *tx, struct veil_rxchain *rx)
{
	struct veil_rxdir *d;

	assert_true(tx->live && rx->live);
	assert_memory_equal(tx->bind, rx->bind, VEIL_KEY_BYTES);
	assert_int_equal(tx->plen, rx->plen);
	assert_int_equal(tx->k.dir, rx->dir);
	d = veil_rxchain_find(rx, tx->period);
	assert_non_null(d);
	assert_memory_equal(tx->k.key, d->k.key, VEIL_KEY_BYTES);
}

/* A frame sealed under one side's tx opens under the other's rx. */
static void
assert_talks(struct veil_pair *from, struct veil_pair *to)
{
	uint8_t frame[VEIL_FRAME_DEFAULT], body[16], got[VEIL_FRAME_DEFAULT];
	struct veil_frame_hdr h, g;
	struct veil_rxdir *d;

	memset(&h, 0, sizeof(h));
	h.type = VEIL_T_TEXT;
	h.len = sizeof(body);
	h.seq = from->tx.seq;
	h.frag_cnt = 1;
	randombytes_buf(body, sizeof(body));
	assert_int_equal(veil_frame_seal(frame, sizeof(frame), &from->tx.k, &h,
	    body), VEIL_OK);
	d = veil_rxchain_find(&to->rx, from->tx.period);
	assert_non_null(d);
	assert_int_equal(veil_frame_open(frame, sizeof(frame), &d->k, h.seq, &g,
	    got), VEIL_OK);
	assert_memory_equal(got, body, sizeof(body));
}

static void
test_reset_roundtrip(void **state)
{
	struct world w;
	struct veil_reset r;
	struct veil_pair old_a, old_b;
	uint8_t ack[VEIL_RESET_ACK_BODY], tr[32], pk[32];
	uint64_t t = 0;

	(void)state;
	world_init(&w);
	old_a = w.a;
	old_b = w.b;
	assert_int_equal(veil_reset_start(&r, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_peek(r.body, sizeof(r.body), 0, pk), VEIL_OK);
	assert_memory_equal(pk, w.ida.pk, 32);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t, tr, ack), 0);
	assert_int_equal(t, w.clk.now);
	assert_memory_equal(tr, r.tr, 32);
	/* Bob: the new inbox of Alice, his own unchanged, no update left. */
	assert_memory_equal(w.b.peer_inbox.seed, w.a_new.seed, 32);
	assert_memory_equal(w.b.my_inbox.seed, w.b_inbox.seed, 32);
	assert_int_equal(w.b.upd_pending, 0);
	assert_int_equal(w.b.upd_recv_seq, 0);
	assert_int_equal(w.b.upd_sent_seq, 0);
	assert_false(w.b.rx_prev.live);
	assert_false(w.b.tx_next.live);
	assert_int_equal(veil_reset_peek(ack, sizeof(ack), 1, pk), VEIL_OK);
	assert_memory_equal(pk, w.idb.pk, 32);
	assert_int_equal(veil_reset_on_ack(&w.a, &w.ida, &r, &w.clk, ack,
	    sizeof(ack)), VEIL_OK);
	assert_true(sodium_is_zero(r.e_sk, sizeof(r.e_sk)));
	assert_memory_equal(w.a.my_inbox.seed, w.a_new.seed, 32);
	assert_memory_equal(w.a.peer_inbox.seed, w.b_inbox.seed, 32);
	/* One chain each way, shared, and none of the old keys. */
	assert_same_chain(&w.a.tx, &w.b.rx);
	assert_same_chain(&w.b.tx, &w.a.rx);
	assert_int_equal(w.a.tx.plen, PB);
	assert_int_equal(w.b.tx.plen, PA);
	assert_memory_not_equal(w.a.tx.k.key, old_a.tx.k.key, 32);
	assert_memory_not_equal(w.b.tx.k.key, old_b.tx.k.key, 32);
	assert_memory_not_equal(w.a.tx.bind, old_b.rx.bind, 32);
	assert_talks(&w.a, &w.b);
	assert_talks(&w.b, &w.a);
	/* The secret and the roles stay. */
	assert_memory_equal(w.a.secret, w.b.secret, 32);
	assert_int_equal(w.a.role, VEIL_ROLE_RESPONDER);
	veil_pair_wipe(&old_a);
	veil_pair_wipe(&old_b);
	world_wipe(&w);
}

/* A RESET that arrives days late: the chains start at t_X's periods and
 * are moved on to the receiver's clock; both sides still agree. */
static void
test_reset_late(void **state)
{
	struct world w;
	struct veil_reset r;
	uint8_t ack[VEIL_RESET_ACK_BODY], tr[32];
	uint64_t t;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_reset_start(&r, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	w.clk.now += 3 * 86400 + 17;
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t, tr, ack), 0);
	assert_int_equal(veil_reset_on_ack(&w.a, &w.ida, &r, &w.clk, ack,
	    sizeof(ack)), VEIL_OK);
	assert_int_equal(w.a.tx.period, veil_period_of(w.clk.now, PB));
	assert_same_chain(&w.a.tx, &w.b.rx);
	assert_same_chain(&w.b.tx, &w.a.rx);
	assert_talks(&w.a, &w.b);
	assert_talks(&w.b, &w.a);
	world_wipe(&w);
}

/* A copy gets 1 and changes nothing; an older RESET is STALE, another
 * one as old REPLAY; a newer one (a second restore) is taken. */
static void
test_reset_copies_and_order(void **state)
{
	struct world w;
	struct veil_reset r, r2, r0;
	struct veil_pair before;
	uint8_t ack[VEIL_RESET_ACK_BODY], ack2[VEIL_RESET_ACK_BODY], tr[32],
	    tr1[32];
	uint64_t t, t1;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_reset_start(&r0, &w.ida, &w.a, &w.a_new,
	    w.clk.now - 10), VEIL_OK);
	assert_int_equal(veil_reset_start(&r, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_start(&r2, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t1, tr1, ack), 0);
	before = w.b;
	memset(ack2, 0xaa, sizeof(ack2));
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), t1, tr1, &t, tr, ack2), 1);
	assert_memory_equal(&before, &w.b, sizeof(before));
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r0.body,
	    sizeof(r0.body), t1, tr1, &t, tr, ack2), VEIL_ERR_STALE);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r2.body,
	    sizeof(r2.body), t1, tr1, &t, tr, ack2), VEIL_ERR_REPLAY);
	assert_memory_equal(&before, &w.b, sizeof(before));
	/* The ACK of the first answers the first only. */
	assert_int_equal(veil_reset_on_ack(&w.a, &w.ida, &r2, &w.clk, ack,
	    sizeof(ack)), VEIL_ERR_STATE);
	w.clk.now += 5;
	assert_int_equal(veil_reset_start(&r2, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r2.body,
	    sizeof(r2.body), t1, tr1, &t, tr, ack2), 0);
	assert_int_equal(veil_reset_on_ack(&w.a, &w.ida, &r2, &w.clk, ack2,
	    sizeof(ack2)), VEIL_OK);
	assert_talks(&w.a, &w.b);
	assert_talks(&w.b, &w.a);
	veil_pair_wipe(&before);
	world_wipe(&w);
}

/*
 * Who cannot make one: someone without the pair's secret (another
 * contact of Bob's holding Alice's public key, Mallory with her own
 * key), or with the secret but not Alice's secret key.  Every flipped
 * byte is refused; a RESET from too far ahead is FUTURE.
 */
static void
test_reset_forgeries(void **state)
{
	struct world w;
	struct veil_reset r;
	struct veil_pair fake;
	struct veil_identity claim;
	uint8_t ack[VEIL_RESET_ACK_BODY], tr[32], body[VEIL_RESET_BODY];
	uint64_t t;

	(void)state;
	world_init(&w);
	/* The secret, Alice's public key, Mallory's secret key. */
	fake = w.a;
	claim = w.mallory;
	memcpy(claim.pk, w.ida.pk, 32);
	assert_int_equal(veil_reset_start(&r, &claim, &fake, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t, tr, ack), VEIL_ERR_SECRET);
	/* Alice's keys, another secret. */
	randombytes_buf(fake.secret, sizeof(fake.secret));
	assert_int_equal(veil_reset_start(&r, &w.ida, &fake, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t, tr, ack), VEIL_ERR_SECRET);
	/* Mallory as herself: not the peer. */
	fake = w.a;
	assert_int_equal(veil_reset_start(&r, &w.mallory, &fake, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t, tr, ack), VEIL_ERR_STATE);
	/* Every byte matters. */
	assert_int_equal(veil_reset_start(&r, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	for (size_t i = 0; i < sizeof(body); i++) {
		memcpy(body, r.body, sizeof(body));
		body[i] ^= 0x20;
		assert_true(veil_reset_on_request(&w.b, &w.idb, &w.clk, body,
		    sizeof(body), 0, NULL, &t, tr, ack) < 0);
	}
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body) - 1, 0, NULL, &t, tr, ack), VEIL_ERR_FORMAT);
	assert_int_equal(veil_reset_start(&r, &w.ida, &w.a, &w.a_new,
	    w.clk.now + VEIL_RESET_FUTURE + 1), VEIL_OK);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t, tr, ack), VEIL_ERR_FUTURE);
	/* A good RESET; its ACK with any byte flipped is refused. */
	assert_int_equal(veil_reset_start(&r, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	assert_int_equal(veil_reset_on_request(&w.b, &w.idb, &w.clk, r.body,
	    sizeof(r.body), 0, NULL, &t, tr, ack), 0);
	for (size_t i = 0; i < sizeof(ack); i++) {
		uint8_t bad[VEIL_RESET_ACK_BODY];
		struct veil_pair a2 = w.a;
		struct veil_reset r2 = r;

		memcpy(bad, ack, sizeof(bad));
		bad[i] ^= 0x20;
		assert_true(veil_reset_on_ack(&a2, &w.ida, &r2, &w.clk, bad,
		    sizeof(bad)) < 0);
		assert_memory_equal(&a2, &w.a, sizeof(a2));
	}
	assert_int_equal(veil_reset_on_ack(&w.a, &w.ida, &r, &w.clk, ack,
	    sizeof(ack)), VEIL_OK);
	assert_talks(&w.a, &w.b);
	veil_pair_wipe(&fake);
	veil_identity_wipe(&claim);
	world_wipe(&w);
}

static void
test_reset_pack(void **state)
{
	struct world w;
	struct veil_reset r, q;
	uint8_t buf[VEIL_RESET_PACKED_MAX];
	int n;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_reset_start(&r, &w.ida, &w.a, &w.a_new,
	    w.clk.now), VEIL_OK);
	n = veil_reset_pack(&r, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(veil_reset_unpack(&q, buf, (size_t)n), VEIL_OK);
	assert_memory_equal(&q, &r, sizeof(q));
	for (int i = 0; i < n; i++)
		assert_true(veil_reset_unpack(&q, buf, (size_t)i) < 0);
	buf[0] = 9;
	assert_int_equal(veil_reset_unpack(&q, buf, (size_t)n), VEIL_ERR_VERSION);
	assert_int_equal(veil_reset_pack(&r, buf, 10), VEIL_ERR_TOOBIG);
	world_wipe(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reset_roundtrip),
		cmocka_unit_test(test_reset_late),
		cmocka_unit_test(test_reset_copies_and_order),
		cmocka_unit_test(test_reset_forgeries),
		cmocka_unit_test(test_reset_pack),
	};

	if (veil_init() != 0)
		return 1;
	return cmocka_run_group_tests_name("reset", tests, NULL, NULL);
}
