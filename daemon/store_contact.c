/* store_contact.c: the daemon's meta row and identity, processed requests, contacts and card inboxes. */
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* ---- meta: the daemon's own state, one typed row --------------------- */

int
store_meta_get(struct store *s, struct store_meta *m)
{
	sqlite3_stmt *q;
	int rc;

	memset(m, 0, sizeof(*m));
	m->client_epoch = -1;
	if ((q = st_stmt(s, ST_META_GET)) == NULL)
		return -1;
	if ((rc = st_one_row(s, q)) != 1) {
		if (rc == 0)
			st_seterr(s, "the meta row is missing");
		return -1;
	}
	size_t n = 0;
	struct st_rowkey rk;

	st_rowkey_id(&rk, 1);
	m->client_epoch = sqlite3_column_int64(q, 2);
	m->wire = st_col_int(q, 5);
	m->card_shown = st_col_int(q, 6) != 0;
	rc = st_col_text(s, q, 0, m->card_cid, sizeof(m->card_cid)) == -1 ||
	    st_col_text(s, q, 1, m->client_id, sizeof(m->client_id)) == -1 ||
	    st_col_text(s, q, 3, m->card_client_id, sizeof(m->card_client_id)) == -1 ||
	    st_col_sealed(s, q, 4, SEC_SHARED_SEED, &rk, m->shared_seed,
	    sizeof(m->shared_seed), &n, 0) == -1;
	st_done(q);
	if (!rc && n != 0 && n != sizeof(m->shared_seed)) {
		st_seterr(s, "corrupt shared seed");
		rc = 1;
	}
	m->has_shared_seed = n == sizeof(m->shared_seed);
	if (rc)
		sodium_memzero(m, sizeof(*m));
	return rc ? -1 : 1;
}

static int
meta_run(struct store *s, sqlite3_stmt *q)
{
	int rc = st_change(s, q);

	if (rc == 0)
		st_seterr(s, "the meta row is missing");
	return rc == 1 ? 0 : -1;
}

int
store_meta_set_text(struct store *s, enum store_meta_field f, const char *v)
{
	sqlite3_stmt *q;

	if ((f != STORE_META_CARD_CID && f != STORE_META_CLIENT_ID &&
	    f != STORE_META_CARD_CLIENT_ID) || v == NULL ||
	    strnlen(v, STORE_TOPIC_MAX + 1) > STORE_TOPIC_MAX) {
		st_seterr(s, "bad meta field or value");
		return -1;
	}
	q = s->meta[f];
	if (st_bind_text(q, 1, v) != SQLITE_OK)
		return st_bind_fail(s, q);
	return meta_run(s, q);
}

int
store_meta_set_int(struct store *s, enum store_meta_field f, int64_t v)
{
	sqlite3_stmt *q;

	if (f != STORE_META_CLIENT_EPOCH && f != STORE_META_WIRE &&
	    f != STORE_META_CARD_SHOWN) {
		st_seterr(s, "bad meta field");
		return -1;
	}
	q = s->meta[f];
	if (sqlite3_bind_int64(q, 1, v) != SQLITE_OK)
		return st_bind_fail(s, q);
	return meta_run(s, q);
}

int
store_meta_set_blob(struct store *s, enum store_meta_field f, const uint8_t *v,
    size_t len)
{
	sqlite3_stmt *q;
	struct st_rowkey rk;

	if (f != STORE_META_SHARED_SEED || (len != 0 && len != STORE_SEED_BYTES)) {
		st_seterr(s, "bad meta field or value");
		return -1;
	}
	q = s->meta[f];
	st_rowkey_id(&rk, 1);
	if (st_bind_sealed(s, q, 1, SEC_SHARED_SEED, &rk, v, len, 0) != SQLITE_OK)
		return st_bind_fail(s, q);
	return meta_run(s, q);
}

