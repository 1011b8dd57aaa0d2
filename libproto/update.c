/* libveil update: the CCM JSON, UPDATE/UPDATE-ACK/UPDATE-DONE handling and the re-keying of one direction. */
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
#define REKEY_CTX "veil-rekey-v2"
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

/*
 * Wipes every string of a JSON tree before it is freed: CCMs carry SH
 * and NewSecret, which must not linger in freed heap memory.
 */
static void
wipe_tree(json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;

	if (json_is_string(v))
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
	else if (json_is_object(v)) {
		json_object_foreach(v, key, e)
			wipe_tree(e);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, e)
			wipe_tree(e);
	}
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

/* A JSON integer in lo..hi (jansson keeps them signed, 64 bits). */
static int
int_in(json_int_t v, uint64_t lo, uint64_t hi)
{
	return v >= 0 && (uint64_t)v >= lo && (uint64_t)v <= hi;
}

int
veil_ccm_parse(struct veil_ccm *ccm, const char *body, size_t len)
{
	json_t *root;
	json_error_t err;
	const char *data, *ocid, *pubkey, *cname, *newcid, *secret;
	const char *newsecret = NULL, *steg, *alg, *eph;
	json_int_t seq, epoch, rekey;
	int ret = VEIL_ERR_FORMAT;

	if (ccm == NULL)
		return VEIL_ERR_INVAL;
	sodium_memzero(ccm, sizeof(*ccm));
	if ((root = load_body(body, len)) == NULL)
		return VEIL_ERR_FORMAT;
	/* JSON_STRICT: a key not listed here makes the message not a CCM. */
	if (json_unpack_ex(root, &err, JSON_STRICT,
	    "{s:s, s:s, s:s, s:s, s:s, s:s, s?s, s:s, s:s, s:I, s:s, s:I, s:I}",
	    "Data", &data, "OCID", &ocid, "PubKey", &pubkey, "CName", &cname,
	    "NewCID", &newcid, "Secret", &secret, "NewSecret", &newsecret,
	    "StegKey", &steg, "Alg", &alg, "Seq", &seq, "Eph", &eph,
	    "Epoch", &epoch, "Rekey", &rekey) != 0)
		goto out;
	if (strcmp(data, CCM_DATA) != 0 || strcmp(steg, CCM_STEG) != 0 ||
	    strcmp(alg, VEIL_UPDATE_ALG) != 0 || seq < 1 ||
	    !int_in(epoch, 0, VEIL_EPOCH_MAX) ||
	    !int_in(rekey, VEIL_PERIOD_MIN, VEIL_PERIOD_MAX))
		goto out;
	if (unb64_key(ccm->ocid, ocid) != 0 ||
	    unb64_key(ccm->new_inbox.seed, newcid) != 0 ||
	    unb64_key(ccm->pubkey, pubkey) != 0 ||
	    unhex_key(ccm->secret, secret) != 0 ||
	    unb64_key(ccm->eph, eph) != 0)
		goto out;
	ccm->new_inbox.epoch = (uint32_t)epoch;
	ccm->new_inbox.period = (uint32_t)rekey;
	if (!veil_seed_valid(ccm->ocid) || !veil_inbox_valid(&ccm->new_inbox))
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
	/* The tree holds Secret and NewSecret: wipe its strings. */
	wipe_tree(root);
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
	wipe_tree(obj);
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
build_ack(uint64_t seq, const uint8_t eph[VEIL_KEY_BYTES], uint64_t period,
    char **ack, size_t *acklen)
{
	char eph64[KEY_B64_LEN + 1];

	if (period > (uint64_t)INT64_MAX)
		return VEIL_ERR_TOOBIG;
	b64_key(eph64, eph);
	return dump_body(json_pack("{s:s, s:I, s:s, s:I}", "Data", ACK_DATA,
	    "Seq", (json_int_t)seq, "Eph", eph64, "Period", (json_int_t)period),
	    ack, acklen);
}

/*
 * Everything that goes into an UPDATE is stored in the pair or given by
 * the caller, so a retransmission is the same bytes.
 */
static int
build_update(const struct veil_pair *p, const uint8_t my_pk[VEIL_KEY_BYTES],
    const char *my_name, const struct veil_inbox *next, uint64_t seq,
    const uint8_t eph[VEIL_KEY_BYTES], const uint8_t *new_secret, char **body,
    size_t *len)
{
	char ocid[KEY_B64_LEN + 1], ncid[KEY_B64_LEN + 1];
	char pk64[KEY_B64_LEN + 1], eph64[KEY_B64_LEN + 1], ns64[KEY_B64_LEN + 1];
	char sh[KEY_HEX_LEN + 1];
	json_t *obj;
	int ret;

	b64_key(ocid, p->my_inbox.seed);
	b64_key(ncid, next->seed);
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
	    json_object_set_new(obj, "Eph", json_string(eph64)) != 0 ||
	    json_object_set_new(obj, "Epoch",
	    json_integer((json_int_t)next->epoch)) != 0 ||
	    json_object_set_new(obj, "Rekey",
	    json_integer((json_int_t)next->period)) != 0)) {
		wipe_tree(obj);
		json_decref(obj);
		obj = NULL;
	}
	ret = dump_body(obj, body, len);
	sodium_memzero(sh, sizeof(sh));
	sodium_memzero(ns64, sizeof(ns64));
	sodium_memzero(ocid, sizeof(ocid));
	sodium_memzero(ncid, sizeof(ncid));
	return ret;
}

