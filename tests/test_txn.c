/* Tests for daemon/txn.c (group commit) linked alone with the store: frames and replies wait for the commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <sqlite3.h>

#include "../daemon/core.h"

/* --- what txn.c uses from the rest of the engine ----------------------- */

static struct veild_config cfg;
static struct store *st;
static struct event_base *base;
static char published[64][INBOX_MAX];
static int npublished;

const struct veild_config *eng_cfg(void) { return &cfg; }
struct store *eng_store(void) { return st; }
struct event_base *eng_base(void) { return base; }

void
publish_direct(int64_t epoch, const char *topic, const uint8_t *frames, int n)
{
	(void)epoch;
	(void)frames;
	(void)n;
	assert_true(npublished < 64);
	copystr(published[npublished++], topic, INBOX_MAX);
}

/* eng_store_result: what txn.c told the engine about the disk. */
static int store_ok, store_failed;

const char *engine_store_problem(void) { return NULL; }

void
eng_store_result(int ok)
{
	if (ok)
		store_ok++;
	else
		store_failed++;
}

static char dir[64], path[128];

static int
setup(void **state)
{
	char err[256];

	(void)state;
	snprintf(dir, sizeof dir, "/tmp/test_txn.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/veil.db", dir);
	st = store_open(path, err, sizeof err);
	if (st == NULL)
		fail_msg("store_open: %s", err);
	{
		static const uint8_t key[STORE_KEY_BYTES] = { 1 };

		if (store_set_key(st, key) != 0 || store_begin(st) != 0 ||
		    store_seal_all(st) < 0 || store_commit(st) != 0)
			fail_msg("sealing: %s", store_errmsg(st));
	}
	base = event_base_new();
	assert_non_null(base);
	cfg.frames.size = 256;
	npublished = 0;
	store_ok = store_failed = 0;
	return 0;
}

static int
teardown(void **state)
{
	char p[160];

	(void)state;
	txn_shutdown();
	store_close(st);
	event_base_free(base);
	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
	rmdir(dir);
	return 0;
}

/* What another process reading the file sees: only committed data. */
static int64_t
committed_epoch(void)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int64_t v = -1;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT client_epoch FROM meta", -1,
	    &q, NULL), SQLITE_OK);
	if (sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return v;
}

static int fired, fired_ok;

static void
after(void *arg, int committed)
{
	(void)arg;
	fired++;
	fired_ok = committed;
}

static const uint8_t frame[256];

/* Before txn_init (the daemon's start-up) every bracket commits at once. */
static void
test_alone_commits_at_once(void **state)
{
	(void)state;
	assert_int_equal(txn_begin(), 0);
	assert_int_equal(store_meta_set_int(st, STORE_META_CLIENT_EPOCH, 7), 0);
	txn_publish(0, "a", frame, 1);
	assert_int_equal(npublished, 0);	/* never before the commit */
	assert_int_equal(txn_commit(), 0);
	assert_int_equal(npublished, 1);
	assert_int_equal(committed_epoch(), 7);
	/* outside a transaction, a frame leaves at once */
	txn_publish(0, "b", frame, 1);
	assert_int_equal(npublished, 2);
	after_commit(after, NULL);
	assert_int_equal(fired, 1);
	assert_int_equal(fired_ok, 1);
}

/* With the loop: brackets of one pass share one commit, after which the
 * frames leave and the callbacks run, in that order. */
static void
test_group_commits_on_the_loop(void **state)
{
	(void)state;
	fired = fired_ok = 0;
	assert_int_equal(txn_init(), 0);
	assert_int_equal(txn_begin(), 0);
	assert_int_equal(store_meta_set_int(st, STORE_META_CLIENT_EPOCH, 1), 0);
	txn_publish(0, "one", frame, 1);
	assert_int_equal(txn_commit(), 0);
	assert_int_equal(txn_begin(), 0);
	assert_int_equal(store_meta_set_int(st, STORE_META_CLIENT_EPOCH, 2), 0);
	txn_publish(0, "two", frame, 1);
	assert_int_equal(txn_commit(), 0);
	after_commit(after, NULL);
	/* not durable yet: nothing left, nothing answered */
	assert_int_equal(store_in_transaction(st), 1);
	assert_int_equal(npublished, 0);
	assert_int_equal(fired, 0);
	assert_int_equal(committed_epoch(), -1);	/* the default */
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(store_in_transaction(st), 0);
	assert_int_equal(committed_epoch(), 2);
	assert_int_equal(npublished, 2);
	assert_string_equal(published[0], "one");
	assert_string_equal(published[1], "two");
	assert_int_equal(fired, 1);
	assert_int_equal(fired_ok, 1);
	/* a commit that wrote tells the engine the disk takes changes; one
	 * that wrote nothing proves nothing and says nothing */
	assert_int_equal(store_ok, 1);
	assert_int_equal(txn_begin(), 0);
	assert_int_equal(txn_commit(), 0);
	assert_int_equal(txn_flush(), 0);
	assert_int_equal(store_ok, 1);
	assert_int_equal(store_failed, 0);
}

/* A failing path undoes its own bracket only: its writes and its frames. */
static void
test_rollback_undoes_one_bracket(void **state)
{
	(void)state;
	assert_int_equal(txn_init(), 0);
	assert_int_equal(txn_begin(), 0);
	assert_int_equal(store_meta_set_int(st, STORE_META_CLIENT_EPOCH, 10), 0);
	txn_publish(0, "outer", frame, 1);
	assert_int_equal(txn_begin(), 0);
	assert_int_equal(store_meta_set_int(st, STORE_META_CLIENT_EPOCH, 11), 0);
	txn_publish(0, "inner", frame, 1);
	txn_publish(0, "inner2", frame, 1);
	assert_int_equal(txn_rollback(), 0);
	txn_publish(0, "outer2", frame, 1);
	assert_int_equal(txn_commit(), 0);
	assert_int_equal(txn_flush(), 0);
	assert_int_equal(committed_epoch(), 10);
	assert_int_equal(npublished, 2);
	assert_string_equal(published[0], "outer");
	assert_string_equal(published[1], "outer2");
	/* a rollback with nothing open is harmless */
	assert_int_equal(txn_rollback(), 0);
	assert_int_equal(txn_commit(), -1);
}

/* A burst does not grow the group without bound: it commits early. */
static void
test_long_burst_commits_early(void **state)
{
	int i, flushed_at = -1;

	(void)state;
	assert_int_equal(txn_init(), 0);
	for (i = 0; i < 600; i++) {
		assert_int_equal(txn_begin(), 0);
		assert_int_equal(store_meta_set_int(st, STORE_META_CLIENT_EPOCH, i), 0);
		assert_int_equal(txn_commit(), 0);
		if (!store_in_transaction(st) && flushed_at < 0)
			flushed_at = i;
	}
	assert_true(flushed_at > 0 && flushed_at < 600);
	assert_int_equal(committed_epoch(), flushed_at);
	/* brackets nest only so deep */
	for (i = 0; i < 8; i++)
		assert_int_equal(txn_begin(), 0);
	assert_int_equal(txn_begin(), -1);
	for (i = 0; i < 8; i++)
		assert_int_equal(txn_commit(), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_alone_commits_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commits_on_the_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback_undoes_one_bracket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_burst_commits_early, setup, teardown),
	};

	return cmocka_run_group_tests_name("txn", tests, NULL, NULL);
}
