/* Tests for libproto replay and chain: the sliding window, the tag table, the armed set of receive keys, receive chains. */
#define _GNU_SOURCE	/* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "veil.h"
#include "testutil.h"

#define W VEIL_WINDOW_BITS

static void
test_window_fresh(void **state)
{
	struct veil_window w;

	(void)state;
	veil_window_init(&w);
	assert_int_equal(w.top, 0);
	assert_int_equal(veil_window_check(&w, 0), VEIL_OK);
	assert_int_equal(veil_window_check(&w, 12345), VEIL_OK);
	assert_int_equal(veil_window_mark(&w, 0), VEIL_OK);
	assert_int_equal(w.top, 1);
	assert_int_equal(veil_window_check(&w, 0), VEIL_ERR_REPLAY);
	assert_int_equal(veil_window_mark(&w, 0), VEIL_ERR_REPLAY);
	assert_int_equal(veil_window_check(&w, 1), VEIL_OK);

	/* starting anywhere leaves everything below open within the window */
	veil_window_init(&w);
	assert_int_equal(veil_window_mark(&w, 5), VEIL_OK);
	assert_int_equal(w.top, 6);
	assert_int_equal(veil_window_check(&w, 5), VEIL_ERR_REPLAY);
	assert_int_equal(veil_window_check(&w, 4), VEIL_OK);
	assert_int_equal(veil_window_check(&w, 0), VEIL_OK);
	assert_int_equal(veil_window_check(&w, 6), VEIL_OK);
}

static void
test_window_reorder(void **state)
{
	struct veil_window w;
	uint64_t s;

	(void)state;
	veil_window_init(&w);
	assert_int_equal(veil_window_mark(&w, 1000), VEIL_OK);
	/* the window covers top-1 down to top-W: 1000 .. 873 */
	assert_int_equal(veil_window_check(&w, 1000 - W + 1), VEIL_OK);
	assert_int_equal(veil_window_check(&w, 1000 - W), VEIL_ERR_REPLAY);
	for (s = 1000 - W + 1; s < 1000; s += 2)
		assert_int_equal(veil_window_mark(&w, s), VEIL_OK);
	for (s = 1000 - W + 1; s < 1000; s++)
		assert_int_equal(veil_window_check(&w, s),
		    (s - (1000 - W + 1)) % 2 == 0 ? VEIL_ERR_REPLAY : VEIL_OK);
	for (s = 1000 - W + 2; s < 1000; s += 2)
		assert_int_equal(veil_window_mark(&w, s), VEIL_OK);
	for (s = 0; s <= 1000; s++)
		assert_int_equal(veil_window_check(&w, s), VEIL_ERR_REPLAY);
	assert_int_equal(w.map[0], UINT64_MAX);
	assert_int_equal(w.map[1], UINT64_MAX);
}

static void
test_window_jumps(void **state)
{
	static const uint64_t jumps[] = { 1, 63, 64, 65, 127, 128, 129, 1000,
	    UINT64_C(1) << 40 };
	struct veil_window w;
	uint64_t j, top, lo, s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(jumps) / sizeof(jumps[0]); i++) {
		j = jumps[i];
		veil_window_init(&w);
		assert_int_equal(veil_window_mark(&w, 10), VEIL_OK);
		assert_int_equal(veil_window_mark(&w, 10 + j), VEIL_OK);
		top = 11 + j;
		assert_int_equal(w.top, top);
		/* inside the window exactly the two marked seqs are taken
		 * (the old bit moved by j, across words); below it all is */
		lo = top > W ? top - W : 0;
		for (s = lo; s < top; s++)
			assert_int_equal(veil_window_check(&w, s),
			    s == 10 || s == 10 + j ? VEIL_ERR_REPLAY : VEIL_OK);
		for (s = lo > 20 ? lo - 20 : 0; s < lo; s++)
			assert_int_equal(veil_window_check(&w, s),
			    VEIL_ERR_REPLAY);
		assert_int_equal(veil_window_check(&w, 10), VEIL_ERR_REPLAY);
	}

	/* one step at a time: every bit crosses the word boundary */
	veil_window_init(&w);
	for (s = 0; s < 300; s++) {
		assert_int_equal(veil_window_mark(&w, s), VEIL_OK);
		for (j = s > W - 1 ? s - (W - 1) : 0; j <= s; j++)
			assert_int_equal(veil_window_check(&w, j),
			    VEIL_ERR_REPLAY);
	}
}

/* Random operations against a plain model: accepted set + highest. */
static void
test_window_model(void **state)
{
	enum { N = 20000 };
	struct veil_window w;
	struct tu_prng p;
	uint8_t *seen;
	uint64_t top = 0, s;
	unsigned long it, iters = tu_iters(50000);
	int want, got;

	(void)state;
	seen = calloc(N + 2000, 1);
	veil_window_init(&w);
	tu_prng_seed(&p, 99);
	for (it = 0; it < iters && top < N; it++) {
		uint64_t r = tu_prng_next(&p);

		switch (r % 16) {
		case 0:	/* jump ahead, sometimes past the whole window */
			s = top + (r >> 8) % 300;
			break;
		case 1:
		case 2:
		case 3:
		case 4:
		case 5:	/* next, or a small gap */
			s = top + (r >> 8) % 4;
			break;
		default: /* somewhere around the window */
			s = top > 150 ? top - 150 + (r >> 8) % 160 :
			    (r >> 8) % 160;
			break;
		}
		want = seen[s] || s + W < top ? VEIL_ERR_REPLAY : VEIL_OK;
		assert_int_equal(veil_window_check(&w, s), want);
		got = veil_window_mark(&w, s);
		assert_int_equal(got, want);
		if (want == VEIL_OK) {
			seen[s] = 1;
			if (s >= top)
				top = s + 1;
		}
		assert_int_equal(w.top, top);
	}
	free(seen);
}

static void
test_window_huge(void **state)
{
	struct veil_window w;

	(void)state;
	veil_window_init(&w);
	assert_int_equal(veil_window_mark(&w, UINT64_MAX - 1), VEIL_OK);
	assert_int_equal(w.top, UINT64_MAX);
	assert_int_equal(veil_window_check(&w, UINT64_MAX - 1),
	    VEIL_ERR_REPLAY);
	/* top would not be representable */
	assert_int_equal(veil_window_check(&w, UINT64_MAX), VEIL_ERR_REPLAY);
	assert_int_equal(veil_window_mark(&w, UINT64_MAX), VEIL_ERR_REPLAY);
	assert_int_equal(veil_window_check(&w, UINT64_MAX - W), VEIL_OK);
	assert_int_equal(veil_window_check(&w, UINT64_MAX - W - 1),
	    VEIL_ERR_REPLAY);
	assert_int_equal(veil_window_check(&w, 0), VEIL_ERR_REPLAY);
}

static void
test_tagtab_basic(void **state)
{
	struct veil_tagtab *t;
	uint8_t a[8], b[8];
	uint64_t owner, seq;

	(void)state;
	t = veil_tagtab_new(0);
	assert_non_null(t);
	randombytes_buf(a, sizeof(a));
	memcpy(b, a, sizeof(b));
	b[7] ^= 1;
	assert_int_equal(veil_tagtab_get(t, a, &owner, &seq), VEIL_ERR_INVAL);
	assert_int_equal(veil_tagtab_put(t, a, 11, 22), VEIL_OK);
	assert_int_equal(veil_tagtab_put(t, a, 33, 44), VEIL_ERR_DUPLICATE);
	assert_int_equal(veil_tagtab_put(t, b, 33, 44), VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), 2);
	assert_int_equal(veil_tagtab_get(t, a, &owner, &seq), VEIL_OK);
	assert_int_equal(owner, 11);
	assert_int_equal(seq, 22);
	assert_int_equal(veil_tagtab_get(t, b, &owner, &seq), VEIL_OK);
	assert_int_equal(owner, 33);
	assert_int_equal(seq, 44);
	assert_int_equal(veil_tagtab_del(t, a), VEIL_OK);
	assert_int_equal(veil_tagtab_del(t, a), VEIL_ERR_INVAL);
	assert_int_equal(veil_tagtab_get(t, a, &owner, &seq), VEIL_ERR_INVAL);
	assert_int_equal(veil_tagtab_get(t, b, &owner, &seq), VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), 1);
	assert_int_equal(veil_tagtab_put(t, a, 55, 66), VEIL_OK);
	assert_int_equal(veil_tagtab_get(t, a, &owner, &seq), VEIL_OK);
	assert_int_equal(owner, 55);
	veil_tagtab_free(t);
}

static void
check_present(struct veil_tagtab *t, const uint8_t *tags, size_t n,
    size_t step, size_t first)
{
	uint64_t owner, seq;
	size_t i;

	for (i = first; i < n; i += step) {
		assert_int_equal(veil_tagtab_get(t, tags + 8 * i, &owner, &seq),
		    VEIL_OK);
		assert_int_equal(owner, i * 3);
		assert_int_equal(seq, i);
	}
}

static void
test_tagtab_growth(void **state)
{
	enum { N = 100000 };
	struct veil_tagtab *t;
	uint8_t *tags;
	uint64_t owner, seq;
	size_t i;

	(void)state;
	tags = malloc(8 * N);
	randombytes_buf(tags, 8 * N);
	t = veil_tagtab_new(0);
	for (i = 0; i < N; i++)
		assert_int_equal(veil_tagtab_put(t, tags + 8 * i, i * 3, i),
		    VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), N);
	check_present(t, tags, N, 1, 0);
	for (i = 0; i < N; i += 2)
		assert_int_equal(veil_tagtab_del(t, tags + 8 * i), VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), N / 2);
	for (i = 0; i < N; i += 2)
		assert_int_equal(veil_tagtab_get(t, tags + 8 * i, &owner, &seq),
		    VEIL_ERR_INVAL);
	check_present(t, tags, N, 2, 1);
	for (i = 0; i < N; i += 2)
		assert_int_equal(veil_tagtab_put(t, tags + 8 * i, i * 3, i),
		    VEIL_OK);
	check_present(t, tags, N, 1, 0);
	for (i = 0; i < N; i++)
		assert_int_equal(veil_tagtab_put(t, tags + 8 * i, 0, 0),
		    VEIL_ERR_DUPLICATE);
	veil_tagtab_free(t);
	free(tags);
}

/*
 * Tags that are not random at all: long probe chains that wrap around the
 * end of the table, with deletions in the middle of them.
 */
