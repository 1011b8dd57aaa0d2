/* Tests for libproto update: CCM parsing, UPDATE/UPDATE-ACK/UPDATE-DONE, re-keying, retransmission and ordering. */
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

/* Two established contacts: a->tx is b->rx and the other way round. */
struct world {
	struct veil_identity ida, idb;
	struct veil_pair a, b;
	struct veil_id a_inbox, a_new, b_inbox, b_new;
};

static void
world_init(struct world *w)
{
	uint8_t s[VEIL_KEY_BYTES], r1[VEIL_KEY_BYTES], r2[VEIL_KEY_BYTES];

	memset(w, 0, sizeof(*w));
	assert_int_equal(veil_identity_new(&w->ida), VEIL_OK);
	assert_int_equal(veil_identity_new(&w->idb), VEIL_OK);
	randombytes_buf(s, sizeof(s));
	randombytes_buf(r1, sizeof(r1));
	randombytes_buf(r2, sizeof(r2));
	w->a.role = VEIL_ROLE_RESPONDER;
	w->b.role = VEIL_ROLE_INITIATOR;
	veil_pair_set_secret(&w->a, s);
	veil_pair_set_secret(&w->b, s);
	memcpy(w->a.peer_pk, w->idb.pk, VEIL_KEY_BYTES);
	memcpy(w->b.peer_pk, w->ida.pk, VEIL_KEY_BYTES);
	veil_dirkey_from_root(&w->a.tx.k, r1);
	veil_dirkey_from_root(&w->b.rx.k, r1);
	veil_dirkey_from_root(&w->b.tx.k, r2);
	veil_dirkey_from_root(&w->a.rx.k, r2);
	w->a.tx.live = w->a.rx.live = w->b.tx.live = w->b.rx.live = 1;
	assert_int_equal(veil_id_new(&w->a_inbox, 0), VEIL_OK);
	assert_int_equal(veil_id_new(&w->a_new, 0), VEIL_OK);
	assert_int_equal(veil_id_new(&w->b_inbox, 0), VEIL_OK);
	assert_int_equal(veil_id_new(&w->b_new, 0), VEIL_OK);
}

static void
world_wipe(struct world *w)
{
	veil_pair_wipe(&w->a);
	veil_pair_wipe(&w->b);
	veil_identity_wipe(&w->ida);
	veil_identity_wipe(&w->idb);
}

static void
assert_dirkey_equal(const struct veil_dirkey *x, const struct veil_dirkey *y)
{
	assert_memory_equal(x->root, y->root, VEIL_KEY_BYTES);
	assert_memory_equal(x->key, y->key, VEIL_KEY_BYTES);
	assert_memory_equal(x->nkey, y->nkey, VEIL_KEY_BYTES);
}

/* A frame under k at *seq must open under r at the same seq, with the same body. */
static void
frame_roundtrip(const struct veil_dirkey *k, uint64_t *seq, const struct veil_dirkey *r,
    uint8_t type, const char *body, size_t len)
{
	uint8_t frame[FS], got[FS], msgid[VEIL_MSGID_BYTES];
	struct veil_frame_hdr h;
	uint64_t s = *seq;

	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(frame, sizeof(frame), FS, k, seq, type,
	    msgid, (const uint8_t *)body, len), 1);
	assert_int_equal(veil_frame_open(frame, FS, r, s, &h, got), VEIL_OK);
	assert_int_equal(h.type, type);
	assert_int_equal(h.len, len);
	assert_memory_equal(got, body, len);
}

static void
frame_fails(const struct veil_dirkey *k, uint64_t seq, const struct veil_dirkey *r)
{
	uint8_t frame[FS], got[FS], msgid[VEIL_MSGID_BYTES];
	struct veil_frame_hdr h;
	uint64_t s = seq;

	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(frame, sizeof(frame), FS, k, &s,
	    VEIL_T_TEXT, msgid, (const uint8_t *)"x", 1), 1);
	assert_int_equal(veil_frame_open(frame, FS, r, seq, &h, got), VEIL_ERR_DECRYPT);
}

/* Alice announces a_new in place of a_inbox; Bob knows a_inbox. */
static void
build_a(struct world *w, const struct veil_id *old, const struct veil_id *new,
    int rekey, char **body, size_t *len)
{
	assert_int_equal(veil_update_build(&w->a, w->ida.pk, "Alice", old, new,
	    rekey, body, len), VEIL_OK);
	assert_non_null(*body);
	assert_int_equal(strlen(*body), *len);
	assert_true(*len <= VEIL_UPDATE_BODY_MAX);
	assert_true(w->a.upd_pending);
}

static int
root_equal(const struct veil_dirkey *x, const struct veil_dirkey *y)
{
	return sodium_memcmp(x->root, y->root, VEIL_KEY_BYTES) == 0;
}

/*
 * Steps 1 and 2 of a rotation of Alice's inbox, over frames: her UPDATE
 * and Bob's ACK.  Bob's re-keyed transmit key waits in tx_next; Alice
 * reads it already with rx, and Bob's current tx with rx_prev.
 */
