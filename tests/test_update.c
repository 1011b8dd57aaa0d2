/* Tests for libproto update: CCM parsing, UPDATE/UPDATE-ACK/UPDATE-DONE, re-keying with time, retransmission and ordering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "veil.h"
#include "testutil.h"

#define FS VEIL_FRAME_DEFAULT
#define T0 UINT64_C(1767225600)	/* 2026-01-01 00:00 UTC */
#define PA 3600u		/* Alice's key period (Bob -> Alice) */
#define PB 600u			/* Bob's (Alice -> Bob) */

/*
 * Two established contacts: a->tx is b->rx and the other way round, each
 * chain at its receiver's key period.  a is the responder, b the
 * initiator.  Inboxes: what each gave the other, and a next one each.
 */
struct world {
	struct veil_identity ida, idb;
	struct veil_pair a, b;
	struct veil_inbox a_inbox, a_new, b_inbox, b_new;
	struct veil_clock clk;
};

static void
world_init_at(struct world *w, uint64_t now)
{
	uint8_t s[VEIL_KEY_BYTES], r1[VEIL_KEY_BYTES], r2[VEIL_KEY_BYTES];

	memset(w, 0, sizeof(*w));
	w->clk.now = now;
	w->clk.grace = 120;
	w->clk.lead = 120;
	assert_int_equal(veil_identity_new(&w->ida), VEIL_OK);
	assert_int_equal(veil_identity_new(&w->idb), VEIL_OK);
	randombytes_buf(s, sizeof(s));
	randombytes_buf(r1, sizeof(r1));
	randombytes_buf(r2, sizeof(r2));
	veil_seed_new(w->a_inbox.seed);
	w->a_inbox.epoch = 3600;
	w->a_inbox.period = PA;
	veil_seed_new(w->a_new.seed);
	w->a_new.epoch = 1800;		/* a new epoch length and key period */
	w->a_new.period = 900;
	veil_seed_new(w->b_inbox.seed);
	w->b_inbox.epoch = 0;
	w->b_inbox.period = PB;
	veil_seed_new(w->b_new.seed);
	w->b_new.epoch = 0;
	w->b_new.period = PB;
	w->a.role = VEIL_ROLE_RESPONDER;
	w->b.role = VEIL_ROLE_INITIATOR;
	veil_pair_set_secret(&w->a, s);
	veil_pair_set_secret(&w->b, s);
	memcpy(w->a.peer_pk, w->idb.pk, VEIL_KEY_BYTES);
	memcpy(w->b.peer_pk, w->ida.pk, VEIL_KEY_BYTES);
	w->a.my_inbox = w->b.peer_inbox = w->a_inbox;
	w->b.my_inbox = w->a.peer_inbox = w->b_inbox;
	assert_int_equal(veil_txchain_init(&w->a.tx, r1, VEIL_DIR_R2I, PB,
	    veil_period_of(now, PB)), VEIL_OK);
	assert_int_equal(veil_rxchain_init(&w->b.rx, r1, VEIL_DIR_R2I, PB,
	    veil_period_of(now, PB)), VEIL_OK);
	assert_int_equal(veil_txchain_init(&w->b.tx, r2, VEIL_DIR_I2R, PA,
	    veil_period_of(now, PA)), VEIL_OK);
	assert_int_equal(veil_rxchain_init(&w->a.rx, r2, VEIL_DIR_I2R, PA,
	    veil_period_of(now, PA)), VEIL_OK);
	sodium_memzero(s, sizeof(s));
}

static void
world_init(struct world *w)
{
	world_init_at(w, T0 + 1000);
}

static void
world_wipe(struct world *w)
{
	veil_pair_wipe(&w->a);
	veil_pair_wipe(&w->b);
	veil_identity_wipe(&w->ida);
	veil_identity_wipe(&w->idb);
}

/* Both sides' clocks move on together; every chain follows. */
static void
tick(struct world *w, uint64_t secs)
{
	w->clk.now += secs;
	assert_true(veil_pair_advance(&w->a, &w->clk, NULL, 0, 0) >= 0);
	assert_true(veil_pair_advance(&w->b, &w->clk, NULL, 0, 0) >= 0);
}

/* tx and rx are one chain: same binding key, and rx holds tx's period. */
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
	assert_memory_equal(tx->k.root, d->k.root, VEIL_KEY_BYTES);
	assert_memory_equal(tx->k.key, d->k.key, VEIL_KEY_BYTES);
}

static int
same_chain(const struct veil_txchain *tx, const struct veil_rxchain *rx)
{
	return tx->live && rx->live &&
	    sodium_memcmp(tx->bind, rx->bind, VEIL_KEY_BYTES) == 0;
}

/* A frame sealed under tx (now) opens in rx with the same body. */
static void
frame_roundtrip(struct veil_txchain *tx, struct veil_rxchain *rx,
    uint8_t type, const char *body, size_t len)
{
	uint8_t frame[FS], got[FS], msgid[VEIL_MSGID_BYTES];
	struct veil_frame_hdr h;
	struct veil_rxdir *d;
	uint64_t s = tx->seq;

	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(frame, sizeof(frame), FS, &tx->k,
	    &tx->seq, type, msgid, (const uint8_t *)body, len), 1);
	d = veil_rxchain_find(rx, tx->period);
	assert_non_null(d);
	assert_int_equal(veil_frame_open(frame, FS, &d->k, s, &h, got), VEIL_OK);
	assert_int_equal(h.type, type);
	assert_int_equal(h.len, len);
	assert_memory_equal(got, body, len);
}

/* No key of rx opens what tx seals. */
static void
frame_fails(struct veil_txchain *tx, const struct veil_rxchain *rx)
{
	uint8_t frame[FS], got[FS], msgid[VEIL_MSGID_BYTES];
	struct veil_frame_hdr h;
	uint64_t s = tx->seq;
	int i;

	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(frame, sizeof(frame), FS, &tx->k,
	    &tx->seq, VEIL_T_TEXT, msgid, (const uint8_t *)"x", 1), 1);
	for (i = 0; i < VEIL_RX_SLOTS; i++)
		if (rx->live && rx->slot[i].live)
			assert_int_equal(veil_frame_open(frame, FS, &rx->slot[i].k,
			    s, &h, got), VEIL_ERR_DECRYPT);
}

/* Bob's side of an UPDATE from Alice, at the world's clock. */
static int
on_update_b(struct world *w, const char *body, size_t len, struct veil_ccm *ccm,
    char **ack, size_t *acklen)
{
	return veil_update_on_update(&w->b, "Alice", w->clk.now, body, len, ccm,
	    ack, acklen);
}

/* Alice announces next in place of her current inbox. */
static void
build_a(struct world *w, const struct veil_inbox *next, int rekey, char **body,
    size_t *len)
{
	assert_int_equal(veil_update_build(&w->a, w->ida.pk, "Alice", next,
	    rekey, body, len), VEIL_OK);
	assert_non_null(*body);
	assert_int_equal(strlen(*body), *len);
	assert_true(*len <= VEIL_UPDATE_BODY_MAX);
	assert_true(w->a.upd_pending);
}

/*
 * Steps 1 and 2 of an update of Alice's inbox, over frames: her UPDATE
 * and Bob's ACK.  Bob's re-keyed transmit chain waits in tx_next; Alice
 * reads it already with rx, and Bob's current tx with rx_prev.
 */
static void
rotate_a_ack(struct world *w, const struct veil_inbox *next, int rekey)
{
	struct veil_txchain b_tx_old;
	struct veil_rxchain a_rx_old;
	struct veil_inbox old = w->a.my_inbox;
	struct veil_ccm ccm;
	char *body, *ack;
	size_t len, acklen;
	uint64_t seq_before = w->a.upd_sent_seq;

	b_tx_old = w->b.tx;
	a_rx_old = w->a.rx;
	build_a(w, next, rekey, &body, &len);
	assert_int_equal(w->a.upd_sent_seq, seq_before + 1);
	frame_roundtrip(&w->a.tx, &w->b.rx, VEIL_T_UPDATE, body, len);

	assert_int_equal(on_update_b(w, body, len, &ccm, &ack, &acklen), 0);
	assert_memory_equal(ccm.ocid, old.seed, VEIL_SEED_BYTES);
	assert_memory_equal(&ccm.new_inbox, next, sizeof(*next));
	assert_string_equal(ccm.cname, "Alice");
	assert_false(ccm.name_changed);
	assert_memory_equal(ccm.pubkey, w->ida.pk, VEIL_KEY_BYTES);
	assert_int_equal(ccm.seq, seq_before + 1);
	assert_int_equal(ccm.has_new_secret, rekey ? 1 : 0);
	assert_string_equal(ccm.alg, VEIL_UPDATE_ALG);
	assert_string_equal(ccm.steg_key, "0000");
	/* Bob sends to the new inbox, with its epoch length, from now on. */
	assert_memory_equal(&w->b.peer_inbox, next, sizeof(*next));
	/* Bob: tx untouched (Alice cannot read the new chain yet), the new
	 * one waits, at the new key period, from now's period. */
	assert_memory_equal(w->b.tx.k.root, b_tx_old.k.root, VEIL_KEY_BYTES);
	assert_int_equal(w->b.tx.seq, b_tx_old.seq);
	assert_true(w->b.tx.live && w->b.tx_next.live);
	assert_memory_not_equal(w->b.tx_next.bind, b_tx_old.bind, VEIL_KEY_BYTES);
	assert_int_equal(w->b.tx_next.seq, 0);
	assert_int_equal(w->b.tx_next.plen, next->period);
	assert_int_equal(w->b.tx_next.period, veil_period_of(w->clk.now, next->period));
	assert_int_equal(w->b.upd_recv_seq, seq_before + 1);
	assert_int_equal(w->b.upd_ack_period, w->b.tx_next.period);

	/* The ACK travels under Bob's tx, which Alice still reads with rx. */
	frame_roundtrip(&w->b.tx, &w->a.rx, VEIL_T_UPDATE_ACK, ack, acklen);
	assert_int_equal(veil_update_on_ack(&w->a, &w->clk, ack, acklen), VEIL_OK);
	assert_false(w->a.upd_pending);
	assert_true(sodium_is_zero(w->a.upd_eph_sk, VEIL_KEY_BYTES));
	assert_true(sodium_is_zero((const uint8_t *)&w->a.upd_new, sizeof(w->a.upd_new)));
	assert_memory_equal(&w->a.my_inbox, next, sizeof(*next));
	assert_same_chain(&w->b.tx_next, &w->a.rx);
	assert_memory_equal(w->a.rx_prev.bind, a_rx_old.bind, VEIL_KEY_BYTES);
	assert_same_chain(&w->b.tx, &w->a.rx_prev);
	assert_int_equal(veil_rxchain_find(&w->a.rx, w->a.rx.period)->w.top, 0);
	free(body);
	free(ack);
}

