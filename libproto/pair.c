/* libveil pair: secret hash, key-slot hygiene, the stored form of a pair, and fingerprints. */
#include <string.h>

#include <sodium.h>

#include "pair.h"
#include "wire.h"

/*
 * Format 3 (protocol version 2): key chains, seeds, epoch lengths and key
 * periods.  Formats 1 and 2 held protocol version 1 pairs: refused.
 */
#define PAIR_VERSION 3
#define SECRET_CTX "veil-secret-v1"
#define FP_CTX "veil-fp-v1"
#define FP_GROUPS 6
#define FP_DIGITS 5

/* Sizes of the packed pieces; the stored form has one fixed length. */
#define TX_PACKED (1 + 1 + 4 + 8 + 8 + 2 * VEIL_KEY_BYTES)
/* A receive chain stores one root, its lowest live period's; the others
 * follow from it by the ratchet.  Then, for p - 1, p, p + 1: live, window. */
#define SLOT_PACKED (1 + 8 + 8 * (VEIL_WINDOW_BITS / 64))
#define RX_PACKED (1 + 1 + 4 + 8 + 2 * VEIL_KEY_BYTES + VEIL_RX_SLOTS * SLOT_PACKED)
#define PAIR_PACKED (1 + 1 + 3 * VEIL_KEY_BYTES + 2 * (VEIL_SEED_BYTES + 4 + 4) + \
    2 * TX_PACKED + 2 * RX_PACKED + 8 + 1 + 1 + 3 * VEIL_KEY_BYTES + \
    VEIL_SEED_BYTES + 4 + 4 + 8 + 2 * VEIL_KEY_BYTES + 8)

_Static_assert(PAIR_PACKED <= VEIL_PAIR_PACKED_MAX, "VEIL_PAIR_PACKED_MAX too small");

void
veil_pair_set_secret(struct veil_pair *p, const uint8_t secret[VEIL_KEY_BYTES])
{
	uint8_t s[VEIL_KEY_BYTES];

	/* secret may alias p->secret. */
	memcpy(s, secret, sizeof(s));
	memcpy(p->secret, s, sizeof(p->secret));
	crypto_generichash(p->secret_hash, sizeof(p->secret_hash),
	    (const uint8_t *)SECRET_CTX, sizeof(SECRET_CTX) - 1, s, sizeof(s));
	sodium_memzero(s, sizeof(s));
}

struct veil_rxdir *
veil_pair_rxslot(struct veil_pair *p, unsigned j)
{
	struct veil_rxchain *c;

	if (p == NULL || j >= VEIL_PAIR_OWNERS)
		return NULL;
	c = j < VEIL_PAIR_PREV ? &p->rx : &p->rx_prev;
	j %= VEIL_RX_SLOTS;
	if (!c->live || !c->slot[j].live)
		return NULL;
	return &c->slot[j];
}

int
veil_pair_arm(struct veil_tagtab *t, const struct veil_pair *p, uint64_t owner_base,
    unsigned lookahead)
{
	int rc, rc2;

	if (t == NULL || p == NULL)
		return VEIL_ERR_INVAL;
	rc = veil_rxchain_arm(t, &p->rx, owner_base, lookahead);
	if (rc == VEIL_ERR_NOMEM)
		return rc;
	rc2 = veil_rxchain_arm(t, &p->rx_prev, owner_base + VEIL_PAIR_PREV,
	    lookahead);
	return rc2 == VEIL_ERR_NOMEM || rc == VEIL_OK ? rc2 : rc;
}

void
veil_pair_disarm(struct veil_tagtab *t, const struct veil_pair *p, unsigned lookahead)
{
	if (t == NULL || p == NULL)
		return;
	veil_rxchain_disarm(t, &p->rx, lookahead);
	veil_rxchain_disarm(t, &p->rx_prev, lookahead);
}

