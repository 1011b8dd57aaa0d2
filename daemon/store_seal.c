/* store_seal.c: encryption at rest — the data key, sealing and opening of the secret columns, the migration of a plaintext database, and the vault's rows. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "store_int.h"

#define SEAL_VERSION	1
#define NONCE_BYTES	crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES	crypto_aead_xchacha20poly1305_ietf_ABYTES
#define AD_PREFIX	"veil-at-rest-v1"
/* What the key check value holds: a known plaintext under the data key. */
#define KEY_CHECK	"veil data key check"

_Static_assert(ST_SEAL_OVERHEAD == 1 + NONCE_BYTES + TAG_BYTES, "overhead");
_Static_assert(STORE_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
    "data key size");
_Static_assert(STORE_SALT_BYTES == crypto_pwhash_SALTBYTES, "salt size");

/* "table.column", the name bound into each value's associated data. */
static const char *const secret_name[SEC_COUNT] = {
	[SEC_IDENTITY_SK] = "meta.identity_sk",
	[SEC_SHARED_SEED] = "meta.shared_seed",
	[SEC_KEY_CHECK] = "meta.key_check",
	[SEC_PAIR] = "contact.pair",
	[SEC_AGREE] = "contact.agree",
	[SEC_SEED_PREV] = "contact.seed_prev",
	[SEC_ACCEPT_FRAMES] = "contact.accept_frames",
	[SEC_RESET] = "contact.reset",
	[SEC_RESET_ACK] = "contact.reset_ack",
	[SEC_OUTBOX_BODY] = "outbox.body",
	[SEC_RX_BODY] = "rx.body",
};

void
st_rowkey_id(struct st_rowkey *rk, int64_t id)
{
	uint64_t u = (uint64_t)id;

	for (int i = 7; i >= 0; i--) {
		rk->b[i] = (uint8_t)u;
		u >>= 8;
	}
	rk->len = 8;
}

void
st_rowkey_msg(struct st_rowkey *rk, int64_t contact_id,
    const uint8_t msgid[STORE_MSGID_BYTES])
{
	st_rowkey_id(rk, contact_id);
	memcpy(rk->b + 8, msgid, STORE_MSGID_BYTES);
	rk->len = 8 + STORE_MSGID_BYTES;
}

/* AD = "veil-at-rest-v1" 0 "table.column" 0 rowkey */
static size_t
seal_ad(uint8_t *ad, enum st_secret col, const struct st_rowkey *rk)
{
	size_t n = 0, l;

	memcpy(ad, AD_PREFIX, sizeof(AD_PREFIX));	/* with its NUL */
	n = sizeof(AD_PREFIX);
	l = strlen(secret_name[col]) + 1;
	memcpy(ad + n, secret_name[col], l);
	n += l;
	memcpy(ad + n, rk->b, rk->len);
	return n + rk->len;
}
#define AD_MAX	(sizeof(AD_PREFIX) + 32 + ST_ROWKEY_MAX)

static int
locked(struct store *s)
{
	if (s->key != NULL)
		return 0;
	st_seterr(s, "the store is locked (no data key)");
	return 1;
}

/* out: len + ST_SEAL_OVERHEAD bytes. */
static void
seal(struct store *s, enum st_secret col, const struct st_rowkey *rk,
    const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t ad[AD_MAX];
	size_t adlen = seal_ad(ad, col, rk);

	out[0] = SEAL_VERSION;
	randombytes_buf(out + 1, NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + NONCE_BYTES, NULL,
	    in, len, ad, adlen, NULL, out + 1, s->key);
}

/* out: inlen - ST_SEAL_OVERHEAD bytes.  -1 when it does not open. */
static int
unseal(struct store *s, enum st_secret col, const struct st_rowkey *rk,
    const uint8_t *in, size_t inlen, uint8_t *out)
{
	uint8_t ad[AD_MAX];
	size_t adlen = seal_ad(ad, col, rk);

	if (inlen < ST_SEAL_OVERHEAD || in[0] != SEAL_VERSION ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL,
	    in + 1 + NONCE_BYTES, inlen - 1 - NONCE_BYTES, ad, adlen, in + 1,
	    s->key) != 0) {
		st_seterr(s, "a sealed %s value does not open: damaged, or "
		    "moved from another row", secret_name[col]);
		return -1;
	}
	return 0;
}