int
store_identity_get(struct store *s, uint8_t pk[STORE_PK_BYTES],
    uint8_t sk[STORE_PK_BYTES])
{
	sqlite3_stmt *q;
	struct st_rowkey rk;
	int rc;

	if ((q = st_stmt(s, ST_ID_GET)) == NULL)
		return -1;
	if ((rc = st_one_row(s, q)) != 1) {
		if (rc == 0)
			st_seterr(s, "the meta row is missing");
		return -1;
	}
	if (sqlite3_column_type(q, 0) == SQLITE_NULL &&
	    sqlite3_column_type(q, 1) == SQLITE_NULL) {
		st_done(q);
		return 0;
	}
	st_rowkey_id(&rk, 1);
	if (sqlite3_column_type(q, 1) == SQLITE_NULL) {
		st_seterr(s, "identity secret key missing");
		rc = 1;
	} else
		rc = st_col_blob(s, q, 0, pk, STORE_PK_BYTES, NULL, 1) == -1 ||
		    st_col_sealed(s, q, 1, SEC_IDENTITY_SK, &rk, sk,
		    STORE_PK_BYTES, NULL, 1) == -1;
	st_done(q);
	if (rc) {
		sodium_memzero(sk, STORE_PK_BYTES);
		return -1;
	}
	return 1;
}

int
store_identity_set(struct store *s, const uint8_t pk[STORE_PK_BYTES],
    const uint8_t sk[STORE_PK_BYTES])
{
	sqlite3_stmt *q;
	struct st_rowkey rk;

	if ((q = st_stmt(s, ST_ID_SET)) == NULL)
		return -1;
	st_rowkey_id(&rk, 1);
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    st_bind_sealed(s, q, 2, SEC_IDENTITY_SK, &rk, sk, STORE_PK_BYTES,
	    1) != SQLITE_OK)
		return st_bind_fail(s, q);
	return meta_run(s, q);
}

int
store_request_seen_add(struct store *s, const uint8_t t1[STORE_PK_BYTES],
    int64_t contact_id, int64_t now)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_SEEN_ADD)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, t1, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    (contact_id > 0 ? sqlite3_bind_int64(q, 2, contact_id) :
	    sqlite3_bind_null(q, 2)) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 3, now) != SQLITE_OK)
		return st_bind_fail(s, q);
	return st_change(s, q) < 0 ? -1 : 0;
}

int
store_request_seen_get(struct store *s, const uint8_t t1[STORE_PK_BYTES],
    int64_t *contact_id)
{
	sqlite3_stmt *q;
	int rc;

	if ((q = st_stmt(s, ST_SEEN_GET)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, t1, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	*contact_id = sqlite3_column_int64(q, 0);	/* NULL reads as 0 */
	st_done(q);
	return 1;
}

int64_t
store_request_seen_prune(struct store *s, int64_t older_than)
{
	int rc = st_change_i64(s, ST_SEEN_PRUNE, older_than);

	return rc < 0 ? -1 : rc;
}

/* ---- contacts -------------------------------------------------------- */

static int
contact_ok(struct store *s, const struct store_contact *c)
{
	size_t n;

	n = strnlen(c->name, sizeof(c->name));
	if (n == 0 || n == sizeof(c->name)) {
		st_seterr(s, "bad contact name");
		return 0;
	}
	if (strnlen(c->peer_name, sizeof(c->peer_name)) ==
	    sizeof(c->peer_name) ||
	    strnlen(c->peer_inbox, sizeof(c->peer_inbox)) ==
	    sizeof(c->peer_inbox)) {
		st_seterr(s, "unterminated contact field");
		return 0;
	}
	if (c->pair_len > sizeof(c->pair) || c->agree_len > sizeof(c->agree)) {
		st_seterr(s, "contact blob too large");
		return 0;
	}
	return 1;
}

/* Parameters ?1..?19 in CONTACT_COLS order, ?1 = id; the secrets sealed
 * under id (with_id 0: an INSERT, created bound too). */
static int
contact_bind(struct store *s, sqlite3_stmt *q, const struct store_contact *c,
    int64_t id, int with_id)
{
	struct st_rowkey rk;

	st_rowkey_id(&rk, id);
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    st_bind_text(q, 2, c->name) != SQLITE_OK ||
	    sqlite3_bind_int(q, 3, c->state) != SQLITE_OK ||
	    st_bind_text(q, 4, c->peer_name) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 5, c->peer_pk, sizeof(c->peer_pk),
	    SQLITE_STATIC) != SQLITE_OK ||
	    st_bind_text(q, 6, c->peer_inbox) != SQLITE_OK ||
	    st_bind_sealed(s, q, 7, SEC_PAIR, &rk, c->pair, c->pair_len, 0) !=
	    SQLITE_OK ||
	    st_bind_sealed(s, q, 8, SEC_AGREE, &rk, c->agree, c->agree_len, 0) !=
	    SQLITE_OK ||
	    sqlite3_bind_int(q, 9, c->verified) != SQLITE_OK ||
	    (!with_id && sqlite3_bind_int64(q, 10, c->created) != SQLITE_OK) ||
	    sqlite3_bind_int64(q, 11, c->updated) != SQLITE_OK ||
	    st_bind_blob(q, 12, c->upd_msgid, c->has_upd_msgid ?
	    STORE_MSGID_BYTES : 0) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 13, c->upd_prev_until) != SQLITE_OK ||
	    st_bind_blob(q, 14, c->req_msgid, c->has_req_msgid ?
	    STORE_MSGID_BYTES : 0) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 15, c->req_deadline) != SQLITE_OK ||
	    st_bind_sealed(s, q, 16, SEC_SEED_PREV, &rk, c->seed_prev,
	    c->has_seed_prev ? STORE_SEED_BYTES : 0, 0) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 17, c->seed_prev_epoch) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 18, c->seed_prev_until) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 19, c->heal_at) != SQLITE_OK)
		return -1;
	return 0;
}

