/* Tests for libproto agree and pair: the three-step agreement over real frames, state checks, storage, fingerprints. */
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

struct party {
	struct veil_identity id;
	struct veil_card card;		/* Alice's public card (unused for Bob) */
	struct veil_id inbox;		/* pairwise inbox */
	const char *name;
	struct veil_agree ag;
	struct veil_pair pair;
};

struct world {
	struct party alice;		/* responder, owns the card */
	struct party bob;		/* initiator, scanned it */
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
	assert_int_equal(veil_id_new(&w->alice.inbox, 0), VEIL_OK);
	assert_int_equal(veil_id_new(&w->bob.inbox, 0), VEIL_OK);
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

/* Step 1: Bob's REQUEST, sealed to Alice's card key, opened by Alice. */
static void
step_request(struct world *w)
{
	struct veil_frame_hdr h;
	uint8_t msgid[VEIL_MSGID_BYTES];
	uint8_t got[FS];

	assert_int_equal(veil_agree_request(&w->bob.ag, &w->alice.card,
	    w->bob.id.pk, w->bob.name, &w->bob.inbox, w->body, &w->len), VEIL_OK);
	assert_int_equal(w->bob.ag.state, VEIL_AG_REQUESTED);
	assert_int_equal(w->bob.ag.role, VEIL_ROLE_INITIATOR);
	assert_int_equal(w->len, 4 * 32 + 1 + 16 + 1 + 16 + 1 + 3);

	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal_box(w->frame, FS, FS, w->alice.card.pk,
	    VEIL_T_REQUEST, msgid, w->body, w->len), 1);
	assert_int_equal(veil_frame_open_box(w->frame, FS, w->alice.id.pk,
	    w->alice.id.sk, &h, got), VEIL_OK);
	assert_int_equal(h.type, VEIL_T_REQUEST);
	assert_int_equal(h.len, w->len);
	assert_memory_equal(got, w->body, w->len);
	assert_int_equal(veil_agree_on_request(&w->alice.ag, &w->alice.card.cid,
	    w->alice.id.pk, got, h.len), VEIL_OK);
	assert_int_equal(w->alice.ag.state, VEIL_AG_PENDING);
	assert_int_equal(w->alice.ag.role, VEIL_ROLE_RESPONDER);
	assert_string_equal(w->alice.ag.peer_name, "Bob");
	assert_true(veil_id_equal(&w->alice.ag.peer_inbox, &w->bob.inbox));
	assert_memory_equal(w->alice.ag.peer_pk, w->bob.id.pk, VEIL_KEY_BYTES);
	assert_memory_equal(w->alice.ag.t1, w->bob.ag.t1, VEIL_KEY_BYTES);
}

/* Step 2 on Alice's side: the ACCEPT body into w->body. */
static void
step_accept_body(struct world *w)
{
	assert_int_equal(veil_agree_accept(&w->alice.ag, &w->alice.inbox,
	    w->body, &w->len, &w->alice.pair), VEIL_OK);
	assert_int_equal(w->alice.ag.state, VEIL_AG_ACCEPTED);
	assert_int_equal(w->len, 32 + 32 + 1 + 16);
	assert_true(sodium_is_zero(w->alice.ag.eph_sk, VEIL_KEY_BYTES));
}

/* Step 2 transport: ACCEPT under epoch-0 r2i, seq 0; Bob opens it. */
static size_t
step_accept_deliver(struct world *w, uint8_t *got)
{
	struct veil_dirkey ar2i, br2i;
	uint64_t seq = 0;

	veil_agree_epoch0(&w->alice.ag, &ar2i, NULL);
	seal(w->frame, &ar2i, &seq, VEIL_T_ACCEPT, w->body, w->len);
	assert_int_equal(seq, 1);
	veil_agree_epoch0(&w->bob.ag, &br2i, NULL);
	return open_expect(w->frame, &br2i, 0, VEIL_T_ACCEPT, got);
}

static void
agree_full(struct world *w)
{
	uint8_t got[FS], out[VEIL_AGREE_BODY_MAX], type;
	size_t n, outlen;

	step_request(w);
	step_accept_body(w);
	n = step_accept_deliver(w, got);
	assert_int_equal(veil_agree_on_accept(&w->bob.ag, got, n, &w->bob.pair,
	    out, &outlen, &type), VEIL_OK);
	assert_int_equal(w->bob.ag.state, VEIL_AG_ESTABLISHED);
	assert_int_equal(type, VEIL_T_CONFIRM);
	assert_int_equal(outlen, 32);
	assert_true(sodium_is_zero(w->bob.ag.eph_sk, VEIL_KEY_BYTES));

	/* CONFIRM is Bob's first frame under the pair key. */
	assert_int_equal(w->bob.pair.tx.seq, 0);
	seal(w->frame, &w->bob.pair.tx.k, &w->bob.pair.tx.seq, VEIL_T_CONFIRM, out, outlen);
	assert_int_equal(w->bob.pair.tx.seq, 1);
	n = open_expect(w->frame, &w->alice.pair.rx.k, 0, VEIL_T_CONFIRM, got);
	assert_int_equal(veil_agree_on_confirm(&w->alice.ag, got, n), VEIL_OK);
	assert_int_equal(w->alice.ag.state, VEIL_AG_ESTABLISHED);
}