/* Step 3: Alice's UPDATE-DONE; Bob switches to the chain Alice reads with rx. */
static void
done_a(struct world *w)
{
	struct veil_txchain next, old;
	char *done, want[64];
	size_t len;

	next = w->b.tx_next;
	old = w->b.tx;
	assert_int_equal(veil_update_done_build(&w->a, &done, &len), VEIL_OK);
	snprintf(want, sizeof(want), "{\"Data\":\"UpdateDone\",\"Seq\":%llu}",
	    (unsigned long long)w->a.upd_sent_seq);
	assert_string_equal(done, want);
	assert_int_equal(strlen(done), len);
	/* Alice's own transmit chain is not part of her update. */
	frame_roundtrip(&w->a.tx, &w->b.rx, VEIL_T_UPDATE_DONE, done, len);
	assert_int_equal(veil_update_on_done(&w->b, done, len), VEIL_OK);
	assert_memory_equal(w->b.tx.bind, next.bind, VEIL_KEY_BYTES);
	assert_memory_equal(w->b.tx.k.root, next.k.root, VEIL_KEY_BYTES);
	assert_same_chain(&w->b.tx, &w->a.rx);
	assert_true(w->b.tx.live);
	/* The slot is emptied and the replaced chain is gone from Bob. */
	assert_true(sodium_is_zero((const uint8_t *)&w->b.tx_next, sizeof(w->b.tx_next)));
	assert_memory_not_equal(w->b.tx.bind, old.bind, VEIL_KEY_BYTES);
	veil_txchain_wipe(&next);
	veil_txchain_wipe(&old);
	free(done);
}

static void
rotate_a(struct world *w, const struct veil_inbox *next, int rekey)
{
	rotate_a_ack(w, next, rekey);
	done_a(w);
}

static void
test_update_full(void **state)
{
	struct world w;
	uint8_t a_tx_bind[VEIL_KEY_BYTES], sh[VEIL_KEY_BYTES];

	(void)state;
	world_init(&w);
	memcpy(a_tx_bind, w.a.tx.bind, VEIL_KEY_BYTES);
	memcpy(sh, w.a.secret_hash, VEIL_KEY_BYTES);
	rotate_a(&w, &w.a_new, 0);
	/* Bob -> Alice works under the new chain, not under the old one. */
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "hi", 2);
	frame_fails(&w.b.tx, &w.a.rx_prev);
	/* Alice -> Bob is untouched by Alice's update. */
	assert_memory_equal(w.a.tx.bind, a_tx_bind, VEIL_KEY_BYTES);
	frame_roundtrip(&w.a.tx, &w.b.rx, VEIL_T_TEXT, "yo", 2);
	/* No NewSecret: SH unchanged. */
	assert_memory_equal(w.a.secret_hash, sh, VEIL_KEY_BYTES);
	assert_memory_equal(w.b.secret_hash, sh, VEIL_KEY_BYTES);
	/* Hours later both chains moved on by the clock alone. */
	tick(&w, 3 * 3600 + 17);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "later", 5);
	frame_roundtrip(&w.a.tx, &w.b.rx, VEIL_T_TEXT, "later", 5);
	/* End of the grace period: only a receive chain was kept. */
	veil_pair_drop_prev(&w.a);
	assert_true(sodium_is_zero((const uint8_t *)&w.a.rx_prev, sizeof(w.a.rx_prev)));
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "still", 5);
	world_wipe(&w);
}

/* The new Epoch and Rekey take effect: the new chain runs at the new key
 * period on both sides, the topics at the new epoch length. */
static void
test_update_params(void **state)
{
	struct world w;
	char ta[VEIL_TOPIC_TEXT], tb[VEIL_TOPIC_TEXT];

	(void)state;
	world_init(&w);
	rotate_a(&w, &w.a_new, 0);
	assert_int_equal(w.a.rx.plen, 900);
	assert_int_equal(w.b.tx.plen, 900);
	assert_int_equal(w.a.my_inbox.epoch, 1800);
	assert_int_equal(w.b.peer_inbox.epoch, 1800);
	/* Both compute the same topic for the new seed and epoch length. */
	assert_int_equal(veil_topic_text(w.b.peer_inbox.seed,
	    veil_epoch_number(w.clk.now, w.b.peer_inbox.epoch), tb, sizeof(tb)), VEIL_OK);
	assert_int_equal(veil_topic_text(w.a.my_inbox.seed,
	    veil_epoch_number(w.clk.now, w.a.my_inbox.epoch), ta, sizeof(ta)), VEIL_OK);
	assert_string_equal(ta, tb);
	/* 900 s periods: three ratchet steps in 45 minutes. */
	{
		uint64_t p = w.b.tx.period;

		tick(&w, 2700);
		assert_int_equal(w.b.tx.period, p + 3);
		assert_same_chain(&w.b.tx, &w.a.rx);
	}
	/* The same seed with another key period only: a plain re-key. */
	{
		struct veil_inbox same = w.a.my_inbox;

		same.period = 60;
		rotate_a(&w, &same, 0);
		assert_int_equal(w.b.tx.plen, 60);
		assert_memory_equal(w.b.peer_inbox.seed, w.a_new.seed, 32);
		frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "60", 2);
	}
	world_wipe(&w);
}

static void
test_update_twice(void **state)
{
	struct world w;
	struct veil_inbox a3;
	uint8_t first[VEIL_KEY_BYTES];

	(void)state;
	world_init(&w);
	a3 = w.a_new;
	veil_seed_new(a3.seed);
	rotate_a(&w, &w.a_new, 0);
	memcpy(first, w.b.tx.bind, VEIL_KEY_BYTES);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "one", 3);
	rotate_a(&w, &a3, 0);
	assert_int_equal(w.a.upd_sent_seq, 2);
	assert_int_equal(w.b.upd_recv_seq, 2);
	/* The second chain is derived from the first, which Alice now keeps
	 * as the previous one. */
	assert_memory_not_equal(w.b.tx.bind, first, VEIL_KEY_BYTES);
	assert_memory_equal(w.a.rx_prev.bind, first, VEIL_KEY_BYTES);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "two", 3);
	frame_fails(&w.b.tx, &w.a.rx_prev);
	world_wipe(&w);
}