int
st_bind_sealed(struct store *s, sqlite3_stmt *q, int i, enum st_secret col,
    const struct st_rowkey *rk, const void *v, size_t len, int always)
{
	uint8_t *out;

	if (len == 0 && !always)
		return sqlite3_bind_null(q, i);
	if (locked(s))
		return SQLITE_MISUSE;
	if (len > INT32_MAX - ST_SEAL_OVERHEAD ||
	    (out = malloc(len + ST_SEAL_OVERHEAD)) == NULL)
		return SQLITE_NOMEM;
	seal(s, col, rk, v, len, out);
	/* sqlite frees it once the binding is done with (on failure too). */
	return sqlite3_bind_blob64(q, i, out, len + ST_SEAL_OVERHEAD, free);
}

int
st_col_sealed(struct store *s, sqlite3_stmt *q, int i, enum st_secret col,
    const struct st_rowkey *rk, uint8_t *out, size_t outcap, size_t *len,
    int exact)
{
	const uint8_t *b;
	int n;

	if (len != NULL)
		*len = 0;
	if (sqlite3_column_type(q, i) == SQLITE_NULL)
		return 0;
	if (locked(s))
		return -1;
	b = sqlite3_column_blob(q, i);
	n = sqlite3_column_bytes(q, i);
	if (b == NULL || n < ST_SEAL_OVERHEAD ||
	    (size_t)n - ST_SEAL_OVERHEAD > outcap ||
	    (exact && (size_t)n - ST_SEAL_OVERHEAD != outcap)) {
		st_seterr(s, "corrupt sealed %s value", secret_name[col]);
		return -1;
	}
	if (unseal(s, col, rk, b, (size_t)n, out) == -1)
		return -1;
	if (len != NULL)
		*len = (size_t)n - ST_SEAL_OVERHEAD;
	return 0;
}

int
st_col_sealed_ref(struct store *s, sqlite3_stmt *q, int i, enum st_secret col,
    const struct st_rowkey *rk, enum st_buf bi, const uint8_t **out,
    size_t *len)
{
	const uint8_t *b;
	uint8_t *nb;
	size_t need;
	int n;

	*out = NULL;
	*len = 0;
	if (sqlite3_column_type(q, i) == SQLITE_NULL)
		return 0;
	if (locked(s))
		return -1;
	b = sqlite3_column_blob(q, i);
	n = sqlite3_column_bytes(q, i);
	if (b == NULL || n < ST_SEAL_OVERHEAD) {
		st_seterr(s, "corrupt sealed %s value", secret_name[col]);
		return -1;
	}
	need = (size_t)n - ST_SEAL_OVERHEAD;
	if (need + 1 > s->bufcap[bi]) {
		/* The old one held a message: wiped before it goes. */
		if ((nb = malloc(need + 1)) == NULL) {
			st_seterr(s, "out of memory");
			return -1;
		}
		if (s->buf[bi] != NULL) {
			sodium_memzero(s->buf[bi], s->bufcap[bi]);
			free(s->buf[bi]);
		}
		s->buf[bi] = nb;
		s->bufcap[bi] = need + 1;
	}
	if (unseal(s, col, rk, b, (size_t)n, s->buf[bi]) == -1)
		return -1;
	*out = s->buf[bi];
	*len = need;
	return 0;
}

void
st_seal_free(struct store *s)
{
	for (int i = 0; i < SB_COUNT; i++) {
		if (s->buf[i] != NULL) {
			sodium_memzero(s->buf[i], s->bufcap[i]);
			free(s->buf[i]);
		}
		s->buf[i] = NULL;
		s->bufcap[i] = 0;
	}
	if (s->key != NULL)
		sodium_free(s->key);	/* zeroes it */
	s->key = NULL;
}

/* ---- the data key ----------------------------------------------------- */

