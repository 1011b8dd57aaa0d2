/* store.c: the sqlite3 database — opening, its settings, the migrations runner, transactions, and every prepared statement. */
#define _POSIX_C_SOURCE 200809L

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "common.h"
#include "pair.h"
#include "agree.h"
#include "store_int.h"

_Static_assert(ST_SEAL_OVERHEAD == 41, "the usage queries subtract 41");

_Static_assert(STORE_NAME_MAX == VEIL_NAME_MAX, "name size");
_Static_assert(STORE_MSGID_BYTES == VEIL_MSGID_BYTES, "msgid size");
_Static_assert(STORE_PK_BYTES == VEIL_KEY_BYTES, "key size");
_Static_assert(STORE_BLOB_MAX >= VEIL_PAIR_PACKED_MAX, "pair blob");
_Static_assert(STORE_BLOB_MAX >= VEIL_AGREE_PACKED_MAX, "agree blob");
_Static_assert(STORE_TOPIC_MAX >= VEIL_ID_TEXT_MAX, "topic size");

/*
 * The event loop blocks on the database, so waits must stay short; only
 * another process (sqlite3 CLI, a backup) can hold a lock at all.
 */
#define STORE_BUSY_MS	1000

#define CONTACT_COLS "id, name, state, peer_name, peer_pk, peer_inbox, " \
	"pair, agree, verified, created, updated, upd_msgid, " \
	"upd_prev_until, req_msgid, req_deadline, seed_prev, seed_prev_epoch, " \
	"seed_prev_until, heal_at"
#define INBOX_COLS "id, topic, contact_id, kind, created, retire_at, one_time"
#define META_COLS "card_cid, client_id, client_epoch, card_client_id, " \
	"shared_seed, wire, card_shown"
#define OUTBOX_COLS "id, contact_id, msgid, type, body, created, attempts, " \
	"next_try"