static void
assert_dirkey_equal(const struct veil_dirkey *a, const struct veil_dirkey *b)
{
	assert_memory_equal(a->root, b->root, VEIL_KEY_BYTES);
	assert_memory_equal(a->key, b->key, VEIL_KEY_BYTES);
	assert_memory_equal(a->nkey, b->nkey, VEIL_KEY_BYTES);
}

static void
test_agree_full(void **state)
{
	struct world w;
	uint8_t got[FS];
	struct veil_frame_hdr h;
	const char *hi = "hello Bob", *re = "hello Alice";
	size_t n;

	(void)state;
	world_init(&w);
	agree_full(&w);

	assert_int_equal(w.alice.pair.role, VEIL_ROLE_RESPONDER);
	assert_int_equal(w.bob.pair.role, VEIL_ROLE_INITIATOR);
	assert_dirkey_equal(&w.alice.pair.tx.k, &w.bob.pair.rx.k);
	assert_dirkey_equal(&w.bob.pair.tx.k, &w.alice.pair.rx.k);
	assert_memory_not_equal(w.alice.pair.tx.k.root, w.alice.pair.rx.k.root, VEIL_KEY_BYTES);
	assert_memory_equal(w.alice.pair.secret, w.bob.pair.secret, VEIL_KEY_BYTES);
	assert_memory_equal(w.alice.pair.secret_hash, w.bob.pair.secret_hash, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.alice.pair.secret, w.alice.pair.secret_hash, VEIL_KEY_BYTES);
	assert_memory_equal(w.alice.pair.peer_pk, w.bob.id.pk, VEIL_KEY_BYTES);
	assert_memory_equal(w.bob.pair.peer_pk, w.alice.id.pk, VEIL_KEY_BYTES);
	assert_true(w.alice.pair.tx.live && w.alice.pair.rx.live);
	assert_true(w.bob.pair.tx.live && w.bob.pair.rx.live);
	assert_false(w.alice.pair.tx_next.live || w.alice.pair.rx_prev.live);
	assert_false(w.bob.pair.tx_next.live || w.bob.pair.rx_prev.live);
	assert_true(veil_id_equal(&w.bob.ag.peer_inbox, &w.alice.inbox));
	assert_true(veil_id_equal(&w.alice.ag.peer_inbox, &w.bob.inbox));
	/* The pair keys are not the epoch-0 keys. */
	{
		struct veil_dirkey r2i, i2r;

		veil_agree_epoch0(&w.alice.ag, &r2i, &i2r);
		assert_memory_not_equal(r2i.root, w.alice.pair.tx.k.root, VEIL_KEY_BYTES);
		assert_memory_not_equal(i2r.root, w.alice.pair.rx.k.root, VEIL_KEY_BYTES);
	}

	/* TEXT each way. */
	seal(w.frame, &w.alice.pair.tx.k, &w.alice.pair.tx.seq, VEIL_T_TEXT,
	    (const uint8_t *)hi, strlen(hi));
	assert_int_equal(veil_frame_open(w.frame, FS, &w.bob.pair.tx.k, 0, &h, got),
	    VEIL_ERR_DECRYPT);
	n = open_expect(w.frame, &w.bob.pair.rx.k, 0, VEIL_T_TEXT, got);
	assert_int_equal(n, strlen(hi));
	assert_memory_equal(got, hi, n);
	seal(w.frame, &w.bob.pair.tx.k, &w.bob.pair.tx.seq, VEIL_T_TEXT,
	    (const uint8_t *)re, strlen(re));
	n = open_expect(w.frame, &w.alice.pair.rx.k, 1, VEIL_T_TEXT, got);
	assert_memory_equal(got, re, n);
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
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, got, n, &w.bob.pair,
	    out, &outlen, &type), VEIL_ERR_SECRET);
	assert_int_equal(w.bob.ag.state, VEIL_AG_FAILED);
	assert_int_equal(type, VEIL_T_FAIL);
	assert_int_equal(outlen, 1);
	assert_int_equal(out[0], 1);
	assert_true(sodium_is_zero((const uint8_t *)&w.bob.pair, sizeof(w.bob.pair)));

	/* FAIL goes under epoch-0 i2r and Alice gives up too. */
	veil_agree_epoch0(&w.bob.ag, NULL, &bi2r);
	seal(w.frame, &bi2r, &seq, VEIL_T_FAIL, out, outlen);
	veil_agree_epoch0(&w.alice.ag, NULL, &ai2r);
	n = open_expect(w.frame, &ai2r, 0, VEIL_T_FAIL, got);
	assert_int_equal(veil_agree_on_fail(&w.alice.ag, got, n), VEIL_OK);
	assert_int_equal(w.alice.ag.state, VEIL_AG_FAILED);
	/* Failed is final. */
	assert_int_equal(veil_agree_on_fail(&w.alice.ag, got, n), VEIL_ERR_STATE);
	assert_int_equal(veil_agree_on_confirm(&w.alice.ag, out, 32), VEIL_ERR_STATE);
	world_wipe(&w);
}