int
veil_update_build(struct veil_pair *p, const uint8_t my_pk[VEIL_KEY_BYTES],
    const char *my_name, const struct veil_inbox *new_inbox, int rekey_secret,
    char **body, size_t *len)
{
	uint8_t e_sk[VEIL_KEY_BYTES], e_pk[VEIL_KEY_BYTES], ns[VEIL_KEY_BYTES];
	uint64_t seq;
	int ret;

	if (body != NULL)
		*body = NULL;
	if (len != NULL)
		*len = 0;
	if (p == NULL || my_pk == NULL || my_name == NULL || body == NULL ||
	    len == NULL)
		return VEIL_ERR_INVAL;
	if ((ret = veil_name_valid(my_name)) != VEIL_OK)
		return ret;
	if (!veil_inbox_valid(&p->my_inbox))
		return VEIL_ERR_STATE;

	/* A pending update is rebuilt as it was. */
	if (p->upd_pending)
		return build_update(p, my_pk, my_name, &p->upd_new,
		    p->upd_sent_seq, p->upd_eph_pk,
		    p->upd_rekey_secret ? p->upd_new_secret : NULL, body, len);

	if (new_inbox == NULL || !veil_inbox_valid(new_inbox))
		return VEIL_ERR_INVAL;
	/* Seq travels as a JSON integer, which jansson keeps signed (64 bits). */
	if (p->upd_sent_seq >= (uint64_t)INT64_MAX)
		return VEIL_ERR_TOOBIG;
	seq = p->upd_sent_seq + 1;
	if (crypto_box_keypair(e_pk, e_sk) != 0)
		return VEIL_ERR_CRYPTO;
	if (rekey_secret)
		randombytes_buf(ns, sizeof(ns));
	ret = build_update(p, my_pk, my_name, new_inbox, seq, e_pk,
	    rekey_secret ? ns : NULL, body, len);
	if (ret == VEIL_OK) {
		p->upd_sent_seq = seq;
		p->upd_pending = 1;
		memcpy(p->upd_eph_sk, e_sk, VEIL_KEY_BYTES);
		memcpy(p->upd_eph_pk, e_pk, VEIL_KEY_BYTES);
		p->upd_new = *new_inbox;
		p->upd_rekey_secret = rekey_secret ? 1 : 0;
		if (rekey_secret)
			memcpy(p->upd_new_secret, ns, VEIL_KEY_BYTES);
	}
	sodium_memzero(e_sk, sizeof(e_sk));
	sodium_memzero(ns, sizeof(ns));
	return ret;
}

/*
 * D' = H_B("veil-rekey-v2" || DH(sk, peer) || u64(seq)), B the binding key
 * of the chain being replaced (chain.h): the new root depends on that
 * chain and on the fresh ephemerals, and B, unlike a period's root, is
 * still there on both sides however late the ACK arrives.
 */