static void
rotate_a_ack(struct world *w, const struct veil_id *old, const struct veil_id *new,
    int rekey)
{
	struct veil_txdir b_tx_old;
	struct veil_dirkey a_rx_old;
	struct veil_ccm ccm;
	char *body, *ack;
	size_t len, acklen;
	uint64_t seq_before = w->a.upd_sent_seq;

	b_tx_old = w->b.tx;
	a_rx_old = w->a.rx.k;
	build_a(w, old, new, rekey, &body, &len);
	assert_int_equal(w->a.upd_sent_seq, seq_before + 1);
	frame_roundtrip(&w->a.tx.k, &w->a.tx.seq, &w->b.rx.k, VEIL_T_UPDATE, body, len);

	assert_int_equal(veil_update_on_update(&w->b, old, body, len, &ccm, &ack,
	    &acklen), 0);
	assert_true(veil_id_equal(&ccm.ocid, old));
	assert_true(veil_id_equal(&ccm.new_cid, new));
	assert_string_equal(ccm.cname, "Alice");
	assert_memory_equal(ccm.pubkey, w->ida.pk, VEIL_KEY_BYTES);
	assert_int_equal(ccm.seq, seq_before + 1);
	assert_int_equal(ccm.has_new_secret, rekey ? 1 : 0);
	assert_string_equal(ccm.alg, VEIL_UPDATE_ALG);
	assert_string_equal(ccm.steg_key, "0000");
	/* Bob: tx untouched (Alice cannot read the new key yet), the new one waits. */
	assert_dirkey_equal(&w->b.tx.k, &b_tx_old.k);
	assert_int_equal(w->b.tx.seq, b_tx_old.seq);
	assert_true(w->b.tx.live && w->b.tx_next.live);
	assert_memory_not_equal(w->b.tx_next.k.root, b_tx_old.k.root, VEIL_KEY_BYTES);
	assert_int_equal(w->b.tx_next.seq, 0);
	assert_int_equal(w->b.upd_recv_seq, seq_before + 1);

	/* The ACK travels under Bob's tx, which Alice still reads with rx. */
	frame_roundtrip(&w->b.tx.k, &w->b.tx.seq, &w->a.rx.k,
	    VEIL_T_UPDATE_ACK, ack, acklen);
	assert_int_equal(veil_update_on_ack(&w->a, ack, acklen), VEIL_OK);
	assert_false(w->a.upd_pending);
	assert_true(sodium_is_zero(w->a.upd_eph_sk, VEIL_KEY_BYTES));
	assert_dirkey_equal(&w->a.rx.k, &w->b.tx_next.k);
	assert_dirkey_equal(&w->a.rx_prev.k, &a_rx_old);
	assert_dirkey_equal(&w->a.rx_prev.k, &w->b.tx.k);
	assert_int_equal(w->a.rx.w.top, 0);
	assert_true(w->a.rx.live && w->a.rx_prev.live);
	free(body);
	free(ack);
}

/* Step 3: Alice's UPDATE-DONE; Bob switches to the key Alice reads with rx. */
static void
done_a(struct world *w)
{
	struct veil_dirkey next, old;
	char *done, want[64];
	size_t len;

	next = w->b.tx_next.k;
	old = w->b.tx.k;
	assert_int_equal(veil_update_done_build(&w->a, &done, &len), VEIL_OK);
	snprintf(want, sizeof(want), "{\"Data\":\"UpdateDone\",\"Seq\":%llu}",
	    (unsigned long long)w->a.upd_sent_seq);
	assert_string_equal(done, want);
	assert_int_equal(strlen(done), len);
	/* Alice's own transmit key is not part of her rotation. */
	frame_roundtrip(&w->a.tx.k, &w->a.tx.seq, &w->b.rx.k, VEIL_T_UPDATE_DONE,
	    done, len);
	assert_int_equal(veil_update_on_done(&w->b, done, len), VEIL_OK);
	assert_dirkey_equal(&w->b.tx.k, &next);
	assert_dirkey_equal(&w->b.tx.k, &w->a.rx.k);
	assert_int_equal(w->b.tx.seq, 0);
	assert_true(w->b.tx.live);
	/* The slot is emptied and the replaced key is gone from Bob. */
	assert_true(sodium_is_zero((const uint8_t *)&w->b.tx_next, sizeof(w->b.tx_next)));
	assert_memory_not_equal(w->b.tx.k.root, old.root, VEIL_KEY_BYTES);
	free(done);
}

/* One complete rotation of Alice's inbox (Bob's tx re-keyed), over frames. */
static void
rotate_a(struct world *w, const struct veil_id *old, const struct veil_id *new, int rekey)
{
	rotate_a_ack(w, old, new, rekey);
	done_a(w);
}

static void
test_update_full(void **state)
{
	struct world w;
	uint8_t a_tx_root[VEIL_KEY_BYTES], sh[VEIL_KEY_BYTES];

	(void)state;
	world_init(&w);
	memcpy(a_tx_root, w.a.tx.k.root, VEIL_KEY_BYTES);
	memcpy(sh, w.a.secret_hash, VEIL_KEY_BYTES);
	rotate_a(&w, &w.a_inbox, &w.a_new, 0);
	/* Bob -> Alice works under the new key, not under the old one. */
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_TEXT, "hi", 2);
	frame_fails(&w.b.tx.k, 1, &w.a.rx_prev.k);
	/* Alice -> Bob is untouched by Alice's rotation. */
	assert_memory_equal(w.a.tx.k.root, a_tx_root, VEIL_KEY_BYTES);
	frame_roundtrip(&w.a.tx.k, &w.a.tx.seq, &w.b.rx.k, VEIL_T_TEXT, "yo", 2);
	/* No NewSecret: SH unchanged. */
	assert_memory_equal(w.a.secret_hash, sh, VEIL_KEY_BYTES);
	assert_memory_equal(w.b.secret_hash, sh, VEIL_KEY_BYTES);
	/* End of the grace period: only a receive key was kept. */
	veil_pair_drop_prev(&w.a);
	assert_true(sodium_is_zero((const uint8_t *)&w.a.rx_prev, sizeof(w.a.rx_prev)));
	assert_true(w.a.rx.live);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_TEXT, "still", 5);
	world_wipe(&w);
}

