/* store_file.c: file transfers in the store — a row per transfer each way, the chunks received, the outbox rows that carry a file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "store_file.h"

_Static_assert(STORE_XFER_BYTES == 16 && STORE_HASH_BYTES == 32, "sizes");

enum fst {
	F_OUT_ADD, F_IN_ADD, F_OUT_GET, F_IN_GET, F_OUT_UPD, F_IN_UPD,
	F_OUT_DEL, F_IN_DEL, F_OUT_LIST, F_IN_LIST, F_CHUNK_ADD, F_CHUNK_CLEAR,
	F_WIRE_ADD, F_WIRE_GET, F_WIRE_DEL, F_WIRE_LIST, F_WIRE_CLEAR,
	F_OUTBOX_DELAY,
	F_COUNT
};
_Static_assert(F_COUNT <= STORE_FILE_STMTS, "STORE_FILE_STMTS");

#define COLS "contact_id, xfer, name, size, hash, chunk, next, done, state, " \
	"status, path, created, updated"

static const char *const fsql[F_COUNT] = {
	[F_OUT_ADD] = "INSERT INTO file_out (" COLS ") VALUES (?1, ?2, ?3, ?4, "
	    "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (xfer) DO NOTHING",
	[F_IN_ADD] = "INSERT INTO file_in (" COLS ") VALUES (?1, ?2, ?3, ?4, "
	    "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
	    "ON CONFLICT (contact_id, xfer) DO NOTHING",
	[F_OUT_GET] = "SELECT " COLS " FROM file_out WHERE xfer = ?2",
	[F_IN_GET] = "SELECT " COLS " FROM file_in WHERE contact_id = ?1 AND "
	    "xfer = ?2",
	[F_OUT_UPD] = "UPDATE file_out SET next = ?3, done = ?4, state = ?5, "
	    "status = ?6, path = ?7, updated = ?8 WHERE xfer = ?2",
	[F_IN_UPD] = "UPDATE file_in SET next = ?3, done = ?4, state = ?5, "
	    "status = ?6, path = ?7, updated = ?8 WHERE contact_id = ?1 AND "
	    "xfer = ?2",
	[F_OUT_DEL] = "DELETE FROM file_out WHERE xfer = ?2",
	[F_IN_DEL] = "DELETE FROM file_in WHERE contact_id = ?1 AND xfer = ?2",
	[F_OUT_LIST] = "SELECT " COLS " FROM file_out ORDER BY created, xfer",
	[F_IN_LIST] = "SELECT " COLS " FROM file_in ORDER BY created, xfer",
	[F_CHUNK_ADD] = "INSERT INTO file_chunk (contact_id, xfer, idx) VALUES "
	    "(?1, ?2, ?3) ON CONFLICT DO NOTHING",
	[F_CHUNK_CLEAR] = "DELETE FROM file_chunk WHERE contact_id = ?1 AND "
	    "xfer = ?2",
	[F_WIRE_ADD] = "INSERT INTO file_wire (msgid, xfer, idx) VALUES "
	    "(?1, ?2, ?3)",
	[F_WIRE_GET] = "SELECT xfer, idx FROM file_wire WHERE msgid = ?1",
	[F_WIRE_DEL] = "DELETE FROM file_wire WHERE msgid = ?1",
	[F_WIRE_LIST] = "SELECT msgid FROM file_wire WHERE xfer = ?1",
	[F_WIRE_CLEAR] = "DELETE FROM file_wire WHERE xfer = ?1",
	[F_OUTBOX_DELAY] = "UPDATE outbox SET next_try = max(next_try, ?2) "
	    "WHERE msgid = ?1",
};

int
store_file_prepare(struct store *s)
{
	for (int i = 0; i < F_COUNT; i++)
		if (sqlite3_prepare_v3(s->db, fsql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &s->fst[i], NULL) != SQLITE_OK)
			return st_dberr(s);
	return 0;
}

static sqlite3_stmt *
fstmt(struct store *s, enum fst i)
{
	if (sqlite3_stmt_busy(s->fst[i])) {
		st_seterr(s, "reentrant call from a store callback");
		return NULL;
	}
	return s->fst[i];
}

/* ?1 contact, ?2 xfer: the key of either table. */
static int
bind_key(sqlite3_stmt *q, int64_t contact_id, const uint8_t xfer[STORE_XFER_BYTES])
{
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, xfer, STORE_XFER_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return -1;
	return 0;
}