static void
test_tagtab_clusters(void **state)
{
	enum { N = 3000 };
	struct veil_tagtab *t;
	struct tu_prng p;
	uint8_t tags[N][8];
	uint8_t live[N];
	uint64_t owner, seq;
	size_t i, n, round;

	(void)state;
	for (i = 0; i < N; i++) {
		uint32_t v = (uint32_t)(i * 2654435761u);

		/* equal halves, and a few bit patterns that share low bits */
		memcpy(tags[i], &v, 4);
		memcpy(tags[i] + 4, &v, 4);
		if (i % 3 == 0) {
			memset(tags[i], 0, 8);
			tags[i][7] = (uint8_t)i;
			tags[i][6] = (uint8_t)(i >> 8);
			tags[i][3] = 0xff;
		}
	}
	memset(live, 0, sizeof(live));
	t = veil_tagtab_new(4);
	tu_prng_seed(&p, 7);
	n = 0;
	for (round = 0; round < 6 * N; round++) {
		i = tu_prng_next(&p) % N;
		if (live[i]) {
			assert_int_equal(veil_tagtab_del(t, tags[i]), VEIL_OK);
			live[i] = 0;
			n--;
		} else {
			assert_int_equal(veil_tagtab_put(t, tags[i], i, round),
			    VEIL_OK);
			live[i] = 1;
			n++;
		}
		if (round % 997 == 0) {
			size_t j;

			for (j = 0; j < N; j++) {
				int rc = veil_tagtab_get(t, tags[j], &owner,
				    &seq);

				assert_int_equal(rc, live[j] ? VEIL_OK :
				    VEIL_ERR_INVAL);
				if (live[j])
					assert_int_equal(owner, j);
			}
		}
	}
	assert_int_equal(veil_tagtab_count(t), n);
	veil_tagtab_free(t);
}

/* --- receive directions --------------------------------------------- */

static void
mkdir_rx(struct veil_rxdir *d)
{
	uint8_t root[VEIL_KEY_BYTES];

	memset(d, 0, sizeof(*d));
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_dirkey_from_root(&d->k, root, VEIL_DIR_I2R), VEIL_OK);
	veil_window_init(&d->w);
	d->live = 1;
}

#define LEVELS VEIL_RESYNC_LEVELS
#define LM_MIN 149760	/* 2^8 + 2^11 + 2^14 + 2^17 */
#define LM_MAX 1198335	/* 2^8 + 2^11 + 2^14 + 2^17 + 2^20 - 1 */

static uint64_t
stride(unsigned k)
{
	return (uint64_t)1 << (8 + 3 * k);
}

/* Landmarks of h = top + la from the definition in replay.h, by rounding up
 * (the library rounds down and adds one). */
static unsigned
model_landmarks(uint64_t top, unsigned la, uint64_t lm[LEVELS])
{
	uint64_t x, S;
	unsigned k;

	for (k = 0; k < LEVELS; k++) {
		x = k == 0 ? top + la : lm[k - 1] + 1;
		S = stride(k);
		if (x > UINT64_MAX - (S - 1))
			break;
		lm[k] = (x + S - 1) / S * S;
	}
	return k;
}

/* C(j) from protocol.md 2.1: 2^48 + j * 2^32. */
static uint64_t
model_clock(uint64_t j)
{
	return (UINT64_C(1) << 48) + j * (UINT64_C(1) << 32);
}

/* The clock landmarks of d outside its regular range (>= top + la), from
 * the definition in replay.h; those that are resync landmarks too count
 * once, with them. */
static unsigned
model_clocks(const struct veil_rxdir *d, unsigned la, uint64_t cl[3])
{
	uint64_t lm[LEVELS], c;
	unsigned i, j, nlm, n = 0, dup;

	nlm = model_landmarks(d->w.top, la, lm);
	for (i = 0; i < d->clk_count; i++) {
		c = model_clock((uint64_t)d->clk_first + i);
		for (j = 0, dup = 0; j < nlm; j++)
			dup |= lm[j] == c;
		if (c >= d->w.top + la && !dup)
			cl[n++] = c;
	}
	return n;
}

/* Is seq in the armed set, computed from the definition in replay.h? */
static int
model_armed(const struct veil_rxdir *d, uint64_t seq, unsigned la)
{
	uint64_t top = d->w.top, lo = top > W ? top - W : 0, lm[LEVELS], cl[3];
	unsigned i, n;

	n = model_landmarks(top, la, lm);
	for (i = 0; i < n; i++)
		if (seq == lm[i])
			return 1;
	n = model_clocks(d, la, cl);
	for (i = 0; i < n; i++)
		if (seq == cl[i])
			return 1;
	if (seq < lo || seq >= top + la)
		return 0;
	return veil_window_check(&d->w, seq) == VEIL_OK;
}

static int
lookup(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t s,
    uint64_t *owner, uint64_t *seq)
{
	uint8_t tag[8];

	veil_dirkey_tag(&d->k, s, tag);
	return veil_tagtab_get(t, tag, owner, seq);
}

static size_t
check_one(struct veil_tagtab *t, const struct veil_rxdir *d, uint64_t owner,
    unsigned la, uint64_t s)
{
	uint64_t o, q;
	int armed = model_armed(d, s, la);
	int rc = lookup(t, d, s, &o, &q);

	if (armed) {
		assert_int_equal(rc, VEIL_OK);
		assert_int_equal(o, owner);
		assert_int_equal(q, s);
		return 1;
	}
	assert_int_equal(rc, VEIL_ERR_INVAL);
	return 0;
}

/* The table holds exactly d's armed set (plus `others` entries): the
 * regular range and the landmarks of both kinds, with margins around
 * them (each seq looked at once). */
static void
check_armed(struct veil_tagtab *t, const struct veil_rxdir *d,
    uint64_t owner, unsigned la, size_t others)
{
	uint64_t s, lo, hi, pt[LEVELS + 3], seen[5 * (LEVELS + 3)];
	unsigned i, j, npt, nseen = 0, dup;
	size_t n = 0;

	lo = d->w.top > W + 10 ? d->w.top - W - 10 : 0;
	hi = d->w.top + la + 10;
	for (s = lo; s < hi; s++)
		n += check_one(t, d, owner, la, s);
	npt = model_landmarks(d->w.top, la, pt);
	for (i = 0; i < npt; i++) {
		assert_true(pt[i] >= d->w.top + la);
		assert_true(i == 0 || pt[i] > pt[i - 1]);
		assert_true(pt[i] % stride(i) == 0);
	}
	npt += model_clocks(d, la, pt + npt);
	for (i = 0; i < npt; i++) {
		assert_true(pt[i] >= d->w.top + la);
		for (s = pt[i] - 2; s <= pt[i] + 2; s++) {
			if (s < hi)
				continue;
			for (j = 0, dup = 0; j < nseen; j++)
				dup |= seen[j] == s;
			if (dup)
				continue;
			seen[nseen++] = s;
			n += check_one(t, d, owner, la, s);
		}
	}
	assert_int_equal(veil_tagtab_count(t), n + others);
}

static void
test_rx_arm_fresh(void **state)
{
	struct veil_tagtab *t;
	struct veil_rxdir d;
	uint64_t o, q;

	(void)state;
	t = veil_tagtab_new(0);
	mkdir_rx(&d);
	assert_int_equal(veil_rx_arm(t, &d, 5, VEIL_LOOKAHEAD), VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD + LEVELS);
	check_armed(t, &d, 5, VEIL_LOOKAHEAD, 0);
	assert_int_equal(lookup(t, &d, VEIL_LOOKAHEAD - 1, &o, &q), VEIL_OK);
	assert_int_equal(lookup(t, &d, VEIL_LOOKAHEAD, &o, &q), VEIL_ERR_INVAL);
	/* arming again changes nothing */
	assert_int_equal(veil_rx_arm(t, &d, 5, VEIL_LOOKAHEAD), VEIL_OK);
	check_armed(t, &d, 5, VEIL_LOOKAHEAD, 0);
	veil_rx_disarm(t, &d, VEIL_LOOKAHEAD);
	assert_int_equal(veil_tagtab_count(t), 0);
	veil_tagtab_free(t);
}

static void
test_rx_commit_in_order(void **state)
{
	struct veil_tagtab *t;
	struct veil_rxdir d;
	uint64_t s, o, q;

	(void)state;
	t = veil_tagtab_new(0);
	mkdir_rx(&d);
	assert_int_equal(veil_rx_arm(t, &d, 9, VEIL_LOOKAHEAD), VEIL_OK);
	for (s = 0; s < 400; s++) {
		assert_int_equal(lookup(t, &d, s, &o, &q), VEIL_OK);
		assert_int_equal(o, 9);
		assert_int_equal(q, s);
		assert_int_equal(veil_rx_commit(t, &d, 9, s, VEIL_LOOKAHEAD),
		    VEIL_OK);
		/* all of the window is accepted: only the lookahead and the
		 * landmarks remain */
		assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD + LEVELS);
		if (s % 37 == 0 || s % 256 >= 238)
			check_armed(t, &d, 9, VEIL_LOOKAHEAD, 0);
	}
	/* a replay is refused and changes nothing */
	assert_int_equal(veil_rx_commit(t, &d, 9, 399, VEIL_LOOKAHEAD),
	    VEIL_ERR_REPLAY);
	assert_int_equal(veil_rx_commit(t, &d, 9, 100, VEIL_LOOKAHEAD),
	    VEIL_ERR_REPLAY);
	check_armed(t, &d, 9, VEIL_LOOKAHEAD, 0);
	veil_tagtab_free(t);
}

/*
 * A sender's frames arrive reordered, some lost, some duplicated: each is
 * found in the table exactly when the model says it is armed, and after
 * every commit the table is exactly the armed set.
 */
