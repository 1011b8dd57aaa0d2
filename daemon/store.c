/* veild store: the sqlite3 database (schema, migrations, every SQL statement). */
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
#include "store.h"

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

/*
 * Schema migrations: migrations[i] takes user_version i to i + 1 and runs
 * in its own transaction together with the user_version bump, so a crash
 * or an error leaves the database at a version it had.  Append only: never
 * edit a migration that has shipped.
 */
struct store;
static int migrate_2_data(struct store *);

static const struct migration {
	const char	*sql;
	int		(*fn)(struct store *);	/* after sql, same transaction */
} migrations[] = {
	/* 1: initial schema */
	{
	"CREATE TABLE kv ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value BLOB NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE contact ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  state INTEGER NOT NULL,"
	"  peer_name TEXT NOT NULL DEFAULT '',"
	"  peer_pk BLOB NOT NULL CHECK (length(peer_pk) = 32),"
	"  peer_inbox TEXT NOT NULL DEFAULT '',"
	"  my_inbox TEXT NOT NULL DEFAULT '',"
	"  pair BLOB,"
	"  agree BLOB,"
	"  verified INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL"
	");"
	"CREATE INDEX contact_my_inbox ON contact(my_inbox) WHERE my_inbox <> '';"
	"CREATE INDEX contact_peer_pk ON contact(peer_pk);"
	"CREATE TABLE inbox ("
	"  id INTEGER PRIMARY KEY,"
	"  topic TEXT NOT NULL UNIQUE,"
	"  contact_id INTEGER REFERENCES contact(id) ON DELETE SET NULL,"
	"  kind INTEGER NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  retire_at INTEGER"
	");"
	"CREATE INDEX inbox_contact ON inbox(contact_id);"
	"CREATE INDEX inbox_retire ON inbox(retire_at) WHERE retire_at IS NOT NULL;"
	"CREATE TABLE outbox ("
	"  id INTEGER PRIMARY KEY,"
	"  contact_id INTEGER NOT NULL REFERENCES contact(id) ON DELETE CASCADE,"
	"  msgid BLOB NOT NULL UNIQUE CHECK (length(msgid) = 16),"
	"  type INTEGER NOT NULL,"
	"  body BLOB NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  next_try INTEGER NOT NULL"
	");"
	"CREATE INDEX outbox_due ON outbox(next_try, id);"
	"CREATE INDEX outbox_contact ON outbox(contact_id);"
	"CREATE TABLE rx ("
	"  id INTEGER PRIMARY KEY,"
	"  contact_id INTEGER NOT NULL REFERENCES contact(id) ON DELETE CASCADE,"
	"  msgid BLOB NOT NULL CHECK (length(msgid) = 16),"
	"  type INTEGER NOT NULL,"
	"  body BLOB,"
	"  received_at INTEGER NOT NULL,"
	"  taken INTEGER NOT NULL DEFAULT 0,"
	"  UNIQUE (contact_id, msgid)"
	");"
	"CREATE INDEX rx_pending ON rx(received_at, id) WHERE taken = 0;"
	"CREATE INDEX rx_taken ON rx(received_at) WHERE taken = 1;", NULL },
	/*
	 * 2: typed state.  The engine's key/value families become columns
	 * and tables (what belongs to a contact goes with its row), the
	 * one-time marker joins its inbox row, and kv goes.  The SQL moves
	 * what SQL can; migrate_2_data() decodes the big-endian integers and
	 * hex keys, then drops kv.
	 */
	{ "CREATE TABLE meta ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  identity_pk BLOB CHECK (identity_pk IS NULL OR length(identity_pk) = 32),"
	"  identity_sk BLOB CHECK (identity_sk IS NULL OR length(identity_sk) = 32),"
	"  card_cid TEXT NOT NULL DEFAULT '',"
	"  shared_inbox TEXT NOT NULL DEFAULT '',"
	"  client_id TEXT NOT NULL DEFAULT '',"
	"  client_id_prev TEXT NOT NULL DEFAULT '',"
	"  card_client_id TEXT NOT NULL DEFAULT '',"
	"  epoch INTEGER NOT NULL DEFAULT 0,"
	"  rotation_next INTEGER NOT NULL DEFAULT 0"
	");"
	"INSERT INTO meta (id, identity_pk, identity_sk, card_cid, shared_inbox,"
	"  client_id, client_id_prev, card_client_id) SELECT 1,"
	"  (SELECT value FROM kv WHERE key = 'identity.pk'),"
	"  (SELECT value FROM kv WHERE key = 'identity.sk'),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'card.cid'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'inbox.shared'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'client.id'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'client.id.prev'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'client.card_id'), '');"
	"ALTER TABLE contact ADD COLUMN upd_inbox TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE contact ADD COLUMN upd_msgid BLOB"
	"  CHECK (upd_msgid IS NULL OR length(upd_msgid) = 16);"
	"ALTER TABLE contact ADD COLUMN upd_prev_until INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE contact ADD COLUMN req_msgid BLOB"
	"  CHECK (req_msgid IS NULL OR length(req_msgid) = 16);"
	"ALTER TABLE contact ADD COLUMN accept_frames BLOB;"
	"UPDATE contact SET"
	"  upd_inbox = coalesce((SELECT CAST(value AS TEXT) FROM kv"
	"    WHERE key = 'upd.inbox:' || contact.id), ''),"
	"  upd_msgid = (SELECT value FROM kv WHERE key = 'upd.msgid:' || contact.id"
	"    AND length(value) = 16),"
	"  req_msgid = (SELECT value FROM kv WHERE key = 'req.msgid:' || contact.id"
	"    AND length(value) = 16),"
	"  accept_frames = (SELECT value FROM kv"
	"    WHERE key = 'accept.frames:' || contact.id AND length(value) > 0);"
	"CREATE TABLE refused ("
	"  peer_pk BLOB PRIMARY KEY NOT NULL CHECK (length(peer_pk) = 32)"
	") WITHOUT ROWID;"
	"ALTER TABLE inbox ADD COLUMN one_time INTEGER NOT NULL DEFAULT 0;"
	"UPDATE inbox SET one_time = 1"
	"  WHERE 'card.once:' || topic IN (SELECT key FROM kv);"
	"DROP INDEX contact_my_inbox;", migrate_2_data },
};
#define NMIGRATIONS	((int)(sizeof(migrations) / sizeof(migrations[0])))
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) ==
    STORE_SCHEMA_VERSION, "STORE_SCHEMA_VERSION = number of migrations");

