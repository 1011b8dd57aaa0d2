/* libveil reset: RESET and RESET-ACK bodies, their macs and transcripts, and the new chains of a pair after a restore (protocol.md 6.1). */
#include <string.h>

#include <sodium.h>

#include "reset.h"
#include "dh3.h"
#include "wire.h"

#define RESET_VERSION	2
#define PACK_VERSION	1
#define KEY_CTX		"veil-reset-v2"
#define REQ_CTX		"veil-reset-req"
#define ACK_CTX		"veil-reset-ack"
#define ROOT_CTX	"veil-reset-root-v2"
#define RESET_KDF	"veilrst2"
#define INBOX_PACKED	(VEIL_SEED_BYTES + 4 + 4)
#define REQ_MACED	(VEIL_RESET_BODY - VEIL_KEY_BYTES)
#define ACK_MACED	(VEIL_RESET_ACK_BODY - VEIL_KEY_BYTES)
#define PACKED		(1 + 2 * VEIL_KEY_BYTES + 8 + INBOX_PACKED + \
    VEIL_RESET_BODY + VEIL_KEY_BYTES)

_Static_assert(VEIL_RESET_BODY == 1 + 3 * VEIL_KEY_BYTES + 8 + 4 + 4 +
    VEIL_SEED_BYTES, "RESET layout");
_Static_assert(VEIL_RESET_ACK_BODY == 1 + 4 * VEIL_KEY_BYTES + 4 + 4 +
    VEIL_SEED_BYTES, "RESET-ACK layout");
_Static_assert(PACKED <= VEIL_RESET_PACKED_MAX, "VEIL_RESET_PACKED_MAX");

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* k = H_S("veil-reset-v2" || DH(sk, pk)): only the two identity keys'
 * holders that share the pair's secret S can compute it. */
static int
mac_key(uint8_t k[VEIL_KEY_BYTES], const struct veil_pair *p,
    const uint8_t sk[VEIL_KEY_BYTES])
{
	crypto_generichash_state st;
	uint8_t dh[crypto_scalarmult_BYTES];
	int rc = VEIL_OK;

	if (crypto_scalarmult(dh, sk, p->peer_pk) != 0 ||
	    sodium_is_zero(dh, sizeof(dh))) {
		rc = VEIL_ERR_CRYPTO;
		goto out;
	}
	crypto_generichash_init(&st, p->secret, VEIL_KEY_BYTES, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)KEY_CTX,
	    sizeof(KEY_CTX) - 1);
	crypto_generichash_update(&st, dh, sizeof(dh));
	crypto_generichash_final(&st, k, VEIL_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
out:
	sodium_memzero(dh, sizeof(dh));
	return rc;
}

/* H_k(ctx || pk || msg) */
static void
mac(uint8_t out[VEIL_KEY_BYTES], const uint8_t k[VEIL_KEY_BYTES],
    const char *ctx, const uint8_t pk[VEIL_KEY_BYTES], const uint8_t *msg,
    size_t len)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, k, VEIL_KEY_BYTES, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)ctx, strlen(ctx));
	crypto_generichash_update(&st, pk, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, msg, len);
	crypto_generichash_final(&st, out, VEIL_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
}

/* T_R = H("veil-reset-v2" || KP_Y || RESET) */
static void
transcript(uint8_t tr[VEIL_KEY_BYTES], const uint8_t ykey[VEIL_KEY_BYTES],
    const uint8_t body[VEIL_RESET_BODY])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)KEY_CTX,
	    sizeof(KEY_CTX) - 1);
	crypto_generichash_update(&st, ykey, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, body, VEIL_RESET_BODY);
	crypto_generichash_final(&st, tr, VEIL_KEY_BYTES);
}

/* T_A = H(T_R || E_Y || u32 L_Y || u32 P_Y || J_Y): the ACK's fields
 * after KP_Y and T_R, up to its mac. */
static void
ack_transcript(uint8_t ta[VEIL_KEY_BYTES], const uint8_t *ack)
{
	crypto_generichash(ta, VEIL_KEY_BYTES, ack + 1 + VEIL_KEY_BYTES,
	    ACK_MACED - 1 - VEIL_KEY_BYTES, NULL, 0);
}

/*
 * RK = H_S("veil-reset-root-v2" || ee || es || se || T_A), the terms in
 * the order Y computes them: DH(e_Y, E_X), DH(e_Y, KP_X), DH(sk_Y, E_X)
 * (X: DH(e_X, E_Y), DH(sk_X, E_Y), DH(e_X, KP_Y)).  D_x2y = KDF(RK, 1),
 * D_y2x = KDF(RK, 2), context "veilrst2".
 */
