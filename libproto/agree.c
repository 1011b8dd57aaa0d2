/* libveil agree: REQUEST/ACCEPT/CONFIRM/FAIL bodies, transcripts and keys of the contact agreement. */
#include <string.h>

#include <sodium.h>

#include "agree.h"
#include "wire.h"

#define AGREE_PACK_VERSION 1
#define T1_CTX "veil-agree-v1"
#define HS_CTX "veil-hs-v1"
#define ROOT_CTX "veil-root-v1"
#define CONFIRM_CTX "veil-confirm-v1"
#define EPOCH0_KDF "veilag01"
#define PAIR_KDF "veilpair"
#define FAIL_HASH_MISMATCH 1

/* S, K, KP_B, E_B, then three length-prefixed fields. */
#define REQ_FIXED (4 * VEIL_KEY_BYTES)
#define ACC_FIXED (2 * VEIL_KEY_BYTES)
#define REQ_MAX (REQ_FIXED + 2 * (1 + VEIL_ID_MAX_BYTES) + 1 + VEIL_NAME_MAX)
#define ACC_MAX (ACC_FIXED + 1 + VEIL_ID_MAX_BYTES)
_Static_assert(REQ_MAX <= VEIL_AGREE_BODY_MAX, "VEIL_AGREE_BODY_MAX too small");

#define ID_PACKED (1 + VEIL_ID_MAX_BYTES)
#define AGREE_PACKED (1 + 1 + 1 + 9 * VEIL_KEY_BYTES + 3 * ID_PACKED + \
    1 + VEIL_NAME_MAX)
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
root_to_dirkey(struct veil_dirkey *k, const uint8_t base[VEIL_KEY_BYTES],
    uint64_t id, const char ctx[8])
{
	uint8_t root[VEIL_KEY_BYTES];

	crypto_kdf_derive_from_key(root, sizeof(root), id, ctx, base);
	veil_dirkey_from_root(k, root);
	sodium_memzero(root, sizeof(root));
}

void
veil_agree_epoch0(const struct veil_agree *a, struct veil_dirkey *r2i, struct veil_dirkey *i2r)
{
	if (r2i != NULL)
		root_to_dirkey(r2i, a->pairkey, 1, EPOCH0_KDF);
	if (i2r != NULL)
		root_to_dirkey(i2r, a->pairkey, 2, EPOCH0_KDF);
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

static void
transcript1(uint8_t t1[VEIL_KEY_BYTES], const uint8_t resp_pk[VEIL_KEY_BYTES],
    const uint8_t *body, size_t len)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)T1_CTX, sizeof(T1_CTX) - 1);
	crypto_generichash_update(&st, resp_pk, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, body, len);
	crypto_generichash_final(&st, t1, VEIL_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
}

static void
transcript2(uint8_t t2[VEIL_KEY_BYTES], const uint8_t t1[VEIL_KEY_BYTES],
    const uint8_t e_resp[VEIL_KEY_BYTES], const struct veil_id *resp_inbox)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, t1, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, e_resp, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, &resp_inbox->len, 1);
	crypto_generichash_update(&st, resp_inbox->b, resp_inbox->len);
	crypto_generichash_final(&st, t2, VEIL_KEY_BYTES);
}

/*
 * RK = H_K("veil-root-v1" || DH(sk, peer) || T2), then the two pair roots.
 * The all-zero DH output (peer sent a low-order point) is refused: it
 * would make RK depend on K alone and void the forward secrecy.
 */