static int
contact_row(struct store *s, sqlite3_stmt *q, struct store_contact *c)
{
	size_t n1 = 0, n2 = 0, n3 = 0;
	struct st_rowkey rk;
	int64_t ep;

	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(q, 0);
	st_rowkey_id(&rk, c->id);
	c->state = st_col_int(q, 2);
	c->verified = st_col_int(q, 8);
	c->created = sqlite3_column_int64(q, 9);
	c->updated = sqlite3_column_int64(q, 10);
	c->upd_prev_until = sqlite3_column_int64(q, 12);
	c->req_deadline = sqlite3_column_int64(q, 14);
	ep = sqlite3_column_int64(q, 16);
	c->seed_prev_until = sqlite3_column_int64(q, 17);
	c->heal_at = sqlite3_column_int64(q, 18);
	if (st_col_text(s, q, 1, c->name, sizeof(c->name)) == -1 ||
	    st_col_text(s, q, 3, c->peer_name, sizeof(c->peer_name)) == -1 ||
	    st_col_blob(s, q, 4, c->peer_pk, sizeof(c->peer_pk), NULL, 1) == -1 ||
	    st_col_text(s, q, 5, c->peer_inbox, sizeof(c->peer_inbox)) == -1 ||
	    st_col_sealed(s, q, 6, SEC_PAIR, &rk, c->pair, sizeof(c->pair),
	    &c->pair_len, 0) == -1 ||
	    st_col_sealed(s, q, 7, SEC_AGREE, &rk, c->agree, sizeof(c->agree),
	    &c->agree_len, 0) == -1 ||
	    st_col_blob(s, q, 11, c->upd_msgid, sizeof(c->upd_msgid), &n1, 0) == -1 ||
	    st_col_blob(s, q, 13, c->req_msgid, sizeof(c->req_msgid), &n2, 0) == -1 ||
	    st_col_sealed(s, q, 15, SEC_SEED_PREV, &rk, c->seed_prev,
	    sizeof(c->seed_prev), &n3, 0) == -1)
		goto fail;	/* the helper said why */
	if ((n1 != 0 && n1 != STORE_MSGID_BYTES) ||
	    (n2 != 0 && n2 != STORE_MSGID_BYTES) ||
	    (n3 != 0 && n3 != STORE_SEED_BYTES) || ep < 0 || ep > UINT32_MAX) {
		st_seterr(s, "corrupt bookkeeping in a contact row");
		goto fail;
	}
	c->has_upd_msgid = n1 != 0;
	c->has_req_msgid = n2 != 0;
	c->has_seed_prev = n3 != 0;
	c->seed_prev_epoch = (uint32_t)ep;
	return 0;
fail:
	sodium_memzero(c, sizeof(*c));
	return -1;
}

/* Inserts c under id (its secrets are sealed under it). */
static int
contact_insert(struct store *s, const struct store_contact *c, int64_t id)
{
	sqlite3_stmt *q;

	if (!contact_ok(s, c) || (q = st_stmt(s, ST_C_ADD)) == NULL)
		return -1;
	if (contact_bind(s, q, c, id, 0) == -1)
		return st_bind_fail(s, q);
	return st_change(s, q);
}

