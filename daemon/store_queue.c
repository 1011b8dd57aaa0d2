/* store_queue.c: messages on their way — the outbox until the peer's ACK, received ones until an app takes them, the keys apps named sends with. */
#include <stdint.h>
#include <string.h>

#include "store_int.h"

/* ---- outbox ---------------------------------------------------------- */

/* A row; its body opened into the outbox scratch buffer (with_body). */
static int
outbox_row(struct store *s, sqlite3_stmt *q, struct store_outbox *o,
    int with_body)
{
	struct st_rowkey rk;

	memset(o, 0, sizeof(*o));
	o->id = sqlite3_column_int64(q, 0);
	o->contact_id = sqlite3_column_int64(q, 1);
	o->type = st_col_int(q, 3);
	o->created = sqlite3_column_int64(q, 5);
	o->attempts = st_col_int(q, 6);
	o->next_try = sqlite3_column_int64(q, 7);
	if (st_col_blob(s, q, 2, o->msgid, sizeof(o->msgid), NULL, 1) == -1)
		return -1;
	st_rowkey_msg(&rk, o->contact_id, o->msgid);
	if (with_body && st_col_sealed_ref(s, q, 4, SEC_OUTBOX_BODY, &rk,
	    SB_OUTBOX, &o->body, &o->body_len) == -1)
		return -1;
	return 0;
}

int64_t
store_outbox_add(struct store *s, int64_t contact_id,
    const uint8_t msgid[STORE_MSGID_BYTES], int type, const void *body,
    size_t len, int64_t created, int64_t next_try)
{
	sqlite3_stmt *q;
	int rc;

	if (len > INT32_MAX) {
		st_seterr(s, "message too large");
		return -1;
	}
	if ((q = st_stmt(s, ST_O_ADD)) == NULL)
		return -1;
	if (st_bind_msg(s, q, SEC_OUTBOX_BODY, contact_id, msgid, type, body,
	    len) == -1 ||
	    sqlite3_bind_int64(q, 5, created) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 6, next_try) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_change(s, q)) < 0)
		return rc;
	return sqlite3_last_insert_rowid(s->db);
}

static int
outbox_rows(struct store *s, sqlite3_stmt *q, store_outbox_cb cb, void *arg)
{
	struct store_outbox o;
	int rc, n = 0;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (outbox_row(s, q, &o, 1) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&o, arg) != 0)
			break;
	}
	return st_rows_end(s, q, rc, n);
}

int
store_outbox_due(struct store *s, int64_t now, int limit, store_outbox_cb cb,
    void *arg)
{
	sqlite3_stmt *q;

	if (limit <= 0) {
		st_seterr(s, "limit must be positive");
		return -1;
	}
	if ((q = st_stmt(s, ST_O_DUE)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, now) != SQLITE_OK ||
	    sqlite3_bind_int(q, 2, limit) != SQLITE_OK)
		return st_bind_fail(s, q);
	return outbox_rows(s, q, cb, arg);
}

int
store_outbox_reschedule(struct store *s, int64_t id, int64_t next_try,
    int attempts)
{
	sqlite3_stmt *q;
	int rc;

	if ((q = st_stmt(s, ST_O_RESCHED)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, next_try) != SQLITE_OK ||
	    sqlite3_bind_int(q, 3, attempts) != SQLITE_OK)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? -1 : rc > 0;
}

int
store_outbox_hurry(struct store *s, int64_t contact_id, int64_t now)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_O_HURRY)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, now) != SQLITE_OK)
		return st_bind_fail(s, q);
	return st_change(s, q);
}

int
store_outbox_ack(struct store *s, int64_t contact_id,
    const uint8_t msgid[STORE_MSGID_BYTES], struct store_outbox *out)
{
	struct store_outbox o;
	sqlite3_stmt *q, *d;
	int rc;

	if ((q = st_stmt(s, ST_O_FIND)) == NULL || (d = st_stmt(s, ST_O_DEL)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	rc = outbox_row(s, q, &o, 0);
	st_done(q);
	if (rc == -1)
		return -1;
	o.body = NULL;
	o.body_len = 0;
	if (sqlite3_bind_int64(d, 1, o.id) != SQLITE_OK)
		return st_bind_fail(s, d);
	if ((rc = st_change(s, d)) < 0)
		return -1;
	if (rc == 0)
		return 0;
	if (out != NULL)
		*out = o;
	return 1;
}

int64_t
store_outbox_count(struct store *s, int64_t contact_id)
{
	sqlite3_stmt *q;

	if (contact_id == 0)
		q = st_stmt(s, ST_O_COUNT_ALL);
	else
		q = st_stmt(s, ST_O_COUNT);
	if (q == NULL)
		return -1;
	if (contact_id != 0 && sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK)
		return st_bind_fail(s, q);
	return st_count(s, q);
}

/* count(*) and sum(length(body)) of a bound statement. */
static int
usage_row(struct store *s, sqlite3_stmt *q, int64_t *rows, int64_t *bytes)
{
	int rc;

	if ((rc = st_one_row(s, q)) != 1) {
		if (rc == 0)
			st_seterr(s, "no row from an aggregate");
		return -1;
	}
	*rows = sqlite3_column_int64(q, 0);
	*bytes = sqlite3_column_int64(q, 1);
	st_done(q);
	return 0;
}

int
store_outbox_usage(struct store *s, int64_t contact_id, int64_t *rows,
    int64_t *bytes)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_O_USAGE)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK)
		return st_bind_fail(s, q);
	return usage_row(s, q, rows, bytes);
}