#define CONTACT_COLS "id, name, state, peer_name, peer_pk, peer_inbox, " \
	"my_inbox, pair, agree, verified, created, updated, upd_inbox, " \
	"upd_msgid, upd_prev_until, req_msgid"
#define INBOX_COLS "id, topic, contact_id, kind, created, retire_at, one_time"
#define META_COLS "card_cid, shared_inbox, client_id, client_id_prev, " \
	"card_client_id, epoch, rotation_next"
#define OUTBOX_COLS "id, contact_id, msgid, type, body, created, attempts, " \
	"next_try"

enum st {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
	ST_USP, ST_URELEASE, ST_UROLLBACK_TO,
	ST_META_GET, ST_ID_GET, ST_ID_SET,
	ST_C_ADD, ST_C_BY_ID, ST_C_BY_NAME, ST_C_BY_PK, ST_C_ID_BY_NAME,
	ST_C_ID_BY_PK, ST_C_UPDATE, ST_C_DEL, ST_C_RETIRE_INBOXES, ST_C_LIST,
	ST_C_AF_GET, ST_C_AF_SET, ST_REF_ADD, ST_REF_HAS,
	ST_I_ADD, ST_I_GET, ST_I_LIST, ST_I_LIST_ALL, ST_I_RETIRE, ST_I_EXPIRED,
	ST_I_DEL,
	ST_O_ADD, ST_O_DUE, ST_O_RESCHED, ST_O_FIND, ST_O_DEL, ST_O_COUNT,
	ST_O_COUNT_ALL,
	ST_R_ADD, ST_R_PENDING, ST_R_PENDING_COUNT, ST_R_TAKE, ST_R_PRUNE,
	ST_COUNT
};

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

	[ST_C_ADD] = "INSERT INTO contact (name, state, peer_name, peer_pk, "
	    "peer_inbox, my_inbox, pair, agree, verified, created, updated, "
	    "upd_inbox, upd_msgid, upd_prev_until, req_msgid) "
	    "VALUES (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
	    "?15, ?16)",
	[ST_C_BY_ID] = "SELECT " CONTACT_COLS " FROM contact WHERE id = ?1",
	[ST_C_BY_NAME] = "SELECT " CONTACT_COLS " FROM contact WHERE name = ?1",
	[ST_C_BY_PK] = "SELECT " CONTACT_COLS " FROM contact "
	    "WHERE peer_pk = ?1 ORDER BY id LIMIT 1",
	[ST_C_ID_BY_NAME] = "SELECT id FROM contact WHERE name = ?1",
	[ST_C_ID_BY_PK] = "SELECT id FROM contact WHERE peer_pk = ?1 "
	    "ORDER BY id LIMIT 1",
	[ST_C_UPDATE] = "UPDATE contact SET name = ?2, state = ?3, "
	    "peer_name = ?4, peer_pk = ?5, peer_inbox = ?6, my_inbox = ?7, "
	    "pair = ?8, agree = ?9, verified = ?10, updated = ?12, "
	    "upd_inbox = ?13, upd_msgid = ?14, upd_prev_until = ?15, "
	    "req_msgid = ?16 WHERE id = ?1",
	[ST_C_AF_GET] = "SELECT accept_frames FROM contact WHERE id = ?1",
	[ST_C_AF_SET] = "UPDATE contact SET accept_frames = ?2 WHERE id = ?1",
	[ST_REF_ADD] = "INSERT INTO refused (peer_pk) VALUES (?1) "
	    "ON CONFLICT (peer_pk) DO NOTHING",
	[ST_REF_HAS] = "SELECT 1 FROM refused WHERE peer_pk = ?1",
	[ST_C_DEL] = "DELETE FROM contact WHERE id = ?1",
	[ST_C_RETIRE_INBOXES] = "UPDATE inbox SET retire_at = ?2 "
	    "WHERE contact_id = ?1",
	[ST_C_LIST] = "SELECT " CONTACT_COLS " FROM contact ORDER BY name",

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
	[ST_O_FIND] = "SELECT id, contact_id, msgid, type, NULL, created, "
	    "attempts, next_try FROM outbox WHERE msgid = ?2 AND contact_id = ?1",
	[ST_O_DEL] = "DELETE FROM outbox WHERE id = ?1",
	[ST_O_COUNT] = "SELECT count(*) FROM outbox WHERE contact_id = ?1",
	[ST_O_COUNT_ALL] = "SELECT count(*) FROM outbox",

	[ST_R_ADD] = "INSERT INTO rx (contact_id, msgid, type, body, "
	    "received_at, taken) VALUES (?1, ?2, ?3, ?4, ?5, 0) "
	    "ON CONFLICT (contact_id, msgid) DO NOTHING",
	[ST_R_PENDING] = "SELECT id, contact_id, msgid, type, body, received_at "
	    "FROM rx WHERE taken = 0 ORDER BY received_at, id LIMIT ?1",
	[ST_R_PENDING_COUNT] = "SELECT count(*) FROM rx WHERE taken = 0",
	[ST_R_TAKE] = "UPDATE rx SET taken = 1, body = NULL "
	    "WHERE id = ?1 AND taken = 0",
	[ST_R_PRUNE] = "DELETE FROM rx WHERE taken = 1 AND received_at < ?1",
};

/* One UPDATE per meta field: the column names never come from a caller. */
static const char *const metasql[STORE_META_COUNT] = {
	[STORE_META_CARD_CID] = "UPDATE meta SET card_cid = ?1 WHERE id = 1",
	[STORE_META_SHARED_INBOX] =
	    "UPDATE meta SET shared_inbox = ?1 WHERE id = 1",
	[STORE_META_CLIENT_ID] = "UPDATE meta SET client_id = ?1 WHERE id = 1",
	[STORE_META_CLIENT_ID_PREV] =
	    "UPDATE meta SET client_id_prev = ?1 WHERE id = 1",
	[STORE_META_CARD_CLIENT_ID] =
	    "UPDATE meta SET card_client_id = ?1 WHERE id = 1",
	[STORE_META_EPOCH] = "UPDATE meta SET epoch = ?1 WHERE id = 1",
	[STORE_META_ROTATION_NEXT] =
	    "UPDATE meta SET rotation_next = ?1 WHERE id = 1",
};

struct store {
	sqlite3		*db;
	sqlite3_stmt	*st[ST_COUNT];
	sqlite3_stmt	*meta[STORE_META_COUNT];
	char		 err[256];
};

