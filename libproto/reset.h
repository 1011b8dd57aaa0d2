/* libveil reset: the contact reset (protocol.md 6.1) — a pair's keys made anew after one side restored a backup, proven by both identity keys and the pair's secret, never sealed under a key from before the backup. */
#ifndef VEIL_RESET_H
#define VEIL_RESET_H

#include "agree.h"
#include "pair.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * X restored a backup: its chains are stale (the lost device may have
 * sent on, healed, moved its inbox), and anything it sealed under them
 * might reuse a key the lost one used.  So X sends a RESET sealed to the
 * peer Y's identity key (a sealed frame, like a REQUEST), authenticated by
 * the static DH of the two identity keys and the pair's secret S; Y
 * answers a RESET-ACK sealed to X's identity key; both derive new chains
 * from a DH of fresh ephemeral keys mixed with both identity keys (the
 * agreement's three terms).  Bodies:
 *
 * RESET     = u8 version (2) || KP_X || E_X || u64 t_X || u32 L_X || u32 P_X
 *             || J_X || mac                                 (145 bytes)
 * RESET-ACK = u8 version (2) || KP_Y || T_R || E_Y || u32 L_Y || u32 P_Y
 *             || J_Y || mac                                 (169 bytes)
 */
#define VEIL_RESET_BODY		145
#define VEIL_RESET_ACK_BODY	169
#define VEIL_RESET_PACKED_MAX	320
/* A RESET dated more than this ahead of the receiver's clock is refused. */
#define VEIL_RESET_FUTURE	86400

/* The restored side's reset in progress. */
struct veil_reset {
	uint8_t e_sk[VEIL_KEY_BYTES];		/* e_X, wiped once the ACK came */
	uint8_t e_pk[VEIL_KEY_BYTES];		/* E_X */
	uint64_t t;				/* t_X */
	struct veil_inbox my_inbox;		/* J_X, L_X, P_X announced */
	uint8_t body[VEIL_RESET_BODY];		/* the RESET, resent as it is */
	uint8_t tr[VEIL_KEY_BYTES];		/* T_R */
};

/*
 * X: a RESET for the peer of p (established), announcing new_inbox (where
 * the peer shall send from now on), at time now.  The body is r->body,
 * to be sealed to p->peer_pk (VEIL_T_RESET) and sent to the peer's topic;
 * resend it as it is until the ACK comes.  p is not changed.
 */
int veil_reset_start(struct veil_reset *r, const struct veil_identity *me,
    const struct veil_pair *p, const struct veil_inbox *new_inbox, uint64_t now);

/* The sender's identity key of a RESET or RESET-ACK body, before anything
 * is verified (to find the contact).  FORMAT for a body of another
 * length or version. */
int veil_reset_peek(const uint8_t *body, size_t len, int ack,
    uint8_t pk[VEIL_KEY_BYTES]);

/*
 * Y: a RESET from the peer of p.  last_t and last_tr are the time and
 * transcript of the last RESET accepted from it (0 and NULL: none).
 * Returns 0 for a new one: p holds new chains (tx towards X under X's
 * period, rx under ours, both from t_X's periods moved to clk),
 * peer_inbox is X's announced one, my_inbox unchanged, no pending update
 * nor update counters left; ack is the RESET-ACK to seal to X and send to
 * its new topic; *t and tr identify it.  Returns 1 for a copy of the last
 * one accepted (nothing changed: answer with the stored ACK).  Errors, in
 * the order checked: FORMAT, STATE (not from the peer's key), SECRET (the
 * mac does not verify), FUTURE, STALE (older than the last one), REPLAY
 * (as old, another one), CRYPTO (a low-order point).
 */
int veil_reset_on_request(struct veil_pair *p, const struct veil_identity *me,
    const struct veil_clock *clk, const uint8_t *body, size_t len,
    uint64_t last_t, const uint8_t *last_tr, uint64_t *t,
    uint8_t tr[VEIL_KEY_BYTES], uint8_t ack[VEIL_RESET_ACK_BODY]);

/*
 * X: the RESET-ACK for r.  0: p holds the new chains (tx under the peer's
 * announced period, rx under ours), peer_inbox is the peer's announced
 * one, my_inbox r's, no update state left; r is wiped.  Errors: FORMAT,
 * STATE (another sender, or not the ACK of r), SECRET, CRYPTO.
 */
int veil_reset_on_ack(struct veil_pair *p, const struct veil_identity *me,
    struct veil_reset *r, const struct veil_clock *clk, const uint8_t *body,
    size_t len);

/* Versioned serialisation (format 1) for the store. */
int veil_reset_pack(const struct veil_reset *r, uint8_t *out, size_t outlen);
int veil_reset_unpack(struct veil_reset *r, const uint8_t *in, size_t len);
void veil_reset_wipe(struct veil_reset *r);

#ifdef __cplusplus
}
#endif
#endif
