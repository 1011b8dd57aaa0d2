/* Tests for daemon/store.c: schema migrations, durability settings and every query. */
#define _POSIX_C_SOURCE 200809L

#include <sys/stat.h>

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "../daemon/store.h"
#include "../daemon/store_file.h"

struct fx {
	char	 dir[64];
	char	 path[128];
	struct store *s;
};

static int
setup(void **state)
{
	struct fx *f;
	const char *tmp;

	f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tmp = getenv("TMPDIR");
	if (tmp == NULL || *tmp == '\0' || strlen(tmp) > 40)
		tmp = "/tmp";
	snprintf(f->dir, sizeof(f->dir), "%s/test_store.XXXXXX", tmp);
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/veil.db", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char p[160];

	store_close(f->s);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* The data key every test store is sealed under. */
static const uint8_t test_key[STORE_KEY_BYTES] = { 7, 7, 7 };

/* Opens, unlocks with test_key, and seals a database that is not sealed
 * yet (a new one, or a migrated one), as veild's first unlock does. */
static struct store *
open_ok(struct fx *f)
{
	char err[256];
	struct store *s;

	s = store_open(f->path, err, sizeof(err));
	if (s == NULL)
		fail_msg("store_open: %s", err);
	if (store_set_key(s, test_key) != 0)
		fail_msg("store_set_key: %s", store_errmsg(s));
	if (store_sealed(s) == 0) {
		assert_int_equal(store_begin(s), 0);
		if (store_seal_all(s) < 0)
			fail_msg("store_seal_all: %s", store_errmsg(s));
		assert_int_equal(store_commit(s), 0);
	}
	assert_int_equal(store_sealed(s), 1);
	return s;
}

static void
reopen(struct fx *f)
{
	store_close(f->s);
	f->s = open_ok(f);
}

/* Raw sqlite access, to look behind the store's back. */
static int64_t
raw_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int64_t v = -1;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
	if (sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return v;
}

static void
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void
mkcontact(struct store_contact *c, const char *name, uint8_t pkbyte)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->peer_name, sizeof(c->peer_name), "peer of %s", name);
	memset(c->peer_pk, pkbyte, sizeof(c->peer_pk));
	snprintf(c->peer_inbox, sizeof(c->peer_inbox), "in-%s", name);
	c->state = 3;
	c->pair_len = 700;
	memset(c->pair, pkbyte ^ 0x5a, c->pair_len);
	c->agree_len = 33;
	memset(c->agree, pkbyte ^ 0xa5, c->agree_len);
	c->verified = 1;
	c->created = 1700000000123LL;
	c->updated = 1700000000456LL;
	memset(c->upd_msgid, pkbyte ^ 0x33, sizeof(c->upd_msgid));
	c->has_upd_msgid = 1;
	c->upd_prev_until = 1700000000789LL;
	c->has_req_msgid = 0;
	c->req_deadline = 1700000000999LL;
	memset(c->seed_prev, pkbyte ^ 0x44, sizeof(c->seed_prev));
	c->has_seed_prev = 1;
	c->seed_prev_epoch = 3600;
	c->seed_prev_until = 1700000001000LL;
	c->heal_at = 1700000002000LL;
}

static int
count_cb(const struct store_contact *c, void *arg)
{
	(void)c;
	(void)arg;
	return 0;
}

/* Contacts in the store, counted the way the engine sees them. */
static int
ncontacts(struct store *s)
{
	return store_contact_list(s, count_cb, NULL);
}

static void
msgid(uint8_t id[STORE_MSGID_BYTES], unsigned n)
{
	memset(id, 0, STORE_MSGID_BYTES);
	id[0] = 0xee;
	id[14] = n >> 8;
	id[15] = n & 0xff;
}

static void
assert_contact_equal(const struct store_contact *a,
    const struct store_contact *b)
{
	assert_string_equal(a->name, b->name);
	assert_int_equal(a->state, b->state);
	assert_string_equal(a->peer_name, b->peer_name);
	assert_memory_equal(a->peer_pk, b->peer_pk, sizeof(a->peer_pk));
	assert_string_equal(a->peer_inbox, b->peer_inbox);
	assert_int_equal(a->pair_len, b->pair_len);
	assert_memory_equal(a->pair, b->pair, a->pair_len);
	assert_int_equal(a->agree_len, b->agree_len);
	assert_memory_equal(a->agree, b->agree, a->agree_len);
	assert_int_equal(a->verified, b->verified);
	assert_int_equal(a->created, b->created);
	assert_int_equal(a->updated, b->updated);
	assert_int_equal(a->has_upd_msgid, b->has_upd_msgid);
	if (a->has_upd_msgid)
		assert_memory_equal(a->upd_msgid, b->upd_msgid, STORE_MSGID_BYTES);
	assert_int_equal(a->upd_prev_until, b->upd_prev_until);
	assert_int_equal(a->has_req_msgid, b->has_req_msgid);
	if (a->has_req_msgid)
		assert_memory_equal(a->req_msgid, b->req_msgid, STORE_MSGID_BYTES);
	assert_int_equal(a->req_deadline, b->req_deadline);
	assert_int_equal(a->has_seed_prev, b->has_seed_prev);
	if (a->has_seed_prev)
		assert_memory_equal(a->seed_prev, b->seed_prev, STORE_SEED_BYTES);
	assert_int_equal(a->seed_prev_epoch, b->seed_prev_epoch);
	assert_int_equal(a->seed_prev_until, b->seed_prev_until);
	assert_int_equal(a->heal_at, b->heal_at);
}

/* ---- open, migrations, durability ------------------------------------- */

static void
test_open_migrates_empty(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char p[160];
	mode_t old;

	/* the file must be private whatever the umask */
	old = umask(0);
	f->s = open_ok(f);
	umask(old);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(store_meta_set_int(f->s, STORE_META_CLIENT_EPOCH, 1), 0);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
	    STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master "
	    "WHERE type = 'table' AND name IN "
	    "('meta', 'request_seen', 'contact', 'inbox', 'outbox', 'rx')"), 6);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master "
	    "WHERE name IN ('kv', 'refused')"), 0);
	/* a fresh database holds no protocol 1 contacts */
	assert_int_equal(raw_int(f->path, "SELECT wire FROM meta"), 2);
	/* what "committed before acknowledged" rests on (store.c) */
	assert_int_equal(raw_int(f->path, "PRAGMA synchronous"), 2);
	assert_int_equal(raw_int(f->path,
	    "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
	assert_string_equal(store_errmsg(f->s), "");
}

/*
 * The store's own connection, caught as sqlite opens it: an auto-extension
 * runs inside sqlite3_open_v2 for every new connection of the process.  It
 * also sets synchronous to OFF there, so FULL afterwards is store.c's own
 * doing (Debian's sqlite already defaults to FULL, which would let a
 * store.c without the PRAGMA pass).  Only a raw connection of our own
 * would otherwise see the setting, and it is per connection.
 */
static sqlite3 *opened;

static int
catch_open(sqlite3 *db, const char **err, const struct sqlite3_api_routines *api)
{
	(void)err;
	(void)api;
	opened = db;
	return sqlite3_exec(db, "PRAGMA synchronous = OFF", NULL, NULL, NULL);
}

/* "Committed before acknowledged" against power loss needs every commit
 * fsynced: synchronous = FULL (or EXTRA) in WAL mode, not NORMAL. */
static void
test_open_synchronous_full(void **state)
{
	struct fx *f = *state;
	sqlite3_stmt *q;

	opened = NULL;
	assert_int_equal(sqlite3_auto_extension((void (*)(void))catch_open), SQLITE_OK);
	f->s = open_ok(f);
	sqlite3_cancel_auto_extension((void (*)(void))catch_open);
	assert_non_null(opened);
	assert_int_equal(sqlite3_prepare_v2(opened, "PRAGMA synchronous", -1, &q, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_true(sqlite3_column_int(q, 0) >= 2);	/* 2 FULL, 3 EXTRA */
	sqlite3_finalize(q);
}

static void
test_open_tightens_existing_mode(void **state)
{
	struct fx *f = *state;
	struct stat st;

	f->s = open_ok(f);
	store_close(f->s);
	assert_int_equal(chmod(f->path, 0644), 0);
	f->s = open_ok(f);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

/* A new database appears under its name only complete: what a crash
 * left under path.new is made anew; an empty file under the name was
 * truncated and is refused, not taken for a new database. */
static void
test_open_new_and_empty(void **state)
{
	struct fx *f = *state;
	char tmp[160], err[512];
	struct stat st;
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.new", f->path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	fputs("half a database", fp);
	fclose(fp);
	f->s = open_ok(f);
	assert_int_equal(stat(tmp, &st), -1);
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_size >= 512);
	assert_int_equal(store_meta_set_int(f->s, STORE_META_CLIENT_EPOCH, 7), 0);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(truncate(f->path, 0), 0);
	assert_null(store_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "is empty"));
	assert_non_null(strstr(err, "backup"));
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_size, 0);		/* left as it was */
}

/* Damage found at open: a file that is not a database, a truncated one,
 * pages overwritten; each refused with what to do, nothing written. */
static void
test_open_damaged(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	char err[1024], name[16];
	struct stat st;
	uint8_t junk[4096];
	FILE *fp;
	int fd;

	f->s = open_ok(f);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "c%03d", i);
		mkcontact(&c, name, (uint8_t)i);
		assert_true(store_contact_add(f->s, &c) > 0);
	}
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_size > 20 * 4096);

	/* pages in the middle overwritten: quick_check */
	memset(junk, 0xa5, sizeof(junk));
	fd = open(f->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 8 * 4096), (ssize_t)sizeof(junk));
	close(fd);
	assert_null(store_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "damaged"));
	assert_non_null(strstr(err, "backup"));

	/* truncated */
	assert_int_equal(truncate(f->path, 6 * 4096), 0);
	assert_null(store_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "damaged"));

	/* not a database at all */
	fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs("this is not a database, but it is long enough to look like "
	    "one: more than a hundred bytes of header, all of it wrong.\n", fp);
	fclose(fp);
	assert_null(store_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "damaged"));
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_size < 200);		/* not rewritten */
}