static const char *const stsql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT store_op",
	[ST_RELEASE] = "RELEASE store_op",
	[ST_ROLLBACK_TO] = "ROLLBACK TO store_op",
	[ST_USP] = "SAVEPOINT caller_op",
	[ST_URELEASE] = "RELEASE caller_op",
	[ST_UROLLBACK_TO] = "ROLLBACK TO caller_op",

	[ST_META_GET] = "SELECT " META_COLS " FROM meta WHERE id = 1",
	[ST_ID_GET] = "SELECT identity_pk, identity_sk FROM meta WHERE id = 1",
	[ST_ID_SET] = "UPDATE meta SET identity_pk = ?1, identity_sk = ?2 "
	    "WHERE id = 1",
	[ST_KEYCHECK_GET] = "SELECT key_check FROM meta WHERE id = 1",
	[ST_UNUSED] = "SELECT (SELECT count(*) FROM contact) + "
	    "(SELECT count(*) FROM outbox) + (SELECT count(*) FROM rx) + "
	    "(SELECT count(*) FROM request_seen) + "
	    "(SELECT count(*) FROM meta WHERE card_shown <> 0)",

	[ST_W_LIST] = "SELECT kind, key_id, salt, opslimit, memlimit, wrapped, "
	    "created FROM vault ORDER BY kind, key_id",
	[ST_W_PUT] = "INSERT INTO vault (kind, key_id, salt, opslimit, "
	    "memlimit, wrapped, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
	    "ON CONFLICT (kind, key_id) DO UPDATE SET salt = ?3, "
	    "opslimit = ?4, memlimit = ?5, wrapped = ?6, created = ?7",
	[ST_W_DEL] = "DELETE FROM vault WHERE kind = ?1 AND key_id = ?2",

	/* Ids are chosen before the INSERT: a sealed value names its row. */
	[ST_C_NEXT_ID] = "SELECT coalesce(max(id), 0) + 1 FROM contact",
	[ST_C_RESET_GET] = "SELECT reset_due, reset, reset_seen_t, "
	    "reset_seen, reset_ack FROM contact WHERE id = ?1",
	[ST_C_RESET_SET] = "UPDATE contact SET reset_due = ?2, reset = ?3, "
	    "reset_seen_t = ?4, reset_seen = ?5, reset_ack = ?6 WHERE id = ?1",
	[ST_C_RESETS] = "SELECT id FROM contact WHERE reset_due <> 0 OR "
	    "reset IS NOT NULL ORDER BY id",
	[ST_O_ALL] = "SELECT " OUTBOX_COLS " FROM outbox ORDER BY id",
	[ST_O_LOAD] = "INSERT INTO outbox (contact_id, msgid, type, body, "
	    "created, attempts, next_try) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_R_ALL] = "SELECT contact_id, msgid, type, body, received_at, taken "
	    "FROM rx ORDER BY id",
	[ST_R_LOAD] = "INSERT INTO rx (contact_id, msgid, type, body, "
	    "received_at, taken) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_SEEN_ALL] = "SELECT t1, contact_id, seen_at FROM request_seen "
	    "ORDER BY t1",

	[ST_C_ADD] = "INSERT INTO contact (id, name, state, peer_name, peer_pk, "
	    "peer_inbox, pair, agree, verified, created, updated, upd_msgid, "
	    "upd_prev_until, req_msgid, req_deadline, seed_prev, "
	    "seed_prev_epoch, seed_prev_until, heal_at) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
	    "?15, ?16, ?17, ?18, ?19)",
	[ST_C_BY_ID] = "SELECT " CONTACT_COLS " FROM contact WHERE id = ?1",
	[ST_C_BY_NAME] = "SELECT " CONTACT_COLS " FROM contact WHERE name = ?1",
	[ST_C_BY_PK] = "SELECT " CONTACT_COLS " FROM contact "
	    "WHERE peer_pk = ?1 ORDER BY id LIMIT 1",
	[ST_C_ID_BY_NAME] = "SELECT id FROM contact WHERE name = ?1",
	[ST_C_ID_BY_PK] = "SELECT id FROM contact WHERE peer_pk = ?1 "
	    "ORDER BY id LIMIT 1",
	[ST_C_UPDATE] = "UPDATE contact SET name = ?2, state = ?3, "
	    "peer_name = ?4, peer_pk = ?5, peer_inbox = ?6, pair = ?7, "
	    "agree = ?8, verified = ?9, updated = ?11, upd_msgid = ?12, "
	    "upd_prev_until = ?13, req_msgid = ?14, req_deadline = ?15, "
	    "seed_prev = ?16, seed_prev_epoch = ?17, seed_prev_until = ?18, "
	    "heal_at = ?19 WHERE id = ?1",
	[ST_C_AF_GET] = "SELECT accept_frames FROM contact WHERE id = ?1",
	[ST_C_AF_SET] = "UPDATE contact SET accept_frames = ?2 WHERE id = ?1",
	[ST_SEEN_ADD] = "INSERT INTO request_seen (t1, contact_id, seen_at) "
	    "VALUES (?1, ?2, ?3) ON CONFLICT (t1) DO NOTHING",
	[ST_SEEN_GET] = "SELECT contact_id FROM request_seen WHERE t1 = ?1",
	[ST_SEEN_PRUNE] = "DELETE FROM request_seen WHERE seen_at < ?1",
	[ST_C_DEL] = "DELETE FROM contact WHERE id = ?1",
	[ST_C_RETIRE_INBOXES] = "UPDATE inbox SET retire_at = ?2 "
	    "WHERE contact_id = ?1",
	[ST_C_LIST] = "SELECT " CONTACT_COLS " FROM contact ORDER BY id",

	[ST_I_ADD] = "INSERT INTO inbox (topic, contact_id, kind, created, "
	    "one_time) VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_I_GET] = "SELECT " INBOX_COLS " FROM inbox WHERE topic = ?1",
	[ST_I_LIST] = "SELECT " INBOX_COLS " FROM inbox "
	    "WHERE retire_at IS NULL OR retire_at > ?1 ORDER BY id",
	[ST_I_LIST_ALL] = "SELECT " INBOX_COLS " FROM inbox ORDER BY id",
	[ST_I_RETIRE] = "UPDATE inbox SET retire_at = ?2 WHERE id = ?1",
	/* One at a time: each is deleted before the next is looked up. */
	[ST_I_EXPIRED] = "SELECT " INBOX_COLS " FROM inbox "
	    "WHERE retire_at IS NOT NULL AND retire_at <= ?1 "
	    "ORDER BY retire_at, id LIMIT 1",
	[ST_I_DEL] = "DELETE FROM inbox WHERE id = ?1",

	[ST_O_ADD] = "INSERT INTO outbox (contact_id, msgid, type, body, "
	    "created, attempts, next_try) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
	[ST_O_DUE] = "SELECT " OUTBOX_COLS " FROM outbox WHERE next_try <= ?1 "
	    "ORDER BY next_try, id LIMIT ?2",
	[ST_O_RESCHED] = "UPDATE outbox SET next_try = ?2, attempts = ?3 "
	    "WHERE id = ?1",
	[ST_O_HURRY] = "UPDATE outbox SET next_try = ?2 WHERE contact_id = ?1 "
	    "AND attempts > 0 AND next_try > ?2",
	[ST_O_FIND] = "SELECT id, contact_id, msgid, type, NULL, created, "
	    "attempts, next_try FROM outbox WHERE msgid = ?2 AND contact_id = ?1",
	[ST_O_DEL] = "DELETE FROM outbox WHERE id = ?1",
	[ST_O_COUNT] = "SELECT count(*) FROM outbox WHERE contact_id = ?1",
	[ST_O_COUNT_ALL] = "SELECT count(*) FROM outbox",
	/* length() of a blob reads the record header, not the body. */
	/* Usage counts what the bodies hold, not their sealed form:
	 * ST_SEAL_OVERHEAD (41) bytes less each (store_seal.c). */
	[ST_O_USAGE] = "SELECT count(*), coalesce(sum(max(length(body) - 41, 0)), 0) "
	    "FROM outbox WHERE contact_id = ?1",

	[ST_R_ADD] = "INSERT INTO rx (contact_id, msgid, type, body, "
	    "received_at, taken) VALUES (?1, ?2, ?3, ?4, ?5, 0) "
	    "ON CONFLICT (contact_id, msgid) DO NOTHING",
	[ST_R_PENDING] = "SELECT id, contact_id, msgid, type, body, received_at "
	    "FROM rx WHERE taken = 0 ORDER BY received_at, id LIMIT ?1",
	[ST_R_PENDING_COUNT] = "SELECT count(*) FROM rx WHERE taken = 0",
	[ST_R_TAKE] = "UPDATE rx SET taken = 1, body = NULL "
	    "WHERE id = ?1 AND taken = 0",
	[ST_R_PRUNE] = "DELETE FROM rx WHERE taken = 1 AND received_at < ?1",
	[ST_R_PENDING_ANY] = "SELECT EXISTS (SELECT 1 FROM rx WHERE taken = 0)",
	[ST_R_USAGE] = "SELECT count(*), coalesce(sum(max(length(body) - 41, 0)), 0) "
	    "FROM rx WHERE contact_id = ?1 AND taken = 0",
	[ST_R_TAKE_MSGID] = "UPDATE rx SET taken = 1, body = NULL "
	    "WHERE msgid = ?1 AND taken = 0",

	[ST_K_GET] = "SELECT contact_id, msgid, digest, created FROM send_key "
	    "WHERE key = ?1",
	[ST_K_ADD] = "INSERT INTO send_key (key, contact_id, msgid, digest, "
	    "created) VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_K_PRUNE] = "DELETE FROM send_key WHERE created < ?1",
};

