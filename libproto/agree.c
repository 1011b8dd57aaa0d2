/* libveil agree: REQUEST/ACCEPT/CONFIRM/FAIL bodies, transcripts and keys of the contact agreement. */
#include <string.h>

#include <sodium.h>

#include "agree.h"
#include "dh3.h"
#include "wire.h"

/* Format 2 (protocol version 2); format 1 held protocol version 1. */
#define AGREE_PACK_VERSION 2
#define T1_CTX "veil-agree-v2"
#define HS_CTX "veil-hs-v2"
#define ROOT_CTX "veil-root-v2"
#define CONFIRM_CTX "veil-confirm-v2"
#define EPOCH0_KDF "veilag02"
#define PAIR_KDF "veilpai2"
#define FAIL_HASH_MISMATCH 1

/* version, S, K, KP_B, E_B, t_B, L_B, P_B; then CID, J_B and the name. */
#define REQ_FIXED (1 + 4 * VEIL_KEY_BYTES + 8 + 4 + 4)
#define REQ_MAX (REQ_FIXED + 1 + VEIL_ID_MAX_BYTES + VEIL_SEED_BYTES + 1 + \
    VEIL_NAME_MAX)
_Static_assert(REQ_MAX <= VEIL_AGREE_BODY_MAX, "VEIL_AGREE_BODY_MAX too small");
/* Sealed frames carry one REQUEST frame only (frame.h): every REQUEST must
 * fit one at the smallest frame size. */
_Static_assert(REQ_MAX <= VEIL_FRAME_MIN - VEIL_SEAL_OVERHEAD - VEIL_FRAME_HDR,
    "a REQUEST does not fit one sealed frame of VEIL_FRAME_MIN");
_Static_assert(VEIL_ACCEPT_BODY == 2 * VEIL_KEY_BYTES + 4 + 4 + VEIL_SEED_BYTES,
    "ACCEPT layout");

#define ID_PACKED (1 + VEIL_ID_MAX_BYTES)
#define INBOX_PACKED (VEIL_SEED_BYTES + 4 + 4)
#define AGREE_PACKED (1 + 1 + 1 + 9 * VEIL_KEY_BYTES + ID_PACKED + 8 + \
    2 * INBOX_PACKED + 1 + VEIL_NAME_MAX)
_Static_assert(AGREE_PACKED <= VEIL_AGREE_PACKED_MAX, "VEIL_AGREE_PACKED_MAX too small");

int
veil_identity_new(struct veil_identity *id)
{
	if (id == NULL)
		return VEIL_ERR_INVAL;
	if (crypto_box_keypair(id->pk, id->sk) != 0) {
		sodium_memzero(id, sizeof(*id));
		return VEIL_ERR_CRYPTO;
	}
	return VEIL_OK;
}

void
veil_identity_wipe(struct veil_identity *id)
{
	if (id != NULL)
		sodium_memzero(id, sizeof(*id));
}

const char *
veil_agree_state_name(int state)
{
	switch (state) {
	case VEIL_AG_NONE:
		return "none";
	case VEIL_AG_REQUESTED:
		return "requested";
	case VEIL_AG_PENDING:
		return "pending";
	case VEIL_AG_ACCEPTED:
		return "accepted";
	case VEIL_AG_ESTABLISHED:
		return "established";
	case VEIL_AG_FAILED:
		return "failed";
	case VEIL_AG_REJECTED:
		return "rejected";
	}
	return "unknown";
}

static void
put32(uint8_t p[4], uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t p[4])
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
w32(struct wire_writer *w, uint32_t v)
{
	uint8_t b[4];

	put32(b, v);
	wire_write(w, b, sizeof(b));
}

static uint32_t
r32(struct wire_reader *r)
{
	const uint8_t *p = wire_take(r, 4);

	return p ? get32(p) : 0;
}

static void
epoch0_key(struct veil_dirkey *k, const uint8_t pairkey[VEIL_KEY_BYTES],
    uint64_t id, uint8_t dir)
{
	uint8_t root[VEIL_KEY_BYTES];

	crypto_kdf_derive_from_key(root, sizeof(root), id, EPOCH0_KDF, pairkey);
	veil_dirkey_from_root(k, root, dir);
	sodium_memzero(root, sizeof(root));
}

