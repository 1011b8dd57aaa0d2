/* Tests for libproto agree and pair: the three-step agreement over real frames, identity proofs, state checks, storage, fingerprints. */
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

#define FS VEIL_FRAME_DEFAULT
#define NOW UINT64_C(1767225600)	/* 2026-01-01 00:00 UTC */
#define PA 3600u			/* Alice's key period */
#define PB 600u				/* Bob's key period */
#define GRACE 120u
#define MAX_AGE (3 * 86400)		/* request lifetime */
#define LA 16				/* lookahead */

/* REQUEST body offsets (protocol.md 4), for a 16-byte CID. */
#define R_VER 0
#define R_S 1
#define R_K 33
#define R_KPB 65
#define R_EB 97
#define R_TB 129
#define R_LB 137
#define R_PB 141
#define R_CID 145
#define R_JB 162
#define R_NAME 194
#define REQ_LEN(nlen) (R_NAME + 1 + (nlen))
/* ACCEPT body offsets. */
#define A_EA 0
#define A_HS 32
#define A_LA 64
#define A_PA 68
#define A_JA 72

struct party {
	struct veil_identity id;
	struct veil_card card;		/* Alice's public card (unused for Bob) */
	struct veil_inbox inbox;	/* seed, epoch length, key period */
	const char *name;
	struct veil_agree ag;
	struct veil_pair pair;
};

struct world {
	struct party alice;		/* responder, owns the card */
	struct party bob;		/* initiator, scanned it */
	struct veil_clock clk;		/* everybody's clock, unless a test moves one */
	uint8_t body[VEIL_AGREE_BODY_MAX];
	size_t len;
	uint8_t frame[FS];
};

static void
world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	assert_int_equal(veil_identity_new(&w->alice.id), VEIL_OK);
	assert_int_equal(veil_identity_new(&w->bob.id), VEIL_OK);
	w->alice.name = "Alice";
	w->bob.name = "Bob";
	assert_int_equal(veil_id_new(&w->alice.card.cid, 0), VEIL_OK);
	memcpy(w->alice.card.pk, w->alice.id.pk, VEIL_KEY_BYTES);
	strcpy(w->alice.card.name, "Alice");
	veil_seed_new(w->alice.inbox.seed);
	w->alice.inbox.epoch = 3600;
	w->alice.inbox.period = PA;
	veil_seed_new(w->bob.inbox.seed);
	w->bob.inbox.epoch = 0;		/* a fixed inbox */
	w->bob.inbox.period = PB;
	w->clk.now = NOW + 1234;
	w->clk.grace = GRACE;
	w->clk.lead = GRACE;
}

static void
world_wipe(struct world *w)
{
	veil_agree_wipe(&w->alice.ag);
	veil_agree_wipe(&w->bob.ag);
	veil_pair_wipe(&w->alice.pair);
	veil_pair_wipe(&w->bob.pair);
	veil_identity_wipe(&w->alice.id);
	veil_identity_wipe(&w->bob.id);
}

/* One-frame message under k at *seq, as the daemon sends it. */
static void
seal(uint8_t *frame, const struct veil_dirkey *k, uint64_t *seq, uint8_t type,
    const uint8_t *body, size_t len)
{
	uint8_t msgid[VEIL_MSGID_BYTES];

	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(frame, FS, FS, k, seq, type, msgid,
	    body, len), 1);
}

/* Seals under the transmit chain at its current period and seq. */
static void
seal_tx(uint8_t *frame, struct veil_txchain *tx, uint8_t type,
    const uint8_t *body, size_t len)
{
	seal(frame, &tx->k, &tx->seq, type, body, len);
}

static size_t
open_expect(const uint8_t *frame, const struct veil_dirkey *k, uint64_t seq,
    uint8_t type, uint8_t *body)
{
	struct veil_frame_hdr h;

	assert_int_equal(veil_frame_open(frame, FS, k, seq, &h, body), VEIL_OK);
	assert_int_equal(h.type, type);
	assert_int_equal(h.frag_cnt, 1);
	return h.len;
}

/*
 * What the receiving daemon does: look the frame's tag up among the live
 * slots of a receive chain (armed in a table as owners 0..2), then open
 * under the slot found.  Returns the slot index, or -1 when no key of the
 * chain expects the frame.
 */
static int
chain_receive(const struct veil_rxchain *c, const uint8_t *frame,
    struct veil_frame_hdr *h, uint8_t *body)
{
	struct veil_tagtab *t = veil_tagtab_new(0);
	uint8_t tag[VEIL_TAG_BYTES];
	uint64_t owner, seq;
	int ret = -1;

	assert_non_null(t);
	assert_int_equal(veil_rxchain_arm(t, c, 0, LA), VEIL_OK);
	veil_frame_tag(frame, tag);
	if (veil_tagtab_get(t, tag, &owner, &seq) == VEIL_OK) {
		assert_true(owner < VEIL_RX_SLOTS && c->slot[owner].live);
		assert_int_equal(veil_frame_open(frame, FS, &c->slot[owner].k, seq,
		    h, body), VEIL_OK);
		ret = (int)owner;
	}
	veil_tagtab_free(t);
	return ret;
}

/* No live key of the chain opens the frame, whatever the seq. */
static void
chain_refuses(const struct veil_rxchain *c, const uint8_t *frame)
{
	struct veil_frame_hdr h;
	uint8_t body[FS];
	int i;

	assert_int_equal(chain_receive(c, frame, &h, body), -1);
	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		if (!c->slot[i].live)
			continue;
		for (uint64_t s = 0; s < 4; s++)
			assert_int_equal(veil_frame_open(frame, FS, &c->slot[i].k, s,
			    &h, body), VEIL_ERR_DECRYPT);
	}
}

static size_t
chain_expect(const struct veil_rxchain *c, const uint8_t *frame, uint8_t type,
    uint8_t *body)
{
	struct veil_frame_hdr h;

	assert_true(chain_receive(c, frame, &h, body) >= 0);
	assert_int_equal(h.type, type);
	return h.len;
}

static void
do_request(struct world *w, struct veil_agree *a, const uint8_t *my_pk)
{
	assert_int_equal(veil_agree_request(a, &w->alice.card, my_pk, w->bob.name,
	    &w->bob.inbox, w->clk.now, w->body, &w->len), VEIL_OK);
}

static int
on_request_at(struct world *w, struct veil_agree *a, const uint8_t *body,
    size_t len, uint64_t now)
{
	memset(a, 0, sizeof(*a));
	return veil_agree_on_request(a, &w->alice.card.cid, w->alice.id.pk, now,
	    MAX_AGE, body, len);
}

static int
on_request(struct world *w, struct veil_agree *a, const uint8_t *body, size_t len)
{
	return on_request_at(w, a, body, len, w->clk.now);
}

/* Step 1: Bob's REQUEST, sealed to Alice's card key, opened by Alice. */
static void
step_request(struct world *w)
{
	struct veil_frame_hdr h;
	uint8_t msgid[VEIL_MSGID_BYTES];
	uint8_t got[FS];

	do_request(w, &w->bob.ag, w->bob.id.pk);
	assert_int_equal(w->bob.ag.state, VEIL_AG_REQUESTED);
	assert_int_equal(w->bob.ag.role, VEIL_ROLE_INITIATOR);
	assert_int_equal(w->len, REQ_LEN(3));
	assert_int_equal(w->bob.ag.req_time, w->clk.now);

	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal_box(w->frame, FS, FS, w->alice.card.pk,
	    VEIL_T_REQUEST, msgid, w->body, w->len), 1);
	assert_int_equal(veil_frame_open_box(w->frame, FS, w->alice.id.pk,
	    w->alice.id.sk, &h, got), VEIL_OK);
	assert_int_equal(h.type, VEIL_T_REQUEST);
	assert_int_equal(h.len, w->len);
	assert_memory_equal(got, w->body, w->len);
	assert_int_equal(on_request(w, &w->alice.ag, got, h.len), VEIL_OK);
	assert_int_equal(w->alice.ag.state, VEIL_AG_PENDING);
	assert_int_equal(w->alice.ag.role, VEIL_ROLE_RESPONDER);
	/* The requester's claims, exposed. */
	assert_string_equal(w->alice.ag.peer_name, "Bob");
	assert_memory_equal(&w->alice.ag.peer_inbox, &w->bob.inbox, sizeof(w->bob.inbox));
	assert_memory_equal(w->alice.ag.peer_pk, w->bob.id.pk, VEIL_KEY_BYTES);
	assert_int_equal(w->alice.ag.req_time, w->clk.now);
	assert_memory_equal(w->alice.ag.t1, w->bob.ag.t1, VEIL_KEY_BYTES);
}

/* Step 2 on Alice's side: the ACCEPT body into w->body. */
static void
step_accept_body(struct world *w)
{
	assert_int_equal(veil_agree_accept(&w->alice.ag, w->alice.id.sk,
	    &w->alice.inbox, &w->clk, w->body, &w->len, &w->alice.pair), VEIL_OK);
	assert_int_equal(w->alice.ag.state, VEIL_AG_ACCEPTED);
	assert_int_equal(w->len, VEIL_ACCEPT_BODY);
	assert_true(sodium_is_zero(w->alice.ag.eph_sk, VEIL_KEY_BYTES));
}

/* Step 2 transport: ACCEPT under epoch-0 r2i, seq 0; Bob opens it. */
static size_t
step_accept_deliver(struct world *w, uint8_t *got)
{
	struct veil_dirkey ar2i, br2i;
	uint64_t seq = 0;
	size_t n;

	veil_agree_epoch0(&w->alice.ag, &ar2i, NULL);
	assert_int_equal(ar2i.dir, VEIL_DIR_R2I);
	seal(w->frame, &ar2i, &seq, VEIL_T_ACCEPT, w->body, w->len);
	assert_int_equal(seq, 1);
	veil_agree_epoch0(&w->bob.ag, &br2i, NULL);
	n = open_expect(w->frame, &br2i, 0, VEIL_T_ACCEPT, got);
	assert_true(veil_agree_epoch0_allows(&w->bob.ag, VEIL_T_ACCEPT));
	veil_dirkey_wipe(&ar2i);
	veil_dirkey_wipe(&br2i);
	return n;
}

static void
step_on_accept(struct world *w, const uint8_t *got, size_t n, uint8_t *out,
    size_t *outlen)
{
	uint8_t type;

	assert_int_equal(veil_agree_on_accept(&w->bob.ag, w->bob.id.sk, &w->clk,
	    got, n, &w->bob.pair, out, outlen, &type), VEIL_OK);
	assert_int_equal(w->bob.ag.state, VEIL_AG_ESTABLISHED);
	assert_int_equal(type, VEIL_T_CONFIRM);
	assert_int_equal(*outlen, 32);
	assert_true(sodium_is_zero(w->bob.ag.eph_sk, VEIL_KEY_BYTES));
}

/* Step 3: CONFIRM under Bob's tx chain, found by Alice through her rx
 * chain's tags: only then is Bob's key proven. */
static void
step_confirm(struct world *w, const uint8_t *out, size_t outlen)
{
	uint8_t got[FS];
	size_t n;

	seal_tx(w->frame, &w->bob.pair.tx, VEIL_T_CONFIRM, out, outlen);
	n = chain_expect(&w->alice.pair.rx, w->frame, VEIL_T_CONFIRM, got);
	assert_int_equal(veil_agree_on_confirm(&w->alice.ag, got, n), VEIL_OK);
	assert_int_equal(w->alice.ag.state, VEIL_AG_ESTABLISHED);
}