/* One UPDATE per meta field: the column names never come from a caller. */
static const char *const metasql[STORE_META_COUNT] = {
	[STORE_META_CARD_CID] = "UPDATE meta SET card_cid = ?1 WHERE id = 1",
	[STORE_META_CLIENT_ID] = "UPDATE meta SET client_id = ?1 WHERE id = 1",
	[STORE_META_CARD_CLIENT_ID] =
	    "UPDATE meta SET card_client_id = ?1 WHERE id = 1",
	[STORE_META_CLIENT_EPOCH] =
	    "UPDATE meta SET client_epoch = ?1 WHERE id = 1",
	[STORE_META_SHARED_SEED] =
	    "UPDATE meta SET shared_seed = ?1 WHERE id = 1",
	[STORE_META_WIRE] = "UPDATE meta SET wire = ?1 WHERE id = 1",
	[STORE_META_CARD_SHOWN] = "UPDATE meta SET card_shown = ?1 WHERE id = 1",
};

void
st_seterr(struct store *s, const char *fmt, ...)
{
	va_list ap;

	s->errcode = 0;
	s->syserr = 0;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

/* sqlite's messages name tables and columns, never bound values. */
int
st_dberr(struct store *s)
{
	st_seterr(s, "%s", sqlite3_errmsg(s->db));
	s->errcode = sqlite3_extended_errcode(s->db);
	s->syserr = sqlite3_system_errno(s->db);
	return -1;
}

/*
 * A cached statement ready for binding.  A statement still stepping means
 * a callback re-entered the function that is iterating with it; resetting
 * it would pull the rows out from under that loop.
 */
sqlite3_stmt *
st_stmt(struct store *s, enum st i)
{
	if (sqlite3_stmt_busy(s->st[i])) {
		st_seterr(s, "reentrant call from a store callback");
		return NULL;
	}
	return s->st[i];
}

/* Resets and drops bindings: SQLITE_STATIC blobs point at caller memory. */
void
st_done(sqlite3_stmt *q)
{
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

/* Runs a statement that returns no rows; -1 on error. */
int
st_run(struct store *s, sqlite3_stmt *q)
{
	int rc;

	rc = sqlite3_step(q);
	if (rc != SQLITE_DONE) {
		if (rc == SQLITE_ROW)
			st_seterr(s, "statement returned rows");
		else
			st_dberr(s);
		st_done(q);
		return -1;
	}
	st_done(q);
	return 0;
}

/* Runs a writing statement; returns rows changed, STORE_EXISTS on a
 * UNIQUE/PRIMARY KEY conflict, -1 on other errors. */
int
st_change(struct store *s, sqlite3_stmt *q)
{
	int rc, xrc;

	rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		st_done(q);
		return sqlite3_changes(s->db);
	}
	xrc = sqlite3_extended_errcode(s->db);
	st_dberr(s);
	st_done(q);
	if (xrc == SQLITE_CONSTRAINT_UNIQUE ||
	    xrc == SQLITE_CONSTRAINT_PRIMARYKEY)
		return STORE_EXISTS;
	return -1;
}

int
st_simple(struct store *s, enum st i)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, i)) == NULL)
		return -1;
	return st_run(s, q);
}