/* The requester's key, read from a REQUEST sent to a card that is gone
 * (the daemon answers such a copy with its ACCEPT again). */
static void
test_agree_request_key(void **state)
{
	struct world w;
	struct veil_id other;
	uint8_t pk[VEIL_KEY_BYTES];

	(void)state;
	world_init(&w);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, w.bob.name, &w.bob.inbox, w.body, &w.len), VEIL_OK);
	/* Alice's card was replaced: the full check refuses the REQUEST ... */
	assert_int_equal(veil_id_new(&other, 0), VEIL_OK);
	assert_int_equal(veil_agree_on_request(&w.alice.ag, &other, w.alice.id.pk,
	    w.body, w.len), VEIL_ERR_STATE);
	/* ... and the key still names Bob. */
	memset(pk, 0xaa, sizeof(pk));
	assert_int_equal(veil_agree_request_key(w.body, w.len, pk), VEIL_OK);
	assert_memory_equal(pk, w.bob.id.pk, VEIL_KEY_BYTES);
	/* Exactly S, K and KP_B are needed; one byte less is truncated and
	 * leaves no partial key behind. */
	assert_int_equal(veil_agree_request_key(w.body, 3 * VEIL_KEY_BYTES, pk), VEIL_OK);
	assert_int_equal(veil_agree_request_key(w.body, 3 * VEIL_KEY_BYTES - 1, pk),
	    VEIL_ERR_TRUNCATED);
	assert_true(sodium_is_zero(pk, sizeof(pk)));
	assert_int_equal(veil_agree_request_key(w.body, 0, pk), VEIL_ERR_TRUNCATED);
	assert_int_equal(veil_agree_request_key(NULL, w.len, pk), VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_request_key(w.body, w.len, NULL), VEIL_ERR_INVAL);
	world_wipe(&w);
}

static void
test_agree_hs_mismatch(void **state)
{
	(void)state;
	hs_mismatch(40);	/* HS itself */
	hs_mismatch(5);		/* E_A */
	hs_mismatch(70);	/* I_A */
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
	uint8_t req[VEIL_AGREE_BODY_MAX];
	size_t outlen, reqlen;

	(void)state;
	memset(out, 0, sizeof(out));
	world_init(&w);
	/* Fresh (NONE) agreement: only request / on_request are valid. */
	STATE_REJECTED(veil_agree_accept(&w.alice.ag, &w.alice.inbox, out, &outlen, &pair), &w.alice.ag);
	STATE_REJECTED(veil_agree_reject(&w.alice.ag), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_accept(&w.alice.ag, out, 81, &pair, out, &outlen, &type), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_confirm(&w.alice.ag, out, 32), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_fail(&w.alice.ag, &one, 1), &w.alice.ag);

	step_request(&w);
	memcpy(req, w.body, w.len);
	reqlen = w.len;
	/* Bob, REQUESTED. */
	STATE_REJECTED(veil_agree_request(&w.bob.ag, &w.alice.card, w.bob.id.pk,
	    "Bob", &w.bob.inbox, out, &outlen), &w.bob.ag);
	STATE_REJECTED(veil_agree_on_request(&w.bob.ag, &w.alice.card.cid,
	    w.alice.id.pk, req, reqlen), &w.bob.ag);
	STATE_REJECTED(veil_agree_accept(&w.bob.ag, &w.bob.inbox, out, &outlen, &pair), &w.bob.ag);
	STATE_REJECTED(veil_agree_reject(&w.bob.ag), &w.bob.ag);
	STATE_REJECTED(veil_agree_on_confirm(&w.bob.ag, out, 32), &w.bob.ag);
	/* Alice, PENDING. */
	STATE_REJECTED(veil_agree_on_request(&w.alice.ag, &w.alice.card.cid,
	    w.alice.id.pk, req, reqlen), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_accept(&w.alice.ag, out, 81, &pair, out, &outlen, &type), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_confirm(&w.alice.ag, out, 32), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_fail(&w.alice.ag, &one, 1), &w.alice.ag);
	/* Alice, ACCEPTED. */
	step_accept_body(&w);
	STATE_REJECTED(veil_agree_accept(&w.alice.ag, &w.alice.inbox, out, &outlen, &pair), &w.alice.ag);
	STATE_REJECTED(veil_agree_reject(&w.alice.ag), &w.alice.ag);
	STATE_REJECTED(veil_agree_on_accept(&w.alice.ag, w.body, w.len, &pair, out, &outlen, &type), &w.alice.ag);
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
	STATE_REJECTED(veil_agree_on_accept(&w.bob.ag, out, 81, &pair, out, &outlen, &type), &w.bob.ag);
	world_wipe(&w);
}