static void
agree_full(struct world *w)
{
	uint8_t got[FS], out[VEIL_AGREE_BODY_MAX];
	size_t n, outlen;

	step_request(w);
	step_accept_body(w);
	n = step_accept_deliver(w, got);
	step_on_accept(w, got, n, out, &outlen);
	step_confirm(w, out, outlen);
}

static void
assert_dirkey_equal(const struct veil_dirkey *a, const struct veil_dirkey *b)
{
	assert_memory_equal(a->root, b->root, VEIL_KEY_BYTES);
	assert_memory_equal(a->key, b->key, VEIL_KEY_BYTES);
	assert_memory_equal(a->nkey, b->nkey, VEIL_KEY_BYTES);
	assert_int_equal(a->dir, b->dir);
}

/* tx (of one side) and rx (of the other) are the same chain: same binding
 * key, and rx holds tx's current key. */
static void
assert_same_chain(const struct veil_txchain *tx, struct veil_rxchain *rx)
{
	struct veil_rxdir *d = veil_rxchain_find(rx, tx->period);

	assert_non_null(d);
	assert_dirkey_equal(&tx->k, &d->k);
	assert_memory_equal(tx->bind, rx->bind, VEIL_KEY_BYTES);
	assert_int_equal(tx->plen, rx->plen);
	assert_int_equal(tx->k.dir, rx->dir);
}

static void
test_agree_full(void **state)
{
	struct world w;
	uint8_t got[FS];
	const char *hi = "hello Bob", *re = "hello Alice";
	size_t n;

	(void)state;
	world_init(&w);
	agree_full(&w);

	assert_int_equal(w.alice.pair.role, VEIL_ROLE_RESPONDER);
	assert_int_equal(w.bob.pair.role, VEIL_ROLE_INITIATOR);
	assert_same_chain(&w.alice.pair.tx, &w.bob.pair.rx);
	assert_same_chain(&w.bob.pair.tx, &w.alice.pair.rx);
	/* directions: Bob -> Alice is 1, Alice -> Bob 2 */
	assert_int_equal(w.bob.pair.tx.k.dir, VEIL_DIR_I2R);
	assert_int_equal(w.alice.pair.tx.k.dir, VEIL_DIR_R2I);
	/* each chain runs at its receiver's key period, anchored at t_B */
	assert_int_equal(w.bob.pair.tx.plen, PA);
	assert_int_equal(w.alice.pair.tx.plen, PB);
	assert_int_equal(w.bob.pair.tx.period, veil_period_of(w.clk.now, PA));
	assert_int_equal(w.alice.pair.tx.period, veil_period_of(w.clk.now, PB));
	assert_memory_not_equal(w.alice.pair.tx.k.root, w.bob.pair.tx.k.root, VEIL_KEY_BYTES);
	assert_memory_equal(w.alice.pair.secret, w.bob.pair.secret, VEIL_KEY_BYTES);
	assert_memory_equal(w.alice.pair.secret_hash, w.bob.pair.secret_hash, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.alice.pair.secret, w.alice.pair.secret_hash, VEIL_KEY_BYTES);
	assert_memory_equal(w.alice.pair.peer_pk, w.bob.id.pk, VEIL_KEY_BYTES);
	assert_memory_equal(w.bob.pair.peer_pk, w.alice.id.pk, VEIL_KEY_BYTES);
	/* seeds and parameters exchanged */
	assert_memory_equal(&w.alice.pair.my_inbox, &w.alice.inbox, sizeof(w.alice.inbox));
	assert_memory_equal(&w.alice.pair.peer_inbox, &w.bob.inbox, sizeof(w.bob.inbox));
	assert_memory_equal(&w.bob.pair.my_inbox, &w.bob.inbox, sizeof(w.bob.inbox));
	assert_memory_equal(&w.bob.pair.peer_inbox, &w.alice.inbox, sizeof(w.alice.inbox));
	assert_memory_equal(&w.bob.ag.peer_inbox, &w.alice.inbox, sizeof(w.alice.inbox));
	assert_false(w.alice.pair.tx_next.live || w.alice.pair.rx_prev.live);
	assert_false(w.bob.pair.tx_next.live || w.bob.pair.rx_prev.live);
	/* The pair keys are not the epoch-0 keys. */
	{
		struct veil_dirkey r2i, i2r;

		veil_agree_epoch0(&w.alice.ag, &r2i, &i2r);
		assert_memory_not_equal(r2i.root, w.alice.pair.tx.k.root, VEIL_KEY_BYTES);
		assert_memory_not_equal(i2r.root, w.bob.pair.tx.k.root, VEIL_KEY_BYTES);
		assert_int_equal(i2r.dir, VEIL_DIR_I2R);
	}

	/* TEXT each way. */
	seal_tx(w.frame, &w.alice.pair.tx, VEIL_T_TEXT, (const uint8_t *)hi, strlen(hi));
	chain_refuses(&w.alice.pair.rx, w.frame);	/* not our own direction */
	n = chain_expect(&w.bob.pair.rx, w.frame, VEIL_T_TEXT, got);
	assert_int_equal(n, strlen(hi));
	assert_memory_equal(got, hi, n);
	seal_tx(w.frame, &w.bob.pair.tx, VEIL_T_TEXT, (const uint8_t *)re, strlen(re));
	n = chain_expect(&w.alice.pair.rx, w.frame, VEIL_T_TEXT, got);
	assert_memory_equal(got, re, n);
	world_wipe(&w);
}

/*
 * Time passes between the steps: Alice answers two hours after the
 * REQUEST, Bob reads the ACCEPT later still.  Both anchor at t_B's
 * period and ratchet to their own clocks; the chains still meet.
 */
static void
test_agree_anchor(void **state)
{
	struct world w;
	uint8_t got[FS], out[VEIL_AGREE_BODY_MAX], d_i2r[32];
	size_t n, outlen;
	uint64_t tb;

	(void)state;
	world_init(&w);
	tb = w.clk.now;
	step_request(&w);
	w.clk.now = tb + 7200;
	step_accept_body(&w);
	assert_int_equal(w.alice.pair.rx.period, veil_period_of(tb + 7200, PA));
	assert_int_equal(w.alice.pair.tx.period, veil_period_of(tb + 7200, PB));
	n = step_accept_deliver(&w, got);
	w.clk.now = tb + 7200 + 1000;
	step_on_accept(&w, got, n, out, &outlen);
	assert_int_equal(w.bob.pair.tx.period, veil_period_of(tb + 8200, PA));
	assert_int_equal(w.bob.pair.rx.period, veil_period_of(tb + 8200, PB));
	step_confirm(&w, out, outlen);
	assert_same_chain(&w.bob.pair.tx, &w.alice.pair.rx);
	/* Alice's tx is behind Bob's clock until she advances: her frames
	 * are of an earlier period than Bob's rx holds. */
	memcpy(d_i2r, w.alice.pair.tx.k.root, 32);
	w.clk.now = tb + 8200;
	assert_int_equal(veil_pair_advance(&w.alice.pair, &w.clk, NULL, 0, 0), 1);
	assert_memory_not_equal(d_i2r, w.alice.pair.tx.k.root, 32);
	assert_same_chain(&w.alice.pair.tx, &w.bob.pair.rx);
	seal_tx(w.frame, &w.alice.pair.tx, VEIL_T_TEXT, (const uint8_t *)"late", 4);
	n = chain_expect(&w.bob.pair.rx, w.frame, VEIL_T_TEXT, got);
	assert_memory_equal(got, "late", 4);
	world_wipe(&w);
}

/*
 * reviews/security.md C1.  Mallory holds Alice's card and Bob's *public*
 * key, and only her own secret key.  She writes Bob's key into a REQUEST
 * and plays the initiator as well as she can.  Alice, the responder,
 * consents.  Mallory cannot produce a frame Alice's receive chain opens:
 * that chain needs DH(e_A, KP_B) = DH(sk_B, E_A).  Alice never reaches
 * ESTABLISHED, whatever Mallory sends, under whichever key she has.
 */
static void
test_agree_impersonation(void **state)
{
	struct world w;
	struct veil_identity mallory;
	struct veil_agree mal;
	struct veil_pair mpair;
	struct veil_dirkey m_i2r, a_i2r;
	uint8_t got[FS], out[VEIL_AGREE_BODY_MAX], type;
	size_t n, outlen;
	uint64_t seq;
	const uint8_t types[] = { VEIL_T_CONFIRM, VEIL_T_TEXT, VEIL_T_ACK,
	    VEIL_T_UPDATE, VEIL_T_COVER };
	size_t i;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_identity_new(&mallory), VEIL_OK);
	memset(&mal, 0, sizeof(mal));
	/* Step 1 as Mallory, claiming Bob's key. */
	do_request(&w, &mal, w.bob.id.pk);
	assert_int_equal(on_request(&w, &w.alice.ag, w.body, w.len), VEIL_OK);
	/* Alice sees Bob's key: a claim, unproven. */
	assert_memory_equal(w.alice.ag.peer_pk, w.bob.id.pk, VEIL_KEY_BYTES);
	step_accept_body(&w);
	{
		struct veil_dirkey r2i;
		uint64_t s0 = 0;

		/* the ACCEPT reaches Mallory (she knows K) */
		veil_agree_epoch0(&w.alice.ag, &r2i, NULL);
		seal(w.frame, &r2i, &s0, VEIL_T_ACCEPT, w.body, w.len);
		veil_agree_epoch0(&mal, &r2i, NULL);
		n = open_expect(w.frame, &r2i, 0, VEIL_T_ACCEPT, got);
		veil_dirkey_wipe(&r2i);
	}
	/* The API will not take a secret key that is not the claimed one ... */
	assert_int_equal(veil_agree_on_accept(&mal, mallory.sk, &w.clk, got, n,
	    &mpair, out, &outlen, &type), VEIL_ERR_INVAL);
	/* ... so Mallory does what she can: the transcript stays as sent, and
	 * she uses her own secret key for the terms that need Bob's. */
	memcpy(mal.my_pk, mallory.pk, VEIL_KEY_BYTES);
	assert_int_equal(veil_agree_on_accept(&mal, mallory.sk, &w.clk, got, n,
	    &mpair, out, &outlen, &type), VEIL_OK);
	assert_int_equal(type, VEIL_T_CONFIRM);
	/* HS matched (she knows S), but her chains are not Alice's. */
	assert_memory_not_equal(mpair.tx.k.root,
	    veil_rxchain_find(&w.alice.pair.rx, w.alice.pair.rx.period)->k.root,
	    VEIL_KEY_BYTES);
	assert_memory_not_equal(mpair.tx.bind, w.alice.pair.rx.bind, VEIL_KEY_BYTES);

	/* Her CONFIRM, and any other frame under her chain: no key of
	 * Alice's finds or opens it. */
	for (i = 0; i < sizeof(types); i++) {
		seal_tx(w.frame, &mpair.tx, types[i], out, outlen);
		chain_refuses(&w.alice.pair.rx, w.frame);
	}
	/* Under the epoch-0 i2r key (from K, which she has) the frames open,
	 * but nothing but FAIL is taken there. */
	veil_agree_epoch0(&mal, NULL, &m_i2r);
	veil_agree_epoch0(&w.alice.ag, NULL, &a_i2r);
	for (i = 0; i < sizeof(types); i++) {
		seq = 0;
		seal(w.frame, &m_i2r, &seq, types[i], out, outlen);
		assert_int_equal(open_expect(w.frame, &a_i2r, 0, types[i], got),
		    outlen);
		assert_false(veil_agree_epoch0_allows(&w.alice.ag, types[i]));
	}
	assert_int_equal(w.alice.ag.state, VEIL_AG_ACCEPTED);

	/* Control: the real Bob, in the same position, gets through. */
	{
		struct world w2;

		world_init(&w2);
		agree_full(&w2);
		assert_int_equal(w2.alice.ag.state, VEIL_AG_ESTABLISHED);
		world_wipe(&w2);
	}
	veil_dirkey_wipe(&m_i2r);
	veil_dirkey_wipe(&a_i2r);
	veil_agree_wipe(&mal);
	veil_pair_wipe(&mpair);
	veil_identity_wipe(&mallory);
	world_wipe(&w);
}