static void
test_open_bad_path(void **state)
{
	char err[256];

	(void)state;
	err[0] = 'x';
	assert_null(store_open("/nonexistent-dir-veil/x.db", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent-dir-veil/x.db"));
	assert_null(store_open("", err, sizeof(err)));
	assert_true(err[0] != '\0');
}

static void
test_reopen_keeps_data(void **state)
{
	struct fx *f = *state;
	struct store_contact c, got;
	struct store_inbox in;
	struct store_meta m;
	uint8_t id[STORE_MSGID_BYTES];
	int64_t cid;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	cid = store_contact_add(f->s, &c);
	assert_true(cid > 0);
	assert_int_equal(store_meta_set_int(f->s, STORE_META_CLIENT_EPOCH, 42), 0);
	msgid(id, 1);
	assert_true(store_outbox_add(f->s, cid, id, 1, "hi", 2, 10, 10) > 0);
	assert_int_equal(store_rx_add(f->s, cid, id, 1, "yo", 2, 11, NULL), 1);
	assert_true(store_inbox_add(f->s, "topicA", cid, STORE_INBOX_PAIR, 0,
	    5) > 0);

	reopen(f);
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
	    STORE_SCHEMA_VERSION);
	assert_int_equal(store_contact_get_by_name(f->s, "alice", &got), 1);
	assert_int_equal(got.id, cid);
	assert_contact_equal(&got, &c);
	assert_int_equal(store_meta_get(f->s, &m), 1);
	assert_int_equal(m.client_epoch, 42);
	assert_int_equal(store_outbox_count(f->s, cid), 1);
	assert_int_equal(store_rx_pending_count(f->s), 1);
	assert_int_equal(store_rx_add(f->s, cid, id, 1, "yo", 2, 11, NULL), 0);
	assert_int_equal(store_inbox_get(f->s, "topicA", &in), 1);
	assert_int_equal(in.contact_id, cid);
}

static void
test_newer_version_refused(void **state)
{
	struct fx *f = *state;
	char err[256], sql[64];

	f->s = open_ok(f);
	store_close(f->s);
	f->s = NULL;
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
	    STORE_SCHEMA_VERSION + 1);
	raw_exec(f->path, sql);
	assert_null(store_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "newer"));
	/* refused, not downgraded or touched */
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
	    STORE_SCHEMA_VERSION + 1);
}

static void
test_failed_migration_is_atomic(void **state)
{
	struct fx *f = *state;
	char err[256];

	/* a stray table that the migration creates late: the earlier
	 * CREATEs of the same migration must roll back with it */
	raw_exec(f->path, "CREATE TABLE rx (x INTEGER)");
	assert_null(store_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "migration 1"));
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master "
	    "WHERE name IN ('kv', 'contact', 'meta')"), 0);
	/* once the obstacle is gone the migration applies */
	raw_exec(f->path, "DROP TABLE rx");
	f->s = open_ok(f);
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
	    STORE_SCHEMA_VERSION);
}

/* ---- transactions ----------------------------------------------------- */

static void
test_transactions(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct store_meta m;

	f->s = open_ok(f);
	assert_int_equal(store_in_transaction(f->s), 0);
	assert_int_equal(store_commit(f->s), -1);		/* none open */
	assert_true(store_errmsg(f->s)[0] != '\0');
	assert_int_equal(store_rollback(f->s), 0);		/* harmless */

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_in_transaction(f->s), 1);
	assert_int_equal(store_begin(f->s), -1);		/* not nestable */
	mkcontact(&c, "bob", 2);
	assert_true(store_contact_add(f->s, &c) > 0);
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CLIENT_ID, "x1"), 0);
	assert_int_equal(store_rollback(f->s), 0);
	assert_int_equal(store_in_transaction(f->s), 0);
	assert_int_equal(ncontacts(f->s), 0);
	assert_int_equal(store_meta_get(f->s, &m), 1);
	assert_string_equal(m.client_id, "");

	/* a contact delete (internal savepoint) inside a caller's
	 * transaction is undone with it */
	assert_true(store_contact_add(f->s, &c) > 0);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_contact_get_by_name(f->s, "bob", &c), 1);
	assert_int_equal(store_contact_delete(f->s, c.id, 1), 1);
	assert_int_equal(store_in_transaction(f->s), 1);
	assert_int_equal(ncontacts(f->s), 0);
	assert_int_equal(store_rollback(f->s), 0);
	assert_int_equal(ncontacts(f->s), 1);

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CLIENT_ID, "x2"), 0);
	assert_int_equal(store_commit(f->s), 0);
	reopen(f);
	assert_int_equal(store_meta_get(f->s, &m), 1);
	assert_string_equal(m.client_id, "x2");
}

/* ---- meta, identity, refused keys, accept frames -------------------- */

static void
test_meta(void **state)
{
	struct fx *f = *state;
	struct store_meta m;
	struct store_contact c;
	uint8_t pk[STORE_PK_BYTES], sk[STORE_PK_BYTES], gpk[STORE_PK_BYTES];
	uint8_t gsk[STORE_PK_BYTES], frames[3000], got[3000], seed[32];
	char longtext[STORE_TOPIC_MAX + 2];
	size_t len;
	int64_t id, cid;

	f->s = open_ok(f);
	/* a fresh database has the row, empty */
	assert_int_equal(store_meta_get(f->s, &m), 1);
	assert_string_equal(m.card_cid, "");
	assert_int_equal(m.client_epoch, -1);
	assert_int_equal(m.has_shared_seed, 0);
	assert_int_equal(m.wire, 2);
	assert_int_equal(store_identity_get(f->s, gpk, gsk), 0);

	memset(seed, 0x5e, sizeof(seed));
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CARD_CID, "card"), 0);
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CLIENT_ID, "c1"), 0);
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CARD_CLIENT_ID, "cc"), 0);
	assert_int_equal(store_meta_set_int(f->s, STORE_META_CLIENT_EPOCH,
	    INT64_MAX - 1), 0);
	assert_int_equal(store_meta_set_blob(f->s, STORE_META_SHARED_SEED, seed,
	    sizeof(seed)), 0);
	/* a setter of the wrong kind, bad values */
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CLIENT_EPOCH, "1"), -1);
	assert_int_equal(store_meta_set_int(f->s, STORE_META_CLIENT_ID, 1), -1);
	assert_int_equal(store_meta_set_blob(f->s, STORE_META_SHARED_SEED, seed,
	    31), -1);
	assert_int_equal(store_meta_set_blob(f->s, STORE_META_CLIENT_ID, seed,
	    32), -1);
	assert_int_equal(store_meta_set_text(f->s, STORE_META_COUNT, "x"), -1);
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CLIENT_ID, NULL), -1);
	memset(longtext, 't', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CLIENT_ID,
	    longtext), -1);
	reopen(f);
	assert_int_equal(store_meta_get(f->s, &m), 1);
	assert_string_equal(m.card_cid, "card");
	assert_string_equal(m.client_id, "c1");
	assert_string_equal(m.card_client_id, "cc");
	assert_true(m.client_epoch == INT64_MAX - 1);
	assert_int_equal(m.has_shared_seed, 1);
	assert_memory_equal(m.shared_seed, seed, sizeof(seed));
	/* a corrupt seed is an error, not a short seed */
	raw_exec(f->path, "PRAGMA ignore_check_constraints = 1; "
	    "UPDATE meta SET shared_seed = x'0102'");
	assert_int_equal(store_meta_get(f->s, &m), -1);
	raw_exec(f->path, "UPDATE meta SET shared_seed = NULL");

	for (unsigned i = 0; i < sizeof(pk); i++) {
		pk[i] = i;
		sk[i] = 0xff - i;
	}
	assert_int_equal(store_identity_set(f->s, pk, sk), 0);
	reopen(f);
	assert_int_equal(store_identity_get(f->s, gpk, gsk), 1);
	assert_memory_equal(gpk, pk, sizeof(pk));
	assert_memory_equal(gsk, sk, sizeof(sk));
	/* a damaged key is an error, not a short key */
	raw_exec(f->path, "UPDATE meta SET identity_sk = NULL");
	assert_int_equal(store_identity_get(f->s, gpk, gsk), -1);

	/* processed requests, by transcript; the contact may go first */
	mkcontact(&c, "req", 7);
	cid = store_contact_add(f->s, &c);
	assert_true(cid > 0);
	assert_int_equal(store_request_seen_get(f->s, pk, &id), 0);
	assert_int_equal(store_request_seen_add(f->s, pk, cid, 1000), 0);
	assert_int_equal(store_request_seen_add(f->s, pk, 0, 2000), 0); /* kept */
	assert_int_equal(store_request_seen_add(f->s, sk, 0, 5000), 0);
	assert_int_equal(store_request_seen_get(f->s, pk, &id), 1);
	assert_int_equal(id, cid);
	assert_int_equal(store_contact_delete(f->s, cid, 1), 1);
	assert_int_equal(store_request_seen_get(f->s, pk, &id), 1);
	assert_int_equal(id, 0);		/* the transcript outlives it */
	assert_int_equal(store_request_seen_prune(f->s, 3000), 1);
	assert_int_equal(store_request_seen_get(f->s, pk, &id), 0);
	assert_int_equal(store_request_seen_get(f->s, sk, &id), 1);

	/* accept frames live in the contact's row and die with it */
	mkcontact(&c, "alice", 1);
	id = store_contact_add(f->s, &c);
	assert_true(id > 0);
	assert_int_equal(store_contact_accept_frames_get(f->s, id, got,
	    sizeof(got), &len), 0);
	memset(frames, 0x42, sizeof(frames));
	assert_int_equal(store_contact_accept_frames_set(f->s, id, frames,
	    2048), 1);
	assert_int_equal(store_contact_accept_frames_get(f->s, id, got,
	    sizeof(got), &len), 1);
	assert_int_equal(len, 2048);
	assert_memory_equal(got, frames, 2048);
	assert_int_equal(store_contact_accept_frames_get(f->s, id, got, 100,
	    &len), -1);				/* does not fit */
	assert_int_equal(store_contact_accept_frames_set(f->s, 9999, frames,
	    10), 0);			/* no such contact */
	/* the update of the rest of the row keeps them */
	assert_int_equal(store_contact_get_by_id(f->s, id, &c), 1);
	assert_int_equal(store_contact_update(f->s, &c), 1);
	assert_int_equal(store_contact_accept_frames_get(f->s, id, got,
	    sizeof(got), &len), 1);
	assert_int_equal(store_contact_accept_frames_set(f->s, id, NULL, 0), 1);
	assert_int_equal(store_contact_accept_frames_get(f->s, id, got,
	    sizeof(got), &len), 0);
	assert_int_equal(store_contact_accept_frames_set(f->s, id, frames,
	    10), 1);
	assert_int_equal(store_contact_delete(f->s, id, 1), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM contact "
	    "WHERE accept_frames IS NOT NULL"), 0);
}