static void
test_update_twice(void **state)
{
	struct world w;
	struct veil_id a3;
	uint8_t first[VEIL_KEY_BYTES];

	(void)state;
	world_init(&w);
	assert_int_equal(veil_id_new(&a3, 0), VEIL_OK);
	rotate_a(&w, &w.a_inbox, &w.a_new, 0);
	memcpy(first, w.b.tx.k.root, VEIL_KEY_BYTES);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_TEXT, "one", 3);
	rotate_a(&w, &w.a_new, &a3, 0);
	assert_int_equal(w.a.upd_sent_seq, 2);
	assert_int_equal(w.b.upd_recv_seq, 2);
	/* The second key is derived from the first, which Alice now keeps
	 * as the previous one. */
	assert_memory_not_equal(w.b.tx.k.root, first, VEIL_KEY_BYTES);
	assert_memory_equal(w.a.rx_prev.k.root, first, VEIL_KEY_BYTES);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_TEXT, "two", 3);
	frame_fails(&w.b.tx.k, w.b.tx.seq, &w.a.rx_prev.k);
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
	build_a(&w, &w.a_inbox, &w.a_new, 0, &body, &len);
	/* The rekey_secret flag cannot change a pending update. */
	build_a(&w, &w.a_inbox, &w.a_new, 1, &body2, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(body, body2, len);
	assert_int_equal(w.a.upd_sent_seq, 1);
	assert_false(w.a.upd_rekey_secret);
	free(body2);

	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), 0);
	b_after = w.b;
	/* Bob already moved Alice to a_new; the retransmission still names
	 * a_inbox and must not be refused for that. */
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, body, len, &ccm,
	    &ack2, &acklen2), 1);
	assert_int_equal(acklen, acklen2);
	assert_memory_equal(ack, ack2, acklen);
	assert_true(veil_id_equal(&ccm.new_cid, &w.a_new));
	/* Nothing moved: no second re-keying, no switch. */
	assert_dirkey_equal(&w.b.tx.k, &b_after.tx.k);
	assert_int_equal(w.b.tx.seq, b_after.tx.seq);
	assert_dirkey_equal(&w.b.tx_next.k, &b_after.tx_next.k);
	assert_true(w.b.tx_next.live);
	assert_memory_equal(w.b.upd_ack_eph, b_after.upd_ack_eph, VEIL_KEY_BYTES);
	assert_int_equal(w.b.upd_recv_seq, 1);

	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_UPDATE_ACK,
	    ack2, acklen2);
	assert_int_equal(veil_update_on_ack(&w.a, ack2, acklen2), VEIL_OK);
	assert_dirkey_equal(&w.a.rx.k, &w.b.tx_next.k);
	/* The first copy of the ACK arriving late: nothing pending. */
	assert_int_equal(veil_update_on_ack(&w.a, ack, acklen), VEIL_ERR_STATE);
	assert_dirkey_equal(&w.a.rx.k, &w.b.tx_next.k);
	free(ack2);

	/*
	 * A copy of the UPDATE delayed past the DONE: Bob answers the same
	 * ACK again, now under the new key (which Alice reads), and stays on it.
	 */
	done_a(&w);
	b_after = w.b;
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, body, len, &ccm,
	    &ack2, &acklen2), 1);
	assert_int_equal(acklen, acklen2);
	assert_memory_equal(ack, ack2, acklen);
	assert_dirkey_equal(&w.b.tx.k, &b_after.tx.k);
	assert_false(w.b.tx_next.live);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_UPDATE_ACK,
	    ack2, acklen2);
	assert_int_equal(veil_update_on_ack(&w.a, ack2, acklen2), VEIL_ERR_STATE);
	assert_dirkey_equal(&w.a.rx.k, &w.b.tx.k);
	free(body);
	free(ack);
	free(ack2);
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
	build_a(&w, &w.a_inbox, &w.a_new, 0, &body, &len);
	before = w.b;
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), VEIL_ERR_SECRET);
	assert_null(ack);
	assert_int_equal(acklen, 0);
	assert_memory_equal(w.b.tx.k.root, before.tx.k.root, VEIL_KEY_BYTES);
	assert_false(w.b.tx_next.live);
	assert_int_equal(w.b.upd_recv_seq, 0);
	/* The check comes before OCID. */
	assert_int_equal(veil_update_on_update(&w.b, &w.b_inbox, body, len, &ccm,
	    &ack, &acklen), VEIL_ERR_SECRET);
	free(body);
	world_wipe(&w);
}