static void
test_agree_wrong_cid(void **state)
{
	struct world w;
	struct veil_id other;
	struct veil_agree a;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, w.bob.name, &w.bob.inbox, w.body, &w.len), VEIL_OK);
	assert_int_equal(veil_id_new(&other, 0), VEIL_OK);
	memset(&a, 0, sizeof(a));
	assert_int_equal(veil_agree_on_request(&a, &other, w.alice.id.pk,
	    w.body, w.len), VEIL_ERR_STATE);
	assert_true(sodium_is_zero((const uint8_t *)&a, sizeof(a)));
	/* Same bytes, shorter length: still not her CID. */
	other = w.alice.card.cid;
	other.len = 15;
	assert_int_equal(veil_agree_on_request(&a, &other, w.alice.id.pk,
	    w.body, w.len), VEIL_ERR_STATE);
	assert_int_equal(veil_agree_on_request(&a, &w.alice.card.cid,
	    w.alice.id.pk, w.body, w.len), VEIL_OK);
	veil_agree_wipe(&a);
	world_wipe(&w);
}

static int
on_request(struct world *w, struct veil_agree *a, const uint8_t *body, size_t len)
{
	memset(a, 0, sizeof(*a));
	return veil_agree_on_request(a, &w->alice.card.cid, w->alice.id.pk, body, len);
}

static void
test_agree_request_garbage(void **state)
{
	struct world w;
	struct veil_agree a;
	struct tu_prng prng;
	uint8_t buf[2 * VEIL_AGREE_BODY_MAX];
	size_t len, name_off;
	unsigned long it, n;
	int r;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, w.bob.name, &w.bob.inbox, w.body, &w.len), VEIL_OK);
	assert_int_equal(on_request(&w, &a, w.body, w.len), VEIL_OK);
	name_off = 128 + 1 + 16 + 1 + 16;

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
	/* ID lengths out of 10..32. */
	memcpy(buf, w.body, w.len);
	buf[128] = 9;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	buf[128] = 33;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	memcpy(buf, w.body, w.len);
	buf[128 + 17] = 0;
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_FORMAT);
	/* Bad names: empty, too long, control character, NUL, bad UTF-8. */
	memcpy(buf, w.body, w.len);
	buf[name_off] = 0;
	assert_int_equal(on_request(&w, &a, buf, name_off + 1), VEIL_ERR_INVAL);
	buf[name_off] = 65;
	memset(buf + name_off + 1, 'x', 65);
	assert_int_equal(on_request(&w, &a, buf, name_off + 66), VEIL_ERR_INVAL);
	buf[name_off] = 64;
	assert_int_equal(on_request(&w, &a, buf, name_off + 65), VEIL_OK);
	memcpy(buf, w.body, w.len);
	buf[name_off + 2] = '\n';
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_INVAL);
	buf[name_off + 2] = '\0';
	assert_int_equal(on_request(&w, &a, buf, w.len), VEIL_ERR_INVAL);
	buf[name_off + 2] = 0xc0;
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
			assert_true(len >= 145);
			assert_memory_equal(buf + 129, w.alice.card.cid.b, 16);
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
		r = veil_agree_on_accept(&w.bob.ag, w.body, len, &pair, out, &outlen, &type);
		assert_true(r == VEIL_ERR_TRUNCATED || r == VEIL_ERR_FORMAT);
		assert_memory_equal(&saved, &w.bob.ag, sizeof(saved));
		assert_int_equal(outlen, 0);
	}
	memcpy(buf, w.body, w.len);
	buf[w.len] = 0;
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, buf, w.len + 1, &pair,
	    out, &outlen, &type), VEIL_ERR_FORMAT);
	buf[64] = 9;
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, buf, w.len, &pair,
	    out, &outlen, &type), VEIL_ERR_FORMAT);
	assert_memory_equal(&saved, &w.bob.ag, sizeof(saved));
	/* The genuine one still works afterwards. */
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, w.body, w.len, &pair,
	    out, &outlen, &type), VEIL_OK);
	veil_pair_wipe(&pair);
	world_wipe(&w);
}