/* Keeps the first error, NOMEM before any other; else whether it changed. */
static void
fold(int *acc, int rc)
{
	if (rc == VEIL_ERR_NOMEM || (rc < 0 && *acc >= 0))
		*acc = *acc == VEIL_ERR_NOMEM ? *acc : rc;
	else if (rc > 0 && *acc == 0)
		*acc = rc;
}

int
veil_pair_advance(struct veil_pair *p, const struct veil_clock *clk,
    struct veil_tagtab *t, uint64_t owner_base, unsigned lookahead)
{
	int acc = 0;

	if (p == NULL || clk == NULL)
		return VEIL_ERR_INVAL;
	if (p->tx.live)
		fold(&acc, veil_txchain_advance(&p->tx, clk->now));
	if (p->tx_next.live)
		fold(&acc, veil_txchain_advance(&p->tx_next, clk->now));
	if (p->rx.live)
		fold(&acc, veil_rxchain_advance(&p->rx, clk, t, owner_base,
		    lookahead));
	if (p->rx_prev.live)
		fold(&acc, veil_rxchain_advance(&p->rx_prev, clk, t,
		    owner_base + VEIL_PAIR_PREV, lookahead));
	return acc;
}

void
veil_pair_drop_prev(struct veil_pair *p)
{
	if (p != NULL)
		veil_rxchain_wipe(&p->rx_prev);
}

void
veil_pair_wipe(struct veil_pair *p)
{
	if (p != NULL)
		sodium_memzero(p, sizeof(*p));
}

static void
w32(struct wire_writer *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v };

	wire_write(w, b, sizeof(b));
}

static uint32_t
r32(struct wire_reader *r)
{
	const uint8_t *p = wire_take(r, 4);

	return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3] : 0;
}

static void
pack_tx(struct wire_writer *w, const struct veil_txchain *c)
{
	wire_w8(w, c->live);
	wire_w8(w, c->k.dir);
	w32(w, c->plen);
	wire_w64(w, c->period);
	wire_w64(w, c->seq);
	wire_write(w, c->k.root, VEIL_KEY_BYTES);
	wire_write(w, c->bind, VEIL_KEY_BYTES);
}

static const struct veil_rxdir *
rx_slot_of(const struct veil_rxchain *c, uint64_t q)
{
	const struct veil_rxdir *d = &c->slot[q % VEIL_RX_SLOTS];

	return d->live && d->period == q ? d : NULL;
}

static void
pack_rx(struct wire_writer *w, const struct veil_rxchain *c)
{
	static const uint8_t zero[VEIL_KEY_BYTES];
	const struct veil_rxdir *d, *low = NULL;
	uint64_t q;
	size_t j;
	int i;

	wire_w8(w, c->live);
	wire_w8(w, c->dir);
	w32(w, c->plen);
	wire_w64(w, c->period);
	wire_write(w, c->bind, VEIL_KEY_BYTES);
	if (c->live) {
		low = c->period > 0 ? rx_slot_of(c, c->period - 1) : NULL;
		if (low == NULL)
			low = rx_slot_of(c, c->period);
	}
	wire_write(w, low != NULL ? low->k.root : zero, VEIL_KEY_BYTES);
	for (i = -1; i <= 1; i++) {
		q = c->period + (uint64_t)(int64_t)i;
		d = c->live && (i >= 0 || c->period > 0) ? rx_slot_of(c, q) : NULL;
		wire_w8(w, d != NULL);
		wire_w64(w, d != NULL ? d->w.top : 0);
		for (j = 0; j < VEIL_WINDOW_BITS / 64; j++)
			wire_w64(w, d != NULL ? d->w.map[j] : 0);
	}
}

static void
pack_inbox(struct wire_writer *w, const struct veil_inbox *in)
{
	wire_write(w, in->seed, VEIL_SEED_BYTES);
	w32(w, in->epoch);
	w32(w, in->period);
}