/* Internal atomic groups; savepoints nest inside a caller's store_begin. */
int
st_sp_begin(struct store *s)
{
	return st_simple(s, ST_SAVEPOINT);
}

int
st_sp_end(struct store *s, int ok)
{
	char keep[sizeof(s->err)];
	int code = s->errcode, sys = s->syserr;

	if (ok)
		return st_simple(s, ST_RELEASE);
	/* keep the first error, not the rollback's */
	memcpy(keep, s->err, sizeof(keep));
	if (st_simple(s, ST_ROLLBACK_TO) == 0)
		(void)st_simple(s, ST_RELEASE);
	memcpy(s->err, keep, sizeof(keep));
	s->errcode = code;
	s->syserr = sys;
	return -1;
}

int64_t
st_count(struct store *s, sqlite3_stmt *q)
{
	int64_t n;

	if (sqlite3_step(q) != SQLITE_ROW) {
		st_dberr(s);
		st_done(q);
		return -1;
	}
	n = sqlite3_column_int64(q, 0);
	st_done(q);
	return n;
}

int
st_bind_text(sqlite3_stmt *q, int i, const char *str)
{
	return sqlite3_bind_text(q, i, str, -1, SQLITE_STATIC);
}

/* Empty blobs are stored as NULL: sqlite binds a NULL pointer as NULL. */
int
st_bind_blob(sqlite3_stmt *q, int i, const void *b, size_t len)
{
	if (len == 0)
		return sqlite3_bind_null(q, i);
	return sqlite3_bind_blob64(q, i, b, len, SQLITE_STATIC);
}

/* For a NOT NULL column: an empty blob is a zero-length blob. */
int
st_bind_body(sqlite3_stmt *q, int i, const void *b, size_t len)
{
	if (len == 0)
		return sqlite3_bind_zeroblob(q, i, 0);
	return sqlite3_bind_blob64(q, i, b, len, SQLITE_STATIC);
}

/* ?1..?4 of the outbox and rx INSERTs, which store a message alike: the
 * body sealed under the contact id and msgid. */