static void seterr(struct store *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
seterr(struct store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

/* sqlite's messages name tables and columns, never bound values. */
static int
dberr(struct store *s)
{
	seterr(s, "%s", sqlite3_errmsg(s->db));
	return -1;
}

/*
 * A cached statement ready for binding.  A statement still stepping means
 * a callback re-entered the function that is iterating with it; resetting
 * it would pull the rows out from under that loop.
 */
static sqlite3_stmt *
stmt(struct store *s, enum st i)
{
	if (sqlite3_stmt_busy(s->st[i])) {
		seterr(s, "reentrant call from a store callback");
		return NULL;
	}
	return s->st[i];
}

/* Resets and drops bindings: SQLITE_STATIC blobs point at caller memory. */
static void
done(sqlite3_stmt *q)
{
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

/* Runs a statement that returns no rows; -1 on error. */
static int
run(struct store *s, sqlite3_stmt *q)
{
	int rc;

	rc = sqlite3_step(q);
	if (rc != SQLITE_DONE) {
		if (rc == SQLITE_ROW)
			seterr(s, "statement returned rows");
		else
			dberr(s);
		done(q);
		return -1;
	}
	done(q);
	return 0;
}

/* Runs a writing statement; returns rows changed, STORE_EXISTS on a
 * UNIQUE/PRIMARY KEY conflict, -1 on other errors. */
static int
change(struct store *s, sqlite3_stmt *q)
{
	int rc, xrc;

	rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		done(q);
		return sqlite3_changes(s->db);
	}
	xrc = sqlite3_extended_errcode(s->db);
	dberr(s);
	done(q);
	if (xrc == SQLITE_CONSTRAINT_UNIQUE ||
	    xrc == SQLITE_CONSTRAINT_PRIMARYKEY)
		return STORE_EXISTS;
	return -1;
}

static int
simple(struct store *s, enum st i)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, i)) == NULL)
		return -1;
	return run(s, q);
}

/* Internal atomic groups; savepoints nest inside a caller's store_begin. */
static int
sp_begin(struct store *s)
{
	return simple(s, ST_SAVEPOINT);
}

static int
sp_end(struct store *s, int ok)
{
	char keep[sizeof(s->err)];

	if (ok)
		return simple(s, ST_RELEASE);
	/* keep the first error, not the rollback's */
	memcpy(keep, s->err, sizeof(keep));
	if (simple(s, ST_ROLLBACK_TO) == 0)
		(void)simple(s, ST_RELEASE);
	memcpy(s->err, keep, sizeof(keep));
	return -1;
}

static int64_t
count(struct store *s, sqlite3_stmt *q)
{
	int64_t n;

	if (sqlite3_step(q) != SQLITE_ROW) {
		dberr(s);
		done(q);
		return -1;
	}
	n = sqlite3_column_int64(q, 0);
	done(q);
	return n;
}

static int
bind_text(sqlite3_stmt *q, int i, const char *str)
{
	return sqlite3_bind_text(q, i, str, -1, SQLITE_STATIC);
}

/* Empty blobs are stored as NULL: sqlite binds a NULL pointer as NULL. */
static int
bind_blob(sqlite3_stmt *q, int i, const void *b, size_t len)
{
	if (len == 0)
		return sqlite3_bind_null(q, i);
	return sqlite3_bind_blob64(q, i, b, len, SQLITE_STATIC);
}

/* For a NOT NULL column: an empty blob is a zero-length blob. */
static int
bind_body(sqlite3_stmt *q, int i, const void *b, size_t len)
{
	if (len == 0)
		return sqlite3_bind_zeroblob(q, i, 0);
	return sqlite3_bind_blob64(q, i, b, len, SQLITE_STATIC);
}

/* ?1..?4 of the outbox and rx INSERTs, which store a message alike. */
static int
bind_msg(sqlite3_stmt *q, int64_t contact_id,
    const uint8_t msgid[STORE_MSGID_BYTES], int type, const void *body,
    size_t len)
{
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_int(q, 3, type) != SQLITE_OK ||
	    bind_body(q, 4, body, len) != SQLITE_OK)
		return -1;
	return 0;
}

static int
bind_fail(struct store *s, sqlite3_stmt *q)
{
	dberr(s);
	done(q);
	return -1;
}

/* Runs the writing statement i with ?1 = v: rows changed, or < 0 as
 * change() says. */
static int
change_i64(struct store *s, enum st i, int64_t v)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, i)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, v) != SQLITE_OK)
		return bind_fail(s, q);
	return change(s, q);
}

/*
 * Steps a SELECT of at most one row whose parameters are bound: 1 with
 * the row ready (the caller reads it, then calls done()), 0 if there is
 * none, -1 on error; q is reset already for 0 and -1.
 */
static int
one_row(struct store *s, sqlite3_stmt *q)
{
	int rc;

	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		done(q);
		return 0;
	}
	return bind_fail(s, q);
}

/* Ends a loop over rows: rc is the last sqlite3_step() result, n the
 * rows handed out (or -1).  Returns n, or -1 if stepping failed. */
static int
rows_end(struct store *s, sqlite3_stmt *q, int rc, int n)
{
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		dberr(s);
		n = -1;
	}
	done(q);
	return n;
}

/* Copies a text column into a fixed field; the database file is not
 * trusted to respect our limits. */
static int
col_text(struct store *s, sqlite3_stmt *q, int i, char *out, size_t outlen)
{
	const unsigned char *t;
	int n;

	t = sqlite3_column_text(q, i);
	n = sqlite3_column_bytes(q, i);
	if (t == NULL) {
		if (sqlite3_column_type(q, i) != SQLITE_NULL) {
			seterr(s, "out of memory");
			return -1;
		}
		out[0] = '\0';
		return 0;
	}
	if (n < 0 || (size_t)n >= outlen || memchr(t, '\0', n) != NULL) {
		seterr(s, "corrupt text in column %d", i);
		return -1;
	}
	memcpy(out, t, n);
	out[n] = '\0';
	return 0;
}

static int
col_blob(struct store *s, sqlite3_stmt *q, int i, uint8_t *out, size_t outlen,
    size_t *len, int exact)
{
	const void *b;
	int n;

	b = sqlite3_column_blob(q, i);
	n = sqlite3_column_bytes(q, i);
	if (n < 0 || (size_t)n > outlen || (exact && (size_t)n != outlen) ||
	    (b == NULL && n != 0)) {
		seterr(s, "corrupt blob in column %d", i);
		return -1;
	}
	if (n > 0)
		memcpy(out, b, n);
	if (len != NULL)
		*len = n;
	return 0;
}