/* The ACK is lost: Alice retransmits the same bytes, Bob answers the same ACK. */
static void
test_update_retransmit(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_pair b_after;
	char *body, *body2, *ack, *ack2;
	size_t len, len2, acklen, acklen2;

	(void)state;
	world_init(&w);
	build_a(&w, &w.a_new, 0, &body, &len);
	/* Neither new_inbox nor the rekey_secret flag change a pending update. */
	build_a(&w, &w.b_new, 1, &body2, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(body, body2, len);
	assert_int_equal(w.a.upd_sent_seq, 1);
	assert_false(w.a.upd_rekey_secret);
	free(body2);

	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	b_after = w.b;
	/* Bob already moved Alice to a_new; the retransmission still names
	 * the old seed and must not be refused for that.  Time passed too:
	 * the same ACK (same Period) all the same. */
	tick(&w, 4000);
	b_after.tx = w.b.tx;
	b_after.tx_next = w.b.tx_next;
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack2, &acklen2), 1);
	assert_int_equal(acklen, acklen2);
	assert_memory_equal(ack, ack2, acklen);
	assert_memory_equal(&ccm.new_inbox, &w.a_new, sizeof(w.a_new));
	/* Nothing moved: no second re-keying, no switch. */
	assert_memory_equal(w.b.tx.k.root, b_after.tx.k.root, VEIL_KEY_BYTES);
	assert_int_equal(w.b.tx.seq, b_after.tx.seq);
	assert_memory_equal(w.b.tx_next.k.root, b_after.tx_next.k.root, VEIL_KEY_BYTES);
	assert_true(w.b.tx_next.live);
	assert_memory_equal(w.b.upd_ack_eph, b_after.upd_ack_eph, VEIL_KEY_BYTES);
	assert_int_equal(w.b.upd_recv_seq, 1);

	/* Alice gets the copy an hour after Bob made it: the binding key
	 * outlives the periods, so it still meets Bob's tx_next. */
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_UPDATE_ACK, ack2, acklen2);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack2, acklen2), VEIL_OK);
	assert_same_chain(&w.b.tx_next, &w.a.rx);
	/* The first copy of the ACK arriving late: nothing pending. */
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, acklen), VEIL_ERR_STATE);
	assert_same_chain(&w.b.tx_next, &w.a.rx);
	free(ack2);

	/*
	 * A copy of the UPDATE delayed past the DONE: Bob answers the same
	 * ACK again, now under the new chain (which Alice reads), and stays.
	 */
	done_a(&w);
	b_after = w.b;
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack2, &acklen2), 1);
	assert_int_equal(acklen, acklen2);
	assert_memory_equal(ack, ack2, acklen);
	assert_memory_equal(w.b.tx.bind, b_after.tx.bind, VEIL_KEY_BYTES);
	assert_false(w.b.tx_next.live);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_UPDATE_ACK, ack2, acklen2);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack2, acklen2), VEIL_ERR_STATE);
	assert_same_chain(&w.b.tx, &w.a.rx);
	free(body);
	free(ack);
	free(ack2);
	veil_pair_wipe(&b_after);
	world_wipe(&w);
}

static void
test_update_secret(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_pair before;
	uint8_t other[VEIL_KEY_BYTES];
	char *body, *ack;
	size_t len, acklen;

	(void)state;
	world_init(&w);
	randombytes_buf(other, sizeof(other));
	veil_pair_set_secret(&w.b, other);
	build_a(&w, &w.a_new, 0, &body, &len);
	before = w.b;
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen),
	    VEIL_ERR_SECRET);
	assert_null(ack);
	assert_int_equal(acklen, 0);
	assert_memory_equal(&w.b, &before, sizeof(before));
	/* The check comes before OCID and PubKey. */
	w.b.peer_inbox.seed[0] ^= 1;
	w.b.peer_pk[0] ^= 1;
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen),
	    VEIL_ERR_SECRET);
	free(body);
	veil_pair_wipe(&before);
	world_wipe(&w);
}

/*
 * reviews/security.md L10: PubKey must be the key Bob holds for Alice and
 * OCID the seed he knows for her; otherwise STATE and nothing changes.
 */
static void
test_update_pubkey_ocid(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_pair before;
	struct veil_identity other;
	char *body, *ack;
	size_t len, acklen;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_identity_new(&other), VEIL_OK);
	/* Alice's UPDATE names another key (she holds SH: a malicious
	 * contact, or a bug). */
	assert_int_equal(veil_update_build(&w.a, other.pk, "Alice", &w.a_new, 0,
	    &body, &len), VEIL_OK);
	before = w.b;
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen),
	    VEIL_ERR_STATE);
	assert_null(ack);
	assert_true(sodium_is_zero((const uint8_t *)&ccm, sizeof(ccm)));
	assert_memory_equal(&w.b, &before, sizeof(before));
	free(body);
	veil_pair_wipe(&w.a);
	world_wipe(&w);

	/* OCID is not the seed Bob knows for Alice. */
	world_init(&w);
	veil_seed_new(w.a.my_inbox.seed);
	build_a(&w, &w.a_new, 0, &body, &len);
	before = w.b;
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen),
	    VEIL_ERR_STATE);
	assert_null(ack);
	assert_memory_equal(&w.b, &before, sizeof(before));
	/* With the seed Bob knows, the same update goes through. */
	free(body);
	veil_pair_wipe(&w.a);
	world_wipe(&w);
	world_init(&w);
	build_a(&w, &w.a_new, 0, &body, &len);
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	free(ack);
	free(body);
	veil_pair_wipe(&before);
	veil_identity_wipe(&other);
	world_wipe(&w);
}

/* A changed CName is reported, so the daemon can rename the peer. */
static void
test_update_cname(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_pair b0;
	char *body, *ack;
	size_t len, acklen;

	(void)state;
	world_init(&w);
	b0 = w.b;
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "Alicia", &w.a_new, 0,
	    &body, &len), VEIL_OK);
	assert_int_equal(veil_update_on_update(&w.b, "Alice", w.clk.now, body, len,
	    &ccm, &ack, &acklen), 0);
	assert_true(ccm.name_changed);
	assert_string_equal(ccm.cname, "Alicia");
	free(ack);
	w.b = b0;
	assert_int_equal(veil_update_on_update(&w.b, "Alicia", w.clk.now, body, len,
	    &ccm, &ack, &acklen), 0);
	assert_false(ccm.name_changed);
	free(ack);
	w.b = b0;
	assert_int_equal(veil_update_on_update(&w.b, NULL, w.clk.now, body, len,
	    &ccm, &ack, &acklen), 0);
	assert_false(ccm.name_changed);
	free(ack);
	free(body);
	veil_pair_wipe(&b0);
	world_wipe(&w);
}

static void
test_update_order(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_pair a_copy;
	struct veil_inbox a3;
	char *u1, *u1b, *u2, *ack;
	size_t l1, l1b, l2, acklen;
	uint8_t root[VEIL_KEY_BYTES], tx_root[VEIL_KEY_BYTES];

	(void)state;
	world_init(&w);
	a3 = w.b_new;
	a_copy = w.a;
	build_a(&w, &w.a_new, 0, &u1, &l1);
	/* Same seq, another ephemeral key. */
	assert_int_equal(veil_update_build(&a_copy, w.ida.pk, "Alice", &w.a_new, 0,
	    &u1b, &l1b), VEIL_OK);
	assert_int_equal(a_copy.upd_sent_seq, 1);
	assert_memory_not_equal(a_copy.upd_eph_pk, w.a.upd_eph_pk, VEIL_KEY_BYTES);

	assert_int_equal(on_update_b(&w, u1, l1, &ccm, &ack, &acklen), 0);
	free(ack);
	memcpy(root, w.b.tx_next.k.root, VEIL_KEY_BYTES);
	memcpy(tx_root, w.b.tx.k.root, VEIL_KEY_BYTES);
	assert_int_equal(on_update_b(&w, u1b, l1b, &ccm, &ack, &acklen),
	    VEIL_ERR_REPLAY);
	assert_null(ack);
	assert_memory_equal(w.b.tx_next.k.root, root, VEIL_KEY_BYTES);
	assert_memory_equal(w.b.tx.k.root, tx_root, VEIL_KEY_BYTES);

	/* Alice finishes, then sends seq 2; the old seq 1 is now stale. */
	assert_int_equal(on_update_b(&w, u1, l1, &ccm, &ack, &acklen), 1);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, acklen), VEIL_OK);
	free(ack);
	build_a(&w, &a3, 0, &u2, &l2);
	assert_int_equal(on_update_b(&w, u2, l2, &ccm, &ack, &acklen), 0);
	free(ack);
	memcpy(root, w.b.tx_next.k.root, VEIL_KEY_BYTES);
	memcpy(tx_root, w.b.tx.k.root, VEIL_KEY_BYTES);
	assert_int_equal(on_update_b(&w, u1, l1, &ccm, &ack, &acklen), VEIL_ERR_STALE);
	assert_int_equal(on_update_b(&w, u1b, l1b, &ccm, &ack, &acklen),
	    VEIL_ERR_STALE);
	assert_null(ack);
	assert_memory_equal(w.b.tx_next.k.root, root, VEIL_KEY_BYTES);
	assert_memory_equal(w.b.tx.k.root, tx_root, VEIL_KEY_BYTES);
	assert_true(w.b.tx_next.live);
	assert_int_equal(w.b.upd_recv_seq, 2);
	free(u1);
	free(u1b);
	free(u2);
	veil_pair_wipe(&a_copy);
	world_wipe(&w);
}

static void
test_update_new_secret(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	uint8_t sh[VEIL_KEY_BYTES];
	char *body, *ack, *ack2;
	size_t len, acklen, acklen2;

	(void)state;
	world_init(&w);
	memcpy(sh, w.a.secret_hash, VEIL_KEY_BYTES);
	build_a(&w, &w.a_new, 1, &body, &len);
	assert_non_null(strstr(body, "\"NewSecret\":\""));
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	assert_true(ccm.has_new_secret);
	assert_memory_equal(w.b.secret, ccm.new_secret, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.b.secret_hash, sh, VEIL_KEY_BYTES);
	/* Alice switches only when she knows Bob did. */
	assert_memory_equal(w.a.secret_hash, sh, VEIL_KEY_BYTES);

	/* A retransmission still carries the old SH and is still recognised. */
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack2, &acklen2), 1);
	assert_int_equal(acklen, acklen2);
	assert_memory_equal(ack, ack2, acklen);

	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, acklen), VEIL_OK);
	assert_memory_equal(w.a.secret, w.b.secret, VEIL_KEY_BYTES);
	assert_memory_equal(w.a.secret_hash, w.b.secret_hash, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.a.secret_hash, sh, VEIL_KEY_BYTES);
	assert_true(sodium_is_zero(w.a.upd_new_secret, VEIL_KEY_BYTES));
	assert_false(w.a.upd_rekey_secret);
	/* The next update carries the new SH and is accepted. */
	free(body);
	free(ack);
	free(ack2);
	build_a(&w, &w.a_inbox, 0, &body, &len);
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	free(body);
	free(ack);
	world_wipe(&w);
}