int
st_bind_msg(struct store *s, sqlite3_stmt *q, enum st_secret col,
    int64_t contact_id, const uint8_t msgid[STORE_MSGID_BYTES], int type,
    const void *body, size_t len)
{
	struct st_rowkey rk;

	st_rowkey_msg(&rk, contact_id, msgid);
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_int(q, 3, type) != SQLITE_OK ||
	    st_bind_sealed(s, q, 4, col, &rk, body, len, 1) != SQLITE_OK)
		return -1;
	return 0;
}

int
st_bind_fail(struct store *s, sqlite3_stmt *q)
{
	st_dberr(s);
	st_done(q);
	return -1;
}

/* Runs the writing statement i with ?1 = v: rows changed, or < 0 as
 * st_change() says. */
int
st_change_i64(struct store *s, enum st i, int64_t v)
{
	sqlite3_stmt *q;

	if ((q = st_stmt(s, i)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, v) != SQLITE_OK)
		return st_bind_fail(s, q);
	return st_change(s, q);
}

/*
 * Steps a SELECT of at most one row whose parameters are bound: 1 with
 * the row ready (the caller reads it, then calls st_done()), 0 if there is
 * none, -1 on error; q is reset already for 0 and -1.
 */
int
st_one_row(struct store *s, sqlite3_stmt *q)
{
	int rc;

	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		st_done(q);
		return 0;
	}
	return st_bind_fail(s, q);
}

/* Ends a loop over rows: rc is the last sqlite3_step() result, n the
 * rows handed out (or -1).  Returns n, or -1 if stepping failed. */
int
st_rows_end(struct store *s, sqlite3_stmt *q, int rc, int n)
{
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		st_dberr(s);
		n = -1;
	}
	st_done(q);
	return n;
}

/* Copies a text column into a fixed field; the database file is not
 * trusted to respect our limits. */
int
st_col_text(struct store *s, sqlite3_stmt *q, int i, char *out, size_t outlen)
{
	const unsigned char *t;
	int n;

	t = sqlite3_column_text(q, i);
	n = sqlite3_column_bytes(q, i);
	if (t == NULL) {
		if (sqlite3_column_type(q, i) != SQLITE_NULL) {
			st_seterr(s, "out of memory");
			return -1;
		}
		out[0] = '\0';
		return 0;
	}
	if (n < 0 || (size_t)n >= outlen || memchr(t, '\0', n) != NULL) {
		st_seterr(s, "corrupt text in column %d", i);
		return -1;
	}
	memcpy(out, t, n);
	out[n] = '\0';
	return 0;
}

int
st_col_blob(struct store *s, sqlite3_stmt *q, int i, uint8_t *out, size_t outlen,
    size_t *len, int exact)
{
	const void *b;
	int n;

	b = sqlite3_column_blob(q, i);
	n = sqlite3_column_bytes(q, i);
	if (n < 0 || (size_t)n > outlen || (exact && (size_t)n != outlen) ||
	    (b == NULL && n != 0)) {
		st_seterr(s, "corrupt blob in column %d", i);
		return -1;
	}
	if (n > 0)
		memcpy(out, b, n);
	if (len != NULL)
		*len = n;
	return 0;
}

/* A blob column handed out by pointer (valid until the next step). */
int
st_col_ref(struct store *s, sqlite3_stmt *q, int i, const uint8_t **out,
    size_t *len)
{
	int n;

	*out = sqlite3_column_blob(q, i);
	n = sqlite3_column_bytes(q, i);
	if (n < 0 || (*out == NULL && n != 0 &&
	    sqlite3_column_type(q, i) != SQLITE_NULL)) {
		st_seterr(s, "out of memory");
		return -1;
	}
	*len = *out == NULL ? 0 : (size_t)n;
	return 0;
}

int
st_col_int(sqlite3_stmt *q, int i)
{
	int64_t v;

	v = sqlite3_column_int64(q, i);
	if (v > INT32_MAX)
		return INT32_MAX;
	if (v < INT32_MIN)
		return INT32_MIN;
	return (int)v;
}

/* ---- open / close ---------------------------------------------------- */