int
veil_pair_pack(const struct veil_pair *p, uint8_t *out, size_t outlen)
{
	struct wire_writer w;

	if (p == NULL || out == NULL)
		return VEIL_ERR_INVAL;
	if (outlen < PAIR_PACKED)
		return VEIL_ERR_TOOBIG;
	wire_writer_init(&w, out, outlen);
	wire_w8(&w, PAIR_VERSION);
	wire_w8(&w, p->role);
	wire_write(&w, p->secret, VEIL_KEY_BYTES);
	wire_write(&w, p->secret_hash, VEIL_KEY_BYTES);
	wire_write(&w, p->peer_pk, VEIL_KEY_BYTES);
	pack_inbox(&w, &p->my_inbox);
	pack_inbox(&w, &p->peer_inbox);
	pack_tx(&w, &p->tx);
	pack_tx(&w, &p->tx_next);
	pack_rx(&w, &p->rx);
	pack_rx(&w, &p->rx_prev);
	wire_w64(&w, p->upd_sent_seq);
	wire_w8(&w, p->upd_pending);
	wire_w8(&w, p->upd_rekey_secret);
	wire_write(&w, p->upd_eph_sk, VEIL_KEY_BYTES);
	wire_write(&w, p->upd_eph_pk, VEIL_KEY_BYTES);
	wire_write(&w, p->upd_new_secret, VEIL_KEY_BYTES);
	pack_inbox(&w, &p->upd_new);
	wire_w64(&w, p->upd_recv_seq);
	wire_write(&w, p->upd_recv_eph, VEIL_KEY_BYTES);
	wire_write(&w, p->upd_ack_eph, VEIL_KEY_BYTES);
	wire_w64(&w, p->upd_ack_period);
	if (w.err || w.len != PAIR_PACKED) {
		sodium_memzero(out, outlen);
		return VEIL_ERR_TOOBIG;
	}
	return (int)w.len;
}

static int
flag_valid(uint8_t v)
{
	return v == 0 || v == 1;
}

/*
 * Only roots, windows and the binding key are stored; key and nkey are
 * derived again.  A chain or slot that is not live is stored, and must
 * read back, as all zero; a live one must be one the library could have
 * made (valid period length and direction, a non-zero root).
 */
static int
unpack_tx(struct wire_reader *r, struct veil_txchain *c)
{
	uint8_t root[VEIL_KEY_BYTES], bind[VEIL_KEY_BYTES], live, dir;
	uint32_t plen;
	uint64_t period, seq;
	int ret = -1;

	live = wire_u8(r);
	dir = wire_u8(r);
	plen = r32(r);
	period = wire_u64(r);
	seq = wire_u64(r);
	wire_copy(r, root, sizeof(root));
	if (wire_copy(r, bind, sizeof(bind)) != 0 || !flag_valid(live))
		goto out;
	if (!live) {
		if (dir == 0 && plen == 0 && period == 0 && seq == 0 &&
		    sodium_is_zero(root, sizeof(root)) &&
		    sodium_is_zero(bind, sizeof(bind)))
			ret = 0;
		goto out;
	}
	if (sodium_is_zero(root, sizeof(root)) ||
	    veil_txchain_init(c, root, dir, plen, period) != VEIL_OK)
		goto out;
	/* init took root for the first root; the stored bind is the real
	 * first root's. */
	memcpy(c->bind, bind, sizeof(bind));
	c->seq = seq;
	ret = 0;
out:
	sodium_memzero(root, sizeof(root));
	sodium_memzero(bind, sizeof(bind));
	if (ret != 0)
		sodium_memzero(c, sizeof(*c));
	return ret;
}

