/* libveil update: the contact update (paper Fig. 4) — CCM as JSON, UPDATE and UPDATE-ACK. */
#ifndef VEIL_UPDATE_H
#define VEIL_UPDATE_H

#include "ids.h"
#include "pair.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VEIL_UPDATE_ALG "X25519-XChaCha20Poly1305-BLAKE2b"
#define VEIL_UPDATE_BODY_MAX 2048

/* The paper's Contact Configuration Message, plus Seq and Eph. */
struct veil_ccm {
	struct veil_id ocid;			/* "OCID": sender's inbox being replaced */
	struct veil_id new_cid;			/* "NewCID" */
	uint8_t pubkey[VEIL_KEY_BYTES];		/* "PubKey" */
	char cname[VEIL_NAME_MAX + 1];		/* "CName" */
	uint8_t secret[VEIL_KEY_BYTES];		/* "Secret": SH */
	uint8_t has_new_secret;
	uint8_t new_secret[VEIL_KEY_BYTES];	/* "NewSecret" (optional) */
	char steg_key[17];			/* "StegKey" */
	char alg[64];				/* "Alg" */
	uint64_t seq;				/* "Seq" */
	uint8_t eph[VEIL_KEY_BYTES];		/* "Eph" */
};

/*
 * Sender: body of an UPDATE announcing new_cid, sealed under pair->tx and
 * sent to the peer's (unchanged) inbox.  Starts a new update (fresh seq and
 * ephemeral key) unless one is pending, in which case the pending one is
 * rebuilt byte for byte (retransmission).  *body is malloc'd.
 */
int veil_update_build(struct veil_pair *p, const uint8_t my_pk[VEIL_KEY_BYTES],
    const char *my_name, const struct veil_id *old_cid, const struct veil_id *new_cid,
    int rekey_secret, char **body, size_t *len);

/*
 * Receiver: an UPDATE body opened under pair->rx.  ocid_known is the
 * sender's inbox as we know it.  Returns 0 for a new update (ccm filled;
 * the re-keyed transmit key waits in tx_next, tx is unchanged), 1 for a
 * retransmission of the last accepted one (nothing changes); in both cases
 * *ack (malloc'd) is the UPDATE-ACK body to seal under pair->tx and send to
 * ccm->new_cid.  A new update first switches to a waiting tx_next (the
 * peer got our previous ACK).  Errors, each distinct: FORMAT (not a CCM),
 * SECRET (wrong secret hash), REPLAY (same seq, different content), STALE
 * (older seq), STATE (OCID unknown).
 */
int veil_update_on_update(struct veil_pair *p, const struct veil_id *ocid_known,
    const char *body, size_t len, struct veil_ccm *ccm, char **ack, size_t *acklen);

/* Sender: UPDATE-ACK body opened under pair->rx.  rx re-keyed (old key kept
 * in rx_prev: the peer seals under it until it gets our UPDATE-DONE).
 * Errors: FORMAT, STATE (nothing pending or other seq). */
int veil_update_on_ack(struct veil_pair *p, const char *body, size_t len);

/*
 * Sender, after the ACK: the UPDATE-DONE body (step 3, not in the paper)
 * telling the peer we hold the new key, so it may switch its tx to it.
 * Sealed under pair->tx.  Send it after the ACK, and again whenever a
 * frame still arrives under rx_prev (the DONE was lost).  STATE unless
 * our last UPDATE was acknowledged (one was sent, none is pending).
 */
int veil_update_done_build(const struct veil_pair *p, char **body, size_t *len);

/* Receiver: UPDATE-DONE body.  0: tx switched to tx_next; 1: a copy (switched
 * already).  Errors: FORMAT, STATE (not the seq of the last accepted UPDATE). */
int veil_update_on_done(struct veil_pair *p, const char *body, size_t len);

/* Parsing only (fuzzing, tools). */
int veil_ccm_parse(struct veil_ccm *ccm, const char *body, size_t len);

#ifdef __cplusplus
}
#endif
#endif
