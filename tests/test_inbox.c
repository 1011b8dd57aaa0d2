/* Tests for daemon/inbox.c linked alone with the store: which topics each epoch's connection holds, and the cards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "../daemon/core.h"

/* --- stubs for what inbox.c asks of the other modules ------------------ */

static struct veild_config cfg;
static struct level_policy policy;
static struct store *st;
static int adds, dels, cards_changed;
static struct veil_inbox last_add, last_del;

const struct veild_config *eng_cfg(void) { return &cfg; }
struct store *eng_store(void) { return st; }
const struct level_policy *eng_policy(void) { return &policy; }
uint32_t eng_epoch_len(void) { return policy.rotates ? 60 : 0; }
uint32_t eng_key_period(void) { return 3600; }
void conn_cards_changed(void) { cards_changed++; }

void
conn_topic_add(const struct veil_inbox *in)
{
	adds++;
	last_add = *in;
}

void
conn_topic_del(const struct veil_inbox *in)
{
	dels++;
	last_del = *in;
}

static char dir[64], path[128];

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
	{
		static const uint8_t key[STORE_KEY_BYTES] = { 1 };

		if (store_set_key(st, key) != 0 || store_begin(st) != 0 ||
		    store_seal_all(st) < 0 || store_commit(st) != 0)
			fail_msg("sealing: %s", store_errmsg(st));
	}
	memset(&cfg, 0, sizeof cfg);
	cfg.identity.id_bits = 128;
	cfg.cards.ttl_ms = 24 * 3600 * 1000ULL;
	cfg.cards.one_time_ttl_ms = 7 * 24 * 3600 * 1000ULL;
	memset(&policy, 0, sizeof policy);
	policy.pair_inboxes = policy.rotates = policy.card_conn = 1;
	adds = dels = cards_changed = 0;
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

struct topics {
	int	 n;
	char	 t[8][INBOX_MAX];
};

static void
topic_cb(const char *topic, void *arg)
{
	struct topics *t = arg;

	if (t->n < 8)
		copystr(t->t[t->n], topic, INBOX_MAX);
	t->n++;
}

static struct topics
topics_of(int64_t epoch)
{
	struct topics t;

	memset(&t, 0, sizeof t);
	inbox_foreach_topic(epoch, topic_cb, &t);
	return t;
}

static void
established(struct contact *c, const struct veil_inbox *mine)
{
	memset(c, 0, sizeof *c);
	c->state = CONTACT_ESTABLISHED;
	c->pair.role = VEIL_ROLE_RESPONDER;
	c->pair.my_inbox = *mine;
}

/*
 * Level 2: each contact's seed is a topic of its own in each epoch; the
 * topic changes with the epoch and says nothing of the seed; a pending
 * UPDATE's new seed and an old seed in its grace are held too, and what
 * nobody writes to any more goes.
 */