static void
test_rx_reorder_model(void **state)
{
	enum { N = 1500 };
	struct veil_tagtab *t;
	struct veil_rxdir d, other;
	struct tu_prng p;
	uint64_t order[N], o, q;
	size_t i, j, found = 0;
	unsigned la = 16;

	(void)state;
	t = veil_tagtab_new(0);
	mkdir_rx(&d);
	mkdir_rx(&other);
	/* another direction in the same table must stay untouched */
	assert_int_equal(veil_rx_arm(t, &other, 77, la), VEIL_OK);
	assert_int_equal(veil_rx_arm(t, &d, 1, la), VEIL_OK);
	for (i = 0; i < N; i++)
		order[i] = i;
	tu_prng_seed(&p, 31337);
	/* local shuffles: most within the lookahead, some far */
	for (i = 0; i < N; i++) {
		uint64_t r = tu_prng_next(&p);

		j = i + (size_t)(r % 12);
		if (r % 50 == 0)
			j = i + 40 + (size_t)((r >> 8) % 100);
		if (j < N) {
			uint64_t tmp = order[i];

			order[i] = order[j];
			order[j] = tmp;
		}
	}
	for (i = 0; i < N; i++) {
		uint64_t s = order[i], r = tu_prng_next(&p);
		int armed, rc;

		if (r % 10 == 0)
			continue;	/* lost */
		armed = model_armed(&d, s, la);
		rc = lookup(t, &d, s, &o, &q);
		assert_int_equal(rc, armed ? VEIL_OK : VEIL_ERR_INVAL);
		if (!armed)
			continue;	/* the daemon drops it unopened */
		found++;
		assert_int_equal(o, 1);
		assert_int_equal(q, s);
		assert_int_equal(veil_rx_commit(t, &d, 1, s, la), VEIL_OK);
		if (r % 7 == 0)
			assert_int_equal(veil_rx_commit(t, &d, 1, s, la),
			    VEIL_ERR_REPLAY);
		check_armed(t, &d, 1, la, la + LEVELS);
	}
	assert_true(found > N / 2);
	check_armed(t, &other, 77, la, veil_tagtab_count(t) - la - LEVELS);
	veil_rx_disarm(t, &d, la);
	check_armed(t, &other, 77, la, 0);
	veil_tagtab_free(t);
}

static void
test_rx_lookahead_edges(void **state)
{
	struct veil_tagtab *t;
	struct veil_rxdir d;
	uint64_t o, q, s;

	(void)state;
	t = veil_tagtab_new(0);
	mkdir_rx(&d);
	assert_int_equal(veil_rx_arm(t, &d, 2, 16), VEIL_OK);
	/* out of order within the lookahead: 15 first */
	assert_int_equal(lookup(t, &d, 16, &o, &q), VEIL_ERR_INVAL);
	assert_int_equal(veil_rx_commit(t, &d, 2, 15, 16), VEIL_OK);
	assert_int_equal(lookup(t, &d, 31, &o, &q), VEIL_OK);
	assert_int_equal(q, 31);
	assert_int_equal(lookup(t, &d, 32, &o, &q), VEIL_ERR_INVAL);
	assert_int_equal(lookup(t, &d, 15, &o, &q), VEIL_ERR_INVAL);
	for (s = 0; s < 15; s++)
		assert_int_equal(lookup(t, &d, s, &o, &q), VEIL_OK);
	check_armed(t, &d, 2, 16, 0);

	/* walk the top far ahead, skipping seq 3: it stays findable while
	 * inside the window, then goes */
	for (s = 0; s < 15; s++)
		if (s != 3)
			assert_int_equal(veil_rx_commit(t, &d, 2, s, 16),
			    VEIL_OK);
	for (s = 16; s < 3 + W; s++)
		assert_int_equal(veil_rx_commit(t, &d, 2, s, 16), VEIL_OK);
	/* seqs that left the window are refused, not re-armed */
	assert_int_equal(veil_rx_commit(t, &d, 2, 2, 16), VEIL_ERR_REPLAY);
	assert_int_equal(lookup(t, &d, 3, &o, &q), VEIL_OK);
	check_armed(t, &d, 2, 16, 0);
	assert_int_equal(veil_tagtab_count(t), 17 + LEVELS);
	assert_int_equal(veil_rx_commit(t, &d, 2, 3 + W, 16), VEIL_OK);
	assert_int_equal(lookup(t, &d, 3, &o, &q), VEIL_ERR_INVAL);
	assert_int_equal(veil_tagtab_count(t), 16 + LEVELS);

	/* a big jump (a frame found through a re-arm, say) */
	assert_int_equal(veil_rx_commit(t, &d, 2, 100000, 16), VEIL_OK);
	check_armed(t, &d, 2, 16, 0);
	assert_int_equal(veil_tagtab_count(t), W - 1 + 16 + LEVELS);
	assert_int_equal(veil_rx_commit(t, &d, 2, 100000 + 200, 16), VEIL_OK);
	check_armed(t, &d, 2, 16, 0);
	veil_rx_disarm(t, &d, 16);
	assert_int_equal(veil_tagtab_count(t), 0);
	veil_tagtab_free(t);
}

/* --- resync landmarks ------------------------------------------------ */

/*
 * Random walks whose top + lookahead crosses multiples of every stride,
 * up to sitting exactly on a multiple of 2^20: after every commit the table
 * is exactly the armed set, landmarks included, and another direction in
 * the same table is untouched.  Frames are committed only when found, as
 * the daemon does, and some are found through landmarks.
 */
static void
test_rx_landmark_model(void **state)
{
	static const uint64_t starts[] = { 0, (1 << 20) - 17, (1 << 20) - 300,
	    5 * (UINT64_C(1) << 20) - 18, 3 * (1 << 17) - 17, (1 << 11) - 17,
	    UINT64_C(123456789012) };
	struct veil_tagtab *t;
	struct veil_rxdir d, e;
	struct tu_prng p;
	uint64_t lm[LEVELS], s, o, q, r;
	size_t i, ecount, vialm = 0;
	unsigned it, n, la = VEIL_LOOKAHEAD;

	(void)state;
	tu_prng_seed(&p, 4242);
	for (i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		t = veil_tagtab_new(0);
		mkdir_rx(&e);
		mkdir_rx(&d);
		assert_int_equal(veil_rx_arm(t, &e, 50, la), VEIL_OK);
		ecount = veil_tagtab_count(t);
		assert_int_equal(ecount, la + LEVELS);
		assert_int_equal(veil_rx_arm(t, &d, 7, la), VEIL_OK);
		check_armed(t, &d, 7, la, ecount);
		if (starts[i] > 0) {
			assert_int_equal(veil_rx_commit(t, &d, 7, starts[i], la),
			    VEIL_OK);
			check_armed(t, &d, 7, la, ecount);
		}
		for (it = 0; it < 300; it++) {
			r = tu_prng_next(&p);
			switch (r % 8) {
			case 0:	/* a landmark, mostly the low ones */
				n = model_landmarks(d.w.top, la, lm);
				assert_int_equal(n, LEVELS);
				s = lm[(r >> 8) % 16 == 0 ? (r >> 12) % LEVELS :
				    (r >> 12) % 2];
				break;
			case 1:	/* in the window below top */
				s = d.w.top - 1 - (r >> 8) % W;
				if (s >= d.w.top)
					s = 0;
				break;
			default: /* next, or a gap within the lookahead */
				s = d.w.top + (r >> 8) % (r % 8 == 2 ? la : 2);
				break;
			}
			if (lookup(t, &d, s, &o, &q) != VEIL_OK) {
				assert_false(model_armed(&d, s, la));
				continue;
			}
			assert_true(model_armed(&d, s, la));
			assert_int_equal(o, 7);
			assert_int_equal(q, s);
			if (s >= d.w.top + la)
				vialm++;
			assert_int_equal(veil_rx_commit(t, &d, 7, s, la),
			    VEIL_OK);
			check_armed(t, &d, 7, la, ecount);
		}
		check_armed(t, &e, 50, la, veil_tagtab_count(t) - ecount);
		veil_rx_disarm(t, &d, la);
		check_armed(t, &e, 50, la, 0);
		veil_tagtab_free(t);
	}
	assert_true(vialm > 10);
}

/* On a multiple of 2^20 all five landmarks are distinct: none at h only. */
static void
test_rx_landmark_aligned(void **state)
{
	struct veil_tagtab *t;
	struct veil_rxdir d;
	uint64_t o, q, h = UINT64_C(7) << 20;

	(void)state;
	t = veil_tagtab_new(0);
	mkdir_rx(&d);
	assert_int_equal(veil_rx_commit(t, &d, 3, h - 16 - 1, 16), VEIL_OK);
	assert_int_equal(veil_rx_arm(t, &d, 3, 16), VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), W - 1 + 16 + LEVELS);
	assert_int_equal(lookup(t, &d, h, &o, &q), VEIL_OK);
	assert_int_equal(lookup(t, &d, h + (1 << 11), &o, &q), VEIL_OK);
	assert_int_equal(lookup(t, &d, h + (1 << 14), &o, &q), VEIL_OK);
	assert_int_equal(lookup(t, &d, h + (1 << 17), &o, &q), VEIL_OK);
	assert_int_equal(lookup(t, &d, h + (1 << 20), &o, &q), VEIL_OK);
	assert_int_equal(q, h + (1 << 20));
	assert_int_equal(lookup(t, &d, h + 256, &o, &q), VEIL_ERR_INVAL);
	check_armed(t, &d, 3, 16, 0);
	veil_rx_disarm(t, &d, 16);
	assert_int_equal(veil_tagtab_count(t), 0);

	/* near the end of the seq space landmarks that do not fit are left
	 * out, and nothing wraps around to small seqs */
	mkdir_rx(&d);
	assert_int_equal(veil_rx_commit(t, &d, 3, UINT64_MAX - 100, 16),
	    VEIL_OK);
	assert_int_equal(veil_rx_arm(t, &d, 3, 16), VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), W - 1 + 16);
	assert_int_equal(lookup(t, &d, 0, &o, &q), VEIL_ERR_INVAL);
	check_armed(t, &d, 3, 16, 0);
	veil_rx_disarm(t, &d, 16);
	assert_int_equal(veil_tagtab_count(t), 0);
	veil_tagtab_free(t);
}

static void
test_resync_seq(void **state)
{
	static const uint64_t fixed[] = { 0, 1, 255, 256, 257, 2047, 2048,
	    2049, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, UINT64_C(1) << 40,
	    UINT64_MAX - (1 << 20) - 5, UINT64_MAX - 256, UINT64_MAX - 255,
	    UINT64_MAX - 1, UINT64_MAX };
	struct tu_prng p;
	uint64_t n, v, prev, S;
	unsigned a, k, i;

	(void)state;
	/* known answers from the definition */
	assert_int_equal(veil_resync_seq(1, 1), 256);
	assert_int_equal(veil_resync_seq(256, 1), 256);
	assert_int_equal(veil_resync_seq(257, 2), 2048);
	assert_int_equal(veil_resync_seq(2049, 3), 16384);
	assert_int_equal(veil_resync_seq(1, 4), 1 << 17);
	assert_int_equal(veil_resync_seq(1, 5), 1 << 20);
	assert_int_equal(veil_resync_seq(1, 99), 1 << 20);
	assert_int_equal(veil_resync_seq((1 << 20) + 1, 6), 2 << 20);
	assert_int_equal(veil_resync_seq(77, 0), 77);
	/* no multiple fits: no jump rather than a wrap */
	assert_int_equal(veil_resync_seq(UINT64_MAX - 5, 5), UINT64_MAX - 5);
	/* only a smaller stride fits: that one, so attempts stay monotone */
	assert_int_equal(veil_resync_seq(UINT64_MAX - 300, 5),
	    UINT64_MAX - 255);

	tu_prng_seed(&p, 5);
	for (i = 0; i < 4000; i++) {
		if (i < sizeof(fixed) / sizeof(fixed[0]))
			n = fixed[i];
		else
			n = tu_prng_next(&p) >> (tu_prng_next(&p) % 64);
		prev = n;
		for (a = 1; a < 10; a++) {
			k = a - 1 < LEVELS - 1 ? a - 1 : LEVELS - 1;
			S = stride(k);
			v = veil_resync_seq(n, a);
			assert_true(v >= n);
			assert_true(v >= prev);	/* monotone in attempt */
			if (n <= UINT64_MAX - (S - 1)) {
				assert_int_equal(v % S, 0);
				assert_true(v - n < S);
			} else	/* the largest stride that fits, or none */
				assert_true(v == n || (v % 256 == 0 &&
				    v - n < S && UINT64_MAX - v < S));
			prev = v;
		}
	}
}