void
veil_agree_epoch0(const struct veil_agree *a, struct veil_dirkey *r2i, struct veil_dirkey *i2r)
{
	if (a == NULL)
		return;
	if (r2i != NULL)
		epoch0_key(r2i, a->pairkey, 1, VEIL_DIR_R2I);
	if (i2r != NULL)
		epoch0_key(i2r, a->pairkey, 2, VEIL_DIR_I2R);
}

int
veil_agree_epoch0_allows(const struct veil_agree *a, uint8_t type)
{
	if (a == NULL)
		return 0;
	if (a->role == VEIL_ROLE_INITIATOR)
		return a->state == VEIL_AG_REQUESTED && type == VEIL_T_ACCEPT;
	if (a->role == VEIL_ROLE_RESPONDER)
		return a->state == VEIL_AG_ACCEPTED && type == VEIL_T_FAIL;
	return 0;
}

/* H_key(ctx || T2): HS and the CONFIRM body differ only in ctx. */
static void
keyed_t2(uint8_t out[VEIL_KEY_BYTES], const uint8_t key[VEIL_KEY_BYTES],
    const char *ctx, const uint8_t t2[VEIL_KEY_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, VEIL_KEY_BYTES, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)ctx, strlen(ctx));
	crypto_generichash_update(&st, t2, VEIL_KEY_BYTES);
	crypto_generichash_final(&st, out, VEIL_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
}

int
veil_agree_request_t1(const uint8_t *body, size_t len,
    const uint8_t resp_pk[VEIL_KEY_BYTES], uint8_t t1[VEIL_KEY_BYTES])
{
	crypto_generichash_state st;

	if (t1 != NULL)
		memset(t1, 0, VEIL_KEY_BYTES);
	if ((body == NULL && len > 0) || resp_pk == NULL || t1 == NULL)
		return VEIL_ERR_INVAL;
	if (len > VEIL_AGREE_BODY_MAX)
		return VEIL_ERR_FORMAT;
	crypto_generichash_init(&st, NULL, 0, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)T1_CTX, sizeof(T1_CTX) - 1);
	crypto_generichash_update(&st, resp_pk, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, body, len);
	crypto_generichash_final(&st, t1, VEIL_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
	return VEIL_OK;
}