/* ---- received messages ----------------------------------------------- */

int
store_rx_add(struct store *s, int64_t contact_id,
    const uint8_t msgid[STORE_MSGID_BYTES], int type, const void *body,
    size_t len, int64_t received_at, int64_t *id)
{
	sqlite3_stmt *q;
	int rc;

	if (len > INT32_MAX) {
		st_seterr(s, "message too large");
		return -1;
	}
	if ((q = st_stmt(s, ST_R_ADD)) == NULL)
		return -1;
	if (st_bind_msg(s, q, SEC_RX_BODY, contact_id, msgid, type, body,
	    len) == -1 ||
	    sqlite3_bind_int64(q, 5, received_at) != SQLITE_OK)
		return st_bind_fail(s, q);
	/* a duplicate is no error: DO NOTHING leaves changes at 0 */
	if ((rc = st_change(s, q)) < 0)
		return -1;
	if (rc > 0 && id != NULL)
		*id = sqlite3_last_insert_rowid(s->db);
	return rc > 0;
}

int
store_rx_pending(struct store *s, int limit, store_rx_cb cb, void *arg)
{
	struct store_rx r;
	sqlite3_stmt *q;
	int rc, n = 0;

	if (limit <= 0) {
		st_seterr(s, "limit must be positive");
		return -1;
	}
	if ((q = st_stmt(s, ST_R_PENDING)) == NULL)
		return -1;
	if (sqlite3_bind_int(q, 1, limit) != SQLITE_OK)
		return st_bind_fail(s, q);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct st_rowkey rk;

		memset(&r, 0, sizeof(r));
		r.id = sqlite3_column_int64(q, 0);
		r.contact_id = sqlite3_column_int64(q, 1);
		r.type = st_col_int(q, 3);
		r.received_at = sqlite3_column_int64(q, 5);
		if (st_col_blob(s, q, 2, r.msgid, sizeof(r.msgid), NULL, 1) == -1) {
			n = -1;
			break;
		}
		st_rowkey_msg(&rk, r.contact_id, r.msgid);
		if (st_col_sealed_ref(s, q, 4, SEC_RX_BODY, &rk, SB_RX, &r.body,
		    &r.body_len) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&r, arg) != 0)
			break;
	}
	return st_rows_end(s, q, rc, n);
}

int64_t
store_rx_pending_count(struct store *s)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_R_PENDING_COUNT)) == NULL)
		return -1;
	return st_count(s, q);
}

int
store_rx_pending_any(struct store *s)
{
	sqlite3_stmt *q;
	int64_t n;

	if ((q = st_stmt(s, ST_R_PENDING_ANY)) == NULL)
		return -1;
	n = st_count(s, q);
	return n < 0 ? -1 : n > 0;
}

int
store_rx_usage(struct store *s, int64_t contact_id, int64_t *rows,
    int64_t *bytes)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_R_USAGE)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK)
		return st_bind_fail(s, q);
	return usage_row(s, q, rows, bytes);
}

int
store_rx_take_msgid(struct store *s, const uint8_t msgid[STORE_MSGID_BYTES])
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_R_TAKE_MSGID)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	return st_change(s, q);
}

int
store_rx_take(struct store *s, int64_t id)
{
	int rc;

	rc = st_change_i64(s, ST_R_TAKE, id);
	return rc < 0 ? -1 : rc > 0;
}

int64_t
store_rx_prune(struct store *s, int64_t older_than)
{
	int rc;

	rc = st_change_i64(s, ST_R_PRUNE, older_than);
	return rc < 0 ? -1 : rc;
}


/* ---- backups: every row, and loading rows as they were ----------------- */

int
store_outbox_all(struct store *s, store_outbox_cb cb, void *arg)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, ST_O_ALL)) == NULL)
		return -1;
	return outbox_rows(s, q, cb, arg);
}