int
st_exec(struct store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		st_seterr(s, "%s", msg != NULL ? msg : sqlite3_errmsg(s->db));
		s->errcode = sqlite3_extended_errcode(s->db);
		s->syserr = sqlite3_system_errno(s->db);
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int
st_pragma_int(struct store *s, const char *sql, int64_t *val)
{
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return st_dberr(s);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		st_dberr(s);
		sqlite3_finalize(q);
		return -1;
	}
	*val = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return 0;
}

static int
migrate(struct store *s)
{
	int64_t ver;
	char sql[64];
	int v;

	if (st_pragma_int(s, "PRAGMA user_version", &ver) == -1)
		return -1;
	if (ver < 0 || ver > store_nmigrations) {
		st_seterr(s, "database schema version %" PRId64 " is newer than "
		    "this veild supports (%d); refusing to open it", ver,
		    store_nmigrations);
		return -1;
	}
	for (v = (int)ver; v < store_nmigrations; v++) {
		if (st_exec(s, "BEGIN IMMEDIATE") == -1)
			return -1;
		/* PRAGMA cannot take a bound parameter */
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (st_exec(s, store_migrations[v].sql) == -1 ||
		    (store_migrations[v].fn != NULL && store_migrations[v].fn(s) == -1) ||
		    st_exec(s, sql) == -1) {
			char keep[sizeof(s->err)];

			memcpy(keep, s->err, sizeof(keep));
			(void)st_exec(s, "ROLLBACK");
			snprintf(s->err, sizeof(s->err),
			    "schema migration %d failed: %.200s", v + 1, keep);
			return -1;
		}
		if (st_exec(s, "COMMIT") == -1)
			return -1;
	}
	return 0;
}

/*
 * Creates the file ourselves so it never exists with a wider mode than
 * 0600 (it holds identity and pair keys); sqlite gives its -wal and -shm
 * files the database file's mode.  An existing file is tightened.
 */
static int
create_private(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if ((st.st_mode & 077) != 0 && fchmod(fd, st.st_mode & 0700) == -1) {
		snprintf(err, errlen, "%s: chmod: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * sqlite's quick_check: every b-tree page well formed, every page in use
 * once (not the indexes against their tables: integrity_check, several
 * times slower).  About 0.2 s for 100,000 contacts (110 MB, warm cache).
 */
static int
st_quick_check(struct store *s)
{
	sqlite3_stmt *q;
	const unsigned char *t;
	int rc;

	if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &q,
	    NULL) != SQLITE_OK)
		return st_dberr(s);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		st_dberr(s);
		sqlite3_finalize(q);
		return -1;
	}
	t = sqlite3_column_text(q, 0);
	if (t == NULL || strcmp((const char *)t, "ok") != 0) {
		st_seterr(s, "quick_check: %.150s", t != NULL ? (const char *)t :
		    "no answer");
		s->errcode = SQLITE_CORRUPT;
		sqlite3_finalize(q);
		return -1;
	}
	sqlite3_finalize(q);
	return 0;
}

enum store_trouble
store_trouble(struct store *s)
{
	if (s == NULL || s->errcode == 0)
		return STORE_OK;
	switch (s->syserr) {
	case ENOSPC:
	case EDQUOT:
		return STORE_FULL;
	case EROFS:
	case EACCES:
	case EPERM:
		return STORE_READONLY;
	}
	switch (s->errcode & 0xff) {
	case SQLITE_FULL:
		return STORE_FULL;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		return STORE_READONLY;
	case SQLITE_IOERR:
		return STORE_IOERR;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return STORE_DAMAGED;
	}
	return STORE_OK;
}

static struct store *store_open_file(const char *path, char *err, size_t errlen,
    enum store_trouble *trouble);