static int
roots(uint8_t x2y[VEIL_KEY_BYTES], uint8_t y2x[VEIL_KEY_BYTES],
    const uint8_t s[VEIL_KEY_BYTES], const uint8_t ta[VEIL_KEY_BYTES],
    const uint8_t *a_sk, const uint8_t *a_pk, const uint8_t *b_sk,
    const uint8_t *b_pk, const uint8_t *c_sk, const uint8_t *c_pk)
{
	const uint8_t *const sk[3] = { a_sk, b_sk, c_sk };
	const uint8_t *const pk[3] = { a_pk, b_pk, c_pk };

	return veil_dh3_roots(x2y, y2x, s, ROOT_CTX, ta, RESET_KDF, sk, pk);
}

/*
 * p anew from its roots: tx and rx from t's periods (each chain's length
 * its receiver's), moved to clk; no previous chain, no pending update,
 * update counters from zero on both sides.  The role, the secret and the
 * peer's key stay.
 */
static int
rebuild(struct veil_pair *p, const uint8_t tx[VEIL_KEY_BYTES],
    const uint8_t rx[VEIL_KEY_BYTES], const struct veil_inbox *mine,
    const struct veil_inbox *peer, uint64_t t, const struct veil_clock *clk)
{
	struct veil_pair n;
	int init = p->role == VEIL_ROLE_INITIATOR, rc;

	memset(&n, 0, sizeof(n));
	n.role = p->role;
	memcpy(n.secret, p->secret, sizeof(n.secret));
	memcpy(n.secret_hash, p->secret_hash, sizeof(n.secret_hash));
	memcpy(n.peer_pk, p->peer_pk, sizeof(n.peer_pk));
	n.my_inbox = *mine;
	n.peer_inbox = *peer;
	if (veil_txchain_init(&n.tx, tx, init ? VEIL_DIR_I2R : VEIL_DIR_R2I,
	    peer->period, veil_period_of(t, peer->period)) != VEIL_OK ||
	    veil_rxchain_init(&n.rx, rx, init ? VEIL_DIR_R2I : VEIL_DIR_I2R,
	    mine->period, veil_period_of(t, mine->period)) != VEIL_OK) {
		sodium_memzero(&n, sizeof(n));
		return VEIL_ERR_INVAL;
	}
	/* A RATCHET here leaves the chains consistent and behind: the
	 * caller's next advance moves them the rest of the way. */
	if ((rc = veil_pair_advance(&n, clk, NULL, 0, 0)) < 0 &&
	    rc != VEIL_ERR_RATCHET) {
		sodium_memzero(&n, sizeof(n));
		return rc;
	}
	veil_pair_wipe(p);
	*p = n;
	sodium_memzero(&n, sizeof(n));
	return VEIL_OK;
}

static void
put_inbox(uint8_t *b, const struct veil_inbox *in)
{
	put32(b, in->epoch);
	put32(b + 4, in->period);
	memcpy(b + 8, in->seed, VEIL_SEED_BYTES);
}

static void
get_inbox(const uint8_t *b, struct veil_inbox *in)
{
	in->epoch = get32(b);
	in->period = get32(b + 4);
	memcpy(in->seed, b + 8, VEIL_SEED_BYTES);
}

int
veil_reset_start(struct veil_reset *r, const struct veil_identity *me,
    const struct veil_pair *p, const struct veil_inbox *new_inbox, uint64_t now)
{
	uint8_t k[VEIL_KEY_BYTES], *b;
	int rc;

	if (r == NULL || me == NULL || p == NULL || new_inbox == NULL ||
	    p->role == 0 || !veil_inbox_valid(new_inbox))
		return VEIL_ERR_INVAL;
	memset(r, 0, sizeof(*r));
	if ((rc = mac_key(k, p, me->sk)) != VEIL_OK)
		return rc;
	crypto_box_keypair(r->e_pk, r->e_sk);
	r->t = now;
	r->my_inbox = *new_inbox;
	b = r->body;
	b[0] = RESET_VERSION;
	memcpy(b + 1, me->pk, VEIL_KEY_BYTES);
	memcpy(b + 1 + VEIL_KEY_BYTES, r->e_pk, VEIL_KEY_BYTES);
	wire_put64(b + 1 + 2 * VEIL_KEY_BYTES, now);
	put_inbox(b + 1 + 2 * VEIL_KEY_BYTES + 8, new_inbox);
	mac(b + REQ_MACED, k, REQ_CTX, p->peer_pk, b, REQ_MACED);
	transcript(r->tr, p->peer_pk, b);
	sodium_memzero(k, sizeof(k));
	return VEIL_OK;
}