static void
test_update_order(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_pair a_copy;
	struct veil_id a3;
	char *u1, *u1b, *u2, *ack;
	size_t l1, l1b, l2, acklen;
	uint8_t root[VEIL_KEY_BYTES], tx_root[VEIL_KEY_BYTES];

	(void)state;
	world_init(&w);
	assert_int_equal(veil_id_new(&a3, 0), VEIL_OK);
	a_copy = w.a;
	build_a(&w, &w.a_inbox, &w.a_new, 0, &u1, &l1);
	/* Same seq, another ephemeral key. */
	assert_int_equal(veil_update_build(&a_copy, w.ida.pk, "Alice", &w.a_inbox,
	    &w.a_new, 0, &u1b, &l1b), VEIL_OK);
	assert_int_equal(a_copy.upd_sent_seq, 1);
	assert_memory_not_equal(a_copy.upd_eph_pk, w.a.upd_eph_pk, VEIL_KEY_BYTES);

	/* Unknown OCID first: refused, nothing recorded. */
	assert_int_equal(veil_update_on_update(&w.b, &w.b_inbox, u1, l1, &ccm,
	    &ack, &acklen), VEIL_ERR_STATE);
	assert_null(ack);
	assert_int_equal(w.b.upd_recv_seq, 0);
	assert_false(w.b.tx_next.live);

	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, u1, l1, &ccm,
	    &ack, &acklen), 0);
	free(ack);
	memcpy(root, w.b.tx_next.k.root, VEIL_KEY_BYTES);
	memcpy(tx_root, w.b.tx.k.root, VEIL_KEY_BYTES);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, u1b, l1b, &ccm,
	    &ack, &acklen), VEIL_ERR_REPLAY);
	assert_null(ack);
	assert_memory_equal(w.b.tx_next.k.root, root, VEIL_KEY_BYTES);
	assert_memory_equal(w.b.tx.k.root, tx_root, VEIL_KEY_BYTES);

	/* Alice finishes, then sends seq 2; the old seq 1 is now stale. */
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, u1, l1, &ccm,
	    &ack, &acklen), 1);
	assert_int_equal(veil_update_on_ack(&w.a, ack, acklen), VEIL_OK);
	free(ack);
	build_a(&w, &w.a_new, &a3, 0, &u2, &l2);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, u2, l2, &ccm,
	    &ack, &acklen), 0);
	free(ack);
	memcpy(root, w.b.tx_next.k.root, VEIL_KEY_BYTES);
	memcpy(tx_root, w.b.tx.k.root, VEIL_KEY_BYTES);
	assert_int_equal(veil_update_on_update(&w.b, &a3, u1, l1, &ccm,
	    &ack, &acklen), VEIL_ERR_STALE);
	assert_int_equal(veil_update_on_update(&w.b, &a3, u1b, l1b, &ccm,
	    &ack, &acklen), VEIL_ERR_STALE);
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
	build_a(&w, &w.a_inbox, &w.a_new, 1, &body, &len);
	assert_non_null(strstr(body, "\"NewSecret\":\""));
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), 0);
	assert_true(ccm.has_new_secret);
	assert_memory_equal(w.b.secret, ccm.new_secret, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.b.secret_hash, sh, VEIL_KEY_BYTES);
	/* Alice switches only when she knows Bob did. */
	assert_memory_equal(w.a.secret_hash, sh, VEIL_KEY_BYTES);

	/* A retransmission still carries the old SH and is still recognised. */
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, body, len, &ccm,
	    &ack2, &acklen2), 1);
	assert_int_equal(acklen, acklen2);
	assert_memory_equal(ack, ack2, acklen);

	assert_int_equal(veil_update_on_ack(&w.a, ack, acklen), VEIL_OK);
	assert_memory_equal(w.a.secret, w.b.secret, VEIL_KEY_BYTES);
	assert_memory_equal(w.a.secret_hash, w.b.secret_hash, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.a.secret_hash, sh, VEIL_KEY_BYTES);
	assert_true(sodium_is_zero(w.a.upd_new_secret, VEIL_KEY_BYTES));
	assert_false(w.a.upd_rekey_secret);
	/* The next update carries the new SH and is accepted. */
	free(body);
	free(ack);
	free(ack2);
	build_a(&w, &w.a_new, &w.a_inbox, 0, &body, &len);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, body, len, &ccm,
	    &ack, &acklen), 0);
	free(body);
	free(ack);
	world_wipe(&w);
}

static void
test_update_ack_state(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	char *body, *ack;
	size_t len, acklen;
	struct veil_dirkey rx;
	const char *bad_seq = "{\"Data\":\"UpdateAck\",\"Seq\":2,"
	    "\"Eph\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}";

	(void)state;
	world_init(&w);
	rx = w.a.rx.k;
	/* Nothing pending. */
	assert_int_equal(veil_update_on_ack(&w.a, bad_seq, strlen(bad_seq)), VEIL_ERR_STATE);
	build_a(&w, &w.a_inbox, &w.a_new, 0, &body, &len);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), 0);
	/* Pending seq 1, ACK for seq 2. */
	assert_int_equal(veil_update_on_ack(&w.a, bad_seq, strlen(bad_seq)), VEIL_ERR_STATE);
	assert_true(w.a.upd_pending);
	assert_dirkey_equal(&w.a.rx.k, &rx);
	/* Malformed ACKs. */
	{
		static const char *bad[] = {
			"",
			"[]",
			"{}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":\"1\",\"Eph\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
			"{\"Data\":\"UpdateAcK\",\"Seq\":1,\"Eph\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"AAAA\"}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"X\":1}",
			"{\"Data\":\"UpdateAck\",\"Seq\":1,\"Seq\":1,\"Eph\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			assert_int_equal(veil_update_on_ack(&w.a, bad[i], strlen(bad[i])),
			    VEIL_ERR_FORMAT);
	}
	/* An all-zero Eph (low-order point) is refused, state kept. */
	{
		const char *zero = "{\"Data\":\"UpdateAck\",\"Seq\":1,"
		    "\"Eph\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}";

		assert_int_equal(veil_update_on_ack(&w.a, zero, strlen(zero)), VEIL_ERR_CRYPTO);
		assert_true(w.a.upd_pending);
	}
	assert_true(w.a.upd_pending);
	assert_dirkey_equal(&w.a.rx.k, &rx);
	/* Truncated ACK bodies. */
	for (len = 0; len < acklen; len++)
		assert_int_equal(veil_update_on_ack(&w.a, ack, len), VEIL_ERR_FORMAT);
	assert_int_equal(veil_update_on_ack(&w.a, ack, acklen), VEIL_OK);
	free(body);
	free(ack);
	world_wipe(&w);
}

