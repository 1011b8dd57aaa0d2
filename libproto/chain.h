/* libveil chain: the key chain of one direction, ratcheted forward with time (protocol.md 2.1). */
#ifndef VEIL_CHAIN_H
#define VEIL_CHAIN_H

#include "replay.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Key period Pd and epoch length L, seconds (protocol.md 2.1, 5). */
#define VEIL_PERIOD_MIN 1u
#define VEIL_PERIOD_MAX 2592000u	/* 30 days */
/* 1 if plen is a valid key period (1..VEIL_PERIOD_MAX). */
int veil_period_valid(uint32_t plen);
/* floor(t / plen): the key period (or epoch) that contains t; 0 if plen is 0. */
uint64_t veil_period_of(uint64_t t, uint32_t plen);

/*
 * At most this many ratchet steps (root derivations) per call, so that a
 * clock far ahead cannot stall the caller: 2^20 steps are about three
 * million BLAKE2b compressions, a second or two; 2^20 periods of one second
 * are 12 days, of one hour 119 years.  A chain further behind is moved
 * this far, and the call returns VEIL_ERR_RATCHET: call again.
 */
#define VEIL_RATCHET_MAX_STEPS (UINT64_C(1) << 20)

/*
 * The caller's clock for one call: now in Unix seconds, and the receive
 * tolerances around a period boundary (protocol.md 2.1).  A receive chain
 * in period p keeps p - 1's key while now < start(p) + grace, and holds
 * p + 1's key once now >= start(p + 1) - lead.  veild uses
 * grace = lead = min(Pd / 4, 120).
 */
struct veil_clock {
	uint64_t now;
	uint32_t grace;
	uint32_t lead;
};

/*
 * Transmit chain of one direction: the key of the current period only.
 * Moving to a later period derives D_(p+1) = KDF(D_p, 3, "veildir2") as
 * many times as needed and wipes every root it passes; seq restarts at 0.
 * It never moves backwards.  bind is the chain's re-key binding key
 * B = KDF(R_0, 4, "veildir2") of its first root R_0 (protocol.md 6): it
 * stays for the chain's life and is the only value both sides can still
 * agree on when an UPDATE-ACK arrives periods after it was made.
 */
struct veil_txchain {
	struct veil_dirkey k;		/* root D_p of `period`, key, nkey, dir */
	uint8_t bind[VEIL_KEY_BYTES];	/* B */
	uint64_t period;		/* p */
	uint32_t plen;			/* Pd: the receiver's key period, seconds */
	uint64_t seq;			/* next sequence number in period p */
	uint8_t live;
};

/* A chain whose root for period `period` is root (R_0).  INVAL for a bad
 * dir or plen, or a period whose start does not fit in 64 bits. */
int veil_txchain_init(struct veil_txchain *c, const uint8_t root[VEIL_KEY_BYTES],
    uint8_t dir, uint32_t plen, uint64_t period);
/*
 * Moves the chain to floor(now / plen) if that is later.  Returns 0 when it
 * stays, 1 when it moved (the caller persists the chain), VEIL_ERR_RATCHET
 * when it moved VEIL_RATCHET_MAX_STEPS and is still behind (call again),
 * STATE for a chain that is not live.  Seal only after a call that did not
 * fail, under c->k with seq c->seq.
 */
int veil_txchain_advance(struct veil_txchain *c, uint64_t now);
void veil_txchain_wipe(struct veil_txchain *c);

/*
 * The clock landmark (replay.h) of the chain's period at now: C(j), j the
 * slot floor((now - start(period)) / VEIL_CLOCK_SLOT), clamped into the
 * period (a clock that went back takes slot 0).  0 for a chain that is not
 * live or an invalid one.
 */