/*
 * The other direction: a responder without sk_A.  The REQUEST is sealed to
 * KP_A, so without sk_A it does not open, and S and K stay unknown: an
 * ACCEPT under a guessed key is not even opened by Bob, and with a guessed
 * HS it fails.  Given the whole REQUEST (as if the seal had been broken),
 * an ACCEPT passes Bob's HS check, but the chains need DH(sk_A, E_B): Bob
 * and the impostor share no key, so nothing either seals opens for the
 * other.  The API refuses a secret key that is not the card's.
 */
static void
test_agree_responder_needs_sk(void **state)
{
	struct world w;
	struct veil_identity mallory;
	struct veil_agree mal, bob_saved;
	struct veil_pair mpair;
	struct veil_frame_hdr h;
	struct veil_dirkey r2i;
	uint8_t got[FS], out[VEIL_AGREE_BODY_MAX], acc[VEIL_AGREE_BODY_MAX], type;
	uint8_t fake_k[32];
	size_t acclen, outlen;
	uint64_t seq;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_identity_new(&mallory), VEIL_OK);
	step_request(&w);
	bob_saved = w.bob.ag;

	/* 1. The sealed REQUEST does not open without sk_A. */
	assert_int_equal(veil_frame_open_box(w.frame, FS, mallory.pk, mallory.sk,
	    &h, got), VEIL_ERR_DECRYPT);
	assert_int_equal(veil_frame_open_box(w.frame, FS, w.alice.id.pk, mallory.sk,
	    &h, got), VEIL_ERR_DECRYPT);

	/* 2. Without K, a frame Bob's epoch-0 key opens cannot be made. */
	randombytes_buf(fake_k, sizeof(fake_k));
	memset(&mal, 0, sizeof(mal));
	memcpy(mal.pairkey, fake_k, 32);
	mal.role = VEIL_ROLE_RESPONDER;
	mal.state = VEIL_AG_ACCEPTED;
	veil_agree_epoch0(&mal, &r2i, NULL);
	seq = 0;
	randombytes_buf(acc, VEIL_ACCEPT_BODY);
	seal(w.frame, &r2i, &seq, VEIL_T_ACCEPT, acc, VEIL_ACCEPT_BODY);
	veil_agree_epoch0(&w.bob.ag, &r2i, NULL);
	assert_int_equal(veil_frame_open(w.frame, FS, &r2i, 0, &h, got),
	    VEIL_ERR_DECRYPT);
	veil_dirkey_wipe(&r2i);
	/* Even an ACCEPT delivered past the key check, with a guessed HS,
	 * fails (and Bob sends FAIL). */
	memcpy(acc + A_LA, "\0\0\x0e\x10\0\0\x0e\x10", 8);	/* valid L, P */
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, acc,
	    VEIL_ACCEPT_BODY, &mpair, out, &outlen, &type), VEIL_ERR_SECRET);
	assert_int_equal(w.bob.ag.state, VEIL_AG_FAILED);
	assert_int_equal(type, VEIL_T_FAIL);
	w.bob.ag = bob_saved;

	/* 3. Given the whole REQUEST but not sk_A. */
	assert_int_equal(on_request(&w, &mal, w.body, w.len), VEIL_OK);
	/* the API checks the secret key against the card's */
	assert_int_equal(veil_agree_accept(&mal, mallory.sk, &w.alice.inbox, &w.clk,
	    acc, &acclen, &mpair), VEIL_ERR_INVAL);
	assert_int_equal(mal.state, VEIL_AG_PENDING);
	/* T1 names Alice's key; with her own secret key in the DH terms */
	memcpy(mal.my_pk, mallory.pk, VEIL_KEY_BYTES);
	assert_int_equal(veil_agree_accept(&mal, mallory.sk, &w.alice.inbox, &w.clk,
	    acc, &acclen, &mpair), VEIL_OK);
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, acc,
	    acclen, &w.bob.pair, out, &outlen, &type), VEIL_OK);
	/* no shared key: Bob's CONFIRM and text do not open for her ... */
	seal_tx(w.frame, &w.bob.pair.tx, VEIL_T_CONFIRM, out, outlen);
	chain_refuses(&mpair.rx, w.frame);
	seal_tx(w.frame, &w.bob.pair.tx, VEIL_T_TEXT, (const uint8_t *)"hi", 2);
	chain_refuses(&mpair.rx, w.frame);
	/* ... and nothing of hers opens for Bob */
	seal_tx(w.frame, &mpair.tx, VEIL_T_TEXT, (const uint8_t *)"it's me", 7);
	chain_refuses(&w.bob.pair.rx, w.frame);
	assert_memory_not_equal(mpair.tx.bind, w.bob.pair.rx.bind, VEIL_KEY_BYTES);

	/* Her own identity, honestly: T1 over her key, and Bob's HS fails. */
	w.bob.ag = bob_saved;
	veil_agree_wipe(&mal);
	memset(&mal, 0, sizeof(mal));
	assert_int_equal(veil_agree_on_request(&mal, &w.alice.card.cid, mallory.pk,
	    w.clk.now, MAX_AGE, w.body, w.len), VEIL_OK);
	assert_int_equal(veil_agree_accept(&mal, mallory.sk, &w.alice.inbox, &w.clk,
	    acc, &acclen, &mpair), VEIL_OK);
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, acc,
	    acclen, &w.bob.pair, out, &outlen, &type), VEIL_ERR_SECRET);
	assert_int_equal(w.bob.ag.state, VEIL_AG_FAILED);

	veil_agree_wipe(&mal);
	veil_agree_wipe(&bob_saved);
	veil_pair_wipe(&mpair);
	veil_identity_wipe(&mallory);
	world_wipe(&w);
}

/*
 * T1 of any REQUEST body, for the responder's record of processed
 * REQUESTs: a replayed REQUEST gives the same T1 (so it is dropped), also
 * when it was sent to a card that is gone; another REQUEST, or the same
 * bytes for another responder key, another T1.
 */
static void
test_agree_request_t1(void **state)
{
	struct world w;
	struct veil_agree again, second;
	struct veil_id other;
	uint8_t t1[32], t1b[32], want[32], body2[VEIL_AGREE_BODY_MAX];
	size_t len2;
	crypto_generichash_state st;

	(void)state;
	world_init(&w);
	step_request(&w);
	assert_int_equal(veil_agree_request_t1(w.body, w.len, w.alice.id.pk, t1),
	    VEIL_OK);
	assert_memory_equal(t1, w.alice.ag.t1, 32);
	assert_memory_equal(t1, w.bob.ag.t1, 32);
	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)"veil-agree-v2", 13);
	crypto_generichash_update(&st, w.alice.id.pk, 32);
	crypto_generichash_update(&st, w.body, w.len);
	crypto_generichash_final(&st, want, 32);
	assert_memory_equal(t1, want, 32);

	/* The replay (the broker delivers the same frame again). */
	assert_int_equal(on_request(&w, &again, w.body, w.len), VEIL_OK);
	assert_memory_equal(again.t1, t1, 32);
	/* To a card that has been replaced: refused, same T1. */
	assert_int_equal(veil_id_new(&other, 0), VEIL_OK);
	memset(&again, 0, sizeof(again));
	assert_int_equal(veil_agree_on_request(&again, &other, w.alice.id.pk,
	    w.clk.now, MAX_AGE, w.body, w.len), VEIL_ERR_STATE);
	assert_int_equal(veil_agree_request_t1(w.body, w.len, w.alice.id.pk, t1b),
	    VEIL_OK);
	assert_memory_equal(t1b, t1, 32);
	/* Another REQUEST from Bob: fresh S, K, e_B, so another T1. */
	memset(&second, 0, sizeof(second));
	assert_int_equal(veil_agree_request(&second, &w.alice.card, w.bob.id.pk,
	    "Bob", &w.bob.inbox, w.clk.now, body2, &len2), VEIL_OK);
	assert_int_equal(veil_agree_request_t1(body2, len2, w.alice.id.pk, t1b),
	    VEIL_OK);
	assert_memory_not_equal(t1b, t1, 32);
	/* Bound to the responder's key. */
	assert_int_equal(veil_agree_request_t1(w.body, w.len, w.bob.id.pk, t1b),
	    VEIL_OK);
	assert_memory_not_equal(t1b, t1, 32);
	/* Any bytes up to the limit; beyond it, FORMAT. */
	assert_int_equal(veil_agree_request_t1(w.body, 0, w.alice.id.pk, t1b), VEIL_OK);
	assert_int_equal(veil_agree_request_t1(w.body, VEIL_AGREE_BODY_MAX + 1,
	    w.alice.id.pk, t1b), VEIL_ERR_FORMAT);
	assert_true(sodium_is_zero(t1b, 32));
	assert_int_equal(veil_agree_request_t1(NULL, 3, w.alice.id.pk, t1b),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_request_t1(w.body, w.len, NULL, t1b),
	    VEIL_ERR_INVAL);
	veil_agree_wipe(&again);
	veil_agree_wipe(&second);
	world_wipe(&w);
}

/* Which frames the epoch-0 keys take (protocol.md 4). */
static void
test_agree_epoch0_allows(void **state)
{
	struct veil_agree a;
	unsigned t;

	(void)state;
	memset(&a, 0, sizeof(a));
	for (t = 0; t < 256; t++)
		assert_false(veil_agree_epoch0_allows(&a, (uint8_t)t));
	a.role = VEIL_ROLE_INITIATOR;
	for (a.state = VEIL_AG_NONE; a.state <= VEIL_AG_REJECTED; a.state++)
		for (t = 0; t < 256; t++)
			assert_int_equal(veil_agree_epoch0_allows(&a, (uint8_t)t),
			    a.state == VEIL_AG_REQUESTED && t == VEIL_T_ACCEPT);
	a.role = VEIL_ROLE_RESPONDER;
	for (a.state = VEIL_AG_NONE; a.state <= VEIL_AG_REJECTED; a.state++)
		for (t = 0; t < 256; t++)
			assert_int_equal(veil_agree_epoch0_allows(&a, (uint8_t)t),
			    a.state == VEIL_AG_ACCEPTED && t == VEIL_T_FAIL);
	assert_false(veil_agree_epoch0_allows(NULL, VEIL_T_ACCEPT));
}