/* A blob column handed out by pointer (valid until the next step). */
static int
col_ref(struct store *s, sqlite3_stmt *q, int i, const uint8_t **out,
    size_t *len)
{
	int n;

	*out = sqlite3_column_blob(q, i);
	n = sqlite3_column_bytes(q, i);
	if (n < 0 || (*out == NULL && n != 0 &&
	    sqlite3_column_type(q, i) != SQLITE_NULL)) {
		seterr(s, "out of memory");
		return -1;
	}
	*len = *out == NULL ? 0 : (size_t)n;
	return 0;
}

static int
col_int(sqlite3_stmt *q, int i)
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

static int
exec(struct store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		seterr(s, "%s", msg != NULL ? msg : sqlite3_errmsg(s->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int
pragma_int(struct store *s, const char *sql, int64_t *val)
{
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return dberr(s);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		dberr(s);
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

	if (pragma_int(s, "PRAGMA user_version", &ver) == -1)
		return -1;
	if (ver < 0 || ver > NMIGRATIONS) {
		seterr(s, "database schema version %" PRId64 " is newer than "
		    "this veild supports (%d); refusing to open it", ver,
		    NMIGRATIONS);
		return -1;
	}
	for (v = (int)ver; v < NMIGRATIONS; v++) {
		if (exec(s, "BEGIN IMMEDIATE") == -1)
			return -1;
		/* PRAGMA cannot take a bound parameter */
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (exec(s, migrations[v].sql) == -1 ||
		    (migrations[v].fn != NULL && migrations[v].fn(s) == -1) ||
		    exec(s, sql) == -1) {
			char keep[sizeof(s->err)];

			memcpy(keep, s->err, sizeof(keep));
			(void)exec(s, "ROLLBACK");
			snprintf(s->err, sizeof(s->err),
			    "schema migration %d failed: %.200s", v + 1, keep);
			return -1;
		}
		if (exec(s, "COMMIT") == -1)
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

struct store *
store_open(const char *path, char *err, size_t errlen)
{
	struct store *s;
	char mode[16];
	int64_t fk;
	int i, flags;

	if (errlen > 0)
		err[0] = '\0';
	if (path == NULL || *path == '\0') {
		snprintf(err, errlen, "no database path");
		return NULL;
	}
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
			seterr(s, "%s", sqlite3_errmsg(s->db));
		else
			seterr(s, "out of memory");
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
			dberr(s);
			goto fail;
		}
		mode[0] = '\0';
		if (sqlite3_step(q) == SQLITE_ROW &&
		    sqlite3_column_text(q, 0) != NULL)
			snprintf(mode, sizeof(mode), "%s",
			    (const char *)sqlite3_column_text(q, 0));
		else
			dberr(s);
		sqlite3_finalize(q);
		if (strcmp(mode, "wal") != 0) {
			if (s->err[0] == '\0')
				seterr(s, "cannot switch to WAL mode");
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
	if (exec(s, "PRAGMA synchronous = FULL;"
	    "PRAGMA foreign_keys = ON;"
	    "PRAGMA secure_delete = ON;"
	    "PRAGMA temp_store = MEMORY;"
	    /* 1 MiB of page cache: the daemon keeps its working set in
	     * memory itself; sqlite's default 2 MiB is RSS for nothing. */
	    "PRAGMA cache_size = -1024;") == -1)
		goto fail;
	if (pragma_int(s, "PRAGMA foreign_keys", &fk) == -1)
		goto fail;
	if (fk != 1) {
		seterr(s, "this sqlite cannot enforce foreign keys");
		goto fail;
	}
	if (migrate(s) == -1)
		goto fail;
	for (i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stsql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
			char keep[sizeof(s->err)];

			snprintf(keep, sizeof(keep), "%s",
			    sqlite3_errmsg(s->db));
			seterr(s, "preparing statement %d: %.200s", i, keep);
			goto fail;
		}
	}
	for (i = 0; i < STORE_META_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, metasql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &s->meta[i], NULL) != SQLITE_OK) {
			dberr(s);
			goto fail;
		}
	}
	return s;
fail:
	snprintf(err, errlen, "%s: %s", path, s->err);
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
	if (s->db != NULL) {
		if (!sqlite3_get_autocommit(s->db))
			(void)exec(s, "ROLLBACK");
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
	return simple(s, ST_BEGIN);
}

int
store_commit(struct store *s)
{
	return simple(s, ST_COMMIT);
}

int
store_rollback(struct store *s)
{
	if (sqlite3_get_autocommit(s->db))
		return 0;
	return simple(s, ST_ROLLBACK);
}

int
store_savepoint(struct store *s)
{
	return simple(s, ST_USP);
}

int
store_release(struct store *s)
{
	return simple(s, ST_URELEASE);
}

int
store_rollback_to(struct store *s)
{
	/* ROLLBACK TO keeps the savepoint open: release it as well. */
	if (simple(s, ST_UROLLBACK_TO) == -1)
		return -1;
	return simple(s, ST_URELEASE);
}

int
store_in_transaction(struct store *s)
{
	return !sqlite3_get_autocommit(s->db);
}

/* ---- migration 2: the data kv held ------------------------------------ */

static int64_t
be64(const uint8_t b[8])
{
	uint64_t u = 0;

	for (int i = 0; i < 8; i++)
		u = u << 8 | b[i];
	return (int64_t)u;
}

/* Runs sql with ?1 = v and, when key is not NULL, ?2 = key. */
static int
exec_i64(struct store *s, const char *sql, int64_t v, const char *key)
{
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return dberr(s);
	if (sqlite3_bind_int64(q, 1, v) != SQLITE_OK ||
	    (key != NULL && sqlite3_bind_text(q, 2, key, -1,
	    SQLITE_STATIC) != SQLITE_OK)) {
		dberr(s);
		sqlite3_finalize(q);
		return -1;
	}
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : dberr(s);
}

/*
 * What SQL cannot convert: the 8-byte big-endian integers (epoch, next
 * rotation, a contact's previous-key deadline) and the hex keys of the
 * refused list.  A row that does not decode is dropped with the table:
 * it was damaged, and each of these has a safe default.
 */
static int
migrate_2_data(struct store *s)
{
	sqlite3_stmt *q, *ins = NULL;
	const char *key;
	const uint8_t *v;
	uint8_t pk[STORE_PK_BYTES];
	size_t blen;
	int rc, n, ok = -1;

	if (sqlite3_prepare_v2(s->db, "SELECT key, value FROM kv", -1, &q,
	    NULL) != SQLITE_OK)
		return dberr(s);
	if (sqlite3_prepare_v2(s->db, "INSERT INTO refused (peer_pk) "
	    "VALUES (?1) ON CONFLICT (peer_pk) DO NOTHING", -1, &ins,
	    NULL) != SQLITE_OK) {
		dberr(s);
		goto out;
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		key = (const char *)sqlite3_column_text(q, 0);
		v = sqlite3_column_blob(q, 1);
		n = sqlite3_column_bytes(q, 1);
		if (key == NULL)
			continue;
		if (n == 8 && v != NULL && strcmp(key, "rotation.epoch") == 0)
			rc = exec_i64(s, "UPDATE meta SET epoch = ?1", be64(v),
			    NULL);
		else if (n == 8 && v != NULL &&
		    strcmp(key, "rotation.next") == 0)
			rc = exec_i64(s, "UPDATE meta SET rotation_next = ?1",
			    be64(v), NULL);
		else if (n == 8 && v != NULL &&
		    strncmp(key, "upd.prev_until:", 15) == 0)
			rc = exec_i64(s, "UPDATE contact SET upd_prev_until = ?1 "
			    "WHERE 'upd.prev_until:' || id = ?2", be64(v), key);
		else if (strncmp(key, "rejected:", 9) == 0 &&
		    strlen(key + 9) == 2 * STORE_PK_BYTES &&
		    sodium_hex2bin(pk, sizeof(pk), key + 9, 2 * STORE_PK_BYTES,
		    NULL, &blen, NULL) == 0 && blen == sizeof(pk)) {
			if (sqlite3_bind_blob(ins, 1, pk, sizeof(pk),
			    SQLITE_STATIC) != SQLITE_OK ||
			    sqlite3_step(ins) != SQLITE_DONE)
				rc = dberr(s);
			else
				rc = 0;
			sqlite3_reset(ins);
			sqlite3_clear_bindings(ins);
		} else
			rc = 0;
		if (rc != 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		dberr(s);
		goto out;
	}
	ok = 0;
out:
	sqlite3_finalize(ins);
	sqlite3_finalize(q);
	if (ok == 0)
		ok = exec(s, "DROP TABLE kv");
	return ok;
}

/* ---- meta: the daemon's own state, one typed row --------------------- */

int
store_meta_get(struct store *s, struct store_meta *m)
{
	sqlite3_stmt *q;
	int rc;

	memset(m, 0, sizeof(*m));
	if ((q = stmt(s, ST_META_GET)) == NULL)
		return -1;
	if ((rc = one_row(s, q)) != 1) {
		if (rc == 0)
			seterr(s, "the meta row is missing");
		return -1;
	}
	m->epoch = sqlite3_column_int64(q, 5);
	m->rotation_next = sqlite3_column_int64(q, 6);
	rc = col_text(s, q, 0, m->card_cid, sizeof(m->card_cid)) == -1 ||
	    col_text(s, q, 1, m->shared_inbox, sizeof(m->shared_inbox)) == -1 ||
	    col_text(s, q, 2, m->client_id, sizeof(m->client_id)) == -1 ||
	    col_text(s, q, 3, m->client_id_prev, sizeof(m->client_id_prev)) == -1 ||
	    col_text(s, q, 4, m->card_client_id, sizeof(m->card_client_id)) == -1;
	done(q);
	return rc ? -1 : 1;
}

static int
meta_run(struct store *s, sqlite3_stmt *q)
{
	int rc = change(s, q);

	if (rc == 0)
		seterr(s, "the meta row is missing");
	return rc == 1 ? 0 : -1;
}

int
store_meta_set_text(struct store *s, enum store_meta_field f, const char *v)
{
	sqlite3_stmt *q;

	if (f < 0 || f >= STORE_META_COUNT || f == STORE_META_EPOCH ||
	    f == STORE_META_ROTATION_NEXT || v == NULL ||
	    strnlen(v, STORE_TOPIC_MAX + 1) > STORE_TOPIC_MAX) {
		seterr(s, "bad meta field or value");
		return -1;
	}
	q = s->meta[f];
	if (bind_text(q, 1, v) != SQLITE_OK)
		return bind_fail(s, q);
	return meta_run(s, q);
}

int
store_meta_set_int(struct store *s, enum store_meta_field f, int64_t v)
{
	sqlite3_stmt *q;

	if (f != STORE_META_EPOCH && f != STORE_META_ROTATION_NEXT) {
		seterr(s, "bad meta field");
		return -1;
	}
	q = s->meta[f];
	if (sqlite3_bind_int64(q, 1, v) != SQLITE_OK)
		return bind_fail(s, q);
	return meta_run(s, q);
}

int
store_identity_get(struct store *s, uint8_t pk[STORE_PK_BYTES],
    uint8_t sk[STORE_PK_BYTES])
{
	sqlite3_stmt *q;
	int rc;

	if ((q = stmt(s, ST_ID_GET)) == NULL)
		return -1;
	if ((rc = one_row(s, q)) != 1) {
		if (rc == 0)
			seterr(s, "the meta row is missing");
		return -1;
	}
	if (sqlite3_column_type(q, 0) == SQLITE_NULL &&
	    sqlite3_column_type(q, 1) == SQLITE_NULL) {
		done(q);
		return 0;
	}
	rc = col_blob(s, q, 0, pk, STORE_PK_BYTES, NULL, 1) == -1 ||
	    col_blob(s, q, 1, sk, STORE_PK_BYTES, NULL, 1) == -1;
	done(q);
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

	if ((q = stmt(s, ST_ID_SET)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, sk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return bind_fail(s, q);
	return meta_run(s, q);
}

int
store_refused_add(struct store *s, const uint8_t pk[STORE_PK_BYTES])
{
	sqlite3_stmt *q;

	if ((q = stmt(s, ST_REF_ADD)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return bind_fail(s, q);
	return change(s, q) < 0 ? -1 : 0;
}

int
store_refused_has(struct store *s, const uint8_t pk[STORE_PK_BYTES])
{
	sqlite3_stmt *q;
	int rc;

	if ((q = stmt(s, ST_REF_HAS)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return bind_fail(s, q);
	if ((rc = one_row(s, q)) == 1)
		done(q);
	return rc;
}

/* ---- contacts -------------------------------------------------------- */

static int
contact_ok(struct store *s, const struct store_contact *c)
{
	size_t n;

	n = strnlen(c->name, sizeof(c->name));
	if (n == 0 || n == sizeof(c->name)) {
		seterr(s, "bad contact name");
		return 0;
	}
	if (strnlen(c->peer_name, sizeof(c->peer_name)) ==
	    sizeof(c->peer_name) ||
	    strnlen(c->peer_inbox, sizeof(c->peer_inbox)) ==
	    sizeof(c->peer_inbox) ||
	    strnlen(c->my_inbox, sizeof(c->my_inbox)) ==
	    sizeof(c->my_inbox) ||
	    strnlen(c->upd_inbox, sizeof(c->upd_inbox)) ==
	    sizeof(c->upd_inbox)) {
		seterr(s, "unterminated contact field");
		return 0;
	}
	if (c->pair_len > sizeof(c->pair) || c->agree_len > sizeof(c->agree)) {
		seterr(s, "contact blob too large");
		return 0;
	}
	return 1;
}

/* Parameters ?1..?16 in CONTACT_COLS order. */
static int
contact_bind(sqlite3_stmt *q, const struct store_contact *c, int with_id)
{
	if ((with_id && sqlite3_bind_int64(q, 1, c->id) != SQLITE_OK) ||
	    bind_text(q, 2, c->name) != SQLITE_OK ||
	    sqlite3_bind_int(q, 3, c->state) != SQLITE_OK ||
	    bind_text(q, 4, c->peer_name) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 5, c->peer_pk, sizeof(c->peer_pk),
	    SQLITE_STATIC) != SQLITE_OK ||
	    bind_text(q, 6, c->peer_inbox) != SQLITE_OK ||
	    bind_text(q, 7, c->my_inbox) != SQLITE_OK ||
	    bind_blob(q, 8, c->pair, c->pair_len) != SQLITE_OK ||
	    bind_blob(q, 9, c->agree, c->agree_len) != SQLITE_OK ||
	    sqlite3_bind_int(q, 10, c->verified) != SQLITE_OK ||
	    (!with_id && sqlite3_bind_int64(q, 11, c->created) != SQLITE_OK) ||
	    sqlite3_bind_int64(q, 12, c->updated) != SQLITE_OK ||
	    bind_text(q, 13, c->upd_inbox) != SQLITE_OK ||
	    bind_blob(q, 14, c->upd_msgid, c->has_upd_msgid ?
	    STORE_MSGID_BYTES : 0) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 15, c->upd_prev_until) != SQLITE_OK ||
	    bind_blob(q, 16, c->req_msgid, c->has_req_msgid ?
	    STORE_MSGID_BYTES : 0) != SQLITE_OK)
		return -1;
	return 0;
}

static int
contact_row(struct store *s, sqlite3_stmt *q, struct store_contact *c)
{
	size_t n1 = 0, n2 = 0;

	memset(c, 0, sizeof(*c));
	c->upd_prev_until = sqlite3_column_int64(q, 14);
	c->id = sqlite3_column_int64(q, 0);
	c->state = col_int(q, 2);
	c->verified = col_int(q, 9);
	c->created = sqlite3_column_int64(q, 10);
	c->updated = sqlite3_column_int64(q, 11);
	if (col_text(s, q, 1, c->name, sizeof(c->name)) == -1 ||
	    col_text(s, q, 3, c->peer_name, sizeof(c->peer_name)) == -1 ||
	    col_blob(s, q, 4, c->peer_pk, sizeof(c->peer_pk), NULL, 1) == -1 ||
	    col_text(s, q, 5, c->peer_inbox, sizeof(c->peer_inbox)) == -1 ||
	    col_text(s, q, 6, c->my_inbox, sizeof(c->my_inbox)) == -1 ||
	    col_blob(s, q, 7, c->pair, sizeof(c->pair), &c->pair_len, 0) == -1 ||
	    col_blob(s, q, 8, c->agree, sizeof(c->agree), &c->agree_len,
	    0) == -1 ||
	    col_text(s, q, 12, c->upd_inbox, sizeof(c->upd_inbox)) == -1 ||
	    col_blob(s, q, 13, c->upd_msgid, sizeof(c->upd_msgid), &n1, 0) == -1 ||
	    col_blob(s, q, 15, c->req_msgid, sizeof(c->req_msgid), &n2, 0) == -1 ||
	    (n1 != 0 && n1 != STORE_MSGID_BYTES) ||
	    (n2 != 0 && n2 != STORE_MSGID_BYTES)) {
		if (s->err[0] == '\0')
			seterr(s, "corrupt message ID in a contact row");
		sodium_memzero(c, sizeof(*c));
		return -1;
	}
	c->has_upd_msgid = n1 != 0;
	c->has_req_msgid = n2 != 0;
	return 0;
}

int64_t
store_contact_add(struct store *s, const struct store_contact *c)
{
	sqlite3_stmt *q;
	int rc;

	if (!contact_ok(s, c) || (q = stmt(s, ST_C_ADD)) == NULL)
		return -1;
	if (contact_bind(q, c, 0) == -1)
		return bind_fail(s, q);
	if ((rc = change(s, q)) < 0)
		return rc;
	return sqlite3_last_insert_rowid(s->db);
}

/* Runs a one-row contact SELECT whose parameters are bound. */
static int
contact_one(struct store *s, sqlite3_stmt *q, struct store_contact *out)
{
	int rc;

	if ((rc = one_row(s, q)) != 1)
		return rc;
	rc = contact_row(s, q, out);
	done(q);
	return rc == -1 ? -1 : 1;
}

int
store_contact_get_by_id(struct store *s, int64_t id, struct store_contact *out)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, ST_C_BY_ID)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK)
		return bind_fail(s, q);
	return contact_one(s, q, out);
}

int
store_contact_get_by_name(struct store *s, const char *name,
    struct store_contact *out)
{
	sqlite3_stmt *q;

	if (name == NULL) {
		seterr(s, "no name");
		return -1;
	}
	if ((q = stmt(s, ST_C_BY_NAME)) == NULL)
		return -1;
	if (bind_text(q, 1, name) != SQLITE_OK)
		return bind_fail(s, q);
	return contact_one(s, q, out);
}

/* Runs a one-row "SELECT id" whose parameters are bound. */
static int
contact_id_one(struct store *s, sqlite3_stmt *q, int64_t *id)
{
	int rc;

	if ((rc = one_row(s, q)) != 1)
		return rc;
	*id = sqlite3_column_int64(q, 0);
	done(q);
	return 1;
}

int
store_contact_id_by_name(struct store *s, const char *name, int64_t *id)
{
	sqlite3_stmt *q;

	if (name == NULL) {
		seterr(s, "no name");
		return -1;
	}
	if ((q = stmt(s, ST_C_ID_BY_NAME)) == NULL)
		return -1;
	if (bind_text(q, 1, name) != SQLITE_OK)
		return bind_fail(s, q);
	return contact_id_one(s, q, id);
}

int
store_contact_id_by_peer_pk(struct store *s, const uint8_t pk[STORE_PK_BYTES],
    int64_t *id)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, ST_C_ID_BY_PK)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return bind_fail(s, q);
	return contact_id_one(s, q, id);
}

int
store_contact_get_by_peer_pk(struct store *s, const uint8_t pk[STORE_PK_BYTES],
    struct store_contact *out)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, ST_C_BY_PK)) == NULL)
		return -1;
	if (sqlite3_bind_blob(q, 1, pk, STORE_PK_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return bind_fail(s, q);
	return contact_one(s, q, out);
}

int
store_contact_update(struct store *s, const struct store_contact *c)
{
	sqlite3_stmt *q;
	int rc;

	if (!contact_ok(s, c) || (q = stmt(s, ST_C_UPDATE)) == NULL)
		return -1;
	if (contact_bind(q, c, 1) == -1)
		return bind_fail(s, q);
	rc = change(s, q);
	return rc < 0 ? rc : rc > 0;
}

int
store_contact_delete(struct store *s, int64_t id, int64_t now)
{
	sqlite3_stmt *q;
	int n = -1;

	if (sp_begin(s) == -1)
		return -1;
	/* retire first: deleting the contact nulls inbox.contact_id */
	if ((q = stmt(s, ST_C_RETIRE_INBOXES)) == NULL)
		goto out;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, now) != SQLITE_OK) {
		bind_fail(s, q);
		goto out;
	}
	if (change(s, q) < 0)
		goto out;
	/* outbox and rx rows go by ON DELETE CASCADE */
	n = change_i64(s, ST_C_DEL, id);