/* A low-order ephemeral key from the peer gives an all-zero DH: refused. */
static void
test_agree_zero_dh(void **state)
{
	struct world w;
	struct veil_agree saved;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, w.bob.name, &w.bob.inbox, w.body, &w.len), VEIL_OK);
	memset(w.body + 96, 0, 32);	/* E_B = 0 */
	assert_int_equal(on_request(&w, &w.alice.ag, w.body, w.len), VEIL_OK);
	saved = w.alice.ag;
	assert_int_equal(veil_agree_accept(&w.alice.ag, &w.alice.inbox, w.body,
	    &w.len, &w.alice.pair), VEIL_ERR_CRYPTO);
	assert_memory_equal(&saved, &w.alice.ag, sizeof(saved));
	assert_true(sodium_is_zero((const uint8_t *)&w.alice.pair, sizeof(w.alice.pair)));
	world_wipe(&w);
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
	assert_int_equal(w.alice.ag.peer_inbox.len, 0);
	assert_int_equal(w.alice.ag.peer_name[0], '\0');
	STATE_REJECTED(veil_agree_accept(&w.alice.ag, &w.alice.inbox, out, &outlen, &pair), &w.alice.ag);
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
	assert_int_equal(buf[0], 1);
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
	buf[0] = 2;
	assert_int_equal(veil_agree_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
	buf[0] = 1;
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

	/* Both sides restored from storage finish the agreement. */
	n = veil_agree_pack(&w.alice.ag, buf, sizeof(buf));
	veil_agree_wipe(&w.alice.ag);
	assert_int_equal(veil_agree_unpack(&w.alice.ag, buf, (size_t)n), VEIL_OK);
	n = veil_agree_pack(&w.bob.ag, buf, sizeof(buf));
	veil_agree_wipe(&w.bob.ag);
	assert_int_equal(veil_agree_unpack(&w.bob.ag, buf, (size_t)n), VEIL_OK);
	{
		uint8_t got[FS], out[VEIL_AGREE_BODY_MAX], type;
		size_t len, outlen;

		step_accept_body(&w);
		len = step_accept_deliver(&w, got);
		assert_int_equal(veil_agree_on_accept(&w.bob.ag, got, len,
		    &w.bob.pair, out, &outlen, &type), VEIL_OK);
		assert_int_equal(veil_agree_on_confirm(&w.alice.ag, out, outlen), VEIL_OK);
		assert_dirkey_equal(&w.alice.pair.tx.k, &w.bob.pair.rx.k);
	}
	world_wipe(&w);
}

/* Offsets in a packed pair: version, role, three keys, then tx and tx_next. */
#define PAIR_TXDIR (VEIL_KEY_BYTES + 8 + 1)
#define PAIR_TX_NEXT (2 + 3 * VEIL_KEY_BYTES + PAIR_TXDIR)

static void
assert_pair_equal(const struct veil_pair *a, const struct veil_pair *b)
{
	assert_int_equal(a->role, b->role);
	assert_memory_equal(a->secret, b->secret, VEIL_KEY_BYTES);
	assert_memory_equal(a->secret_hash, b->secret_hash, VEIL_KEY_BYTES);
	assert_memory_equal(a->peer_pk, b->peer_pk, VEIL_KEY_BYTES);
	assert_dirkey_equal(&a->tx.k, &b->tx.k);
	assert_int_equal(a->tx.seq, b->tx.seq);
	assert_int_equal(a->tx.live, b->tx.live);
	assert_dirkey_equal(&a->tx_next.k, &b->tx_next.k);
	assert_int_equal(a->tx_next.seq, b->tx_next.seq);
	assert_int_equal(a->tx_next.live, b->tx_next.live);
	assert_dirkey_equal(&a->rx.k, &b->rx.k);
	assert_memory_equal(&a->rx.w, &b->rx.w, sizeof(a->rx.w));
	assert_int_equal(a->rx.live, b->rx.live);
	assert_dirkey_equal(&a->rx_prev.k, &b->rx_prev.k);
	assert_memory_equal(&a->rx_prev.w, &b->rx_prev.w, sizeof(a->rx_prev.w));
	assert_int_equal(a->rx_prev.live, b->rx_prev.live);
	assert_int_equal(a->upd_sent_seq, b->upd_sent_seq);
	assert_int_equal(a->upd_pending, b->upd_pending);
	assert_int_equal(a->upd_rekey_secret, b->upd_rekey_secret);
	assert_memory_equal(a->upd_eph_sk, b->upd_eph_sk, VEIL_KEY_BYTES);
	assert_memory_equal(a->upd_eph_pk, b->upd_eph_pk, VEIL_KEY_BYTES);
	assert_memory_equal(a->upd_new_secret, b->upd_new_secret, VEIL_KEY_BYTES);
	assert_int_equal(a->upd_recv_seq, b->upd_recv_seq);
	assert_memory_equal(a->upd_recv_eph, b->upd_recv_eph, VEIL_KEY_BYTES);
	assert_memory_equal(a->upd_ack_eph, b->upd_ack_eph, VEIL_KEY_BYTES);
}