/* Attempts the derived bound allows for a gap G = n - (top + lookahead). */
static unsigned
resync_bound(uint64_t G)
{
	uint64_t sum = 0;
	unsigned k;

	for (k = 0; k < LEVELS - 1; k++) {
		if (G <= sum)
			return k + 1;
		sum += stride(k);
	}
	return LEVELS;
}

/*
 * Plays the sender against the model landmarks of a receiver that no
 * longer moves, for h around awkward alignments and gaps up to past the
 * reach: found iff n <= L_4, and then within resync_bound(G) attempts.
 * With `plain`, the sender also sends a new frame between attempts.
 */
static void
test_resync_converges(void **state)
{
	static const uint64_t centres[] = { 1 << 20, 3 << 20, 3 << 17,
	    5 << 14, 1 << 11, 512, UINT64_C(0x123456789) };
	uint64_t lm[LEVELS], h, G, n, v;
	unsigned i, a, nlm, plain, found;
	int64_t dh;

	(void)state;
	for (i = 0; i < sizeof(centres) / sizeof(centres[0]); i++)
	for (dh = -300; dh <= 300; dh += (dh > -20 && dh < 20) ? 1 : 7)
	for (G = 0; G < LM_MAX + 3000; G += G < 300 ? 1 : 1 + G / 48)
	for (plain = 0; plain < 2; plain++) {
		h = centres[i] + (uint64_t)dh;
		nlm = model_landmarks(h, 0, lm);
		assert_int_equal(nlm, LEVELS);
		n = h + G;
		found = 0;
		for (a = 1; a <= 12 && !found; a++) {
			v = veil_resync_seq(n, a);
			if (v == lm[0] || v == lm[1] || v == lm[2] ||
			    v == lm[3] || v == lm[4])
				found = a;
			else if (plain && (v + 1 == lm[0] || v + 1 == lm[1] ||
			    v + 1 == lm[2] || v + 1 == lm[3] || v + 1 == lm[4]))
				found = a;
			n = v + 1 + plain;
		}
		if (h + G <= lm[LEVELS - 1]) {
			assert_true(found >= 1);
			assert_true(found <= resync_bound(G));
		} else
			assert_int_equal(found, 0);
		if (G <= LM_MIN)
			assert_true(h + G <= lm[LEVELS - 1]);
		assert_true(lm[LEVELS - 1] - h <= LM_MAX);
	}
}

/*
 * End to end with tags: the receiver accepted up to t - 1, the sender's
 * next `loss` frames were lost, then it retransmits with escalating
 * attempts; the retransmission is found within the bound, and frames
 * continue normally afterwards.
 */
static void
recover(uint64_t t, uint64_t loss, int expect)
{
	struct veil_tagtab *t_;
	struct veil_rxdir d, e;
	uint64_t n, G, v, o, q, lm[LEVELS], s;
	unsigned a, la = VEIL_LOOKAHEAD, found = 0;

	t_ = veil_tagtab_new(0);
	mkdir_rx(&d);
	mkdir_rx(&e);
	assert_int_equal(veil_rx_arm(t_, &e, 99, la), VEIL_OK);
	assert_int_equal(veil_rx_arm(t_, &d, 1, la), VEIL_OK);
	if (t > 0)
		assert_int_equal(veil_rx_commit(t_, &d, 1, t - 1, la), VEIL_OK);
	assert_int_equal(d.w.top, t);
	model_landmarks(t, la, lm);
	n = t + loss;
	G = n - (t + la);
	for (a = 1; a <= 12; a++) {
		v = veil_resync_seq(n, a);
		assert_true(v >= n);
		if (lookup(t_, &d, v, &o, &q) == VEIL_OK) {
			assert_int_equal(o, 1);
			assert_int_equal(q, v);
			assert_true(v == lm[0] || v == lm[1] || v == lm[2] ||
			    v == lm[3] || v == lm[4]);
			assert_int_equal(veil_rx_commit(t_, &d, 1, v, la),
			    VEIL_OK);
			found = a;
			break;
		}
		/* never someone else's either */
		assert_int_equal(lookup(t_, &e, v, &o, &q) == VEIL_OK &&
		    o != 99, 0);
		n = v + 1;
	}
	if (!expect) {
		assert_int_equal(found, 0);
		veil_tagtab_free(t_);
		return;
	}
	assert_true(found >= 1);
	assert_true(found <= resync_bound(G));
	check_armed(t_, &d, 1, la, la + LEVELS);
	/* the rest of the message and later ones: the regular lookahead */
	for (s = v + 1; s < v + 300; s++) {
		assert_int_equal(lookup(t_, &d, s, &o, &q), VEIL_OK);
		assert_int_equal(q, s);
		assert_int_equal(veil_rx_commit(t_, &d, 1, s, la), VEIL_OK);
	}
	check_armed(t_, &d, 1, la, la + LEVELS);
	check_armed(t_, &e, 99, la, la + LEVELS);
	veil_tagtab_free(t_);
}

static void
test_resync_recovers(void **state)
{
	static const uint64_t losses[] = { 17, 200, 5000, 100000 };
	static const uint64_t tops[] = { 5, 1000, (1 << 20) - 16,
	    (1 << 20) - 17, (1 << 20) - 15, (3 << 17) - 16, (9 << 11) - 16,
	    UINT64_C(77777777) };
	size_t i, j;

	(void)state;
	/* the bounds these gaps get (G = loss - lookahead) */
	assert_int_equal(resync_bound(17 - VEIL_LOOKAHEAD), 2);
	assert_int_equal(resync_bound(200 - VEIL_LOOKAHEAD), 2);
	assert_int_equal(resync_bound(5000 - VEIL_LOOKAHEAD), 4);
	assert_int_equal(resync_bound(100000 - VEIL_LOOKAHEAD), 5);
	assert_int_equal(resync_bound(0), 1);
	for (i = 0; i < sizeof(losses) / sizeof(losses[0]); i++)
		for (j = 0; j < sizeof(tops) / sizeof(tops[0]); j++)
			recover(tops[j], losses[i], 1);
	/* within the lookahead nothing is needed: attempt 1 is next_seq */
	recover(1000, 16, 1);
	/* beyond the reach: re-pairing */
	recover(1000, LM_MAX + VEIL_LOOKAHEAD + 1, 0);
	/* the worst alignment, L_4 = h + LM_MIN: the guarantee is tight */
	recover((1 << 20) - LM_MIN - VEIL_LOOKAHEAD, LM_MIN + VEIL_LOOKAHEAD, 1);
	recover((1 << 20) - LM_MIN - VEIL_LOOKAHEAD, LM_MIN + VEIL_LOOKAHEAD + 1,
	    0);
	/* one above, the best one: L_4 = h + LM_MAX, reach of a pairing */
	recover((1 << 20) - LM_MIN + 1 - VEIL_LOOKAHEAD, LM_MAX + VEIL_LOOKAHEAD,
	    1);
	recover((1 << 20) - LM_MIN + 1 - VEIL_LOOKAHEAD,
	    LM_MAX + VEIL_LOOKAHEAD + 1, 0);
}

/*
 * Two directions in one table with the same top, hence the same landmark
 * seqs: each tag resolves to its own owner only, a resync of one leaves
 * the other's entries alone, and the sender of one never hits the other.
 */
static void
test_rx_landmark_owners(void **state)
{
	struct veil_tagtab *t;
	struct veil_rxdir d, e;
	uint64_t lm[LEVELS], o, q, v, n;
	unsigned i, a;

	(void)state;
	t = veil_tagtab_new(0);
	mkdir_rx(&d);
	mkdir_rx(&e);
	assert_int_equal(veil_rx_arm(t, &d, 1, 16), VEIL_OK);
	assert_int_equal(veil_rx_arm(t, &e, 2, 16), VEIL_OK);
	assert_int_equal(veil_rx_commit(t, &d, 1, 500, 16), VEIL_OK);
	assert_int_equal(veil_rx_commit(t, &e, 2, 500, 16), VEIL_OK);
	model_landmarks(501, 16, lm);
	for (i = 0; i < LEVELS; i++) {
		assert_int_equal(lookup(t, &d, lm[i], &o, &q), VEIL_OK);
		assert_int_equal(o, 1);
		assert_int_equal(lookup(t, &e, lm[i], &o, &q), VEIL_OK);
		assert_int_equal(o, 2);
	}
	check_armed(t, &d, 1, 16, veil_tagtab_count(t) / 2);
	/* d resyncs at its level-2 landmark */
	assert_int_equal(veil_rx_commit(t, &d, 1, lm[2], 16), VEIL_OK);
	check_armed(t, &e, 2, 16, W - 1 + 16 + LEVELS);
	check_armed(t, &d, 1, 16, W - 1 + 16 + LEVELS);
	/* d's sender, far behind e's landmarks, escalates past all of them */
	n = 502;
	for (a = 1; a <= 8; a++) {
		v = veil_resync_seq(n, a);
		if (lookup(t, &d, v, &o, &q) == VEIL_OK)
			assert_int_equal(o, 1);
		n = v + 1;
	}
	/* e's sender jumping onto e's landmarks finds only e */
	for (i = 0; i < LEVELS; i++) {
		assert_int_equal(lookup(t, &e, lm[i], &o, &q), VEIL_OK);
		assert_int_equal(o, 2);
		assert_int_equal(q, lm[i]);
	}
	veil_rx_disarm(t, &d, 16);
	check_armed(t, &e, 2, 16, 0);
	veil_rx_disarm(t, &e, 16);
	assert_int_equal(veil_tagtab_count(t), 0);
	veil_tagtab_free(t);
}