out:
	if (sp_end(s, n >= 0) == -1)
		return -1;
	return n > 0;
}

int
store_contact_list(struct store *s, store_contact_cb cb, void *arg)
{
	struct store_contact c;
	sqlite3_stmt *q;
	int rc, n = 0;

	if ((q = stmt(s, ST_C_LIST)) == NULL)
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
	return rows_end(s, q, rc, n);
}

int
store_contact_accept_frames_set(struct store *s, int64_t id, const void *buf,
    size_t len)
{
	sqlite3_stmt *q;
	int rc;

	if (len > INT32_MAX) {
		seterr(s, "too large");
		return -1;
	}
	if ((q = stmt(s, ST_C_AF_SET)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    bind_blob(q, 2, buf, len) != SQLITE_OK)
		return bind_fail(s, q);
	rc = change(s, q);
	return rc < 0 ? -1 : rc > 0;
}

int
store_contact_accept_frames_get(struct store *s, int64_t id, void *buf,
    size_t buflen, size_t *len)
{
	sqlite3_stmt *q;
	int rc;

	*len = 0;
	if ((q = stmt(s, ST_C_AF_GET)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK)
		return bind_fail(s, q);
	if ((rc = one_row(s, q)) != 1)
		return rc;
	if (sqlite3_column_type(q, 0) == SQLITE_NULL) {
		done(q);
		return 0;
	}
	rc = col_blob(s, q, 0, buf, buflen, len, 0);
	done(q);
	return rc == -1 ? -1 : 1;
}

/* ---- inboxes --------------------------------------------------------- */

static int
topic_ok(struct store *s, const char *topic)
{
	size_t n;

	if (topic == NULL || (n = strnlen(topic, STORE_TOPIC_MAX + 1)) == 0 ||
	    n > STORE_TOPIC_MAX) {
		seterr(s, "bad topic");
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
	in->kind = col_int(q, 3);
	in->created = sqlite3_column_int64(q, 4);
	in->retire_at = sqlite3_column_int64(q, 5);
	in->one_time = col_int(q, 6) != 0;
	return col_text(s, q, 1, in->topic, sizeof(in->topic));
}

int64_t
store_inbox_add(struct store *s, const char *topic, int64_t contact_id,
    int kind, int one_time, int64_t created)
{
	sqlite3_stmt *q;
	int rc;

	if (!topic_ok(s, topic) || (q = stmt(s, ST_I_ADD)) == NULL)
		return -1;
	if (bind_text(q, 1, topic) != SQLITE_OK ||
	    (contact_id > 0 ? sqlite3_bind_int64(q, 2, contact_id) :
	    sqlite3_bind_null(q, 2)) != SQLITE_OK ||
	    sqlite3_bind_int(q, 3, kind) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 4, created) != SQLITE_OK ||
	    sqlite3_bind_int(q, 5, one_time != 0) != SQLITE_OK)
		return bind_fail(s, q);
	if ((rc = change(s, q)) < 0)
		return rc;
	return sqlite3_last_insert_rowid(s->db);
}

int
store_inbox_get(struct store *s, const char *topic, struct store_inbox *out)
{
	sqlite3_stmt *q;
	int rc;

	if (!topic_ok(s, topic) || (q = stmt(s, ST_I_GET)) == NULL)
		return -1;
	if (bind_text(q, 1, topic) != SQLITE_OK)
		return bind_fail(s, q);
	if ((rc = one_row(s, q)) != 1)
		return rc;
	rc = inbox_row(s, q, out);
	done(q);
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
	return rows_end(s, q, rc, n);
}

int
store_inbox_list(struct store *s, int64_t now, store_inbox_cb cb, void *arg)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, ST_I_LIST)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, now) != SQLITE_OK)
		return bind_fail(s, q);
	return inbox_rows(s, q, cb, arg);
}

