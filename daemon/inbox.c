/* inbox.c: the inboxes we subscribe (card, shared, per contact), which connection holds each, and how long each lives. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "log.h"

static struct {
	struct veil_id	card_cid;
	char		card_topic[INBOX_MAX];
	char		shared_inbox[INBOX_MAX];
} I;

const struct veil_id *
inbox_card_cid(void)
{
	return &I.card_cid;
}

const char *
inbox_card_topic(void)
{
	return I.card_topic;
}

const char *
inbox_shared(void)
{
	return I.shared_inbox;
}

void
inbox_replace_shared(const char *shared, const char *card)
{
	copystr(I.shared_inbox, shared, sizeof I.shared_inbox);
	copystr(I.card_topic, card, sizeof I.card_topic);
	if (veil_id_from_text(&I.card_cid, card) != 0)
		log_warnx("rotation: a malformed card ID");
}

void
inbox_new_id(char out[INBOX_MAX])
{
	struct veil_id id;

	veil_id_new(&id, eng_cfg()->identity.id_bits);
	veil_id_to_text(&id, out, VEIL_ID_TEXT_MAX);
}

int
inbox_add(const char *inbox, int64_t contact_id, int kind, int one_time)
{
	int64_t r = store_inbox_add(eng_store(), inbox, contact_id, kind,
	    one_time, now_ms());

	if (r < 0 && r != STORE_EXISTS)
		return -1;
	conn_subscribe(CONN_CUR, inbox);
	return 0;
}

void
inbox_retire(const char *inbox, int64_t at)
{
	struct store_inbox in;

	if (inbox[0] != '\0' && store_inbox_get(eng_store(), inbox, &in) == 1 &&
	    (in.retire_at == 0 || in.retire_at < at) &&
	    store_inbox_retire(eng_store(), in.id, at) < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
}

/* Is topic the new inbox of an UPDATE still waiting for its ACK?  Then it
 * must stay (the ACK, and with it the contact, would be lost).  O(n): for
 * the few shared inboxes only. */
static int
awaited_by_update(const char *topic)
{
	for (size_t i = 0; i < contact_count(); i++) {
		struct contact *c = contact_at(i);

		if (c->pair.upd_pending && strcmp(c->upd_inbox, topic) == 0)
			return 1;
	}
	return 0;
}

/* Will this inbox be replaced by the rotation that is starting?  Then it
 * stays on the old connection only. */
static int
inbox_rotates_away(const struct store_inbox *in)
{
	struct contact *c;

	if (in->retire_at != 0)
		return 1;
	if (in->kind == STORE_INBOX_SHARED)
		return strcmp(in->topic, I.shared_inbox) != 0 &&
		    !awaited_by_update(in->topic);
	if (in->kind != STORE_INBOX_PAIR)
		return 0;
	c = contact_find(in->contact_id);
	return c != NULL && c->state == CONTACT_ESTABLISHED && !c->pair.upd_pending &&
	    strcmp(c->my_inbox, in->topic) == 0;
}

static int
inbox_sub_cb(const struct store_inbox *in, void *arg)
{
	enum sub_mode mode = *(enum sub_mode *)arg;

	if (in->kind == STORE_INBOX_CARD && conn_has_card()) {
		if (mode == SUB_START)
			conn_subscribe(CONN_CARD, in->topic);
		return 0;
	}
	if (mode == SUB_ROTATE) {
		if (!inbox_rotates_away(in))
			conn_subscribe(CONN_CUR, in->topic);
		return 0;
	}
	if (mode == SUB_KEEP_GRACE) {
		/* Everything the old connection holds that still lives: the
		 * inboxes in their grace period, and older shared inboxes a
		 * contact still writes to (it has not confirmed our UPDATE). */
		if (in->retire_at != 0 || (in->kind == STORE_INBOX_SHARED &&
		    strcmp(in->topic, I.shared_inbox) != 0))
			conn_subscribe(CONN_CUR, in->topic);
		return 0;
	}
	/* At start, inboxes in a grace period go back to the previous
	 * client ID when we still know it. */
	conn_subscribe(in->retire_at != 0 && conn_has_old() ? CONN_OLD : CONN_CUR,
	    in->topic);
	return 0;
}

