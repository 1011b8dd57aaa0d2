/* libveil chain: transmit and receive key chains, their time ratchet and the tags of the receive keys. */
#include <string.h>

#include <sodium.h>

#include "chain.h"

#define CHAIN_CTX "veildir2"
#define CHAIN_ID_BIND 4

int
veil_period_valid(uint32_t plen)
{
	return plen >= VEIL_PERIOD_MIN && plen <= VEIL_PERIOD_MAX;
}

uint64_t
veil_period_of(uint64_t t, uint32_t plen)
{
	return plen == 0 ? 0 : t / plen;
}

/* start(q) = q * plen, or UINT64_MAX when that does not fit. */
static uint64_t
period_start(uint64_t q, uint32_t plen)
{
	if (plen != 0 && q > UINT64_MAX / plen)
		return UINT64_MAX;
	return q * plen;
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/* Every period a chain can be in starts at a representable second. */
static int
chain_params_valid(uint8_t dir, uint32_t plen, uint64_t period)
{
	return veil_dir_valid(dir) && veil_period_valid(plen) &&
	    period <= UINT64_MAX / plen;
}

void
veil_chain_bind(uint8_t bind[VEIL_KEY_BYTES], const uint8_t root[VEIL_KEY_BYTES])
{
	uint8_t tmp[VEIL_KEY_BYTES];

	crypto_kdf_derive_from_key(tmp, sizeof(tmp), CHAIN_ID_BIND, CHAIN_CTX,
	    root);
	memcpy(bind, tmp, VEIL_KEY_BYTES);
	sodium_memzero(tmp, sizeof(tmp));
}

/* root := D_(q+n) from root = D_q, n ratchet steps; root is overwritten
 * in place, so no passed root survives. */
static void
ratchet(uint8_t root[VEIL_KEY_BYTES], uint64_t n)
{
	for (; n > 0; n--)
		veil_root_next(root, root);
}

int
veil_txchain_init(struct veil_txchain *c, const uint8_t root[VEIL_KEY_BYTES],
    uint8_t dir, uint32_t plen, uint64_t period)
{
	if (c == NULL)
		return VEIL_ERR_INVAL;
	sodium_memzero(c, sizeof(*c));
	if (root == NULL || !chain_params_valid(dir, plen, period))
		return VEIL_ERR_INVAL;
	if (veil_dirkey_from_root(&c->k, root, dir) != VEIL_OK)
		return VEIL_ERR_INVAL;
	veil_chain_bind(c->bind, root);
	c->period = period;
	c->plen = plen;
	c->seq = 0;
	c->live = 1;
	return VEIL_OK;
}

int
veil_txchain_advance(struct veil_txchain *c, uint64_t now)
{
	uint8_t root[VEIL_KEY_BYTES];
	uint64_t target, steps;
	int partial = 0;

	if (c == NULL)
		return VEIL_ERR_INVAL;
	if (!c->live)
		return VEIL_ERR_STATE;
	if (!chain_params_valid(c->k.dir, c->plen, c->period))
		return VEIL_ERR_INVAL;
	target = now / c->plen;
	if (target <= c->period)
		return 0;	/* never backwards */
	steps = target - c->period;
	if (steps > VEIL_RATCHET_MAX_STEPS) {
		steps = VEIL_RATCHET_MAX_STEPS;
		partial = 1;
	}
	memcpy(root, c->k.root, sizeof(root));
	ratchet(root, steps);
	/* Overwrites the old root, key and nkey. */
	veil_dirkey_from_root(&c->k, root, c->k.dir);
	sodium_memzero(root, sizeof(root));
	c->period += steps;
	c->seq = 0;
	return partial ? VEIL_ERR_RATCHET : 1;
}

uint64_t
veil_txchain_clock_seq(const struct veil_txchain *c, uint64_t now)
{
	uint64_t start, slot, n;

	if (c == NULL || !c->live ||
	    !chain_params_valid(c->k.dir, c->plen, c->period))
		return 0;
	start = period_start(c->period, c->plen);
	n = veil_clock_slots(c->plen);
	slot = now > start ? (now - start) / VEIL_CLOCK_SLOT : 0;
	return veil_clock_seq(slot < n ? slot : n - 1);
}

uint64_t
veil_txchain_resync(const struct veil_txchain *c, uint64_t now,
    unsigned attempt)
{
	uint64_t cl;

	if (c == NULL)
		return 0;
	/* Up to the top stride, the ladder's top rung reaches any receiver:
	 * its L_4 is a multiple of 2^20 above its window, so at least 2^20.
	 * (At a period's start, seq 0 is better than a landmark the
	 * receiver may not arm yet.) */
	if (attempt <= VEIL_RESYNC_LEVELS || c->seq <= VEIL_RESYNC_TOP)
		return veil_resync_seq(c->seq, attempt);
	cl = veil_txchain_clock_seq(c, now);
	return cl >= c->seq ? cl : c->seq;
}

void
veil_txchain_wipe(struct veil_txchain *c)
{
	if (c != NULL)
		sodium_memzero(c, sizeof(*c));
}

int
veil_rxchain_init(struct veil_rxchain *c, const uint8_t root[VEIL_KEY_BYTES],
    uint8_t dir, uint32_t plen, uint64_t period)
{
	struct veil_rxdir *s;

	if (c == NULL)
		return VEIL_ERR_INVAL;
	sodium_memzero(c, sizeof(*c));
	if (root == NULL || !chain_params_valid(dir, plen, period))
		return VEIL_ERR_INVAL;
	s = &c->slot[period % VEIL_RX_SLOTS];
	if (veil_dirkey_from_root(&s->k, root, dir) != VEIL_OK)
		return VEIL_ERR_INVAL;
	veil_window_init(&s->w);
	s->period = period;
	s->live = 1;
	veil_chain_bind(c->bind, root);
	c->period = period;
	c->plen = plen;
	c->dir = dir;
	c->live = 1;
	return VEIL_OK;
}

/*
 * The clock slots a receiver arms for the key of period q at now: those a
 * sender whose clock is at most W away can be in, the slots of
 * [now - W, now + W] within the period [start(q), start(q) + plen).  In
 * the middle of a period that is s - 1, s and s + 1 for the receiver's
 * own slot s; before start(q) (a lead key) slot 0 once start(q) is at most
 * W away; after the period's end (a grace key) its last slot for W.
 * Never more than three: the span is 2W.
 */
static void
clock_window(uint64_t q, uint32_t plen, uint64_t now, uint32_t *first,
    unsigned *count)
{
	uint64_t start = period_start(q, plen), end = sat_add(start, plen);
	uint64_t lo = sat_sub(now, VEIL_CLOCK_SLOT);
	uint64_t hi = sat_add(now, VEIL_CLOCK_SLOT);

	*first = 0;
	*count = 0;
	if (lo < start)
		lo = start;
	if (hi > end - 1)
		hi = end - 1;
	if (lo > hi)
		return;
	lo = (lo - start) / VEIL_CLOCK_SLOT;
	hi = (hi - start) / VEIL_CLOCK_SLOT;
	*first = (uint32_t)lo;	/* < veil_clock_slots(plen) <= 40,500 */
	*count = (unsigned)(hi - lo + 1);
}

static int
slot_holds(const struct veil_rxchain *c, uint64_t q)
{
	const struct veil_rxdir *s = &c->slot[q % VEIL_RX_SLOTS];

	return s->live && s->period == q;
}

struct veil_rxdir *
veil_rxchain_find(struct veil_rxchain *c, uint64_t q)
{
	if (c == NULL || !c->live || !slot_holds(c, q))
		return NULL;
	return &c->slot[q % VEIL_RX_SLOTS];
}

/*
 * The periods the chain holds after the move are among q - 1, q, q + 1
 * (one residue mod 3 each, so each has its slot).  For each: a slot that
 * holds it already stays (window and all) if still wanted; one that does
 * not is derived if wanted and reachable, that is later than the highest
 * period held before (the frontier f, from which the ratchet runs): an
 * earlier one was passed, its root is gone and it cannot come back.
 */
int
veil_rxchain_advance(struct veil_rxchain *c, const struct veil_clock *clk,
    struct veil_tagtab *t, uint64_t owner_base, unsigned lookahead)
{
	uint8_t run[VEIL_KEY_BYTES], roots[3][VEIL_KEY_BYTES];
	uint64_t p, q, target, f, r, at, per[3];
	int want[3], held[3], derive[3], keep_slot[VEIL_RX_SLOTS];
	int partial = 0, changed = 0, nomem = 0, j, i;

	if (c == NULL || clk == NULL)
		return VEIL_ERR_INVAL;
	if (!c->live)
		return VEIL_ERR_STATE;
	if (!chain_params_valid(c->dir, c->plen, c->period) ||
	    !slot_holds(c, c->period))
		return VEIL_ERR_INVAL;
	p = c->period;
	target = clk->now / c->plen;
	q = p;
	if (target > p) {
		if (target - p > VEIL_RATCHET_MAX_STEPS) {
			q = p + VEIL_RATCHET_MAX_STEPS;
			partial = 1;
		} else
			q = target;
	}
	f = p < UINT64_MAX / c->plen && slot_holds(c, p + 1) ? p + 1 : p;

	for (j = 0; j < 3; j++) {
		held[j] = derive[j] = want[j] = 0;
		if (q == 0 && j == 0)
			continue;	/* no period -1 */
		r = q - 1 + (uint64_t)j;
		per[j] = r;
		held[j] = slot_holds(c, r);
		if (j == 0)
			want[j] = clk->now < sat_add(period_start(q, c->plen),
			    clk->grace);
		else if (j == 1)
			want[j] = 1;
		else if (q >= UINT64_MAX / c->plen)
			continue;	/* q + 1 would start past 2^64 s */
		else
			want[j] = held[j] || clk->now >= sat_sub(period_start(r,
			    c->plen), clk->lead);
		derive[j] = want[j] && !held[j] && r > f;
	}

	/* New roots first, from the frontier, before anything is wiped. */
	memcpy(run, c->slot[f % VEIL_RX_SLOTS].k.root, sizeof(run));
	at = f;
	for (j = 0; j < 3; j++) {
		if (!derive[j])
			continue;
		ratchet(run, per[j] - at);
		at = per[j];
		memcpy(roots[j], run, sizeof(run));
	}
	sodium_memzero(run, sizeof(run));

	/* Slots that leave: disarmed, then wiped. */
	for (i = 0; i < VEIL_RX_SLOTS; i++)
		keep_slot[i] = 0;
	for (j = 0; j < 3; j++)
		if (held[j] && want[j])
			keep_slot[per[j] % VEIL_RX_SLOTS] = 1;
	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		if (!c->slot[i].live || keep_slot[i])
			continue;
		if (t != NULL)
			veil_rx_disarm(t, &c->slot[i], lookahead);
		sodium_memzero(&c->slot[i], sizeof(c->slot[i]));
		changed = 1;
	}

	/* Slots that enter, with empty windows. */
	for (j = 0; j < 3; j++) {
		struct veil_rxdir *s;

		if (!derive[j])
			continue;
		s = &c->slot[per[j] % VEIL_RX_SLOTS];
		veil_dirkey_from_root(&s->k, roots[j], c->dir);
		sodium_memzero(roots[j], sizeof(roots[j]));
		veil_window_init(&s->w);
		s->period = per[j];
		s->live = 1;
		changed = 1;
		/* A collision (another entry holds one of its tags) costs
		 * that one sequence number and is not an error here. */
		if (t != NULL && veil_rx_arm(t, s, owner_base +
		    (uint64_t)(per[j] % VEIL_RX_SLOTS), lookahead) ==
		    VEIL_ERR_NOMEM)
			nomem = 1;
	}
	if (q != p)
		changed = 1;
	c->period = q;

	/* Clock landmarks of every live key, by now (not a change to
	 * persist: they are not stored). */
	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		uint32_t first;
		unsigned count;

		if (!c->slot[i].live)
			continue;
		clock_window(c->slot[i].period, c->plen, clk->now, &first,
		    &count);
		if (veil_rx_clock(t, &c->slot[i], owner_base + (uint64_t)i,
		    first, count, lookahead) == VEIL_ERR_NOMEM)
			nomem = 1;
	}
	if (nomem)
		return VEIL_ERR_NOMEM;
	if (partial)
		return VEIL_ERR_RATCHET;
	return changed;
}

int
veil_rxchain_arm(struct veil_tagtab *t, const struct veil_rxchain *c,
    uint64_t owner_base, unsigned lookahead)
{
	int i, rc, ret = VEIL_OK;

	if (t == NULL || c == NULL)
		return VEIL_ERR_INVAL;
	if (!c->live)
		return VEIL_OK;
	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		if (!c->slot[i].live)
			continue;
		rc = veil_rx_arm(t, &c->slot[i], owner_base + (uint64_t)i,
		    lookahead);
		if (rc == VEIL_ERR_NOMEM)
			return rc;
		if (rc < 0 && ret == VEIL_OK)
			ret = rc;
	}
	return ret;
}

void
veil_rxchain_disarm(struct veil_tagtab *t, const struct veil_rxchain *c,
    unsigned lookahead)
{
	int i;

	if (t == NULL || c == NULL || !c->live)
		return;
	for (i = 0; i < VEIL_RX_SLOTS; i++)
		if (c->slot[i].live)
			veil_rx_disarm(t, &c->slot[i], lookahead);
}

void
veil_rxchain_wipe(struct veil_rxchain *c)
{
	if (c != NULL)
		sodium_memzero(c, sizeof(*c));
}
