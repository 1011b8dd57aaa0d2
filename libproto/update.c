/* libveil update: the CCM JSON, UPDATE/UPDATE-ACK handling and the re-keying of one direction. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "update.h"
#include "wire.h"

#define CCM_DATA "UpdateContact"
#define ACK_DATA "UpdateAck"
#define DONE_DATA "UpdateDone"
#define CCM_STEG "0000"
#define REKEY_CTX "veil-rekey-v1"
#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define KEY_B64_LEN 43		/* b64u of 32 bytes, no padding */
#define KEY_HEX_LEN (2 * VEIL_KEY_BYTES)

static void
b64_key(char out[KEY_B64_LEN + 1], const uint8_t key[VEIL_KEY_BYTES])
{
	sodium_bin2base64(out, KEY_B64_LEN + 1, key, VEIL_KEY_BYTES, B64_VARIANT);
}

/* Exactly one text form per key: 43 characters, all consumed, no padding. */
static int
unb64_key(uint8_t key[VEIL_KEY_BYTES], const char *s)
{
	const char *end = NULL;
	size_t blen = 0;

	if (s == NULL || strlen(s) != KEY_B64_LEN)
		return -1;
	if (sodium_base642bin(key, VEIL_KEY_BYTES, s, KEY_B64_LEN, NULL, &blen,
	    &end, B64_VARIANT) != 0 || end != s + KEY_B64_LEN ||
	    blen != VEIL_KEY_BYTES) {
		sodium_memzero(key, VEIL_KEY_BYTES);
		return -1;
	}
	return 0;
}

static int
unhex_key(uint8_t key[VEIL_KEY_BYTES], const char *s)
{
	const char *end = NULL;
	size_t blen = 0;

	if (s == NULL || strlen(s) != KEY_HEX_LEN)
		return -1;
	if (sodium_hex2bin(key, VEIL_KEY_BYTES, s, KEY_HEX_LEN, NULL, &blen,
	    &end) != 0 || end != s + KEY_HEX_LEN || blen != VEIL_KEY_BYTES) {
		sodium_memzero(key, VEIL_KEY_BYTES);
		return -1;
	}
	return 0;
}

/* Copies a JSON string into a fixed buffer; fails when it does not fit. */
static int
copy_str(char *dst, size_t dstlen, const char *s)
{
	size_t n = strlen(s);

	if (n >= dstlen)
		return -1;
	memcpy(dst, s, n + 1);
	return 0;
}

/* Strict loading: one object, no duplicate keys, no NUL inside strings. */
static json_t *
load_body(const char *body, size_t len)
{
	json_error_t err;

	if (body == NULL || len == 0 || len > VEIL_UPDATE_BODY_MAX)
		return NULL;
	return json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
}

int
veil_ccm_parse(struct veil_ccm *ccm, const char *body, size_t len)
{
	json_t *root;
	json_error_t err;
	const char *data, *ocid, *pubkey, *cname, *newcid, *secret;
	const char *newsecret = NULL, *steg, *alg, *eph;
	json_int_t seq;
	int ret = VEIL_ERR_FORMAT;

	if (ccm == NULL)
		return VEIL_ERR_INVAL;
	sodium_memzero(ccm, sizeof(*ccm));
	if ((root = load_body(body, len)) == NULL)
		return VEIL_ERR_FORMAT;
	/* JSON_STRICT: a key not listed here makes the message not a CCM. */
	if (json_unpack_ex(root, &err, JSON_STRICT,
	    "{s:s, s:s, s:s, s:s, s:s, s:s, s?s, s:s, s:s, s:I, s:s}",
	    "Data", &data, "OCID", &ocid, "PubKey", &pubkey, "CName", &cname,
	    "NewCID", &newcid, "Secret", &secret, "NewSecret", &newsecret,
	    "StegKey", &steg, "Alg", &alg, "Seq", &seq, "Eph", &eph) != 0)
		goto out;
	if (strcmp(data, CCM_DATA) != 0 || strcmp(steg, CCM_STEG) != 0 ||
	    strcmp(alg, VEIL_UPDATE_ALG) != 0 || seq < 1)
		goto out;
	if (veil_id_from_text(&ccm->ocid, ocid) != VEIL_OK ||
	    veil_id_from_text(&ccm->new_cid, newcid) != VEIL_OK ||
	    unb64_key(ccm->pubkey, pubkey) != 0 ||
	    unhex_key(ccm->secret, secret) != 0 ||
	    unb64_key(ccm->eph, eph) != 0)
		goto out;
	if (newsecret != NULL) {
		if (unb64_key(ccm->new_secret, newsecret) != 0)
			goto out;
		ccm->has_new_secret = 1;
	}
	if (veil_name_valid(cname) != VEIL_OK ||
	    copy_str(ccm->cname, sizeof(ccm->cname), cname) != 0 ||
	    copy_str(ccm->steg_key, sizeof(ccm->steg_key), steg) != 0 ||
	    copy_str(ccm->alg, sizeof(ccm->alg), alg) != 0)
		goto out;
	ccm->seq = (uint64_t)seq;
	ret = VEIL_OK;
out:
	json_decref(root);
	if (ret != VEIL_OK)
		sodium_memzero(ccm, sizeof(*ccm));
	return ret;
}