/* fsync of a file or directory by name: 0, -1 with errno. */
static int
sync_path(const char *path, int dir)
{
	int fd, rc;

	if ((fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/*
 * A new database: built and migrated under path.new, closed (which
 * checkpoints its WAL away), synced, then renamed to path.  Whatever a
 * crash leaves behind is path.new, made anew next time; path itself
 * exists only complete.
 */
static int
store_build(const char *path, char *err, size_t errlen)
{
	char tmp[4096], side[4096 + 8], dir[4096], *slash;
	struct store *s;

	if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	(void)unlink(tmp);
	snprintf(side, sizeof(side), "%s-wal", tmp);
	(void)unlink(side);
	snprintf(side, sizeof(side), "%s-shm", tmp);
	(void)unlink(side);
	if ((s = store_open_file(tmp, err, errlen, NULL)) == NULL)
		return -1;
	store_close(s);
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (sync_path(tmp, 0) == -1 || rename(tmp, path) == -1 ||
	    sync_path(dir, 1) == -1) {
		snprintf(err, errlen, "%s: creating it: %s", path, strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	return 0;
}

struct store *
store_open(const char *path, char *err, size_t errlen)
{
	enum store_trouble t = STORE_OK;
	struct store *s;
	struct stat st;

	if (errlen > 0)
		err[0] = '\0';
	if (path == NULL || *path == '\0') {
		snprintf(err, errlen, "no database path");
		return NULL;
	}
	if (lstat(path, &st) == -1) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return NULL;
		}
		if (store_build(path, err, errlen) == -1)
			return NULL;
	} else if (S_ISREG(st.st_mode) && st.st_size == 0) {
		/* store_build never leaves an empty file under this name. */
		snprintf(err, errlen, "%s is empty: it was truncated, and every key, "
		    "contact and queued message in it is gone; veild will not "
		    "start afresh over it.  Restore it from a backup, or remove it "
		    "(with %s-wal and %s-shm) to start with a new identity", path,
		    path, path);
		return NULL;
	}
	if ((s = store_open_file(path, err, errlen, &t)) != NULL)
		return s;
	if (t == STORE_DAMAGED) {
		size_t n = strlen(err);

		snprintf(err + n, errlen - n, ".  The database is damaged and veild "
		    "will not use it: stop here, keep a copy of %s, %s-wal and "
		    "%s-shm, then restore them from a backup (or remove them to "
		    "start with a new identity)", path, path, path);
	}
	return NULL;
}

static struct store *
store_open_file(const char *path, char *err, size_t errlen,
    enum store_trouble *trouble)
{
	struct store *s;
	char mode[16];
	int64_t fk;
	int i, flags;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium initialisation failed");
		return NULL;
	}
	if (create_private(path, err, errlen) == -1)
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* One thread uses the connection: no sqlite mutexes needed. */
	flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		if (s->db != NULL)
			st_seterr(s, "%s", sqlite3_errmsg(s->db));
		else
			st_seterr(s, "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
	/* Hardening against a tampered file: no schema-defined functions or
	 * views running with our privileges, no writes to sqlite_master. */
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

	/* WAL: readers never block the writer, and a commit is one append. */
	{
		sqlite3_stmt *q;

		if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1,
		    &q, NULL) != SQLITE_OK) {
			st_dberr(s);
			goto fail;
		}
		mode[0] = '\0';
		if (sqlite3_step(q) == SQLITE_ROW &&
		    sqlite3_column_text(q, 0) != NULL)
			snprintf(mode, sizeof(mode), "%s",
			    (const char *)sqlite3_column_text(q, 0));
		else
			st_dberr(s);
		sqlite3_finalize(q);
		if (strcmp(mode, "wal") != 0) {
			if (s->err[0] == '\0')
				st_seterr(s, "cannot switch to WAL mode");
			goto fail;
		}
	}
	/*
	 * "Committed before acknowledged" must survive power loss, not only a
	 * crash of veild: in WAL mode synchronous=NORMAL fsyncs only at
	 * checkpoints, so the last transactions before an OS crash can roll
	 * back after a reply already told the app its message was accepted.
	 * FULL fsyncs the WAL at every commit.  secure_delete zeroes freed
	 * pages (taken bodies, old pair keys); temp_store keeps sort spills
	 * out of temporary files.
	 */
	if (st_exec(s, "PRAGMA synchronous = FULL;"
	    "PRAGMA foreign_keys = ON;"
	    "PRAGMA secure_delete = ON;"
	    /* A checkpoint truncates the WAL to nothing: page images of
	     * wiped keys do not linger in it (store_checkpoint). */
	    "PRAGMA journal_size_limit = 0;"
	    "PRAGMA temp_store = MEMORY;"
	    /* 1 MiB of page cache: the daemon keeps its working set in
	     * memory itself; sqlite's default 2 MiB is RSS for nothing. */
	    "PRAGMA cache_size = -1024;") == -1)
		goto fail;
	if (st_pragma_int(s, "PRAGMA foreign_keys", &fk) == -1)
		goto fail;
	if (fk != 1) {
		st_seterr(s, "this sqlite cannot enforce foreign keys");
		goto fail;
	}
	if (migrate(s) == -1 || st_quick_check(s) == -1)
		goto fail;
	for (i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stsql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
			char keep[sizeof(s->err)];

			snprintf(keep, sizeof(keep), "%s",
			    sqlite3_errmsg(s->db));
			st_seterr(s, "preparing statement %d: %.200s", i, keep);
			goto fail;
		}
	}
	for (i = 0; i < STORE_META_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, metasql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &s->meta[i], NULL) != SQLITE_OK) {
			st_dberr(s);
			goto fail;
		}
	}
	if (store_file_prepare(s) == -1)
		goto fail;
	return s;
