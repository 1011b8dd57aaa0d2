/* Tests for daemon/inbox.c linked alone with the store: which inboxes live, which connection holds them, the GC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../daemon/core.h"

/* --- stubs for what inbox.c asks of the other modules ------------------ */

static struct veild_config cfg;
static struct level_policy policy;
static struct store *st;
static struct contact contacts[4];
static size_t ncontacts;
static int has_card, has_old;

struct sub {
	enum conn_which	which;
	char		topic[INBOX_MAX];
};
static struct sub subs[64];
static int nsubs;
static char unsubs[64][INBOX_MAX];
static int nunsubs;

const struct veild_config *eng_cfg(void) { return &cfg; }
struct store *eng_store(void) { return st; }
const struct level_policy *eng_policy(void) { return &policy; }
size_t contact_count(void) { return ncontacts; }
struct contact *contact_at(size_t i) { return i < ncontacts ? &contacts[i] : NULL; }
int conn_has_card(void) { return has_card; }
int conn_has_old(void) { return has_old; }
int txn_begin(void) { return store_savepoint(st); }
int txn_commit(void) { return store_release(st); }
int txn_rollback(void) { return store_rollback_to(st); }

struct contact *
contact_find(int64_t id)
{
	for (size_t i = 0; i < ncontacts; i++)
		if (contacts[i].id == id)
			return &contacts[i];
	return NULL;
}

void
conn_subscribe(enum conn_which which, const char *inbox)
{
	assert_true(nsubs < 64);
	subs[nsubs].which = which;
	copystr(subs[nsubs++].topic, inbox, INBOX_MAX);
}

void
conn_unsubscribe(const char *inbox)
{
	assert_true(nunsubs < 64);
	copystr(unsubs[nunsubs++], inbox, INBOX_MAX);
}

/* Where was topic subscribed last (-1: nowhere). */
static int
subscribed(const char *topic)
{
	for (int i = nsubs - 1; i >= 0; i--)
		if (strcmp(subs[i].topic, topic) == 0)
			return (int)subs[i].which;
	return -1;
}

static int
unsubscribed(const char *topic)
{
	for (int i = 0; i < nunsubs; i++)
		if (strcmp(unsubs[i], topic) == 0)
			return 1;
	return 0;
}

static int64_t
retire_at(const char *topic)
{
	struct store_inbox in;

	if (store_inbox_get(st, topic, &in) != 1)
		return -1;	/* gone */
	return in.retire_at;
}

static char dir[64], path[128];

static int64_t
add_contact(size_t i, const char *name, const char *my_inbox, int state)
{
	struct store_contact row;
	struct contact *c = &contacts[i];
	int64_t r;

	memset(&row, 0, sizeof row);
	copystr(row.name, name, sizeof row.name);
	row.state = state;
	memset(row.peer_pk, (int)i + 1, sizeof row.peer_pk);
	copystr(row.my_inbox, my_inbox, sizeof row.my_inbox);
	row.created = row.updated = 1;
	memset(c, 0, sizeof *c);
	c->id = store_contact_add(st, &row);
	assert_true(c->id > 0);
	c->state = state;
	copystr(c->my_inbox, my_inbox, sizeof c->my_inbox);
	if (i >= ncontacts)
		ncontacts = i + 1;
	r = store_inbox_add(st, my_inbox, c->id, STORE_INBOX_PAIR, 0, now_ms());
	assert_true(r > 0 || r == STORE_EXISTS);	/* a shared inbox is there */
	return c->id;
}

static int
setup(void **state)
{
	char err[256];

	(void)state;
	snprintf(dir, sizeof dir, "/tmp/test_inbox.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/veil.db", dir);
	st = store_open(path, err, sizeof err);
	if (st == NULL)
		fail_msg("store_open: %s", err);
	memset(&cfg, 0, sizeof cfg);
	cfg.rotation.grace_ms = 60000;
	cfg.identity.id_bits = 128;
	memset(&policy, 0, sizeof policy);
	policy.pair_inboxes = policy.rotates = policy.card_conn = 1;
	ncontacts = 0;
	nsubs = nunsubs = 0;
	has_card = has_old = 0;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	return 0;
}

static int
teardown(void **state)
{
	char p[160];

	(void)state;
	inbox_shutdown();
	store_close(st);
	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
	rmdir(dir);
	return 0;
}

/*
 * The GC keeps what a contact still writes to (and the new inbox of an
 * UPDATE awaiting its ACK), retires the rest with a grace period, extends
 * a used inbox whose grace lapsed between two passes, and the expiry
 * unsubscribes what is past its time.  Cards follow their own rules.
 */