static void
test_pair_pack(void **state)
{
	struct world w;
	struct veil_pair p, back;
	uint8_t buf[VEIL_PAIR_PACKED_MAX], buf2[VEIL_PAIR_PACKED_MAX];
	uint8_t root[VEIL_KEY_BYTES], next_root[VEIL_KEY_BYTES];
	int n;
	size_t i;

	(void)state;
	world_init(&w);
	agree_full(&w);
	p = w.alice.pair;
	/* Fill every field, so a swapped or missing one shows. */
	p.tx.seq = 0x0102030405060708ULL;
	randombytes_buf(next_root, sizeof(next_root));
	veil_dirkey_from_root(&p.tx_next.k, next_root);
	p.tx_next.seq = 77;
	p.tx_next.live = 1;
	randombytes_buf(root, sizeof(root));
	veil_dirkey_from_root(&p.rx_prev.k, root);
	p.rx_prev.live = 1;
	p.rx_prev.w.top = 300;
	p.rx_prev.w.map[0] = 0xdeadbeefULL;
	p.rx_prev.w.map[1] = 0x1ULL << 63;
	p.rx.w.top = 5;
	p.rx.w.map[0] = 0x1f;
	p.upd_sent_seq = 3;
	p.upd_pending = 1;
	p.upd_rekey_secret = 1;
	randombytes_buf(p.upd_eph_sk, VEIL_KEY_BYTES);
	randombytes_buf(p.upd_eph_pk, VEIL_KEY_BYTES);
	randombytes_buf(p.upd_new_secret, VEIL_KEY_BYTES);
	p.upd_recv_seq = 9;
	randombytes_buf(p.upd_recv_eph, VEIL_KEY_BYTES);
	randombytes_buf(p.upd_ack_eph, VEIL_KEY_BYTES);

	n = veil_pair_pack(&p, buf, sizeof(buf));
	assert_true(n > 0 && n <= VEIL_PAIR_PACKED_MAX);
	assert_int_equal(buf[0], 2);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_pair_equal(&p, &back);
	assert_int_equal(veil_pair_pack(&back, buf2, sizeof(buf2)), n);
	assert_memory_equal(buf, buf2, (size_t)n);
	/* Big-endian: the tx seq follows version, role and three keys and a root. */
	assert_int_equal(buf[2 + 96 + 32], 0x01);
	assert_int_equal(buf[2 + 96 + 32 + 7], 0x08);
	/* tx_next is the second transmit slot: root, then seq 77. */
	assert_memory_equal(buf + PAIR_TX_NEXT, next_root, VEIL_KEY_BYTES);
	assert_int_equal(buf[PAIR_TX_NEXT + 32 + 7], 77);

	/*
	 * The end of a grace period forgets rx_prev only: tx_next holds the
	 * key we are about to seal under and must survive it.
	 */
	veil_pair_drop_prev(&p);
	assert_true(sodium_is_zero((const uint8_t *)&p.rx_prev, sizeof(p.rx_prev)));
	assert_true(p.tx_next.live);
	assert_int_equal(p.tx_next.seq, 77);
	assert_memory_equal(p.tx_next.k.root, next_root, VEIL_KEY_BYTES);
	/* An empty slot stays empty (no keys derived from a zero root). */
	sodium_memzero(&p.tx_next, sizeof(p.tx_next));
	assert_int_equal(veil_pair_pack(&p, buf, sizeof(buf)), n);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_pair_equal(&p, &back);

	assert_int_equal(veil_pair_pack(&p, buf, (size_t)n - 1), VEIL_ERR_TOOBIG);
	assert_int_equal(veil_pair_pack(&p, buf, sizeof(buf)), n);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n - 1), VEIL_ERR_TRUNCATED);
	assert_true(sodium_is_zero((const uint8_t *)&back, sizeof(back)));
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n + 1), VEIL_ERR_FORMAT);
	assert_int_equal(veil_pair_unpack(&back, buf, 0), VEIL_ERR_TRUNCATED);
	buf[0] = 0;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
	buf[0] = 3;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
	assert_true(sodium_is_zero((const uint8_t *)&back, sizeof(back)));
	buf[0] = 0xff;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
	buf[0] = 2;
	buf[1] = 0;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
	buf[1] = VEIL_ROLE_RESPONDER;
	buf[2 + 96 + 32 + 8] = 2;	/* tx.live */
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
	buf[2 + 96 + 32 + 8] = 1;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);

	/* Every single-byte truncation is refused. */
	for (i = 0; i < (size_t)n; i++)
		assert_true(veil_pair_unpack(&back, buf, i) < 0);
	veil_pair_wipe(&p);
	assert_true(sodium_is_zero((const uint8_t *)&p, sizeof(p)));
	veil_pair_wipe(&back);
	world_wipe(&w);
}

/*
 * A version 1 pair (stored before UPDATE-DONE existed) still loads.  Its
 * second transmit slot held the previous key, already replaced: it must not
 * come back as tx_next, or the next UPDATE-DONE would switch to it.
 */