int64_t
store_contact_add(struct store *s, const struct store_contact *c)
{
	sqlite3_stmt *q;
	int64_t id;
	int rc;

	/* The id is chosen first (max + 1, as sqlite would choose it): a
	 * sealed value names its row.  One connection, one thread: nothing
	 * takes it in between. */
	if ((q = st_stmt(s, ST_C_NEXT_ID)) == NULL || (id = st_count(s, q)) <= 0)
		return -1;
	if ((rc = contact_insert(s, c, id)) < 0)
		return rc;
	return id;
}

int
store_load_contact(struct store *s, const struct store_contact *c)
{
	int rc;

	if (c->id <= 0) {
		st_seterr(s, "a contact to load needs its id");
		return -1;
	}
	rc = contact_insert(s, c, c->id);
	return rc < 0 ? rc : 0;
}

/* Runs a one-row contact SELECT whose parameters are bound. */
static int
contact_one(struct store *s, sqlite3_stmt *q, struct store_contact *out)
{
	int rc;

	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	rc = contact_row(s, q, out);
	st_done(q);
	return rc == -1 ? -1 : 1;
}

int
store_contact_get_by_id(struct store *s, int64_t id, struct store_contact *out)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_C_BY_ID)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK)
		return st_bind_fail(s, q);
	return contact_one(s, q, out);
}

int
store_contact_get_by_name(struct store *s, const char *name,
    struct store_contact *out)
{
	sqlite3_stmt *q;

	if (name == NULL) {
		st_seterr(s, "no name");
		return -1;
	}
	if ((q = st_stmt(s, ST_C_BY_NAME)) == NULL)
		return -1;
	if (st_bind_text(q, 1, name) != SQLITE_OK)
		return st_bind_fail(s, q);
	return contact_one(s, q, out);
}

/* Runs a one-row "SELECT id" whose parameters are bound. */
static int
contact_id_one(struct store *s, sqlite3_stmt *q, int64_t *id)
{
	int rc;

	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	*id = sqlite3_column_int64(q, 0);
	st_done(q);
	return 1;
}

int
store_contact_id_by_name(struct store *s, const char *name, int64_t *id)
{
	sqlite3_stmt *q;

	if (name == NULL) {
		st_seterr(s, "no name");
		return -1;
	}
	if ((q = st_stmt(s, ST_C_ID_BY_NAME)) == NULL)
		return -1;
	if (st_bind_text(q, 1, name) != SQLITE_OK)
		return st_bind_fail(s, q);
	return contact_id_one(s, q, id);
}

int
store_contact_id_by_peer_pk(struct store *s, const uint8_t pk[STORE_PK_BYTES],
    int64_t *id)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_C_ID_BY_PK)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	return contact_id_one(s, q, id);
}

int
store_contact_get_by_peer_pk(struct store *s, const uint8_t pk[STORE_PK_BYTES],
    struct store_contact *out)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_C_BY_PK)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	return contact_one(s, q, out);
}

int
store_contact_update(struct store *s, const struct store_contact *c)
{
	sqlite3_stmt *q;
	int rc;

	if (!contact_ok(s, c) || (q = st_stmt(s, ST_C_UPDATE)) == NULL)
		return -1;
	if (contact_bind(s, q, c, c->id, 1) == -1)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? rc : rc > 0;
}

int
store_contact_delete(struct store *s, int64_t id, int64_t now)
{
	sqlite3_stmt *q;
	int n = -1;

	if (st_sp_begin(s) == -1)
		return -1;
	/* retire first: deleting the contact nulls inbox.contact_id */
	if ((q = st_stmt(s, ST_C_RETIRE_INBOXES)) == NULL)
		goto out;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, now) != SQLITE_OK) {
		st_bind_fail(s, q);
		goto out;
	}
	if (st_change(s, q) < 0)
		goto out;
	/* outbox and rx rows go by ON DELETE CASCADE */
	n = st_change_i64(s, ST_C_DEL, id);
out:
	if (st_sp_end(s, n >= 0) == -1)
		return -1;
	return n > 0;
}

int
store_contact_list(struct store *s, store_contact_cb cb, void *arg)
{
	struct store_contact c;
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((q = st_stmt(s, ST_C_LIST)) == NULL)
		return -1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (contact_row(s, q, &c) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&c, arg) != 0)
			break;
	}
	sodium_memzero(&c, sizeof(c));
	return st_rows_end(s, q, rc, n);
}