#define ZERO_EPH "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static void
test_update_ack_state(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_rxchain rx;
	char *body, *ack, buf[256];
	size_t len, acklen;
	const char *bad_seq = "{\"Data\":\"UpdateAck\",\"Seq\":2,"
	    "\"Eph\":\"" ZERO_EPH "\",\"Period\":1}";

	(void)state;
	world_init(&w);
	rx = w.a.rx;
	/* Nothing pending. */
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, bad_seq, strlen(bad_seq)),
	    VEIL_ERR_STATE);
	build_a(&w, &w.a_new, 0, &body, &len);
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	/* Pending seq 1, ACK for seq 2. */
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, bad_seq, strlen(bad_seq)),
	    VEIL_ERR_STATE);
	assert_true(w.a.upd_pending);
	assert_memory_equal(&w.a.rx, &rx, sizeof(rx));
	/* Malformed ACKs. */
	{
		static const char *bad[] = {
			"",
			"[]",
			"{}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Period\":1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\"}",
			"{\"Data\":\"UpdateAck\",\"Seq\":\"1\",\"Eph\":\"" ZERO_EPH "\",\"Period\":1}",
			"{\"Data\":\"UpdateAcK\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\",\"Period\":1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"AAAA\",\"Period\":1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\",\"Period\":1,\"X\":1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Seq\":1,\"Eph\":\"" ZERO_EPH "\",\"Period\":1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\",\"Period\":-1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\",\"Period\":\"1\"}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\",\"Period\":1.5}",
			/* a period that would start after 2^64 s (900 s periods) */
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\",\"Period\":20496382304121725}",
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			assert_int_equal(veil_update_on_ack(&w.a, &w.clk, bad[i],
			    strlen(bad[i])), VEIL_ERR_FORMAT);
	}
	/* An all-zero Eph (low-order point) is refused, state kept. */
	snprintf(buf, sizeof(buf), "{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\""
	    ZERO_EPH "\",\"Period\":%llu}", (unsigned long long)w.b.upd_ack_period);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, buf, strlen(buf)),
	    VEIL_ERR_CRYPTO);
	assert_true(w.a.upd_pending);
	assert_memory_equal(&w.a.rx, &rx, sizeof(rx));
	/* Truncated ACK bodies. */
	for (len = 0; len < acklen; len++)
		assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, len),
		    VEIL_ERR_FORMAT);
	assert_int_equal(veil_update_on_ack(NULL, &w.clk, ack, acklen), VEIL_ERR_INVAL);
	assert_int_equal(veil_update_on_ack(&w.a, NULL, ack, acklen), VEIL_ERR_INVAL);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, acklen), VEIL_OK);
	free(body);
	free(ack);
	world_wipe(&w);
}

/*
 * An ACK whose Period lies more ratchet steps behind the clock than one
 * call takes (Rekey of 1 s: the ACK was made 2^20 s, 12 days, before Alice
 * reads it) is taken all the same: refusing it would refuse its copies
 * too.  The new chain stops at the bound, consistent, and the next
 * veil_pair_advance() brings it to the present.
 */
static void
test_update_ack_ratchet(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_inbox fast;
	char *body, *ack;
	size_t len, acklen;
	uint64_t pa;

	(void)state;
	world_init(&w);
	fast = w.a_new;
	fast.period = 1;
	build_a(&w, &fast, 0, &body, &len);
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	pa = w.b.tx_next.period;
	assert_int_equal(pa, w.clk.now);
	w.clk.now += VEIL_RATCHET_MAX_STEPS + 5;
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, acklen), VEIL_OK);
	assert_false(w.a.upd_pending);
	assert_int_equal(w.a.rx.period, pa + VEIL_RATCHET_MAX_STEPS);
	assert_int_equal(veil_pair_advance(&w.a, &w.clk, NULL, 0, 0), 1);
	assert_int_equal(w.a.rx.period, w.clk.now);
	assert_int_equal(veil_txchain_advance(&w.b.tx_next, w.clk.now),
	    VEIL_ERR_RATCHET);
	assert_int_equal(veil_txchain_advance(&w.b.tx_next, w.clk.now), 1);
	assert_same_chain(&w.b.tx_next, &w.a.rx);
	free(body);
	free(ack);
	world_wipe(&w);
}

/* Both sides update at the same moment: each direction re-keys once. */
static void
test_update_simultaneous(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_txchain a_tx0, b_tx0;
	char *ua, *ub, *acka, *ackb, *donea, *doneb;
	size_t la, lb, lacka, lackb, ldonea, ldoneb;

	(void)state;
	world_init(&w);
	a_tx0 = w.a.tx;
	b_tx0 = w.b.tx;
	build_a(&w, &w.a_new, 0, &ua, &la);
	assert_int_equal(veil_update_build(&w.b, w.idb.pk, "Bob", &w.b_new, 0,
	    &ub, &lb), VEIL_OK);
	frame_roundtrip(&w.a.tx, &w.b.rx, VEIL_T_UPDATE, ua, la);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_UPDATE, ub, lb);

	assert_int_equal(on_update_b(&w, ua, la, &ccm, &ackb, &lackb), 0);
	assert_int_equal(veil_update_on_update(&w.a, "Bob", w.clk.now, ub, lb, &ccm,
	    &acka, &lacka), 0);
	/* Neither tx moved: each ACK goes under a chain the other reads. */
	assert_memory_equal(w.a.tx.bind, a_tx0.bind, 32);
	assert_memory_equal(w.b.tx.bind, b_tx0.bind, 32);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_UPDATE_ACK, ackb, lackb);
	frame_roundtrip(&w.a.tx, &w.b.rx, VEIL_T_UPDATE_ACK, acka, lacka);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ackb, lackb), VEIL_OK);
	assert_int_equal(veil_update_on_ack(&w.b, &w.clk, acka, lacka), VEIL_OK);

	assert_same_chain(&w.a.tx_next, &w.b.rx);
	assert_same_chain(&w.b.tx_next, &w.a.rx);
	assert_same_chain(&w.a.tx, &w.b.rx_prev);
	assert_same_chain(&w.b.tx, &w.a.rx_prev);

	/* The DONEs cross as well: each under the old tx, read through rx_prev. */
	assert_int_equal(veil_update_done_build(&w.a, &donea, &ldonea), VEIL_OK);
	assert_int_equal(veil_update_done_build(&w.b, &doneb, &ldoneb), VEIL_OK);
	frame_fails(&w.a.tx, &w.b.rx);
	frame_roundtrip(&w.a.tx, &w.b.rx_prev, VEIL_T_UPDATE_DONE, donea, ldonea);
	frame_roundtrip(&w.b.tx, &w.a.rx_prev, VEIL_T_UPDATE_DONE, doneb, ldoneb);
	assert_int_equal(veil_update_on_done(&w.b, donea, ldonea), VEIL_OK);
	assert_int_equal(veil_update_on_done(&w.a, doneb, ldoneb), VEIL_OK);

	assert_same_chain(&w.a.tx, &w.b.rx);
	assert_same_chain(&w.b.tx, &w.a.rx);
	assert_false(w.a.tx_next.live || w.b.tx_next.live);
	assert_memory_not_equal(w.a.tx.bind, a_tx0.bind, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.b.tx.bind, b_tx0.bind, VEIL_KEY_BYTES);
	frame_roundtrip(&w.a.tx, &w.b.rx, VEIL_T_TEXT, "ab", 2);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "ba", 2);
	free(ua);
	free(ub);
	free(acka);
	free(ackb);
	free(donea);
	free(doneb);
	world_wipe(&w);
}

/*
 * A tiny network for crossing updates: every message is sealed when it is
 * sent, under the sender's tx of that moment, and delivered later in any
 * order, sometimes twice.  The clock runs (a few seconds per delivery,
 * 60 s key periods, so boundaries fall inside the exchange) and both sides
 * ratchet with it; every message arrives within the grace.
 */
#define NET_MAX 16
#define CROSSING_ROUNDS 300
#define NET_PLEN 60u

struct net_msg {
	uint8_t frame[FS];
	uint64_t seq, period;
	int to_b;
};

struct net {
	struct net_msg m[NET_MAX];
	size_t n;
	unsigned dups;
};

static void
net_send(struct world *w, struct net *net, int from_a, uint8_t type,
    const char *body, size_t len)
{
	struct veil_pair *s = from_a ? &w->a : &w->b;
	struct net_msg *m;
	uint8_t msgid[VEIL_MSGID_BYTES];

	assert_true(net->n < NET_MAX);
	assert_true(veil_pair_advance(s, &w->clk, NULL, 0, 0) >= 0);
	m = &net->m[net->n++];
	m->seq = s->tx.seq;
	m->period = s->tx.period;
	m->to_b = from_a;
	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(m->frame, sizeof(m->frame), FS, &s->tx.k,
	    &s->tx.seq, type, msgid, (const uint8_t *)body, len), 1);
}