static void
test_pair_unpack_v1(void **state)
{
	struct world w;
	struct veil_pair p, want, back, again;
	uint8_t buf[VEIL_PAIR_PACKED_MAX], buf2[VEIL_PAIR_PACKED_MAX];
	uint8_t root[VEIL_KEY_BYTES];
	int n;

	(void)state;
	world_init(&w);
	agree_full(&w);
	p = w.alice.pair;
	randombytes_buf(root, sizeof(root));
	veil_dirkey_from_root(&p.tx_next.k, root);
	p.tx_next.seq = 12;
	p.tx_next.live = 1;
	randombytes_buf(root, sizeof(root));
	veil_dirkey_from_root(&p.rx_prev.k, root);
	p.rx_prev.live = 1;
	p.upd_sent_seq = 4;
	p.upd_recv_seq = 5;

	/* Same layout: a v1 blob differs from a v2 one in byte 0 only. */
	n = veil_pair_pack(&p, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(buf[0], 2);
	buf[0] = 1;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_true(sodium_is_zero((const uint8_t *)&back.tx_next, sizeof(back.tx_next)));
	/* Everything else, tx (the key v1 already sealed under) first, as stored. */
	want = p;
	sodium_memzero(&want.tx_next, sizeof(want.tx_next));
	assert_pair_equal(&want, &back);
	assert_true(back.tx.live);
	assert_true(back.rx_prev.live);

	/* It is written back as version 2, with the slot empty. */
	assert_int_equal(veil_pair_pack(&back, buf2, sizeof(buf2)), n);
	assert_int_equal(buf2[0], 2);
	assert_true(sodium_is_zero(buf2 + PAIR_TX_NEXT, PAIR_TXDIR));
	assert_int_equal(veil_pair_unpack(&again, buf2, (size_t)n), VEIL_OK);
	assert_pair_equal(&want, &again);

	/* A v1 blob is still checked as v1 was: a bad flag in the old slot. */
	buf[PAIR_TX_NEXT + PAIR_TXDIR - 1] = 2;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_FORMAT);
	buf[PAIR_TX_NEXT + PAIR_TXDIR - 1] = 1;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	/* Versions after 2 are unknown. */
	buf[0] = 3;
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_ERR_VERSION);
	assert_true(sodium_is_zero((const uint8_t *)&back, sizeof(back)));

	veil_pair_wipe(&p);
	veil_pair_wipe(&want);
	veil_pair_wipe(&back);
	veil_pair_wipe(&again);
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
	assert_int_equal(veil_agree_accept(&a2, &w.alice.inbox, body2, &len2, &p2), VEIL_OK);
	assert_memory_equal(a2.secret, w.alice.ag.secret, VEIL_KEY_BYTES);
	assert_memory_equal(a2.pairkey, w.alice.ag.pairkey, VEIL_KEY_BYTES);
	assert_memory_not_equal(a2.eph_pk, w.alice.ag.eph_pk, VEIL_KEY_BYTES);
	assert_memory_not_equal(p2.tx.k.root, w.alice.pair.tx.k.root, VEIL_KEY_BYTES);
	assert_memory_not_equal(p2.rx.k.root, w.alice.pair.rx.k.root, VEIL_KEY_BYTES);
	/* Same secret hash: only the keys depend on the ephemerals. */
	assert_memory_equal(p2.secret_hash, w.alice.pair.secret_hash, VEIL_KEY_BYTES);

	/* And the other side agrees with whichever ACCEPT it gets. */
	{
		uint8_t out[VEIL_AGREE_BODY_MAX], type;
		size_t outlen;

		assert_int_equal(veil_agree_on_accept(&w.bob.ag, body2, len2,
		    &w.bob.pair, out, &outlen, &type), VEIL_OK);
		assert_dirkey_equal(&w.bob.pair.rx.k, &p2.tx.k);
		assert_int_equal(veil_agree_on_confirm(&a2, out, outlen), VEIL_OK);
		assert_int_equal(veil_agree_on_confirm(&w.alice.ag, out, outlen), VEIL_ERR_SECRET);
	}
	veil_agree_wipe(&a2);
	veil_pair_wipe(&p2);
	world_wipe(&w);
}

static void
test_agree_bad_args(void **state)
{
	struct world w;
	struct veil_id unset;

	(void)state;
	world_init(&w);
	memset(&unset, 0, sizeof(unset));
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, "", &w.bob.inbox, w.body, &w.len), VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, "B\x01", &w.bob.inbox, w.body, &w.len), VEIL_ERR_INVAL);
	assert_int_equal(veil_agree_request(&w.bob.ag, &w.alice.card,
	    w.bob.id.pk, "Bob", &unset, w.body, &w.len), VEIL_ERR_INVAL);
	assert_int_equal(w.bob.ag.state, VEIL_AG_NONE);
	assert_int_equal(veil_agree_request(NULL, &w.alice.card,
	    w.bob.id.pk, "Bob", &w.bob.inbox, w.body, &w.len), VEIL_ERR_INVAL);
	step_request(&w);
	assert_int_equal(veil_agree_accept(&w.alice.ag, &unset, w.body, &w.len,
	    &w.alice.pair), VEIL_ERR_INVAL);
	assert_int_equal(w.alice.ag.state, VEIL_AG_PENDING);
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
 * protocol.md §4 recomputed here from the bytes on the wire and the
 * parties' ephemeral secrets (saved before the library wipes them).
 */