/* A frame under pair->rx other than CONFIRM (the CONFIRM was lost) also
 * establishes the responder's side. */
static void
test_agree_chain_frame(void **state)
{
	struct world w;
	uint8_t got[FS], out[VEIL_AGREE_BODY_MAX];
	size_t n, outlen;

	(void)state;
	world_init(&w);
	step_request(&w);
	step_accept_body(&w);
	n = step_accept_deliver(&w, got);
	step_on_accept(&w, got, n, out, &outlen);
	seal_tx(w.frame, &w.bob.pair.tx, VEIL_T_CONFIRM, out, outlen);	/* lost */
	seal_tx(w.frame, &w.bob.pair.tx, VEIL_T_TEXT, (const uint8_t *)"x", 1);
	assert_int_equal(chain_expect(&w.alice.pair.rx, w.frame, VEIL_T_TEXT, got), 1);
	assert_int_equal(veil_agree_on_chain_frame(&w.alice.ag), VEIL_OK);
	assert_int_equal(w.alice.ag.state, VEIL_AG_ESTABLISHED);
	assert_int_equal(veil_agree_on_chain_frame(&w.alice.ag), VEIL_ERR_STATE);
	assert_int_equal(veil_agree_on_chain_frame(&w.bob.ag), VEIL_ERR_STATE);
	assert_int_equal(veil_agree_on_chain_frame(NULL), VEIL_ERR_INVAL);
	world_wipe(&w);
}

/* Tampering with any part of the ACCEPT body that HS covers fails it. */
static void
hs_mismatch(size_t offset)
{
	struct world w;
	uint8_t got[FS], out[VEIL_AGREE_BODY_MAX], type;
	struct veil_dirkey ai2r, bi2r;
	uint64_t seq = 0;
	size_t n, outlen;

	world_init(&w);
	step_request(&w);
	step_accept_body(&w);
	w.body[offset] ^= 0x01;
	n = step_accept_deliver(&w, got);
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, got, n,
	    &w.bob.pair, out, &outlen, &type), VEIL_ERR_SECRET);
	assert_int_equal(w.bob.ag.state, VEIL_AG_FAILED);
	assert_int_equal(type, VEIL_T_FAIL);
	assert_int_equal(outlen, 1);
	assert_int_equal(out[0], 1);
	assert_true(sodium_is_zero((const uint8_t *)&w.bob.pair, sizeof(w.bob.pair)));
	assert_true(sodium_is_zero(w.bob.ag.secret, 32));

	/* FAIL goes under epoch-0 i2r and Alice gives up too. */
	veil_agree_epoch0(&w.bob.ag, NULL, &bi2r);
	seal(w.frame, &bi2r, &seq, VEIL_T_FAIL, out, outlen);
	veil_agree_epoch0(&w.alice.ag, NULL, &ai2r);
	n = open_expect(w.frame, &ai2r, 0, VEIL_T_FAIL, got);
	assert_true(veil_agree_epoch0_allows(&w.alice.ag, VEIL_T_FAIL));
	assert_int_equal(veil_agree_on_fail(&w.alice.ag, got, n), VEIL_OK);
	assert_int_equal(w.alice.ag.state, VEIL_AG_FAILED);
	/* Failed is final. */
	assert_int_equal(veil_agree_on_fail(&w.alice.ag, got, n), VEIL_ERR_STATE);
	assert_int_equal(veil_agree_on_confirm(&w.alice.ag, out, 32), VEIL_ERR_STATE);
	world_wipe(&w);
}

static void
test_agree_hs_mismatch(void **state)
{
	(void)state;
	hs_mismatch(A_HS + 8);		/* HS itself */
	hs_mismatch(A_EA + 5);		/* E_A */
	hs_mismatch(A_LA + 2);		/* L_A (3600 -> 3856) */
	hs_mismatch(A_PA + 2);		/* P_A (3600 -> 3856) */
	hs_mismatch(A_JA + 31);		/* J_A */
}

/* A wrong CONFIRM fails Alice's side. */
static void
test_agree_bad_confirm(void **state)
{
	struct world w;
	uint8_t bad[32];

	(void)state;
	world_init(&w);
	step_request(&w);
	step_accept_body(&w);
	memset(bad, 0x55, sizeof(bad));
	assert_int_equal(veil_agree_on_confirm(&w.alice.ag, bad, 31), VEIL_ERR_TRUNCATED);
	assert_int_equal(veil_agree_on_confirm(&w.alice.ag, bad, 33), VEIL_ERR_FORMAT);
	assert_int_equal(w.alice.ag.state, VEIL_AG_ACCEPTED);
	assert_int_equal(veil_agree_on_confirm(&w.alice.ag, bad, 32), VEIL_ERR_SECRET);
	assert_int_equal(w.alice.ag.state, VEIL_AG_FAILED);
	world_wipe(&w);
}

#define STATE_REJECTED(call, a) do {					\
	struct veil_agree before_ = *(a);				\
	assert_int_equal((call), VEIL_ERR_STATE);			\
	assert_memory_equal(&before_, (a), sizeof(before_));		\
} while (0)

static void
test_agree_wrong_state(void **state)
{
	struct world w;
	struct veil_pair pair;
	uint8_t out[VEIL_AGREE_BODY_MAX], type, one = 1;
	uint8_t req[VEIL_AGREE_BODY_MAX], acc[VEIL_AGREE_BODY_MAX];
	size_t outlen, reqlen;

	(void)state;
	memset(out, 0, sizeof(out));
	memset(acc, 0, sizeof(acc));
	world_init(&w);
	/* Fresh (NONE) agreement: only request / on_request are valid. */
	STATE_REJECTED(veil_agree_accept(&w.alice.ag, w.alice.id.sk, &w.alice.inbox,
	    &w.clk, out, &outlen, &pair), &w.alice.ag);
	STATE_REJECTED(veil_agree_reject(&w.alice.ag), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_accept(&w.alice.ag, w.alice.id.sk, &w.clk, acc,
	    VEIL_ACCEPT_BODY, &pair, out, &outlen, &type), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_confirm(&w.alice.ag, out, 32), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_fail(&w.alice.ag, &one, 1), &w.alice.ag);

	step_request(&w);
	memcpy(req, w.body, w.len);
	reqlen = w.len;
	/* Bob, REQUESTED. */
	STATE_REJECTED(veil_agree_request(&w.bob.ag, &w.alice.card, w.bob.id.pk,
	    "Bob", &w.bob.inbox, w.clk.now, out, &outlen), &w.bob.ag);
	STATE_REJECTED(veil_agree_on_request(&w.bob.ag, &w.alice.card.cid,
	    w.alice.id.pk, w.clk.now, MAX_AGE, req, reqlen), &w.bob.ag);
	STATE_REJECTED(veil_agree_accept(&w.bob.ag, w.bob.id.sk, &w.bob.inbox,
	    &w.clk, out, &outlen, &pair), &w.bob.ag);
	STATE_REJECTED(veil_agree_reject(&w.bob.ag), &w.bob.ag);
	STATE_REJECTED(veil_agree_on_confirm(&w.bob.ag, out, 32), &w.bob.ag);
	/* The initiator takes no FAIL: the responder never sends one. */
	STATE_REJECTED(veil_agree_on_fail(&w.bob.ag, &one, 1), &w.bob.ag);
	/* Alice, PENDING. */
	STATE_REJECTED(veil_agree_on_request(&w.alice.ag, &w.alice.card.cid,
	    w.alice.id.pk, w.clk.now, MAX_AGE, req, reqlen), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_accept(&w.alice.ag, w.alice.id.sk, &w.clk, acc,
	    VEIL_ACCEPT_BODY, &pair, out, &outlen, &type), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_confirm(&w.alice.ag, out, 32), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_fail(&w.alice.ag, &one, 1), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_chain_frame(&w.alice.ag), &w.alice.ag);
	/* Alice, ACCEPTED. */
	step_accept_body(&w);
	STATE_REJECTED(veil_agree_accept(&w.alice.ag, w.alice.id.sk, &w.alice.inbox,
	    &w.clk, out, &outlen, &pair), &w.alice.ag);
	STATE_REJECTED(veil_agree_reject(&w.alice.ag), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_accept(&w.alice.ag, w.alice.id.sk, &w.clk,
	    w.body, w.len, &pair, out, &outlen, &type), &w.alice.ag);
	/* on_fail needs exactly one byte and leaves the state otherwise. */
	assert_int_equal(veil_agree_on_fail(&w.alice.ag, out, 0), VEIL_ERR_TRUNCATED);
	assert_int_equal(veil_agree_on_fail(&w.alice.ag, out, 2), VEIL_ERR_FORMAT);
	assert_int_equal(w.alice.ag.state, VEIL_AG_ACCEPTED);
	world_wipe(&w);

	/* Both ESTABLISHED: nothing more. */
	world_init(&w);
	agree_full(&w);
	STATE_REJECTED(veil_agree_on_confirm(&w.alice.ag, out, 32), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_fail(&w.alice.ag, &one, 1), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_fail(&w.bob.ag, &one, 1), &w.bob.ag);
	STATE_REJECTED(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, acc,
	    VEIL_ACCEPT_BODY, &pair, out, &outlen, &type), &w.bob.ag);
	world_wipe(&w);
}