/* --- receive chains (protocol.md 2.1) -------------------------------- */

#define PL 600u		/* period length of the chain tests */
#define GR 120u		/* grace and lead */
#define P0 UINT64_C(2000000)	/* a period in 2008 */

/* D_(p+n) from D_p, written out with libsodium. */
static void
spec_ratchet(uint8_t out[32], const uint8_t root[32], uint64_t n)
{
	uint8_t t[32];

	memcpy(t, root, 32);
	while (n-- > 0)
		crypto_kdf_derive_from_key(t, 32, 3, "veildir2", t);
	memcpy(out, t, 32);
}

static int
advance_at(struct veil_rxchain *c, uint64_t now)
{
	struct veil_clock clk = { now, GR, GR };

	return veil_rxchain_advance(c, &clk, NULL, 0, 0);
}

/* Which periods the chain holds, as a bit mask relative to its period:
 * 1 = p - 1, 2 = p, 4 = p + 1.  Also checks every slot's invariants. */
static unsigned
held(const struct veil_rxchain *c, const uint8_t root0[32], uint64_t q0)
{
	uint8_t want[32];
	unsigned mask = 0;
	int i;

	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		const struct veil_rxdir *s = &c->slot[i];

		if (!s->live) {
			/* a slot that is not live is all zero: no key left */
			assert_true(sodium_is_zero((const uint8_t *)s, sizeof(*s)));
			continue;
		}
		assert_int_equal(s->period % VEIL_RX_SLOTS, i);
		assert_true(s->period + 1 >= c->period && s->period <= c->period + 1);
		assert_true(s->period >= q0);
		spec_ratchet(want, root0, s->period - q0);
		assert_memory_equal(s->k.root, want, 32);
		crypto_kdf_derive_from_key(want, 32, 1, "veildir2", s->k.root);
		assert_memory_equal(s->k.key, want, 32);
		assert_int_equal(s->k.dir, c->dir);
		mask |= 1u << (s->period + 1 - c->period);
	}
	assert_true(mask & 2);
	return mask;
}

static void
test_rxchain_slots(void **state)
{
	struct veil_rxchain c;
	uint8_t root[32], bind[32];
	const uint64_t s0 = P0 * PL, s1 = (P0 + 1) * PL;

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_R2I, PL, P0), VEIL_OK);
	crypto_kdf_derive_from_key(bind, 32, 4, "veildir2", root);
	assert_memory_equal(c.bind, bind, 32);
	assert_int_equal(held(&c, root, P0), 2);

	/* In the middle of the period: p only. */
	assert_int_equal(advance_at(&c, s0 + 300), 0);
	assert_int_equal(held(&c, root, P0), 2);
	/* lead before the boundary: p + 1 comes */
	assert_int_equal(advance_at(&c, s1 - GR - 1), 0);
	assert_int_equal(held(&c, root, P0), 2);
	assert_int_equal(advance_at(&c, s1 - GR), 1);
	assert_int_equal(held(&c, root, P0), 2 | 4);
	assert_int_equal(c.period, P0);
	/* the boundary: p + 1 is current, p stays for the grace */
	assert_int_equal(advance_at(&c, s1), 1);
	assert_int_equal(c.period, P0 + 1);
	assert_int_equal(held(&c, root, P0), 1 | 2);
	assert_int_equal(advance_at(&c, s1 + GR - 1), 0);
	assert_int_equal(held(&c, root, P0), 1 | 2);
	/* grace over: p's key is gone (its slot is all zero, checked by held;
	 * and no byte of the chain holds it) */
	assert_int_equal(advance_at(&c, s1 + GR), 1);
	assert_null(memmem(&c, sizeof(c), root, 32));
	crypto_kdf_derive_from_key(bind, 32, 1, "veildir2", root);
	assert_null(memmem(&c, sizeof(c), bind, 32));
	crypto_kdf_derive_from_key(bind, 32, 4, "veildir2", root);
	assert_int_equal(held(&c, root, P0), 2);
	assert_null(veil_rxchain_find(&c, P0));
	assert_non_null(veil_rxchain_find(&c, P0 + 1));
	assert_memory_equal(c.bind, bind, 32);
	veil_rxchain_wipe(&c);
	assert_true(sodium_is_zero((const uint8_t *)&c, sizeof(c)));
}

/*
 * A frame sealed in period p (by a sender a little behind) opens within
 * the grace after the boundary and not after it; one sealed for p + 1 by a
 * sender a little ahead opens within the lead.
 */
static void
test_rxchain_grace_open(void **state)
{
	struct veil_rxchain c;
	struct veil_txchain tx;
	struct veil_frame_hdr h;
	struct veil_rxdir *d;
	uint8_t root[32], f0[512], f1[512], body[512], msgid[16];
	const uint64_t s1 = (P0 + 1) * PL;
	int i;

	(void)state;
	randombytes_buf(root, sizeof(root));
	veil_msgid_new(msgid);
	assert_int_equal(veil_txchain_init(&tx, root, VEIL_DIR_I2R, PL, P0), VEIL_OK);
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_I2R, PL, P0), VEIL_OK);
	assert_int_equal(veil_message_seal(f0, sizeof(f0), 512, &tx.k, &tx.seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)"p", 1), 1);
	/* the sender's clock is ahead: it seals in p + 1 already */
	assert_int_equal(veil_txchain_advance(&tx, s1 + 5), 1);
	assert_int_equal(veil_message_seal(f1, sizeof(f1), 512, &tx.k, &tx.seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)"q", 1), 1);

	/* receiver before the lead: p + 1's frame cannot open yet */
	assert_int_equal(advance_at(&c, s1 - GR - 1), 0);
	assert_null(veil_rxchain_find(&c, P0 + 1));
	assert_int_equal(advance_at(&c, s1 - GR), 1);
	d = veil_rxchain_find(&c, P0 + 1);
	assert_non_null(d);
	assert_int_equal(veil_frame_open(f1, 512, &d->k, 0, &h, body), VEIL_OK);
	assert_int_equal(veil_window_mark(&d->w, 0), VEIL_OK);

	/* within the grace: p's frame still opens */
	assert_int_equal(advance_at(&c, s1 + GR - 1), 1);
	d = veil_rxchain_find(&c, P0);
	assert_non_null(d);
	assert_int_equal(veil_frame_open(f0, 512, &d->k, 0, &h, body), VEIL_OK);
	assert_memory_equal(body, "p", 1);
	/* p + 1 kept its window: seq 0 is a replay there */
	d = veil_rxchain_find(&c, P0 + 1);
	assert_int_equal(veil_window_check(&d->w, 0), VEIL_ERR_REPLAY);

	/* after the grace: no key of the chain opens it any more */
	assert_int_equal(advance_at(&c, s1 + GR), 1);
	assert_null(veil_rxchain_find(&c, P0));
	for (i = 0; i < VEIL_RX_SLOTS; i++)
		if (c.slot[i].live)
			assert_int_equal(veil_frame_open(f0, 512, &c.slot[i].k, 0,
			    &h, body), VEIL_ERR_DECRYPT);
	veil_rxchain_wipe(&c);
	veil_txchain_wipe(&tx);
}

/* Many periods at once: only p - 1 (if in grace), p and p + 1 (if in
 * lead) come out, derived through the ratchet. */
static void
test_rxchain_jump(void **state)
{
	struct veil_rxchain c, d;
	uint8_t root[32];

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_I2R, PL, P0), VEIL_OK);
	d = c;
	/* 10 periods on, 5 s after the boundary: p - 1 in grace */
	assert_int_equal(advance_at(&c, (P0 + 10) * PL + 5), 1);
	assert_int_equal(c.period, P0 + 10);
	assert_int_equal(held(&c, root, P0), 1 | 2);
	/* 10 periods on, in the lead of the next */
	assert_int_equal(advance_at(&d, (P0 + 11) * PL - 1), 1);
	assert_int_equal(held(&d, root, P0), 2 | 4);
	/* and from there one more: p + 1 becomes p with the same window */
	d.slot[(P0 + 11) % 3].w.top = 7;
	d.slot[(P0 + 11) % 3].w.map[0] = 1;
	assert_int_equal(advance_at(&d, (P0 + 11) * PL), 1);
	assert_int_equal(held(&d, root, P0), 1 | 2);
	assert_int_equal(veil_rxchain_find(&d, P0 + 11)->w.top, 7);
	assert_int_equal(veil_window_check(&veil_rxchain_find(&d, P0 + 11)->w, 6),
	    VEIL_ERR_REPLAY);
	/* the chain is one-way: nothing of the start is left anywhere */
	for (int i = 0; i < VEIL_RX_SLOTS; i++)
		assert_memory_not_equal(d.slot[i].k.root, root, 32);
	veil_rxchain_wipe(&c);
	veil_rxchain_wipe(&d);
}

/* a and b hold the same keys, periods and windows; the clock landmarks
 * (not stored, set from the clock at each advance) may differ. */
static void
same_but_clocks(const struct veil_rxchain *a, const struct veil_rxchain *b)
{
	struct veil_rxchain x = *a, y = *b;
	int i;

	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		x.slot[i].clk_first = y.slot[i].clk_first = 0;
		x.slot[i].clk_count = y.slot[i].clk_count = 0;
	}
	assert_memory_equal(&x, &y, sizeof(x));
	sodium_memzero(&x, sizeof(x));
	sodium_memzero(&y, sizeof(y));
}

/* A clock that goes back moves nothing: not the period, not the lead key
 * once held (its window would be forgotten), and a passed key never
 * comes back.  (The clock landmarks follow the clock, back too.) */
static void
test_rxchain_never_back(void **state)
{
	struct veil_rxchain c, before;
	uint8_t root[32];
	const uint64_t s1 = (P0 + 1) * PL;

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_I2R, PL, P0), VEIL_OK);
	assert_int_equal(advance_at(&c, s1 - 10), 1);		/* lead */
	veil_rxchain_find(&c, P0 + 1)->w.top = 3;
	before = c;
	assert_int_equal(advance_at(&c, P0 * PL), 0);
	assert_int_equal(advance_at(&c, 0), 0);
	same_but_clocks(&c, &before);
	/* on to p + 2, then back to p's time */
	assert_int_equal(advance_at(&c, (P0 + 2) * PL + 300), 1);
	assert_int_equal(held(&c, root, P0), 2);
	before = c;
	assert_int_equal(advance_at(&c, s1), 0);
	assert_int_equal(c.period, P0 + 2);
	same_but_clocks(&c, &before);
	assert_null(veil_rxchain_find(&c, P0));
	assert_null(veil_rxchain_find(&c, P0 + 1));
	/* anchored in the future (a peer clock ahead): p stays live */
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_I2R, PL, P0 + 5),
	    VEIL_OK);
	assert_int_equal(advance_at(&c, s1), 0);
	assert_int_equal(c.period, P0 + 5);
	assert_non_null(veil_rxchain_find(&c, P0 + 5));
	veil_rxchain_wipe(&c);
	veil_rxchain_wipe(&before);
}