static int
rekey_root(uint8_t out[VEIL_KEY_BYTES], const uint8_t bind[VEIL_KEY_BYTES],
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
	crypto_generichash_init(&st, bind, VEIL_KEY_BYTES, VEIL_KEY_BYTES);
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

/* tx_next becomes tx; the old transmit chain is wiped. */
static void
switch_tx(struct veil_pair *p)
{
	veil_txchain_wipe(&p->tx);
	p->tx = p->tx_next;
	veil_txchain_wipe(&p->tx_next);
}

int
veil_update_on_update(struct veil_pair *p, const char *peer_name, uint64_t now,
    const char *body, size_t len, struct veil_ccm *ccm, char **ack, size_t *acklen)
{
	uint8_t e_sk[VEIL_KEY_BYTES], e_pk[VEIL_KEY_BYTES], root[VEIL_KEY_BYTES];
	struct veil_txchain next;
	uint64_t period;
	int ret;

	if (ack != NULL)
		*ack = NULL;
	if (acklen != NULL)
		*acklen = 0;
	if (ccm != NULL)
		sodium_memzero(ccm, sizeof(*ccm));
	if (p == NULL || ccm == NULL || ack == NULL || acklen == NULL)
		return VEIL_ERR_INVAL;
	if (!p->tx.live)
		return VEIL_ERR_STATE;

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
		if ((ret = build_ack(ccm->seq, p->upd_ack_eph, p->upd_ack_period,
		    ack, acklen)) != VEIL_OK)
			goto fail;
		return 1;
	}
	if (sodium_memcmp(ccm->pubkey, p->peer_pk, VEIL_KEY_BYTES) != 0 ||
	    sodium_memcmp(ccm->ocid, p->peer_inbox.seed, VEIL_SEED_BYTES) != 0) {
		ret = VEIL_ERR_STATE;
		goto fail;
	}
	if (crypto_box_keypair(e_pk, e_sk) != 0) {
		ret = VEIL_ERR_CRYPTO;
		goto fail;
	}
	/* A newer UPDATE means the peer got our last ACK and reads tx_next:
	 * derive from it, and switch to it once nothing can fail. */
	ret = rekey_root(root, p->tx_next.live ? p->tx_next.bind : p->tx.bind,
	    e_sk, ccm->eph, ccm->seq);
	sodium_memzero(e_sk, sizeof(e_sk));
	if (ret != VEIL_OK)
		goto fail;
	period = veil_period_of(now, ccm->new_inbox.period);
	ret = veil_txchain_init(&next, root, p->tx.k.dir, ccm->new_inbox.period,
	    period);
	sodium_memzero(root, sizeof(root));
	if (ret != VEIL_OK)
		goto fail;
	if ((ret = build_ack(ccm->seq, e_pk, period, ack, acklen)) != VEIL_OK) {
		veil_txchain_wipe(&next);
		goto fail;
	}

	/*
	 * The new chain waits in tx_next: the peer can read it only once our
	 * ACK reached it, and tells us so with UPDATE-DONE (or with its next
	 * UPDATE, already derived from tx_next: switch to it first).  Until
	 * then everything, this ACK too, goes under tx, which it reads.
	 */
	if (p->tx_next.live)
		switch_tx(p);
	p->tx_next = next;
	veil_txchain_wipe(&next);
	if (ccm->has_new_secret)
		veil_pair_set_secret(p, ccm->new_secret);
	p->peer_inbox = ccm->new_inbox;
	p->upd_recv_seq = ccm->seq;
	memcpy(p->upd_recv_eph, ccm->eph, VEIL_KEY_BYTES);
	memcpy(p->upd_ack_eph, e_pk, VEIL_KEY_BYTES);
	p->upd_ack_period = period;
	if (peer_name != NULL)
		ccm->name_changed = strcmp(peer_name, ccm->cname) != 0;
	return VEIL_OK;
fail:
	sodium_memzero(ccm, sizeof(*ccm));
	return ret;
}

int
veil_update_on_ack(struct veil_pair *p, const struct veil_clock *clk,
    const char *body, size_t len)
{
	json_t *root;
	json_error_t err;
	const char *data, *eph64;
	json_int_t seq, period;
	uint8_t eph[VEIL_KEY_BYTES], nroot[VEIL_KEY_BYTES];
	struct veil_rxchain rx;
	int ret = VEIL_ERR_FORMAT;

	if (p == NULL || clk == NULL)
		return VEIL_ERR_INVAL;
	if ((root = load_body(body, len)) == NULL)
		return VEIL_ERR_FORMAT;
	memset(&rx, 0, sizeof(rx));
	if (json_unpack_ex(root, &err, JSON_STRICT, "{s:s, s:I, s:s, s:I}",
	    "Data", &data, "Seq", &seq, "Eph", &eph64, "Period", &period) != 0 ||
	    strcmp(data, ACK_DATA) != 0 || seq < 1 || period < 0 ||
	    unb64_key(eph, eph64) != 0)
		goto out;
	if (!p->upd_pending || (uint64_t)seq != p->upd_sent_seq || !p->rx.live) {
		ret = VEIL_ERR_STATE;
		goto out;
	}
	if ((uint64_t)period > UINT64_MAX / p->upd_new.period)
		goto out;	/* FORMAT: no such period */
	if ((ret = rekey_root(nroot, p->rx.bind, p->upd_eph_sk, eph,
	    (uint64_t)seq)) != VEIL_OK)
		goto out;
	ret = veil_rxchain_init(&rx, nroot, p->rx.dir, p->upd_new.period,
	    (uint64_t)period);
	sodium_memzero(nroot, sizeof(nroot));
	if (ret != VEIL_OK)
		goto out;
	/* Beyond the ratchet bound the chain stays behind, consistent, and
	 * veil_pair_advance() finishes the move: refusing would refuse every
	 * copy of this ACK too, and the update could never complete. */
	if ((ret = veil_rxchain_advance(&rx, clk, NULL, 0, 0)) < 0 &&
	    ret != VEIL_ERR_RATCHET)
		goto out;

	/* The old rx stays: the peer seals under it until our UPDATE-DONE. */
	veil_rxchain_wipe(&p->rx_prev);
	p->rx_prev = p->rx;
	p->rx = rx;
	p->my_inbox = p->upd_new;
	if (p->upd_rekey_secret)
		veil_pair_set_secret(p, p->upd_new_secret);
	sodium_memzero(p->upd_eph_sk, sizeof(p->upd_eph_sk));
	sodium_memzero(p->upd_eph_pk, sizeof(p->upd_eph_pk));
	sodium_memzero(p->upd_new_secret, sizeof(p->upd_new_secret));
	sodium_memzero(&p->upd_new, sizeof(p->upd_new));
	p->upd_rekey_secret = 0;
	p->upd_pending = 0;
	ret = VEIL_OK;
out:
	veil_rxchain_wipe(&rx);
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
