/* libveil agree: the contact agreement (protocol.md 4), one state machine per side. */
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
	VEIL_AG_ACCEPTED,	/* responder: ACCEPT sent, awaiting a frame under pair->rx */
	VEIL_AG_ESTABLISHED,
	VEIL_AG_FAILED,		/* hash mismatch: the user is told, start again */
	VEIL_AG_REJECTED	/* responder's owner said no */
};
const char *veil_agree_state_name(int state);

#define VEIL_AGREE_VERSION 2	/* first byte of a REQUEST body */
#define VEIL_AGREE_BODY_MAX 512	/* a REQUEST or ACCEPT body fits one sealed frame */
#define VEIL_ACCEPT_BODY 104	/* E_A, HS, u32 L_A, u32 P_A, J_A */
#define VEIL_AGREE_AHEAD_MAX 86400 /* t_B may be this far ahead of the responder's clock */

/*
 * One side of one agreement.  Everything here is stored by the daemon
 * (veil_agree_pack) until the agreement ends, then wiped.  After
 * veil_agree_on_request() the responder reads the requester's claims
 * here: peer_pk (unproven until ESTABLISHED: protocol.md 4), peer_name,
 * req_time (t_B) and peer_inbox (J_B, L_B, P_B).
 */
struct veil_agree {
	uint8_t role;		/* enum veil_role */
	uint8_t state;		/* enum veil_agree_state */
	uint8_t secret[VEIL_KEY_BYTES];		/* S */
	uint8_t pairkey[VEIL_KEY_BYTES];	/* K */
	uint8_t eph_sk[VEIL_KEY_BYTES];		/* own ephemeral, wiped once mixed */
	uint8_t eph_pk[VEIL_KEY_BYTES];
	uint8_t peer_eph[VEIL_KEY_BYTES];
	uint8_t my_pk[VEIL_KEY_BYTES];
	uint8_t peer_pk[VEIL_KEY_BYTES];
	uint8_t t1[VEIL_KEY_BYTES];		/* transcript after REQUEST */
	uint8_t t2[VEIL_KEY_BYTES];		/* transcript after ACCEPT */
	struct veil_id card_cid;		/* the CID the REQUEST answered */
	uint64_t req_time;			/* t_B, the requester's clock */
	struct veil_inbox my_inbox;		/* what I give the peer */
	struct veil_inbox peer_inbox;		/* what the peer gave me */
	char peer_name[VEIL_NAME_MAX + 1];
};

/*
 * Epoch-0 keys (from K alone, single keys, seq 0 only): r2i =
 * KDF(K, 1, "veilag02") with dir 2, i2r = KDF(K, 2, "veilag02") with dir 1.
 * K proves nothing about either identity, so only two frames are taken
 * under them: veil_agree_epoch0_allows() says which.
 */
void veil_agree_epoch0(const struct veil_agree *a, struct veil_dirkey *r2i, struct veil_dirkey *i2r);
/* 1 if a frame of this type, opened under this agreement's epoch-0
 * receive key, may be handled: ACCEPT for an initiator awaiting it (r2i),
 * FAIL for a responder awaiting its confirmation (i2r).  Else 0: drop. */
int veil_agree_epoch0_allows(const struct veil_agree *a, uint8_t type);

/*
 * Initiator (Bob), step 1: body of a REQUEST, to be sealed with
 * veil_message_seal_box(card->pk, VEIL_T_REQUEST) and published to
 * card->cid.  my_inbox: the seed (J_B), epoch length and key period Alice
 * will use towards Bob; now becomes t_B.  -> REQUESTED.
 */
int veil_agree_request(struct veil_agree *a, const struct veil_card *card,
    const uint8_t my_pk[VEIL_KEY_BYTES], const char *my_name,
    const struct veil_inbox *my_inbox, uint64_t now, uint8_t *body, size_t *len);

/*
 * T1 = H("veil-agree-v2" || resp_pk || body) of any REQUEST body, without
 * parsing it: the responder remembers the T1 of every REQUEST it processed
 * (while a REQUEST of that age is accepted), drops repeats, and recognises
 * copies sent to a card that is gone.  FORMAT for a body over
 * VEIL_AGREE_BODY_MAX.
 */