static void
test_rxchain_step_bound(void **state)
{
	struct veil_rxchain c;
	struct veil_clock clk = { 0, 0, 0 };
	uint8_t root[32], want[32];
	const uint64_t max = VEIL_RATCHET_MAX_STEPS;

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_R2I, 1, 10), VEIL_OK);
	clk.now = 10 + max + 2;
	assert_int_equal(veil_rxchain_advance(&c, &clk, NULL, 0, 0),
	    VEIL_ERR_RATCHET);
	assert_int_equal(c.period, 10 + max);
	spec_ratchet(want, root, max);
	assert_memory_equal(veil_rxchain_find(&c, 10 + max)->k.root, want, 32);
	assert_int_equal(veil_rxchain_advance(&c, &clk, NULL, 0, 0), 1);
	assert_int_equal(c.period, 10 + max + 2);
	spec_ratchet(want, want, 2);
	assert_memory_equal(veil_rxchain_find(&c, 10 + max + 2)->k.root, want, 32);
	veil_rxchain_wipe(&c);
}

/* How many seqs of d are armed, from the definition in replay.h. */
static size_t
model_count(const struct veil_rxdir *d, unsigned la)
{
	uint64_t top = d->w.top, lo = top > W ? top - W : 0, s, lm[LEVELS], cl[3];
	size_t n = model_landmarks(top, la, lm) + model_clocks(d, la, cl);

	for (s = lo; s < top + la; s++)
		n += veil_window_check(&d->w, s) == VEIL_OK;
	return n;
}

/* With a tag table, the table always holds exactly the live slots, each
 * as owner_base + its index (plus `others` entries). */
static void
check_chain_armed(struct veil_tagtab *t, const struct veil_rxchain *c,
    uint64_t base, size_t others)
{
	size_t total = others, n[VEIL_RX_SLOTS] = { 0 };
	int i;

	for (i = 0; i < VEIL_RX_SLOTS; i++)
		if (c->slot[i].live)
			total += n[i] = model_count(&c->slot[i], VEIL_LOOKAHEAD);
	assert_int_equal(veil_tagtab_count(t), total);
	for (i = 0; i < VEIL_RX_SLOTS; i++)
		if (c->slot[i].live)
			check_armed(t, &c->slot[i], base + (uint64_t)i,
			    VEIL_LOOKAHEAD, total - n[i]);
}

static void
test_rxchain_tags_follow(void **state)
{
	struct veil_tagtab *t;
	struct veil_rxchain c, e;
	struct veil_clock clk = { 0, GR, GR };
	uint8_t root[32];
	uint64_t times[] = { P0 * PL + 1, (P0 + 1) * PL - GR, (P0 + 1) * PL,
	    (P0 + 1) * PL + GR, (P0 + 7) * PL + 3, (P0 + 8) * PL - 2,
	    (P0 + 8) * PL + GR + 1 };
	size_t i, other;

	(void)state;
	t = veil_tagtab_new(0);
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&e, root, VEIL_DIR_R2I, PL, P0), VEIL_OK);
	assert_int_equal(veil_rxchain_arm(t, &e, 100, VEIL_LOOKAHEAD), VEIL_OK);
	other = veil_tagtab_count(t);
	assert_int_equal(other, VEIL_LOOKAHEAD + LEVELS);
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_I2R, PL, P0), VEIL_OK);
	assert_int_equal(veil_rxchain_arm(t, &c, 8, VEIL_LOOKAHEAD), VEIL_OK);
	for (i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		clk.now = times[i];
		assert_true(veil_rxchain_advance(&c, &clk, t, 8, VEIL_LOOKAHEAD) >= 0);
		check_chain_armed(t, &c, 8, other);
		/* a frame in the current period moves its window */
		assert_int_equal(veil_rx_commit(t, veil_rxchain_find(&c, c.period),
		    8 + c.period % 3, 2 * i, VEIL_LOOKAHEAD), VEIL_OK);
		check_chain_armed(t, &c, 8, other);
	}
	veil_rxchain_disarm(t, &c, VEIL_LOOKAHEAD);
	assert_int_equal(veil_tagtab_count(t), other);
	veil_rxchain_disarm(t, &e, VEIL_LOOKAHEAD);
	assert_int_equal(veil_tagtab_count(t), 0);
	veil_tagtab_free(t);
	veil_rxchain_wipe(&c);
	veil_rxchain_wipe(&e);
}

static void
test_rxchain_bad_args(void **state)
{
	struct veil_rxchain c;
	struct veil_clock clk = { 1000, 0, 0 };
	uint8_t root[32];

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&c, root, 0, PL, 1), VEIL_ERR_INVAL);
	assert_int_equal(veil_rxchain_init(&c, root, 1, 0, 1), VEIL_ERR_INVAL);
	assert_int_equal(veil_rxchain_init(&c, NULL, 1, PL, 1), VEIL_ERR_INVAL);
	assert_int_equal(veil_rxchain_init(&c, root, 1, PL, UINT64_MAX / PL + 1),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_rxchain_advance(&c, &clk, NULL, 0, 0), VEIL_ERR_STATE);
	assert_int_equal(veil_rxchain_init(&c, root, 1, PL, 1), VEIL_OK);
	assert_int_equal(veil_rxchain_advance(&c, NULL, NULL, 0, 0), VEIL_ERR_INVAL);
	/* the last representable period: no lead key beyond it */
	assert_int_equal(veil_rxchain_init(&c, root, 1, PL, UINT64_MAX / PL),
	    VEIL_OK);
	clk.now = UINT64_MAX;
	clk.lead = PL;
	assert_int_equal(veil_rxchain_advance(&c, &clk, NULL, 0, 0), 0);
	assert_int_equal(veil_rxchain_find(&c, UINT64_MAX / PL) != NULL, 1);
	/* the same with one-second periods: period 2^64 - 1, no period after */
	assert_int_equal(veil_rxchain_init(&c, root, 1, 1, UINT64_MAX), VEIL_OK);
	assert_int_equal(veil_rxchain_advance(&c, &clk, NULL, 0, 0), 0);
	assert_int_equal(c.slot[0].live + c.slot[1].live + c.slot[2].live, 1);
	assert_int_equal(veil_rxchain_arm(NULL, &c, 0, 1), VEIL_ERR_INVAL);
	veil_rxchain_wipe(&c);
}

/* --- clock landmarks (protocol.md 2.1) ------------------------------------ */

#define CW 64u			/* the clock slot W, seconds */
#define CPL 3600u		/* an hour-long key period, the default */
#define CP0 UINT64_C(490000)	/* an hour in 2025 */
#define CGR 120u		/* grace and lead for an hour */
#define CBASE 8			/* owner base of the receiver's chain */
#define CFS 512			/* frame size */

static void
test_clock_seq(void **state)
{
	struct veil_txchain tx;
	uint8_t root[32];
	uint64_t o;
	const uint64_t st = CP0 * CPL;

	(void)state;
	assert_true(veil_clock_seq(0) == model_clock(0));
	assert_true(veil_clock_seq(1) == model_clock(1));
	assert_true(veil_clock_seq(40499) == model_clock(40499));
	assert_true(veil_clock_seq(40499) < (UINT64_C(1) << 49));
	assert_true(veil_clock_seq(UINT64_C(1) << 16) == 0);
	assert_true(veil_clock_seq(UINT64_MAX) == 0);
	assert_int_equal(veil_clock_landmark(model_clock(7), &o), 1);
	assert_int_equal(o, 7);
	assert_int_equal(veil_clock_landmark(model_clock(7) + 1, NULL), 0);
	assert_int_equal(veil_clock_landmark(model_clock(0) - VEIL_CLOCK_STRIDE,
	    NULL), 0);
	assert_int_equal(veil_clock_landmark(UINT64_C(1) << 20, NULL), 0);
	assert_int_equal(veil_clock_landmark(model_clock(UINT64_C(1) << 16),
	    NULL), 0);
	assert_int_equal(veil_clock_landmark(model_clock(40499), NULL), 1);
	assert_int_equal(veil_clock_slots(1), 1);
	assert_int_equal(veil_clock_slots(64), 1);
	assert_int_equal(veil_clock_slots(65), 2);
	assert_int_equal(veil_clock_slots(3600), 57);
	assert_int_equal(veil_clock_slots(VEIL_PERIOD_MAX), 40500);
	/* the landmarks lie beyond ordinary counting and the ladder: the
	 * highest landmark of a direction that accepted 2^40 frames */
	assert_true((UINT64_C(1) << 40) + LM_MAX + VEIL_LOOKAHEAD < veil_clock_seq(0));

	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_txchain_init(&tx, root, VEIL_DIR_I2R, CPL, CP0), VEIL_OK);
	assert_true(veil_txchain_clock_seq(&tx, st) == model_clock(0));
	assert_true(veil_txchain_clock_seq(&tx, st + CW - 1) == model_clock(0));
	assert_true(veil_txchain_clock_seq(&tx, st + CW) == model_clock(1));
	assert_true(veil_txchain_clock_seq(&tx, st + CPL - 1) == model_clock(56));
	/* a clock behind the chain's period: slot 0; past its end: the last */
	assert_true(veil_txchain_clock_seq(&tx, st - 1000) == model_clock(0));
	assert_true(veil_txchain_clock_seq(&tx, st + 5 * CPL) == model_clock(56));
	/* the sender's rule: the ladder first, the clock beyond it, never
	 * below its counter */
	tx.seq = 1000;
	assert_true(veil_txchain_resync(&tx, st, 0) == 1000);
	assert_true(veil_txchain_resync(&tx, st, 1) == 1024);
	assert_true(veil_txchain_resync(&tx, st, 5) == (UINT64_C(1) << 20));
	/* up to the top stride the top rung reaches any receiver: at a
	 * period's start seq 0 itself */
	assert_true(veil_txchain_resync(&tx, st, 6) == (UINT64_C(1) << 20));
	tx.seq = 0;
	assert_true(veil_txchain_resync(&tx, st, 6) == 0);
	tx.seq = UINT64_C(1) << 20;
	assert_true(veil_txchain_resync(&tx, st, 9) == (UINT64_C(1) << 20));
	tx.seq++;
	assert_true(veil_txchain_resync(&tx, st, 6) == model_clock(0));
	assert_true(veil_txchain_resync(&tx, st + 200, 99) == model_clock(3));
	tx.seq = model_clock(3) + 1;	/* slot 3's was used */
	assert_true(veil_txchain_resync(&tx, st + 200, 6) == tx.seq);
	assert_true(veil_txchain_resync(&tx, st + 256, 6) == model_clock(4));
	tx.live = 0;
	assert_true(veil_txchain_clock_seq(&tx, st) == 0);
	assert_true(veil_txchain_clock_seq(NULL, st) == 0);
	veil_txchain_wipe(&tx);
}

