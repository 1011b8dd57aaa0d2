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
struct slot {
	uint64_t key;
	uint64_t owner;
	uint64_t seq;
	uint8_t used;
};

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

	while (t->s[i].used && t->s[i].key != key)
		i = (i + 1) & (t->cap - 1);
	return i;
}

struct veil_tagtab *
veil_tagtab_new(size_t hint)
{
	struct veil_tagtab *t;
	size_t cap = TAGTAB_MIN;

	while (cap < hint * 2 && cap < ((size_t)1 << 40))
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
		if (!t->s[i].used)
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

	if (t == NULL || tag == NULL)
		return VEIL_ERR_INVAL;
	key = tag_key(tag);
	i = tag_find(t, key);
	if (t->s[i].used)
		return VEIL_ERR_DUPLICATE;
	/* Keep the load at or below 5/8. */
	if ((t->count + 1) * 8 > t->cap * 5) {
		if ((rc = tagtab_grow(t)) < 0)
			return rc;
		i = tag_find(t, key);
	}
	t->s[i].key = key;
	t->s[i].owner = owner;
	t->s[i].seq = seq;
	t->s[i].used = 1;
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
	if (!t->s[i].used)
		return VEIL_ERR_INVAL;
	if (owner != NULL)
		*owner = t->s[i].owner;
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
		if (!t->s[j].used)
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
	if (!t->s[i].used)
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
	if (t->s[i].used && t->s[i].seq == seq &&
	    (!check_owner || t->s[i].owner == owner))
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

int
veil_rx_arm(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner, unsigned lookahead)
{
	if (t == NULL || d == NULL)
		return VEIL_ERR_INVAL;
	return arm_range(t, d, owner, armed_lo(d->w.top),
	    armed_hi(d->w.top, lookahead));
}

void
veil_rx_disarm(struct veil_tagtab *t, const struct veil_rxdir *d, unsigned lookahead)
{
	uint64_t s, hi;

	if (t == NULL || d == NULL)
		return;
	hi = armed_hi(d->w.top, lookahead);
	for (s = armed_lo(d->w.top); s < hi; s++)
		if (!seq_accepted(&d->w, s))
			disarm_one(t, &d->k, 0, 0, s);
}

/*
 * Only the edges move: seqs that drop below the window are disarmed and
 * seqs that enter the lookahead are armed, so the work is proportional to
 * the advance of top (bounded by WINDOW + lookahead on a big jump), not to
 * the size of the window.  The window is marked first: the frame was
 * authenticated and must never be accepted again, even if the table then
 * cannot grow (NOMEM; the caller may re-arm later).
 */
int
veil_rx_commit(struct veil_tagtab *t, struct veil_rxdir *d, uint64_t owner, uint64_t seq, unsigned lookahead)
{
	struct veil_window old;
	uint64_t lo0, lo1, hi0, hi1, s, end;
	int rc;

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

	/* Fell out of the window: [lo0, min(lo1, hi0)), those still armed. */
	end = lo1 < hi0 ? lo1 : hi0;
	for (s = lo0; s < end; s++)
		if (!seq_accepted(&old, s))
			disarm_one(t, &d->k, 1, owner, s);

	/* Entered: [max(hi0, lo1), hi1), minus seq itself (now accepted). */
	return arm_range(t, d, owner, hi0 > lo1 ? hi0 : lo1, hi1);
}