int veil_agree_request_t1(const uint8_t *body, size_t len,
    const uint8_t resp_pk[VEIL_KEY_BYTES], uint8_t t1[VEIL_KEY_BYTES]);

/*
 * Responder (Alice): a REQUEST body arrived on my_cid.  -> PENDING.
 * Errors, in the order checked: FORMAT/TRUNCATED (layout, ranges, an
 * all-zero seed), VERSION, INVAL (bad name), STATE (the CID is not my_cid,
 * or the body claims my own key), EXPIRED (t_B older than max_age seconds
 * before now), FUTURE (t_B more than VEIL_AGREE_AHEAD_MAX after now).
 */
int veil_agree_on_request(struct veil_agree *a, const struct veil_id *my_cid,
    const uint8_t my_pk[VEIL_KEY_BYTES], uint64_t now, uint64_t max_age,
    const uint8_t *body, size_t len);

/*
 * Responder, owner consented: the ACCEPT body (VEIL_ACCEPT_BODY bytes), to
 * be sealed under the epoch-0 r2i key (seq 0) and sent to the initiator's
 * inbox.  my_sk is the identity secret key of a->my_pk (INVAL if not):
 * the root mixes DH(e_A, E_B), DH(e_A, KP_B) and DH(sk_A, E_B).  *pair gets
 * tx = r2i (the initiator's key period), rx = i2r (ours), both anchored at
 * the period of t_B and moved to clk (ready to arm).  -> ACCEPTED.
 * Errors: STATE, INVAL, CRYPTO (a low-order key: an all-zero DH), RATCHET.
 */
int veil_agree_accept(struct veil_agree *a, const uint8_t my_sk[VEIL_KEY_BYTES],
    const struct veil_inbox *my_inbox, const struct veil_clock *clk,
    uint8_t *body, size_t *len, struct veil_pair *pair);
/* Responder, owner refused: -> REJECTED, secrets wiped.  Nothing is sent
 * (silence gives a forwarded-card holder no signal). */
int veil_agree_reject(struct veil_agree *a);

/*
 * Initiator: ACCEPT body opened under the epoch-0 r2i key.  my_sk is the
 * identity secret key of a->my_pk (INVAL if not).  On success ->
 * ESTABLISHED, *pair filled (tx = i2r, rx = r2i, moved to clk) and
 * out/out_type = the CONFIRM body, to seal under pair->tx.  On an HS
 * mismatch -> FAILED, returns VEIL_ERR_SECRET and out/out_type = the FAIL
 * body, to seal under the epoch-0 i2r key.  out holds VEIL_AGREE_BODY_MAX.
 */
int veil_agree_on_accept(struct veil_agree *a, const uint8_t my_sk[VEIL_KEY_BYTES],
    const struct veil_clock *clk, const uint8_t *body, size_t len,
    struct veil_pair *pair, uint8_t *out, size_t *outlen, uint8_t *out_type);

/*
 * Responder: the requester proves its key by a frame under pair->rx, the
 * chain only the holder of sk_B can derive.  Call on_confirm for a CONFIRM
 * opened under pair->rx (body = H_S("veil-confirm-v2" || T2), else FAILED
 * with VEIL_ERR_SECRET), on_chain_frame for any other frame opened there
 * first (the CONFIRM was lost).  Both -> ESTABLISHED.  Never call them for
 * a frame under an epoch-0 key: K proves nothing.
 */
int veil_agree_on_confirm(struct veil_agree *a, const uint8_t *body, size_t len);
int veil_agree_on_chain_frame(struct veil_agree *a);
/* Responder awaiting confirmation: FAIL body (one byte) opened under the
 * epoch-0 i2r key.  -> FAILED. */
int veil_agree_on_fail(struct veil_agree *a, const uint8_t *body, size_t len);

void veil_agree_wipe(struct veil_agree *a);
/* Stored form; unpack returns VERSION for protocol version 1's. */
#define VEIL_AGREE_PACKED_MAX 1024
int veil_agree_pack(const struct veil_agree *a, uint8_t *out, size_t outlen);
int veil_agree_unpack(struct veil_agree *a, const uint8_t *in, size_t len);

#ifdef __cplusplus
}
#endif
#endif