/* Copies src to dst, byte for byte. */
static void
copy_file(const char *src, const char *dst)
{
	FILE *in, *out;
	char buf[8192];
	size_t n;

	in = fopen(src, "rb");
	if (in == NULL)
		fail_msg("cannot open the fixture %s", src);
	out = fopen(dst, "wb");
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* A blob or text of the v1 kv table, read raw from the fixture. */
static size_t
raw_kv(const char *path, const char *key, uint8_t *out, size_t outlen)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	size_t n = 0;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	    "SELECT value FROM kv WHERE key = ?1", -1, &q, NULL), SQLITE_OK);
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		n = (size_t)sqlite3_column_bytes(q, 0);
		assert_true(n <= outlen);
		memcpy(out, sqlite3_column_blob(q, 0), n);
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

/*
 * Migrations 2 and 3 from a real database written by veild with schema 1
 * (tests/fixtures/store-v1.db: Alice with an established contact whose
 * UPDATE is pending, an accepted one with its ACCEPT frames kept, a
 * requested one, a refused key and a one-time card), plus one family the
 * run did not leave behind, added here: upd.prev_until.  What migration 3
 * drops (wire protocol 1's inbox names, epoch counters, refused keys) is
 * checked gone; what survives, checked equal.  The contacts it holds are
 * protocol 1's: wire = 1, which veild refuses to run on.
 */
static void
test_migrate_v1_fixture(void **state)
{
	struct fx *f = *state;
	struct store_meta m;
	struct store_contact c;
	struct store_inbox in;
	uint8_t v[2048], pk[STORE_PK_BYTES], sk[STORE_PK_BYTES], got[2048];
	char key[128], text[200];
	size_t n, len;

	copy_file(FIXTURES_DIR "/store-v1.db", f->path);
	raw_exec(f->path, "INSERT INTO kv VALUES ('upd.prev_until:1', "
	    "x'0000018BCFE5B9C8')");
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 1);
	f->s = open_ok(f);
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
	    STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master "
	    "WHERE name IN ('kv', 'refused', 'contact_my_inbox')"), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master "
	    "WHERE name = 'request_seen'"), 1);

	/* Read what the fixture held from a second copy that stays v1. */
	snprintf(text, sizeof(text), "%s.v1", f->path);
	copy_file(FIXTURES_DIR "/store-v1.db", text);

	assert_int_equal(store_identity_get(f->s, pk, sk), 1);
	assert_int_equal(raw_kv(text, "identity.pk", v, sizeof(v)), 32);
	assert_memory_equal(pk, v, 32);
	assert_int_equal(raw_kv(text, "identity.sk", v, sizeof(v)), 32);
	assert_memory_equal(sk, v, 32);
	assert_int_equal(store_meta_get(f->s, &m), 1);
#define SAME_TEXT(k, field) do {					\
	n = raw_kv(text, k, v, sizeof(v) - 1);				\
	assert_true(n > 0);						\
	v[n] = '\0';							\
	assert_string_equal(m.field, (char *)v);			\
} while (0)
	SAME_TEXT("card.cid", card_cid);
	SAME_TEXT("client.id", client_id);
	SAME_TEXT("client.card_id", card_client_id);
#undef SAME_TEXT
	assert_int_equal(m.wire, 1);		/* protocol 1 contacts */
	assert_int_equal(m.has_shared_seed, 0);

	/* contact 1: its UPDATE pending, plus the synthetic deadline */
	assert_int_equal(store_contact_get_by_id(f->s, 1, &c), 1);
	assert_int_equal(raw_kv(text, "upd.msgid:1", v, sizeof(v)), 16);
	assert_int_equal(c.has_upd_msgid, 1);
	assert_memory_equal(c.upd_msgid, v, 16);
	assert_int_equal(c.upd_prev_until, 0x18BCFE5B9C8LL);
	assert_int_equal(c.has_req_msgid, 0);
	assert_int_equal(c.has_seed_prev, 0);
	assert_true(c.pair_len > 0);

	/* contact 2: accepted, its ACCEPT frames kept */
	assert_int_equal(raw_kv(text, "accept.frames:2", v, sizeof(v)), 1024);
	assert_int_equal(store_contact_accept_frames_get(f->s, 2, got,
	    sizeof(got), &len), 1);
	assert_int_equal(len, 1024);
	assert_memory_equal(got, v, 1024);

	/* contact 3: requested, its REQUEST's outbox row named */
	assert_int_equal(store_contact_get_by_id(f->s, 3, &c), 1);
	assert_int_equal(raw_kv(text, "req.msgid:3", v, sizeof(v)), 16);
	assert_int_equal(c.has_req_msgid, 1);
	assert_memory_equal(c.req_msgid, v, 16);

	/* only card inboxes stay; the one-time card is marked, the fixed
	 * one not */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox "
	    "WHERE kind <> 1"), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox "
	    "WHERE one_time = 1"), 1);
	{
		sqlite3 *db;
		sqlite3_stmt *q;

		assert_int_equal(sqlite3_open(text, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT substr(key, 11) "
		    "FROM kv WHERE key LIKE 'card.once:%'", -1, &q, NULL),
		    SQLITE_OK);
		assert_int_equal(sqlite3_step(q), SQLITE_ROW);
		snprintf(key, sizeof(key), "%s", sqlite3_column_text(q, 0));
		sqlite3_finalize(q);
		sqlite3_close(db);
	}
	assert_int_equal(store_inbox_get(f->s, key, &in), 1);
	assert_int_equal(in.one_time, 1);
	assert_int_equal(store_inbox_get(f->s, m.card_cid, &in), 1);
	assert_int_equal(in.one_time, 0);

	/* and the migrated store works: a removed contact takes its
	 * bookkeeping with it */
	assert_int_equal(store_contact_delete(f->s, 2, 1), 1);
	assert_int_equal(store_contact_accept_frames_get(f->s, 2, got,
	    sizeof(got), &len), 0);
	unlink(text);
}

/* ---- contacts --------------------------------------------------------- */

static void
test_contacts(void **state)
{
	struct fx *f = *state;
	struct store_contact a, b, got;
	int64_t ida, idb, id;
	uint8_t pk[STORE_PK_BYTES];

	f->s = open_ok(f);
	mkcontact(&a, "alice", 1);
	mkcontact(&b, "bob", 2);
	b.pair_len = 0;			/* not agreed yet: no pair */
	ida = store_contact_add(f->s, &a);
	idb = store_contact_add(f->s, &b);
	assert_true(ida > 0);
	assert_true(idb > 0 && idb != ida);
	assert_int_equal(ncontacts(f->s), 2);

	/* duplicate name is distinguishable from other failures */
	mkcontact(&got, "alice", 9);
	assert_int_equal(store_contact_add(f->s, &got), STORE_EXISTS);
	assert_non_null(strstr(store_errmsg(f->s), "UNIQUE"));
	assert_int_equal(ncontacts(f->s), 2);

	assert_int_equal(store_contact_get_by_id(f->s, ida, &got), 1);
	assert_int_equal(got.id, ida);
	assert_contact_equal(&got, &a);
	assert_int_equal(store_contact_get_by_name(f->s, "bob", &got), 1);
	assert_int_equal(got.id, idb);
	assert_contact_equal(&got, &b);
	assert_int_equal(got.pair_len, 0);
	assert_int_equal(store_contact_id_by_name(f->s, "alice", &id), 1);
	assert_int_equal(id, ida);
	assert_int_equal(store_contact_id_by_name(f->s, "nope", &id), 0);
	memset(pk, 2, sizeof(pk));
	assert_int_equal(store_contact_id_by_peer_pk(f->s, pk, &id), 1);
	assert_int_equal(id, idb);
	assert_int_equal(store_contact_get_by_peer_pk(f->s, pk, &got), 1);
	assert_int_equal(got.id, idb);
	memset(pk, 7, sizeof(pk));
	assert_int_equal(store_contact_get_by_peer_pk(f->s, pk, &got), 0);
	assert_int_equal(store_contact_id_by_peer_pk(f->s, pk, &id), 0);
	assert_int_equal(store_contact_get_by_id(f->s, 9999, &got), 0);
	assert_int_equal(store_contact_get_by_name(f->s, "carol", &got), 0);
	/* names are exact, not case-folded */
	assert_int_equal(store_contact_get_by_name(f->s, "Alice", &got), 0);

	/* update the whole row; created is immutable */
	assert_int_equal(store_contact_get_by_id(f->s, ida, &a), 1);
	snprintf(a.name, sizeof(a.name), "alice2");
	a.state = 7;
	a.pair_len = STORE_BLOB_MAX;
	memset(a.pair, 0x11, a.pair_len);
	a.agree_len = 0;
	a.verified = 0;
	a.has_upd_msgid = 0;
	a.upd_prev_until = 0;
	a.has_req_msgid = 1;
	memset(a.req_msgid, 0x77, sizeof(a.req_msgid));
	a.updated = 1800000000000LL;
	a.created = 1;
	assert_int_equal(store_contact_update(f->s, &a), 1);
	assert_int_equal(store_contact_get_by_name(f->s, "alice", &got), 0);
	assert_int_equal(store_contact_get_by_name(f->s, "alice2", &got), 1);
	a.created = 1700000000123LL;
	assert_contact_equal(&got, &a);
	/* rename onto a taken name */
	snprintf(a.name, sizeof(a.name), "bob");
	assert_int_equal(store_contact_update(f->s, &a), STORE_EXISTS);
	a.id = 12345;
	snprintf(a.name, sizeof(a.name), "ghost");
	assert_int_equal(store_contact_update(f->s, &a), 0);

	/* a corrupt message ID in the bookkeeping is refused on read */
	raw_exec(f->path, "PRAGMA ignore_check_constraints = 1; "
	    "UPDATE contact SET upd_msgid = NULL; "
	    "UPDATE contact SET req_msgid = x'00' WHERE name = 'bob'");
	assert_int_equal(store_contact_get_by_id(f->s, idb, &got), -1);
	raw_exec(f->path, "UPDATE contact SET req_msgid = NULL");
	assert_int_equal(store_contact_get_by_id(f->s, idb, &got), 1);

	/* invalid rows are refused before SQL */
	mkcontact(&got, "", 3);
	assert_int_equal(store_contact_add(f->s, &got), -1);
	mkcontact(&got, "x", 3);
	got.pair_len = STORE_BLOB_MAX + 1;
	assert_int_equal(store_contact_add(f->s, &got), -1);
	mkcontact(&got, "y", 3);
	memset(got.name, 'n', sizeof(got.name));	/* unterminated */
	assert_int_equal(store_contact_add(f->s, &got), -1);
	mkcontact(&got, "z", 3);
	memset(got.peer_inbox, 'p', sizeof(got.peer_inbox));
	assert_int_equal(store_contact_add(f->s, &got), -1);
	assert_int_equal(ncontacts(f->s), 2);

	/* a name of exactly STORE_NAME_MAX bytes fits */
	memset(&got, 0, sizeof(got));
	memset(got.name, 'm', STORE_NAME_MAX);
	assert_true(store_contact_add(f->s, &got) > 0);
	assert_int_equal(store_contact_get_by_name(f->s, got.name, &b), 1);
	assert_int_equal(strlen(b.name), STORE_NAME_MAX);

	assert_int_equal(store_contact_delete(f->s, idb, 1), 1);
	assert_int_equal(store_contact_delete(f->s, idb, 1), 0);
	assert_int_equal(store_contact_get_by_id(f->s, idb, &got), 0);
	assert_int_equal(ncontacts(f->s), 2);
}