/* Serialises and hands back a malloc'd body (jansson allocates with malloc). */
static int
dump_body(json_t *obj, char **out, size_t *outlen)
{
	char *s;
	size_t n;

	if (obj == NULL)
		return VEIL_ERR_NOMEM;
	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (s == NULL)
		return VEIL_ERR_NOMEM;
	n = strlen(s);
	if (n > VEIL_UPDATE_BODY_MAX) {
		sodium_memzero(s, n);
		free(s);
		return VEIL_ERR_TOOBIG;
	}
	*out = s;
	*outlen = n;
	return VEIL_OK;
}

static int
build_ack(uint64_t seq, const uint8_t eph[VEIL_KEY_BYTES], char **ack, size_t *acklen)
{
	char eph64[KEY_B64_LEN + 1];

	b64_key(eph64, eph);
	return dump_body(json_pack("{s:s, s:I, s:s}", "Data", ACK_DATA,
	    "Seq", (json_int_t)seq, "Eph", eph64), ack, acklen);
}

/*
 * Everything that goes into an UPDATE is stored in the pair or given by
 * the caller, so a retransmission is the same bytes.
 */
static int
build_update(const struct veil_pair *p, const uint8_t my_pk[VEIL_KEY_BYTES],
    const char *my_name, const struct veil_id *old_cid,
    const struct veil_id *new_cid, uint64_t seq, const uint8_t eph[VEIL_KEY_BYTES],
    const uint8_t *new_secret, char **body, size_t *len)
{
	char ocid[VEIL_ID_TEXT_MAX], ncid[VEIL_ID_TEXT_MAX];
	char pk64[KEY_B64_LEN + 1], eph64[KEY_B64_LEN + 1], ns64[KEY_B64_LEN + 1];
	char sh[KEY_HEX_LEN + 1];
	json_t *obj;
	int ret;

	if (veil_id_to_text(old_cid, ocid, sizeof(ocid)) != VEIL_OK ||
	    veil_id_to_text(new_cid, ncid, sizeof(ncid)) != VEIL_OK)
		return VEIL_ERR_INVAL;
	b64_key(pk64, my_pk);
	b64_key(eph64, eph);
	sodium_bin2hex(sh, sizeof(sh), p->secret_hash, VEIL_KEY_BYTES);
	obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
	    "Data", CCM_DATA, "OCID", ocid, "PubKey", pk64, "CName", my_name,
	    "NewCID", ncid, "Secret", sh);
	if (obj != NULL && new_secret != NULL) {
		b64_key(ns64, new_secret);
		if (json_object_set_new(obj, "NewSecret", json_string(ns64)) != 0) {
			json_decref(obj);
			obj = NULL;
		}
	}
	if (obj != NULL && (json_object_set_new(obj, "StegKey",
	    json_string(CCM_STEG)) != 0 || json_object_set_new(obj, "Alg",
	    json_string(VEIL_UPDATE_ALG)) != 0 || json_object_set_new(obj,
	    "Seq", json_integer((json_int_t)seq)) != 0 ||
	    json_object_set_new(obj, "Eph", json_string(eph64)) != 0)) {
		json_decref(obj);
		obj = NULL;
	}
	ret = dump_body(obj, body, len);
	sodium_memzero(sh, sizeof(sh));
	sodium_memzero(ns64, sizeof(ns64));
	return ret;
}