/* Both sides rotate at the same moment: each direction re-keys once. */
static void
test_update_simultaneous(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_dirkey a_tx0, b_tx0;
	char *ua, *ub, *acka, *ackb, *donea, *doneb;
	size_t la, lb, lacka, lackb, ldonea, ldoneb;

	(void)state;
	world_init(&w);
	a_tx0 = w.a.tx.k;
	b_tx0 = w.b.tx.k;
	build_a(&w, &w.a_inbox, &w.a_new, 0, &ua, &la);
	assert_int_equal(veil_update_build(&w.b, w.idb.pk, "Bob", &w.b_inbox,
	    &w.b_new, 0, &ub, &lb), VEIL_OK);
	frame_roundtrip(&w.a.tx.k, &w.a.tx.seq, &w.b.rx.k, VEIL_T_UPDATE, ua, la);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_UPDATE, ub, lb);

	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, ua, la, &ccm,
	    &ackb, &lackb), 0);
	assert_int_equal(veil_update_on_update(&w.a, &w.b_inbox, ub, lb, &ccm,
	    &acka, &lacka), 0);
	/* Neither tx moved: each ACK goes under a key the other reads with rx. */
	assert_dirkey_equal(&w.a.tx.k, &a_tx0);
	assert_dirkey_equal(&w.b.tx.k, &b_tx0);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k,
	    VEIL_T_UPDATE_ACK, ackb, lackb);
	frame_roundtrip(&w.a.tx.k, &w.a.tx.seq, &w.b.rx.k,
	    VEIL_T_UPDATE_ACK, acka, lacka);
	assert_int_equal(veil_update_on_ack(&w.a, ackb, lackb), VEIL_OK);
	assert_int_equal(veil_update_on_ack(&w.b, acka, lacka), VEIL_OK);

	assert_dirkey_equal(&w.a.tx_next.k, &w.b.rx.k);
	assert_dirkey_equal(&w.b.tx_next.k, &w.a.rx.k);
	assert_dirkey_equal(&w.a.tx.k, &w.b.rx_prev.k);
	assert_dirkey_equal(&w.b.tx.k, &w.a.rx_prev.k);

	/* The DONEs cross as well: each under the old tx, read through rx_prev. */
	assert_int_equal(veil_update_done_build(&w.a, &donea, &ldonea), VEIL_OK);
	assert_int_equal(veil_update_done_build(&w.b, &doneb, &ldoneb), VEIL_OK);
	frame_fails(&w.a.tx.k, w.a.tx.seq, &w.b.rx.k);
	frame_roundtrip(&w.a.tx.k, &w.a.tx.seq, &w.b.rx_prev.k,
	    VEIL_T_UPDATE_DONE, donea, ldonea);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx_prev.k,
	    VEIL_T_UPDATE_DONE, doneb, ldoneb);
	assert_int_equal(veil_update_on_done(&w.b, donea, ldonea), VEIL_OK);
	assert_int_equal(veil_update_on_done(&w.a, doneb, ldoneb), VEIL_OK);

	assert_dirkey_equal(&w.a.tx.k, &w.b.rx.k);
	assert_dirkey_equal(&w.b.tx.k, &w.a.rx.k);
	assert_false(w.a.tx_next.live || w.b.tx_next.live);
	assert_memory_not_equal(w.a.tx.k.root, a_tx0.root, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.b.tx.k.root, b_tx0.root, VEIL_KEY_BYTES);
	frame_roundtrip(&w.a.tx.k, &w.a.tx.seq, &w.b.rx.k, VEIL_T_TEXT, "ab", 2);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_TEXT, "ba", 2);
	free(ua);
	free(ub);
	free(acka);
	free(ackb);
	free(donea);
	free(doneb);
	world_wipe(&w);
}

/*
 * A tiny network for crossing rotations: every message is sealed when it
 * is sent, under the sender's tx of that moment, and delivered later in
 * any order, sometimes twice.
 */
#define NET_MAX 16
#define CROSSING_ROUNDS 300

struct net_msg {
	uint8_t frame[FS];
	uint64_t seq;
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
	m = &net->m[net->n++];
	m->seq = s->tx.seq;
	m->to_b = from_a;
	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(m->frame, sizeof(m->frame), FS, &s->tx.k,
	    &s->tx.seq, type, msgid, (const uint8_t *)body, len), 1);
}

/* Each side seals under a key the other can open, whatever arrived so far. */
static void
net_check_readable(const struct veil_pair *s, const struct veil_pair *r)
{
	assert_true(root_equal(&s->tx.k, &r->rx.k) ||
	    (r->rx_prev.live && root_equal(&s->tx.k, &r->rx_prev.k)));
}