static int
file_row(struct store *s, sqlite3_stmt *q, int dir, struct store_file *f)
{
	int64_t size;

	memset(f, 0, sizeof *f);
	f->dir = dir;
	f->contact_id = sqlite3_column_int64(q, 0);
	size = sqlite3_column_int64(q, 3);
	f->chunk = (uint32_t)sqlite3_column_int64(q, 5);
	f->next = (uint32_t)sqlite3_column_int64(q, 6);
	f->done = (uint32_t)sqlite3_column_int64(q, 7);
	f->state = st_col_int(q, 8);
	f->status = st_col_int(q, 9);
	f->created = sqlite3_column_int64(q, 11);
	f->updated = sqlite3_column_int64(q, 12);
	if (size < 0) {
		st_seterr(s, "corrupt file size");
		return -1;
	}
	f->size = (uint64_t)size;
	if (st_col_blob(s, q, 1, f->xfer, sizeof f->xfer, NULL, 1) == -1 ||
	    st_col_text(s, q, 2, f->name, sizeof f->name) == -1 ||
	    st_col_blob(s, q, 4, f->hash, sizeof f->hash, NULL, 1) == -1 ||
	    st_col_text(s, q, 10, f->path, sizeof f->path) == -1)
		return -1;
	return 0;
}

int
store_file_add(struct store *s, const struct store_file *f)
{
	sqlite3_stmt *q;
	int rc;

	if (f->size > INT64_MAX) {
		st_seterr(s, "file too large");
		return -1;
	}
	if ((q = fstmt(s, f->dir == STORE_FILE_OUT ? F_OUT_ADD : F_IN_ADD)) == NULL)
		return -1;
	if (bind_key(q, f->contact_id, f->xfer) == -1 ||
	    st_bind_text(q, 3, f->name) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 4, (int64_t)f->size) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 5, f->hash, sizeof f->hash, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_int64(q, 6, f->chunk) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 7, f->next) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 8, f->done) != SQLITE_OK ||
	    sqlite3_bind_int(q, 9, f->state) != SQLITE_OK ||
	    sqlite3_bind_int(q, 10, f->status) != SQLITE_OK ||
	    st_bind_text(q, 11, f->path) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 12, f->created) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 13, f->updated) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_change(s, q)) < 0)
		return -1;
	return rc > 0;
}

int
store_file_get(struct store *s, int dir, int64_t contact_id,
    const uint8_t xfer[STORE_XFER_BYTES], struct store_file *out)
{
	sqlite3_stmt *q;
	int rc;

	if ((q = fstmt(s, dir == STORE_FILE_OUT ? F_OUT_GET : F_IN_GET)) == NULL)
		return -1;
	if (bind_key(q, contact_id, xfer) == -1)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	rc = file_row(s, q, dir, out);
	st_done(q);
	return rc == 0 ? 1 : -1;
}

int
store_file_update(struct store *s, const struct store_file *f)
{
	sqlite3_stmt *q;
	int rc;

	if ((q = fstmt(s, f->dir == STORE_FILE_OUT ? F_OUT_UPD : F_IN_UPD)) == NULL)
		return -1;
	if (bind_key(q, f->contact_id, f->xfer) == -1 ||
	    sqlite3_bind_int64(q, 3, f->next) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 4, f->done) != SQLITE_OK ||
	    sqlite3_bind_int(q, 5, f->state) != SQLITE_OK ||
	    sqlite3_bind_int(q, 6, f->status) != SQLITE_OK ||
	    st_bind_text(q, 7, f->path) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 8, f->updated) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_change(s, q)) < 0)
		return -1;
	return rc > 0;
}

int
store_file_delete(struct store *s, int dir, int64_t contact_id,
    const uint8_t xfer[STORE_XFER_BYTES])
{
	sqlite3_stmt *q;
	int rc;

	if ((q = fstmt(s, dir == STORE_FILE_OUT ? F_OUT_DEL : F_IN_DEL)) == NULL)
		return -1;
	if (bind_key(q, contact_id, xfer) == -1)
		return st_bind_fail(s, q);
	if ((rc = st_change(s, q)) < 0)
		return -1;
	return rc > 0;
}

static int
list_one(struct store *s, enum fst i, int dir, store_file_cb cb, void *arg,
    int *stop)
{
	struct store_file *f;
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((f = malloc(sizeof *f)) == NULL) {
		st_seterr(s, "out of memory");
		return -1;
	}
	if ((q = fstmt(s, i)) == NULL) {
		free(f);
		return -1;
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (file_row(s, q, dir, f) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(f, arg) != 0) {
			*stop = 1;
			break;
		}
	}
	free(f);
	return st_rows_end(s, q, rc, n);
}

