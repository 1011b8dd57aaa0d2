/* libveil agree: the contact agreement protocol (paper Fig. 3), one state machine per side. */
#ifndef VEIL_AGREE_H
#define VEIL_AGREE_H

#include "card.h"
#include "pair.h"

#ifdef __cplusplus
extern "C" {
#endif

struct veil_identity {
	uint8_t pk[VEIL_KEY_BYTES];
	uint8_t sk[VEIL_KEY_BYTES];
};
int veil_identity_new(struct veil_identity *id);
void veil_identity_wipe(struct veil_identity *id);

enum veil_agree_state {
	VEIL_AG_NONE = 0,
	VEIL_AG_REQUESTED,	/* initiator: REQUEST sent, awaiting ACCEPT */
	VEIL_AG_PENDING,	/* responder: REQUEST received, awaiting the owner's consent */
	VEIL_AG_ACCEPTED,	/* responder: ACCEPT sent, awaiting CONFIRM */
	VEIL_AG_ESTABLISHED,
	VEIL_AG_FAILED,		/* hash mismatch: the user is told, start again */
	VEIL_AG_REJECTED	/* responder's owner said no */
};
const char *veil_agree_state_name(int state);

#define VEIL_AGREE_BODY_MAX 512

/* One side of one agreement.  Everything here is stored by the daemon
 * (veil_agree_pack) until the agreement ends, then wiped. */
struct veil_agree {
	uint8_t role;		/* enum veil_role */
	uint8_t state;		/* enum veil_agree_state */
	uint8_t secret[VEIL_KEY_BYTES];		/* S_BA */
	uint8_t pairkey[VEIL_KEY_BYTES];	/* K_BA */
	uint8_t eph_sk[VEIL_KEY_BYTES];		/* own ephemeral, wiped once mixed */
	uint8_t eph_pk[VEIL_KEY_BYTES];
	uint8_t peer_eph[VEIL_KEY_BYTES];
	uint8_t my_pk[VEIL_KEY_BYTES];
	uint8_t peer_pk[VEIL_KEY_BYTES];
	uint8_t t1[VEIL_KEY_BYTES];		/* transcript after REQUEST */
	uint8_t t2[VEIL_KEY_BYTES];		/* transcript after ACCEPT */
	struct veil_id card_cid;		/* the CID the REQUEST answered */
	struct veil_id my_inbox;		/* where the peer sends to me */
	struct veil_id peer_inbox;		/* where I send to the peer */
	char peer_name[VEIL_NAME_MAX + 1];
};

/* Direction keys of the agreement before the ephemeral DH (derived from K):
 * ACCEPT travels responder->initiator under r2i, FAIL under either. */
void veil_agree_epoch0(const struct veil_agree *a, struct veil_dirkey *r2i, struct veil_dirkey *i2r);

/* Initiator (Bob), step 1: body of a REQUEST, to be sealed with
 * veil_message_seal_box(card->pk, VEIL_T_REQUEST) and published to card->cid.
 * my_inbox is where Alice will send to Bob. */
int veil_agree_request(struct veil_agree *a, const struct veil_card *card,
    const uint8_t my_pk[VEIL_KEY_BYTES], const char *my_name,
    const struct veil_id *my_inbox, uint8_t *body, size_t *len);

/* Responder (Alice): a REQUEST body arrived on my_cid.  -> PENDING.
 * Errors: FORMAT, TRUNCATED, INVAL (bad name), STATE (CID mismatch). */
int veil_agree_on_request(struct veil_agree *a, const struct veil_id *my_cid,
    const uint8_t my_pk[VEIL_KEY_BYTES], const uint8_t *body, size_t len);

/* The requester's identity key in a REQUEST body, without checking the
 * rest: to recognise a copy of a REQUEST already accepted, sent to a card
 * that has since been replaced.  Errors: INVAL, TRUNCATED. */
int veil_agree_request_key(const uint8_t *body, size_t len, uint8_t pk[VEIL_KEY_BYTES]);

/* Responder, owner consented: ACCEPT body, to be sealed under r2i (epoch 0,
 * seq 0) and sent to a->peer_inbox.  Fills *pair (tx = responder->initiator,
 * rx = initiator->responder, ephemeral DH mixed in).  -> ACCEPTED. */
int veil_agree_accept(struct veil_agree *a, const struct veil_id *my_inbox,
    uint8_t *body, size_t *len, struct veil_pair *pair);
/* Responder, owner refused: -> REJECTED, secrets wiped.  Nothing is sent
 * (silence gives a forwarded-card holder no signal). */
int veil_agree_reject(struct veil_agree *a);

/* Initiator: ACCEPT body opened under r2i.  On success -> ESTABLISHED, *pair
 * filled and out/out_type = CONFIRM body to seal under pair->tx (which
 * advances pair->tx.seq).  On HS mismatch -> FAILED, returns VEIL_ERR_SECRET
 * and out/out_type = FAIL body to seal under i2r. */
int veil_agree_on_accept(struct veil_agree *a, const uint8_t *body, size_t len,
    struct veil_pair *pair, uint8_t *out, size_t *outlen, uint8_t *out_type);

/* Responder: CONFIRM body opened under pair->rx.  -> ESTABLISHED, or
 * FAILED with VEIL_ERR_SECRET. */
int veil_agree_on_confirm(struct veil_agree *a, const uint8_t *body, size_t len);
/* Either side: FAIL body received.  -> FAILED. */
int veil_agree_on_fail(struct veil_agree *a, const uint8_t *body, size_t len);

void veil_agree_wipe(struct veil_agree *a);
#define VEIL_AGREE_PACKED_MAX 1024
int veil_agree_pack(const struct veil_agree *a, uint8_t *out, size_t outlen);
int veil_agree_unpack(struct veil_agree *a, const uint8_t *in, size_t len);

#ifdef __cplusplus
}
#endif
#endif