/* One direction, sender and receiver, on one table with another
 * direction (which must never be hit). */
struct clink {
	struct veil_txchain tx;
	struct veil_rxchain rx, other;
	struct veil_tagtab *t;
	uint64_t last;		/* the last seq sealed, + 1 (0: none) */
	unsigned jumps;		/* clock landmarks sealed at */
};

static void
clink_init(struct clink *l, uint64_t now)
{
	struct veil_clock clk = { now, CGR, CGR };
	uint8_t root[32];

	memset(l, 0, sizeof(*l));
	l->t = veil_tagtab_new(0);
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_txchain_init(&l->tx, root, VEIL_DIR_I2R, CPL,
	    now / CPL), VEIL_OK);
	assert_int_equal(veil_rxchain_init(&l->rx, root, VEIL_DIR_I2R, CPL,
	    now / CPL), VEIL_OK);
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&l->other, root, VEIL_DIR_I2R, CPL,
	    now / CPL), VEIL_OK);
	assert_true(veil_rxchain_advance(&l->rx, &clk, NULL, 0, 0) >= 0);
	assert_true(veil_rxchain_advance(&l->other, &clk, NULL, 0, 0) >= 0);
	assert_int_equal(veil_rxchain_arm(l->t, &l->rx, CBASE, VEIL_LOOKAHEAD), VEIL_OK);
	assert_int_equal(veil_rxchain_arm(l->t, &l->other, 100, VEIL_LOOKAHEAD),
	    VEIL_OK);
}

static void
clink_free(struct clink *l)
{
	veil_rxchain_disarm(l->t, &l->rx, VEIL_LOOKAHEAD);
	veil_rxchain_disarm(l->t, &l->other, VEIL_LOOKAHEAD);
	assert_int_equal(veil_tagtab_count(l->t), 0);
	veil_tagtab_free(l->t);
	veil_txchain_wipe(&l->tx);
	veil_rxchain_wipe(&l->rx);
	veil_rxchain_wipe(&l->other);
}

/* The receiver's clock moves (its sweep): keys and clock landmarks. */
static void
clink_rx_at(struct clink *l, uint64_t now)
{
	struct veil_clock clk = { now, CGR, CGR };

	assert_true(veil_rxchain_advance(&l->rx, &clk, l->t, CBASE,
	    VEIL_LOOKAHEAD) >= 0);
	assert_true(veil_rxchain_advance(&l->other, &clk, l->t, 100,
	    VEIL_LOOKAHEAD) >= 0);
}

/* The sender seals its attempt-th sending at its clock now into f; the
 * seq it used.  A seq is never sealed twice under a key. */
static uint64_t
clink_seal(struct clink *l, uint64_t now, unsigned attempt, uint8_t f[CFS])
{
	uint8_t msgid[16];
	uint64_t before = l->tx.period, seq;

	assert_true(veil_txchain_advance(&l->tx, now) >= 0);
	if (l->tx.period != before)
		l->last = 0;
	seq = veil_txchain_resync(&l->tx, now, attempt);
	assert_true(seq >= l->tx.seq);
	assert_true(l->last == 0 || seq >= l->last);
	if (attempt > LEVELS && seq == veil_txchain_clock_seq(&l->tx, now))
		l->jumps++;
	l->tx.seq = seq;
	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(f, CFS, CFS, &l->tx.k, &l->tx.seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)"x", 1), 1);
	assert_true(l->tx.seq == seq + 1);
	l->last = seq + 1;
	return seq;
}

/* The receiver gets f: 1 if it opened and was accepted (by the chain
 * under test), 0 if no key expects it or the window refuses it. */
static int
clink_deliver(struct clink *l, const uint8_t f[CFS], uint64_t *seqp)
{
	struct veil_frame_hdr h;
	struct veil_rxdir *d;
	uint8_t tag[8], body[CFS];
	uint64_t owner, seq;

	veil_frame_tag(f, tag);
	if (veil_tagtab_get(l->t, tag, &owner, &seq) != VEIL_OK)
		return 0;
	assert_true(owner >= CBASE && owner < CBASE + VEIL_RX_SLOTS);
	d = &l->rx.slot[owner - CBASE];
	assert_true(d->live);
	assert_int_equal(veil_frame_open(f, CFS, &d->k, seq, &h, body), VEIL_OK);
	if (veil_window_check(&d->w, seq) != VEIL_OK)
		return 0;
	assert_int_equal(veil_rx_commit(l->t, d, owner, seq, VEIL_LOOKAHEAD),
	    VEIL_OK);
	if (seqp != NULL)
		*seqp = seq;
	return 1;
}

/* The table holds the live keys of both chains exactly. */
static void
clink_check(struct clink *l)
{
	size_t n = 0;
	int i;

	for (i = 0; i < VEIL_RX_SLOTS; i++)
		if (l->other.slot[i].live)
			n += model_count(&l->other.slot[i], VEIL_LOOKAHEAD);
	check_chain_armed(l->t, &l->rx, CBASE, n);
}

/*
 * The defect of the ladder alone, and its repair.  The receiver took five
 * frames and went away; every frame the sender sent meanwhile was lost,
 * its five ladder rungs among them, and its counter is beyond the
 * receiver's highest landmark L_4, where no further rung can reach.  Back,
 * the receiver finds the sender's next retransmission after the start of
 * a slot the sender has not jumped in yet: within W and a retransmission
 * of its return, with the sender's clock up to W ahead or behind.  Each
 * seq is sealed once, the landmark frame opens once (a replay is not
 * accepted), the frames after it follow the regular lookahead, and the
 * receiver's cost stays three tags per key.
 */
static void
clock_past_ladder(int64_t skew, uint64_t away, uint64_t every)
{
	struct clink l;
	uint8_t f[CFS], landmark[CFS];
	uint64_t t0 = CP0 * CPL + 700, t, back, lm[LEVELS], seq = 0, found = 0;
	uint64_t s, o, q;
	unsigned a, i, jumps_away;

	clink_init(&l, t0);
	/* five frames arrive */
	for (i = 0; i < 5; i++) {
		clink_seal(&l, t0, 0, f);
		assert_int_equal(clink_deliver(&l, f, NULL), 1);
	}
	assert_int_equal(model_landmarks(5, VEIL_LOOKAHEAD, lm), LEVELS);
	/* away: the first sending and the five rungs (1, 2, 4, 5, 5 s
	 * apart, as with retransmit 1 s to 5 s) are lost, with frames of
	 * other messages between them */
	t = t0 + 1;
	for (a = 0; a <= LEVELS; a++) {
		clink_seal(&l, t, a, f);
		clink_seal(&l, t, 0, f);
		t += a < 2 ? 1u << a : 5;
	}
	assert_true(l.tx.seq > lm[LEVELS - 1]);
	/* the ladder alone cannot reach it any more (version 2's defect):
	 * a rung at the top level is beyond every armed seq */
	clink_rx_at(&l, t + skew);
	for (a = LEVELS; a < LEVELS + 5; a++) {
		s = veil_resync_seq(l.tx.seq + (a - LEVELS) * (1 << 20), a);
		assert_int_equal(lookup(l.t, &l.rx.slot[CP0 % 3], s, &o, &q),
		    VEIL_ERR_INVAL);
	}
	/* still away: retransmissions every `every` seconds, all lost, and
	 * younger messages climbing the ladder meanwhile (a rung a second at
	 * most, up to 2^20 each); at most one clock landmark per slot is
	 * used, and the next slot's is still ahead */
	jumps_away = l.jumps;
	for (a = 0; t < t0 + away; t += every, a++) {
		clink_seal(&l, (uint64_t)((int64_t)t + skew), LEVELS + 1, f);
		clink_seal(&l, (uint64_t)((int64_t)t + skew), LEVELS - a % 3, f);
	}
	jumps_away = l.jumps - jumps_away;
	assert_true(jumps_away + 1 >= (away - 23) / CW);
	assert_true(jumps_away <= away / CW + 2);
	/* back: the receiver's clock is t, the sender's t + skew */
	back = t;
	clink_rx_at(&l, back);
	clink_check(&l);
	for (; t <= back + CW + every; t += every) {
		clink_rx_at(&l, t);
		s = clink_seal(&l, (uint64_t)((int64_t)t + skew), LEVELS + 2, f);
		if (clink_deliver(&l, f, &seq)) {
			found = t;
			memcpy(landmark, f, CFS);
			break;
		}
		/* a new message meanwhile, lost the same way */
		clink_seal(&l, (uint64_t)((int64_t)t + skew), 0, f);
		assert_int_equal(clink_deliver(&l, f, NULL), 0);
	}
	assert_true(found != 0);
	assert_true(found - back <= CW + every);
	/* found at the clock landmark of the sender's slot */
	assert_true(seq == s);
	assert_true(seq == model_clock(((uint64_t)((int64_t)found + skew) -
	    CP0 * CPL) / CW));
	clink_check(&l);
	/* a replay of the landmark frame is not accepted */
	assert_int_equal(clink_deliver(&l, landmark, NULL), 0);
	assert_int_equal(veil_window_check(&l.rx.slot[CP0 % 3].w, seq),
	    VEIL_ERR_REPLAY);
	/* what follows takes the regular lookahead, a retransmission the
	 * ladder from there */
	for (i = 0; i < 20; i++) {
		clink_seal(&l, (uint64_t)((int64_t)t + skew), 0, f);
		assert_int_equal(clink_deliver(&l, f, &q), 1);
		assert_true(q == seq + 1 + i);
	}
	clink_seal(&l, (uint64_t)((int64_t)t + skew), 0, f);	/* lost */
	clink_seal(&l, (uint64_t)((int64_t)t + skew), 2, f);
	assert_int_equal(clink_deliver(&l, f, NULL), 1);
	clink_check(&l);
	/* at most three clock tags per key */
	for (i = 0; i < VEIL_RX_SLOTS; i++)
		assert_true(l.rx.slot[i].clk_count <= 3);
	clink_free(&l);
}