static void
test_agree_wrong_cid_or_key(void **state)
{
	struct world w;
	struct veil_id other;
	struct veil_agree a;

	(void)state;
	world_init(&w);
	do_request(&w, &w.bob.ag, w.bob.id.pk);
	assert_int_equal(veil_id_new(&other, 0), VEIL_OK);
	memset(&a, 0, sizeof(a));
	assert_int_equal(veil_agree_on_request(&a, &other, w.alice.id.pk,
	    w.clk.now, MAX_AGE, w.body, w.len), VEIL_ERR_STATE);
	assert_true(sodium_is_zero((const uint8_t *)&a, sizeof(a)));
	/* Same bytes, shorter length: still not her CID. */
	other = w.alice.card.cid;
	other.len = 15;
	assert_int_equal(veil_agree_on_request(&a, &other, w.alice.id.pk,
	    w.clk.now, MAX_AGE, w.body, w.len), VEIL_ERR_STATE);
	assert_int_equal(on_request(&w, &a, w.body, w.len), VEIL_OK);
	/* A REQUEST that claims the responder's own key. */
	memcpy(w.body + R_KPB, w.alice.id.pk, 32);
	assert_int_equal(on_request(&w, &a, w.body, w.len), VEIL_ERR_STATE);
	assert_true(sodium_is_zero((const uint8_t *)&a, sizeof(a)));
	veil_agree_wipe(&a);
	world_wipe(&w);
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* t_B: not older than the lifetime, not more than a day ahead. */
static void
test_agree_request_time(void **state)
{
	struct world w;
	struct veil_agree a;
	uint64_t tb;

	(void)state;
	world_init(&w);
	tb = w.clk.now;
	do_request(&w, &w.bob.ag, w.bob.id.pk);
	assert_int_equal(on_request_at(&w, &a, w.body, w.len, tb + MAX_AGE), VEIL_OK);
	assert_int_equal(on_request_at(&w, &a, w.body, w.len, tb + MAX_AGE + 1),
	    VEIL_ERR_EXPIRED);
	assert_true(sodium_is_zero((const uint8_t *)&a, sizeof(a)));
	assert_int_equal(on_request_at(&w, &a, w.body, w.len,
	    tb - VEIL_AGREE_AHEAD_MAX), VEIL_OK);
	assert_int_equal(on_request_at(&w, &a, w.body, w.len,
	    tb - VEIL_AGREE_AHEAD_MAX - 1), VEIL_ERR_FUTURE);
	/* a REQUEST from the far future or the distant past */
	put64(w.body + R_TB, UINT64_MAX);
	assert_int_equal(on_request(&w, &a, w.body, w.len), VEIL_ERR_FUTURE);
	put64(w.body + R_TB, 0);
	assert_int_equal(on_request(&w, &a, w.body, w.len), VEIL_ERR_EXPIRED);
	veil_agree_wipe(&a);
	world_wipe(&w);
}

static void
test_agree_request_garbage(void **state)
{
	struct world w;
	struct veil_agree a;
	struct tu_prng prng;
	uint8_t buf[2 * VEIL_AGREE_BODY_MAX];
	size_t len;
	unsigned long it, n;
	int r;

	(void)state;
	world_init(&w);
	do_request(&w, &w.bob.ag, w.bob.id.pk);
	assert_int_equal(on_request(&w, &a, w.body, w.len), VEIL_OK);
	assert_int_equal(w.body[R_VER], 2);
	assert_int_equal(w.body[R_CID - 0], 16);

	/* Every truncation is refused and leaves the agreement untouched. */
	for (len = 0; len < w.len; len++) {
		assert_int_equal(on_request(&w, &a, w.body, len), VEIL_ERR_TRUNCATED);
		assert_true(sodium_is_zero((const uint8_t *)&a, sizeof(a)));
	}
	/* Trailing byte. */
	memcpy(buf, w.body, w.len);
	buf[w.len] = 0;
	assert_int_equal(on_request(&w, &a, buf, w.len + 1), VEIL_ERR_FORMAT);
	assert_int_equal(on_request(&w, &a, buf, VEIL_AGREE_BODY_MAX + 1), VEIL_ERR_FORMAT);
	/* Version: 1 (no version byte at all in protocol 1) and others. */
	memcpy(buf, w.body, w.len);
	buf[R_VER] = 1;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_VERSION);
	buf[R_VER] = 3;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_VERSION);
	/* Ranges: L 0..2592000, P 1..2592000. */
	memcpy(buf, w.body, w.len);
	put32(buf + R_LB, VEIL_EPOCH_MAX);
	put32(buf + R_PB, VEIL_PERIOD_MAX);
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_OK);
	put32(buf + R_LB, VEIL_EPOCH_MAX + 1);
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	put32(buf + R_LB, 0);
	put32(buf + R_PB, 0);
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	put32(buf + R_PB, VEIL_PERIOD_MAX + 1);
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	/* An all-zero seed is not a seed. */
	memcpy(buf, w.body, w.len);
	memset(buf + R_JB, 0, 32);
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	/* ID lengths out of 10..32. */
	memcpy(buf, w.body, w.len);
	buf[R_CID] = 9;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	buf[R_CID] = 33;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	/* Bad names: empty, too long, control character, NUL, bad UTF-8. */
	memcpy(buf, w.body, w.len);
	buf[R_NAME] = 0;
	assert_int_equal(on_request(&w, &a, buf, R_NAME + 1), VEIL_ERR_INVAL);
	buf[R_NAME] = 65;
	memset(buf + R_NAME + 1, 'x', 65);
	assert_int_equal(on_request(&w, &a, buf, R_NAME + 66), VEIL_ERR_INVAL);
	buf[R_NAME] = 64;
	assert_int_equal(on_request(&w, &a, buf, R_NAME + 65), VEIL_OK);
	memcpy(buf, w.body, w.len);
	buf[R_NAME + 2] = '\n';
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_INVAL);
	buf[R_NAME + 2] = '\0';
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_INVAL);
	buf[R_NAME + 2] = 0xc0;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_INVAL);

	/* Random bytes and mutations never yield a request for Alice's CID
	 * except by keeping it intact. */
	tu_prng_seed(&prng, 0x7a6e1);
	n = tu_iters(3000);
	for (it = 0; it < n; it++) {
		len = (size_t)(tu_prng_next(&prng) % sizeof(buf));
		tu_prng_fill(&prng, buf, len);
		assert_true(on_request(&w, &a, buf, len) < 0);
		assert_true(sodium_is_zero((const uint8_t *)&a, sizeof(a)));

		memcpy(buf, w.body, w.len);
		len = w.len;
		tu_mutate(&prng, buf, &len, sizeof(buf));
		r = on_request(&w, &a, buf, len);
		if (r == VEIL_OK) {
			assert_true(len >= REQ_LEN(1));
			assert_memory_equal(buf + R_CID + 1, w.alice.card.cid.b, 16);
			assert_int_equal(a.state, VEIL_AG_PENDING);
		} else {
			assert_true(r < 0);
			assert_true(sodium_is_zero((const uint8_t *)&a, sizeof(a)));
		}
	}
	veil_agree_wipe(&a);
	world_wipe(&w);
}

static void
test_agree_accept_garbage(void **state)
{
	struct world w;
	struct veil_agree saved;
	struct veil_pair pair;
	uint8_t buf[VEIL_AGREE_BODY_MAX], out[VEIL_AGREE_BODY_MAX], type;
	size_t len, outlen;
	int r;

	(void)state;
	world_init(&w);
	step_request(&w);
	step_accept_body(&w);
	saved = w.bob.ag;
	for (len = 0; len < w.len; len++) {
		r = veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, w.body, len,
		    &pair, out, &outlen, &type);
		assert_int_equal(r, VEIL_ERR_TRUNCATED);
		assert_memory_equal(&saved, &w.bob.ag, sizeof(saved));
		assert_int_equal(outlen, 0);
	}
	memcpy(buf, w.body, w.len);
	buf[w.len] = 0;
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, buf,
	    w.len + 1, &pair, out, &outlen, &type), VEIL_ERR_FORMAT);
	/* out of range, or no seed: refused before HS, state kept */
	put32(buf + A_PA, 0);
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, buf,
	    w.len, &pair, out, &outlen, &type), VEIL_ERR_FORMAT);
	memcpy(buf, w.body, w.len);
	put32(buf + A_LA, VEIL_EPOCH_MAX + 1);
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, buf,
	    w.len, &pair, out, &outlen, &type), VEIL_ERR_FORMAT);
	memcpy(buf, w.body, w.len);
	memset(buf + A_JA, 0, 32);
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk, buf,
	    w.len, &pair, out, &outlen, &type), VEIL_ERR_FORMAT);
	assert_memory_equal(&saved, &w.bob.ag, sizeof(saved));
	/* The genuine one still works afterwards. */
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk,
	    w.body, w.len, &pair, out, &outlen, &type), VEIL_OK);
	veil_pair_wipe(&pair);
	world_wipe(&w);
}

/* Low-order keys from the peer give an all-zero DH: refused, whichever
 * term they would void. */
static void
test_agree_zero_dh(void **state)
{
	struct world w;
	struct veil_agree saved;
	int which;

	(void)state;
	for (which = 0; which < 2; which++) {
		world_init(&w);
		do_request(&w, &w.bob.ag, w.bob.id.pk);
		/* E_B = 0 voids ee and se; KP_B = 0 voids es */
		memset(w.body + (which ? R_KPB : R_EB), 0, 32);
		assert_int_equal(on_request(&w, &w.alice.ag, w.body, w.len), VEIL_OK);
		saved = w.alice.ag;
		assert_int_equal(veil_agree_accept(&w.alice.ag, w.alice.id.sk,
		    &w.alice.inbox, &w.clk, w.body, &w.len, &w.alice.pair),
		    VEIL_ERR_CRYPTO);
		assert_memory_equal(&saved, &w.alice.ag, sizeof(saved));
		assert_true(sodium_is_zero((const uint8_t *)&w.alice.pair,
		    sizeof(w.alice.pair)));
		world_wipe(&w);
	}
}

static void
test_agree_reject(void **state)
{
	struct world w;
	struct veil_pair pair;
	uint8_t out[VEIL_AGREE_BODY_MAX];
	size_t outlen;

	(void)state;
	world_init(&w);
	step_request(&w);
	assert_false(sodium_is_zero(w.alice.ag.secret, VEIL_KEY_BYTES));
	assert_int_equal(veil_agree_reject(&w.alice.ag), VEIL_OK);
	assert_int_equal(w.alice.ag.state, VEIL_AG_REJECTED);
	assert_true(sodium_is_zero(w.alice.ag.secret, VEIL_KEY_BYTES));
	assert_true(sodium_is_zero(w.alice.ag.pairkey, VEIL_KEY_BYTES));
	assert_true(sodium_is_zero(w.alice.ag.peer_eph, VEIL_KEY_BYTES));
	assert_true(sodium_is_zero(w.alice.ag.peer_pk, VEIL_KEY_BYTES));
	assert_true(sodium_is_zero(w.alice.ag.t1, VEIL_KEY_BYTES));
	assert_true(sodium_is_zero((const uint8_t *)&w.alice.ag.peer_inbox,
	    sizeof(w.alice.ag.peer_inbox)));
	assert_int_equal(w.alice.ag.peer_name[0], '\0');
	STATE_REJECTED(veil_agree_accept(&w.alice.ag, w.alice.id.sk, &w.alice.inbox,
	    &w.clk, out, &outlen, &pair), &w.alice.ag);
	STATE_REJECTED(veil_agree_reject(&w.alice.ag), &w.alice.ag);
	assert_string_equal(veil_agree_state_name(w.alice.ag.state), "rejected");
	assert_string_equal(veil_agree_state_name(99), "unknown");
	world_wipe(&w);
}