fail:
	snprintf(err, errlen, "%s: %s", path, s->err);
	if (trouble != NULL)
		*trouble = store_trouble(s);
	store_close(s);
	return NULL;
}

void
store_close(struct store *s)
{
	int i;

	if (s == NULL)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	for (i = 0; i < STORE_META_COUNT; i++)
		sqlite3_finalize(s->meta[i]);
	for (i = 0; i < STORE_FILE_STMTS; i++)
		sqlite3_finalize(s->fst[i]);
	st_seal_free(s);
	if (s->db != NULL) {
		if (!sqlite3_get_autocommit(s->db))
			(void)st_exec(s, "ROLLBACK");
		sqlite3_close(s->db);
	}
	free(s);
}

const char *
store_errmsg(struct store *s)
{
	if (s == NULL)
		return "no store";
	return s->err;
}

/* ---- transactions ---------------------------------------------------- */

int
store_begin(struct store *s)
{
	return st_simple(s, ST_BEGIN);
}

int
store_commit(struct store *s)
{
	return st_simple(s, ST_COMMIT);
}

int
store_rollback(struct store *s)
{
	if (sqlite3_get_autocommit(s->db))
		return 0;
	return st_simple(s, ST_ROLLBACK);
}

int
store_savepoint(struct store *s)
{
	return st_simple(s, ST_USP);
}

int
store_release(struct store *s)
{
	return st_simple(s, ST_URELEASE);
}

int
store_rollback_to(struct store *s)
{
	/* ROLLBACK TO keeps the savepoint open: release it as well. */
	if (st_simple(s, ST_UROLLBACK_TO) == -1)
		return -1;
	return st_simple(s, ST_URELEASE);
}

/*
 * Keys are wiped by overwriting their rows, but the WAL keeps the pages it
 * had until a checkpoint copies them back and resets it: old roots would
 * linger there (reviews/security.md M6).  TRUNCATE empties the file.
 * Only when something was written since the last one.
 */
int
store_checkpoint(struct store *s)
{
	int changes = sqlite3_total_changes(s->db);

	if (changes == s->checkpointed || !sqlite3_get_autocommit(s->db))
		return 0;
	if (st_exec(s, "PRAGMA wal_checkpoint(TRUNCATE)") != 0)
		return -1;
	s->checkpointed = changes;
	return 1;
}

int
store_probe(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db)) {
		st_seterr(s, "probe inside a transaction");
		return -1;
	}
	if (st_exec(s, "BEGIN IMMEDIATE") == -1)
		return -1;
	if (st_exec(s, "UPDATE meta SET wire = wire WHERE id = 1") == -1 ||
	    st_exec(s, "COMMIT") == -1) {
		char keep[sizeof(s->err)];
		int code = s->errcode, sys = s->syserr;

		memcpy(keep, s->err, sizeof(keep));
		if (!sqlite3_get_autocommit(s->db))
			(void)st_exec(s, "ROLLBACK");
		memcpy(s->err, keep, sizeof(keep));
		s->errcode = code;
		s->syserr = sys;
		return -1;
	}
	return 0;
}

int
store_changes(struct store *s)
{
	return sqlite3_total_changes(s->db);
}

int
store_in_transaction(struct store *s)
{
	return !sqlite3_get_autocommit(s->db);
}