static void
test_contact_seeds_follow_the_contact(void **state)
{
	char err[256];
	struct contact a, b;
	struct veil_inbox ia, ib, inew;
	struct topics t1, t2;
	char want[INBOX_MAX];

	(void)state;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	assert_int_equal(adds, 0);	/* level 2: no shared seed subscribed */
	inbox_for_contact(&ia);
	inbox_for_contact(&ib);
	assert_int_equal(ia.epoch, 60);
	assert_int_equal(ia.period, 3600);
	assert_true(sodium_memcmp(ia.seed, ib.seed, VEIL_SEED_BYTES) != 0);
	established(&a, &ia);
	established(&b, &ib);
	inbox_contact_sync(&a);
	inbox_contact_sync(&b);
	assert_int_equal(adds, 2);
	t1 = topics_of(100);
	assert_int_equal(t1.n, 2);
	assert_int_equal(veil_topic_text(ia.seed, 100, want, sizeof want), 0);
	assert_true(strcmp(t1.t[0], want) == 0 || strcmp(t1.t[1], want) == 0);
	t2 = topics_of(101);
	assert_int_equal(t2.n, 2);
	assert_true(strcmp(t1.t[0], t2.t[0]) != 0 && strcmp(t1.t[0], t2.t[1]) != 0);
	/* a sync without change changes nothing */
	inbox_contact_sync(&a);
	assert_int_equal(adds, 2);
	assert_int_equal(dels, 0);

	/* an UPDATE with a new seed: both, until the ACK */
	inbox_for_contact(&inew);
	a.pair.upd_pending = 1;
	a.pair.upd_new = inew;
	inbox_contact_sync(&a);
	assert_int_equal(adds, 3);
	assert_int_equal(topics_of(100).n, 3);
	/* the ACK: the old seed stays for its grace, then goes */
	a.pair.upd_pending = 0;
	a.pair.my_inbox = inew;
	memcpy(a.seed_prev, ia.seed, VEIL_SEED_BYTES);
	a.seed_prev_epoch = ia.epoch;
	a.has_seed_prev = 1;
	a.seed_prev_until = now_ms() + 60000;
	inbox_contact_sync(&a);
	assert_int_equal(dels, 0);
	assert_int_equal(topics_of(100).n, 3);
	a.seed_prev_until = now_ms() - 1;
	inbox_contact_sync(&a);
	assert_int_equal(dels, 1);
	assert_memory_equal(last_del.seed, ia.seed, VEIL_SEED_BYTES);
	assert_int_equal(topics_of(100).n, 2);
	/* a contact that goes takes its topics with it */
	inbox_contact_forget(&b);
	assert_int_equal(dels, 2);
	assert_int_equal(topics_of(100).n, 1);
	inbox_contact_forget(&a);
	assert_int_equal(topics_of(100).n, 0);
}

/*
 * Many contacts: seeds are found by hash, and a seed that goes from the
 * middle of the list leaves every other one reachable.  The same seed
 * under another epoch length is another inbox.
 */
#define MANY 300
static void
test_many_seeds(void **state)
{
	static struct contact c[MANY];
	char err[256];
	struct veil_inbox in;

	(void)state;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	for (int i = 0; i < MANY; i++) {
		inbox_for_contact(&in);
		if (i % 3 == 2) {	/* shares the seed of i - 1 */
			in = c[i - 1].pair.my_inbox;
			if (i % 6 == 5)	/* under another epoch length */
				in.epoch = 30;
		}
		established(&c[i], &in);
		inbox_contact_sync(&c[i]);
	}
	/* two of every three contacts bring a seed; half of the third ones
	 * share one outright, half under another epoch length */
	assert_int_equal(adds, 2 * MANY / 3 + MANY / 6);
	assert_int_equal(topics_of(7).n, adds);
	for (int i = 0; i < MANY; i += 2) {	/* every other one goes */
		inbox_contact_forget(&c[i]);
	}
	/* what is left is still found: forgetting it again unsubscribes */
	assert_int_equal(topics_of(7).n, adds - dels);
	for (int i = 1; i < MANY; i += 2) {
		inbox_contact_forget(&c[i]);
	}
	assert_int_equal(dels, adds);
	assert_int_equal(topics_of(7).n, 0);
}

/* Levels 1 and 3: one seed for every contact, one topic per epoch; it is
 * held even before any contact (a request in flight needs it); level 1's
 * is the same in every epoch. */