int
store_contact_accept_frames_set(struct store *s, int64_t id, const void *buf,
    size_t len)
{
	sqlite3_stmt *q;
	struct st_rowkey rk;
	int rc;

	if (len > INT32_MAX) {
		st_seterr(s, "too large");
		return -1;
	}
	if ((q = st_stmt(s, ST_C_AF_SET)) == NULL)
		return -1;
	st_rowkey_id(&rk, id);
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    st_bind_sealed(s, q, 2, SEC_ACCEPT_FRAMES, &rk, buf, len, 0) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? -1 : rc > 0;
}

int
store_contact_accept_frames_get(struct store *s, int64_t id, void *buf,
    size_t buflen, size_t *len)
{
	sqlite3_stmt *q;
	struct st_rowkey rk;
	int rc;

	*len = 0;
	st_rowkey_id(&rk, id);
	if ((q = st_stmt(s, ST_C_AF_GET)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	if (sqlite3_column_type(q, 0) == SQLITE_NULL) {
		st_done(q);
		return 0;
	}
	rc = st_col_sealed(s, q, 0, SEC_ACCEPT_FRAMES, &rk, buf, buflen, len, 0);
	st_done(q);
	return rc == -1 ? -1 : 1;
}

/* ---- the contact reset ------------------------------------------------ */

int
store_contact_reset_set(struct store *s, int64_t id, const struct store_reset *r)
{
	sqlite3_stmt *q;
	struct st_rowkey rk;
	int rc;

	if (r->mine_len > sizeof(r->mine) || r->ack_len > sizeof(r->ack)) {
		st_seterr(s, "reset state too large");
		return -1;
	}
	if ((q = st_stmt(s, ST_C_RESET_SET)) == NULL)
		return -1;
	st_rowkey_id(&rk, id);
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int(q, 2, r->due != 0) != SQLITE_OK ||
	    st_bind_sealed(s, q, 3, SEC_RESET, &rk, r->mine, r->mine_len, 0) !=
	    SQLITE_OK ||
	    sqlite3_bind_int64(q, 4, r->seen_t) != SQLITE_OK ||
	    st_bind_blob(q, 5, r->seen, r->has_seen ? sizeof(r->seen) : 0) !=
	    SQLITE_OK ||
	    st_bind_sealed(s, q, 6, SEC_RESET_ACK, &rk, r->ack, r->ack_len, 0) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? -1 : rc > 0;
}

int
store_contact_reset_get(struct store *s, int64_t id, struct store_reset *r)
{
	sqlite3_stmt *q;
	struct st_rowkey rk;
	size_t n = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((q = st_stmt(s, ST_C_RESET_GET)) == NULL)
		return -1;
	st_rowkey_id(&rk, id);
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	r->due = st_col_int(q, 0) != 0;
	r->seen_t = sqlite3_column_int64(q, 2);
	rc = st_col_sealed(s, q, 1, SEC_RESET, &rk, r->mine, sizeof(r->mine),
	    &r->mine_len, 0) == -1 ||
	    st_col_blob(s, q, 3, r->seen, sizeof(r->seen), &n, 0) == -1 ||
	    (n != 0 && n != sizeof(r->seen)) ||
	    st_col_sealed(s, q, 4, SEC_RESET_ACK, &rk, r->ack, sizeof(r->ack),
	    &r->ack_len, 0) == -1;
	st_done(q);
	r->has_seen = n != 0;
	if (rc) {
		if (s->err[0] == '\0')
			st_seterr(s, "corrupt reset state");
		sodium_memzero(r, sizeof(*r));
		return -1;
	}
	return 1;
}

int
store_contact_resets(struct store *s, int (*cb)(int64_t, void *), void *arg)
{
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((q = st_stmt(s, ST_C_RESETS)) == NULL)
		return -1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		n++;
		if (cb(sqlite3_column_int64(q, 0), arg) != 0)
			break;
	}
	return st_rows_end(s, q, rc, n);
}

/* ---- inboxes --------------------------------------------------------- */

static int
topic_ok(struct store *s, const char *topic)
{
	size_t n;

	if (topic == NULL || (n = strnlen(topic, STORE_TOPIC_MAX + 1)) == 0 ||
	    n > STORE_TOPIC_MAX) {
		st_seterr(s, "bad topic");
		return 0;
	}
	return 1;
}

static int
inbox_row(struct store *s, sqlite3_stmt *q, struct store_inbox *in)
{
	memset(in, 0, sizeof(*in));
	in->id = sqlite3_column_int64(q, 0);
	in->contact_id = sqlite3_column_int64(q, 2);	/* NULL reads as 0 */
	in->kind = st_col_int(q, 3);
	in->created = sqlite3_column_int64(q, 4);
	in->retire_at = sqlite3_column_int64(q, 5);
	in->one_time = st_col_int(q, 6) != 0;
	return st_col_text(s, q, 1, in->topic, sizeof(in->topic));
}

int64_t
store_inbox_add(struct store *s, const char *topic, int64_t contact_id,
    int kind, int one_time, int64_t created)
{
	sqlite3_stmt *q;
	int rc;

	if (!topic_ok(s, topic) || (q = st_stmt(s, ST_I_ADD)) == NULL)
		return -1;
	if (st_bind_text(q, 1, topic) != SQLITE_OK ||
	    (contact_id > 0 ? sqlite3_bind_int64(q, 2, contact_id) :
	    sqlite3_bind_null(q, 2)) != SQLITE_OK ||
	    sqlite3_bind_int(q, 3, kind) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 4, created) != SQLITE_OK ||
	    sqlite3_bind_int(q, 5, one_time != 0) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_change(s, q)) < 0)
		return rc;
	return sqlite3_last_insert_rowid(s->db);
}