/* Each side seals under a chain the other can open, whatever arrived. */
static void
net_check_readable(const struct veil_pair *s, const struct veil_pair *r)
{
	assert_true(same_chain(&s->tx, &r->rx) ||
	    (r->rx_prev.live && same_chain(&s->tx, &r->rx_prev)));
}

static void
net_deliver(struct world *w, struct net *net, size_t i, int dup)
{
	struct net_msg m = net->m[i];
	struct veil_pair *r = m.to_b ? &w->b : &w->a;
	struct veil_frame_hdr h;
	struct veil_rxdir *d;
	struct veil_ccm ccm;
	uint8_t body[FS];
	char *out;
	size_t outlen;
	int rc;

	if (!dup) {
		net->m[i] = net->m[net->n - 1];
		net->n--;
	}
	/* As the daemon does: the key the tag names, in rx or rx_prev. */
	rc = VEIL_ERR_DECRYPT;
	if ((d = veil_rxchain_find(&r->rx, m.period)) != NULL)
		rc = veil_frame_open(m.frame, FS, &d->k, m.seq, &h, body);
	if (rc == VEIL_ERR_DECRYPT && (d = veil_rxchain_find(&r->rx_prev,
	    m.period)) != NULL)
		rc = veil_frame_open(m.frame, FS, &d->k, m.seq, &h, body);
	assert_int_equal(rc, VEIL_OK);

	switch (h.type) {
	case VEIL_T_UPDATE:
		/* A copy of an accepted UPDATE names the old seed: still 1. */
		rc = veil_update_on_update(r, NULL, w->clk.now, (const char *)body,
		    h.len, &ccm, &out, &outlen);
		assert_true(rc == 0 || rc == 1);
		net_send(w, net, !m.to_b, VEIL_T_UPDATE_ACK, out, outlen);
		free(out);
		break;
	case VEIL_T_UPDATE_ACK:
		rc = veil_update_on_ack(r, &w->clk, (const char *)body, h.len);
		if (rc == VEIL_ERR_STATE)
			break;		/* a copy: acknowledged already */
		assert_int_equal(rc, VEIL_OK);
		assert_int_equal(veil_update_done_build(r, &out, &outlen), VEIL_OK);
		net_send(w, net, !m.to_b, VEIL_T_UPDATE_DONE, out, outlen);
		free(out);
		break;
	case VEIL_T_UPDATE_DONE:
		rc = veil_update_on_done(r, (const char *)body, h.len);
		assert_true(rc == 0 || rc == 1);
		break;
	default:
		fail_msg("unexpected type %u", h.type);
	}
	net_check_readable(&w->a, &w->b);
	net_check_readable(&w->b, &w->a);
}

/* Crossing UPDATEs end in the same place whatever the order of delivery. */
static void
test_update_crossing_any_order(void **state)
{
	struct tu_prng prng;
	unsigned round, dup_rounds = 0, boundary_rounds = 0;

	(void)state;
	tu_prng_seed(&prng, 0x5eed);
	/* Fixed, not tu_iters(): a protocol run, not a garbage loop. */
	for (round = 0; round < CROSSING_ROUNDS; round++) {
		struct world w;
		struct net net;
		struct veil_txchain a_tx0, b_tx0;
		char *ua, *ub;
		size_t la, lb;
		uint64_t start;

		world_init_at(&w, T0 + tu_prng_next(&prng) % 100000);
		w.clk.grace = w.clk.lead = NET_PLEN / 2;
		w.a_new.period = NET_PLEN;
		w.b_new.period = NET_PLEN;
		start = w.clk.now;
		memset(&net, 0, sizeof(net));
		a_tx0 = w.a.tx;
		b_tx0 = w.b.tx;
		build_a(&w, &w.a_new, 0, &ua, &la);
		assert_int_equal(veil_update_build(&w.b, w.idb.pk, "Bob", &w.b_new,
		    0, &ub, &lb), VEIL_OK);
		net_send(&w, &net, 1, VEIL_T_UPDATE, ua, la);
		net_send(&w, &net, 0, VEIL_T_UPDATE, ub, lb);
		free(ua);
		free(ub);
		while (net.n > 0) {
			size_t i = (size_t)(tu_prng_next(&prng) % net.n);
			int dup = net.dups < 3 && tu_prng_next(&prng) % 4 == 0;

			tick(&w, tu_prng_next(&prng) % 3);
			net.dups += dup;
			net_deliver(&w, &net, i, dup);
		}
		dup_rounds += net.dups > 0;
		boundary_rounds += veil_period_of(start, NET_PLEN) !=
		    veil_period_of(w.clk.now, NET_PLEN);

		/* Both directions re-keyed once, both sides switched. */
		assert_false(w.a.upd_pending || w.b.upd_pending);
		assert_false(w.a.tx_next.live || w.b.tx_next.live);
		assert_same_chain(&w.a.tx, &w.b.rx);
		assert_same_chain(&w.b.tx, &w.a.rx);
		assert_memory_equal(w.b.rx_prev.bind, a_tx0.bind, 32);
		assert_memory_equal(w.a.rx_prev.bind, b_tx0.bind, 32);
		assert_memory_not_equal(w.a.tx.bind, a_tx0.bind, VEIL_KEY_BYTES);
		assert_memory_not_equal(w.b.tx.bind, b_tx0.bind, VEIL_KEY_BYTES);
		assert_memory_equal(&w.a.peer_inbox, &w.b_new, sizeof(w.b_new));
		assert_memory_equal(&w.b.peer_inbox, &w.a_new, sizeof(w.a_new));
		frame_roundtrip(&w.a.tx, &w.b.rx, VEIL_T_TEXT, "ab", 2);
		frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "ba", 2);
		world_wipe(&w);
	}
	/* The copies and the boundaries were exercised, not only clean runs. */
	assert_true(dup_rounds > 0);
	assert_true(boundary_rounds > 0);
}

/*
 * Alice's DONE for seq 1 is lost and her UPDATE 2 arrives: it proves she
 * got ACK 1, so Bob switches first and derives seq 2 from the chain she has.
 */
static void
test_update_newer_switches(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_inbox a3;
	struct veil_txchain k0, k1;
	char *done1, *u2, *ack2;
	size_t ldone1, l2, lack2;

	(void)state;
	world_init(&w);
	a3 = w.a_new;
	veil_seed_new(a3.seed);
	k0 = w.b.tx;
	rotate_a_ack(&w, &w.a_new, 0);
	k1 = w.b.tx_next;
	assert_int_equal(veil_update_done_build(&w.a, &done1, &ldone1), VEIL_OK);
	/* Lost: Bob goes on under k0, which Alice reads through rx_prev. */
	frame_roundtrip(&w.b.tx, &w.a.rx_prev, VEIL_T_TEXT, "k0", 2);

	build_a(&w, &a3, 0, &u2, &l2);
	frame_roundtrip(&w.a.tx, &w.b.rx, VEIL_T_UPDATE, u2, l2);
	assert_int_equal(on_update_b(&w, u2, l2, &ccm, &ack2, &lack2), 0);
	assert_int_equal(w.b.upd_recv_seq, 2);
	/* Switched to k1, with its own seq counter ... */
	assert_memory_equal(w.b.tx.bind, k1.bind, 32);
	assert_int_equal(w.b.tx.seq, 0);
	/* ... and the chain of seq 2 waits, a new one. */
	assert_true(w.b.tx_next.live);
	assert_memory_not_equal(w.b.tx_next.bind, k1.bind, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.b.tx_next.bind, k0.bind, VEIL_KEY_BYTES);

	/* ACK 2 under k1: Alice opens it with the rx ACK 1 gave her, not k0. */
	frame_fails(&w.b.tx, &w.a.rx_prev);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_UPDATE_ACK, ack2, lack2);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack2, lack2), VEIL_OK);
	/* Both derived seq 2 from k1. */
	assert_same_chain(&w.b.tx_next, &w.a.rx);
	assert_memory_equal(w.a.rx_prev.bind, k1.bind, 32);

	/* DONE 1 turns up late: it must not move Bob to the chain of seq 2. */
	assert_int_equal(veil_update_on_done(&w.b, done1, ldone1), VEIL_ERR_STATE);
	assert_memory_equal(w.b.tx.bind, k1.bind, 32);
	assert_true(w.b.tx_next.live);
	done_a(&w);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "k2", 2);
	frame_fails(&w.b.tx, &w.a.rx_prev);
	free(done1);
	free(u2);
	free(ack2);
	world_wipe(&w);
}

/*
 * Between ACK and DONE Bob seals under his old tx: Alice opens that with
 * rx_prev, and only after the DONE with rx.  The end of a grace period
 * on Bob's side does not touch the chain waiting in tx_next, which
 * ratchets with time while it waits.
 */