/* T2 = H(T1 || E_A || u32 L_A || u32 P_A || J_A): the ACCEPT body but HS. */
static void
transcript2(uint8_t t2[VEIL_KEY_BYTES], const uint8_t t1[VEIL_KEY_BYTES],
    const uint8_t e_resp[VEIL_KEY_BYTES], const struct veil_inbox *resp)
{
	crypto_generichash_state st;
	uint8_t b[8];

	put32(b, resp->epoch);
	put32(b + 4, resp->period);
	crypto_generichash_init(&st, NULL, 0, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, t1, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, e_resp, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, b, sizeof(b));
	crypto_generichash_update(&st, resp->seed, VEIL_SEED_BYTES);
	crypto_generichash_final(&st, t2, VEIL_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
}

/*
 * RK = H_K("veil-root-v2" || ee || es || se || T2), the Noise XX terms:
 * the responder computes DH(e_A, E_B), DH(e_A, KP_B), DH(sk_A, E_B), the
 * initiator DH(e_B, E_A), DH(sk_B, E_A), DH(e_B, KP_A); then
 * D_i2r = KDF(RK, 1, "veilpai2"), D_r2i = KDF(RK, 2, "veilpai2").
 */
static int
pair_roots(uint8_t i2r[VEIL_KEY_BYTES], uint8_t r2i[VEIL_KEY_BYTES],
    const uint8_t k[VEIL_KEY_BYTES], const uint8_t t2[VEIL_KEY_BYTES],
    const uint8_t *ee_sk, const uint8_t *ee_pk, const uint8_t *es_sk,
    const uint8_t *es_pk, const uint8_t *se_sk, const uint8_t *se_pk)
{
	const uint8_t *const sk[3] = { ee_sk, es_sk, se_sk };
	const uint8_t *const pk[3] = { ee_pk, es_pk, se_pk };

	return veil_dh3_roots(i2r, r2i, k, ROOT_CTX, t2, PAIR_KDF, sk, pk);
}

/* 1 if sk is the X25519 secret key of pk. */
static int
sk_matches(const uint8_t sk[VEIL_KEY_BYTES], const uint8_t pk[VEIL_KEY_BYTES])
{
	uint8_t q[VEIL_KEY_BYTES];
	int ok;

	ok = crypto_scalarmult_base(q, sk) == 0 &&
	    sodium_memcmp(q, pk, VEIL_KEY_BYTES) == 0;
	sodium_memzero(q, sizeof(q));
	return ok;
}

/*
 * The pair from the two roots: each chain's period length is its
 * receiver's, its anchor the period that contains t_B; then every chain
 * is moved to clk.  tx is ours, rx the peer's.
 */
static int
pair_fill(struct veil_pair *p, const struct veil_agree *a,
    const uint8_t i2r[VEIL_KEY_BYTES], const uint8_t r2i[VEIL_KEY_BYTES],
    const struct veil_clock *clk)
{
	int init = a->role == VEIL_ROLE_INITIATOR, rc;
	uint32_t txp = a->peer_inbox.period, rxp = a->my_inbox.period;

	/* All zero is also the empty state of the windows, of tx_next and
	 * rx_prev and of the update bookkeeping. */
	sodium_memzero(p, sizeof(*p));
	p->role = a->role;
	veil_pair_set_secret(p, a->secret);
	memcpy(p->peer_pk, a->peer_pk, VEIL_KEY_BYTES);
	p->my_inbox = a->my_inbox;
	p->peer_inbox = a->peer_inbox;
	if (veil_txchain_init(&p->tx, init ? i2r : r2i,
	    init ? VEIL_DIR_I2R : VEIL_DIR_R2I, txp,
	    veil_period_of(a->req_time, txp)) != VEIL_OK ||
	    veil_rxchain_init(&p->rx, init ? r2i : i2r,
	    init ? VEIL_DIR_R2I : VEIL_DIR_I2R, rxp,
	    veil_period_of(a->req_time, rxp)) != VEIL_OK) {
		sodium_memzero(p, sizeof(*p));
		return VEIL_ERR_INVAL;
	}
	if ((rc = veil_pair_advance(p, clk, NULL, 0, 0)) < 0) {
		sodium_memzero(p, sizeof(*p));
		return rc;
	}
	return VEIL_OK;
}

static void
w_id(struct wire_writer *w, const struct veil_id *id)
{
	wire_w8(w, id->len);
	wire_write(w, id->b, id->len);
}

int
veil_agree_request(struct veil_agree *a, const struct veil_card *card,
    const uint8_t my_pk[VEIL_KEY_BYTES], const char *my_name,
    const struct veil_inbox *my_inbox, uint64_t now, uint8_t *body, size_t *len)
{
	struct veil_agree t;
	struct wire_writer w;
	size_t nlen;
	int ret;

	if (len != NULL)
		*len = 0;
	if (a == NULL || card == NULL || my_pk == NULL || my_name == NULL ||
	    my_inbox == NULL || body == NULL || len == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_NONE)
		return VEIL_ERR_STATE;
	if ((ret = veil_name_valid(my_name)) != VEIL_OK)
		return ret;
	if (!veil_id_is_set(&card->cid) || !veil_inbox_valid(my_inbox) ||
	    veil_name_valid(card->name) != VEIL_OK ||
	    sodium_memcmp(card->pk, my_pk, VEIL_KEY_BYTES) == 0)
		return VEIL_ERR_INVAL;
	nlen = strlen(my_name);

	memset(&t, 0, sizeof(t));
	t.role = VEIL_ROLE_INITIATOR;
	t.state = VEIL_AG_REQUESTED;
	randombytes_buf(t.secret, sizeof(t.secret));
	randombytes_buf(t.pairkey, sizeof(t.pairkey));
	if (crypto_box_keypair(t.eph_pk, t.eph_sk) != 0) {
		ret = VEIL_ERR_CRYPTO;
		goto fail;
	}
	memcpy(t.my_pk, my_pk, VEIL_KEY_BYTES);
	memcpy(t.peer_pk, card->pk, VEIL_KEY_BYTES);
	t.card_cid = card->cid;
	t.req_time = now;
	t.my_inbox = *my_inbox;
	memcpy(t.peer_name, card->name, strlen(card->name) + 1);

	wire_writer_init(&w, body, VEIL_AGREE_BODY_MAX);
	wire_w8(&w, VEIL_AGREE_VERSION);
	wire_write(&w, t.secret, VEIL_KEY_BYTES);
	wire_write(&w, t.pairkey, VEIL_KEY_BYTES);
	wire_write(&w, my_pk, VEIL_KEY_BYTES);
	wire_write(&w, t.eph_pk, VEIL_KEY_BYTES);
	wire_w64(&w, now);
	w32(&w, my_inbox->epoch);
	w32(&w, my_inbox->period);
	w_id(&w, &card->cid);
	wire_write(&w, my_inbox->seed, VEIL_SEED_BYTES);
	wire_w8(&w, (uint8_t)nlen);
	wire_write(&w, my_name, nlen);
	if (w.err) {
		ret = VEIL_ERR_TOOBIG;
		goto fail;
	}
	veil_agree_request_t1(body, w.len, card->pk, t.t1);
	*a = t;
	*len = w.len;
	sodium_memzero(&t, sizeof(t));
	return VEIL_OK;
fail:
	sodium_memzero(&t, sizeof(t));
	sodium_memzero(body, VEIL_AGREE_BODY_MAX);
	return ret;
}

/* u8 length, then an ID of 10..32 bytes. */
static int
r_id(struct wire_reader *r, struct veil_id *id)
{
	uint8_t n = wire_u8(r);

	if (r->err)
		return VEIL_ERR_TRUNCATED;
	if (n > r->left)
		return VEIL_ERR_TRUNCATED;
	if (n < VEIL_ID_MIN_BITS / 8 || n > VEIL_ID_MAX_BYTES)
		return VEIL_ERR_FORMAT;
	id->len = n;
	wire_copy(r, id->b, n);
	return VEIL_OK;
}

/* The order of the checks is the one agree.h documents. */
int
veil_agree_on_request(struct veil_agree *a, const struct veil_id *my_cid,
    const uint8_t my_pk[VEIL_KEY_BYTES], uint64_t now, uint64_t max_age,
    const uint8_t *body, size_t len)
{
	struct veil_agree t;
	struct wire_reader r;
	uint8_t nlen;
	int ret;

	if (a == NULL || my_cid == NULL || my_pk == NULL || body == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_NONE)
		return VEIL_ERR_STATE;
	if (len > VEIL_AGREE_BODY_MAX)
		return VEIL_ERR_FORMAT;
	if (len < 1)
		return VEIL_ERR_TRUNCATED;
	if (body[0] != VEIL_AGREE_VERSION)
		return VEIL_ERR_VERSION;

	memset(&t, 0, sizeof(t));
	wire_reader_init(&r, body + 1, len - 1);
	wire_copy(&r, t.secret, VEIL_KEY_BYTES);
	wire_copy(&r, t.pairkey, VEIL_KEY_BYTES);
	wire_copy(&r, t.peer_pk, VEIL_KEY_BYTES);
	wire_copy(&r, t.peer_eph, VEIL_KEY_BYTES);
	t.req_time = wire_u64(&r);
	t.peer_inbox.epoch = r32(&r);
	t.peer_inbox.period = r32(&r);
	if (r.err) {
		ret = VEIL_ERR_TRUNCATED;
		goto fail;
	}
	if ((ret = r_id(&r, &t.card_cid)) != VEIL_OK)
		goto fail;
	if (wire_copy(&r, t.peer_inbox.seed, VEIL_SEED_BYTES) != 0) {
		ret = VEIL_ERR_TRUNCATED;
		goto fail;
	}
	nlen = wire_u8(&r);
	if (r.err || nlen > r.left) {
		ret = VEIL_ERR_TRUNCATED;
		goto fail;
	}
	if (nlen == 0 || nlen > VEIL_NAME_MAX) {
		ret = VEIL_ERR_INVAL;
		goto fail;
	}
	wire_copy(&r, t.peer_name, nlen);
	if (r.left != 0 || !veil_inbox_valid(&t.peer_inbox)) {
		ret = VEIL_ERR_FORMAT;
		goto fail;
	}
	/* An embedded NUL would shorten the name we show. */
	if (strlen(t.peer_name) != nlen || veil_name_valid(t.peer_name) != VEIL_OK) {
		ret = VEIL_ERR_INVAL;
		goto fail;
	}
	if (!veil_id_equal(&t.card_cid, my_cid) ||
	    sodium_memcmp(t.peer_pk, my_pk, VEIL_KEY_BYTES) == 0) {
		ret = VEIL_ERR_STATE;
		goto fail;
	}
	if (t.req_time < now && now - t.req_time > max_age) {
		ret = VEIL_ERR_EXPIRED;
		goto fail;
	}
	if (t.req_time > now && t.req_time - now > VEIL_AGREE_AHEAD_MAX) {
		ret = VEIL_ERR_FUTURE;
		goto fail;
	}

	t.role = VEIL_ROLE_RESPONDER;
	t.state = VEIL_AG_PENDING;
	memcpy(t.my_pk, my_pk, VEIL_KEY_BYTES);
	veil_agree_request_t1(body, len, my_pk, t.t1);
	*a = t;
	ret = VEIL_OK;
fail:
	sodium_memzero(&t, sizeof(t));
	return ret;
}

int
veil_agree_accept(struct veil_agree *a, const uint8_t my_sk[VEIL_KEY_BYTES],
    const struct veil_inbox *my_inbox, const struct veil_clock *clk,
    uint8_t *body, size_t *len, struct veil_pair *pair)
{
	struct veil_agree t;
	struct wire_writer w;
	uint8_t e_sk[VEIL_KEY_BYTES], e_pk[VEIL_KEY_BYTES];
	uint8_t hs[VEIL_KEY_BYTES], i2r[VEIL_KEY_BYTES], r2i[VEIL_KEY_BYTES];
	int ret;

	if (len != NULL)
		*len = 0;
	if (pair != NULL)
		sodium_memzero(pair, sizeof(*pair));
	if (a == NULL || my_sk == NULL || my_inbox == NULL || clk == NULL ||
	    body == NULL || len == NULL || pair == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_PENDING || a->role != VEIL_ROLE_RESPONDER)
		return VEIL_ERR_STATE;
	if (!veil_inbox_valid(my_inbox) || !sk_matches(my_sk, a->my_pk))
		return VEIL_ERR_INVAL;

	t = *a;
	t.my_inbox = *my_inbox;
	if (crypto_box_keypair(e_pk, e_sk) != 0) {
		ret = VEIL_ERR_CRYPTO;
		goto out;
	}
	transcript2(t.t2, t.t1, e_pk, my_inbox);
	keyed_t2(hs, t.secret, HS_CTX, t.t2);
	ret = pair_roots(i2r, r2i, t.pairkey, t.t2, e_sk, t.peer_eph, e_sk,
	    t.peer_pk, my_sk, t.peer_eph);
	/* e_A is needed for nothing else. */
	sodium_memzero(e_sk, sizeof(e_sk));
	if (ret != VEIL_OK)
		goto out;

	wire_writer_init(&w, body, VEIL_AGREE_BODY_MAX);
	wire_write(&w, e_pk, VEIL_KEY_BYTES);
	wire_write(&w, hs, VEIL_KEY_BYTES);
	w32(&w, my_inbox->epoch);
	w32(&w, my_inbox->period);
	wire_write(&w, my_inbox->seed, VEIL_SEED_BYTES);
	if (w.err || w.len != VEIL_ACCEPT_BODY) {
		ret = VEIL_ERR_TOOBIG;
		goto out;
	}
	if ((ret = pair_fill(pair, &t, i2r, r2i, clk)) != VEIL_OK) {
		sodium_memzero(body, VEIL_AGREE_BODY_MAX);
		goto out;
	}
	*len = w.len;
	memcpy(t.eph_pk, e_pk, VEIL_KEY_BYTES);
	t.state = VEIL_AG_ACCEPTED;
	*a = t;
out:
	sodium_memzero(&t, sizeof(t));
	sodium_memzero(e_sk, sizeof(e_sk));
	sodium_memzero(i2r, sizeof(i2r));
	sodium_memzero(r2i, sizeof(r2i));
	sodium_memzero(hs, sizeof(hs));
	return ret;
}

int
veil_agree_reject(struct veil_agree *a)
{
	uint8_t role;

	if (a == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_PENDING)
		return VEIL_ERR_STATE;
	role = a->role;
	sodium_memzero(a, sizeof(*a));
	a->role = role;
	a->state = VEIL_AG_REJECTED;
	return VEIL_OK;
}

/*
 * On success the CONFIRM is the first frame under pair->tx.  The FAIL
 * instead goes under the epoch-0 i2r key (veil_agree_epoch0).
 */
int
veil_agree_on_accept(struct veil_agree *a, const uint8_t my_sk[VEIL_KEY_BYTES],
    const struct veil_clock *clk, const uint8_t *body, size_t len,
    struct veil_pair *pair, uint8_t *out, size_t *outlen, uint8_t *out_type)
{
	struct veil_agree t;
	struct wire_reader r;
	uint8_t e_a[VEIL_KEY_BYTES], hs_got[VEIL_KEY_BYTES], hs[VEIL_KEY_BYTES];
	uint8_t i2r[VEIL_KEY_BYTES], r2i[VEIL_KEY_BYTES];
	int ret;

	if (outlen != NULL)
		*outlen = 0;
	if (out_type != NULL)
		*out_type = 0;
	if (pair != NULL)
		sodium_memzero(pair, sizeof(*pair));
	if (a == NULL || my_sk == NULL || clk == NULL || body == NULL ||
	    pair == NULL || out == NULL || outlen == NULL || out_type == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_REQUESTED || a->role != VEIL_ROLE_INITIATOR)
		return VEIL_ERR_STATE;
	if (!sk_matches(my_sk, a->my_pk))
		return VEIL_ERR_INVAL;
	if (len < VEIL_ACCEPT_BODY)
		return VEIL_ERR_TRUNCATED;
	if (len > VEIL_ACCEPT_BODY)
		return VEIL_ERR_FORMAT;

	t = *a;
	wire_reader_init(&r, body, len);
	wire_copy(&r, e_a, VEIL_KEY_BYTES);
	wire_copy(&r, hs_got, VEIL_KEY_BYTES);
	t.peer_inbox.epoch = r32(&r);
	t.peer_inbox.period = r32(&r);
	wire_copy(&r, t.peer_inbox.seed, VEIL_SEED_BYTES);
	if (r.err || r.left != 0 || !veil_inbox_valid(&t.peer_inbox)) {
		ret = VEIL_ERR_FORMAT;
		goto out;
	}

	transcript2(t.t2, t.t1, e_a, &t.peer_inbox);
	keyed_t2(hs, t.secret, HS_CTX, t.t2);
	if (sodium_memcmp(hs, hs_got, VEIL_KEY_BYTES) != 0) {
		/* Keep K: the FAIL is sealed under the epoch-0 i2r key. */
		sodium_memzero(a->eph_sk, sizeof(a->eph_sk));
		sodium_memzero(a->secret, sizeof(a->secret));
		a->state = VEIL_AG_FAILED;
		out[0] = FAIL_HASH_MISMATCH;
		*outlen = 1;
		*out_type = VEIL_T_FAIL;
		ret = VEIL_ERR_SECRET;
		goto out;
	}
	if ((ret = pair_roots(i2r, r2i, t.pairkey, t.t2, t.eph_sk, e_a, my_sk,
	    e_a, t.eph_sk, t.peer_pk)) != VEIL_OK)
		goto out;
	if ((ret = pair_fill(pair, &t, i2r, r2i, clk)) != VEIL_OK)
		goto out;
	keyed_t2(out, t.secret, CONFIRM_CTX, t.t2);
	*outlen = VEIL_KEY_BYTES;
	*out_type = VEIL_T_CONFIRM;
	sodium_memzero(t.eph_sk, sizeof(t.eph_sk));
	memcpy(t.peer_eph, e_a, VEIL_KEY_BYTES);
	t.state = VEIL_AG_ESTABLISHED;
	*a = t;
out:
	sodium_memzero(&t, sizeof(t));
	sodium_memzero(i2r, sizeof(i2r));
	sodium_memzero(r2i, sizeof(r2i));
	sodium_memzero(hs, sizeof(hs));
	return ret;
}

int
veil_agree_on_confirm(struct veil_agree *a, const uint8_t *body, size_t len)
{
	uint8_t want[VEIL_KEY_BYTES];
	int ret = VEIL_OK;

	if (a == NULL || body == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_ACCEPTED || a->role != VEIL_ROLE_RESPONDER)
		return VEIL_ERR_STATE;
	if (len != VEIL_KEY_BYTES)
		return len < VEIL_KEY_BYTES ? VEIL_ERR_TRUNCATED : VEIL_ERR_FORMAT;
	keyed_t2(want, a->secret, CONFIRM_CTX, a->t2);
	if (sodium_memcmp(want, body, VEIL_KEY_BYTES) != 0) {
		a->state = VEIL_AG_FAILED;
		ret = VEIL_ERR_SECRET;
	} else
		a->state = VEIL_AG_ESTABLISHED;
	sodium_memzero(want, sizeof(want));
	return ret;
}

int
veil_agree_on_chain_frame(struct veil_agree *a)
{
	if (a == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_ACCEPTED || a->role != VEIL_ROLE_RESPONDER)
		return VEIL_ERR_STATE;
	a->state = VEIL_AG_ESTABLISHED;
	return VEIL_OK;
}

int
veil_agree_on_fail(struct veil_agree *a, const uint8_t *body, size_t len)
{
	if (a == NULL || body == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_ACCEPTED || a->role != VEIL_ROLE_RESPONDER)
		return VEIL_ERR_STATE;
	if (len != 1)
		return len < 1 ? VEIL_ERR_TRUNCATED : VEIL_ERR_FORMAT;
	sodium_memzero(a->eph_sk, sizeof(a->eph_sk));
	a->state = VEIL_AG_FAILED;
	return VEIL_OK;
}

void
veil_agree_wipe(struct veil_agree *a)
{
	if (a != NULL)
		sodium_memzero(a, sizeof(*a));
}

/* IDs and the name take a fixed slot, so the stored form has one length. */
static void
pack_id(struct wire_writer *w, const struct veil_id *id)
{
	uint8_t slot[VEIL_ID_MAX_BYTES];

	memset(slot, 0, sizeof(slot));
	if (id->len <= VEIL_ID_MAX_BYTES)
		memcpy(slot, id->b, id->len);
	wire_w8(w, id->len);
	wire_write(w, slot, sizeof(slot));
}

static void
pack_inbox(struct wire_writer *w, const struct veil_inbox *in)
{
	wire_write(w, in->seed, VEIL_SEED_BYTES);
	w32(w, in->epoch);
	w32(w, in->period);
}

int
veil_agree_pack(const struct veil_agree *a, uint8_t *out, size_t outlen)
{
	struct wire_writer w;
	uint8_t name[VEIL_NAME_MAX];
	size_t nlen;

	if (a == NULL || out == NULL)
		return VEIL_ERR_INVAL;
	if (outlen < AGREE_PACKED)
		return VEIL_ERR_TOOBIG;
	nlen = strnlen(a->peer_name, sizeof(a->peer_name));
	if (nlen > VEIL_NAME_MAX || a->card_cid.len > VEIL_ID_MAX_BYTES)
		return VEIL_ERR_INVAL;
	memset(name, 0, sizeof(name));
	memcpy(name, a->peer_name, nlen);

	wire_writer_init(&w, out, outlen);
	wire_w8(&w, AGREE_PACK_VERSION);
	wire_w8(&w, a->role);
	wire_w8(&w, a->state);
	wire_write(&w, a->secret, VEIL_KEY_BYTES);
	wire_write(&w, a->pairkey, VEIL_KEY_BYTES);
	wire_write(&w, a->eph_sk, VEIL_KEY_BYTES);
	wire_write(&w, a->eph_pk, VEIL_KEY_BYTES);
	wire_write(&w, a->peer_eph, VEIL_KEY_BYTES);
	wire_write(&w, a->my_pk, VEIL_KEY_BYTES);
	wire_write(&w, a->peer_pk, VEIL_KEY_BYTES);
	wire_write(&w, a->t1, VEIL_KEY_BYTES);
	wire_write(&w, a->t2, VEIL_KEY_BYTES);
	pack_id(&w, &a->card_cid);
	wire_w64(&w, a->req_time);
	pack_inbox(&w, &a->my_inbox);
	pack_inbox(&w, &a->peer_inbox);
	wire_w8(&w, (uint8_t)nlen);
	wire_write(&w, name, sizeof(name));
	if (w.err || w.len != AGREE_PACKED) {
		sodium_memzero(out, outlen);
		return VEIL_ERR_TOOBIG;
	}
	return (int)w.len;
}

/* An ID slot: unset (length 0) or 10..32 bytes, and zeros after it. */
static int
unpack_id(struct wire_reader *r, struct veil_id *id)
{
	uint8_t slot[VEIL_ID_MAX_BYTES];
	uint8_t n = wire_u8(r);

	if (wire_copy(r, slot, sizeof(slot)) != 0)
		return -1;
	if (n != 0 && (n < VEIL_ID_MIN_BITS / 8 || n > VEIL_ID_MAX_BYTES))
		return -1;
	if (!sodium_is_zero(slot + n, sizeof(slot) - n))
		return -1;
	memset(id, 0, sizeof(*id));
	id->len = n;
	memcpy(id->b, slot, n);
	return 0;
}

/* Unset (all zero) or valid. */
static int
unpack_inbox(struct wire_reader *r, struct veil_inbox *in)
{
	wire_copy(r, in->seed, VEIL_SEED_BYTES);
	in->epoch = r32(r);
	in->period = r32(r);
	if (r->err)
		return -1;
	if (sodium_is_zero((const uint8_t *)in, sizeof(*in)))
		return 0;
	return veil_inbox_valid(in) ? 0 : -1;
}

int
veil_agree_unpack(struct veil_agree *a, const uint8_t *in, size_t len)
{
	struct veil_agree t;
	struct wire_reader r;
	uint8_t name[VEIL_NAME_MAX], nlen;
	int ret = VEIL_ERR_FORMAT;

	if (a == NULL)
		return VEIL_ERR_INVAL;
	sodium_memzero(a, sizeof(*a));
	if (in == NULL)
		return VEIL_ERR_INVAL;
	if (len < 1)
		return VEIL_ERR_TRUNCATED;
	if (in[0] != AGREE_PACK_VERSION)
		return VEIL_ERR_VERSION;
	if (len < AGREE_PACKED)
		return VEIL_ERR_TRUNCATED;
	if (len > AGREE_PACKED)
		return VEIL_ERR_FORMAT;

	memset(&t, 0, sizeof(t));
	wire_reader_init(&r, in + 1, len - 1);
	t.role = wire_u8(&r);
	t.state = wire_u8(&r);
	wire_copy(&r, t.secret, VEIL_KEY_BYTES);
	wire_copy(&r, t.pairkey, VEIL_KEY_BYTES);
	wire_copy(&r, t.eph_sk, VEIL_KEY_BYTES);
	wire_copy(&r, t.eph_pk, VEIL_KEY_BYTES);
	wire_copy(&r, t.peer_eph, VEIL_KEY_BYTES);
	wire_copy(&r, t.my_pk, VEIL_KEY_BYTES);
	wire_copy(&r, t.peer_pk, VEIL_KEY_BYTES);
	wire_copy(&r, t.t1, VEIL_KEY_BYTES);
	wire_copy(&r, t.t2, VEIL_KEY_BYTES);
	if (unpack_id(&r, &t.card_cid) != 0)
		goto out;
	t.req_time = wire_u64(&r);
	if (unpack_inbox(&r, &t.my_inbox) != 0 ||
	    unpack_inbox(&r, &t.peer_inbox) != 0)
		goto out;
	nlen = wire_u8(&r);
	wire_copy(&r, name, sizeof(name));
	if (r.err || r.left != 0 || nlen > VEIL_NAME_MAX)
		goto out;
	if (t.role > VEIL_ROLE_RESPONDER || t.state > VEIL_AG_REJECTED)
		goto out;
	if (!sodium_is_zero(name + nlen, sizeof(name) - nlen))
		goto out;
	memcpy(t.peer_name, name, nlen);
	t.peer_name[nlen] = '\0';
	if (nlen > 0 && (strlen(t.peer_name) != nlen ||
	    veil_name_valid(t.peer_name) != VEIL_OK))
		goto out;
	memcpy(a, &t, sizeof(*a));
	ret = VEIL_OK;
out:
	sodium_memzero(&t, sizeof(t));
	sodium_memzero(name, sizeof(name));
	return ret;
}