int
store_inbox_get(struct store *s, const char *topic, struct store_inbox *out)
{
	sqlite3_stmt *q;
	int rc;

	if (!topic_ok(s, topic) || (q = st_stmt(s, ST_I_GET)) == NULL)
		return -1;
	if (st_bind_text(q, 1, topic) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	rc = inbox_row(s, q, out);
	st_done(q);
	return rc == -1 ? -1 : 1;
}

static int
inbox_rows(struct store *s, sqlite3_stmt *q, store_inbox_cb cb, void *arg)
{
	struct store_inbox in;
	int rc, n = 0;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (inbox_row(s, q, &in) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&in, arg) != 0)
			break;
	}
	return st_rows_end(s, q, rc, n);
}

int
store_inbox_list(struct store *s, int64_t now, store_inbox_cb cb, void *arg)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_I_LIST)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, now) != SQLITE_OK)
		return st_bind_fail(s, q);
	return inbox_rows(s, q, cb, arg);
}

int
store_inbox_list_all(struct store *s, store_inbox_cb cb, void *arg)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_I_LIST_ALL)) == NULL)
		return -1;
	return inbox_rows(s, q, cb, arg);
}

int
store_inbox_retire(struct store *s, int64_t id, int64_t retire_at)
{
	sqlite3_stmt *q;
	int rc;

	if (retire_at <= 0) {
		st_seterr(s, "retire time must be positive");
		return -1;
	}
	if ((q = st_stmt(s, ST_I_RETIRE)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, retire_at) != SQLITE_OK)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? -1 : rc > 0;
}

int
store_inbox_expire(struct store *s, int64_t now, store_inbox_cb cb, void *arg)
{
	struct store_inbox in;
	sqlite3_stmt *q, *d;
	int rc, n = 0, ok = 0;

	if ((q = st_stmt(s, ST_I_EXPIRED)) == NULL ||
	    (d = st_stmt(s, ST_I_DEL)) == NULL)
		return -1;
	/* one commit (one fsync) for the batch */
	if (st_sp_begin(s) == -1)
		return -1;
	for (;;) {
		if (sqlite3_bind_int64(q, 1, now) != SQLITE_OK) {
			st_bind_fail(s, q);
			goto out;
		}
		if ((rc = st_one_row(s, q)) == 0)
			break;
		if (rc == -1)
			goto out;
		rc = inbox_row(s, q, &in);
		st_done(q);
		if (rc == -1)
			goto out;
		if (cb != NULL && cb(&in, arg) != 0)
			break;
		if (sqlite3_bind_int64(d, 1, in.id) != SQLITE_OK) {
			st_bind_fail(s, d);
			goto out;
		}
		if (st_change(s, d) < 0)
			goto out;
		n++;
	}
	ok = 1;
out:
	if (st_sp_end(s, ok) == -1)
		return -1;
	return n;
}