int
store_sealed(struct store *s)
{
	sqlite3_stmt *q;
	int rc;

	if ((q = st_stmt(s, ST_KEYCHECK_GET)) == NULL)
		return -1;
	if ((rc = st_one_row(s, q)) != 1) {
		if (rc == 0)
			st_seterr(s, "the meta row is missing");
		return -1;
	}
	rc = sqlite3_column_type(q, 0) != SQLITE_NULL;
	st_done(q);
	return rc;
}

int
store_has_key(struct store *s)
{
	return s->key != NULL;
}

int
store_set_key(struct store *s, const uint8_t key[STORE_KEY_BYTES])
{
	uint8_t check[sizeof(KEY_CHECK) - 1];
	struct st_rowkey rk;
	sqlite3_stmt *q;
	int rc;

	if (s->key == NULL &&
	    (s->key = sodium_malloc(STORE_KEY_BYTES)) == NULL) {
		st_seterr(s, "out of memory (guarded key memory)");
		return -1;
	}
	sodium_mprotect_readwrite(s->key);
	memcpy(s->key, key, STORE_KEY_BYTES);
	sodium_mprotect_readonly(s->key);
	if ((q = st_stmt(s, ST_KEYCHECK_GET)) == NULL)
		goto fail;
	if ((rc = st_one_row(s, q)) != 1) {
		if (rc == 0)
			st_seterr(s, "the meta row is missing");
		goto fail;
	}
	st_rowkey_id(&rk, 1);
	if (sqlite3_column_type(q, 0) == SQLITE_NULL) {	/* not sealed yet */
		st_done(q);
		return 0;
	}
	rc = st_col_sealed(s, q, 0, SEC_KEY_CHECK, &rk, check, sizeof(check),
	    NULL, 1);
	st_done(q);
	if (rc == -1 || sodium_memcmp(check, KEY_CHECK, sizeof(check)) != 0) {
		st_seterr(s, "wrong data key: it does not open this database");
		goto fail;
	}
	return 0;
fail:
	sodium_free(s->key);
	s->key = NULL;
	return -1;
}

/* ---- the migration of a plaintext database ---------------------------- */

struct reseal {
	const char	*select;	/* ?1 = last id; id, then the columns */
	const char	*update;	/* ?1 = id, ?2.. = the sealed columns */
	enum st_secret	 cols[6];
	int		 ncols;
	int		 rowkey;	/* 0: id; 1: contact_id (col 2) || msgid (col 3) */
};

/*
 * Each table walked one row at a time by id (a SELECT is never stepped
 * while its table changes under it), every secret read in the clear and
 * written back sealed.
 */
static const struct reseal reseals[] = {
	{ "SELECT id, identity_sk, shared_seed FROM meta WHERE id > ?1 "
	    "ORDER BY id LIMIT 1",
	  "UPDATE meta SET identity_sk = ?2, shared_seed = ?3 WHERE id = ?1",
	  { SEC_IDENTITY_SK, SEC_SHARED_SEED }, 2, 0 },
	{ "SELECT id, pair, agree, seed_prev, accept_frames, reset, reset_ack "
	    "FROM contact WHERE id > ?1 ORDER BY id LIMIT 1",
	  "UPDATE contact SET pair = ?2, agree = ?3, seed_prev = ?4, "
	    "accept_frames = ?5, reset = ?6, reset_ack = ?7 WHERE id = ?1",
	  { SEC_PAIR, SEC_AGREE, SEC_SEED_PREV, SEC_ACCEPT_FRAMES, SEC_RESET,
	    SEC_RESET_ACK }, 6, 0 },
	{ "SELECT id, body, contact_id, msgid FROM outbox WHERE id > ?1 "
	    "ORDER BY id LIMIT 1",
	  "UPDATE outbox SET body = ?2 WHERE id = ?1",
	  { SEC_OUTBOX_BODY }, 1, 1 },
	{ "SELECT id, body, contact_id, msgid FROM rx WHERE id > ?1 "
	    "ORDER BY id LIMIT 1",
	  "UPDATE rx SET body = ?2 WHERE id = ?1",
	  { SEC_RX_BODY }, 1, 1 },
};

