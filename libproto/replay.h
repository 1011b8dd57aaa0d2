/* libveil replay: per-direction sliding windows and the O(1) sender lookup table. */
#ifndef VEIL_REPLAY_H
#define VEIL_REPLAY_H

#include "frame.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VEIL_WINDOW_BITS 128
#define VEIL_LOOKAHEAD 16	/* default number of future tags armed per direction */

/*
 * Resync landmarks (protocol.md 2.1): besides its regular range, every
 * receive direction arms one far-ahead seq per level k, a multiple of
 * 2^(BASE + STEP * k), so that a sender that lost more than the lookahead
 * can jump onto one with veil_resync_seq().  Costs VEIL_RESYNC_LEVELS tags
 * per direction.
 */
#define VEIL_RESYNC_LEVELS 5
#define VEIL_RESYNC_BASE_BITS 8
#define VEIL_RESYNC_STEP_BITS 3
/* The top stride, 2^20: every receiver's L_4 is a multiple of it. */
#define VEIL_RESYNC_TOP (UINT64_C(1) << (VEIL_RESYNC_BASE_BITS + \
    VEIL_RESYNC_STEP_BITS * (VEIL_RESYNC_LEVELS - 1)))

/*
 * Clock landmarks (protocol.md 2.1): the ladder is bounded, and a sender
 * whose rungs were all lost (the receiver away, nobody holding its topic)
 * ends beyond the highest one.  So the key of a period is also cut into
 * slots of VEIL_CLOCK_SLOT seconds from the period's start, slot j having
 * the landmark C(j) = VEIL_CLOCK_BASE + j * VEIL_CLOCK_STRIDE; a receive
 * direction arms the slots around the receiver's clock (up to
 * VEIL_CLOCK_ARMED of them, veil_rx_clock) and a sender beyond the ladder
 * seals at its own slot's (veil_txchain_clock_seq, chain.h).  The base lies
 * above any sequence number ordinary counting and the ladder reach within
 * a period (at most one jump of at most 2^20 a second: 2^48 is 8 years
 * of them), the stride above anything a sender can count or jump within
 * one slot (64 jumps of 2^20 and 2^31 frames), so a sender that used slot
 * j's landmark is below slot j + 1's again.  A 30-day period has 40,500
 * slots: every C(j) lies below 2^49.
 */
#define VEIL_CLOCK_SLOT 64u
#define VEIL_CLOCK_BASE (UINT64_C(1) << 48)
#define VEIL_CLOCK_STRIDE (UINT64_C(1) << 32)
#define VEIL_CLOCK_ARMED 3
/* C(slot), or 0 when slot is beyond any period (slot >= 2^16). */
uint64_t veil_clock_seq(uint64_t slot);
/* 1 if seq is some C(j) (and *slot = j when slot is not NULL), else 0. */
int veil_clock_landmark(uint64_t seq, uint64_t *slot);
/* Slots in a period of plen seconds: ceil(plen / VEIL_CLOCK_SLOT). */
uint64_t veil_clock_slots(uint32_t plen);

/* Anti-replay window (RFC 6479 style): top = highest accepted seq + 1
 * (0: nothing accepted yet); bit i of map = seq (top - 1 - i) accepted. */
struct veil_window {
	uint64_t top;
	uint64_t map[VEIL_WINDOW_BITS / 64];
};
void veil_window_init(struct veil_window *w);
/* 0 if seq is acceptable, VEIL_ERR_REPLAY if seen or older than the window. */
int veil_window_check(const struct veil_window *w, uint64_t seq);
/* Marks seq accepted (call after authentication). */
int veil_window_mark(struct veil_window *w, uint64_t seq);

/*
 * Tag table: maps the leading VEIL_TAG_BYTES of an expected nonce to
 * (owner, seq).  Owners are opaque to the library (the daemon encodes a
 * contact and a key slot).  Open addressing, grows as needed.
 */
struct veil_tagtab;
struct veil_tagtab *veil_tagtab_new(size_t hint);
void veil_tagtab_free(struct veil_tagtab *t);
/* DUPLICATE if the tag is already present (for any owner); owner
 * UINT64_MAX is reserved (INVAL). */
int veil_tagtab_put(struct veil_tagtab *t, const uint8_t tag[VEIL_TAG_BYTES], uint64_t owner, uint64_t seq);
/* 0 and fills owner/seq, or VEIL_ERR_INVAL when absent. */
int veil_tagtab_get(const struct veil_tagtab *t, const uint8_t tag[VEIL_TAG_BYTES], uint64_t *owner, uint64_t *seq);
int veil_tagtab_del(struct veil_tagtab *t, const uint8_t tag[VEIL_TAG_BYTES]);
size_t veil_tagtab_count(const struct veil_tagtab *t);

/* One receive key (a key period of a chain, chain.h, or an agreement's
 * epoch-0 key): key, window, and which sequence numbers are armed
 * in a tag table.  Armed = every seq in [max(0, top - WINDOW), top + lookahead)
 * not yet accepted, plus the resync landmarks L_0 < ... < L_4 of
 * h = top + lookahead: L_0 the smallest multiple of 2^8 >= h, L_k the
 * smallest multiple of 2^(8 + 3k) > L_(k-1) (those that fit in 64 bits),
 * plus the clock landmarks C(j), clk_first <= j < clk_first + clk_count,
 * that are >= h (one below h is in the regular range or too old). */
struct veil_rxdir {
	struct veil_dirkey k;
	struct veil_window w;
	uint64_t period;	/* the key period of k (chain.h); 0 for a single key */
	uint32_t clk_first;	/* clock slots armed (veil_rx_clock), not stored: */
	uint8_t clk_count;	/* the receiver's clock decides them (0: none) */
	uint8_t live;
};
int veil_rx_arm(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner, unsigned lookahead);
void veil_rx_disarm(struct veil_tagtab *t, const struct veil_rxdir *d, unsigned lookahead);
/* After a frame with seq opened under d: marks the window, removes its tag,
 * arms the new lookahead and disarms seqs that fell out of the window. */
int veil_rx_commit(struct veil_tagtab *t, struct veil_rxdir *d, uint64_t owner, uint64_t seq, unsigned lookahead);
/* Arms the clock landmarks of slots first .. first + count - 1 for d
 * instead of its present ones (count <= VEIL_CLOCK_ARMED, 0: none),
 * touching only the tags that change; without a table (t NULL) it only
 * records them.  veil_rxchain_advance() calls it with the receiver's
 * clock.  INVAL for a count above VEIL_CLOCK_ARMED. */
int veil_rx_clock(struct veil_tagtab *t, struct veil_rxdir *d, uint64_t owner,
    uint32_t first, unsigned count, unsigned lookahead);

/*
 * Sender side of the resync: the seq to seal the attempt-th retransmission
 * (attempt >= 1) under, the smallest multiple of
 * 2^(BASE + STEP * min(attempt - 1, LEVELS - 1)) that is >= next_seq.  The
 * caller sets its counter to it (skipping seqs is always safe).  attempt 0
 * gives next_seq; near UINT64_MAX the largest stride whose multiple fits is
 * used, or none.  Beyond the ladder (attempt > LEVELS) a sender takes the
 * clock landmark instead: veil_txchain_resync() in chain.h does both.
 */
uint64_t veil_resync_seq(uint64_t next_seq, unsigned attempt);

#ifdef __cplusplus
}
#endif
#endif
