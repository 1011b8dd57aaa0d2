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

/* A receive direction: key, window, and which sequence numbers are armed
 * in a tag table.  Armed = every seq in [max(0, top - WINDOW), top + lookahead)
 * not yet accepted, plus the resync landmarks L_0 < ... < L_4 of
 * h = top + lookahead: L_0 the smallest multiple of 2^8 >= h, L_k the
 * smallest multiple of 2^(8 + 3k) > L_(k-1) (those that fit in 64 bits). */
struct veil_rxdir {
	struct veil_dirkey k;
	struct veil_window w;
	uint8_t live;
};
int veil_rx_arm(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner, unsigned lookahead);
void veil_rx_disarm(struct veil_tagtab *t, const struct veil_rxdir *d, unsigned lookahead);
/* After a frame with seq opened under d: marks the window, removes its tag,
 * arms the new lookahead and disarms seqs that fell out of the window. */
int veil_rx_commit(struct veil_tagtab *t, struct veil_rxdir *d, uint64_t owner, uint64_t seq, unsigned lookahead);

/*
 * Sender side of the resync: the seq to seal the attempt-th retransmission
 * (attempt >= 1) under, the smallest multiple of
 * 2^(BASE + STEP * min(attempt - 1, LEVELS - 1)) that is >= next_seq.  The
 * caller sets its counter to it (skipping seqs is always safe).  attempt 0
 * gives next_seq; near UINT64_MAX the largest stride whose multiple fits is
 * used, or none.
 */
uint64_t veil_resync_seq(uint64_t next_seq, unsigned attempt);

/*
 * Clock landmarks (protocol.md 2.1): the seq hour << 32, hour = Unix time
 * / 3600.  The ladder above is bounded: a sender whose frames are lost
 * outright (not delayed) through every level climbs past the receiver's
 * highest landmark for good.  So beyond the last level the sender stops
 * climbing and jumps, at most once an hour, to the current hour's clock
 * landmark; every receive direction keeps the previous, the current and
 * the next hour's armed (3 tags), whatever its window, which also covers
 * an hour of clock skew.  2^32 frames an hour is out of reach.
 */
#define VEIL_CLOCK_SHIFT 32
/* hour << 32, or 0 when that does not fit (hour >= 2^32: year 492,000). */
uint64_t veil_clock_seq(uint64_t hour);
/* Arms the clock landmarks of hours hour-1 .. hour+1 for d, those above
 * its regular range and landmarks (lookahead as for veil_rx_arm). */
int veil_rx_arm_clock(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner,
    uint64_t hour, unsigned lookahead);
/* Removes what veil_rx_arm_clock(hour) armed for owner, except seqs the
 * regular arming now holds (the window may have moved since). */
void veil_rx_disarm_clock(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner,
    uint64_t hour, unsigned lookahead);

#ifdef __cplusplus
}
#endif
#endif