int
store_file_list(struct store *s, store_file_cb cb, void *arg)
{
	int a, b, stop = 0;

	if ((a = list_one(s, F_OUT_LIST, STORE_FILE_OUT, cb, arg, &stop)) < 0)
		return -1;
	if (stop)
		return a;
	if ((b = list_one(s, F_IN_LIST, STORE_FILE_IN, cb, arg, &stop)) < 0)
		return -1;
	return a + b;
}

int
store_file_chunk_add(struct store *s, int64_t contact_id,
    const uint8_t xfer[STORE_XFER_BYTES], uint32_t idx)
{
	sqlite3_stmt *q;
	int rc;

	if ((q = fstmt(s, F_CHUNK_ADD)) == NULL)
		return -1;
	if (bind_key(q, contact_id, xfer) == -1 ||
	    sqlite3_bind_int64(q, 3, idx) != SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_change(s, q)) < 0)
		return -1;
	return rc > 0;
}

int
store_file_chunk_clear(struct store *s, int64_t contact_id,
    const uint8_t xfer[STORE_XFER_BYTES])
{
	sqlite3_stmt *q;

	if ((q = fstmt(s, F_CHUNK_CLEAR)) == NULL)
		return -1;
	if (bind_key(q, contact_id, xfer) == -1)
		return st_bind_fail(s, q);
	return st_change(s, q) < 0 ? -1 : 0;
}

int
store_file_wire_add(struct store *s, const uint8_t msgid[STORE_MSGID_BYTES],
    const uint8_t xfer[STORE_XFER_BYTES], int64_t idx)
{
	sqlite3_stmt *q;

	if ((q = fstmt(s, F_WIRE_ADD)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, xfer, STORE_XFER_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_int64(q, 3, idx) != SQLITE_OK)
		return st_bind_fail(s, q);
	return st_change(s, q) < 0 ? -1 : 0;
}

int
store_file_wire_take(struct store *s, const uint8_t msgid[STORE_MSGID_BYTES],
    uint8_t xfer[STORE_XFER_BYTES], int64_t *idx)
{
	sqlite3_stmt *q, *d;
	int rc;

	if ((q = fstmt(s, F_WIRE_GET)) == NULL || (d = fstmt(s, F_WIRE_DEL)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	if ((rc = st_one_row(s, q)) != 1)
		return rc;
	*idx = sqlite3_column_int64(q, 1);
	rc = st_col_blob(s, q, 0, xfer, STORE_XFER_BYTES, NULL, 1);
	st_done(q);
	if (rc == -1)
		return -1;
	if (sqlite3_bind_blob(d, 1, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, d);
	return st_change(s, d) < 0 ? -1 : 1;
}

int
store_file_wire_delay(struct store *s, const uint8_t xfer[STORE_XFER_BYTES],
    int64_t next_try)
{
	uint8_t msgid[STORE_MSGID_BYTES];
	sqlite3_stmt *q, *u;
	int rc, n = 0;

	if ((q = fstmt(s, F_WIRE_LIST)) == NULL || (u = fstmt(s, F_OUTBOX_DELAY)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, xfer, STORE_XFER_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (st_col_blob(s, q, 0, msgid, sizeof msgid, NULL, 1) == -1 ||
		    sqlite3_bind_blob(u, 1, msgid, sizeof msgid, SQLITE_TRANSIENT) !=
		    SQLITE_OK || sqlite3_bind_int64(u, 2, next_try) != SQLITE_OK ||
		    st_change(s, u) < 0) {
			st_done(u);
			n = -1;
			break;
		}
		n++;
	}
	return st_rows_end(s, q, rc, n);
}

int
store_file_wire_drain(struct store *s, const uint8_t xfer[STORE_XFER_BYTES],
    void (*cb)(const uint8_t msgid[STORE_MSGID_BYTES], void *), void *arg)
{
	uint8_t msgid[STORE_MSGID_BYTES];
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((q = fstmt(s, F_WIRE_LIST)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, xfer, STORE_XFER_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (st_col_blob(s, q, 0, msgid, sizeof msgid, NULL, 1) == -1) {
			n = -1;
			break;
		}
		n++;
		cb(msgid, arg);
	}
	if (st_rows_end(s, q, rc, n) < 0)
		return -1;
	if ((q = fstmt(s, F_WIRE_CLEAR)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, xfer, STORE_XFER_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return st_bind_fail(s, q);
	return st_change(s, q) < 0 ? -1 : n;
}
