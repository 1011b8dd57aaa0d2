/* libveil replay: anti-replay windows, the tag table and the armed set of each receive direction. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "replay.h"

#define WORDS (VEIL_WINDOW_BITS / 64)

void
veil_window_init(struct veil_window *w)
{
	memset(w, 0, sizeof(*w));
}

int
veil_window_check(const struct veil_window *w, uint64_t seq)
{
	uint64_t d;

	if (w == NULL)
		return VEIL_ERR_INVAL;
	/* top = seq + 1 must stay representable; no sender gets there. */
	if (seq == UINT64_MAX)
		return VEIL_ERR_REPLAY;
	if (seq >= w->top)
		return VEIL_OK;
	d = w->top - 1 - seq;
	if (d >= VEIL_WINDOW_BITS)
		return VEIL_ERR_REPLAY;
	if (w->map[d / 64] & ((uint64_t)1 << (d % 64)))
		return VEIL_ERR_REPLAY;
	return VEIL_OK;
}

/* Moves every bit i to i + n (older), dropping what leaves the window. */
static void
window_shift(struct veil_window *w, uint64_t n)
{
	unsigned words, bits;
	int i;

	if (n >= VEIL_WINDOW_BITS) {
		memset(w->map, 0, sizeof(w->map));
		return;
	}
	words = (unsigned)(n / 64);
	bits = (unsigned)(n % 64);
	for (i = WORDS - 1; i >= 0; i--) {
		uint64_t v = 0;

		if (i - (int)words >= 0) {
			v = w->map[i - words] << bits;
			if (bits != 0 && i - (int)words - 1 >= 0)
				v |= w->map[i - words - 1] >> (64 - bits);
		}
		w->map[i] = v;
	}
}

int
veil_window_mark(struct veil_window *w, uint64_t seq)
{
	uint64_t d;
	int rc;

	if ((rc = veil_window_check(w, seq)) < 0)
		return rc;
	if (seq >= w->top) {
		/* top == 0 means an empty map, so any shift is harmless. */
		window_shift(w, seq + 1 - w->top);
		w->top = seq + 1;
		w->map[0] |= 1;
		return VEIL_OK;
	}
	d = w->top - 1 - seq;
	w->map[d / 64] |= (uint64_t)1 << (d % 64);
	return VEIL_OK;
}

/*
 * Tag table.  Tags are leading bytes of keyed BLAKE2b outputs, so they are
 * already uniformly distributed and their bytes serve as the hash; a remote
 * party cannot choose tags that get inserted.  Linear probing with
 * backward-shift deletion keeps probe chains short without tombstones.
 */
/* 24 bytes: at 10,000 contacts x 21 armed tags the table is most of the
 * daemon's memory.  owner1 = owner + 1, so 0 marks an empty slot. */
struct slot {
	uint64_t key;
	uint64_t owner1;
	uint64_t seq;
};
#define SLOT_USED(sl) ((sl).owner1 != 0)

struct veil_tagtab {
	struct slot *s;
	size_t cap;		/* power of two */
	size_t count;
};

#define TAGTAB_MIN 16

static uint64_t
tag_key(const uint8_t tag[VEIL_TAG_BYTES])
{
	uint64_t k;

	memcpy(&k, tag, sizeof(k));
	return k;
}

static size_t
tag_home(const struct veil_tagtab *t, uint64_t key)
{
	/* Fold the high half in so that the slot does not depend on
	 * the byte order alone. */
	return (size_t)((key ^ (key >> 32)) & (t->cap - 1));
}

/* Index of key, or of the empty slot where it would go. */
static size_t
tag_find(const struct veil_tagtab *t, uint64_t key)
{
	size_t i = tag_home(t, key);

	while (SLOT_USED(t->s[i]) && t->s[i].key != key)
		i = (i + 1) & (t->cap - 1);
	return i;
}