/* Corrupt rows written behind the store's back are refused on read. */
static void
test_contact_corrupt_row(void **state)
{
	struct fx *f = *state;
	struct store_contact c, got;
	int64_t id;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	id = store_contact_add(f->s, &c);
	assert_true(id > 0);
	raw_exec(f->path, "UPDATE contact SET pair = zeroblob(1025)");
	assert_int_equal(store_contact_get_by_id(f->s, id, &got), -1);
	raw_exec(f->path, "UPDATE contact SET pair = NULL, "
	    "peer_name = printf('%.*c', 65, 'x')");
	assert_int_equal(store_contact_get_by_id(f->s, id, &got), -1);
	raw_exec(f->path, "UPDATE contact SET peer_name = 'ok'");
	assert_int_equal(store_contact_get_by_id(f->s, id, &got), 1);
	assert_int_equal(got.pair_len, 0);
}

static void
test_contact_delete_cascades(void **state)
{
	struct fx *f = *state;
	struct store_contact a, b;
	struct store_inbox in;
	uint8_t id[STORE_MSGID_BYTES];
	int64_t ida, idb, rid;
	unsigned i;

	f->s = open_ok(f);
	mkcontact(&a, "alice", 1);
	mkcontact(&b, "bob", 2);
	ida = store_contact_add(f->s, &a);
	idb = store_contact_add(f->s, &b);
	for (i = 0; i < 5; i++) {
		msgid(id, i);
		assert_true(store_outbox_add(f->s, ida, id, 1, "a", 1, 1, 1) > 0);
		msgid(id, 100 + i);
		assert_true(store_outbox_add(f->s, idb, id, 1, "b", 1, 1, 1) > 0);
		msgid(id, i);
		assert_int_equal(store_rx_add(f->s, ida, id, 1, "x", 1, 1, &rid),
		    1);
		assert_int_equal(store_rx_add(f->s, idb, id, 1, "y", 1, 1, NULL),
		    1);
	}
	assert_int_equal(store_rx_take(f->s, rid), 1);	/* a dedupe row */
	assert_true(store_inbox_add(f->s, "a-in", ida, STORE_INBOX_PAIR, 0, 1) > 0);
	assert_true(store_inbox_add(f->s, "b-in", idb, STORE_INBOX_PAIR, 0, 1) > 0);

	assert_int_equal(store_contact_delete(f->s, ida, 5000), 1);
	assert_int_equal(store_outbox_count(f->s, ida), 0);
	assert_int_equal(store_outbox_count(f->s, idb), 5);
	assert_int_equal(store_outbox_count(f->s, 0), 5);
	assert_int_equal(store_rx_pending_count(f->s), 5);
	assert_int_equal(raw_int(f->path,
	    "SELECT count(*) FROM rx WHERE contact_id <> (SELECT id FROM "
	    "contact WHERE name = 'bob')"), 0);
	/* its inbox is detached and retired now, the other untouched */
	assert_int_equal(store_inbox_get(f->s, "a-in", &in), 1);
	assert_int_equal(in.contact_id, 0);
	assert_int_equal(in.retire_at, 5000);
	assert_int_equal(store_inbox_get(f->s, "b-in", &in), 1);
	assert_int_equal(in.contact_id, idb);
	assert_int_equal(in.retire_at, 0);
	assert_int_equal(store_inbox_expire(f->s, 5000, NULL, NULL), 1);
	assert_int_equal(store_inbox_get(f->s, "a-in", &in), 0);
	/* nothing can be queued for a contact that is gone */
	msgid(id, 77);
	assert_int_equal(store_outbox_add(f->s, ida, id, 1, "a", 1, 1, 1), -1);
	assert_non_null(strstr(store_errmsg(f->s), "FOREIGN KEY"));
	assert_int_equal(store_rx_add(f->s, ida, id, 1, "a", 1, 1, NULL), -1);
}

/* A delete that fails half way leaves the inboxes as they were. */
static void
test_contact_delete_atomic(void **state)
{
	struct fx *f = *state;
	struct store_contact a;
	struct store_inbox in;
	int64_t ida;

	f->s = open_ok(f);
	mkcontact(&a, "alice", 1);
	ida = store_contact_add(f->s, &a);
	assert_true(store_inbox_add(f->s, "a-in", ida, STORE_INBOX_PAIR, 0, 1) > 0);
	raw_exec(f->path, "CREATE TRIGGER no_del BEFORE DELETE ON contact "
	    "BEGIN SELECT RAISE(ABORT, 'blocked'); END");
	assert_int_equal(store_contact_delete(f->s, ida, 5000), -1);
	assert_non_null(strstr(store_errmsg(f->s), "blocked"));
	assert_int_equal(store_in_transaction(f->s), 0);
	assert_int_equal(store_inbox_get(f->s, "a-in", &in), 1);
	assert_int_equal(in.retire_at, 0);
	assert_int_equal(in.contact_id, ida);
	raw_exec(f->path, "DROP TRIGGER no_del");
	assert_int_equal(store_contact_delete(f->s, ida, 5000), 1);
}

struct names {
	int	 n;
	int	 stop_at;
	char	 prev[STORE_NAME_MAX + 1];
	int64_t	 prev_id;
	int	 sorted;
	struct store *s;
	int	 inner;
};

static int
names_cb(const struct store_contact *c, void *arg)
{
	struct names *nm = arg;

	if (nm->n > 0 && nm->prev_id >= c->id)
		nm->sorted = 0;
	nm->prev_id = c->id;
	snprintf(nm->prev, sizeof(nm->prev), "%s", c->name);
	nm->n++;
	if (c->pair_len != 700 || c->pair[0] != (uint8_t)(c->peer_pk[0] ^ 0x5a))
		nm->sorted = 0;
	return nm->stop_at != 0 && nm->n == nm->stop_at;
}