int
store_inbox_list_all(struct store *s, store_inbox_cb cb, void *arg)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, ST_I_LIST_ALL)) == NULL)
		return -1;
	return inbox_rows(s, q, cb, arg);
}

int
store_inbox_retire(struct store *s, int64_t id, int64_t retire_at)
{
	sqlite3_stmt *q;
	int rc;

	if (retire_at <= 0) {
		seterr(s, "retire time must be positive");
		return -1;
	}
	if ((q = stmt(s, ST_I_RETIRE)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, retire_at) != SQLITE_OK)
		return bind_fail(s, q);
	rc = change(s, q);
	return rc < 0 ? -1 : rc > 0;
}

int
store_inbox_expire(struct store *s, int64_t now, store_inbox_cb cb, void *arg)
{
	struct store_inbox in;
	sqlite3_stmt *q, *d;
	int rc, n = 0, ok = 0;

	if ((q = stmt(s, ST_I_EXPIRED)) == NULL ||
	    (d = stmt(s, ST_I_DEL)) == NULL)
		return -1;
	/* one commit (one fsync) for the batch */
	if (sp_begin(s) == -1)
		return -1;
	for (;;) {
		if (sqlite3_bind_int64(q, 1, now) != SQLITE_OK) {
			bind_fail(s, q);
			goto out;
		}
		if ((rc = one_row(s, q)) == 0)
			break;
		if (rc == -1)
			goto out;
		rc = inbox_row(s, q, &in);
		done(q);
		if (rc == -1)
			goto out;
		if (cb != NULL && cb(&in, arg) != 0)
			break;
		if (sqlite3_bind_int64(d, 1, in.id) != SQLITE_OK) {
			bind_fail(s, d);
			goto out;
		}
		if (change(s, d) < 0)
			goto out;
		n++;
	}
	ok = 1;
out:
	if (sp_end(s, ok) == -1)
		return -1;
	return n;
}

