/* Tests for libproto replay: the sliding window, the tag table and the armed set of receive directions. */
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
	veil_dirkey_from_root(&d->k, root);
	veil_window_init(&d->w);
	d->live = 1;
}

/* Is seq in the armed set, computed from the definition in replay.h? */
static int
model_armed(const struct veil_rxdir *d, uint64_t seq, unsigned la)
{
	uint64_t top = d->w.top, lo = top > W ? top - W : 0;

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

/* The table holds exactly d's armed set (plus `others` entries). */
static void
check_armed(struct veil_tagtab *t, const struct veil_rxdir *d,
    uint64_t owner, unsigned la, size_t others)
{
	uint64_t s, lo, hi, o, q;
	size_t n = 0;

	lo = d->w.top > W + 10 ? d->w.top - W - 10 : 0;
	hi = d->w.top + la + 10;
	for (s = lo; s < hi; s++) {
		int armed = model_armed(d, s, la);
		int rc = lookup(t, d, s, &o, &q);

		if (armed) {
			n++;
			assert_int_equal(rc, VEIL_OK);
			assert_int_equal(o, owner);
			assert_int_equal(q, s);
		} else
			assert_int_equal(rc, VEIL_ERR_INVAL);
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
	assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD);
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
		/* all of the window is accepted: only the lookahead remains */
		assert_int_equal(veil_tagtab_count(t), VEIL_LOOKAHEAD);
		if (s % 37 == 0)
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
		check_armed(t, &d, 1, la, la);
	}
	assert_true(found > N / 2);
	check_armed(t, &other, 77, la, veil_tagtab_count(t) - la);
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
	assert_int_equal(veil_tagtab_count(t), 17);
	assert_int_equal(veil_rx_commit(t, &d, 2, 3 + W, 16), VEIL_OK);
	assert_int_equal(lookup(t, &d, 3, &o, &q), VEIL_ERR_INVAL);
	assert_int_equal(veil_tagtab_count(t), 16);

	/* a big jump (a frame found through a re-arm, say) */
	assert_int_equal(veil_rx_commit(t, &d, 2, 100000, 16), VEIL_OK);
	check_armed(t, &d, 2, 16, 0);
	assert_int_equal(veil_tagtab_count(t), W - 1 + 16);
	assert_int_equal(veil_rx_commit(t, &d, 2, 100000 + 200, 16), VEIL_OK);
	check_armed(t, &d, 2, 16, 0);
	veil_rx_disarm(t, &d, 16);
	assert_int_equal(veil_tagtab_count(t), 0);
	veil_tagtab_free(t);
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
	};

	tu_deterministic_rng("test_replay");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