static int
pair_roots(uint8_t i2r[VEIL_KEY_BYTES], uint8_t r2i[VEIL_KEY_BYTES],
    const uint8_t k[VEIL_KEY_BYTES], const uint8_t sk[VEIL_KEY_BYTES],
    const uint8_t peer[VEIL_KEY_BYTES], const uint8_t t2[VEIL_KEY_BYTES])
{
	crypto_generichash_state st;
	uint8_t dh[crypto_scalarmult_BYTES], rk[VEIL_KEY_BYTES];

	if (crypto_scalarmult(dh, sk, peer) != 0 ||
	    sodium_is_zero(dh, sizeof(dh))) {
		sodium_memzero(dh, sizeof(dh));
		return VEIL_ERR_CRYPTO;
	}
	crypto_generichash_init(&st, k, VEIL_KEY_BYTES, sizeof(rk));
	crypto_generichash_update(&st, (const uint8_t *)ROOT_CTX, sizeof(ROOT_CTX) - 1);
	crypto_generichash_update(&st, dh, sizeof(dh));
	crypto_generichash_update(&st, t2, VEIL_KEY_BYTES);
	crypto_generichash_final(&st, rk, sizeof(rk));
	crypto_kdf_derive_from_key(i2r, VEIL_KEY_BYTES, 1, PAIR_KDF, rk);
	crypto_kdf_derive_from_key(r2i, VEIL_KEY_BYTES, 2, PAIR_KDF, rk);
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(dh, sizeof(dh));
	sodium_memzero(rk, sizeof(rk));
	return VEIL_OK;
}

static void
pair_fill(struct veil_pair *p, uint8_t role, const uint8_t secret[VEIL_KEY_BYTES],
    const uint8_t peer_pk[VEIL_KEY_BYTES], const uint8_t tx[VEIL_KEY_BYTES],
    const uint8_t rx[VEIL_KEY_BYTES])
{
	/* All zero is also the empty state of the replay windows and of
	 * the update bookkeeping. */
	sodium_memzero(p, sizeof(*p));
	p->role = role;
	veil_pair_set_secret(p, secret);
	memcpy(p->peer_pk, peer_pk, VEIL_KEY_BYTES);
	veil_dirkey_from_root(&p->tx.k, tx);
	veil_dirkey_from_root(&p->rx.k, rx);
	p->tx.seq = 0;
	p->tx.live = 1;
	p->rx.live = 1;
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
    const struct veil_id *my_inbox, uint8_t *body, size_t *len)
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
	if (!veil_id_is_set(&card->cid) || !veil_id_is_set(my_inbox) ||
	    veil_name_valid(card->name) != VEIL_OK)
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
	t.my_inbox = *my_inbox;
	memcpy(t.peer_name, card->name, strlen(card->name) + 1);

	wire_writer_init(&w, body, VEIL_AGREE_BODY_MAX);
	wire_write(&w, t.secret, VEIL_KEY_BYTES);
	wire_write(&w, t.pairkey, VEIL_KEY_BYTES);
	wire_write(&w, my_pk, VEIL_KEY_BYTES);
	wire_write(&w, t.eph_pk, VEIL_KEY_BYTES);
	w_id(&w, &card->cid);
	w_id(&w, my_inbox);
	wire_w8(&w, (uint8_t)nlen);
	wire_write(&w, my_name, nlen);
	if (w.err) {
		ret = VEIL_ERR_TOOBIG;
		goto fail;
	}
	transcript1(t.t1, card->pk, body, w.len);
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

int
veil_agree_request_key(const uint8_t *body, size_t len, uint8_t pk[VEIL_KEY_BYTES])
{
	struct wire_reader r;

	if (body == NULL || pk == NULL)
		return VEIL_ERR_INVAL;
	/* S, K, then KP_B (the layout veil_agree_on_request reads). */
	wire_reader_init(&r, body, len);
	(void)wire_take(&r, 2 * VEIL_KEY_BYTES);
	wire_copy(&r, pk, VEIL_KEY_BYTES);
	if (r.err) {
		sodium_memzero(pk, VEIL_KEY_BYTES);
		return VEIL_ERR_TRUNCATED;
	}
	return VEIL_OK;
}