/* ---- outbox ---------------------------------------------------------- */

static int
outbox_row(struct store *s, sqlite3_stmt *q, struct store_outbox *o)
{
	memset(o, 0, sizeof(*o));
	o->id = sqlite3_column_int64(q, 0);
	o->contact_id = sqlite3_column_int64(q, 1);
	o->type = col_int(q, 3);
	o->created = sqlite3_column_int64(q, 5);
	o->attempts = col_int(q, 6);
	o->next_try = sqlite3_column_int64(q, 7);
	if (col_blob(s, q, 2, o->msgid, sizeof(o->msgid), NULL, 1) == -1 ||
	    col_ref(s, q, 4, &o->body, &o->body_len) == -1)
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
		seterr(s, "message too large");
		return -1;
	}
	if ((q = stmt(s, ST_O_ADD)) == NULL)
		return -1;
	if (bind_msg(q, contact_id, msgid, type, body, len) == -1 ||
	    sqlite3_bind_int64(q, 5, created) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 6, next_try) != SQLITE_OK)
		return bind_fail(s, q);
	if ((rc = change(s, q)) < 0)
		return rc;
	return sqlite3_last_insert_rowid(s->db);
}

int
store_outbox_due(struct store *s, int64_t now, int limit, store_outbox_cb cb,
    void *arg)
{
	struct store_outbox o;
	sqlite3_stmt *q;
	int rc, n = 0;

	if (limit <= 0) {
		seterr(s, "limit must be positive");
		return -1;
	}
	if ((q = stmt(s, ST_O_DUE)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, now) != SQLITE_OK ||
	    sqlite3_bind_int(q, 2, limit) != SQLITE_OK)
		return bind_fail(s, q);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (outbox_row(s, q, &o) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&o, arg) != 0)
			break;
	}
	return rows_end(s, q, rc, n);
}