static int
unpack_rx(struct wire_reader *r, struct veil_rxchain *c)
{
	struct veil_window win[VEIL_RX_SLOTS];
	uint8_t bind[VEIL_KEY_BYTES], root[VEIL_KEY_BYTES], live, dir;
	uint8_t on[VEIL_RX_SLOTS];
	uint32_t plen;
	uint64_t period, q;
	size_t i, j;
	int ret = -1;

	memset(win, 0, sizeof(win));
	live = wire_u8(r);
	dir = wire_u8(r);
	plen = r32(r);
	period = wire_u64(r);
	wire_copy(r, bind, sizeof(bind));
	wire_copy(r, root, sizeof(root));
	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		on[i] = wire_u8(r);
		win[i].top = wire_u64(r);
		for (j = 0; j < VEIL_WINDOW_BITS / 64; j++)
			win[i].map[j] = wire_u64(r);
	}
	if (r->err || !flag_valid(live))
		goto out;
	/* on[0..2]: p - 1, p, p + 1.  A slot that is not live is all zero. */
	for (i = 0; i < VEIL_RX_SLOTS; i++)
		if (!flag_valid(on[i]) || (!on[i] && !sodium_is_zero(
		    (const uint8_t *)&win[i], sizeof(win[i]))))
			goto out;
	if (!live) {
		if (dir == 0 && plen == 0 && period == 0 &&
		    sodium_is_zero(bind, sizeof(bind)) &&
		    sodium_is_zero(root, sizeof(root)) && !on[0] && !on[1] && !on[2])
			ret = 0;
		goto out;
	}
	if (!on[1] || sodium_is_zero(root, sizeof(root)) ||
	    (on[0] && period == 0))
		goto out;
	/* The stored root is p - 1's when that is live, else p's. */
	if (veil_rxchain_init(c, root, dir, plen, on[0] ? period - 1 : period) !=
	    VEIL_OK)
		goto out;
	if (on[0]) {
		/* init put p - 1 as the current period; p follows. */
		veil_root_next(root, root);
		q = period % VEIL_RX_SLOTS;
		veil_dirkey_from_root(&c->slot[q].k, root, dir);
		c->slot[q].period = period;
		c->slot[q].live = 1;
		c->period = period;
	}
	if (on[2]) {
		if (period >= UINT64_MAX / plen)
			goto out;	/* p + 1 would start past 2^64 s */
		veil_root_next(root, root);
		q = (period + 1) % VEIL_RX_SLOTS;
		veil_dirkey_from_root(&c->slot[q].k, root, dir);
		c->slot[q].period = period + 1;
		c->slot[q].live = 1;
	}
	for (i = 0; i < VEIL_RX_SLOTS; i++) {
		if (!on[i])
			continue;
		q = period + i - 1;
		c->slot[q % VEIL_RX_SLOTS].w = win[i];
	}
	memcpy(c->bind, bind, sizeof(bind));
	ret = 0;
out:
	sodium_memzero(root, sizeof(root));
	sodium_memzero(bind, sizeof(bind));
	sodium_memzero(win, sizeof(win));
	if (ret != 0)
		sodium_memzero(c, sizeof(*c));
	return ret;
}

static void
unpack_inbox(struct wire_reader *r, struct veil_inbox *in)
{
	wire_copy(r, in->seed, VEIL_SEED_BYTES);
	in->epoch = r32(r);
	in->period = r32(r);
}