int
veil_update_build(struct veil_pair *p, const uint8_t my_pk[VEIL_KEY_BYTES],
    const char *my_name, const struct veil_id *old_cid, const struct veil_id *new_cid,
    int rekey_secret, char **body, size_t *len)
{
	uint8_t e_sk[VEIL_KEY_BYTES], e_pk[VEIL_KEY_BYTES], ns[VEIL_KEY_BYTES];
	uint64_t seq;
	int ret;

	if (body != NULL)
		*body = NULL;
	if (len != NULL)
		*len = 0;
	if (p == NULL || my_pk == NULL || my_name == NULL || old_cid == NULL ||
	    new_cid == NULL || body == NULL || len == NULL)
		return VEIL_ERR_INVAL;
	if ((ret = veil_name_valid(my_name)) != VEIL_OK)
		return ret;
	if (!veil_id_is_set(old_cid) || !veil_id_is_set(new_cid))
		return VEIL_ERR_INVAL;

	/* A pending update is rebuilt as it was: rekey_secret is ignored and
	 * the caller must pass the same name and inboxes as the first time. */
	if (p->upd_pending)
		return build_update(p, my_pk, my_name, old_cid, new_cid,
		    p->upd_sent_seq, p->upd_eph_pk,
		    p->upd_rekey_secret ? p->upd_new_secret : NULL, body, len);

	/* Seq travels as a JSON integer, which jansson keeps signed (64 bits). */
	if (p->upd_sent_seq >= (uint64_t)INT64_MAX)
		return VEIL_ERR_TOOBIG;
	seq = p->upd_sent_seq + 1;
	if (crypto_box_keypair(e_pk, e_sk) != 0)
		return VEIL_ERR_CRYPTO;
	if (rekey_secret)
		randombytes_buf(ns, sizeof(ns));
	ret = build_update(p, my_pk, my_name, old_cid, new_cid, seq, e_pk,
	    rekey_secret ? ns : NULL, body, len);
	if (ret == VEIL_OK) {
		p->upd_sent_seq = seq;
		p->upd_pending = 1;
		memcpy(p->upd_eph_sk, e_sk, VEIL_KEY_BYTES);
		memcpy(p->upd_eph_pk, e_pk, VEIL_KEY_BYTES);
		p->upd_rekey_secret = rekey_secret ? 1 : 0;
		if (rekey_secret)
			memcpy(p->upd_new_secret, ns, VEIL_KEY_BYTES);
	}
	sodium_memzero(e_sk, sizeof(e_sk));
	sodium_memzero(ns, sizeof(ns));
	return ret;
}

/*
 * D' = H_root("veil-rekey-v1" || DH(sk, peer) || u64(seq)): keyed by the
 * root being replaced, so the new key depends on the whole chain and on
 * the fresh ephemerals.
 */
static int
rekey_root(uint8_t out[VEIL_KEY_BYTES], const uint8_t root[VEIL_KEY_BYTES],
    const uint8_t sk[VEIL_KEY_BYTES], const uint8_t peer[VEIL_KEY_BYTES], uint64_t seq)
{
	crypto_generichash_state st;
	uint8_t dh[crypto_scalarmult_BYTES], s[8];

	if (crypto_scalarmult(dh, sk, peer) != 0 ||
	    sodium_is_zero(dh, sizeof(dh))) {
		sodium_memzero(dh, sizeof(dh));
		return VEIL_ERR_CRYPTO;
	}
	wire_put64(s, seq);
	crypto_generichash_init(&st, root, VEIL_KEY_BYTES, VEIL_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)REKEY_CTX, sizeof(REKEY_CTX) - 1);
	crypto_generichash_update(&st, dh, sizeof(dh));
	crypto_generichash_update(&st, s, sizeof(s));
	crypto_generichash_final(&st, out, VEIL_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(dh, sizeof(dh));
	return VEIL_OK;
}

/*
 * A retransmitted UPDATE that carried NewSecret still holds the old SH,
 * while we already switched to the new S: it is recognised by its seq and
 * Eph and by its NewSecret hashing to our current SH.
 */