static void
net_deliver(struct world *w, struct net *net, size_t i, int dup)
{
	struct net_msg m = net->m[i];
	struct veil_pair *r = m.to_b ? &w->b : &w->a;
	const struct veil_id *ocid = m.to_b ? &w->a_inbox : &w->b_inbox;
	struct veil_frame_hdr h;
	struct veil_ccm ccm;
	uint8_t body[FS];
	char *out;
	size_t outlen;
	int rc;

	if (!dup) {
		net->m[i] = net->m[net->n - 1];
		net->n--;
	}
	/* As the daemon does: the current key first, then the previous one. */
	rc = veil_frame_open(m.frame, FS, &r->rx.k, m.seq, &h, body);
	if (rc == VEIL_ERR_DECRYPT) {
		assert_true(r->rx_prev.live);
		rc = veil_frame_open(m.frame, FS, &r->rx_prev.k, m.seq, &h, body);
	}
	assert_int_equal(rc, VEIL_OK);

	switch (h.type) {
	case VEIL_T_UPDATE:
		/* A copy of an accepted UPDATE names the old inbox: still 1. */
		rc = veil_update_on_update(r, ocid, (const char *)body, h.len, &ccm,
		    &out, &outlen);
		assert_true(rc == 0 || rc == 1);
		net_send(w, net, !m.to_b, VEIL_T_UPDATE_ACK, out, outlen);
		free(out);
		break;
	case VEIL_T_UPDATE_ACK:
		rc = veil_update_on_ack(r, (const char *)body, h.len);
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
	unsigned round, dup_rounds = 0;

	(void)state;
	tu_prng_seed(&prng, 0x5eed);
	/* Fixed, not tu_iters(): a protocol run, not a garbage loop. */
	for (round = 0; round < CROSSING_ROUNDS; round++) {
		struct world w;
		struct net net;
		struct veil_dirkey a_tx0, b_tx0;
		char *ua, *ub;
		size_t la, lb;

		world_init(&w);
		memset(&net, 0, sizeof(net));
		a_tx0 = w.a.tx.k;
		b_tx0 = w.b.tx.k;
		build_a(&w, &w.a_inbox, &w.a_new, 0, &ua, &la);
		assert_int_equal(veil_update_build(&w.b, w.idb.pk, "Bob", &w.b_inbox,
		    &w.b_new, 0, &ub, &lb), VEIL_OK);
		net_send(&w, &net, 1, VEIL_T_UPDATE, ua, la);
		net_send(&w, &net, 0, VEIL_T_UPDATE, ub, lb);
		free(ua);
		free(ub);
		while (net.n > 0) {
			size_t i = (size_t)(tu_prng_next(&prng) % net.n);
			int dup = net.dups < 3 && tu_prng_next(&prng) % 4 == 0;

			net.dups += dup;
			net_deliver(&w, &net, i, dup);
		}
		dup_rounds += net.dups > 0;

		/* Both directions re-keyed once, both sides switched. */
		assert_false(w.a.upd_pending || w.b.upd_pending);
		assert_false(w.a.tx_next.live || w.b.tx_next.live);
		assert_dirkey_equal(&w.a.tx.k, &w.b.rx.k);
		assert_dirkey_equal(&w.b.tx.k, &w.a.rx.k);
		assert_dirkey_equal(&w.b.rx_prev.k, &a_tx0);
		assert_dirkey_equal(&w.a.rx_prev.k, &b_tx0);
		assert_memory_not_equal(w.a.tx.k.root, a_tx0.root, VEIL_KEY_BYTES);
		assert_memory_not_equal(w.b.tx.k.root, b_tx0.root, VEIL_KEY_BYTES);
		world_wipe(&w);
	}
	/* The copies were exercised, not only the clean orders. */
	assert_true(dup_rounds > 0);
}

/*
 * Alice's DONE for seq 1 is lost and her UPDATE 2 arrives: it proves she
 * got ACK 1, so Bob switches first and derives seq 2 from the key she has.
 */
static void
test_update_newer_switches(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	struct veil_id a3;
	struct veil_dirkey k0, k1;
	char *done1, *u2, *ack2;
	size_t ldone1, l2, lack2;

	(void)state;
	world_init(&w);
	assert_int_equal(veil_id_new(&a3, 0), VEIL_OK);
	k0 = w.b.tx.k;
	rotate_a_ack(&w, &w.a_inbox, &w.a_new, 0);
	k1 = w.b.tx_next.k;
	assert_int_equal(veil_update_done_build(&w.a, &done1, &ldone1), VEIL_OK);
	/* Lost: Bob goes on under k0, which Alice reads through rx_prev. */
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx_prev.k, VEIL_T_TEXT, "k0", 2);

	build_a(&w, &w.a_new, &a3, 0, &u2, &l2);
	frame_roundtrip(&w.a.tx.k, &w.a.tx.seq, &w.b.rx.k, VEIL_T_UPDATE, u2, l2);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, u2, l2, &ccm,
	    &ack2, &lack2), 0);
	assert_int_equal(w.b.upd_recv_seq, 2);
	/* Switched to k1, with its own seq counter ... */
	assert_dirkey_equal(&w.b.tx.k, &k1);
	assert_int_equal(w.b.tx.seq, 0);
	/* ... and the key of seq 2 waits, a new one. */
	assert_true(w.b.tx_next.live);
	assert_memory_not_equal(w.b.tx_next.k.root, k1.root, VEIL_KEY_BYTES);
	assert_memory_not_equal(w.b.tx_next.k.root, k0.root, VEIL_KEY_BYTES);

	/* ACK 2 under k1: Alice opens it with the rx ACK 1 gave her, not k0. */
	frame_fails(&w.b.tx.k, w.b.tx.seq, &w.a.rx_prev.k);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_UPDATE_ACK,
	    ack2, lack2);
	assert_int_equal(veil_update_on_ack(&w.a, ack2, lack2), VEIL_OK);
	/* Both derived seq 2 from k1. */
	assert_dirkey_equal(&w.a.rx.k, &w.b.tx_next.k);
	assert_dirkey_equal(&w.a.rx_prev.k, &k1);

	/* DONE 1 turns up late: it must not move Bob to the key of seq 2. */
	assert_int_equal(veil_update_on_done(&w.b, done1, ldone1), VEIL_ERR_STATE);
	assert_dirkey_equal(&w.b.tx.k, &k1);
	assert_true(w.b.tx_next.live);
	done_a(&w);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_TEXT, "k2", 2);
	frame_fails(&w.b.tx.k, w.b.tx.seq, &w.a.rx_prev.k);
	free(done1);
	free(u2);
	free(ack2);
	world_wipe(&w);
}

/*
 * Between ACK and DONE Bob seals under his old tx: Alice opens that with
 * rx_prev, and only after the DONE with rx.  The end of a grace period
 * on Bob's side does not touch the key waiting in tx_next.
 */