struct veil_tagtab *
veil_tagtab_new(size_t hint)
{
	struct veil_tagtab *t;
	size_t cap = TAGTAB_MIN;

	while (cap * 3 < hint * 4 && cap < ((size_t)1 << 40))
		cap *= 2;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if ((t->s = calloc(cap, sizeof(*t->s))) == NULL) {
		free(t);
		return NULL;
	}
	t->cap = cap;
	return t;
}

void
veil_tagtab_free(struct veil_tagtab *t)
{
	if (t == NULL)
		return;
	free(t->s);
	free(t);
}

static int
tagtab_grow(struct veil_tagtab *t)
{
	struct veil_tagtab n;
	size_t i, j;

	if (t->cap > SIZE_MAX / 2 / sizeof(*t->s))
		return VEIL_ERR_NOMEM;
	n.cap = t->cap * 2;
	n.count = t->count;
	if ((n.s = calloc(n.cap, sizeof(*n.s))) == NULL)
		return VEIL_ERR_NOMEM;
	for (i = 0; i < t->cap; i++) {
		if (!SLOT_USED(t->s[i]))
			continue;
		j = tag_find(&n, t->s[i].key);
		n.s[j] = t->s[i];
	}
	free(t->s);
	*t = n;
	return VEIL_OK;
}

int
veil_tagtab_put(struct veil_tagtab *t, const uint8_t tag[VEIL_TAG_BYTES], uint64_t owner, uint64_t seq)
{
	uint64_t key;
	size_t i;
	int rc;

	if (t == NULL || tag == NULL || owner == UINT64_MAX)
		return VEIL_ERR_INVAL;
	key = tag_key(tag);
	i = tag_find(t, key);
	if (SLOT_USED(t->s[i]))
		return VEIL_ERR_DUPLICATE;
	/* Keep the load at or below 3/4: tags are uniform, so linear
	 * probing stays short, and memory matters more here. */
	if ((t->count + 1) * 4 > t->cap * 3) {
		if ((rc = tagtab_grow(t)) < 0)
			return rc;
		i = tag_find(t, key);
	}
	t->s[i].key = key;
	t->s[i].owner1 = owner + 1;
	t->s[i].seq = seq;
	t->count++;
	return VEIL_OK;
}

int
veil_tagtab_get(const struct veil_tagtab *t, const uint8_t tag[VEIL_TAG_BYTES], uint64_t *owner, uint64_t *seq)
{
	size_t i;

	if (owner != NULL)
		*owner = 0;
	if (seq != NULL)
		*seq = 0;
	if (t == NULL || tag == NULL)
		return VEIL_ERR_INVAL;
	i = tag_find(t, tag_key(tag));
	if (!SLOT_USED(t->s[i]))
		return VEIL_ERR_INVAL;
	if (owner != NULL)
		*owner = t->s[i].owner1 - 1;
	if (seq != NULL)
		*seq = t->s[i].seq;
	return VEIL_OK;
}