int
veil_pair_unpack(struct veil_pair *p, const uint8_t *in, size_t len)
{
	struct veil_pair t;
	struct wire_reader r;
	uint8_t txdir;
	int ret = VEIL_ERR_FORMAT;

	if (p == NULL)
		return VEIL_ERR_INVAL;
	sodium_memzero(p, sizeof(*p));
	if (in == NULL)
		return VEIL_ERR_INVAL;
	if (len < 1)
		return VEIL_ERR_TRUNCATED;
	if (in[0] != PAIR_VERSION)
		return VEIL_ERR_VERSION;
	if (len < PAIR_PACKED)
		return VEIL_ERR_TRUNCATED;
	if (len > PAIR_PACKED)
		return VEIL_ERR_FORMAT;

	memset(&t, 0, sizeof(t));
	wire_reader_init(&r, in + 1, len - 1);
	t.role = wire_u8(&r);
	wire_copy(&r, t.secret, VEIL_KEY_BYTES);
	wire_copy(&r, t.secret_hash, VEIL_KEY_BYTES);
	wire_copy(&r, t.peer_pk, VEIL_KEY_BYTES);
	unpack_inbox(&r, &t.my_inbox);
	unpack_inbox(&r, &t.peer_inbox);
	if (unpack_tx(&r, &t.tx) != 0 || unpack_tx(&r, &t.tx_next) != 0 ||
	    unpack_rx(&r, &t.rx) != 0 || unpack_rx(&r, &t.rx_prev) != 0)
		goto out;
	t.upd_sent_seq = wire_u64(&r);
	t.upd_pending = wire_u8(&r);
	t.upd_rekey_secret = wire_u8(&r);
	wire_copy(&r, t.upd_eph_sk, VEIL_KEY_BYTES);
	wire_copy(&r, t.upd_eph_pk, VEIL_KEY_BYTES);
	wire_copy(&r, t.upd_new_secret, VEIL_KEY_BYTES);
	unpack_inbox(&r, &t.upd_new);
	t.upd_recv_seq = wire_u64(&r);
	wire_copy(&r, t.upd_recv_eph, VEIL_KEY_BYTES);
	wire_copy(&r, t.upd_ack_eph, VEIL_KEY_BYTES);
	t.upd_ack_period = wire_u64(&r);
	if (r.err || r.left != 0)
		goto out;
	if (t.role != VEIL_ROLE_INITIATOR && t.role != VEIL_ROLE_RESPONDER)
		goto out;
	if (!veil_inbox_valid(&t.my_inbox) || !veil_inbox_valid(&t.peer_inbox))
		goto out;
	/* A pair always sends and receives; directions follow the role. */
	txdir = t.role == VEIL_ROLE_INITIATOR ? VEIL_DIR_I2R : VEIL_DIR_R2I;
	if (!t.tx.live || !t.rx.live || t.tx.k.dir != txdir ||
	    t.rx.dir == txdir ||
	    (t.tx_next.live && t.tx_next.k.dir != txdir) ||
	    (t.rx_prev.live && t.rx_prev.dir != t.rx.dir))
		goto out;
	if (!flag_valid(t.upd_pending) || !flag_valid(t.upd_rekey_secret) ||
	    (t.upd_rekey_secret && !t.upd_pending) ||
	    (t.upd_pending && (t.upd_sent_seq == 0 ||
	    !veil_inbox_valid(&t.upd_new))) ||
	    (!t.upd_pending && !sodium_is_zero((const uint8_t *)&t.upd_new,
	    sizeof(t.upd_new))) ||
	    (t.tx_next.live && t.upd_recv_seq == 0))
		goto out;
	memcpy(p, &t, sizeof(*p));
	ret = VEIL_OK;
out:
	sodium_memzero(&t, sizeof(t));
	return ret;
}

int
veil_fingerprint(const uint8_t a[VEIL_KEY_BYTES], const uint8_t b[VEIL_KEY_BYTES],
    char out[VEIL_FP_TEXT])
{
	crypto_generichash_state st;
	uint8_t h[crypto_generichash_BYTES];
	const uint8_t *lo, *hi;
	uint64_t v;
	size_t i, j, o = 0;

	if (out != NULL)
		out[0] = '\0';
	if (a == NULL || b == NULL || out == NULL)
		return VEIL_ERR_INVAL;
	/* Sorted, so both owners compute the same number. */
	if (memcmp(a, b, VEIL_KEY_BYTES) <= 0) {
		lo = a;
		hi = b;
	} else {
		lo = b;
		hi = a;
	}
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const uint8_t *)FP_CTX, sizeof(FP_CTX) - 1);
	crypto_generichash_update(&st, lo, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, hi, VEIL_KEY_BYTES);
	crypto_generichash_final(&st, h, sizeof(h));

	for (i = 0; i < FP_GROUPS; i++) {
		v = 0;
		for (j = 0; j < 5; j++)
			v = (v << 8) | h[5 * i + j];
		v %= 100000;
		if (i > 0)
			out[o++] = ' ';
		for (j = FP_DIGITS; j > 0; j--) {
			out[o + j - 1] = (char)('0' + v % 10);
			v /= 10;
		}
		o += FP_DIGITS;
	}
	out[o] = '\0';
	return VEIL_OK;
}
