/* libveil update: the contact update (protocol.md 6) — CCM as JSON, UPDATE, UPDATE-ACK and UPDATE-DONE. */
#ifndef VEIL_UPDATE_H
#define VEIL_UPDATE_H

#include "ids.h"
#include "pair.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VEIL_UPDATE_ALG "X25519-XChaCha20Poly1305-BLAKE2b"
#define VEIL_UPDATE_BODY_MAX 2048

/* The paper's Contact Configuration Message, plus Seq, Eph, Epoch and
 * Rekey (protocol.md 6). */
struct veil_ccm {
	uint8_t ocid[VEIL_SEED_BYTES];		/* "OCID": the sender's seed being replaced */
	struct veil_inbox new_inbox;		/* "NewCID", "Epoch", "Rekey" */
	uint8_t pubkey[VEIL_KEY_BYTES];		/* "PubKey" */
	char cname[VEIL_NAME_MAX + 1];		/* "CName" */
	uint8_t secret[VEIL_KEY_BYTES];		/* "Secret": SH */
	uint8_t has_new_secret;
	uint8_t new_secret[VEIL_KEY_BYTES];	/* "NewSecret" (optional) */
	char steg_key[17];			/* "StegKey" */
	char alg[64];				/* "Alg" */
	uint64_t seq;				/* "Seq" */
	uint8_t eph[VEIL_KEY_BYTES];		/* "Eph" */
	uint8_t name_changed;			/* veil_update_on_update: CName is new */
};

/*
 * Sender X: body of an UPDATE announcing new_inbox (a new seed, or the same
 * with a new epoch length or key period, or nothing new: a plain re-key),
 * sealed under pair->tx and sent to the peer's current topic.  OCID is
 * p->my_inbox.seed.  Starts a new update (fresh seq and ephemeral key)
 * unless one is pending, in which case the pending one is rebuilt byte for
 * byte (retransmission: new_inbox and rekey_secret are ignored, my_pk and
 * my_name must be the same as the first time).  *body is malloc'd.
 */
int veil_update_build(struct veil_pair *p, const uint8_t my_pk[VEIL_KEY_BYTES],
    const char *my_name, const struct veil_inbox *new_inbox, int rekey_secret,
    char **body, size_t *len);

/*
 * Receiver Y: an UPDATE body opened under pair->rx, at time now.  peer_name
 * (may be NULL) is the name Y shows for X: ccm->name_changed says whether
 * CName differs from it.  Returns 0 for a new update (ccm filled;
 * p->peer_inbox is the new one; the re-keyed transmit chain waits in
 * tx_next, period floor(now / Rekey), tx is unchanged), 1 for a
 * retransmission of the last accepted one (nothing changes); in both cases
 * *ack (malloc'd) is the UPDATE-ACK body to seal under pair->tx and send
 * to X's new topic.  A new update first switches to a waiting tx_next (X
 * got our previous ACK).  Errors, in the order checked: FORMAT (not a
 * CCM), SECRET (wrong secret hash), STALE (older seq), REPLAY (same seq,
 * another Eph), STATE (PubKey is not X's key, or OCID not X's seed),
 * CRYPTO (a low-order Eph).
 */
int veil_update_on_update(struct veil_pair *p, const char *peer_name, uint64_t now,
    const char *body, size_t len, struct veil_ccm *ccm, char **ack, size_t *acklen);

/*
 * Sender X: UPDATE-ACK body opened under pair->rx.  The new receive chain
 * starts at the ACK's Period with our new key period and is moved to clk;
 * the old rx is kept as rx_prev (the peer seals under it until our
 * UPDATE-DONE); my_inbox becomes the announced one.  The tag table must be
 * re-armed around this call (veil_pair_disarm before, veil_pair_arm after):
 * the old rx_prev is wiped and rx moves.  A Period more than
 * VEIL_RATCHET_MAX_STEPS behind clk leaves the new chain that many periods
 * on, still behind: veil_pair_advance() moves it the rest of the way.
 * Errors: FORMAT, STATE (nothing pending or another seq), CRYPTO.
 */
int veil_update_on_ack(struct veil_pair *p, const struct veil_clock *clk,
    const char *body, size_t len);

/*
 * Sender, after the ACK: the UPDATE-DONE body (step 3, not in the paper)
 * telling the peer we hold the new key, so it may switch its tx to it.
 * Sealed under pair->tx.  Send it after the ACK, and again whenever a
 * frame still arrives under rx_prev (the DONE was lost).  STATE unless
 * our last UPDATE was acknowledged (one was sent, none is pending).
 */
int veil_update_done_build(const struct veil_pair *p, char **body, size_t *len);

/* Receiver: UPDATE-DONE body.  0: tx switched to tx_next (advance it before
 * sealing); 1: a copy (switched already).  Errors: FORMAT, STATE (not the
 * seq of the last accepted UPDATE). */
int veil_update_on_done(struct veil_pair *p, const char *body, size_t len);

/* Parsing only (fuzzing, tools). */
int veil_ccm_parse(struct veil_ccm *ccm, const char *body, size_t len);

#ifdef __cplusplus
}
#endif
#endif