int
veil_reset_peek(const uint8_t *body, size_t len, int ack,
    uint8_t pk[VEIL_KEY_BYTES])
{
	if (body == NULL || pk == NULL ||
	    len != (ack ? VEIL_RESET_ACK_BODY : VEIL_RESET_BODY) ||
	    body[0] != RESET_VERSION)
		return VEIL_ERR_FORMAT;
	memcpy(pk, body + 1, VEIL_KEY_BYTES);
	return VEIL_OK;
}

int
veil_reset_on_request(struct veil_pair *p, const struct veil_identity *me,
    const struct veil_clock *clk, const uint8_t *body, size_t len,
    uint64_t last_t, const uint8_t *last_tr, uint64_t *tp,
    uint8_t tr[VEIL_KEY_BYTES], uint8_t ack[VEIL_RESET_ACK_BODY])
{
	uint8_t k[VEIL_KEY_BYTES], m[VEIL_KEY_BYTES], ta[VEIL_KEY_BYTES];
	uint8_t e_sk[VEIL_KEY_BYTES], e_pk[VEIL_KEY_BYTES];
	uint8_t x2y[VEIL_KEY_BYTES], y2x[VEIL_KEY_BYTES];
	const uint8_t *e_x;
	struct veil_inbox peer, mine;
	uint64_t t;
	int rc;

	if (p == NULL || me == NULL || clk == NULL || tp == NULL || tr == NULL ||
	    ack == NULL || p->role == 0)
		return VEIL_ERR_INVAL;
	if (body == NULL || len != VEIL_RESET_BODY || body[0] != RESET_VERSION)
		return VEIL_ERR_FORMAT;
	e_x = body + 1 + VEIL_KEY_BYTES;
	t = wire_get64(body + 1 + 2 * VEIL_KEY_BYTES);
	get_inbox(body + 1 + 2 * VEIL_KEY_BYTES + 8, &peer);
	if (!veil_inbox_valid(&peer))
		return VEIL_ERR_FORMAT;
	if (sodium_memcmp(body + 1, p->peer_pk, VEIL_KEY_BYTES) != 0)
		return VEIL_ERR_STATE;
	if ((rc = mac_key(k, p, me->sk)) != VEIL_OK)
		return rc;
	mac(m, k, REQ_CTX, me->pk, body, REQ_MACED);
	if (sodium_memcmp(m, body + REQ_MACED, VEIL_KEY_BYTES) != 0) {
		rc = VEIL_ERR_SECRET;
		goto out;
	}
	if (t > clk->now + VEIL_RESET_FUTURE) {
		rc = VEIL_ERR_FUTURE;
		goto out;
	}
	transcript(tr, me->pk, body);
	*tp = t;
	if (last_tr != NULL && t == last_t) {
		rc = sodium_memcmp(tr, last_tr, VEIL_KEY_BYTES) == 0 ? 1 :
		    VEIL_ERR_REPLAY;
		goto out;
	}
	if (last_tr != NULL && t < last_t) {
		rc = VEIL_ERR_STALE;
		goto out;
	}

	/* The ACK: our inbox as the peer shall know it, a fresh E_Y. */
	mine = p->my_inbox;
	crypto_box_keypair(e_pk, e_sk);
	ack[0] = RESET_VERSION;
	memcpy(ack + 1, me->pk, VEIL_KEY_BYTES);
	memcpy(ack + 1 + VEIL_KEY_BYTES, tr, VEIL_KEY_BYTES);
	memcpy(ack + 1 + 2 * VEIL_KEY_BYTES, e_pk, VEIL_KEY_BYTES);
	put_inbox(ack + 1 + 3 * VEIL_KEY_BYTES, &mine);
	mac(ack + ACK_MACED, k, ACK_CTX, p->peer_pk, ack, ACK_MACED);
	ack_transcript(ta, ack);
	if ((rc = roots(x2y, y2x, p->secret, ta, e_sk, e_x, e_sk, p->peer_pk,
	    me->sk, e_x)) != VEIL_OK)
		goto out;
	rc = rebuild(p, y2x, x2y, &mine, &peer, t, clk);
out:
	if (rc < 0)
		sodium_memzero(ack, VEIL_RESET_ACK_BODY);
	sodium_memzero(k, sizeof(k));
	sodium_memzero(e_sk, sizeof(e_sk));
	sodium_memzero(x2y, sizeof(x2y));
	sodium_memzero(y2x, sizeof(y2x));
	sodium_memzero(&peer, sizeof(peer));
	sodium_memzero(&mine, sizeof(mine));
	return rc;
}