static void
test_shared_seed(void **state)
{
	char err[256];
	struct contact a, b;
	struct veil_inbox s1, s2;
	struct topics t;

	(void)state;
	policy.pair_inboxes = 0;
	policy.card_per_conn = 1;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	assert_int_equal(adds, 1);
	inbox_shared(&s1);
	inbox_for_contact(&s2);
	assert_memory_equal(s1.seed, s2.seed, VEIL_SEED_BYTES);
	established(&a, &s1);
	established(&b, &s1);
	inbox_contact_sync(&a);
	inbox_contact_sync(&b);
	assert_int_equal(adds, 1);	/* counted, not subscribed again */
	assert_int_equal(topics_of(7).n, 1);
	/* a new shared seed: the old one stays while contacts write there */
	assert_int_equal(inbox_reseed_shared(), 0);
	inbox_shared(&s2);
	assert_true(sodium_memcmp(s1.seed, s2.seed, VEIL_SEED_BYTES) != 0);
	t = topics_of(7);
	assert_int_equal(t.n, 2);
	inbox_contact_forget(&a);
	inbox_contact_forget(&b);
	assert_int_equal(topics_of(7).n, 1);
	assert_memory_equal(last_del.seed, s1.seed, VEIL_SEED_BYTES);
	/* the seed survives a restart */
	inbox_shutdown();
	assert_int_equal(inbox_init(err, sizeof err), 0);
	inbox_shared(&s1);
	assert_memory_equal(s1.seed, s2.seed, VEIL_SEED_BYTES);

	/* level 1: a fixed inbox */
	inbox_shutdown();
	policy.rotates = 0;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	t = topics_of(5);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.t[0], topics_of(6).t[0]);
}

/*
 * Cards: the fixed card of levels 1 and 2; one-time cards that go with
 * their first use, and expire unused; level 3 cards that expire, and a
 * new one once the current one has less than half its life left.
 */
static void
test_cards(void **state)
{
	char err[256], topic[INBOX_MAX];
	struct veil_id cid, cid2, got;
	uint64_t expires;
	int once;

	(void)state;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	assert_true(inbox_card_topic()[0] != '\0');
	assert_int_equal(inbox_card(0, &cid, &expires), 0);
	assert_int_equal(expires, 0);		/* level 2: no expiry */
	veil_id_to_text(&cid, topic, sizeof topic);
	assert_string_equal(topic, inbox_card_topic());
	assert_int_equal(inbox_card_live(topic, &got, &once), 1);
	assert_int_equal(once, 0);
	assert_true(veil_id_equal(&got, &cid));
	assert_int_equal(inbox_card_live("not-a-card", &got, &once), 0);

	cards_changed = 0;
	assert_int_equal(inbox_card(1, &cid2, &expires), 0);
	assert_true(cards_changed > 0);
	veil_id_to_text(&cid2, topic, sizeof topic);
	assert_int_equal(inbox_card_live(topic, &got, &once), 1);
	assert_int_equal(once, 1);
	inbox_card_consume(topic);
	assert_int_equal(inbox_card_live(topic, &got, &once), 0);

	/* level 3: cards with a life of their own */
	inbox_shutdown();
	policy.pair_inboxes = 0;
	policy.card_per_conn = 1;
	cfg.cards.ttl_ms = 10000;
	assert_int_equal(inbox_init(err, sizeof err), 0);
	assert_int_equal(inbox_card(0, &cid, &expires), 0);
	assert_true(expires * 1000 >= (uint64_t)now_ms() + 8000);
	assert_int_equal(inbox_card(0, &cid2, &expires), 0);
	assert_true(veil_id_equal(&cid, &cid2));	/* still young: the same */
	veil_id_to_text(&cid, topic, sizeof topic);
	/* past half its life: a new one, the old one still taken */
	cfg.cards.ttl_ms = 30000;
	assert_int_equal(inbox_card(0, &cid2, &expires), 0);
	assert_false(veil_id_equal(&cid, &cid2));
	assert_int_equal(inbox_card_live(topic, &got, &once), 1);
	/* an expired card is no card */
	{
		struct store_inbox in;

		assert_int_equal(store_inbox_get(st, topic, &in), 1);
		assert_int_equal(store_inbox_retire(st, in.id, now_ms() - 1), 1);
	}
	inbox_housekeeping();
	assert_int_equal(inbox_card_live(topic, &got, &once), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_contact_seeds_follow_the_contact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_seeds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_seed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cards, setup, teardown),
	};

	if (veil_init() != 0)
		return 1;
	return cmocka_run_group_tests_name("inbox", tests, NULL, NULL);
}