int
veil_agree_on_request(struct veil_agree *a, const struct veil_id *my_cid,
    const uint8_t my_pk[VEIL_KEY_BYTES], const uint8_t *body, size_t len)
{
	struct veil_agree t;
	struct wire_reader r;
	uint8_t kp_b[VEIL_KEY_BYTES], nlen;
	int ret;

	if (a == NULL || my_cid == NULL || my_pk == NULL || body == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_NONE)
		return VEIL_ERR_STATE;
	if (len > VEIL_AGREE_BODY_MAX)
		return VEIL_ERR_FORMAT;

	memset(&t, 0, sizeof(t));
	wire_reader_init(&r, body, len);
	wire_copy(&r, t.secret, VEIL_KEY_BYTES);
	wire_copy(&r, t.pairkey, VEIL_KEY_BYTES);
	wire_copy(&r, kp_b, VEIL_KEY_BYTES);
	wire_copy(&r, t.peer_eph, VEIL_KEY_BYTES);
	if (r.err) {
		ret = VEIL_ERR_TRUNCATED;
		goto fail;
	}
	if ((ret = r_id(&r, &t.card_cid)) != VEIL_OK ||
	    (ret = r_id(&r, &t.peer_inbox)) != VEIL_OK)
		goto fail;
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
	if (r.left != 0) {
		ret = VEIL_ERR_FORMAT;
		goto fail;
	}
	/* An embedded NUL would shorten the name we show. */
	if (strlen(t.peer_name) != nlen || veil_name_valid(t.peer_name) != VEIL_OK) {
		ret = VEIL_ERR_INVAL;
		goto fail;
	}
	if (!veil_id_equal(&t.card_cid, my_cid)) {
		ret = VEIL_ERR_STATE;
		goto fail;
	}

	t.role = VEIL_ROLE_RESPONDER;
	t.state = VEIL_AG_PENDING;
	memcpy(t.peer_pk, kp_b, VEIL_KEY_BYTES);
	memcpy(t.my_pk, my_pk, VEIL_KEY_BYTES);
	transcript1(t.t1, my_pk, body, len);
	*a = t;
	ret = VEIL_OK;
fail:
	sodium_memzero(&t, sizeof(t));
	return ret;
}