static int
is_rekeyed_retransmission(const struct veil_pair *p, const struct veil_ccm *c)
{
	struct veil_pair t;
	int ret;

	if (!c->has_new_secret || c->seq != p->upd_recv_seq ||
	    sodium_memcmp(c->eph, p->upd_recv_eph, VEIL_KEY_BYTES) != 0)
		return 0;
	memset(&t, 0, sizeof(t));
	veil_pair_set_secret(&t, c->new_secret);
	ret = sodium_memcmp(t.secret_hash, p->secret_hash, VEIL_KEY_BYTES) == 0;
	sodium_memzero(&t, sizeof(t));
	return ret;
}

/* tx_next becomes tx; the old transmit key is wiped. */
static void
switch_tx(struct veil_pair *p)
{
	sodium_memzero(&p->tx, sizeof(p->tx));
	p->tx = p->tx_next;
	sodium_memzero(&p->tx_next, sizeof(p->tx_next));
}

int
veil_update_on_update(struct veil_pair *p, const struct veil_id *ocid_known,
    const char *body, size_t len, struct veil_ccm *ccm, char **ack, size_t *acklen)
{
	uint8_t e_sk[VEIL_KEY_BYTES], e_pk[VEIL_KEY_BYTES], root[VEIL_KEY_BYTES];
	int ret;

	if (ack != NULL)
		*ack = NULL;
	if (acklen != NULL)
		*acklen = 0;
	if (ccm != NULL)
		sodium_memzero(ccm, sizeof(*ccm));
	if (p == NULL || ocid_known == NULL || ccm == NULL || ack == NULL ||
	    acklen == NULL)
		return VEIL_ERR_INVAL;

	if ((ret = veil_ccm_parse(ccm, body, len)) != VEIL_OK)
		return ret;
	if (sodium_memcmp(ccm->secret, p->secret_hash, VEIL_KEY_BYTES) != 0) {
		if (!is_rekeyed_retransmission(p, ccm)) {
			ret = VEIL_ERR_SECRET;
			goto fail;
		}
	}
	if (ccm->seq < p->upd_recv_seq) {
		ret = VEIL_ERR_STALE;
		goto fail;
	}
	if (ccm->seq == p->upd_recv_seq) {
		if (sodium_memcmp(ccm->eph, p->upd_recv_eph, VEIL_KEY_BYTES) != 0) {
			ret = VEIL_ERR_REPLAY;
			goto fail;
		}
		/* Our ACK was lost: answer again with the same ACK. */
		if ((ret = build_ack(ccm->seq, p->upd_ack_eph, ack, acklen)) != VEIL_OK)
			goto fail;
		return 1;
	}
	if (!veil_id_equal(&ccm->ocid, ocid_known)) {
		ret = VEIL_ERR_STATE;
		goto fail;
	}
	if (crypto_box_keypair(e_pk, e_sk) != 0) {
		ret = VEIL_ERR_CRYPTO;
		goto fail;
	}
	/* A newer UPDATE means the peer got our last ACK and reads tx_next:
	 * derive from it, and switch to it once nothing can fail. */
	ret = rekey_root(root, p->tx_next.live ? p->tx_next.k.root : p->tx.k.root,
	    e_sk, ccm->eph, ccm->seq);
	sodium_memzero(e_sk, sizeof(e_sk));
	if (ret != VEIL_OK)
		goto fail;
	if ((ret = build_ack(ccm->seq, e_pk, ack, acklen)) != VEIL_OK) {
		sodium_memzero(root, sizeof(root));
		goto fail;
	}

	/*
	 * The new key waits in tx_next: the peer can read it only once our
	 * ACK reached it, and tells us so with UPDATE-DONE (or with its next
	 * UPDATE, already derived from tx_next: switch to it first).  Until
	 * then everything, this ACK too, goes under tx, which it reads.
	 */
	if (p->tx_next.live)
		switch_tx(p);
	sodium_memzero(&p->tx_next, sizeof(p->tx_next));
	veil_dirkey_from_root(&p->tx_next.k, root);
	p->tx_next.seq = 0;
	p->tx_next.live = 1;
	sodium_memzero(root, sizeof(root));
	if (ccm->has_new_secret)
		veil_pair_set_secret(p, ccm->new_secret);
	p->upd_recv_seq = ccm->seq;
	memcpy(p->upd_recv_eph, ccm->eph, VEIL_KEY_BYTES);
	memcpy(p->upd_ack_eph, e_pk, VEIL_KEY_BYTES);
	return VEIL_OK;
fail:
	sodium_memzero(ccm, sizeof(*ccm));
	return ret;
}