/* The stored agreement resumes where it left off. */
static void
test_agree_pack(void **state)
{
	struct world w;
	struct veil_agree back;
	uint8_t buf[VEIL_AGREE_PACKED_MAX + 1];
	int n;

	(void)state;
	world_init(&w);
	step_request(&w);
	n = veil_agree_pack(&w.alice.ag, buf, sizeof(buf));
	assert_true(n > 0 && n <= VEIL_AGREE_PACKED_MAX);
	assert_int_equal(buf[0], 2);
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_memory_equal(&back, &w.alice.ag, sizeof(back));
	/* Same length whatever the state. */
	assert_int_equal(veil_agree_pack(&w.bob.ag, buf, sizeof(buf)), n);
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_memory_equal(&back, &w.bob.ag, sizeof(back));
	assert_int_equal(veil_agree_pack(&w.bob.ag, buf, (size_t)n - 1), VEIL_ERR_TOOBIG);

	/* Wrong length, version, fields. */
	assert_int_equal(veil_agree_pack(&w.bob.ag, buf, sizeof(buf)), n);
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n - 1), VEIL_ERR_TRUNCATED);
	assert_true(sodium_is_zero((const uint8_t *)&back, sizeof(back)));
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n + 1), VEIL_ERR_FORMAT);
	assert_int_equal(veil_agree_unpack(&back, buf, 0), VEIL_ERR_TRUNCATED);
	/* Protocol version 1's stored agreement: VERSION, so the daemon can
	 * say what it is. */
	buf[0] = 1;
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
	buf[0] = 3;
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
	buf[0] = 2;
	buf[1] = 3;	/* role */
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
	buf[1] = 1;
	buf[2] = 7;	/* state */
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
	buf[2] = VEIL_AG_REQUESTED;
	buf[n - 1] = 'x';	/* byte after the name */
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
	buf[n - 1] = 0;
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_OK);
	/* my_inbox (Bob's, set) with period 0: not valid, not unset */
	{
		size_t at = 3 + 9 * 32 + 33 + 8 + 32 + 4;

		assert_int_equal(back.my_inbox.period, PB);
		buf[at + 2] = buf[at + 3] = 0;
		assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
	}

	/* Both sides restored from storage finish the agreement. */
	n = veil_agree_pack(&w.alice.ag, buf, sizeof(buf));
	veil_agree_wipe(&w.alice.ag);
	assert_int_equal(veil_agree_unpack(&w.alice.ag, buf, (size_t)n), VEIL_OK);
	n = veil_agree_pack(&w.bob.ag, buf, sizeof(buf));
	veil_agree_wipe(&w.bob.ag);
	assert_int_equal(veil_agree_unpack(&w.bob.ag, buf, (size_t)n), VEIL_OK);
	{
		uint8_t got[FS], out[VEIL_AGREE_BODY_MAX];
		size_t len, outlen;

		step_accept_body(&w);
		n = veil_agree_pack(&w.alice.ag, buf, sizeof(buf));
		veil_agree_wipe(&w.alice.ag);
		assert_int_equal(veil_agree_unpack(&w.alice.ag, buf, (size_t)n), VEIL_OK);
		len = step_accept_deliver(&w, got);
		step_on_accept(&w, got, len, out, &outlen);
		step_confirm(&w, out, outlen);
		assert_same_chain(&w.alice.pair.tx, &w.bob.pair.rx);
	}
	world_wipe(&w);
}

/* Offsets in a packed pair (format 3): version, role, S, SH, peer_pk, the
 * two inboxes, then tx, tx_next, rx, rx_prev. */
#define P_INBOX (1 + 1 + 3 * 32)
#define P_TX (P_INBOX + 2 * 40)
#define TX_LEN (1 + 1 + 4 + 8 + 8 + 32 + 32)
#define P_TXN (P_TX + TX_LEN)
#define P_RX (P_TXN + TX_LEN)
#define RX_HEAD (1 + 1 + 4 + 8 + 32 + 32)	/* ..., bind, the lowest root */
#define SLOT_LEN (1 + 8 + 16)			/* live, window; p - 1, p, p + 1 */
#define RX_LEN (RX_HEAD + 3 * SLOT_LEN)
#define P_RXP (P_RX + RX_LEN)
#define P_UPD (P_RXP + RX_LEN)

static void
assert_txchain_equal(const struct veil_txchain *a, const struct veil_txchain *b)
{
	assert_dirkey_equal(&a->k, &b->k);
	assert_memory_equal(a->bind, b->bind, 32);
	assert_int_equal(a->period, b->period);
	assert_int_equal(a->plen, b->plen);
	assert_int_equal(a->seq, b->seq);
	assert_int_equal(a->live, b->live);
}

static void
assert_rxchain_equal(const struct veil_rxchain *a, const struct veil_rxchain *b)
{
	int i;

	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		assert_dirkey_equal(&a->slot[i].k, &b->slot[i].k);
		assert_memory_equal(&a->slot[i].w, &b->slot[i].w, sizeof(a->slot[i].w));
		assert_int_equal(a->slot[i].period, b->slot[i].period);
		assert_int_equal(a->slot[i].live, b->slot[i].live);
	}
	assert_memory_equal(a->bind, b->bind, 32);
	assert_int_equal(a->period, b->period);
	assert_int_equal(a->plen, b->plen);
	assert_int_equal(a->dir, b->dir);
	assert_int_equal(a->live, b->live);
}

static void
assert_pair_equal(const struct veil_pair *a, const struct veil_pair *b)
{
	assert_int_equal(a->role, b->role);
	assert_memory_equal(a->secret, b->secret, VEIL_KEY_BYTES);
	assert_memory_equal(a->secret_hash, b->secret_hash, VEIL_KEY_BYTES);
	assert_memory_equal(a->peer_pk, b->peer_pk, VEIL_KEY_BYTES);
	assert_memory_equal(&a->my_inbox, &b->my_inbox, sizeof(a->my_inbox));
	assert_memory_equal(&a->peer_inbox, &b->peer_inbox, sizeof(a->peer_inbox));
	assert_txchain_equal(&a->tx, &b->tx);
	assert_txchain_equal(&a->tx_next, &b->tx_next);
	assert_rxchain_equal(&a->rx, &b->rx);
	assert_rxchain_equal(&a->rx_prev, &b->rx_prev);
	assert_int_equal(a->upd_sent_seq, b->upd_sent_seq);
	assert_int_equal(a->upd_pending, b->upd_pending);
	assert_int_equal(a->upd_rekey_secret, b->upd_rekey_secret);
	assert_memory_equal(a->upd_eph_sk, b->upd_eph_sk, VEIL_KEY_BYTES);
	assert_memory_equal(a->upd_eph_pk, b->upd_eph_pk, VEIL_KEY_BYTES);
	assert_memory_equal(a->upd_new_secret, b->upd_new_secret, VEIL_KEY_BYTES);
	assert_memory_equal(&a->upd_new, &b->upd_new, sizeof(a->upd_new));
	assert_int_equal(a->upd_recv_seq, b->upd_recv_seq);
	assert_memory_equal(a->upd_recv_eph, b->upd_recv_eph, VEIL_KEY_BYTES);
	assert_memory_equal(a->upd_ack_eph, b->upd_ack_eph, VEIL_KEY_BYTES);
	assert_int_equal(a->upd_ack_period, b->upd_ack_period);
}

/* Alice's pair with every field filled, so a swapped or missing one shows. */
static void
full_pair(struct world *w, struct veil_pair *p)
{
	uint8_t root[VEIL_KEY_BYTES];
	struct veil_clock clk = w->clk;

	agree_full(w);
	w->alice.pair.rx.slot[w->alice.pair.rx.period % 3].w.top = 200;
	*p = w->alice.pair;
	p->tx.seq = 0x0102030405060708ULL;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_txchain_init(&p->tx_next, root, VEIL_DIR_R2I, 77,
	    12345), VEIL_OK);
	p->tx_next.seq = 77;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&p->rx_prev, root, VEIL_DIR_I2R, 300,
	    veil_period_of(clk.now, 300)), VEIL_OK);
	clk.now = (veil_period_of(clk.now, 300) + 1) * 300 - 5;	/* in the lead */
	assert_int_equal(veil_rxchain_advance(&p->rx_prev, &clk, NULL, 0, 0), 1);
	{
		struct veil_rxdir *a = veil_rxchain_find(&p->rx_prev, p->rx_prev.period);
		struct veil_rxdir *b = veil_rxchain_find(&p->rx_prev, p->rx_prev.period + 1);

		assert_non_null(a);
		assert_non_null(b);
		a->w.top = 300;
		a->w.map[0] = 0xdeadbeefULL;
		a->w.map[1] = 0x1ULL << 63;
		b->w.top = 5;
		b->w.map[0] = 0x1f;
	}
	p->upd_sent_seq = 3;
	p->upd_pending = 1;
	p->upd_rekey_secret = 1;
	randombytes_buf(p->upd_eph_sk, VEIL_KEY_BYTES);
	randombytes_buf(p->upd_eph_pk, VEIL_KEY_BYTES);
	randombytes_buf(p->upd_new_secret, VEIL_KEY_BYTES);
	veil_seed_new(p->upd_new.seed);
	p->upd_new.epoch = 1800;
	p->upd_new.period = 900;
	p->upd_recv_seq = 9;
	randombytes_buf(p->upd_recv_eph, VEIL_KEY_BYTES);
	randombytes_buf(p->upd_ack_eph, VEIL_KEY_BYTES);
	p->upd_ack_period = 0x1122334455667788ULL;
}

static void
test_pair_pack(void **state)
{
	struct world w;
	struct veil_pair p, back;
	struct veil_clock clk;
	uint8_t buf[VEIL_PAIR_PACKED_MAX], buf2[VEIL_PAIR_PACKED_MAX];
	int n, i, live;
	size_t k;

	(void)state;
	world_init(&w);
	full_pair(&w, &p);

	n = veil_pair_pack(&p, buf, sizeof(buf));
	assert_true(n > 0 && n <= VEIL_PAIR_PACKED_MAX);
	assert_int_equal(n, P_UPD + 8 + 1 + 1 + 3 * 32 + 40 + 8 + 2 * 32 + 8);
	assert_int_equal(buf[0], 3);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_pair_equal(&p, &back);
	assert_int_equal(veil_pair_pack(&back, buf2, sizeof(buf2)), n);
	assert_memory_equal(buf, buf2, (size_t)n);
	/* Big-endian; the layout of a transmit chain. */
	assert_int_equal(buf[P_TX], 1);
	assert_int_equal(buf[P_TX + 1], VEIL_DIR_R2I);
	assert_int_equal(buf[P_TX + 14], 0x01);
	assert_int_equal(buf[P_TX + 21], 0x08);
	assert_memory_equal(buf + P_TX + 22, p.tx.k.root, 32);
	assert_memory_equal(buf + P_TXN + 22 + 32, p.tx_next.bind, 32);
	assert_int_equal(buf[P_TXN + 21], 77);
	assert_int_equal(buf[n - 1], 0x88);

	/* The end of a grace period forgets rx_prev only. */
	veil_pair_drop_prev(&p);
	assert_true(sodium_is_zero((const uint8_t *)&p.rx_prev, sizeof(p.rx_prev)));
	assert_true(p.tx_next.live);
	/* An empty chain is stored as zeros and stays empty. */
	veil_txchain_wipe(&p.tx_next);
	assert_int_equal(veil_pair_pack(&p, buf, sizeof(buf)), n);
	assert_true(sodium_is_zero(buf + P_TXN, TX_LEN));
	assert_true(sodium_is_zero(buf + P_RXP, RX_LEN));
	p.upd_recv_seq = 0;
	assert_int_equal(veil_pair_pack(&p, buf, sizeof(buf)), n);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_pair_equal(&p, &back);

	assert_int_equal(veil_pair_pack(&p, buf, (size_t)n - 1), VEIL_ERR_TOOBIG);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n - 1), VEIL_ERR_TRUNCATED);
	assert_true(sodium_is_zero((const uint8_t *)&back, sizeof(back)));
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n + 1), VEIL_ERR_FORMAT);
	assert_int_equal(veil_pair_unpack(&back, buf, 0), VEIL_ERR_TRUNCATED);
	/* Protocol version 1's formats (1 and 2) and unknown ones: VERSION. */
	for (i = 0; i < 256; i++) {
		if (i == 3)
			continue;
		buf[0] = (uint8_t)i;
		assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
		assert_true(sodium_is_zero((const uint8_t *)&back, sizeof(back)));
	}
	buf[0] = 3;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);