static int64_t
reseal_table(struct store *s, const struct reseal *t)
{
	sqlite3_stmt *q = NULL, *u = NULL;
	struct st_rowkey rk;
	int64_t id = 0, n = 0;
	const void *v;
	int rc, len;

	if (sqlite3_prepare_v2(s->db, t->select, -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, t->update, -1, &u, NULL) != SQLITE_OK) {
		st_dberr(s);
		goto fail;
	}
	for (;;) {
		if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK) {
			st_dberr(s);
			goto fail;
		}
		if ((rc = sqlite3_step(q)) == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			st_dberr(s);
			goto fail;
		}
		id = sqlite3_column_int64(q, 0);
		if (t->rowkey == 0)
			st_rowkey_id(&rk, id);
		else {
			if (sqlite3_column_bytes(q, 3) != STORE_MSGID_BYTES ||
			    sqlite3_column_blob(q, 3) == NULL) {
				st_seterr(s, "corrupt msgid in row %" PRId64, id);
				goto fail;
			}
			st_rowkey_msg(&rk, sqlite3_column_int64(q, 2),
			    sqlite3_column_blob(q, 3));
		}
		if (sqlite3_bind_int64(u, 1, id) != SQLITE_OK) {
			st_dberr(s);
			goto fail;
		}
		for (int c = 0; c < t->ncols; c++) {
			/* NULL stays NULL; an empty body of a NOT NULL
			 * column is sealed like any other. */
			if (sqlite3_column_type(q, 1 + c) == SQLITE_NULL) {
				rc = sqlite3_bind_null(u, 2 + c);
			} else {
				v = sqlite3_column_blob(q, 1 + c);
				len = sqlite3_column_bytes(q, 1 + c);
				rc = st_bind_sealed(s, u, 2 + c, t->cols[c], &rk,
				    v, (size_t)len, 1);
				n++;
			}
			if (rc != SQLITE_OK) {
				if (s->err[0] == '\0')
					st_dberr(s);
				goto fail;
			}
		}
		sqlite3_reset(q);
		if (sqlite3_step(u) != SQLITE_DONE) {
			st_dberr(s);
			goto fail;
		}
		sqlite3_reset(u);
		sqlite3_clear_bindings(u);
	}
	sqlite3_finalize(q);
	sqlite3_finalize(u);
	return n;
fail:
	sqlite3_finalize(q);
	sqlite3_finalize(u);
	return -1;
}

int64_t
store_seal_all(struct store *s)
{
	sqlite3_stmt *q;
	struct st_rowkey rk;
	int64_t n = 0, k;
	int rc;

	s->err[0] = '\0';
	if (locked(s))
		return -1;
	if (sqlite3_get_autocommit(s->db)) {
		st_seterr(s, "store_seal_all needs an open transaction");
		return -1;
	}
	if ((rc = store_sealed(s)) != 0) {
		if (rc == 1)
			st_seterr(s, "the database is sealed already");
		return -1;
	}
	for (size_t i = 0; i < sizeof(reseals) / sizeof(reseals[0]); i++) {
		if ((k = reseal_table(s, &reseals[i])) < 0)
			return -1;
		n += k;
	}
	if (sqlite3_prepare_v2(s->db, "UPDATE meta SET key_check = ?1 "
	    "WHERE id = 1", -1, &q, NULL) != SQLITE_OK)
		return st_dberr(s);
	st_rowkey_id(&rk, 1);
	if (st_bind_sealed(s, q, 1, SEC_KEY_CHECK, &rk, KEY_CHECK,
	    sizeof(KEY_CHECK) - 1, 1) != SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_DONE || sqlite3_changes(s->db) != 1) {
		st_dberr(s);
		sqlite3_finalize(q);
		return -1;
	}
	sqlite3_finalize(q);
	return n;
}