int
store_rx_all(struct store *s, store_rx_row_cb cb, void *arg)
{
	struct store_rx_row r;
	struct st_rowkey rk;
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((q = st_stmt(s, ST_R_ALL)) == NULL)
		return -1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		r.contact_id = sqlite3_column_int64(q, 0);
		r.type = st_col_int(q, 2);
		r.received_at = sqlite3_column_int64(q, 4);
		r.taken = st_col_int(q, 5) != 0;
		if (st_col_blob(s, q, 1, r.msgid, sizeof(r.msgid), NULL, 1) == -1) {
			n = -1;
			break;
		}
		st_rowkey_msg(&rk, r.contact_id, r.msgid);
		if (st_col_sealed_ref(s, q, 3, SEC_RX_BODY, &rk, SB_RX, &r.body,
		    &r.body_len) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&r, arg) != 0)
			break;
	}
	return st_rows_end(s, q, rc, n);
}

int
store_request_seen_all(struct store *s, int (*cb)(const uint8_t t1[
    STORE_PK_BYTES], int64_t contact_id, int64_t seen_at, void *), void *arg)
{
	uint8_t t1[STORE_PK_BYTES];
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((q = st_stmt(s, ST_SEEN_ALL)) == NULL)
		return -1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (st_col_blob(s, q, 0, t1, sizeof(t1), NULL, 1) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(t1, sqlite3_column_int64(q, 1), sqlite3_column_int64(q, 2),
		    arg) != 0)
			break;
	}
	return st_rows_end(s, q, rc, n);
}

int
store_load_outbox(struct store *s, const struct store_outbox *o)
{
	sqlite3_stmt *q;
	int rc;

	if (o->body_len > INT32_MAX) {
		st_seterr(s, "message too large");
		return -1;
	}
	if ((q = st_stmt(s, ST_O_LOAD)) == NULL)
		return -1;
	if (st_bind_msg(s, q, SEC_OUTBOX_BODY, o->contact_id, o->msgid, o->type,
	    o->body, o->body_len) == -1 ||
	    sqlite3_bind_int64(q, 5, o->created) != SQLITE_OK ||
	    sqlite3_bind_int(q, 6, o->attempts) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 7, o->next_try) != SQLITE_OK)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? rc : 0;
}

int
store_load_rx(struct store *s, const struct store_rx_row *r)
{
	sqlite3_stmt *q;
	int rc;

	if (r->body_len > INT32_MAX || (r->taken && r->body_len != 0)) {
		st_seterr(s, "bad received message");
		return -1;
	}
	if ((q = st_stmt(s, ST_R_LOAD)) == NULL)
		return -1;
	/* A taken message keeps no body: only its msgid, for dedupe. */
	if (st_bind_msg(s, q, SEC_RX_BODY, r->contact_id, r->msgid, r->type,
	    r->body, r->body_len) == -1 ||
	    (r->taken && sqlite3_bind_null(q, 4) != SQLITE_OK) ||
	    sqlite3_bind_int64(q, 5, r->received_at) != SQLITE_OK ||
	    sqlite3_bind_int(q, 6, r->taken != 0) != SQLITE_OK)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? rc : 0;
}

int
store_unused(struct store *s)
{
	sqlite3_stmt *q;
	int64_t n;

	if ((q = st_stmt(s, ST_UNUSED)) == NULL)
		return -1;
	if ((n = st_count(s, q)) < 0)
		return -1;
	return n == 0;
}

/* ---- send keys --------------------------------------------------------- */

int
store_sendkey_get(struct store *s, const void *key, size_t keylen,
    struct store_sendkey *out)
{
	sqlite3_stmt *q;
	int rc;

	if (keylen == 0 || keylen > STORE_SENDKEY_MAX) {
		st_seterr(s, "send key of %zu bytes", keylen);
		return -1;
	}
	if ((q = st_stmt(s, ST_K_GET)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, key, (int)keylen, SQLITE_STATIC) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	memset(out, 0, sizeof(*out));
	out->contact_id = sqlite3_column_int64(q, 0);
	out->created = sqlite3_column_int64(q, 3);
	rc = st_col_blob(s, q, 1, out->msgid, sizeof(out->msgid), NULL, 1) == -1 ||
	    st_col_blob(s, q, 2, out->digest, sizeof(out->digest), NULL, 1) == -1;
	st_done(q);
	return rc ? -1 : 1;
}

int
store_sendkey_add(struct store *s, const void *key, size_t keylen,
    const struct store_sendkey *k)
{
	sqlite3_stmt *q;
	int rc;

	if (keylen == 0 || keylen > STORE_SENDKEY_MAX) {
		st_seterr(s, "send key of %zu bytes", keylen);
		return -1;
	}
	if ((q = st_stmt(s, ST_K_ADD)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, key, (int)keylen, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, k->contact_id) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 3, k->msgid, STORE_MSGID_BYTES,
	    SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 4, k->digest, STORE_DIGEST_BYTES,
	    SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 5, k->created) != SQLITE_OK)
		return st_bind_fail(s, q);
	rc = st_change(s, q);
	return rc < 0 ? rc : 0;
}

int64_t
store_sendkey_prune(struct store *s, int64_t older_than)
{
	int rc;

	rc = st_change_i64(s, ST_K_PRUNE, older_than);
	return rc < 0 ? -1 : rc;
}