#define BAD(off, val) do {						\
	uint8_t o_ = buf[(off)];					\
	buf[(off)] = (uint8_t)(val);					\
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT); \
	assert_true(sodium_is_zero((const uint8_t *)&back, sizeof(back)));	\
	buf[(off)] = o_;						\
} while (0)
	BAD(1, 0);				/* role */
	BAD(1, 3);
	BAD(P_INBOX + 36, 0xff);		/* my period beyond the max */
	BAD(P_INBOX + 32, 0xff);		/* my epoch length too */
	BAD(P_INBOX + 40 + 36, 0xff);		/* the peer's period */
	BAD(P_TX, 2);				/* tx.live */
	BAD(P_TX, 0);				/* no tx at all */
	BAD(P_TX + 1, VEIL_DIR_I2R);		/* the responder's tx is r2i */
	BAD(P_TX + 2, 0xff);			/* plen beyond the max */
	BAD(P_TXN + 1, 1);			/* an empty tx_next is all zero */
	BAD(P_RX + 1, VEIL_DIR_R2I);		/* rx has the other direction */
	BAD(P_RXP, 1);				/* an empty rx_prev is all zero */
	/* rx: the current period's key must be live; an empty slot is zero */
	BAD(P_RX + RX_HEAD + SLOT_LEN, 0);
	BAD(P_RX + RX_HEAD + 1, 1);			/* p - 1's window */
	BAD(P_RX + RX_HEAD + 2 * SLOT_LEN, 2);	/* p + 1's flag */
	/* (an UPDATE with NewSecret is pending) */
	BAD(P_UPD + 8, 2);			/* upd_pending */
	BAD(P_UPD + 8, 0);			/* NewSecret, upd_new, nothing pending */
	BAD(P_UPD + 9, 2);			/* upd_rekey_secret */
	BAD(P_UPD + 10 + 96 + 36, 0xff);	/* upd_new's period */
#undef BAD
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);

	/* The stored root is the lowest live period's (p - 1 here, in the
	 * grace): the others come back from it by the ratchet, windows and all. */
	world_wipe(&w);
	world_init(&w);
	full_pair(&w, &p);
	clk = w.clk;
	clk.now = (p.rx_prev.period + 1) * 300 + 10;		/* p + 1, in grace */
	assert_int_equal(veil_rxchain_advance(&p.rx_prev, &clk, NULL, 0, 0), 1);
	assert_non_null(veil_rxchain_find(&p.rx_prev, p.rx_prev.period - 1));
	n = veil_pair_pack(&p, buf, sizeof(buf));
	assert_memory_equal(buf + P_RXP + RX_HEAD - 32,
	    veil_rxchain_find(&p.rx_prev, p.rx_prev.period - 1)->k.root, 32);
	assert_int_equal(buf[P_RXP + RX_HEAD], 1);
	assert_int_equal(buf[P_RXP + RX_HEAD + SLOT_LEN], 1);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_pair_equal(&p, &back);
	for (i = 0, live = 0; i < 3; i++)
		live += back.rx_prev.slot[i].live;
	assert_int_equal(live, 2);
	/* p - 1 at period 0 does not exist */
	{
		struct veil_pair z = p;
		uint8_t r0[32];

		randombytes_buf(r0, sizeof(r0));
		assert_int_equal(veil_rxchain_init(&z.rx_prev, r0, VEIL_DIR_I2R, 300, 0),
		    VEIL_OK);
		n = veil_pair_pack(&z, buf, sizeof(buf));
		assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
		buf[P_RXP + RX_HEAD] = 1;
		assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
		veil_pair_wipe(&z);
	}
	n = veil_pair_pack(&p, buf, sizeof(buf));

	/* Every truncation is refused. */
	for (k = 0; k < (size_t)n; k++)
		assert_true(veil_pair_unpack(&back, buf, k) < 0);
	veil_pair_wipe(&p);
	assert_true(sodium_is_zero((const uint8_t *)&p, sizeof(p)));
	veil_pair_wipe(&back);
	world_wipe(&w);
}

/*
 * The daemon's view: a pair's receive keys in one tag table as owners
 * base + 0..5, kept in step at each boundary by veil_pair_advance; a frame
 * found through its tag opens under veil_pair_rxslot(owner - base).
 */
static void
test_pair_advance_arm(void **state)
{
	struct world w;
	struct veil_tagtab *t;
	struct veil_clock clk;
	struct veil_rxdir *d;
	struct veil_frame_hdr h;
	uint8_t root[32], tag[8], got[FS];
	uint64_t owner, seq, base = 8 * 5, ticks;
	const uint64_t step = 97;
	unsigned j, nlive;

	(void)state;
	world_init(&w);
	agree_full(&w);
	t = veil_tagtab_new(0);
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&w.alice.pair.rx_prev, root,
	    VEIL_DIR_I2R, PB, veil_period_of(w.clk.now, PB)), VEIL_OK);
	assert_int_equal(veil_pair_arm(t, &w.alice.pair, base, LA), VEIL_OK);
	/* rx, advanced to now by the agreement, holds the clock landmarks
	 * around now (2 or 3); rx_prev, fresh, none yet */
	for (j = 0, nlive = 0; j < VEIL_PAIR_OWNERS; j++)
		if ((d = veil_pair_rxslot(&w.alice.pair, j)) != NULL)
			nlive += d->clk_count;
	assert_true(nlive >= 2 && nlive <= 3);
	assert_int_equal(veil_tagtab_count(t), 2 * (LA + VEIL_RESYNC_LEVELS) +
	    nlive);
	clk = w.clk;
	for (ticks = 0; ticks < 200; ticks++) {
		clk.now += step;
		assert_true(veil_pair_advance(&w.alice.pair, &clk, t, base, LA) >= 0);
		assert_true(veil_pair_advance(&w.bob.pair, &clk, NULL, 0, 0) >= 0);
		/* Bob's frame of now: found by its tag, under the owner of
		 * the slot holding Bob's period */
		seal_tx(w.frame, &w.bob.pair.tx, VEIL_T_TEXT, (const uint8_t *)"t", 1);
		veil_frame_tag(w.frame, tag);
		assert_int_equal(veil_tagtab_get(t, tag, &owner, &seq), VEIL_OK);
		assert_true(owner >= base && owner < base + VEIL_PAIR_OWNERS);
		d = veil_pair_rxslot(&w.alice.pair, (unsigned)(owner - base));
		assert_non_null(d);
		assert_int_equal(d->period, w.bob.pair.tx.period);
		assert_int_equal(veil_frame_open(w.frame, FS, &d->k, seq, &h, got),
		    VEIL_OK);
		assert_int_equal(veil_rx_commit(t, d, owner, seq, LA), VEIL_OK);
		/* the table holds the live slots and nothing else */
		for (j = 0, nlive = 0; j < VEIL_PAIR_OWNERS; j++) {
			d = veil_pair_rxslot(&w.alice.pair, j);
			if (d == NULL)
				continue;
			nlive++;
			veil_dirkey_tag(&d->k, d->w.top + LA - 1, tag);
			assert_int_equal(veil_tagtab_get(t, tag, &owner, &seq), VEIL_OK);
			assert_int_equal(owner, base + j);
		}
		assert_true(nlive >= 2 && nlive <= 6);
	}
	assert_null(veil_pair_rxslot(&w.alice.pair, VEIL_PAIR_OWNERS));
	veil_pair_disarm(t, &w.alice.pair, LA);
	assert_int_equal(veil_tagtab_count(t), 0);
	assert_int_equal(veil_pair_arm(NULL, &w.alice.pair, 0, LA), VEIL_ERR_INVAL);
	assert_int_equal(veil_pair_advance(NULL, &clk, NULL, 0, 0), VEIL_ERR_INVAL);
	veil_tagtab_free(t);
	world_wipe(&w);
}
static void
test_pair_secret(void **state)
{
	struct veil_pair p;
	uint8_t s[VEIL_KEY_BYTES], want[VEIL_KEY_BYTES];

	(void)state;
	memset(&p, 0, sizeof(p));
	randombytes_buf(s, sizeof(s));
	veil_pair_set_secret(&p, s);
	assert_memory_equal(p.secret, s, sizeof(s));
	/* SH = BLAKE2b-256(key = S, "veil-secret-v1"), computed here directly. */
	crypto_generichash(want, sizeof(want), (const uint8_t *)"veil-secret-v1", 14, s, sizeof(s));
	assert_memory_equal(p.secret_hash, want, sizeof(want));
	s[0] ^= 1;
	veil_pair_set_secret(&p, s);
	assert_memory_not_equal(p.secret_hash, want, sizeof(want));
	veil_pair_set_secret(&p, p.secret);	/* aliasing */
	crypto_generichash(want, sizeof(want), (const uint8_t *)"veil-secret-v1", 14, s, sizeof(s));
	assert_memory_equal(p.secret_hash, want, sizeof(want));
}

/* Independent rendering of protocol.md §4 for comparison. */
static void
fp_reference(const uint8_t *a, const uint8_t *b, char out[64])
{
	crypto_generichash_state st;
	uint8_t h[32];
	const uint8_t *lo = memcmp(a, b, 32) < 0 ? a : b, *hi = lo == a ? b : a;
	size_t i, j, o = 0;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)"veil-fp-v1", 10);
	crypto_generichash_update(&st, lo, 32);
	crypto_generichash_update(&st, hi, 32);
	crypto_generichash_final(&st, h, 32);
	for (i = 0; i < 6; i++) {
		unsigned long long v = 0;

		for (j = 0; j < 5; j++)
			v = v * 256 + h[5 * i + j];
		o += (size_t)snprintf(out + o, 64 - o, "%s%05llu", i ? " " : "", v % 100000);
	}
}

static void
test_fingerprint(void **state)
{
	uint8_t a[32], b[32], c[32];
	char f1[VEIL_FP_TEXT], f2[VEIL_FP_TEXT], f3[VEIL_FP_TEXT], ref[64];
	int i, k;

	(void)state;
	for (k = 0; k < 50; k++) {
		randombytes_buf(a, 32);
		randombytes_buf(b, 32);
		memcpy(c, b, 32);
		c[31] ^= 0x80;
		assert_int_equal(veil_fingerprint(a, b, f1), VEIL_OK);
		assert_int_equal(veil_fingerprint(b, a, f2), VEIL_OK);
		assert_int_equal(veil_fingerprint(a, c, f3), VEIL_OK);
		assert_string_equal(f1, f2);
		assert_string_not_equal(f1, f3);
		assert_int_equal(strlen(f1), 35);
		for (i = 0; i < 35; i++) {
			if (i % 6 == 5)
				assert_int_equal(f1[i], ' ');
			else
				assert_true(f1[i] >= '0' && f1[i] <= '9');
		}
		fp_reference(a, b, ref);
		assert_string_equal(f1, ref);
	}
	assert_int_equal(veil_fingerprint(a, NULL, f1), VEIL_ERR_INVAL);
	assert_int_equal(f1[0], '\0');
}


/*
 * Forward secrecy sanity: with S, K and the whole REQUEST fixed, the pair
 * keys still change with Alice's ephemeral key alone.
 */