static void
test_gc_keeps_what_is_used(void **state)
{
	int64_t now = now_ms(), r;
	struct store_inbox in;

	(void)state;
	add_contact(0, "bob", "bob-in", CONTACT_ESTABLISHED);
	add_contact(1, "carol", "carol-in", CONTACT_ESTABLISHED);
	contacts[1].pair.upd_pending = 1;
	copystr(contacts[1].upd_inbox, "carol-new", INBOX_MAX);
	assert_true(store_inbox_add(st, "carol-new", contacts[1].id,
	    STORE_INBOX_PAIR, 0, now) > 0);
	assert_true(store_inbox_add(st, "orphan", 0, STORE_INBOX_PAIR, 0, now) > 0);
	assert_true(store_inbox_add(st, "lapsed-orphan", 0, STORE_INBOX_PAIR, 0,
	    now) > 0);
	assert_int_equal(store_inbox_get(st, "lapsed-orphan", &in), 1);
	assert_int_equal(store_inbox_retire(st, in.id, now - 1000), 1);
	/* Bob's inbox was retired and its time ran out, but Bob still
	 * writes there (the pass between GCs): it must come back. */
	assert_int_equal(store_inbox_get(st, "bob-in", &in), 1);
	assert_int_equal(store_inbox_retire(st, in.id, now - 500), 1);

	inbox_housekeeping();
	r = retire_at("bob-in");
	assert_true(r >= now + 59000 && r <= now_ms() + 60000);
	assert_int_equal(retire_at("carol-in"), 0);
	assert_int_equal(retire_at("carol-new"), 0);
	r = retire_at("orphan");
	assert_true(r >= now + 59000);	/* retired, with its grace */
	assert_false(unsubscribed("orphan"));
	assert_int_equal(retire_at("lapsed-orphan"), -1);	/* expired */
	assert_true(unsubscribed("lapsed-orphan"));
	assert_false(unsubscribed("bob-in"));
	/* the card is never the GC's */
	assert_int_equal(retire_at(inbox_card_topic()), 0);

	/* Carol's ACK came: the old inbox goes with the grace period, not
	 * at once (her last frames may be on the way). */
	contacts[1].pair.upd_pending = 0;
	copystr(contacts[1].my_inbox, "carol-new", INBOX_MAX);
	inbox_housekeeping();
	assert_true(retire_at("carol-in") > now);
	assert_false(unsubscribed("carol-in"));
	assert_int_equal(retire_at("carol-new"), 0);
}

/* At a rotation only what the rotation does not replace moves to the new
 * connection; a card with a connection of its own stays there. */
static void
test_rotate_moves_only_what_stays(void **state)
{
	(void)state;
	has_card = 1;
	add_contact(0, "bob", "bob-in", CONTACT_ESTABLISHED);
	add_contact(1, "carol", "carol-in", CONTACT_ESTABLISHED);
	contacts[1].pair.upd_pending = 1;	/* not yet told of the last one */
	add_contact(2, "dave", "dave-in", CONTACT_REQUESTED);

	assert_true(inbox_subscribe_all(SUB_ROTATE) >= 4);
	assert_int_equal(subscribed("bob-in"), -1);	/* replaced: stays old */
	assert_int_equal(subscribed("carol-in"), CONN_CUR);
	assert_int_equal(subscribed("dave-in"), CONN_CUR);
	assert_int_equal(subscribed(inbox_card_topic()), -1);

	nsubs = 0;
	assert_true(inbox_subscribe_all(SUB_START) >= 4);
	assert_int_equal(subscribed(inbox_card_topic()), CONN_CARD);
	assert_int_equal(subscribed("bob-in"), CONN_CUR);

	/* At start, an inbox in its grace period goes back to the previous
	 * client ID when there is one. */
	inbox_retire("bob-in", now_ms() + 30000);
	has_old = 1;
	nsubs = 0;
	inbox_subscribe_all(SUB_START);
	assert_int_equal(subscribed("bob-in"), CONN_OLD);
	assert_true(inbox_in_grace());
	assert_true(inbox_grace_end() >= now_ms() + 29000);
}

/* Level 3: one shared inbox; a replaced one lives while an UPDATE
 * announcing the new one waits for its ACK. */
static void
test_shared_inbox(void **state)
{
	char err[256], old[INBOX_MAX];

	(void)state;
	inbox_shutdown();
	policy.pair_inboxes = 0;
	policy.card_conn = 0;
	policy.card_rotates = 1;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	copystr(old, inbox_shared(), sizeof old);
	assert_int_equal(retire_at(old), 0);
	add_contact(0, "bob", old, CONTACT_ESTABLISHED);
	assert_int_equal(store_inbox_add(st, "shared2", 0, STORE_INBOX_SHARED,
	    0, now_ms()) > 0, 1);
	assert_int_equal(store_inbox_add(st, "card2", 0, STORE_INBOX_CARD, 0,
	    now_ms()) > 0, 1);
	inbox_replace_shared("shared2", "card2");
	assert_string_equal(inbox_shared(), "shared2");
	contacts[0].pair.upd_pending = 1;
	copystr(contacts[0].upd_inbox, "shared2", INBOX_MAX);

	nsubs = 0;
	inbox_subscribe_all(SUB_ROTATE);
	assert_int_equal(subscribed("shared2"), CONN_CUR);
	assert_int_equal(subscribed(old), -1);	/* stays on the old one */
	/* Bob still writes to the old shared inbox until his ACK */
	inbox_housekeeping();
	assert_int_equal(retire_at(old), 0);
	contacts[0].pair.upd_pending = 0;
	copystr(contacts[0].my_inbox, "shared2", INBOX_MAX);
	inbox_housekeeping();
	assert_true(retire_at(old) > now_ms());
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gc_keeps_what_is_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotate_moves_only_what_stays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_inbox, setup, teardown),
	};

	return cmocka_run_group_tests_name("inbox", tests, NULL, NULL);
}
