/* libveil pair: secret hash, key-slot hygiene, the stored form of a pair, and fingerprints. */
#include <string.h>

#include <sodium.h>

#include "pair.h"
#include "wire.h"

/* Version 2: the second transmit slot is tx_next (version 1: tx_prev, a
 * key already replaced; read as empty). */
#define PAIR_VERSION 2
#define SECRET_CTX "veil-secret-v1"
#define FP_CTX "veil-fp-v1"
#define FP_GROUPS 6
#define FP_DIGITS 5

/* Sizes of the packed pieces; the stored form has one fixed length. */
#define TXDIR_PACKED (VEIL_KEY_BYTES + 8 + 1)		/* root, seq, live */
#define RXDIR_PACKED (VEIL_KEY_BYTES + 8 + 8 * (VEIL_WINDOW_BITS / 64) + 1)
#define PAIR_PACKED (1 + 1 + 3 * VEIL_KEY_BYTES + 2 * TXDIR_PACKED + \
    2 * RXDIR_PACKED + 8 + 1 + 1 + 3 * VEIL_KEY_BYTES + 8 + 2 * VEIL_KEY_BYTES)

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

void
veil_pair_drop_prev(struct veil_pair *p)
{
	sodium_memzero(&p->rx_prev, sizeof(p->rx_prev));
}

void
veil_pair_wipe(struct veil_pair *p)
{
	if (p != NULL)
		sodium_memzero(p, sizeof(*p));
}

static void
pack_tx(struct wire_writer *w, const struct veil_txdir *d)
{
	wire_write(w, d->k.root, sizeof(d->k.root));
	wire_w64(w, d->seq);
	wire_w8(w, d->live);
}

static void
pack_rx(struct wire_writer *w, const struct veil_rxdir *d)
{
	size_t i;

	wire_write(w, d->k.root, sizeof(d->k.root));
	wire_w64(w, d->w.top);
	for (i = 0; i < VEIL_WINDOW_BITS / 64; i++)
		wire_w64(w, d->w.map[i]);
	wire_w8(w, d->live);
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
	wire_w64(&w, p->upd_recv_seq);
	wire_write(&w, p->upd_recv_eph, VEIL_KEY_BYTES);
	wire_write(&w, p->upd_ack_eph, VEIL_KEY_BYTES);
	if (w.err || w.len != PAIR_PACKED) {
		sodium_memzero(out, outlen);
		return VEIL_ERR_TOOBIG;
	}
	return (int)w.len;
}

/*
 * Only roots are stored; key and nkey are derived again.  An empty slot
 * (all-zero root) stays all zero, as veil_pair_drop_prev() leaves it.
 */
static void
dirkey_load(struct veil_dirkey *k, const uint8_t root[VEIL_KEY_BYTES])
{
	if (sodium_is_zero(root, VEIL_KEY_BYTES))
		sodium_memzero(k, sizeof(*k));
	else
		veil_dirkey_from_root(k, root);
}

static int
flag_valid(uint8_t v)
{
	return v == 0 || v == 1;
}

static int
unpack_tx(struct wire_reader *r, struct veil_txdir *d)
{
	uint8_t root[VEIL_KEY_BYTES];

	if (wire_copy(r, root, sizeof(root)) != 0)
		return -1;
	dirkey_load(&d->k, root);
	sodium_memzero(root, sizeof(root));
	d->seq = wire_u64(r);
	d->live = wire_u8(r);
	return r->err || !flag_valid(d->live) ? -1 : 0;
}

static int
unpack_rx(struct wire_reader *r, struct veil_rxdir *d)
{
	uint8_t root[VEIL_KEY_BYTES];
	size_t i;

	if (wire_copy(r, root, sizeof(root)) != 0)
		return -1;
	dirkey_load(&d->k, root);
	sodium_memzero(root, sizeof(root));
	d->w.top = wire_u64(r);
	for (i = 0; i < VEIL_WINDOW_BITS / 64; i++)
		d->w.map[i] = wire_u64(r);
	d->live = wire_u8(r);
	return r->err || !flag_valid(d->live) ? -1 : 0;
}

int
veil_pair_unpack(struct veil_pair *p, const uint8_t *in, size_t len)
{
	struct veil_pair t;
	struct wire_reader r;
	int ret = VEIL_ERR_FORMAT;

	if (p == NULL)
		return VEIL_ERR_INVAL;
	sodium_memzero(p, sizeof(*p));
	if (in == NULL)
		return VEIL_ERR_INVAL;
	if (len < 1)
		return VEIL_ERR_TRUNCATED;
	if (in[0] != PAIR_VERSION && in[0] != 1)
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
	if (unpack_tx(&r, &t.tx) != 0 || unpack_tx(&r, &t.tx_next) != 0 ||
	    unpack_rx(&r, &t.rx) != 0 || unpack_rx(&r, &t.rx_prev) != 0)
		goto out;
	if (in[0] == 1)
		sodium_memzero(&t.tx_next, sizeof(t.tx_next));
	/* A live key has a root: switching to an empty slot would seal
	 * under a key derived from zeros. */
	if ((t.tx.live && sodium_is_zero(t.tx.k.root, VEIL_KEY_BYTES)) ||
	    (t.tx_next.live && sodium_is_zero(t.tx_next.k.root, VEIL_KEY_BYTES)))
		goto out;
	t.upd_sent_seq = wire_u64(&r);
	t.upd_pending = wire_u8(&r);
	t.upd_rekey_secret = wire_u8(&r);
	wire_copy(&r, t.upd_eph_sk, VEIL_KEY_BYTES);
	wire_copy(&r, t.upd_eph_pk, VEIL_KEY_BYTES);
	wire_copy(&r, t.upd_new_secret, VEIL_KEY_BYTES);
	t.upd_recv_seq = wire_u64(&r);
	wire_copy(&r, t.upd_recv_eph, VEIL_KEY_BYTES);
	wire_copy(&r, t.upd_ack_eph, VEIL_KEY_BYTES);
	if (r.err || r.left != 0)
		goto out;
	if (t.role != VEIL_ROLE_INITIATOR && t.role != VEIL_ROLE_RESPONDER)
		goto out;
	if (!flag_valid(t.upd_pending) || !flag_valid(t.upd_rekey_secret))
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