int
veil_reset_on_ack(struct veil_pair *p, const struct veil_identity *me,
    struct veil_reset *r, const struct veil_clock *clk, const uint8_t *body,
    size_t len)
{
	uint8_t k[VEIL_KEY_BYTES], m[VEIL_KEY_BYTES], ta[VEIL_KEY_BYTES];
	uint8_t x2y[VEIL_KEY_BYTES], y2x[VEIL_KEY_BYTES];
	const uint8_t *e_y;
	struct veil_inbox peer;
	int rc;

	if (p == NULL || me == NULL || r == NULL || clk == NULL || p->role == 0)
		return VEIL_ERR_INVAL;
	if (body == NULL || len != VEIL_RESET_ACK_BODY ||
	    body[0] != RESET_VERSION)
		return VEIL_ERR_FORMAT;
	get_inbox(body + 1 + 3 * VEIL_KEY_BYTES, &peer);
	if (!veil_inbox_valid(&peer))
		return VEIL_ERR_FORMAT;
	if (sodium_memcmp(body + 1, p->peer_pk, VEIL_KEY_BYTES) != 0 ||
	    sodium_memcmp(body + 1 + VEIL_KEY_BYTES, r->tr, VEIL_KEY_BYTES) != 0)
		return VEIL_ERR_STATE;
	if ((rc = mac_key(k, p, me->sk)) != VEIL_OK)
		return rc;
	mac(m, k, ACK_CTX, me->pk, body, ACK_MACED);
	if (sodium_memcmp(m, body + ACK_MACED, VEIL_KEY_BYTES) != 0) {
		rc = VEIL_ERR_SECRET;
		goto out;
	}
	e_y = body + 1 + 2 * VEIL_KEY_BYTES;
	ack_transcript(ta, body);
	if ((rc = roots(x2y, y2x, p->secret, ta, r->e_sk, e_y, me->sk, e_y,
	    r->e_sk, p->peer_pk)) != VEIL_OK)
		goto out;
	if ((rc = rebuild(p, x2y, y2x, &r->my_inbox, &peer, r->t, clk)) ==
	    VEIL_OK)
		veil_reset_wipe(r);
out:
	sodium_memzero(k, sizeof(k));
	sodium_memzero(x2y, sizeof(x2y));
	sodium_memzero(y2x, sizeof(y2x));
	sodium_memzero(&peer, sizeof(peer));
	return rc;
}

int
veil_reset_pack(const struct veil_reset *r, uint8_t *out, size_t outlen)
{
	struct wire_writer w;
	uint8_t ib[INBOX_PACKED];

	if (r == NULL || out == NULL)
		return VEIL_ERR_INVAL;
	wire_writer_init(&w, out, outlen);
	wire_w8(&w, PACK_VERSION);
	wire_write(&w, r->e_sk, VEIL_KEY_BYTES);
	wire_write(&w, r->e_pk, VEIL_KEY_BYTES);
	wire_w64(&w, r->t);
	put_inbox(ib, &r->my_inbox);
	wire_write(&w, ib, sizeof(ib));
	wire_write(&w, r->body, VEIL_RESET_BODY);
	wire_write(&w, r->tr, VEIL_KEY_BYTES);
	sodium_memzero(ib, sizeof(ib));
	if (w.err) {
		sodium_memzero(out, outlen);
		return VEIL_ERR_TOOBIG;
	}
	return (int)w.len;
}

int
veil_reset_unpack(struct veil_reset *r, const uint8_t *in, size_t len)
{
	struct wire_reader rd;
	const uint8_t *ib;
	uint8_t ver;

	if (r == NULL || in == NULL)
		return VEIL_ERR_INVAL;
	memset(r, 0, sizeof(*r));
	wire_reader_init(&rd, in, len);
	ver = wire_u8(&rd);
	wire_copy(&rd, r->e_sk, VEIL_KEY_BYTES);
	wire_copy(&rd, r->e_pk, VEIL_KEY_BYTES);
	r->t = wire_u64(&rd);
	ib = wire_take(&rd, INBOX_PACKED);
	if (ib != NULL)
		get_inbox(ib, &r->my_inbox);
	wire_copy(&rd, r->body, VEIL_RESET_BODY);
	wire_copy(&rd, r->tr, VEIL_KEY_BYTES);
	if (rd.err || rd.left != 0) {
		veil_reset_wipe(r);
		return VEIL_ERR_TRUNCATED;
	}
	if (ver != PACK_VERSION) {
		veil_reset_wipe(r);
		return VEIL_ERR_VERSION;
	}
	if (!veil_inbox_valid(&r->my_inbox) || r->body[0] != RESET_VERSION) {
		veil_reset_wipe(r);
		return VEIL_ERR_FORMAT;
	}
	return VEIL_OK;
}

void
veil_reset_wipe(struct veil_reset *r)
{
	if (r != NULL)
		sodium_memzero(r, sizeof(*r));
}