int
veil_update_on_ack(struct veil_pair *p, const char *body, size_t len)
{
	json_t *root;
	json_error_t err;
	const char *data, *eph64;
	json_int_t seq;
	uint8_t eph[VEIL_KEY_BYTES], nroot[VEIL_KEY_BYTES];
	int ret = VEIL_ERR_FORMAT;

	if (p == NULL)
		return VEIL_ERR_INVAL;
	if ((root = load_body(body, len)) == NULL)
		return VEIL_ERR_FORMAT;
	if (json_unpack_ex(root, &err, JSON_STRICT, "{s:s, s:I, s:s}",
	    "Data", &data, "Seq", &seq, "Eph", &eph64) != 0 ||
	    strcmp(data, ACK_DATA) != 0 || seq < 1 || unb64_key(eph, eph64) != 0)
		goto out;
	if (!p->upd_pending || (uint64_t)seq != p->upd_sent_seq) {
		ret = VEIL_ERR_STATE;
		goto out;
	}
	if ((ret = rekey_root(nroot, p->rx.k.root, p->upd_eph_sk, eph,
	    (uint64_t)seq)) != VEIL_OK)
		goto out;

	/* The old rx stays: the peer seals under it until our UPDATE-DONE. */
	sodium_memzero(&p->rx_prev, sizeof(p->rx_prev));
	p->rx_prev = p->rx;
	sodium_memzero(&p->rx, sizeof(p->rx));
	veil_dirkey_from_root(&p->rx.k, nroot);
	p->rx.live = 1;	/* zeroed window: nothing accepted yet */
	sodium_memzero(nroot, sizeof(nroot));
	if (p->upd_rekey_secret)
		veil_pair_set_secret(p, p->upd_new_secret);
	sodium_memzero(p->upd_eph_sk, sizeof(p->upd_eph_sk));
	sodium_memzero(p->upd_eph_pk, sizeof(p->upd_eph_pk));
	sodium_memzero(p->upd_new_secret, sizeof(p->upd_new_secret));
	p->upd_rekey_secret = 0;
	p->upd_pending = 0;
	ret = VEIL_OK;
out:
	json_decref(root);
	return ret;
}

int
veil_update_done_build(const struct veil_pair *p, char **body, size_t *len)
{
	if (body != NULL)
		*body = NULL;
	if (len != NULL)
		*len = 0;
	if (p == NULL || body == NULL || len == NULL)
		return VEIL_ERR_INVAL;
	/* Only an update that was acknowledged can be confirmed. */
	if (p->upd_sent_seq == 0 || p->upd_pending)
		return VEIL_ERR_STATE;
	return dump_body(json_pack("{s:s, s:I}", "Data", DONE_DATA,
	    "Seq", (json_int_t)p->upd_sent_seq), body, len);
}

int
veil_update_on_done(struct veil_pair *p, const char *body, size_t len)
{
	json_t *root;
	json_error_t err;
	const char *data;
	json_int_t seq;
	int ret = VEIL_ERR_FORMAT;

	if (p == NULL)
		return VEIL_ERR_INVAL;
	if ((root = load_body(body, len)) == NULL)
		return VEIL_ERR_FORMAT;
	if (json_unpack_ex(root, &err, JSON_STRICT, "{s:s, s:I}",
	    "Data", &data, "Seq", &seq) != 0 || strcmp(data, DONE_DATA) != 0 ||
	    seq < 1)
		goto out;
	if ((uint64_t)seq != p->upd_recv_seq) {
		ret = VEIL_ERR_STATE;
		goto out;
	}
	if (!p->tx_next.live) {
		ret = 1;	/* switched already: a copy */
		goto out;
	}
	switch_tx(p);
	ret = VEIL_OK;
out:
	json_decref(root);
	return ret;
}