/* Empties slot i and pulls later members of its probe chain back. */
static void
tagtab_remove_at(struct veil_tagtab *t, size_t i)
{
	size_t mask = t->cap - 1, j = i, home;

	for (;;) {
		j = (j + 1) & mask;
		if (!SLOT_USED(t->s[j]))
			break;
		home = tag_home(t, t->s[j].key);
		/* Move j into the hole unless its home lies cyclically in
		 * (i, j]: then the hole is not on its probe path. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->s[i] = t->s[j];
			i = j;
		}
	}
	memset(&t->s[i], 0, sizeof(t->s[i]));
	t->count--;
}

int
veil_tagtab_del(struct veil_tagtab *t, const uint8_t tag[VEIL_TAG_BYTES])
{
	size_t i;

	if (t == NULL || tag == NULL)
		return VEIL_ERR_INVAL;
	i = tag_find(t, tag_key(tag));
	if (!SLOT_USED(t->s[i]))
		return VEIL_ERR_INVAL;
	tagtab_remove_at(t, i);
	return VEIL_OK;
}

size_t
veil_tagtab_count(const struct veil_tagtab *t)
{
	return t == NULL ? 0 : t->count;
}

/*
 * Armed set of a direction with window w: every seq in
 * [max(0, top - WINDOW), top + lookahead) not yet accepted.
 */
static uint64_t
armed_lo(uint64_t top)
{
	return top > VEIL_WINDOW_BITS ? top - VEIL_WINDOW_BITS : 0;
}

static uint64_t
armed_hi(uint64_t top, unsigned lookahead)
{
	return top > UINT64_MAX - lookahead ? UINT64_MAX : top + lookahead;
}

static int
seq_accepted(const struct veil_window *w, uint64_t seq)
{
	uint64_t d;

	if (seq >= w->top)
		return 0;
	d = w->top - 1 - seq;
	if (d >= VEIL_WINDOW_BITS)
		return 1;	/* too old counts as seen */
	return (w->map[d / 64] >> (d % 64)) & 1;
}

/*
 * Arms one seq.  Re-arming the same (owner, seq) is not an error, so arm
 * can be repeated.  A tag held by another entry (a 64-bit collision, or
 * the same root armed twice under two owners) is left alone and reported.
 */
static int
arm_one(struct veil_tagtab *t, const struct veil_dirkey *k, uint64_t owner,
    uint64_t seq)
{
	uint8_t tag[VEIL_TAG_BYTES];
	uint64_t o, s;
	int rc;

	veil_dirkey_tag(k, seq, tag);
	rc = veil_tagtab_put(t, tag, owner, seq);
	if (rc == VEIL_ERR_DUPLICATE &&
	    veil_tagtab_get(t, tag, &o, &s) == 0 && o == owner && s == seq)
		rc = VEIL_OK;
	sodium_memzero(tag, sizeof(tag));
	return rc;
}

/* Disarms one seq, only if the tag maps to that seq (and owner, if known):
 * a colliding entry of another direction stays. */
static void
disarm_one(struct veil_tagtab *t, const struct veil_dirkey *k, int check_owner,
    uint64_t owner, uint64_t seq)
{
	uint8_t tag[VEIL_TAG_BYTES];
	size_t i;

	veil_dirkey_tag(k, seq, tag);
	i = tag_find(t, tag_key(tag));
	if (SLOT_USED(t->s[i]) && t->s[i].seq == seq &&
	    (!check_owner || t->s[i].owner1 == owner + 1))
		tagtab_remove_at(t, i);
	sodium_memzero(tag, sizeof(tag));
}

/* Arms [lo, hi) except accepted seqs; keeps going past collisions so that
 * one bad tag does not cost the rest.  Stops at NOMEM. */
static int
arm_range(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner,
    uint64_t lo, uint64_t hi)
{
	uint64_t s;
	int rc, ret = VEIL_OK;

	for (s = lo; s < hi; s++) {
		if (seq_accepted(&d->w, s))
			continue;
		rc = arm_one(t, &d->k, owner, s);
		if (rc == VEIL_ERR_NOMEM)
			return rc;
		if (rc < 0)
			ret = rc;
	}
	return ret;
}

/*
 * Resync landmarks of a direction whose regular range ends at h: L_0 is the
 * smallest multiple of S_0 = 2^8 that is >= h, L_k the smallest multiple of
 * S_k = 2^(8 + 3k) that is > L_(k-1).  Strictly above the level below, not
 * merely >= h: otherwise a multiple of 2^20 at h would make all five
 * coincide at h and leave no landmark beyond it, so even a sender that
 * lost one frame more than the lookahead could never come back.  Chained,
 * L_k >= h + S_0 + ... + S_(k-1), and every L_k is a multiple of every
 * smaller stride, which the sender's convergence relies on (see
 * veil_resync_seq).  Returns how many fit below 2^64 (all of them unless
 * h is near the end of the seq space).
 */
static unsigned
landmarks(uint64_t h, uint64_t lm[VEIL_RESYNC_LEVELS])
{
	uint64_t stride, q;
	unsigned k;

	for (k = 0; k < VEIL_RESYNC_LEVELS; k++) {
		stride = (uint64_t)1 <<
		    (VEIL_RESYNC_BASE_BITS + VEIL_RESYNC_STEP_BITS * k);
		if (k == 0)
			q = h / stride + (h % stride != 0);
		else
			q = lm[k - 1] / stride + 1;
		if (q > UINT64_MAX / stride)
			break;
		lm[k] = q * stride;
	}
	return k;
}

static int
in_list(const uint64_t *v, unsigned n, uint64_t x)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (v[i] == x)
			return 1;
	return 0;
}

uint64_t
veil_clock_seq(uint64_t slot)
{
	/* No period has 2^16 slots (30 days are 40,500). */
	if (slot >= (UINT64_C(1) << 16))
		return 0;
	return VEIL_CLOCK_BASE + slot * VEIL_CLOCK_STRIDE;
}

int
veil_clock_landmark(uint64_t seq, uint64_t *slot)
{
	if (seq < VEIL_CLOCK_BASE || (seq - VEIL_CLOCK_BASE) % VEIL_CLOCK_STRIDE != 0 ||
	    (seq - VEIL_CLOCK_BASE) / VEIL_CLOCK_STRIDE >= (UINT64_C(1) << 16))
		return 0;
	if (slot != NULL)
		*slot = (seq - VEIL_CLOCK_BASE) / VEIL_CLOCK_STRIDE;
	return 1;
}

uint64_t
veil_clock_slots(uint32_t plen)
{
	return ((uint64_t)plen + VEIL_CLOCK_SLOT - 1) / VEIL_CLOCK_SLOT;
}

/* Every armed seq outside the regular range of a direction whose range
 * ends at h and whose clock slots are first .. first + count - 1: the
 * resync landmarks, then the clock landmarks >= h that are not landmarks
 * already (a clock landmark is a multiple of every stride, so L_k can be
 * one).  All lie at or above h: none is accepted, none in the range. */
#define POINTS_MAX (VEIL_RESYNC_LEVELS + VEIL_CLOCK_ARMED)
static unsigned
points(uint64_t h, uint32_t first, unsigned count, uint64_t pt[POINTS_MAX])
{
	unsigned n = landmarks(h, pt), i;
	uint64_t c;

	for (i = 0; i < count && i < VEIL_CLOCK_ARMED; i++) {
		c = veil_clock_seq((uint64_t)first + i);
		if (c != 0 && c >= h && !in_list(pt, n, c))
			pt[n++] = c;
	}
	return n;
}

static unsigned
dir_points(const struct veil_rxdir *d, uint64_t h, uint64_t pt[POINTS_MAX])
{
	return points(h, d->clk_first, d->clk_count, pt);
}

/* Is seq in the armed set of window w (regular range or one of the
 * points outside it)? */
static int
is_armed(const struct veil_window *w, unsigned lookahead,
    const uint64_t *lm, unsigned nlm, uint64_t seq)
{
	if (seq >= armed_lo(w->top) && seq < armed_hi(w->top, lookahead))
		return !seq_accepted(w, seq);
	return in_list(lm, nlm, seq);
}

/* Arms points (landmarks of either kind); they lie at or above top +
 * lookahead, so none is accepted and none is in the regular range. */
static int
arm_landmarks(struct veil_tagtab *t, const struct veil_rxdir *d,
    uint64_t owner, const uint64_t *lm, unsigned nlm)
{
	unsigned i;
	int rc, ret = VEIL_OK;

	for (i = 0; i < nlm; i++) {
		rc = arm_one(t, &d->k, owner, lm[i]);
		if (rc == VEIL_ERR_NOMEM)
			return rc;
		if (rc < 0)
			ret = rc;
	}
	return ret;
}

int
veil_rx_arm(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner, unsigned lookahead)
{
	uint64_t pt[POINTS_MAX];
	unsigned npt;
	int rc, rc2;

	if (t == NULL || d == NULL)
		return VEIL_ERR_INVAL;
	rc = arm_range(t, d, owner, armed_lo(d->w.top),
	    armed_hi(d->w.top, lookahead));
	if (rc == VEIL_ERR_NOMEM)
		return rc;
	npt = dir_points(d, armed_hi(d->w.top, lookahead), pt);
	rc2 = arm_landmarks(t, d, owner, pt, npt);
	return rc2 < 0 ? rc2 : rc;
}

void
veil_rx_disarm(struct veil_tagtab *t, const struct veil_rxdir *d, unsigned lookahead)
{
	uint64_t s, hi, pt[POINTS_MAX];
	unsigned i, npt;

	if (t == NULL || d == NULL)
		return;
	hi = armed_hi(d->w.top, lookahead);
	for (s = armed_lo(d->w.top); s < hi; s++)
		if (!seq_accepted(&d->w, s))
			disarm_one(t, &d->k, 0, 0, s);
	npt = dir_points(d, hi, pt);
	for (i = 0; i < npt; i++)
		disarm_one(t, &d->k, 0, 0, pt[i]);
}

/*
 * Only the clock landmarks that change are touched: on a move by one
 * slot, one tag goes and one comes (two BLAKE2b), and a call that changes
 * nothing costs nothing, so the daemon can call it at every sweep.
 */
int
veil_rx_clock(struct veil_tagtab *t, struct veil_rxdir *d, uint64_t owner,
    uint32_t first, unsigned count, unsigned lookahead)
{
	uint64_t hi, pt0[POINTS_MAX], pt1[POINTS_MAX];
	unsigned i, n0, n1;
	int rc, ret = VEIL_OK;

	if (d == NULL || count > VEIL_CLOCK_ARMED)
		return VEIL_ERR_INVAL;
	if (count == 0)
		first = 0;
	if (d->clk_first == first && d->clk_count == count)
		return VEIL_OK;
	hi = armed_hi(d->w.top, lookahead);
	n0 = dir_points(d, hi, pt0);
	d->clk_first = first;
	d->clk_count = (uint8_t)count;
	if (t == NULL)
		return VEIL_OK;
	n1 = dir_points(d, hi, pt1);
	for (i = 0; i < n0; i++)
		if (!is_armed(&d->w, lookahead, pt1, n1, pt0[i]))
			disarm_one(t, &d->k, 1, owner, pt0[i]);
	for (i = 0; i < n1; i++) {
		if (in_list(pt0, n0, pt1[i]))
			continue;
		rc = arm_one(t, &d->k, owner, pt1[i]);
		if (rc == VEIL_ERR_NOMEM)
			return rc;
		if (rc < 0)
			ret = rc;
	}
	return ret;
}

/*
 * Only the edges move: seqs that drop below the window are disarmed and
 * seqs that enter the lookahead are armed, so the work is proportional to
 * the advance of top (bounded by WINDOW + lookahead on a big jump, such as
 * a frame found at a landmark), not to the size of the window; landmarks
 * (resync and clock) cost O(levels) more, and nothing while top +
 * lookahead stays below the same multiples.  An old landmark is disarmed only if it is not in the
 * new armed set (the regular range may have reached it, or it is a landmark
 * again at another level).  The window is marked first: the frame was
 * authenticated and must never be accepted again, even if the table then
 * cannot grow (NOMEM; the caller may re-arm later).
 */
int
veil_rx_commit(struct veil_tagtab *t, struct veil_rxdir *d, uint64_t owner, uint64_t seq, unsigned lookahead)
{
	struct veil_window old;
	uint64_t lo0, lo1, hi0, hi1, s, end;
	uint64_t lm0[POINTS_MAX], lm1[POINTS_MAX];
	unsigned i, n0, n1, same;
	int rc, rc2;

	if (t == NULL || d == NULL)
		return VEIL_ERR_INVAL;
	old = d->w;
	if ((rc = veil_window_mark(&d->w, seq)) < 0)
		return rc;
	disarm_one(t, &d->k, 1, owner, seq);
	if (d->w.top == old.top)
		return VEIL_OK;

	lo0 = armed_lo(old.top);
	hi0 = armed_hi(old.top, lookahead);
	lo1 = armed_lo(d->w.top);
	hi1 = armed_hi(d->w.top, lookahead);

	/* Fell out of the window: [lo0, min(lo1, hi0)), those still armed.
	 * Below lo1 < hi1 <= every new point, so none stays armed. */
	end = lo1 < hi0 ? lo1 : hi0;
	for (s = lo0; s < end; s++)
		if (!seq_accepted(&old, s))
			disarm_one(t, &d->k, 1, owner, s);

	/* Points (landmarks of either kind) no longer armed: seq itself,
	 * those the window passed, those the ladder moved away from. */
	n0 = dir_points(d, hi0, lm0);
	n1 = dir_points(d, hi1, lm1);
	same = n0 == n1;
	for (i = 0; same && i < n0; i++)
		same = lm0[i] == lm1[i];
	if (!same)
		for (i = 0; i < n0; i++)
			if (!is_armed(&d->w, lookahead, lm1, n1, lm0[i]))
				disarm_one(t, &d->k, 1, owner, lm0[i]);

	/* Entered: [max(hi0, lo1), hi1), minus seq itself (now accepted).
	 * Old landmarks in there are armed already; arm_one accepts that. */
	rc = arm_range(t, d, owner, hi0 > lo1 ? hi0 : lo1, hi1);
	if (rc == VEIL_ERR_NOMEM || same)
		return rc;
	rc2 = arm_landmarks(t, d, owner, lm1, n1);
	return rc2 < 0 ? rc2 : rc;
}

/*
 * Why the resync converges.  Let h = top + lookahead of the receiver, which
 * no longer moves because nothing arrives, and n >= h the sender's next seq
 * (below h the regular range finds it).  The attempt at level
 * k = min(attempt - 1, LEVELS - 1) jumps to J, the first multiple of S_k
 * >= n.  (1) If L_(k-1) < n <= L_k (L_(-1) = h - 1), then J = L_k: L_k is a
 * multiple of S_k >= n, and L_k - S_k <= L_(k-1) < n.  (2) If n <= L_K for
 * some K >= k, then J <= L_K, because L_K is a multiple of S_k too; J = L_K
 * is a hit, otherwise the sender goes on from J + 1 <= L_K.  Frames sent
 * in between step by one and cannot pass L_K without hitting it.  So
 * n <= L_K stays true until a hit, while each miss at level k leaves
 * n > L_k; by (1) the frame is found at attempt K + 1 at the latest.  As
 * L_K >= h + S_0 + ... + S_(K-1), a gap G = n - h found by attempt
 * 1 (G = 0), 2 (G <= 256), 3 (<= 2304), 4 (<= 18688), 5 (<= 149760);
 * gaps up to L_4 - h, between 149760 and 1198335 depending on where h
 * lies, are found by attempt 5 too.  This assumes the landmark frame
 * itself arrives: a lost one costs a level.  A sender whose five rungs
 * were all lost may be beyond L_4; from attempt 6 on it stops climbing
 * and takes the clock landmarks instead (veil_txchain_resync, chain.c).
 */
uint64_t
veil_resync_seq(uint64_t next_seq, unsigned attempt)
{
	unsigned k;
	uint64_t stride;

	if (attempt == 0)
		return next_seq;
	k = attempt - 1;
	if (k > VEIL_RESYNC_LEVELS - 1)
		k = VEIL_RESYNC_LEVELS - 1;
	/* Near the end of the seq space, fall back to the largest stride
	 * that still fits, which keeps the result monotone in attempt. */
	for (;;) {
		stride = (uint64_t)1 << (VEIL_RESYNC_BASE_BITS +
		    VEIL_RESYNC_STEP_BITS * k);
		if (next_seq <= UINT64_MAX - (stride - 1))
			return (next_seq + stride - 1) & ~(stride - 1);
		if (k == 0)
			return next_seq;
		k--;
	}
}
