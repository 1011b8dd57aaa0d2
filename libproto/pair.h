/* libveil pair: the established key state shared with one contact, and its serialisation. */
#ifndef VEIL_PAIR_H
#define VEIL_PAIR_H

#include "replay.h"

#ifdef __cplusplus
extern "C" {
#endif

enum veil_role { VEIL_ROLE_INITIATOR = 1, VEIL_ROLE_RESPONDER = 2 };

struct veil_txdir {
	struct veil_dirkey k;
	uint64_t seq;		/* next sequence number to use; never reused */
	uint8_t live;
};

struct veil_pair {
	uint8_t role;
	uint8_t secret[VEIL_KEY_BYTES];		/* S: the paper's shared secret */
	uint8_t secret_hash[VEIL_KEY_BYTES];	/* SH = BLAKE2b(key=S, "veil-secret-v1") */
	uint8_t peer_pk[VEIL_KEY_BYTES];
	struct veil_txdir tx;			/* the key we seal under: always one the peer reads */
	struct veil_txdir tx_next;		/* re-keyed by the peer's UPDATE, used once it confirms */
	struct veil_rxdir rx, rx_prev;		/* rx_prev: kept until the rotation grace ends */
	/* UPDATE bookkeeping (see update.h) */
	uint64_t upd_sent_seq;			/* seq of our last UPDATE (pending or acked) */
	uint8_t upd_pending;			/* our UPDATE awaits its ACK */
	uint8_t upd_rekey_secret;		/* pending UPDATE carries NewSecret */
	uint8_t upd_eph_sk[VEIL_KEY_BYTES];
	uint8_t upd_eph_pk[VEIL_KEY_BYTES];
	uint8_t upd_new_secret[VEIL_KEY_BYTES];
	uint64_t upd_recv_seq;			/* seq of the last UPDATE accepted from the peer */
	uint8_t upd_recv_eph[VEIL_KEY_BYTES];	/* its ephemeral key (detects retransmissions) */
	uint8_t upd_ack_eph[VEIL_KEY_BYTES];	/* our ephemeral public key in the ACK we sent */
};

/* secret_hash from secret. */
void veil_pair_set_secret(struct veil_pair *p, const uint8_t secret[VEIL_KEY_BYTES]);
/* Forgets rx_prev (end of a rotation's grace period). */
void veil_pair_drop_prev(struct veil_pair *p);
void veil_pair_wipe(struct veil_pair *p);

/* Versioned, endian-independent serialisation for the store. */
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