static void
test_update_grace(void **state)
{
	struct world w;
	struct veil_txdir tx, next;
	char *done;
	size_t len;

	(void)state;
	world_init(&w);
	rotate_a_ack(&w, &w.a_inbox, &w.a_new, 0);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx_prev.k, VEIL_T_TEXT, "before", 6);
	frame_fails(&w.b.tx.k, w.b.tx.seq, &w.a.rx.k);

	tx = w.b.tx;
	next = w.b.tx_next;
	veil_pair_drop_prev(&w.b);
	assert_dirkey_equal(&w.b.tx.k, &tx.k);
	assert_int_equal(w.b.tx.seq, tx.seq);
	assert_dirkey_equal(&w.b.tx_next.k, &next.k);
	assert_true(w.b.tx_next.live);

	done_a(&w);
	frame_roundtrip(&w.b.tx.k, &w.b.tx.seq, &w.a.rx.k, VEIL_T_TEXT, "after", 5);
	frame_fails(&w.b.tx.k, w.b.tx.seq, &w.a.rx_prev.k);

	/* Alice resends the DONE (say, a frame was still under rx_prev): a copy. */
	tx = w.b.tx;
	assert_int_equal(veil_update_done_build(&w.a, &done, &len), VEIL_OK);
	assert_int_equal(veil_update_on_done(&w.b, done, len), 1);
	assert_dirkey_equal(&w.b.tx.k, &tx.k);
	assert_int_equal(w.b.tx.seq, tx.seq);
	assert_false(w.b.tx_next.live);
	free(done);
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
	build_a(&w, &w.a_inbox, &w.a_new, 0, &body, &len);
	assert_int_equal(veil_update_done_build(&w.a, &done, &dlen), VEIL_ERR_STATE);
	assert_null(done);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), 0);
	assert_int_equal(veil_update_on_ack(&w.a, ack, acklen), VEIL_OK);

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
	assert_int_equal(veil_update_on_ack(&w.a, done, dlen), VEIL_ERR_FORMAT);
	assert_int_equal(veil_update_on_done(&w.b, ack, acklen), VEIL_ERR_FORMAT);
	assert_int_equal(veil_update_on_done(&w.b, body, len), VEIL_ERR_FORMAT);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_new, done, dlen, &ccm,
	    &done2, &dlen2), VEIL_ERR_FORMAT);
	assert_null(done2);
	assert_true(w.b.tx_next.live);

	/* A new update pending again: its DONE cannot be built yet. */
	free(body);
	build_a(&w, &w.a_new, &w.a_inbox, 0, &body, &len);
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
		"{\"Data\":\"UpdateDone\",\"Seq\":1,\"Eph\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
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
	struct veil_txdir tx, next;
	char *body, *ack, big[VEIL_UPDATE_BODY_MAX + 64];
	size_t len, acklen, i;

	(void)state;
	world_init(&w);
	/* Before any UPDATE, even a well-formed DONE has nothing to confirm. */
	assert_int_equal(veil_update_on_done(&w.b, good, strlen(good)), VEIL_ERR_STATE);
	assert_false(w.b.tx_next.live);

	build_a(&w, &w.a_inbox, &w.a_new, 0, &body, &len);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), 0);
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
	assert_dirkey_equal(&w.b.tx.k, &tx.k);
	assert_int_equal(w.b.tx.seq, tx.seq);
	assert_dirkey_equal(&w.b.tx_next.k, &next.k);
	assert_true(w.b.tx_next.live);
	assert_int_equal(w.b.upd_recv_seq, 1);

	/* Whitespace around the object leaves one object: accepted, switches. */
	snprintf(big, sizeof(big), " \n%s\t ", good);
	assert_int_equal(veil_update_on_done(&w.b, big, strlen(big)), VEIL_OK);
	assert_dirkey_equal(&w.b.tx.k, &next.k);
	assert_false(w.b.tx_next.live);
	/* A copy: 1, and Bob stays on the new key. */
	assert_int_equal(veil_update_on_done(&w.b, good, strlen(good)), 1);
	assert_dirkey_equal(&w.b.tx.k, &next.k);
	assert_false(w.b.tx_next.live);
	/* A copy is still checked: STATE and FORMAT as before. */
	assert_int_equal(veil_update_on_done(&w.b, seq2, strlen(seq2)), VEIL_ERR_STATE);
	assert_int_equal(veil_update_on_done(&w.b, extra, strlen(extra)),
	    VEIL_ERR_FORMAT);
	free(body);
	free(ack);
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
	assert_int_equal(veil_update_on_update(&w->b, &w->a_inbox, s, strlen(s),
	    &ccm, &ack, &acklen), VEIL_ERR_FORMAT);
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
	    "NewCID", "Secret", "StegKey", "Alg", "Seq", "Eph" };
	static const char *strs[] = { "Data", "OCID", "PubKey", "CName",
	    "NewCID", "Secret", "NewSecret", "StegKey", "Alg", "Eph" };
	struct world w;
	struct veil_ccm ccm;
	char *body, *ack, big[VEIL_UPDATE_BODY_MAX + 64];
	size_t len, i, acklen;

	(void)state;
	world_init(&w);
	build_a(&w, &w.a_inbox, &w.a_new, 1, &body, &len);
	assert_int_equal(veil_ccm_parse(&ccm, body, len), VEIL_OK);
	assert_true(ccm.has_new_secret);
	assert_memory_equal(ccm.secret, w.a.secret_hash, VEIL_KEY_BYTES);
	assert_memory_equal(ccm.eph, w.a.upd_eph_pk, VEIL_KEY_BYTES);
	assert_memory_equal(ccm.new_secret, w.a.upd_new_secret, VEIL_KEY_BYTES);
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

	/* Missing mandatory fields. */
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		expect_format(&w, edit(body, fields[i], NULL));
	/* Wrong types. */
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		expect_format(&w, edit(body, strs[i], json_integer(1)));
		expect_format(&w, edit(body, strs[i], json_null()));
	}
	expect_format(&w, edit(body, "Seq", json_string("1")));
	expect_format(&w, edit(body, "Seq", json_real(1.0)));
	expect_format(&w, edit(body, "Seq", json_true()));
	/* Wrong values. */
	expect_format(&w, edit(body, "Data", json_string("UpdateAck")));
	expect_format(&w, edit(body, "Unknown", json_string("x")));
	expect_format(&w, edit(body, "Seq", json_integer(0)));
	expect_format(&w, edit(body, "Seq", json_integer(-1)));
	expect_format(&w, edit(body, "OCID", json_string("short")));
	expect_format(&w, edit(body, "OCID", json_string("a/b+c#dddddddddddd")));
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
		assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, i,
		    &ccm, &ack, &acklen), VEIL_ERR_FORMAT);
	}
	/* Nothing above changed Bob. */
	assert_int_equal(w.b.upd_recv_seq, 0);
	assert_false(w.b.tx_next.live);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), 0);
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
	build_a(&w, &w.a_inbox, &w.a_new, 0, &body, &len);
	tu_prng_seed(&prng, 0xcc3);
	iters = tu_iters(2000);
	for (it = 0; it < iters; it++) {
		struct veil_pair before = w.b;

		memcpy(buf, body, len);
		n = len;
		tu_mutate(&prng, buf, &n, sizeof(buf));
		r = veil_update_on_update(&w.b, &w.a_inbox, (const char *)buf, n,
		    &ccm, &ack, &acklen);
		if (r == 0) {
			/* Only harmless edits (e.g. whitespace) parse: undo. */
			free(ack);
			w.b = before;
			continue;
		}
		assert_true(r < 0);
		assert_null(ack);
		assert_int_equal(w.b.upd_recv_seq, 0);
		assert_memory_equal(w.b.tx.k.root, before.tx.k.root, VEIL_KEY_BYTES);
		assert_false(w.b.tx_next.live);
		assert_int_equal(veil_update_on_ack(&w.a, (const char *)buf, n) < 0, 1);
		/* Bob accepted no UPDATE: nothing can be confirmed. */
		assert_int_equal(veil_update_on_done(&w.b, (const char *)buf, n) < 0, 1);
	}
	free(body);
	world_wipe(&w);
}