static void
test_update_grace(void **state)
{
	struct world w;
	struct veil_txchain tx, next;
	char *done;
	size_t len;

	(void)state;
	world_init(&w);
	rotate_a_ack(&w, &w.a_new, 0);
	frame_roundtrip(&w.b.tx, &w.a.rx_prev, VEIL_T_TEXT, "before", 6);
	frame_fails(&w.b.tx, &w.a.rx);

	tx = w.b.tx;
	next = w.b.tx_next;
	veil_pair_drop_prev(&w.b);
	assert_memory_equal(&w.b.tx, &tx, sizeof(tx));
	assert_memory_equal(&w.b.tx_next, &next, sizeof(next));
	/* Hours pass before the DONE: tx_next moves on with the clock. */
	tick(&w, 5 * 900 + 3);
	assert_int_equal(w.b.tx_next.period, next.period + 5);
	assert_same_chain(&w.b.tx_next, &w.a.rx);
	frame_roundtrip(&w.b.tx, &w.a.rx_prev, VEIL_T_TEXT, "between", 7);

	done_a(&w);
	frame_roundtrip(&w.b.tx, &w.a.rx, VEIL_T_TEXT, "after", 5);
	frame_fails(&w.b.tx, &w.a.rx_prev);

	/* Alice resends the DONE (a frame was still under rx_prev): a copy. */
	tx = w.b.tx;
	assert_int_equal(veil_update_done_build(&w.a, &done, &len), VEIL_OK);
	assert_int_equal(veil_update_on_done(&w.b, done, len), 1);
	assert_memory_equal(&w.b.tx, &tx, sizeof(tx));
	assert_false(w.b.tx_next.live);
	free(done);
	veil_txchain_wipe(&tx);
	veil_txchain_wipe(&next);
	world_wipe(&w);
}

/* Building UPDATE-DONE: only for an update that was acknowledged. */
static void
test_update_done_build(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	char *body, *ack, *done, *done2;
	size_t len, acklen, dlen, dlen2;

	(void)state;
	world_init(&w);
	/* Nothing sent yet. */
	done = (char *)1;
	dlen = 1;
	assert_int_equal(veil_update_done_build(&w.a, &done, &dlen), VEIL_ERR_STATE);
	assert_null(done);
	assert_int_equal(dlen, 0);
	/* Sent, not acknowledged. */
	build_a(&w, &w.a_new, 0, &body, &len);
	assert_int_equal(veil_update_done_build(&w.a, &done, &dlen), VEIL_ERR_STATE);
	assert_null(done);
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, acklen), VEIL_OK);

	assert_int_equal(veil_update_done_build(&w.a, &done, &dlen), VEIL_OK);
	assert_string_equal(done, "{\"Data\":\"UpdateDone\",\"Seq\":1}");
	assert_int_equal(dlen, strlen(done));
	/* Rebuilding (a resend) gives the same bytes and changes nothing. */
	assert_int_equal(veil_update_done_build(&w.a, &done2, &dlen2), VEIL_OK);
	assert_int_equal(dlen, dlen2);
	assert_memory_equal(done, done2, dlen);
	assert_int_equal(w.a.upd_sent_seq, 1);
	assert_false(w.a.upd_pending);
	free(done2);

	/* Each step's body is refused by the other steps' parsers. */
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, done, dlen), VEIL_ERR_FORMAT);
	assert_int_equal(veil_update_on_done(&w.b, ack, acklen), VEIL_ERR_FORMAT);
	assert_int_equal(veil_update_on_done(&w.b, body, len), VEIL_ERR_FORMAT);
	assert_int_equal(on_update_b(&w, done, dlen, &ccm, &done2, &dlen2),
	    VEIL_ERR_FORMAT);
	assert_null(done2);
	assert_true(w.b.tx_next.live);

	/* A new update pending again: its DONE cannot be built yet. */
	free(body);
	build_a(&w, &w.a_inbox, 0, &body, &len);
	assert_int_equal(veil_update_done_build(&w.a, &done2, &dlen2), VEIL_ERR_STATE);
	assert_null(done2);

	assert_int_equal(veil_update_done_build(NULL, &done2, &dlen2), VEIL_ERR_INVAL);
	assert_int_equal(veil_update_done_build(&w.a, NULL, &dlen2), VEIL_ERR_INVAL);
	assert_int_equal(veil_update_done_build(&w.a, &done2, NULL), VEIL_ERR_INVAL);
	assert_null(done2);
	free(body);
	free(ack);
	free(done);
	world_wipe(&w);
}

/* Receiving UPDATE-DONE: FORMAT before STATE, and nothing moves on either. */
static void
test_update_done_parse(void **state)
{
	static const char *bad[] = {
		"",
		" ",
		"[]",
		"null",
		"{}",
		"{",
		"\"UpdateDone\"",
		"{\"Data\":\"UpdateDone\"}",
		"{\"Seq\":1}",
		"{\"Data\":\"UpdateDone\",\"Seq\":\"1\"}",
		"{\"Data\":\"UpdateDone\",\"Seq\":1.0}",
		"{\"Data\":\"UpdateDone\",\"Seq\":true}",
		"{\"Data\":\"UpdateDone\",\"Seq\":null}",
		"{\"Data\":\"UpdateDone\",\"Seq\":0}",
		"{\"Data\":\"UpdateDone\",\"Seq\":-1}",
		"{\"Data\":\"UpdateDone\",\"Seq\":18446744073709551617}",
		"{\"Data\":\"UpdateAck\",\"Seq\":1}",
		"{\"Data\":\"UpdateDonE\",\"Seq\":1}",
		"{\"Data\":\"UpdateDone \",\"Seq\":1}",
		"{\"Data\":1,\"Seq\":1}",
		"{\"Data\":\"UpdateDone\",\"Seq\":1,\"X\":1}",
		"{\"Data\":\"UpdateDone\",\"Seq\":1,\"Eph\":\"" ZERO_EPH "\"}",
		"{\"Data\":\"UpdateDone\",\"Seq\":1,\"Seq\":1}",
		"{\"Data\":\"UpdateDone\",\"Seq\":1}x",
		"{\"Data\":\"UpdateDone\",\"Seq\":1}{}",
		"[{\"Data\":\"UpdateDone\",\"Seq\":1}]",
	};
	static const char good[] = "{\"Data\":\"UpdateDone\",\"Seq\":1}";
	static const char seq2[] = "{\"Data\":\"UpdateDone\",\"Seq\":2}";
	static const char extra[] = "{\"Data\":\"UpdateDone\",\"Seq\":1,\"X\":1}";
	struct world w;
	struct veil_ccm ccm;
	struct veil_txchain tx, next;
	char *body, *ack, big[VEIL_UPDATE_BODY_MAX + 64];
	size_t len, acklen, i;

	(void)state;
	world_init(&w);
	/* Before any UPDATE, even a well-formed DONE has nothing to confirm. */
	assert_int_equal(veil_update_on_done(&w.b, good, strlen(good)), VEIL_ERR_STATE);
	assert_false(w.b.tx_next.live);

	build_a(&w, &w.a_new, 0, &body, &len);
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	tx = w.b.tx;
	next = w.b.tx_next;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(veil_update_on_done(&w.b, bad[i], strlen(bad[i])),
		    VEIL_ERR_FORMAT);
		assert_true(w.b.tx_next.live);
	}
	/* Every truncation of the good body. */
	for (i = 0; i < sizeof(good) - 1; i++)
		assert_int_equal(veil_update_on_done(&w.b, good, i), VEIL_ERR_FORMAT);
	/* Valid JSON, but whitespace pushes it over the body limit. */
	memset(big, ' ', sizeof(big));
	memcpy(big + sizeof(big) - (sizeof(good) - 1), good, sizeof(good) - 1);
	assert_int_equal(veil_update_on_done(&w.b, big, sizeof(big)), VEIL_ERR_FORMAT);
	/* Well formed, for another seq. */
	assert_int_equal(veil_update_on_done(&w.b, seq2, strlen(seq2)), VEIL_ERR_STATE);
	assert_int_equal(veil_update_on_done(NULL, good, strlen(good)), VEIL_ERR_INVAL);
	assert_int_equal(veil_update_on_done(&w.b, NULL, 0), VEIL_ERR_FORMAT);

	/* None of that moved Bob. */
	assert_memory_equal(&w.b.tx, &tx, sizeof(tx));
	assert_memory_equal(&w.b.tx_next, &next, sizeof(next));
	assert_int_equal(w.b.upd_recv_seq, 1);

	/* Whitespace around the object leaves one object: accepted, switches. */
	snprintf(big, sizeof(big), " \n%s\t ", good);
	assert_int_equal(veil_update_on_done(&w.b, big, strlen(big)), VEIL_OK);
	assert_memory_equal(&w.b.tx, &next, sizeof(next));
	assert_false(w.b.tx_next.live);
	/* A copy: 1, and Bob stays on the new chain. */
	assert_int_equal(veil_update_on_done(&w.b, good, strlen(good)), 1);
	assert_memory_equal(&w.b.tx, &next, sizeof(next));
	assert_false(w.b.tx_next.live);
	/* A copy is still checked: STATE and FORMAT as before. */
	assert_int_equal(veil_update_on_done(&w.b, seq2, strlen(seq2)), VEIL_ERR_STATE);
	assert_int_equal(veil_update_on_done(&w.b, extra, strlen(extra)),
	    VEIL_ERR_FORMAT);
	free(body);
	free(ack);
	veil_txchain_wipe(&tx);
	veil_txchain_wipe(&next);
	world_wipe(&w);
}