int
store_outbox_reschedule(struct store *s, int64_t id, int64_t next_try,
    int attempts)
{
	sqlite3_stmt *q;
	int rc;

	if ((q = stmt(s, ST_O_RESCHED)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, next_try) != SQLITE_OK ||
	    sqlite3_bind_int(q, 3, attempts) != SQLITE_OK)
		return bind_fail(s, q);
	rc = change(s, q);
	return rc < 0 ? -1 : rc > 0;
}

int
store_outbox_ack(struct store *s, int64_t contact_id,
    const uint8_t msgid[STORE_MSGID_BYTES], struct store_outbox *out)
{
	struct store_outbox o;
	sqlite3_stmt *q, *d;
	int rc;

	if ((q = stmt(s, ST_O_FIND)) == NULL || (d = stmt(s, ST_O_DEL)) == NULL)
		return -1;
	if (sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK ||
	    sqlite3_bind_blob(q, 2, msgid, STORE_MSGID_BYTES, SQLITE_STATIC) !=
	    SQLITE_OK)
		return bind_fail(s, q);
	if ((rc = one_row(s, q)) != 1)
		return rc;
	rc = outbox_row(s, q, &o);
	done(q);
	if (rc == -1)
		return -1;
	o.body = NULL;
	o.body_len = 0;
	if (sqlite3_bind_int64(d, 1, o.id) != SQLITE_OK)
		return bind_fail(s, d);
	if ((rc = change(s, d)) < 0)
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
		q = stmt(s, ST_O_COUNT_ALL);
	else
		q = stmt(s, ST_O_COUNT);
	if (q == NULL)
		return -1;
	if (contact_id != 0 && sqlite3_bind_int64(q, 1, contact_id) != SQLITE_OK)
		return bind_fail(s, q);
	return count(s, q);
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
		seterr(s, "message too large");
		return -1;
	}
	if ((q = stmt(s, ST_R_ADD)) == NULL)
		return -1;
	if (bind_msg(q, contact_id, msgid, type, body, len) == -1 ||
	    sqlite3_bind_int64(q, 5, received_at) != SQLITE_OK)
		return bind_fail(s, q);
	/* a duplicate is no error: DO NOTHING leaves changes at 0 */
	if ((rc = change(s, q)) < 0)
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
		seterr(s, "limit must be positive");
		return -1;
	}
	if ((q = stmt(s, ST_R_PENDING)) == NULL)
		return -1;
	if (sqlite3_bind_int(q, 1, limit) != SQLITE_OK)
		return bind_fail(s, q);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		r.id = sqlite3_column_int64(q, 0);
		r.contact_id = sqlite3_column_int64(q, 1);
		r.type = col_int(q, 3);
		r.received_at = sqlite3_column_int64(q, 5);
		if (col_blob(s, q, 2, r.msgid, sizeof(r.msgid), NULL, 1) == -1 ||
		    col_ref(s, q, 4, &r.body, &r.body_len) == -1) {
			n = -1;
			break;
		}
		n++;
		if (cb(&r, arg) != 0)
			break;
	}
	return rows_end(s, q, rc, n);
}

int64_t
store_rx_pending_count(struct store *s)
{
	sqlite3_stmt *q;

	if ((q = stmt(s, ST_R_PENDING_COUNT)) == NULL)
		return -1;
	return count(s, q);
}

int
store_rx_take(struct store *s, int64_t id)
{
	int rc;

	rc = change_i64(s, ST_R_TAKE, id);
	return rc < 0 ? -1 : rc > 0;
}

int64_t
store_rx_prune(struct store *s, int64_t older_than)
{
	int rc;

	rc = change_i64(s, ST_R_PRUNE, older_than);
	return rc < 0 ? -1 : rc;
}