static void
test_agree_spec(void **state)
{
	struct world w;
	uint8_t req[VEIL_AGREE_BODY_MAX], acc[VEIL_AGREE_BODY_MAX];
	uint8_t out[VEIL_AGREE_BODY_MAX], type, e_b[32];
	uint8_t t1[32], t2[32], hs[32], conf[32], dh[32], rk[32], d[32];
	struct veil_dirkey r2i, i2r;
	size_t reqlen, acclen, outlen;

	(void)state;
	world_init(&w);
	step_request(&w);
	memcpy(req, w.body, w.len);
	reqlen = w.len;
	memcpy(e_b, w.bob.ag.eph_sk, 32);
	/* REQUEST layout. */
	assert_memory_equal(req, w.bob.ag.secret, 32);
	assert_memory_equal(req + 32, w.bob.ag.pairkey, 32);
	assert_memory_equal(req + 64, w.bob.id.pk, 32);
	assert_memory_equal(req + 96, w.bob.ag.eph_pk, 32);
	assert_int_equal(req[128], 16);
	assert_memory_equal(req + 129, w.alice.card.cid.b, 16);
	assert_int_equal(req[145], 16);
	assert_memory_equal(req + 146, w.bob.inbox.b, 16);
	assert_int_equal(req[162], 3);
	assert_memory_equal(req + 163, "Bob", 3);
	h_multi(t1, NULL, "veil-agree-v1", 13, w.alice.id.pk, 32, req, reqlen);
	assert_memory_equal(w.bob.ag.t1, t1, 32);

	/* Epoch-0 keys from K. */
	crypto_kdf_derive_from_key(d, 32, 1, "veilag01", req + 32);
	veil_agree_epoch0(&w.alice.ag, &r2i, &i2r);
	assert_memory_equal(r2i.root, d, 32);
	crypto_kdf_derive_from_key(d, 32, 2, "veilag01", req + 32);
	assert_memory_equal(i2r.root, d, 32);

	/* ACCEPT layout, T2, HS. */
	step_accept_body(&w);
	memcpy(acc, w.body, w.len);
	acclen = w.len;
	assert_int_equal(acclen, 81);
	assert_memory_equal(acc, w.alice.ag.eph_pk, 32);
	assert_int_equal(acc[64], 16);
	assert_memory_equal(acc + 65, w.alice.inbox.b, 16);
	h_multi(t2, NULL, t1, 32, acc, 32, acc + 64, 17);
	h_multi(hs, req, "veil-hs-v1", 10, t2, 32, "", 0);
	assert_memory_equal(acc + 32, hs, 32);

	/* RK with DH(e_B, E_A), pair roots, CONFIRM. */
	assert_int_equal(veil_agree_on_accept(&w.bob.ag, acc, acclen, &w.bob.pair,
	    out, &outlen, &type), VEIL_OK);
	assert_int_equal(crypto_scalarmult(dh, e_b, acc), 0);
	h_multi(rk, req + 32, "veil-root-v1", 12, dh, 32, t2, 32);
	crypto_kdf_derive_from_key(d, 32, 1, "veilpair", rk);
	assert_memory_equal(w.bob.pair.tx.k.root, d, 32);
	assert_memory_equal(w.alice.pair.rx.k.root, d, 32);
	crypto_kdf_derive_from_key(d, 32, 2, "veilpair", rk);
	assert_memory_equal(w.bob.pair.rx.k.root, d, 32);
	h_multi(conf, req, "veil-confirm-v1", 15, t2, 32, "", 0);
	assert_int_equal(outlen, 32);
	assert_memory_equal(out, conf, 32);
	sodium_memzero(e_b, sizeof(e_b));
	world_wipe(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agree_full),
		cmocka_unit_test(test_agree_spec),
		cmocka_unit_test(test_agree_request_key),
		cmocka_unit_test(test_agree_hs_mismatch),
		cmocka_unit_test(test_agree_bad_confirm),
		cmocka_unit_test(test_agree_wrong_state),
		cmocka_unit_test(test_agree_wrong_cid),
		cmocka_unit_test(test_agree_request_garbage),
		cmocka_unit_test(test_agree_accept_garbage),
		cmocka_unit_test(test_agree_zero_dh),
		cmocka_unit_test(test_agree_reject),
		cmocka_unit_test(test_agree_pack),
		cmocka_unit_test(test_agree_ephemeral_matters),
		cmocka_unit_test(test_agree_bad_args),
		cmocka_unit_test(test_pair_pack),
		cmocka_unit_test(test_pair_unpack_v1),
		cmocka_unit_test(test_pair_secret),
		cmocka_unit_test(test_fingerprint),
	};

	tu_deterministic_rng("test_agree");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("agree", tests, NULL, NULL);
}