static void
test_clock_past_ladder(void **state)
{
	static const int64_t skews[] = { 0, 1, -1, 30, -30, 63, -63, 64, -64 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(skews) / sizeof(skews[0]); i++) {
		clock_past_ladder(skews[i], 200, 5);
		clock_past_ladder(skews[i], 333, 3);
		clock_past_ladder(skews[i], 90, 1);
	}
}

/* A sender more than a slot off is not met by the clock (the receiver
 * arms three slots): the bound of the skew is real. */
static void
test_clock_skew_bound(void **state)
{
	struct clink l;
	uint8_t f[CFS];
	uint64_t t = CP0 * CPL + 1000;

	(void)state;
	clink_init(&l, t);
	l.tx.seq = 5000000;	/* beyond the ladder */
	clink_rx_at(&l, t);
	/* slot 15 at the receiver: 14, 15, 16 are armed */
	assert_true(clink_seal(&l, t + 2 * CW, LEVELS + 1, f) == model_clock(17));
	assert_int_equal(clink_deliver(&l, f, NULL), 0);
	l.last = 0;
	l.tx.seq = 5000000;
	assert_true(clink_seal(&l, t - 2 * CW, LEVELS + 1, f) == model_clock(13));
	assert_int_equal(clink_deliver(&l, f, NULL), 0);
	assert_true(clink_seal(&l, t - CW, LEVELS + 1, f) == model_clock(14));
	assert_int_equal(clink_deliver(&l, f, NULL), 1);
	clink_free(&l);
}

/*
 * Around a key-period boundary: a sender a little behind still seals
 * under the old period, at its last slot's landmark, which the receiver's
 * grace key arms; one a little ahead seals under the new period, at slot
 * 0's, which the lead key arms once the boundary is a slot away.
 */
static void
test_clock_grace_lead(void **state)
{
	struct clink l;
	uint8_t f[CFS];
	const uint64_t b = (CP0 + 1) * CPL;	/* the boundary */
	uint64_t seq, d;

	(void)state;
	/* behind: the receiver is in p + 1 (its grace keeps p), the sender
	 * up to W behind, still in p and beyond p's ladder */
	for (d = 1; d <= CW; d += 7) {
		clink_init(&l, CP0 * CPL + 5);
		l.tx.seq = 5000000;
		clink_rx_at(&l, b + d - 1);
		assert_non_null(veil_rxchain_find(&l.rx, CP0));
		assert_true(clink_seal(&l, b - 1, LEVELS + 1, f) ==
		    model_clock(56));
		assert_int_equal(l.tx.period, CP0);
		assert_int_equal(clink_deliver(&l, f, &seq), 1);
		assert_true(seq == model_clock(56));
		clink_check(&l);
		clink_free(&l);
	}
	/* ahead: the receiver is in p, holding p + 1 in its lead, the
	 * sender up to W ahead, in p + 1 already and beyond that period's
	 * ladder (its first frames there lost) */
	for (d = 1; d <= CW; d += 7) {
		clink_init(&l, CP0 * CPL + 5);
		clink_rx_at(&l, b - d);
		assert_non_null(veil_rxchain_find(&l.rx, CP0 + 1));
		assert_int_equal(veil_txchain_advance(&l.tx, b), 1);
		l.tx.seq = 5000000;
		assert_true(clink_seal(&l, b, LEVELS + 1, f) == model_clock(0));
		assert_int_equal(l.tx.period, CP0 + 1);
		assert_int_equal(clink_deliver(&l, f, &seq), 1);
		assert_true(seq == model_clock(0));
		clink_check(&l);
		clink_free(&l);
	}
	/* a retransmission beyond the ladder at a period's start is sealed
	 * at seq 0, not at a clock landmark: the lead key's range finds it
	 * even when the clocks are further apart than W (up to the lead) */
	clink_init(&l, CP0 * CPL + 5);
	l.tx.seq = 5000000;
	clink_rx_at(&l, b - CGR);
	assert_true(clink_seal(&l, b, LEVELS + 7, f) == 0);
	assert_int_equal(clink_deliver(&l, f, &seq), 1);
	assert_true(seq == 0);
	clink_check(&l);
	clink_free(&l);
	/* the lead key arms slot 0 only within a slot of the boundary */
	clink_init(&l, CP0 * CPL + 5);
	clink_rx_at(&l, b - CW - 1);
	assert_non_null(veil_rxchain_find(&l.rx, CP0 + 1));
	assert_int_equal(veil_rxchain_find(&l.rx, CP0 + 1)->clk_count, 0);
	clink_rx_at(&l, b - CW);
	assert_int_equal(veil_rxchain_find(&l.rx, CP0 + 1)->clk_count, 1);
	clink_check(&l);
	/* the grace key's slots end with its period */
	clink_rx_at(&l, b + 100);
	assert_non_null(veil_rxchain_find(&l.rx, CP0));
	assert_int_equal(veil_rxchain_find(&l.rx, CP0)->clk_count, 0);
	clink_check(&l);
	clink_free(&l);
}

/* Clock landmarks are set by the clock, not stored, and cost nothing when
 * they stay: an advance that only moves them reports no change, arming
 * and disarming take them along, and one inside the regular range is
 * left to it. */
static void
test_clock_arming(void **state)
{
	struct veil_tagtab *t;
	struct veil_rxchain c;
	struct veil_rxdir *d;
	struct veil_clock clk = { CP0 * CPL + 10, CGR, CGR };
	uint8_t root[32];
	size_t n;

	(void)state;
	t = veil_tagtab_new(0);
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_rxchain_init(&c, root, VEIL_DIR_I2R, CPL, CP0), VEIL_OK);
	assert_int_equal(veil_rxchain_arm(t, &c, 0, VEIL_LOOKAHEAD), VEIL_OK);
	assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD + LEVELS);
	/* slot 0: slots 0 and 1 come, and it is not a change to store */
	assert_int_equal(veil_rxchain_advance(&c, &clk, t, 0, VEIL_LOOKAHEAD), 0);
	d = veil_rxchain_find(&c, CP0);
	assert_int_equal(d->clk_first, 0);
	assert_int_equal(d->clk_count, 2);
	assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD + LEVELS + 2);
	check_chain_armed(t, &c, 0, 0);
	/* the same slot again: nothing moves */
	clk.now += 20;
	assert_int_equal(veil_rxchain_advance(&c, &clk, t, 0, VEIL_LOOKAHEAD), 0);
	assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD + LEVELS + 2);
	/* slot 1, slot 2: three slots, then one goes and one comes */
	clk.now = CP0 * CPL + CW;
	assert_int_equal(veil_rxchain_advance(&c, &clk, t, 0, VEIL_LOOKAHEAD), 0);
	assert_int_equal(d->clk_count, 3);
	check_chain_armed(t, &c, 0, 0);
	clk.now += CW;
	assert_int_equal(veil_rxchain_advance(&c, &clk, t, 0, VEIL_LOOKAHEAD), 0);
	assert_int_equal(d->clk_first, 1);
	assert_int_equal(d->clk_count, 3);
	check_chain_armed(t, &c, 0, 0);
	/* disarm and arm take them along */
	veil_rxchain_disarm(t, &c, VEIL_LOOKAHEAD);
	assert_int_equal(veil_tagtab_count(t), 0);
	assert_int_equal(veil_rxchain_arm(t, &c, 0, VEIL_LOOKAHEAD), VEIL_OK);
	check_chain_armed(t, &c, 0, 0);
	n = veil_tagtab_count(t);
	/* a window right below C(2): C(2) is in the regular range, armed
	 * once; the window moving past C(1) and C(2) leaves only C(3) */
	veil_rxchain_disarm(t, &c, VEIL_LOOKAHEAD);
	d->w.top = model_clock(2) - 3;
	assert_int_equal(veil_rxchain_arm(t, &c, 0, VEIL_LOOKAHEAD), VEIL_OK);
	check_chain_armed(t, &c, 0, 0);
	assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD + W + LEVELS + 1);
	assert_int_equal(veil_rx_commit(t, d, CP0 % 3, model_clock(2), VEIL_LOOKAHEAD),
	    VEIL_OK);
	check_chain_armed(t, &c, 0, 0);
	/* the table only follows a change: without one, only recorded */
	assert_int_equal(veil_rx_clock(t, d, CP0 % 3, 5, 4, VEIL_LOOKAHEAD),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_rx_clock(NULL, NULL, 0, 0, 0, 0), VEIL_ERR_INVAL);
	veil_rxchain_disarm(t, &c, VEIL_LOOKAHEAD);
	assert_int_equal(veil_tagtab_count(t), 0);
	assert_true(n > 0);
	/* an unpacked pair has none until its first advance */
	veil_tagtab_free(t);
	veil_rxchain_wipe(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_fresh),
		cmocka_unit_test(test_window_reorder),
		cmocka_unit_test(test_window_jumps),
		cmocka_unit_test(test_window_model),
		cmocka_unit_test(test_window_huge),
		cmocka_unit_test(test_tagtab_basic),
		cmocka_unit_test(test_tagtab_growth),
		cmocka_unit_test(test_tagtab_clusters),
		cmocka_unit_test(test_rx_arm_fresh),
		cmocka_unit_test(test_rx_commit_in_order),
		cmocka_unit_test(test_rx_reorder_model),
		cmocka_unit_test(test_rx_lookahead_edges),
		cmocka_unit_test(test_rx_landmark_model),
		cmocka_unit_test(test_rx_landmark_aligned),
		cmocka_unit_test(test_rx_landmark_owners),
		cmocka_unit_test(test_resync_seq),
		cmocka_unit_test(test_resync_converges),
		cmocka_unit_test(test_resync_recovers),
		cmocka_unit_test(test_rxchain_slots),
		cmocka_unit_test(test_rxchain_grace_open),
		cmocka_unit_test(test_rxchain_jump),
		cmocka_unit_test(test_rxchain_never_back),
		cmocka_unit_test(test_rxchain_step_bound),
		cmocka_unit_test(test_rxchain_tags_follow),
		cmocka_unit_test(test_rxchain_bad_args),
		cmocka_unit_test(test_clock_seq),
		cmocka_unit_test(test_clock_past_ladder),
		cmocka_unit_test(test_clock_skew_bound),
		cmocka_unit_test(test_clock_grace_lead),
		cmocka_unit_test(test_clock_arming),
	};

	tu_deterministic_rng("test_replay");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
