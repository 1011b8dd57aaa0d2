/* libveil pair: the established key state shared with one contact, and its serialisation. */
#ifndef VEIL_PAIR_H
#define VEIL_PAIR_H

#include "chain.h"
#include "ids.h"

#ifdef __cplusplus
extern "C" {
#endif

enum veil_role { VEIL_ROLE_INITIATOR = 1, VEIL_ROLE_RESPONDER = 2 };

/*
 * What two contacts share once the agreement is established (protocol.md
 * 4-6).  Our receive chains use our key period (my_inbox.period), our
 * transmit chains the peer's; the peer sends to topic(my_inbox.seed, n)
 * with n from my_inbox.epoch, we send to topic(peer_inbox.seed, n).
 */
struct veil_pair {
	uint8_t role;				/* enum veil_role */
	uint8_t secret[VEIL_KEY_BYTES];		/* S: the paper's shared secret */
	uint8_t secret_hash[VEIL_KEY_BYTES];	/* SH = H_S("veil-secret-v1") */
	uint8_t peer_pk[VEIL_KEY_BYTES];	/* proven by the agreement */
	struct veil_inbox my_inbox;		/* J, L, Pd we gave the peer, as it knows them */
	struct veil_inbox peer_inbox;		/* the peer's: where we send, our tx period */
	struct veil_txchain tx;			/* we seal under it: a chain the peer reads */
	struct veil_txchain tx_next;		/* re-keyed by the peer's UPDATE, used after its DONE */
	struct veil_rxchain rx;			/* the peer's tx */
	struct veil_rxchain rx_prev;		/* before our last UPDATE: until its grace ends */
	/* Our UPDATE (update.h). */
	uint64_t upd_sent_seq;			/* seq of our last UPDATE (pending or acked) */
	uint8_t upd_pending;			/* it awaits its ACK */
	uint8_t upd_rekey_secret;		/* it carries NewSecret */
	uint8_t upd_eph_sk[VEIL_KEY_BYTES];
	uint8_t upd_eph_pk[VEIL_KEY_BYTES];
	uint8_t upd_new_secret[VEIL_KEY_BYTES];
	struct veil_inbox upd_new;		/* its NewCID, Epoch and Rekey */
	/* The peer's last UPDATE we accepted. */
	uint64_t upd_recv_seq;
	uint8_t upd_recv_eph[VEIL_KEY_BYTES];	/* its Eph (detects retransmissions) */
	uint8_t upd_ack_eph[VEIL_KEY_BYTES];	/* our Eph in the ACK we sent */
	uint64_t upd_ack_period;		/* our Period in that ACK */
};

/* secret_hash from secret. */
void veil_pair_set_secret(struct veil_pair *p, const uint8_t secret[VEIL_KEY_BYTES]);

/*
 * Receive keys of a pair in a tag table: slot i of rx is owner_base + i,
 * slot i of rx_prev owner_base + VEIL_PAIR_PREV + i (i < VEIL_RX_SLOTS),
 * VEIL_PAIR_OWNERS owners in all.  veil_pair_rxslot(p, j) is the live
 * receive key of owner_base + j, or NULL.
 */
#define VEIL_PAIR_PREV VEIL_RX_SLOTS
#define VEIL_PAIR_OWNERS (2 * VEIL_RX_SLOTS)
struct veil_rxdir *veil_pair_rxslot(struct veil_pair *p, unsigned j);
int veil_pair_arm(struct veil_tagtab *t, const struct veil_pair *p, uint64_t owner_base,
    unsigned lookahead);
void veil_pair_disarm(struct veil_tagtab *t, const struct veil_pair *p, unsigned lookahead);

/*
 * Moves every chain of the pair (tx, tx_next, rx, rx_prev) to clk->now
 * (chain.h), keeping the tag table t in step if given (owners as above).
 * Call it at each key-period boundary for every contact, whether or not
 * anything is sent, so that passed keys die on time, and before sealing.
 * Returns 0 (nothing changed), 1 (changed: persist), or the first of
 * NOMEM, RATCHET (call again), INVAL; the pair stays consistent.
 */
int veil_pair_advance(struct veil_pair *p, const struct veil_clock *clk,
    struct veil_tagtab *t, uint64_t owner_base, unsigned lookahead);

/* Forgets rx_prev (end of an update's grace period); disarm it first. */
void veil_pair_drop_prev(struct veil_pair *p);
void veil_pair_wipe(struct veil_pair *p);

/* Versioned, endian-independent serialisation for the store.  Unpack
 * returns VERSION for the stored forms of protocol version 1 (format
 * versions 1 and 2), which cannot be carried into version 2. */
#define VEIL_PAIR_PACKED_MAX 1024
int veil_pair_pack(const struct veil_pair *p, uint8_t *out, size_t outlen); /* returns length */
int veil_pair_unpack(struct veil_pair *p, const uint8_t *in, size_t len);

/* Safety number of two identity keys, order-independent:
 * six groups of five digits separated by spaces. */
#define VEIL_FP_TEXT 36
int veil_fingerprint(const uint8_t a[VEIL_KEY_BYTES], const uint8_t b[VEIL_KEY_BYTES], char out[VEIL_FP_TEXT]);

#ifdef __cplusplus
}
#endif
#endif