/* A valid CCM, edited through jansson, must be refused as FORMAT. */
static void
expect_format(struct world *w, json_t *obj)
{
	struct veil_ccm ccm;
	char *s, *ack;
	size_t acklen;

	s = json_dumps(obj, JSON_COMPACT);
	assert_non_null(s);
	assert_int_equal(veil_ccm_parse(&ccm, s, strlen(s)), VEIL_ERR_FORMAT);
	assert_true(sodium_is_zero((const uint8_t *)&ccm, sizeof(ccm)));
	assert_int_equal(on_update_b(w, s, strlen(s), &ccm, &ack, &acklen),
	    VEIL_ERR_FORMAT);
	assert_null(ack);
	free(s);
	json_decref(obj);
}

static json_t *
edit(const char *body, const char *key, json_t *value)
{
	json_t *o = json_loads(body, 0, NULL);

	assert_non_null(o);
	if (value == NULL)
		assert_int_equal(json_object_del(o, key), 0);
	else
		assert_int_equal(json_object_set_new(o, key, value), 0);
	return o;
}

static void
test_update_format(void **state)
{
	static const char *fields[] = { "Data", "OCID", "PubKey", "CName",
	    "NewCID", "Secret", "StegKey", "Alg", "Seq", "Eph", "Epoch", "Rekey" };
	static const char *strs[] = { "Data", "OCID", "PubKey", "CName",
	    "NewCID", "Secret", "NewSecret", "StegKey", "Alg", "Eph" };
	static const char *ints[] = { "Seq", "Epoch", "Rekey" };
	struct world w;
	struct veil_ccm ccm;
	char *body, *ack, big[VEIL_UPDATE_BODY_MAX + 64];
	size_t len, i, acklen;

	(void)state;
	world_init(&w);
	build_a(&w, &w.a_new, 1, &body, &len);
	assert_int_equal(veil_ccm_parse(&ccm, body, len), VEIL_OK);
	assert_true(ccm.has_new_secret);
	assert_memory_equal(ccm.secret, w.a.secret_hash, VEIL_KEY_BYTES);
	assert_memory_equal(ccm.eph, w.a.upd_eph_pk, VEIL_KEY_BYTES);
	assert_memory_equal(ccm.new_secret, w.a.upd_new_secret, VEIL_KEY_BYTES);
	assert_memory_equal(ccm.ocid, w.a_inbox.seed, 32);
	assert_memory_equal(&ccm.new_inbox, &w.a_new, sizeof(w.a_new));
	assert_int_equal(ccm.seq, 1);
	/* Optional NewSecret may be absent. */
	{
		json_t *o = edit(body, "NewSecret", NULL);
		char *s = json_dumps(o, JSON_COMPACT);

		assert_int_equal(veil_ccm_parse(&ccm, s, strlen(s)), VEIL_OK);
		assert_false(ccm.has_new_secret);
		free(s);
		json_decref(o);
	}
	/* The limits of Epoch and Rekey are accepted. */
	{
		json_t *o = edit(body, "Epoch", json_integer(0));
		char *s;

		json_object_set_new(o, "Rekey", json_integer(VEIL_PERIOD_MAX));
		s = json_dumps(o, JSON_COMPACT);
		assert_int_equal(veil_ccm_parse(&ccm, s, strlen(s)), VEIL_OK);
		assert_int_equal(ccm.new_inbox.epoch, 0);
		assert_int_equal(ccm.new_inbox.period, VEIL_PERIOD_MAX);
		free(s);
		json_decref(o);
	}

	/* Missing mandatory fields. */
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		expect_format(&w, edit(body, fields[i], NULL));
	/* Wrong types. */
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		expect_format(&w, edit(body, strs[i], json_integer(1)));
		expect_format(&w, edit(body, strs[i], json_null()));
	}
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		expect_format(&w, edit(body, ints[i], json_string("1")));
		expect_format(&w, edit(body, ints[i], json_real(1.0)));
		expect_format(&w, edit(body, ints[i], json_true()));
		expect_format(&w, edit(body, ints[i], json_integer(-1)));
	}
	/* Wrong values. */
	expect_format(&w, edit(body, "Data", json_string("UpdateAck")));
	expect_format(&w, edit(body, "Unknown", json_string("x")));
	expect_format(&w, edit(body, "Seq", json_integer(0)));
	expect_format(&w, edit(body, "Epoch", json_integer(VEIL_EPOCH_MAX + 1)));
	expect_format(&w, edit(body, "Rekey", json_integer(0)));
	expect_format(&w, edit(body, "Rekey", json_integer(VEIL_PERIOD_MAX + 1)));
	/* Seeds: 32 bytes of b64u, not all zero; no 16-byte IDs any more. */
	expect_format(&w, edit(body, "OCID", json_string("short")));
	expect_format(&w, edit(body, "OCID", json_string("Npf-1AJTQa3dPygd1M03Xw")));
	expect_format(&w, edit(body, "NewCID", json_string("Npf-1AJTQa3dPygd1M03Xw")));
	expect_format(&w, edit(body, "NewCID", json_string(ZERO_EPH)));
	expect_format(&w, edit(body, "OCID", json_string(ZERO_EPH)));
	expect_format(&w, edit(body, "NewCID",
	    json_string("a/b+cddddddddddddddddddddddddddddddddddddddd")));
	expect_format(&w, edit(body, "PubKey", json_string("AAAA")));
	expect_format(&w, edit(body, "PubKey",
	    json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")));
	expect_format(&w, edit(body, "Eph",
	    json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+")));
	expect_format(&w, edit(body, "NewSecret", json_string("")));
	expect_format(&w, edit(body, "Secret", json_string("00")));
	expect_format(&w, edit(body, "Secret", json_string(
	    "zz00000000000000000000000000000000000000000000000000000000000000")));
	expect_format(&w, edit(body, "CName", json_string("")));
	expect_format(&w, edit(body, "CName", json_string("Al\x1b[2Jice")));
	expect_format(&w, edit(body, "CName", json_string(
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")));
	expect_format(&w, edit(body, "StegKey", json_string("1234")));
	expect_format(&w, edit(body, "Alg", json_string("X25519-AES")));

	/* Not an object, not JSON, duplicates, trailing bytes, too big. */
	{
		static const char *bad[] = { "", "[]", "null", "\"x\"", "{",
		    "{\"Data\":\"UpdateContact\"}" };

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			assert_int_equal(veil_ccm_parse(&ccm, bad[i], strlen(bad[i])),
			    VEIL_ERR_FORMAT);
	}
	memcpy(big, body, len);
	big[len] = 'x';
	assert_int_equal(veil_ccm_parse(&ccm, big, len + 1), VEIL_ERR_FORMAT);
	/* A duplicated key, spliced in before the closing brace. */
	memcpy(big, body, len - 1);
	memcpy(big + len - 1, ",\"Seq\":1}", 9);
	assert_int_equal(veil_ccm_parse(&ccm, big, len + 8), VEIL_ERR_FORMAT);
	/* Valid JSON, but whitespace pushes it over the limit. */
	memset(big, ' ', sizeof(big));
	memcpy(big + sizeof(big) - len, body, len);
	assert_int_equal(veil_ccm_parse(&ccm, big + sizeof(big) - len - 10, len + 10), VEIL_OK);
	assert_int_equal(veil_ccm_parse(&ccm, big, sizeof(big)), VEIL_ERR_FORMAT);
	/* Every truncation. */
	for (i = 0; i < len; i++) {
		assert_int_equal(veil_ccm_parse(&ccm, body, i), VEIL_ERR_FORMAT);
		assert_int_equal(on_update_b(&w, body, i, &ccm, &ack, &acklen),
		    VEIL_ERR_FORMAT);
	}
	/* Nothing above changed Bob. */
	assert_int_equal(w.b.upd_recv_seq, 0);
	assert_false(w.b.tx_next.live);
	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	free(ack);
	free(body);
	world_wipe(&w);
}

/* Random mutations of a CCM never crash and never half-apply. */
static void
test_update_garbage(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct tu_prng prng;
	char *body, *ack;
	uint8_t buf[VEIL_UPDATE_BODY_MAX + 16];
	size_t len, n, acklen;
	unsigned long it, iters;
	int r;

	(void)state;
	world_init(&w);
	build_a(&w, &w.a_new, 0, &body, &len);
	tu_prng_seed(&prng, 0xcc3);
	iters = tu_iters(2000);
	for (it = 0; it < iters; it++) {
		struct veil_pair before = w.b;

		memcpy(buf, body, len);
		n = len;
		tu_mutate(&prng, buf, &n, sizeof(buf));
		r = on_update_b(&w, (const char *)buf, n, &ccm, &ack, &acklen);
		if (r == 0) {
			/* Only harmless edits (e.g. whitespace) parse: undo. */
			free(ack);
			w.b = before;
			continue;
		}
		assert_true(r < 0);
		assert_null(ack);
		assert_memory_equal(&w.b, &before, sizeof(before));
		assert_int_equal(veil_update_on_ack(&w.a, &w.clk, (const char *)buf,
		    n) < 0, 1);
		/* Bob accepted no UPDATE: nothing can be confirmed. */
		assert_int_equal(veil_update_on_done(&w.b, (const char *)buf, n) < 0, 1);
	}
	free(body);
	world_wipe(&w);
}

/* A pending update survives the store, on both sides. */
static void
test_update_pack_pending(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_pair back, b_back;
	uint8_t buf[VEIL_PAIR_PACKED_MAX];
	char *body, *body2, *ack, *done;
	size_t len, len2, acklen, donelen;
	int n;

	(void)state;
	world_init(&w);
	build_a(&w, &w.a_new, 1, &body, &len);
	n = veil_pair_pack(&w.a, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_memory_equal(&back.upd_new, &w.a_new, sizeof(w.a_new));
	assert_int_equal(veil_update_build(&back, w.ida.pk, "Alice", NULL, 0,
	    &body2, &len2), VEIL_OK);
	assert_int_equal(len, len2);
	assert_memory_equal(body, body2, len);
	assert_int_equal(on_update_b(&w, body2, len2, &ccm, &ack, &acklen), 0);

	/* Bob stored with the new chain still waiting: it survives too. */
	n = veil_pair_pack(&w.b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(veil_pair_unpack(&b_back, buf, (size_t)n), VEIL_OK);
	assert_true(b_back.tx_next.live);
	assert_memory_equal(&b_back.tx_next, &w.b.tx_next, sizeof(w.b.tx_next));
	assert_memory_equal(&b_back.tx, &w.b.tx, sizeof(w.b.tx));
	assert_int_equal(b_back.upd_ack_period, w.b.upd_ack_period);
	/* ... and answers a retransmission with the same ACK. */
	{
		char *ack2;
		size_t acklen2;

		assert_int_equal(veil_update_on_update(&b_back, NULL, w.clk.now + 9999,
		    body, len, &ccm, &ack2, &acklen2), 1);
		assert_int_equal(acklen2, acklen);
		assert_memory_equal(ack2, ack, acklen);
		free(ack2);
	}
	assert_int_equal(veil_update_on_ack(&back, &w.clk, ack, acklen), VEIL_OK);
	assert_same_chain(&w.b.tx_next, &back.rx);
	assert_memory_equal(back.secret_hash, w.b.secret_hash, VEIL_KEY_BYTES);
	assert_int_equal(veil_update_done_build(&back, &done, &donelen), VEIL_OK);
	assert_int_equal(veil_update_on_done(&b_back, done, donelen), VEIL_OK);
	assert_same_chain(&b_back.tx, &back.rx);
	assert_false(b_back.tx_next.live);
	free(body);
	free(body2);
	free(ack);
	free(done);
	veil_pair_wipe(&back);
	veil_pair_wipe(&b_back);
	world_wipe(&w);
}

static void
test_update_bad_args(void **state)
{
	struct world w;
	struct veil_inbox bad;
	struct veil_ccm ccm;
	char *body, *ack;
	size_t len, acklen;

	(void)state;
	world_init(&w);
	bad = w.a_new;
	bad.period = 0;
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "", &w.a_new, 0, &body,
	    &len), VEIL_ERR_INVAL);
	assert_null(body);
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "Alice", &bad, 0, &body,
	    &len), VEIL_ERR_INVAL);
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "Alice", NULL, 0, &body,
	    &len), VEIL_ERR_INVAL);
	memset(bad.seed, 0, 32);
	bad.period = 60;
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "Alice", &bad, 0, &body,
	    &len), VEIL_ERR_INVAL);
	assert_false(w.a.upd_pending);
	assert_int_equal(w.a.upd_sent_seq, 0);
	assert_int_equal(veil_update_on_update(NULL, NULL, 0, "{}", 2, &ccm, &ack,
	    &acklen), VEIL_ERR_INVAL);
	world_wipe(&w);
}