int
veil_agree_accept(struct veil_agree *a, const struct veil_id *my_inbox,
    uint8_t *body, size_t *len, struct veil_pair *pair)
{
	struct wire_writer w;
	uint8_t e_sk[VEIL_KEY_BYTES], e_pk[VEIL_KEY_BYTES];
	uint8_t t2[VEIL_KEY_BYTES], hs[VEIL_KEY_BYTES];
	uint8_t i2r[VEIL_KEY_BYTES], r2i[VEIL_KEY_BYTES];
	int ret;

	if (len != NULL)
		*len = 0;
	if (pair != NULL)
		sodium_memzero(pair, sizeof(*pair));
	if (a == NULL || my_inbox == NULL || body == NULL || len == NULL ||
	    pair == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_PENDING)
		return VEIL_ERR_STATE;
	if (!veil_id_is_set(my_inbox))
		return VEIL_ERR_INVAL;

	if (crypto_box_keypair(e_pk, e_sk) != 0) {
		ret = VEIL_ERR_CRYPTO;
		goto out;
	}
	transcript2(t2, a->t1, e_pk, my_inbox);
	keyed_t2(hs, a->secret, HS_CTX, t2);
	if ((ret = pair_roots(i2r, r2i, a->pairkey, e_sk, a->peer_eph, t2)) != VEIL_OK)
		goto out;

	wire_writer_init(&w, body, VEIL_AGREE_BODY_MAX);
	wire_write(&w, e_pk, VEIL_KEY_BYTES);
	wire_write(&w, hs, VEIL_KEY_BYTES);
	w_id(&w, my_inbox);
	if (w.err) {
		ret = VEIL_ERR_TOOBIG;
		goto out;
	}
	*len = w.len;

	pair_fill(pair, VEIL_ROLE_RESPONDER, a->secret, a->peer_pk, r2i, i2r);
	memcpy(a->eph_pk, e_pk, VEIL_KEY_BYTES);
	memcpy(a->t2, t2, VEIL_KEY_BYTES);
	a->my_inbox = *my_inbox;
	a->state = VEIL_AG_ACCEPTED;
	ret = VEIL_OK;
out:
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
 * On success the CONFIRM is the first frame under pair->tx: pair->tx.seq
 * is 0 here and the caller's veil_message_seal() of the CONFIRM moves it
 * to 1.  The FAIL instead goes under the epoch-0 i2r key (veil_agree_epoch0).
 */
int
veil_agree_on_accept(struct veil_agree *a, const uint8_t *body, size_t len,
    struct veil_pair *pair, uint8_t *out, size_t *outlen, uint8_t *out_type)
{
	struct wire_reader r;
	struct veil_id inbox;
	uint8_t e_a[VEIL_KEY_BYTES], hs_got[VEIL_KEY_BYTES], hs[VEIL_KEY_BYTES];
	uint8_t t2[VEIL_KEY_BYTES], i2r[VEIL_KEY_BYTES], r2i[VEIL_KEY_BYTES];
	int ret;

	if (outlen != NULL)
		*outlen = 0;
	if (out_type != NULL)
		*out_type = 0;
	if (pair != NULL)
		sodium_memzero(pair, sizeof(*pair));
	if (a == NULL || body == NULL || pair == NULL || out == NULL ||
	    outlen == NULL || out_type == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_REQUESTED)
		return VEIL_ERR_STATE;

	memset(&inbox, 0, sizeof(inbox));
	wire_reader_init(&r, body, len);
	wire_copy(&r, e_a, VEIL_KEY_BYTES);
	wire_copy(&r, hs_got, VEIL_KEY_BYTES);
	if (r.err)
		return VEIL_ERR_TRUNCATED;
	if ((ret = r_id(&r, &inbox)) != VEIL_OK)
		return ret;
	if (r.left != 0)
		return VEIL_ERR_FORMAT;

	transcript2(t2, a->t1, e_a, &inbox);
	keyed_t2(hs, a->secret, HS_CTX, t2);
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
	if ((ret = pair_roots(i2r, r2i, a->pairkey, a->eph_sk, e_a, t2)) != VEIL_OK)
		goto out;

	pair_fill(pair, VEIL_ROLE_INITIATOR, a->secret, a->peer_pk, i2r, r2i);
	keyed_t2(out, a->secret, CONFIRM_CTX, t2);
	*outlen = VEIL_KEY_BYTES;
	*out_type = VEIL_T_CONFIRM;
	sodium_memzero(a->eph_sk, sizeof(a->eph_sk));
	memcpy(a->peer_eph, e_a, VEIL_KEY_BYTES);
	memcpy(a->t2, t2, VEIL_KEY_BYTES);
	a->peer_inbox = inbox;
	a->state = VEIL_AG_ESTABLISHED;
	ret = VEIL_OK;
out:
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
	if (a->state != VEIL_AG_ACCEPTED)
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
veil_agree_on_fail(struct veil_agree *a, const uint8_t *body, size_t len)
{
	if (a == NULL || body == NULL)
		return VEIL_ERR_INVAL;
	if (a->state != VEIL_AG_REQUESTED && a->state != VEIL_AG_ACCEPTED)
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
	if (nlen > VEIL_NAME_MAX || a->my_inbox.len > VEIL_ID_MAX_BYTES ||
	    a->peer_inbox.len > VEIL_ID_MAX_BYTES ||
	    a->card_cid.len > VEIL_ID_MAX_BYTES)
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
	pack_id(&w, &a->my_inbox);
	pack_id(&w, &a->peer_inbox);
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
	if (unpack_id(&r, &t.card_cid) != 0 || unpack_id(&r, &t.my_inbox) != 0 ||
	    unpack_id(&r, &t.peer_inbox) != 0)
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
	return ret;
}