int
inbox_subscribe_all(enum sub_mode mode)
{
	int r = store_inbox_list(eng_store(), now_ms(), inbox_sub_cb, &mode);

	if (r < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
	return r;
}

static int
grace_cb(const struct store_inbox *in, void *arg)
{
	int64_t *latest = arg;

	if (in->retire_at > *latest)
		*latest = in->retire_at;
	return 0;
}

int64_t
inbox_grace_end(void)
{
	int64_t latest = 0;

	store_inbox_list(eng_store(), now_ms(), grace_cb, &latest);
	return latest;
}

static int
count_grace_cb(const struct store_inbox *in, void *arg)
{
	int *n = arg;

	if (in->retire_at != 0 && !(in->kind == STORE_INBOX_CARD && conn_has_card()))
		(*n)++;
	return 0;
}

/* Are inboxes of the previous epoch still in their grace period? */
int
inbox_in_grace(void)
{
	int n = 0;

	store_inbox_list(eng_store(), now_ms(), count_grace_cb, &n);
	return n > 0;
}

/*
 * An inbox lives while it is in use, and a grace period after:
 *  - the current shared inbox (levels 1, 3);
 *  - a contact's inbox (it is where the peer sends), and while an UPDATE
 *    is pending also the new inbox it announced;
 *  - so both live until the UPDATE-ACK arrives, however long the peer
 *    stays offline: the ACK comes to the new one, and until then the
 *    peer may not have read the UPDATE and writes to the old one; its
 *    own UPDATEs come there too.  Retiring the old inbox after the grace
 *    period instead deadlocks two peers whose UPDATEs crossed and were
 *    not read in time: each would announce to an inbox the other gave up.
 * The replaced inbox gets the grace period after the ACK.  Used inboxes
 * that were retired get their grace extended; unused ones are retired.
 * A hash set of the used topics keeps this O(contacts).
 */
struct topic_set {
	const char	**slot;
	size_t		  mask;
};

static size_t
topic_hash(const char *t)
{
	size_t h = 5381;

	while (*t != '\0')
		h = h * 33 + (unsigned char)*t++;
	return h;
}

static void
topic_set_add(struct topic_set *ts, const char *t)
{
	size_t i;

	if (t[0] == '\0')
		return;
	for (i = topic_hash(t) & ts->mask; ts->slot[i] != NULL; i = (i + 1) & ts->mask)
		if (strcmp(ts->slot[i], t) == 0)
			return;
	ts->slot[i] = t;
}

static int
topic_set_has(const struct topic_set *ts, const char *t)
{
	size_t i;

	for (i = topic_hash(t) & ts->mask; ts->slot[i] != NULL; i = (i + 1) & ts->mask)
		if (strcmp(ts->slot[i], t) == 0)
			return 1;
	return 0;
}

static int
inbox_gc_cb(const struct store_inbox *in, void *arg)
{
	const struct topic_set *used = arg;
	int64_t until = now_ms() + (int64_t)eng_cfg()->rotation.grace_ms;
	int r = 0;

	if (in->kind == STORE_INBOX_CARD)
		return 0;	/* cards follow their own rules */
	if (topic_set_has(used, in->topic)) {
		if (in->retire_at != 0 && in->retire_at < until)
			r = store_inbox_retire(eng_store(), in->id, until);
	} else if (in->retire_at == 0)
		r = store_inbox_retire(eng_store(), in->id, until);
	return r < 0 ? 1 : 0;
}

static void
inbox_gc(void)
{
	struct topic_set used;
	size_t cap = 64;

	while (cap < 4 * (contact_count() + 1))	/* two topics a contact, load <= 1/2 */
		cap *= 2;
	if ((used.slot = calloc(cap, sizeof *used.slot)) == NULL)
		return;
	used.mask = cap - 1;
	if (!eng_policy()->pair_inboxes)
		topic_set_add(&used, I.shared_inbox);
	for (size_t i = 0; i < contact_count(); i++) {
		struct contact *c = contact_at(i);

		/* Until its ACK, the peer may not have read our UPDATE
		 * (offline, or unable to open it yet): it still writes to
		 * the old inbox, and its own UPDATEs arrive only there. */
		topic_set_add(&used, c->my_inbox);
		if (c->pair.upd_pending)
			topic_set_add(&used, c->upd_inbox);
	}
	if (txn_begin() == 0) {
		/* Also the rows whose time ran out since the last pass: an
		 * inbox in use must be kept even if its extension lapsed
		 * (grace is as short as the 2 s between passes in tests). */
		if (store_inbox_list_all(eng_store(), inbox_gc_cb, &used) < 0 ||
		    txn_commit() != 0) {
			log_warnx("inbox GC: store: %s", store_errmsg(eng_store()));
			txn_rollback();
		}
	}
	free(used.slot);
}

static int
inbox_expire_cb(const struct store_inbox *in, void *arg)
{
	(void)arg;
	conn_unsubscribe(in->topic);
	return 0;
}

/*
 * The GC (keeps what is in use, lapsed or not, retires the rest), then the
 * expiry.  Also right before inboxes move to another connection: a row
 * whose time ran out must neither be carried over (it would live on
 * under the next client ID) nor be left behind while in use.
 */
void
inbox_housekeeping(void)
{
	inbox_gc();
	if (store_inbox_expire(eng_store(), now_ms(), inbox_expire_cb, NULL) < 0)
		log_warnx("inbox expiry: store: %s", store_errmsg(eng_store()));
}

/* The card's contact ID (fixed at levels 1 and 2) and the shared inbox
 * (levels 1 and 3), created at the first start. */
int
inbox_init(char *err, size_t errlen)
{
	struct store *st = eng_store();
	struct store_meta m;

	memset(&I, 0, sizeof I);
	if (store_meta_get(st, &m) != 1)
		goto storefail;
	if (m.card_cid[0] == '\0') {
		inbox_new_id(m.card_cid);
		if (store_meta_set_text(st, STORE_META_CARD_CID, m.card_cid) != 0 ||
		    store_inbox_add(st, m.card_cid, 0, STORE_INBOX_CARD, 0,
		    now_ms()) < 0)
			goto storefail;
	}
	if (veil_id_from_text(&I.card_cid, m.card_cid) != 0) {
		seterr(err, errlen, "damaged card ID in the store");
		return -1;
	}
	copystr(I.card_topic, m.card_cid, sizeof I.card_topic);
	if (m.shared_inbox[0] == '\0') {
		inbox_new_id(m.shared_inbox);
		if (store_meta_set_text(st, STORE_META_SHARED_INBOX,
		    m.shared_inbox) != 0)
			goto storefail;
	}
	copystr(I.shared_inbox, m.shared_inbox, sizeof I.shared_inbox);
	if (!eng_policy()->pair_inboxes &&
	    store_inbox_add(st, I.shared_inbox, 0, STORE_INBOX_SHARED, 0,
	    now_ms()) == -1)
		goto storefail;
	return 0;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(st));
	return -1;
}

void
inbox_shutdown(void)
{
	memset(&I, 0, sizeof I);
}