static void
b64u(char out[44], const uint8_t in[32])
{
	sodium_bin2base64(out, 44, in, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/*
 * protocol.md 6 recomputed: D' = H_B("veil-rekey-v2" || DH || u64(Seq)),
 * B = KDF(R_0, 4, "veildir2") of the first root of the chain replaced,
 * the root of period floor(t / Rekey) of the new chain; and the exact JSON
 * of the three messages.
 */
static void
test_update_spec(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	crypto_generichash_state st;
	uint8_t e_x[32], r0[32], bind[32], dh[32], d[32], k[32];
	uint8_t seq[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	char *body, *ack, *done, want[1024], pk64[44], eph64[44], ocid[44];
	char ncid[44], sh[65];
	size_t len, acklen, donelen;
	uint64_t pa;

	(void)state;
	world_init(&w);
	memcpy(r0, w.b.tx.k.root, 32);	/* the chain's first root */
	crypto_kdf_derive_from_key(bind, 32, 4, "veildir2", r0);
	assert_memory_equal(w.b.tx.bind, bind, 32);
	/* The chain moved since: B is still the first root's. */
	tick(&w, 2 * 3600);
	assert_memory_not_equal(w.b.tx.k.root, r0, 32);
	assert_memory_equal(w.b.tx.bind, bind, 32);
	build_a(&w, &w.a_new, 0, &body, &len);
	memcpy(e_x, w.a.upd_eph_sk, 32);

	b64u(pk64, w.ida.pk);
	b64u(eph64, w.a.upd_eph_pk);
	b64u(ocid, w.a_inbox.seed);
	b64u(ncid, w.a_new.seed);
	sodium_bin2hex(sh, sizeof(sh), w.a.secret_hash, 32);
	snprintf(want, sizeof(want), "{\"Data\":\"UpdateContact\",\"OCID\":\"%s\","
	    "\"PubKey\":\"%s\",\"CName\":\"Alice\",\"NewCID\":\"%s\",\"Secret\":\"%s\","
	    "\"StegKey\":\"0000\",\"Alg\":\"X25519-XChaCha20Poly1305-BLAKE2b\","
	    "\"Seq\":1,\"Eph\":\"%s\",\"Epoch\":1800,\"Rekey\":900}", ocid, pk64, ncid,
	    sh, eph64);
	assert_string_equal(body, want);

	assert_int_equal(on_update_b(&w, body, len, &ccm, &ack, &acklen), 0);
	pa = veil_period_of(w.clk.now, 900);
	b64u(eph64, w.b.upd_ack_eph);
	snprintf(want, sizeof(want), "{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"%s\","
	    "\"Period\":%llu}", eph64, (unsigned long long)pa);
	assert_string_equal(ack, want);

	assert_int_equal(crypto_scalarmult(dh, e_x, w.b.upd_ack_eph), 0);
	crypto_generichash_init(&st, bind, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)"veil-rekey-v2", 13);
	crypto_generichash_update(&st, dh, 32);
	crypto_generichash_update(&st, seq, 8);
	crypto_generichash_final(&st, d, 32);
	assert_int_equal(w.b.tx_next.period, pa);
	assert_memory_equal(w.b.tx_next.k.root, d, 32);
	crypto_kdf_derive_from_key(k, 32, 1, "veildir2", d);
	assert_memory_equal(w.b.tx_next.k.key, k, 32);
	crypto_kdf_derive_from_key(k, 32, 4, "veildir2", d);
	assert_memory_equal(w.b.tx_next.bind, k, 32);
	assert_int_equal(veil_update_on_ack(&w.a, &w.clk, ack, acklen), VEIL_OK);
	assert_memory_equal(veil_rxchain_find(&w.a.rx, pa)->k.root, d, 32);

	/* Step 3 carries nothing but the seq; after it Bob seals under D'. */
	assert_int_equal(veil_update_done_build(&w.a, &done, &donelen), VEIL_OK);
	assert_string_equal(done, "{\"Data\":\"UpdateDone\",\"Seq\":1}");
	assert_int_equal(veil_update_on_done(&w.b, done, donelen), VEIL_OK);
	assert_memory_equal(w.b.tx.k.root, d, 32);
	sodium_memzero(e_x, sizeof(e_x));
	free(body);
	free(ack);
	free(done);
	world_wipe(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_full),
		cmocka_unit_test(test_update_spec),
		cmocka_unit_test(test_update_params),
		cmocka_unit_test(test_update_twice),
		cmocka_unit_test(test_update_retransmit),
		cmocka_unit_test(test_update_secret),
		cmocka_unit_test(test_update_pubkey_ocid),
		cmocka_unit_test(test_update_cname),
		cmocka_unit_test(test_update_order),
		cmocka_unit_test(test_update_new_secret),
		cmocka_unit_test(test_update_ack_state),
		cmocka_unit_test(test_update_ack_ratchet),
		cmocka_unit_test(test_update_simultaneous),
		cmocka_unit_test(test_update_crossing_any_order),
		cmocka_unit_test(test_update_newer_switches),
		cmocka_unit_test(test_update_grace),
		cmocka_unit_test(test_update_done_build),
		cmocka_unit_test(test_update_done_parse),
		cmocka_unit_test(test_update_format),
		cmocka_unit_test(test_update_garbage),
		cmocka_unit_test(test_update_pack_pending),
		cmocka_unit_test(test_update_bad_args),
	};

	tu_deterministic_rng("test_update");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("update", tests, NULL, NULL);
}