int
store_vacuum(struct store *s)
{
	int64_t fl = -1;
	sqlite3_stmt *q;

	if (!sqlite3_get_autocommit(s->db)) {
		st_seterr(s, "VACUUM inside a transaction");
		return -1;
	}
	/* VACUUM writes the whole database anew (through the WAL), so the
	 * plaintext pages of the old file are gone once the checkpoint
	 * copied it back; secure_delete had zeroed freed cells already. */
	if (st_exec(s, "VACUUM") == -1 ||
	    st_exec(s, "PRAGMA wal_checkpoint(TRUNCATE)") == -1)
		return -1;
	if (sqlite3_prepare_v2(s->db, "PRAGMA freelist_count", -1, &q,
	    NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		fl = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	if (fl != 0) {
		st_seterr(s, "free pages left after VACUUM (%" PRId64 ")", fl);
		return -1;
	}
	s->checkpointed = sqlite3_total_changes(s->db);
	return 0;
}

/* ---- the vault's rows ------------------------------------------------- */

static int
wrap_row(struct store *s, sqlite3_stmt *q, struct store_wrap *w)
{
	memset(w, 0, sizeof(*w));
	w->kind = st_col_int(q, 0);
	w->opslimit = (uint64_t)sqlite3_column_int64(q, 3);
	w->memlimit = (uint64_t)sqlite3_column_int64(q, 4);
	w->created = sqlite3_column_int64(q, 6);
	return st_col_blob(s, q, 1, w->key_id, sizeof(w->key_id), NULL, 1) ||
	    st_col_blob(s, q, 2, w->salt, sizeof(w->salt), NULL, 1) ||
	    st_col_blob(s, q, 5, w->wrapped, sizeof(w->wrapped), NULL, 1) ?
	    -1 : 0;
}

int
store_wrap_list(struct store *s, store_wrap_cb cb, void *arg)
{
	struct store_wrap w;
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((q = st_stmt(s, ST_W_LIST)) == NULL)
		return -1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (wrap_row(s, q, &w) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&w, arg) != 0)
			break;
	}
	sodium_memzero(&w, sizeof(w));
	return st_rows_end(s, q, rc, n);
}

int
store_wrap_put(struct store *s, const struct store_wrap *w)
{
	sqlite3_stmt *q;

	if ((w->kind != STORE_WRAP_PASSPHRASE && w->kind != STORE_WRAP_KEY) ||
	    w->opslimit > INT64_MAX || w->memlimit > INT64_MAX) {
		st_seterr(s, "bad vault row");
		return -1;
	}
	if ((q = st_stmt(s, ST_W_PUT)) == NULL)
		return -1;
	if (sqlite3_bind_int(q, 1, w->kind) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, w->key_id, sizeof(w->key_id),
	    SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 3, w->salt, sizeof(w->salt), SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_int64(q, 4, (int64_t)w->opslimit) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 5, (int64_t)w->memlimit) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 6, w->wrapped, sizeof(w->wrapped),
	    SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 7, w->created) != SQLITE_OK)
		return st_bind_fail(s, q);
	return st_change(s, q) < 0 ? -1 : 0;
}

int
store_wrap_prune(struct store *s, int (*keep)(const struct store_wrap *, void *),
    void *arg)
{
	struct store_wrap w[8];
	sqlite3_stmt *q;
	int rc, ok = 0, nw = 0, del = 0;

	/* Collected first: the list is not stepped while rows go. */
	if ((q = st_stmt(s, ST_W_LIST)) == NULL)
		return -1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW && nw < 8)
		if (wrap_row(s, q, &w[nw++]) == -1) {
			st_done(q);
			return -1;
		}
	if (st_rows_end(s, q, rc == SQLITE_ROW ? SQLITE_DONE : rc, 0) == -1)
		return -1;
	for (int i = 0; i < nw; i++) {
		if (keep(&w[i], arg))
			continue;
		if ((q = st_stmt(s, ST_W_DEL)) == NULL)
			goto out;
		if (sqlite3_bind_int(q, 1, w[i].kind) != SQLITE_OK ||
		    sqlite3_bind_blob(q, 2, w[i].key_id, sizeof(w[i].key_id),
		    SQLITE_STATIC) != SQLITE_OK) {
			st_bind_fail(s, q);
			goto out;
		}
		if ((rc = st_change(s, q)) < 0)
			goto out;
		del += rc;
	}
	ok = 1;
out:
	sodium_memzero(w, sizeof(w));
	return ok ? del : -1;
}