static void
test_many_contacts(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct names nm;
	struct timespec t0, t1;
	char name[32];
	double secs;
	unsigned i;

	f->s = open_ok(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(store_begin(f->s), 0);
	for (i = 0; i < 10000; i++) {
		/* inserted out of name order: the listing goes by id, the
		 * table's own order (no sort, one row in memory) */
		snprintf(name, sizeof(name), "c%05u", (i * 7919) % 10000);
		mkcontact(&c, name, i & 0xff);
		if (store_contact_add(f->s, &c) <= 0)
			fail_msg("add %u: %s", i, store_errmsg(f->s));
	}
	assert_int_equal(store_commit(f->s), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (secs >= 1.0)
		fail_msg("10000 inserts took %.3f s", secs);
	assert_int_equal(ncontacts(f->s), 10000);

	memset(&nm, 0, sizeof(nm));
	nm.sorted = 1;
	assert_int_equal(store_contact_list(f->s, names_cb, &nm), 10000);
	assert_int_equal(nm.n, 10000);
	assert_true(nm.sorted);
	assert_string_equal(nm.prev, "c02081");	/* 9999 * 7919 % 10000 */

	/* the callback can stop early */
	memset(&nm, 0, sizeof(nm));
	nm.sorted = 1;
	nm.stop_at = 10;
	assert_int_equal(store_contact_list(f->s, names_cb, &nm), 10);
	assert_string_equal(nm.prev, "c01271");	/* 9 * 7919 % 10000 */
	/* and the statement was reset: a new listing starts over */
	nm.n = 0;
	nm.stop_at = 1;
	assert_int_equal(store_contact_list(f->s, names_cb, &nm), 1);
	assert_string_equal(nm.prev, "c00000");
}

static int
reenter_cb(const struct store_contact *c, void *arg)
{
	struct names *nm = arg;
	struct store_contact got;
	struct names inner;

	memset(&inner, 0, sizeof(inner));
	nm->inner = store_contact_list(nm->s, names_cb, &inner);
	/* other functions work from a callback */
	if (store_contact_get_by_id(nm->s, c->id, &got) != 1 ||
	    strcmp(got.name, c->name) != 0)
		nm->inner = 99;
	nm->n++;
	return 0;
}

static void
test_reentrant_call_refused(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct names nm;

	f->s = open_ok(f);
	mkcontact(&c, "a", 1);
	assert_true(store_contact_add(f->s, &c) > 0);
	mkcontact(&c, "b", 2);
	assert_true(store_contact_add(f->s, &c) > 0);
	memset(&nm, 0, sizeof(nm));
	nm.s = f->s;
	assert_int_equal(store_contact_list(f->s, reenter_cb, &nm), 2);
	assert_int_equal(nm.n, 2);
	assert_int_equal(nm.inner, -1);
	assert_non_null(strstr(store_errmsg(f->s), "reentrant"));
}

/* ---- inboxes ---------------------------------------------------------- */

struct topics {
	int	 n;
	int	 stop_at;
	char	 t[8][STORE_TOPIC_MAX + 1];
	int64_t	 retire[8];
};

static int
topics_cb(const struct store_inbox *in, void *arg)
{
	struct topics *t = arg;

	if (t->n < 8) {
		snprintf(t->t[t->n], sizeof(t->t[0]), "%s", in->topic);
		t->retire[t->n] = in->retire_at;
	}
	t->n++;
	return t->stop_at != 0 && t->n == t->stop_at;
}

static void
test_inboxes(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct store_inbox in;
	struct topics t;
	char longtopic[STORE_TOPIC_MAX + 2];
	int64_t cid, i1, i2, i3, i4;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	cid = store_contact_add(f->s, &c);
	i1 = store_inbox_add(f->s, "card1", 0, STORE_INBOX_CARD, 0, 100);
	i2 = store_inbox_add(f->s, "pairA", cid, STORE_INBOX_PAIR, 0, 200);
	i3 = store_inbox_add(f->s, "shared", 0, STORE_INBOX_SHARED, 0, 300);
	i4 = store_inbox_add(f->s, "old", cid, STORE_INBOX_PAIR, 0, 50);
	assert_true(i1 > 0 && i2 > i1 && i3 > i2 && i4 > i3);
	assert_int_equal(store_inbox_add(f->s, "pairA", 0, STORE_INBOX_PAIR, 0, 1),
	    STORE_EXISTS);
	assert_int_equal(store_inbox_add(f->s, "x", 9999, STORE_INBOX_PAIR, 0, 1),
	    -1);				/* no such contact */
	assert_int_equal(store_inbox_add(f->s, "", 0, STORE_INBOX_CARD, 0, 1), -1);
	memset(longtopic, 't', sizeof(longtopic) - 1);
	longtopic[sizeof(longtopic) - 1] = '\0';
	assert_int_equal(store_inbox_add(f->s, longtopic, 0, 1, 0, 1), -1);

	assert_int_equal(store_inbox_get(f->s, "pairA", &in), 1);
	assert_int_equal(in.id, i2);
	assert_string_equal(in.topic, "pairA");
	assert_int_equal(in.contact_id, cid);
	assert_int_equal(in.kind, STORE_INBOX_PAIR);
	assert_int_equal(in.created, 200);
	assert_int_equal(in.retire_at, 0);
	assert_int_equal(store_inbox_get(f->s, "card1", &in), 1);
	assert_int_equal(in.contact_id, 0);
	assert_int_equal(store_inbox_get(f->s, "nope", &in), 0);

	/* retire: old at 1000 (past at now=2000), pairA at 5000 (grace) */
	assert_int_equal(store_inbox_retire(f->s, i4, 1000), 1);
	assert_int_equal(store_inbox_retire(f->s, i2, 5000), 1);
	assert_int_equal(store_inbox_retire(f->s, 9999, 5000), 0);
	assert_int_equal(store_inbox_retire(f->s, i1, 0), -1);

	memset(&t, 0, sizeof(t));
	assert_int_equal(store_inbox_list(f->s, 2000, topics_cb, &t), 3);
	assert_string_equal(t.t[0], "card1");
	assert_string_equal(t.t[1], "pairA");
	assert_int_equal(t.retire[1], 5000);
	assert_string_equal(t.t[2], "shared");

	/* expire at 2000: only "old" */
	memset(&t, 0, sizeof(t));
	assert_int_equal(store_inbox_expire(f->s, 2000, topics_cb, &t), 1);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.t[0], "old");
	assert_int_equal(store_inbox_get(f->s, "old", &in), 0);
	assert_int_equal(store_inbox_expire(f->s, 2000, topics_cb, &t), 0);

	/* a callback that stops keeps the rest */
	assert_int_equal(store_inbox_retire(f->s, i1, 4000), 1);
	memset(&t, 0, sizeof(t));
	t.stop_at = 1;
	assert_int_equal(store_inbox_expire(f->s, 6000, topics_cb, &t), 0);
	assert_string_equal(t.t[0], "card1");	/* earliest retire first */
	assert_int_equal(store_inbox_get(f->s, "card1", &in), 1);
	memset(&t, 0, sizeof(t));
	assert_int_equal(store_inbox_expire(f->s, 6000, topics_cb, &t), 2);
	assert_string_equal(t.t[0], "card1");
	assert_string_equal(t.t[1], "pairA");
	memset(&t, 0, sizeof(t));
	assert_int_equal(store_inbox_list(f->s, 6000, topics_cb, &t), 1);
	assert_string_equal(t.t[0], "shared");
}

/* ---- outbox ----------------------------------------------------------- */

struct due {
	int	 n;
	int64_t	 ids[16];
	int64_t	 next[16];
	char	 body[16][16];
	struct store *s;
	int	 reschedule;
};

static int
due_cb(const struct store_outbox *o, void *arg)
{
	struct due *d = arg;

	if (d->n < 16) {
		d->ids[d->n] = o->id;
		d->next[d->n] = o->next_try;
		snprintf(d->body[d->n], sizeof(d->body[0]), "%.*s",
		    (int)o->body_len, (const char *)o->body);
	}
	d->n++;
	/* what the engine does: send, then push the row into the future */
	if (d->reschedule && store_outbox_reschedule(d->s, o->id,
	    o->next_try + 100000, o->attempts + 1) != 1)
		return 1;
	return 0;
}

static void
test_outbox(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct store_outbox o;
	struct due d;
	uint8_t id[STORE_MSGID_BYTES];
	int64_t a, b, oid[5];
	/* next_try out of insertion order, with a tie */
	static const int64_t next[5] = { 500, 100, 300, 100, 900 };
	char body[16];
	int i;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	a = store_contact_add(f->s, &c);
	mkcontact(&c, "bob", 2);
	b = store_contact_add(f->s, &c);
	for (i = 0; i < 5; i++) {
		msgid(id, i);
		snprintf(body, sizeof(body), "m%d", i);
		oid[i] = store_outbox_add(f->s, i < 4 ? a : b, id, 1, body,
		    strlen(body), 10, next[i]);
		assert_true(oid[i] > 0);
	}
	msgid(id, 2);
	assert_int_equal(store_outbox_add(f->s, a, id, 1, "dup", 3, 10, 1),
	    STORE_EXISTS);
	msgid(id, 50);
	assert_int_equal(store_outbox_add(f->s, 9999, id, 1, "x", 1, 10, 1), -1);
	assert_int_equal(store_outbox_count(f->s, a), 4);
	assert_int_equal(store_outbox_count(f->s, b), 1);
	assert_int_equal(store_outbox_count(f->s, 0), 5);

	/* due at 500: next_try 100 (ids 1, 3), 300, 500; not 900 */
	memset(&d, 0, sizeof(d));
	assert_int_equal(store_outbox_due(f->s, 500, 10, due_cb, &d), 4);
	assert_int_equal(d.ids[0], oid[1]);
	assert_int_equal(d.ids[1], oid[3]);
	assert_int_equal(d.ids[2], oid[2]);
	assert_int_equal(d.ids[3], oid[0]);
	assert_string_equal(d.body[0], "m1");
	assert_string_equal(d.body[3], "m0");
	memset(&d, 0, sizeof(d));
	assert_int_equal(store_outbox_due(f->s, 500, 2, due_cb, &d), 2);
	assert_int_equal(store_outbox_due(f->s, 99, 10, due_cb, &d), 0);
	assert_int_equal(store_outbox_due(f->s, 500, 0, due_cb, &d), -1);

	/* rescheduling from the callback moves rows out of this scan */
	memset(&d, 0, sizeof(d));
	d.s = f->s;
	d.reschedule = 1;
	assert_int_equal(store_outbox_due(f->s, 1000, 10, due_cb, &d), 5);
	assert_int_equal(d.n, 5);
	memset(&d, 0, sizeof(d));
	assert_int_equal(store_outbox_due(f->s, 1000, 10, due_cb, &d), 0);
	assert_int_equal(store_outbox_due(f->s, 100100, 10, due_cb, &d), 2);
	assert_int_equal(store_outbox_reschedule(f->s, 9999, 1, 1), 0);

	/* ack: the right contact only, once */
	msgid(id, 3);
	assert_int_equal(store_outbox_ack(f->s, b, id, &o), 0);
	memset(&o, 0xff, sizeof(o));
	assert_int_equal(store_outbox_ack(f->s, a, id, &o), 1);
	assert_int_equal(o.id, oid[3]);
	assert_int_equal(o.contact_id, a);
	assert_memory_equal(o.msgid, id, sizeof(id));
	assert_int_equal(o.type, 1);
	assert_null(o.body);
	assert_int_equal(o.body_len, 0);
	assert_int_equal(o.created, 10);
	assert_int_equal(o.attempts, 1);
	assert_int_equal(o.next_try, 100100);
	assert_int_equal(store_outbox_ack(f->s, a, id, &o), 0);
	msgid(id, 0);
	assert_int_equal(store_outbox_ack(f->s, a, id, NULL), 1);
	assert_int_equal(store_outbox_count(f->s, a), 2);
	assert_int_equal(store_outbox_count(f->s, 0), 3);
	/* a msgid can be queued again once acknowledged */
	assert_true(store_outbox_add(f->s, a, id, 2, "", 0, 1, 1) > 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(store_outbox_due(f->s, 1, 10, due_cb, &d), 1);
	assert_string_equal(d.body[0], "");
}

/* ---- received messages ------------------------------------------------ */

struct pend {
	int	 n;
	int64_t	 ids[16];
	char	 body[16][16];
	uint8_t	 msgid[16][STORE_MSGID_BYTES];
	int64_t	 contact[16];
	struct store *s;
	int	 take;
};

static int
pend_cb(const struct store_rx *r, void *arg)
{
	struct pend *p = arg;

	if (p->n < 16) {
		p->ids[p->n] = r->id;
		p->contact[p->n] = r->contact_id;
		memcpy(p->msgid[p->n], r->msgid, STORE_MSGID_BYTES);
		snprintf(p->body[p->n], sizeof(p->body[0]), "%.*s",
		    (int)r->body_len, (const char *)r->body);
	}
	p->n++;
	if (p->take && store_rx_take(p->s, r->id) != 1)
		return 1;
	return 0;
}

static void
test_rx(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct pend p;
	uint8_t id[STORE_MSGID_BYTES];
	int64_t a, b, r1 = 0, r2 = 0, r3 = 0;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	a = store_contact_add(f->s, &c);
	mkcontact(&c, "bob", 2);
	b = store_contact_add(f->s, &c);

	msgid(id, 1);
	assert_int_equal(store_rx_add(f->s, a, id, 1, "late", 4, 300, &r1), 1);
	assert_true(r1 > 0);
	r2 = -7;
	assert_int_equal(store_rx_add(f->s, a, id, 1, "late", 4, 301, &r2), 0);
	assert_int_equal(r2, -7);			/* untouched on dup */
	/* the same msgid from another contact is another message */
	assert_int_equal(store_rx_add(f->s, b, id, 1, "other", 5, 100, &r2), 1);
	msgid(id, 2);
	assert_int_equal(store_rx_add(f->s, a, id, 1, "early", 5, 100, &r3), 1);
	assert_int_equal(store_rx_pending_count(f->s), 3);

	/* oldest first, ties by arrival */
	memset(&p, 0, sizeof(p));
	assert_int_equal(store_rx_pending(f->s, 10, pend_cb, &p), 3);
	assert_int_equal(p.ids[0], r2);
	assert_int_equal(p.contact[0], b);
	assert_string_equal(p.body[0], "other");
	assert_int_equal(p.ids[1], r3);
	assert_memory_equal(p.msgid[1], id, STORE_MSGID_BYTES);
	assert_int_equal(p.ids[2], r1);
	assert_string_equal(p.body[2], "late");
	memset(&p, 0, sizeof(p));
	assert_int_equal(store_rx_pending(f->s, 1, pend_cb, &p), 1);
	assert_int_equal(store_rx_pending(f->s, 0, pend_cb, &p), -1);

	/* take: gone from pending, body dropped, still a duplicate */
	assert_int_equal(store_rx_take(f->s, r3), 1);
	assert_int_equal(store_rx_take(f->s, r3), 0);
	assert_int_equal(store_rx_take(f->s, 9999), 0);
	assert_int_equal(store_rx_pending_count(f->s), 2);
	assert_int_equal(raw_int(f->path,
	    "SELECT body IS NULL FROM rx WHERE received_at = 100 AND "
	    "taken = 1"), 1);
	assert_int_equal(store_rx_add(f->s, a, id, 1, "early", 5, 400, NULL), 0);

	/* take from inside the callback, as message.receive does */
	memset(&p, 0, sizeof(p));
	p.s = f->s;
	p.take = 1;
	assert_int_equal(store_rx_pending(f->s, 10, pend_cb, &p), 2);
	assert_int_equal(store_rx_pending_count(f->s), 0);

	/* prune: only taken rows before the horizon */
	msgid(id, 3);
	assert_int_equal(store_rx_add(f->s, a, id, 1, "new", 3, 50, NULL), 1);
	assert_int_equal(store_rx_prune(f->s, 200), 2);	/* r2, r3 */
	assert_int_equal(store_rx_pending_count(f->s), 1);	/* untaken stays */
	assert_int_equal(store_rx_prune(f->s, 200), 0);
	msgid(id, 1);
	assert_int_equal(store_rx_add(f->s, a, id, 1, "late", 4, 300, NULL), 0);
	msgid(id, 2);
	/* past the horizon a duplicate is new again: that is the horizon */
	assert_int_equal(store_rx_add(f->s, a, id, 1, "early", 5, 500, NULL), 1);
	assert_int_equal(store_rx_prune(f->s, INT64_MAX), 1);	/* r1 */

	/* an empty body is a message too */
	msgid(id, 9);
	assert_int_equal(store_rx_add(f->s, b, id, 1, NULL, 0, 1, NULL), 1);
}


/* ---- encryption at rest ------------------------------------------------ */

/* A blob column as stored, copied out behind the store's back. */
static size_t
raw_blob(const char *path, const char *sql, uint8_t *out, size_t cap)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	size_t n = 0;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
	if (sqlite3_step(q) == SQLITE_ROW) {
		n = (size_t)sqlite3_column_bytes(q, 0);
		assert_true(n <= cap);
		memcpy(out, sqlite3_column_blob(q, 0), n);
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

static int
file_has(const char *path, const void *needle, size_t n)
{
	uint8_t *buf;
	FILE *f;
	long len;
	int hit = 0;

	if ((f = fopen(path, "rb")) == NULL)
		return 0;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	for (long i = 0; i + (long)n <= len && !hit; i++)
		hit = memcmp(buf + i, needle, n) == 0;
	free(buf);
	return hit;
}

/* Secrets go to disk sealed; with the key they read back; a value copied
 * to another row or column does not open; without the key nothing
 * secret is read or written; a wrong key is refused. */
static void
test_sealed_on_disk(void **state)
{
	struct fx *f = *state;
	struct store_contact a, b, got;
	struct store_meta m;
	uint8_t pk[32], sk[32], skgot[32], blob[2048], id[STORE_MSGID_BYTES];
	static const uint8_t wrong[STORE_KEY_BYTES] = { 8 };
	char wal[160], err[256];
	int64_t ida, idb;
	size_t n;

	f->s = open_ok(f);
	memset(pk, 0x11, sizeof(pk));
	memset(sk, 0x5c, sizeof(sk));
	assert_int_equal(store_identity_set(f->s, pk, sk), 0);
	assert_int_equal(store_meta_set_blob(f->s, STORE_META_SHARED_SEED, sk,
	    sizeof(sk)), 0);
	mkcontact(&a, "a", 1);
	mkcontact(&b, "b", 2);
	assert_true((ida = store_contact_add(f->s, &a)) > 0);
	assert_true((idb = store_contact_add(f->s, &b)) > 0);
	msgid(id, 3);
	assert_true(store_outbox_add(f->s, ida, id, 1, "PLAINBODY-OUT", 13, 1,
	    1) > 0);
	assert_int_equal(store_rx_add(f->s, ida, id, 1, "PLAINBODY-RX", 12, 1,
	    NULL), 1);
	n = raw_blob(f->path, "SELECT identity_sk FROM meta", blob, sizeof(blob));
	assert_int_equal(n, 32 + 41);
	n = raw_blob(f->path, "SELECT pair FROM contact WHERE name = 'a'", blob,
	    sizeof(blob));
	assert_int_equal(n, a.pair_len + 41);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_false(file_has(f->path, a.pair, 64));
	assert_false(file_has(wal, a.pair, 64));
	assert_false(file_has(f->path, sk, sizeof(sk)));
	assert_false(file_has(wal, sk, sizeof(sk)));
	assert_false(file_has(wal, "PLAINBODY", 9));
	assert_false(file_has(f->path, "PLAINBODY", 9));
	assert_int_equal(store_identity_get(f->s, pk, skgot), 1);
	assert_memory_equal(skgot, sk, sizeof(sk));

	/* a's sealed pair copied into b's row: b no longer reads */
	store_close(f->s);
	f->s = NULL;
	raw_exec(f->path, "UPDATE contact SET pair = (SELECT pair FROM contact "
	    "WHERE name = 'a') WHERE name = 'b'");
	f->s = open_ok(f);
	assert_int_equal(store_contact_get_by_id(f->s, ida, &got), 1);
	assert_int_equal(store_contact_get_by_id(f->s, idb, &got), -1);
	assert_non_null(strstr(store_errmsg(f->s), "moved from another row"));
	/* the pair moved into the agree column of its own row: no either */
	store_close(f->s);
	f->s = NULL;
	raw_exec(f->path, "UPDATE contact SET pair = NULL, agree = pair "
	    "WHERE name = 'a'; DELETE FROM contact WHERE name = 'b'");
	f->s = open_ok(f);
	assert_int_equal(store_contact_get_by_id(f->s, ida, &got), -1);

	/* without the key: locked */
	store_close(f->s);
	f->s = store_open(f->path, err, sizeof(err));
	assert_non_null(f->s);
	assert_int_equal(store_sealed(f->s), 1);
	assert_int_equal(store_has_key(f->s), 0);
	assert_int_equal(store_identity_get(f->s, pk, skgot), -1);
	assert_non_null(strstr(store_errmsg(f->s), "locked"));
	assert_int_equal(store_meta_get(f->s, &m), -1);
	assert_int_equal(store_identity_set(f->s, pk, sk), -1);
	assert_int_equal(store_set_key(f->s, wrong), -1);
	assert_non_null(strstr(store_errmsg(f->s), "wrong data key"));
	assert_int_equal(store_has_key(f->s), 0);
	assert_int_equal(store_set_key(f->s, test_key), 0);
	assert_int_equal(store_identity_get(f->s, pk, skgot), 1);
	/* sealing twice is refused */
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_seal_all(f->s), -1);
	assert_int_equal(store_rollback(f->s), 0);
}

/* A plaintext database (schema 4, never sealed) sealed in place: every
 * secret value changes form and reads back the same; VACUUM leaves no
 * free page and an empty WAL. */
static void
test_seal_all_and_vacuum(void **state)
{
	struct fx *f = *state;
	struct store_contact c, got;
	struct store *s;
	uint8_t pk[32], sk[32], skgot[32], id[STORE_MSGID_BYTES], blob[2048];
	char err[256], wal[160];
	struct stat st;
	int64_t cid;
	size_t n;

	/* Plaintext rows, written the way schema 3 held them. */
	s = store_open(f->path, err, sizeof(err));
	assert_non_null(s);
	store_close(s);
	memset(sk, 0x6b, sizeof(sk));
	raw_exec(f->path, "UPDATE meta SET identity_pk = zeroblob(32), "
	    "identity_sk = x'6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
	    "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b';"
	    "INSERT INTO contact (id, name, state, peer_pk, pair, created, "
	    "updated) VALUES (1, 'p', 4, zeroblob(32), x'0102030405060708', 1, 1);"
	    "INSERT INTO outbox (contact_id, msgid, type, body, created, "
	    "next_try) VALUES (1, x'00000000000000000000000000000001', 1, "
	    "CAST('PLAINOUT' AS BLOB), 1, 1);"
	    "INSERT INTO rx (contact_id, msgid, type, body, received_at) "
	    "VALUES (1, x'00000000000000000000000000000002', 1, "
	    "CAST('PLAINRX' AS BLOB), 1);"
	    "DELETE FROM rx WHERE 0;");
	f->s = store_open(f->path, err, sizeof(err));
	assert_non_null(f->s);
	assert_int_equal(store_sealed(f->s), 0);
	assert_int_equal(store_set_key(f->s, test_key), 0);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_seal_all(f->s), 4);	/* sk, pair, 2 bodies */
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(store_sealed(f->s), 1);
	assert_int_equal(store_vacuum(f->s), 0);
	assert_int_equal(raw_int(f->path, "PRAGMA freelist_count"), 0);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_true(stat(wal, &st) != 0 || st.st_size == 0);
	assert_false(file_has(f->path, "PLAINOUT", 8));
	assert_false(file_has(f->path, "PLAINRX", 7));
	assert_false(file_has(f->path, sk, sizeof(sk)));
	n = raw_blob(f->path, "SELECT pair FROM contact", blob, sizeof(blob));
	assert_int_equal(n, 8 + 41);
	assert_int_equal(store_identity_get(f->s, pk, skgot), 1);
	assert_memory_equal(skgot, sk, sizeof(sk));
	assert_int_equal(store_contact_get_by_id(f->s, 1, &got), 1);
	assert_int_equal(got.pair_len, 8);
	assert_memory_equal(got.pair, "\1\2\3\4\5\6\7\10", 8);
	assert_int_equal(store_rx_pending_count(f->s), 1);
	/* and it goes on as a sealed database */
	reopen(f);
	mkcontact(&c, "q", 3);
	assert_true((cid = store_contact_add(f->s, &c)) > 1);
	msgid(id, 7);
	assert_true(store_outbox_add(f->s, cid, id, 1, "x", 1, 1, 1) > 0);
}

static int
wrap_count(const struct store_wrap *w, void *arg)
{
	(void)w;
	(*(int *)arg)++;
	return 0;
}

static int
keep_passphrase(const struct store_wrap *w, void *arg)
{
	(void)arg;
	return w->kind == STORE_WRAP_PASSPHRASE;
}

static void
test_vault_rows(void **state)
{
	struct fx *f = *state;
	struct store_wrap w;
	int n = 0;

	f->s = open_ok(f);
	memset(&w, 0, sizeof(w));
	w.kind = STORE_WRAP_PASSPHRASE;
	w.opslimit = 2;
	w.memlimit = 1 << 20;
	memset(w.wrapped, 1, sizeof(w.wrapped));
	assert_int_equal(store_wrap_put(f->s, &w), 0);
	memset(w.wrapped, 2, sizeof(w.wrapped));
	assert_int_equal(store_wrap_put(f->s, &w), 0);	/* replaces */
	w.kind = STORE_WRAP_KEY;
	memset(w.key_id, 3, sizeof(w.key_id));
	assert_int_equal(store_wrap_put(f->s, &w), 0);
	memset(w.key_id, 4, sizeof(w.key_id));
	assert_int_equal(store_wrap_put(f->s, &w), 0);
	assert_int_equal(store_wrap_list(f->s, wrap_count, &n), 3);
	assert_int_equal(store_wrap_prune(f->s, keep_passphrase, NULL), 2);
	n = 0;
	assert_int_equal(store_wrap_list(f->s, wrap_count, &n), 1);
	w.kind = 7;
	assert_int_equal(store_wrap_put(f->s, &w), -1);
}

static void
test_reset_state(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct store_reset r, g;
	int64_t id;

	f->s = open_ok(f);
	mkcontact(&c, "r", 1);
	assert_true((id = store_contact_add(f->s, &c)) > 0);
	assert_int_equal(store_contact_reset_get(f->s, id, &g), 1);
	assert_int_equal(g.due, 0);
	assert_int_equal(g.mine_len, 0);
	assert_int_equal(store_contact_resets(f->s, (int (*)(int64_t, void *))
	    (void *)wrap_count, NULL), 0);
	memset(&r, 0, sizeof(r));
	r.due = 1;
	r.mine_len = 100;
	memset(r.mine, 0x42, r.mine_len);
	r.seen_t = 77;
	r.has_seen = 1;
	memset(r.seen, 9, sizeof(r.seen));
	r.ack_len = 96;		/* it holds our inbox seed for the pair */
	memset(r.ack, 0xa8, r.ack_len);
	assert_int_equal(store_contact_reset_set(f->s, id, &r), 1);
	assert_int_equal(store_contact_reset_set(f->s, id + 99, &r), 0);
	reopen(f);
	assert_int_equal(store_contact_reset_get(f->s, id, &g), 1);
	assert_memory_equal(&g, &r, sizeof(g));
	assert_false(file_has(f->path, r.mine, 64));	/* sealed */
	assert_false(file_has(f->path, r.ack, 64));	/* sealed too */
	r.mine_len = STORE_RESET_MAX + 1;
	assert_int_equal(store_contact_reset_set(f->s, id, &r), -1);
}

struct rows {
	struct store_outbox	 o[4];
	struct store_rx_row	 r[4];
	uint8_t			 body[4][16];
	int			 no, nr;
};

static int
keep_o(const struct store_outbox *o, void *arg)
{
	struct rows *x = arg;

	x->o[x->no] = *o;
	memcpy(x->body[x->no], o->body, o->body_len);
	x->o[x->no].body = x->body[x->no];
	x->no++;
	return 0;
}

static int
keep_r(const struct store_rx_row *r, void *arg)
{
	struct rows *x = arg;

	x->r[x->nr++] = *r;
	x->r[x->nr - 1].body = NULL;
	return 0;
}

/* Every row out (a dump) and in again (a restore) as it was. */
static void
test_dump_and_load(void **state)
{
	struct fx *f = *state;
	struct store_contact c, got;
	struct store_rx_row rr;
	struct rows x;
	uint8_t id[STORE_MSGID_BYTES];
	int64_t cid;

	f->s = open_ok(f);
	assert_int_equal(store_unused(f->s), 1);
	mkcontact(&c, "d", 1);
	c.id = 42;
	assert_int_equal(store_load_contact(f->s, &c), 0);
	assert_int_equal(store_unused(f->s), 0);
	assert_int_equal(store_contact_get_by_id(f->s, 42, &got), 1);
	assert_contact_equal(&got, &c);
	c.id = 0;
	assert_int_equal(store_load_contact(f->s, &c), -1);
	cid = 42;
	memset(&x, 0, sizeof(x));
	msgid(id, 1);
	assert_true(store_outbox_add(f->s, cid, id, 1, "out", 3, 5, 6) > 0);
	assert_int_equal(store_outbox_all(f->s, keep_o, &x), 1);
	assert_int_equal(x.o[0].body_len, 3);
	memset(&rr, 0, sizeof(rr));
	rr.contact_id = cid;
	msgid(rr.msgid, 2);
	rr.type = 1;
	rr.body = (const uint8_t *)"in";
	rr.body_len = 2;
	rr.received_at = 9;
	assert_int_equal(store_load_rx(f->s, &rr), 0);
	msgid(rr.msgid, 3);
	rr.taken = 1;
	assert_int_equal(store_load_rx(f->s, &rr), -1);	/* taken: no body */
	rr.body = NULL;
	rr.body_len = 0;
	assert_int_equal(store_load_rx(f->s, &rr), 0);
	assert_int_equal(store_rx_all(f->s, keep_r, &x), 2);
	assert_int_equal(x.r[0].taken, 0);
	assert_int_equal(x.r[1].taken, 1);
	assert_int_equal(store_rx_pending_count(f->s), 1);
	/* into a second store, as a restore does */
	x.o[0].attempts = 3;
	x.o[0].contact_id = 43;
	assert_true(store_load_outbox(f->s, &x.o[0]) < 0);	/* no contact 43 */
	assert_int_equal(store_outbox_ack(f->s, cid, id, NULL), 1);
	x.o[0].contact_id = cid;
	assert_int_equal(store_load_outbox(f->s, &x.o[0]), 0);
	memset(&x, 0, sizeof(x));
	assert_int_equal(store_outbox_all(f->s, keep_o, &x), 1);
	assert_int_equal(x.o[0].attempts, 3);
	assert_memory_equal(x.body[0], "out", 3);
}

/* What an app acknowledges by message ID, and what counts against a
 * contact's quotas. */
static void
test_rx_ack_usage(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	uint8_t id[STORE_MSGID_BYTES], body[3000];
	int64_t a, b, rows = -1, bytes = -1;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	a = store_contact_add(f->s, &c);
	mkcontact(&c, "bob", 2);
	b = store_contact_add(f->s, &c);
	memset(body, 'x', sizeof(body));

	assert_int_equal(store_rx_pending_any(f->s), 0);
	assert_int_equal(store_rx_usage(f->s, a, &rows, &bytes), 0);
	assert_int_equal(rows, 0);
	assert_int_equal(bytes, 0);
	for (int i = 1; i <= 3; i++) {
		msgid(id, (uint8_t)i);
		assert_int_equal(store_rx_add(f->s, a, id, 1, body,
		    (size_t)i * 1000, i, NULL), 1);
	}
	msgid(id, 9);
	assert_int_equal(store_rx_add(f->s, b, id, 1, body, 10, 9, NULL), 1);
	assert_int_equal(store_rx_pending_any(f->s), 1);
	assert_int_equal(store_rx_usage(f->s, a, &rows, &bytes), 0);
	assert_int_equal(rows, 3);
	assert_int_equal(bytes, 6000);
	assert_int_equal(store_rx_usage(f->s, b, &rows, &bytes), 0);
	assert_int_equal(rows, 1);
	assert_int_equal(bytes, 10);

	/* acknowledged by message ID: taken once, then a no-op */
	msgid(id, 2);
	assert_int_equal(store_rx_take_msgid(f->s, id), 1);
	assert_int_equal(store_rx_take_msgid(f->s, id), 0);
	msgid(id, 77);
	assert_int_equal(store_rx_take_msgid(f->s, id), 0);
	assert_int_equal(store_rx_usage(f->s, a, &rows, &bytes), 0);
	assert_int_equal(rows, 2);
	assert_int_equal(bytes, 4000);
	/* still a duplicate for the sender's copies */
	msgid(id, 2);
	assert_int_equal(store_rx_add(f->s, a, id, 1, body, 2000, 5, NULL), 0);
	for (uint8_t i = 1; i <= 9; i++) {
		msgid(id, i);
		store_rx_take_msgid(f->s, id);
	}
	assert_int_equal(store_rx_pending_any(f->s), 0);

	/* the outbox's share of a contact */
	assert_int_equal(store_outbox_usage(f->s, a, &rows, &bytes), 0);
	assert_int_equal(rows, 0);
	assert_int_equal(bytes, 0);
	msgid(id, 1);
	assert_int_equal(store_outbox_add(f->s, a, id, 1, body, 1234, 1, 1) > 0, 1);
	msgid(id, 2);
	assert_int_equal(store_outbox_add(f->s, a, id, 1, body, 66, 1, 1) > 0, 1);
	assert_int_equal(store_outbox_usage(f->s, a, &rows, &bytes), 0);
	assert_int_equal(rows, 2);
	assert_int_equal(bytes, 1300);
	assert_int_equal(store_outbox_usage(f->s, b, &rows, &bytes), 0);
	assert_int_equal(rows, 0);
}

/* Send keys: found by key, bound to contact and message, gone with the
 * contact, pruned by age. */
static void
test_sendkeys(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct store_sendkey k, got;
	char big[STORE_SENDKEY_MAX + 1];
	int64_t a, b;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	a = store_contact_add(f->s, &c);
	mkcontact(&c, "bob", 2);
	b = store_contact_add(f->s, &c);
	memset(&k, 0, sizeof(k));
	k.contact_id = a;
	msgid(k.msgid, 1);
	memset(k.digest, 0xd1, sizeof(k.digest));
	k.created = 1000;
	assert_int_equal(store_sendkey_get(f->s, "k1", 2, &got), 0);
	assert_int_equal(store_sendkey_add(f->s, "k1", 2, &k), 0);
	assert_int_equal(store_sendkey_add(f->s, "k1", 2, &k), STORE_EXISTS);
	/* bytes, not C strings: "k1\0" is another key */
	assert_int_equal(store_sendkey_get(f->s, "k1\0", 3, &got), 0);
	assert_int_equal(store_sendkey_get(f->s, "k1", 2, &got), 1);
	assert_int_equal(got.contact_id, a);
	assert_memory_equal(got.msgid, k.msgid, STORE_MSGID_BYTES);
	assert_memory_equal(got.digest, k.digest, STORE_DIGEST_BYTES);
	assert_int_equal(got.created, 1000);
	/* bounds */
	memset(big, 'x', sizeof(big));
	assert_int_equal(store_sendkey_add(f->s, big, sizeof(big), &k), -1);
	assert_int_equal(store_sendkey_add(f->s, big, 0, &k), -1);
	assert_int_equal(store_sendkey_add(f->s, big, STORE_SENDKEY_MAX, &k), 0);
	assert_int_equal(store_sendkey_get(f->s, big, STORE_SENDKEY_MAX, &got), 1);
	/* survives a reopen */
	reopen(f);
	assert_int_equal(store_sendkey_get(f->s, "k1", 2, &got), 1);
	/* one of bob's goes with bob */
	k.contact_id = b;
	k.created = 5000;
	msgid(k.msgid, 2);
	assert_int_equal(store_sendkey_add(f->s, "k2", 2, &k), 0);
	assert_int_equal(store_contact_delete(f->s, b, 6000), 1);
	assert_int_equal(store_sendkey_get(f->s, "k2", 2, &got), 0);
	/* prune by age: k1 and the big one (1000) go, a newer one stays */
	k.contact_id = a;
	k.created = 3000;
	assert_int_equal(store_sendkey_add(f->s, "k3", 2, &k), 0);
	assert_int_equal(store_sendkey_prune(f->s, 2000), 2);
	assert_int_equal(store_sendkey_get(f->s, "k1", 2, &got), 0);
	assert_int_equal(store_sendkey_get(f->s, "k3", 2, &got), 1);
	assert_int_equal(store_sendkey_prune(f->s, 2000), 0);
}

/* Error strings name the failure, never the data. */
static void
test_errors_hold_no_data(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	uint8_t id[STORE_MSGID_BYTES];
	int64_t cid;

	f->s = open_ok(f);
	mkcontact(&c, "SECRETNAME", 1);
	cid = store_contact_add(f->s, &c);
	assert_true(cid > 0);
	assert_int_equal(store_contact_add(f->s, &c), STORE_EXISTS);
	assert_null(strstr(store_errmsg(f->s), "SECRETNAME"));
	msgid(id, 1);
	assert_true(store_outbox_add(f->s, cid, id, 1, "SECRETBODY", 10, 1,
	    1) > 0);
	assert_int_equal(store_outbox_add(f->s, cid, id, 1, "SECRETBODY", 10, 1,
	    1), STORE_EXISTS);
	assert_true(store_errmsg(f->s)[0] != '\0');
	assert_null(strstr(store_errmsg(f->s), "SECRETBODY"));
	assert_int_equal(store_meta_set_text(f->s, STORE_META_CLIENT_ID,
	    "SECRETKEYSECRETKEYSECRETKEYSECRETKEYSECRETKEYSECRETKEYSECRETKEYxx"), -1);
	assert_null(strstr(store_errmsg(f->s), "SECRETKEY"));
	assert_string_equal(store_errmsg(NULL), "no store");
}

/* Transfers both ways, chunks seen once, the outbox rows of a file, and
 * everything gone with its contact. */
static int
count_files(const struct store_file *f, void *arg)
{
	(void)f;
	(*(int *)arg)++;
	return 0;
}

static void
wire_cb(const uint8_t msgid[STORE_MSGID_BYTES], void *arg)
{
	(void)msgid;
	(*(int *)arg)++;
}

static void
test_files(void **state)
{
	struct fx *f = *state;
	struct store_contact c;
	struct store_file a, b;
	uint8_t x1[16], x2[16], m1[16], m2[16], got[16];
	int64_t id, idx;
	int n = 0;

	f->s = open_ok(f);
	mkcontact(&c, "alice", 1);
	c.created = c.updated = 1000;
	id = store_contact_add(f->s, &c);
	assert_true(id > 0);
	memset(x1, 1, 16);
	memset(x2, 2, 16);
	memset(m1, 3, 16);
	memset(m2, 4, 16);

	memset(&a, 0, sizeof a);
	a.dir = STORE_FILE_OUT;
	a.contact_id = id;
	memcpy(a.xfer, x1, 16);
	snprintf(a.name, sizeof a.name, "photo.jpg");
	a.size = 5000000000ULL;	/* past 32 bits */
	memset(a.hash, 9, 32);
	a.chunk = 64715;
	a.state = 1;
	snprintf(a.path, sizeof a.path, "/home/a/photo.jpg");
	a.created = a.updated = 2000;
	assert_int_equal(store_file_add(f->s, &a), 1);
	assert_int_equal(store_file_add(f->s, &a), 0);
	b = a;
	b.dir = STORE_FILE_IN;
	b.path[0] = '\0';
	assert_int_equal(store_file_add(f->s, &b), 1);
	assert_int_equal(store_file_add(f->s, &b), 0);

	memset(&b, 0, sizeof b);
	assert_int_equal(store_file_get(f->s, STORE_FILE_OUT, 0, x1, &b), 1);
	assert_true(b.size == 5000000000ULL && b.chunk == 64715 && b.state == 1);
	assert_string_equal(b.name, "photo.jpg");
	assert_string_equal(b.path, "/home/a/photo.jpg");
	assert_memory_equal(b.hash, a.hash, 32);
	assert_int_equal(store_file_get(f->s, STORE_FILE_IN, id + 1, x1, &b), 0);
	assert_int_equal(store_file_get(f->s, STORE_FILE_OUT, 0, x2, &b), 0);

	b = a;
	b.next = 7;
	b.done = 5;
	b.state = 3;
	b.status = 4;
	b.updated = 3000;
	assert_int_equal(store_file_update(f->s, &b), 1);
	assert_int_equal(store_file_get(f->s, STORE_FILE_OUT, 0, x1, &b), 1);
	assert_true(b.next == 7 && b.done == 5 && b.state == 3 && b.status == 4 &&
	    b.updated == 3000);

	assert_int_equal(store_file_chunk_add(f->s, id, x1, 0), 1);
	assert_int_equal(store_file_chunk_add(f->s, id, x1, 0), 0);
	assert_int_equal(store_file_chunk_add(f->s, id, x1, 1), 1);
	/* A chunk needs its transfer. */
	assert_int_equal(store_file_chunk_add(f->s, id, x2, 0), -1);
	assert_int_equal(store_file_chunk_clear(f->s, id, x1), 0);
	assert_int_equal(store_file_chunk_add(f->s, id, x1, 0), 1);

	assert_int_equal(store_file_wire_add(f->s, m1, x1, 0), 0);
	assert_int_equal(store_file_wire_add(f->s, m2, x1, -1), 0);
	assert_int_equal(store_file_wire_take(f->s, m1, got, &idx), 1);
	assert_memory_equal(got, x1, 16);
	assert_true(idx == 0);
	assert_int_equal(store_file_wire_take(f->s, m1, got, &idx), 0);
	assert_int_equal(store_file_wire_add(f->s, m1, x1, 3), 0);
	assert_int_equal(store_file_wire_drain(f->s, x1, wire_cb, &n), 2);
	assert_int_equal(n, 2);
	assert_int_equal(store_file_wire_take(f->s, m2, got, &idx), 0);

	n = 0;
	assert_int_equal(store_file_list(f->s, count_files, &n), 2);
	assert_int_equal(n, 2);
	assert_int_equal(store_contact_delete(f->s, id, 5000), 1);
	n = 0;
	assert_int_equal(store_file_list(f->s, count_files, &n), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM file_chunk"), 0);
	assert_int_equal(store_file_delete(f->s, STORE_FILE_OUT, 0, x1), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_open_migrates_empty),
		T(test_open_synchronous_full),
		T(test_open_tightens_existing_mode),
		T(test_open_new_and_empty),
		T(test_open_damaged),
		T(test_open_bad_path),
		T(test_reopen_keeps_data),
		T(test_newer_version_refused),
		T(test_failed_migration_is_atomic),
		T(test_transactions),
		T(test_meta),
		T(test_migrate_v1_fixture),
		T(test_contacts),
		T(test_contact_corrupt_row),
		T(test_contact_delete_cascades),
		T(test_contact_delete_atomic),
		T(test_many_contacts),
		T(test_reentrant_call_refused),
		T(test_inboxes),
		T(test_outbox),
		T(test_rx),
		T(test_rx_ack_usage),
		T(test_sendkeys),
		T(test_files),
		T(test_errors_hold_no_data),
		T(test_sealed_on_disk),
		T(test_seal_all_and_vacuum),
		T(test_vault_rows),
		T(test_reset_state),
		T(test_dump_and_load),
#undef T
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