static void
test_agree_ephemeral_matters(void **state)
{
	struct world w;
	struct veil_agree a2;
	struct veil_pair p2;
	uint8_t body2[VEIL_AGREE_BODY_MAX];
	size_t len2;

	(void)state;
	world_init(&w);
	step_request(&w);
	a2 = w.alice.ag;
	step_accept_body(&w);
	assert_int_equal(veil_agree_accept(&a2, w.alice.id.sk, &w.alice.inbox,
	    &w.clk, body2, &len2, &p2), VEIL_OK);
	assert_memory_equal(a2.secret, w.alice.ag.secret, VEIL_KEY_BYTES);
	assert_memory_equal(a2.pairkey, w.alice.ag.pairkey, VEIL_KEY_BYTES);
	assert_memory_not_equal(a2.eph_pk, w.alice.ag.eph_pk, VEIL_KEY_BYTES);
	assert_memory_not_equal(p2.tx.k.root, w.alice.pair.tx.k.root, VEIL_KEY_BYTES);
	assert_memory_not_equal(p2.rx.bind, w.alice.pair.rx.bind, VEIL_KEY_BYTES);
	/* Same secret hash: only the keys depend on the ephemerals. */
	assert_memory_equal(p2.secret_hash, w.alice.pair.secret_hash, VEIL_KEY_BYTES);

	/* And the other side agrees with whichever ACCEPT it gets. */
	{
		uint8_t out[VEIL_AGREE_BODY_MAX], type;
		size_t outlen;

		assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.bob.id.sk, &w.clk,
		    body2, len2, &w.bob.pair, out, &outlen, &type), VEIL_OK);
		assert_same_chain(&p2.tx, &w.bob.pair.rx);
		assert_int_equal(veil_agree_on_confirm(&a2, out, outlen), VEIL_OK);
		assert_int_equal(veil_agree_on_confirm(&w.alice.ag, out, outlen),
		    VEIL_ERR_SECRET);
	}
	veil_agree_wipe(&a2);
	veil_pair_wipe(&p2);
	world_wipe(&w);
}

static void
test_agree_bad_args(void **state)
{
	struct world w;
	struct veil_inbox bad;
	struct veil_card own;
	uint8_t out[VEIL_AGREE_BODY_MAX], type;
	size_t outlen;

	(void)state;
	world_init(&w);
	bad = w.bob.inbox;
	bad.period = 0;
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, "", &w.bob.inbox, w.clk.now, w.body, &w.len), VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, "B\x01", &w.bob.inbox, w.clk.now, w.body, &w.len),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, "Bob", &bad, w.clk.now, w.body, &w.len), VEIL_ERR_INVAL);
	/* one's own card */
	own = w.alice.card;
	memcpy(own.pk, w.bob.id.pk, 32);
	assert_int_equal(veil_agree_request(&w.bob.ag, &own, w.bob.id.pk, "Bob",
	    &w.bob.inbox, w.clk.now, w.body, &w.len), VEIL_ERR_INVAL);
	assert_int_equal(w.bob.ag.state, VEIL_AG_NONE);
	assert_int_equal(veil_agree_request(NULL, &w.alice.card,
	    w.bob.id.pk, "Bob", &w.bob.inbox, w.clk.now, w.body, &w.len),
	    VEIL_ERR_INVAL);
	step_request(&w);
	assert_int_equal(veil_agree_accept(&w.alice.ag, w.alice.id.sk, &bad, &w.clk,
	    w.body, &w.len, &w.alice.pair), VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_accept(&w.alice.ag, w.bob.id.sk, &w.alice.inbox,
	    &w.clk, w.body, &w.len, &w.alice.pair), VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_accept(&w.alice.ag, w.alice.id.sk,
	    &w.alice.inbox, NULL, w.body, &w.len, &w.alice.pair), VEIL_ERR_INVAL);
	assert_int_equal(w.alice.ag.state, VEIL_AG_PENDING);
	step_accept_body(&w);
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.alice.id.sk, &w.clk,
	    w.body, w.len, &w.bob.pair, out, &outlen, &type), VEIL_ERR_INVAL);
	assert_int_equal(w.bob.ag.state, VEIL_AG_REQUESTED);
	world_wipe(&w);
}

static void
h_multi(uint8_t out[32], const uint8_t *key, const void *p1, size_t l1,
    const void *p2, size_t l2, const void *p3, size_t l3)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, key ? 32 : 0, 32);
	crypto_generichash_update(&st, p1, l1);
	crypto_generichash_update(&st, p2, l2);
	crypto_generichash_update(&st, p3, l3);
	crypto_generichash_final(&st, out, 32);
}

/*
 * protocol.md 4 recomputed here from the bytes on the wire, Bob's
 * identity and his ephemeral secret (saved before the library wipes it).
 */
static void
test_agree_spec(void **state)
{
	struct world w;
	uint8_t req[VEIL_AGREE_BODY_MAX], acc[VEIL_AGREE_BODY_MAX];
	uint8_t out[VEIL_AGREE_BODY_MAX], e_b[32], be[8];
	uint8_t t1[32], t2[32], hs[32], conf[32], dh[3][32], rk[32], d[32];
	uint8_t params[8];
	struct veil_dirkey r2i, i2r;
	crypto_generichash_state st;
	size_t reqlen, acclen, outlen;
	int i;

	(void)state;
	world_init(&w);
	step_request(&w);
	memcpy(req, w.body, w.len);
	reqlen = w.len;
	memcpy(e_b, w.bob.ag.eph_sk, 32);
	/* REQUEST layout. */
	assert_int_equal(req[R_VER], 2);
	assert_memory_equal(req + R_S, w.bob.ag.secret, 32);
	assert_memory_equal(req + R_K, w.bob.ag.pairkey, 32);
	assert_memory_equal(req + R_KPB, w.bob.id.pk, 32);
	assert_memory_equal(req + R_EB, w.bob.ag.eph_pk, 32);
	put64(be, w.clk.now);
	assert_memory_equal(req + R_TB, be, 8);
	put32(params, w.bob.inbox.epoch);
	put32(params + 4, w.bob.inbox.period);
	assert_memory_equal(req + R_LB, params, 8);
	assert_int_equal(req[R_CID], 16);
	assert_memory_equal(req + R_CID + 1, w.alice.card.cid.b, 16);
	assert_memory_equal(req + R_JB, w.bob.inbox.seed, 32);
	assert_int_equal(req[R_NAME], 3);
	assert_memory_equal(req + R_NAME + 1, "Bob", 3);
	assert_int_equal(reqlen, R_NAME + 4);
	h_multi(t1, NULL, "veil-agree-v2", 13, w.alice.id.pk, 32, req, reqlen);
	assert_memory_equal(w.bob.ag.t1, t1, 32);

	/* Epoch-0 keys from K, with their directions. */
	veil_agree_epoch0(&w.alice.ag, &r2i, &i2r);
	crypto_kdf_derive_from_key(d, 32, 1, "veilag02", req + R_K);
	assert_memory_equal(r2i.root, d, 32);
	assert_int_equal(r2i.dir, 2);
	crypto_kdf_derive_from_key(rk, 32, 1, "veildir2", d);
	assert_memory_equal(r2i.key, rk, 32);
	crypto_kdf_derive_from_key(d, 32, 2, "veilag02", req + R_K);
	assert_memory_equal(i2r.root, d, 32);
	assert_int_equal(i2r.dir, 1);

	/* ACCEPT layout, T2, HS. */
	step_accept_body(&w);
	memcpy(acc, w.body, w.len);
	acclen = w.len;
	assert_int_equal(acclen, 104);
	assert_memory_equal(acc + A_EA, w.alice.ag.eph_pk, 32);
	put32(params, w.alice.inbox.epoch);
	put32(params + 4, w.alice.inbox.period);
	assert_memory_equal(acc + A_LA, params, 8);
	assert_memory_equal(acc + A_JA, w.alice.inbox.seed, 32);
	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, t1, 32);
	crypto_generichash_update(&st, acc + A_EA, 32);
	crypto_generichash_update(&st, acc + A_LA, 8);
	crypto_generichash_update(&st, acc + A_JA, 32);
	crypto_generichash_final(&st, t2, 32);
	h_multi(hs, req + R_S, "veil-hs-v2", 10, t2, 32, "", 0);
	assert_memory_equal(acc + A_HS, hs, 32);

	/* RK from Bob's three DH terms (ee, es, se), the roots, CONFIRM. */
	step_on_accept(&w, acc, acclen, out, &outlen);
	assert_int_equal(crypto_scalarmult(dh[0], e_b, acc + A_EA), 0);
	assert_int_equal(crypto_scalarmult(dh[1], w.bob.id.sk, acc + A_EA), 0);
	assert_int_equal(crypto_scalarmult(dh[2], e_b, w.alice.id.pk), 0);
	crypto_generichash_init(&st, req + R_K, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)"veil-root-v2", 12);
	for (i = 0; i < 3; i++)
		crypto_generichash_update(&st, dh[i], 32);
	crypto_generichash_update(&st, t2, 32);
	crypto_generichash_final(&st, rk, 32);
	/* The chains are anchored at t_B's period, which is now's. */
	crypto_kdf_derive_from_key(d, 32, 1, "veilpai2", rk);
	assert_int_equal(w.bob.pair.tx.period, veil_period_of(w.clk.now, PA));
	assert_memory_equal(w.bob.pair.tx.k.root, d, 32);
	assert_memory_equal(veil_rxchain_find(&w.alice.pair.rx,
	    w.bob.pair.tx.period)->k.root, d, 32);
	crypto_kdf_derive_from_key(conf, 32, 4, "veildir2", d);
	assert_memory_equal(w.bob.pair.tx.bind, conf, 32);
	crypto_kdf_derive_from_key(d, 32, 2, "veilpai2", rk);
	assert_memory_equal(veil_rxchain_find(&w.bob.pair.rx,
	    veil_period_of(w.clk.now, PB))->k.root, d, 32);
	assert_memory_equal(w.alice.pair.tx.k.root, d, 32);
	h_multi(conf, req + R_S, "veil-confirm-v2", 15, t2, 32, "", 0);
	assert_int_equal(outlen, 32);
	assert_memory_equal(out, conf, 32);
	sodium_memzero(e_b, sizeof(e_b));
	sodium_memzero(dh, sizeof(dh));
	world_wipe(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agree_full),
		cmocka_unit_test(test_agree_spec),
		cmocka_unit_test(test_agree_anchor),
		cmocka_unit_test(test_agree_impersonation),
		cmocka_unit_test(test_agree_responder_needs_sk),
		cmocka_unit_test(test_agree_request_t1),
		cmocka_unit_test(test_agree_epoch0_allows),
		cmocka_unit_test(test_agree_chain_frame),
		cmocka_unit_test(test_agree_hs_mismatch),
		cmocka_unit_test(test_agree_bad_confirm),
		cmocka_unit_test(test_agree_wrong_state),
		cmocka_unit_test(test_agree_wrong_cid_or_key),
		cmocka_unit_test(test_agree_request_time),
		cmocka_unit_test(test_agree_request_garbage),
		cmocka_unit_test(test_agree_accept_garbage),
		cmocka_unit_test(test_agree_zero_dh),
		cmocka_unit_test(test_agree_reject),
		cmocka_unit_test(test_agree_pack),
		cmocka_unit_test(test_agree_ephemeral_matters),
		cmocka_unit_test(test_agree_bad_args),
		cmocka_unit_test(test_pair_pack),
		cmocka_unit_test(test_pair_advance_arm),
		cmocka_unit_test(test_pair_secret),
		cmocka_unit_test(test_fingerprint),
	};

	tu_deterministic_rng("test_agree");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("agree", tests, NULL, NULL);
}