/* A pending update survives the store. */
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
	build_a(&w, &w.a_inbox, &w.a_new, 1, &body, &len);
	n = veil_pair_pack(&w.a, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(veil_pair_unpack(&back, buf, (size_t)n), VEIL_OK);
	assert_int_equal(veil_update_build(&back, w.ida.pk, "Alice", &w.a_inbox,
	    &w.a_new, 0, &body2, &len2), VEIL_OK);
	assert_int_equal(len, len2);
	assert_memory_equal(body, body2, len);
	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body2, len2,
	    &ccm, &ack, &acklen), 0);
	assert_int_equal(veil_update_on_ack(&back, ack, acklen), VEIL_OK);
	assert_dirkey_equal(&back.rx.k, &w.b.tx_next.k);
	assert_memory_equal(back.secret_hash, w.b.secret_hash, VEIL_KEY_BYTES);

	/* Bob stored with the new key still waiting: it survives too, and the
	 * DONE switches the restored pair to it. */
	n = veil_pair_pack(&w.b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(veil_pair_unpack(&b_back, buf, (size_t)n), VEIL_OK);
	assert_true(b_back.tx_next.live);
	assert_dirkey_equal(&b_back.tx_next.k, &w.b.tx_next.k);
	assert_dirkey_equal(&b_back.tx.k, &w.b.tx.k);
	assert_int_equal(veil_update_done_build(&back, &done, &donelen), VEIL_OK);
	assert_int_equal(veil_update_on_done(&b_back, done, donelen), VEIL_OK);
	assert_dirkey_equal(&b_back.tx.k, &back.rx.k);
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
	struct veil_id unset;
	char *body;
	size_t len;

	(void)state;
	world_init(&w);
	memset(&unset, 0, sizeof(unset));
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "", &w.a_inbox,
	    &w.a_new, 0, &body, &len), VEIL_ERR_INVAL);
	assert_null(body);
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "Alice", &unset,
	    &w.a_new, 0, &body, &len), VEIL_ERR_INVAL);
	assert_int_equal(veil_update_build(&w.a, w.ida.pk, "Alice", &w.a_inbox,
	    &unset, 0, &body, &len), VEIL_ERR_INVAL);
	assert_false(w.a.upd_pending);
	assert_int_equal(w.a.upd_sent_seq, 0);
	world_wipe(&w);
}

/*
 * protocol.md §5 recomputed: D' = H_D("veil-rekey-v1" || DH || u64(Seq))
 * keyed by the root being replaced, and the exact JSON of the three messages.
 */
static void
test_update_spec(void **state)
{
	struct world w;
	struct veil_ccm ccm;
	crypto_generichash_state st;
	uint8_t e_x[32], root[32], dh[32], d[32], seq[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	char *body, *ack, *done, want[1024], pk64[44], eph64[44], ocid[VEIL_ID_TEXT_MAX];
	char ncid[VEIL_ID_TEXT_MAX], sh[65];
	size_t len, acklen, donelen;

	(void)state;
	world_init(&w);
	memcpy(root, w.b.tx.k.root, 32);
	build_a(&w, &w.a_inbox, &w.a_new, 0, &body, &len);
	memcpy(e_x, w.a.upd_eph_sk, 32);

	sodium_bin2base64(pk64, sizeof(pk64), w.ida.pk, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_bin2base64(eph64, sizeof(eph64), w.a.upd_eph_pk, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_bin2hex(sh, sizeof(sh), w.a.secret_hash, 32);
	assert_int_equal(veil_id_to_text(&w.a_inbox, ocid, sizeof(ocid)), VEIL_OK);
	assert_int_equal(veil_id_to_text(&w.a_new, ncid, sizeof(ncid)), VEIL_OK);
	snprintf(want, sizeof(want), "{\"Data\":\"UpdateContact\",\"OCID\":\"%s\","
	    "\"PubKey\":\"%s\",\"CName\":\"Alice\",\"NewCID\":\"%s\",\"Secret\":\"%s\","
	    "\"StegKey\":\"0000\",\"Alg\":\"X25519-XChaCha20Poly1305-BLAKE2b\","
	    "\"Seq\":1,\"Eph\":\"%s\"}", ocid, pk64, ncid, sh, eph64);
	assert_string_equal(body, want);

	assert_int_equal(veil_update_on_update(&w.b, &w.a_inbox, body, len, &ccm,
	    &ack, &acklen), 0);
	sodium_bin2base64(eph64, sizeof(eph64), w.b.upd_ack_eph, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(want, sizeof(want), "{\"Data\":\"UpdateAck\",\"Seq\":1,\"Eph\":\"%s\"}", eph64);
	assert_string_equal(ack, want);

	assert_int_equal(crypto_scalarmult(dh, e_x, w.b.upd_ack_eph), 0);
	crypto_generichash_init(&st, root, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)"veil-rekey-v1", 13);
	crypto_generichash_update(&st, dh, 32);
	crypto_generichash_update(&st, seq, 8);
	crypto_generichash_final(&st, d, 32);
	assert_memory_equal(w.b.tx_next.k.root, d, 32);
	assert_memory_equal(w.b.tx.k.root, root, 32);
	assert_int_equal(veil_update_on_ack(&w.a, ack, acklen), VEIL_OK);
	assert_memory_equal(w.a.rx.k.root, d, 32);

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
		cmocka_unit_test(test_update_twice),
		cmocka_unit_test(test_update_retransmit),
		cmocka_unit_test(test_update_secret),
		cmocka_unit_test(test_update_order),
		cmocka_unit_test(test_update_new_secret),
		cmocka_unit_test(test_update_ack_state),
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