uint64_t veil_txchain_clock_seq(const struct veil_txchain *c, uint64_t now);
/*
 * The seq to seal the attempt-th sending of something under (0: the
 * first, c->seq itself), the sender's half of protocol.md 2.1: attempts
 * 1 .. VEIL_RESYNC_LEVELS climb the resync ladder (veil_resync_seq), and
 * so do later ones while c->seq <= VEIL_RESYNC_TOP (the top rung reaches
 * any receiver from there); beyond, where the rungs may all have been
 * lost, they take the clock landmark of now when it is not below c->seq,
 * and c->seq otherwise (the landmark of this slot was used: the next
 * slot's is ahead again).  Never below c->seq, so no seq is sealed twice;
 * the caller sets c->seq to it.  The convergence argument needs at most
 * one ladder jump per second (the caller's gate); a clock landmark
 * (veil_clock_landmark) needs none, each is used once.
 */
uint64_t veil_txchain_resync(const struct veil_txchain *c, uint64_t now,
    unsigned attempt);

/*
 * Receive chain of one direction: up to three keys, period p - 1 (grace),
 * p (always) and p + 1 (lead), each with its replay window.  The key of
 * period q lives in slot[q % 3] for its whole life, so a slot's index and
 * its tags in a tag table do not change when the chain moves: an owner
 * for slot i stays valid as long as slot i's period does.  A slot that is
 * not live is all zero.
 */
#define VEIL_RX_SLOTS 3
struct veil_rxchain {
	struct veil_rxdir slot[VEIL_RX_SLOTS];
	uint8_t bind[VEIL_KEY_BYTES];	/* B, as in the transmit chain */
	uint64_t period;		/* p: slot[p % 3] is live */
	uint32_t plen;			/* Pd: our own key period, seconds */
	uint8_t dir;
	uint8_t live;
};

int veil_rxchain_init(struct veil_rxchain *c, const uint8_t root[VEIL_KEY_BYTES],
    uint8_t dir, uint32_t plen, uint64_t period);
/*
 * Moves the chain to period max(p, floor(now / plen)) and applies grace and
 * lead: keys that leave are wiped (their windows with them), keys that
 * enter are derived with empty windows; a slot that stays keeps its window.
 * p + 1's key, once held, is kept even if the clock goes back (dropping it
 * would forget which of its sequence numbers were accepted).
 *
 * With a tag table t, the table follows: every slot that leaves is
 * disarmed before it is wiped, every slot that enters is armed as
 * owner_base + i (i its slot index), as veil_rxchain_arm() would.  The
 * table must hold the chain as veil_rxchain_arm() armed it.  Without one
 * (t NULL), disarm the whole chain before and arm it after, or keep no
 * table.
 *
 * It also moves every live key's clock landmarks (replay.h) to the slots
 * a sender whose clock is at most VEIL_CLOCK_SLOT seconds from now can be
 * in: for the key of period q, the slots of [now - W, now + W] within q
 * (s - 1, s and s + 1 for the slot s of now in the middle of a period; the
 * first slot for a lead key, the last for a grace key, within W of the
 * boundary).  They are not stored (and do not count as a change): after
 * an unpack they are set again by the next call.
 *
 * Returns 0 (nothing changed), 1 (changed: persist), or an error after
 * which the chain is still consistent: NOMEM (the table could not grow;
 * arm again later), RATCHET (moved VEIL_RATCHET_MAX_STEPS periods and is
 * still behind: call again), STATE (not live), INVAL.
 */
int veil_rxchain_advance(struct veil_rxchain *c, const struct veil_clock *clk,
    struct veil_tagtab *t, uint64_t owner_base, unsigned lookahead);
/* The live slot holding period q's key, or NULL. */
struct veil_rxdir *veil_rxchain_find(struct veil_rxchain *c, uint64_t q);
/* Arms every live slot i as owner_base + i (veil_rx_arm), or disarms them. */
int veil_rxchain_arm(struct veil_tagtab *t, const struct veil_rxchain *c,
    uint64_t owner_base, unsigned lookahead);
void veil_rxchain_disarm(struct veil_tagtab *t, const struct veil_rxchain *c,
    unsigned lookahead);
void veil_rxchain_wipe(struct veil_rxchain *c);

/* B = KDF(root, 4, "veildir2"), the binding key of a chain whose first
 * root is root (protocol.md 6). */
void veil_chain_bind(uint8_t bind[VEIL_KEY_BYTES], const uint8_t root[VEIL_KEY_BYTES]);

#ifdef __cplusplus
}
#endif
#endif
