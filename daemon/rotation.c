/* rotation.c: the rotation scheduler, the batched announcement to every contact, and the contact update (UPDATE, UPDATE-ACK, UPDATE-DONE). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "core.h"
#include "log.h"

#define ROT_BATCH	64
#define BACKLOG_MAX	256	/* frames handed to the transport, not yet at the broker */
#define BACKLOG_WAIT_MS	20

static struct {
	struct event	*rot_ev;	/* next scheduled rotation */
	struct event	*step_ev;	/* announces in batches */
	int64_t		 next;		/* ms */
	int64_t		 cursor;	/* last contact id announced */
	int64_t		 grace_end;
	int64_t		 epoch;
} T;

int64_t
rotation_epoch(void)
{
	return T.epoch;
}

int64_t
rotation_next(void)
{
	return T.next;
}

void
handle_update(struct contact *c, const uint8_t *body, size_t len)
{
	struct veil_id ocid;
	struct veil_ccm ccm;
	char *ack = NULL;
	size_t acklen = 0;
	uint8_t msgid[VEIL_MSGID_BYTES];
	int r;

	if (c->state != CONTACT_ESTABLISHED || veil_id_from_text(&ocid, c->peer_inbox) != 0)
		return;
	r = veil_update_on_update(&c->pair, &ocid, (const char *)body, len, &ccm, &ack, &acklen);
	if (r < 0) {
		log_warnx("contact %" PRId64 ": UPDATE rejected: %s", c->id, veil_strerror(r));
		eng_event_state(c, veil_strerror(r));
		return;
	}
	veil_id_to_text(&ccm.new_cid, c->peer_inbox, sizeof c->peer_inbox);
	veil_msgid_new(msgid);
	/* The ACK goes under tx, which the peer reads (the new key waits
	 * in tx_next for its UPDATE-DONE); a repeated UPDATE means our ACK
	 * was lost: resync as for data. */
	if (send_to(c, VEIL_T_UPDATE_ACK, msgid, (const uint8_t *)ack, acklen,
	    r == 1 ? dup_attempt(c) : 0) != 0)
		log_warnx("contact %" PRId64 ": cannot answer UPDATE", c->id);
	log_debug("contact %" PRId64 " moved to %s", c->id, c->peer_inbox);
	sodium_memzero(&ccm, sizeof ccm);
	free(ack);
}

/*
 * UPDATE-DONE: we hold the key the peer's ACK announced, so it may switch
 * its transmit key to it.  Sent once with the ACK's handling and again,
 * at most once a second, while the peer still seals under the old key
 * (frames arriving under rx_prev before any under rx): the DONE was lost.
 */
void
send_done(struct contact *c)
{
	uint8_t msgid[VEIL_MSGID_BYTES];
	char *body = NULL;
	size_t len = 0;

	if (veil_update_done_build(&c->pair, &body, &len) != 0)
		return;
	c->done_at = eng_tick();
	veil_msgid_new(msgid);
	if (send_to(c, VEIL_T_UPDATE_DONE, msgid, (const uint8_t *)body, len, 0) != 0)
		log_warnx("contact %" PRId64 ": cannot confirm the new key", c->id);
	free(body);
}

void
handle_update_done(struct contact *c, const uint8_t *body, size_t len)
{
	int r = veil_update_on_done(&c->pair, (const char *)body, len);

	if (r < 0) {
		log_debug("contact %" PRId64 ": UPDATE-DONE ignored: %s", c->id,
		    veil_strerror(r));
		return;
	}
	if (r == 0) {
		if (contact_save(c) != 0)
			log_warnx("store: %s", store_errmsg(eng_store()));
		log_debug("contact %" PRId64 ": sending under the new key", c->id);
	}
}

void
handle_update_ack(struct contact *c, const uint8_t *body, size_t len)
{
	struct store *st = eng_store();
	int64_t now = now_ms(), grace = (int64_t)eng_cfg()->rotation.grace_ms;
	int r;

	contact_arm(c, SLOT_RX, 0);
	contact_arm(c, SLOT_RX_PREV, 0);
	r = veil_update_on_ack(&c->pair, (const char *)body, len);
	contact_arm(c, SLOT_RX, 1);
	contact_arm(c, SLOT_RX_PREV, 1);
	if (r != 0) {
		log_debug("contact %" PRId64 ": UPDATE-ACK ignored: %s", c->id, veil_strerror(r));
		return;
	}
	if (txn_begin() != 0)
		return;
	if (c->upd_inbox[0] != '\0') {
		/* The grace period starts now: frames the peer wrote to the
		 * old inbox before it read our UPDATE may still be on the way. */
		inbox_retire(c->my_inbox, now + grace);
		copystr(c->my_inbox, c->upd_inbox, sizeof c->my_inbox);
		c->upd_inbox[0] = '\0';
	}
	if (c->has_upd_msgid && store_outbox_ack(st, c->id, c->upd_msgid, NULL) < 0)
		goto fail;
	c->has_upd_msgid = 0;
	c->upd_prev_until = now + grace;
	send_done(c);
	if (contact_save(c) != 0 || txn_commit() != 0)
		goto fail;
	log_debug("contact %" PRId64 ": rotation confirmed", c->id);
	return;
fail:
	txn_rollback();
	log_warnx("store: %s", store_errmsg(st));
}

void
drop_prev_keys(void)
{
	int64_t now = now_ms();

	for (size_t i = 0; i < contact_count(); i++) {
		struct contact *c = contact_at(i);

		/*
		 * The old receive key goes when the grace period after our
		 * UPDATE-ACK has passed and the peer has switched: something
		 * arrived under the new key (it seals under the old one until
		 * our UPDATE-DONE reaches it).  The transmit side keeps no old
		 * key: the peer's UPDATE-DONE switches and wipes it.
		 */
		if (!c->pair.rx_prev.live || c->pair.rx.w.top == 0)
			continue;	/* the peer still seals under it */
		if (c->upd_prev_until > now)
			continue;
		contact_arm(c, SLOT_RX_PREV, 0);
		veil_dirkey_wipe(&c->pair.rx_prev.k);
		sodium_memzero(&c->pair.rx_prev, sizeof c->pair.rx_prev);
		c->upd_prev_until = 0;
		contact_save(c);
	}
}

/*
 * Rotation gaps follow the paper's X(i+1) = X(i) + Rand(): exponential
 * with the configured mean, clipped to [min, max], drawn from libsodium
 * so neither the user nor an observer can predict or steer them.
 */
static int64_t
rotation_gap(void)
{
	const struct veild_config *cfg = eng_cfg();
	double g = random_exp((double)cfg->rotation.mean_ms);

	if (g < (double)cfg->rotation.min_ms)
		g = (double)cfg->rotation.min_ms;
	if (g > (double)cfg->rotation.max_ms)
		g = (double)cfg->rotation.max_ms;
	return (int64_t)g;
}

static void
rotation_arm(void)
{
	if (T.rot_ev != NULL)
		timer_add_ms(T.rot_ev, T.next - now_ms());
}

/* Draws and persists the next rotation time: a restart neither resets nor
 * reveals the schedule. */
static void
rotation_schedule(void)
{
	T.next = now_ms() + rotation_gap();
	if (store_meta_set_int(eng_store(), STORE_META_ROTATION_NEXT, T.next) != 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
	rotation_arm();
}

/*
 * One rotation (make-before-break): a new client ID connects and
 * subscribes first; every established contact gets an UPDATE naming its
 * new inbox, kept in the outbox until its UPDATE-ACK; old inboxes stay
 * subscribed until the grace period ends.  Level 3 also replaces the
 * shared inbox and the card's contact ID.
 */
static int
rotate(int *announced, char *err, size_t errlen)
{
	struct store *st = eng_store();
	char shared[INBOX_MAX], card[INBOX_MAX], id[VEIL_CLIENTID_MAX + 1];
	int count = 0;
	int64_t now = now_ms(), grace_end = now + (int64_t)eng_cfg()->rotation.grace_ms;
	int64_t next = now + rotation_gap();

	if (!eng_policy()->rotates) {
		seterr(err, errlen, "obscurity level 1 uses fixed identifiers: nothing rotates");
		return ENGINE_ESTATE;
	}
	inbox_new_id(shared);
	inbox_new_id(card);
	veil_clientid_new(id, 0);
	/* Everything the rotation decides commits at once (one fsync, not
	 * six); the connections and memory follow only after. */
	if (txn_begin() != 0)
		goto storefail;
	if (eng_policy()->card_rotates) {
		if (store_inbox_add(st, shared, 0, STORE_INBOX_SHARED, 0, now) < 0 ||
		    store_inbox_add(st, card, 0, STORE_INBOX_CARD, 0, now) < 0 ||
		    store_meta_set_text(st, STORE_META_SHARED_INBOX, shared) != 0 ||
		    store_meta_set_text(st, STORE_META_CARD_CID, card) != 0)
			goto storefail;
		/* The old shared inbox retires once no contact uses it
		 * (inbox_gc): contacts still pairing, or not yet told, may. */
		inbox_retire(inbox_card_topic(), grace_end);
	}
	if (store_meta_set_text(st, STORE_META_CLIENT_ID_PREV, conn_client_id()) != 0 ||
	    store_meta_set_text(st, STORE_META_CLIENT_ID, id) != 0 ||
	    store_meta_set_int(st, STORE_META_EPOCH, T.epoch + 1) != 0 ||
	    store_meta_set_int(st, STORE_META_ROTATION_NEXT, next) != 0)
		goto storefail;
	if (txn_commit() != 0)
		goto storefail;
	T.epoch++;
	T.next = next;
	rotation_arm();
	if (eng_policy()->card_rotates)
		inbox_replace_shared(shared, card);
	if (conn_rotate(id) != 0)
		log_warnx("rotation: the new client ID applies after a restart");
	for (size_t i = 0; i < contact_count(); i++) {
		struct contact *c = contact_at(i);

		if (c->state == CONTACT_ESTABLISHED && !c->pair.upd_pending)
			count++;
	}
	log_info("rotation %" PRId64 ": telling %d contacts", T.epoch, count);
	/* The UPDATEs go out in batches, one transaction each, between
	 * which the loop serves everything else: 10,000 contacts must not
	 * stall it. */
	T.cursor = 0;
	T.grace_end = grace_end;
	timer_add_ms(T.step_ev, 0);
	if (announced != NULL)
		*announced = count;
	return ENGINE_OK;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(st));
	txn_rollback();
	return ENGINE_EINTERNAL;
}

/* Tells one contact its new inbox (in the caller's transaction). */
static int
announce(struct contact *c, int64_t now)
{
	struct store *st = eng_store();
	struct veil_id oldid, newid;
	char inbox[INBOX_MAX], *body = NULL;
	size_t blen = 0;
	int rv = -1;

	if (eng_policy()->pair_inboxes)
		inbox_new_id(inbox);
	else
		copystr(inbox, inbox_shared(), sizeof inbox);
	if (veil_id_from_text(&oldid, c->my_inbox) != 0 ||
	    veil_id_from_text(&newid, inbox) != 0)
		return 0;
	if (veil_update_build(&c->pair, eng_identity()->pk, eng_cfg()->identity.name,
	    &oldid, &newid, 0, &body, &blen) != 0)
		return 0;
	veil_msgid_new(c->upd_msgid);
	c->has_upd_msgid = 1;
	copystr(c->upd_inbox, inbox, sizeof c->upd_inbox);
	if (eng_policy()->pair_inboxes) {
		if (store_inbox_add(st, inbox, c->id, STORE_INBOX_PAIR, 0, now) < 0)
			goto out;
		inbox_retire(c->my_inbox, T.grace_end);
	}
	if (store_outbox_add(st, c->id, c->upd_msgid, VEIL_T_UPDATE, body, blen, now,
	    now + backoff(0)) < 0 ||
	    send_to(c, VEIL_T_UPDATE, c->upd_msgid, (const uint8_t *)body, blen, 0) != 0)
		goto out;
	if (eng_policy()->pair_inboxes)
		conn_subscribe(CONN_CUR, inbox);	/* before the UPDATE leaves at commit */
	rv = 1;
out:
	free(body);
	return rv;
}

/* Announces the new inbox to up to ROT_BATCH contacts after the cursor. */
static void
rotate_step(evutil_socket_t fd, short ev, void *arg)
{
	int64_t now = now_ms();
	int done = 0;
	size_t i;
	struct veil_pair *saved;
	struct contact *mod[ROT_BATCH];

	(void)fd;
	(void)ev;
	(void)arg;
	/* Announce no faster than the broker takes the frames: 10,000
	 * UPDATEs queued at once would sit in memory (peak RSS). */
	if (conn_backlog() > BACKLOG_MAX) {
		timer_add_ms(T.step_ev, BACKLOG_WAIT_MS);
		return;
	}
	if ((saved = malloc(sizeof *saved * ROT_BATCH)) == NULL || txn_begin() != 0) {
		free(saved);
		log_warnx("rotation: store: %s; retrying", store_errmsg(eng_store()));
		timer_add_ms(T.step_ev, 0);
		return;
	}
	for (i = 0; i < contact_count() && contact_at(i)->id <= T.cursor; i++)
		;
	for (; i < contact_count() && done < ROT_BATCH; i++) {
		struct contact *c = contact_at(i);
		int r;

		T.cursor = c->id;
		if (c->state != CONTACT_ESTABLISHED || c->pair.upd_pending)
			continue;
		saved[done] = c->pair;
		mod[done] = c;
		done++;
		if ((r = announce(c, now)) < 0)
			goto fail;
		if (r == 0)
			done--;	/* nothing changed */
	}
	if (txn_commit() != 0)
		goto fail;
	sodium_memzero(saved, sizeof *saved * ROT_BATCH);
	free(saved);
	if (i < contact_count())
		timer_add_ms(T.step_ev, 0);
	else
		log_debug("rotation %" PRId64 " announced", T.epoch);
	return;
fail:
	/* Undo the in-memory half of this batch; the store rolled back. */
	log_warnx("rotation: store: %s", store_errmsg(eng_store()));
	txn_rollback();
	for (int j = 0; j < done; j++) {
		mod[j]->pair = saved[j];
		mod[j]->upd_inbox[0] = '\0';
		mod[j]->has_upd_msgid = 0;
	}
	T.cursor = 0;	/* the next rotation retries them all */
	/* The contacts not told keep their inboxes: those were left on the
	 * old connection, which goes when the grace period ends. */
	for (i = 0; i < contact_count(); i++) {
		struct contact *c = contact_at(i);

		if (c->state == CONTACT_ESTABLISHED && !c->pair.upd_pending)
			conn_subscribe(CONN_CUR, c->my_inbox);
	}
	sodium_memzero(saved, sizeof *saved * ROT_BATCH);
	free(saved);
}

int
engine_rotate(int *announced, int64_t *epoch, char *err, size_t errlen)
{
	/* A forced rotation restarts the clock too (rotate draws the next). */
	int rv = rotate(announced, err, errlen);

	if (rv == ENGINE_OK && epoch != NULL)
		*epoch = T.epoch;
	return rv;
}

static void
rotation_fire(evutil_socket_t fd, short ev, void *arg)
{
	char err[256];

	(void)fd;
	(void)ev;
	(void)arg;
	if (rotate(NULL, err, sizeof err) != 0) {
		log_warnx("rotation: %s", err);
		rotation_schedule();	/* try again at the next draw */
	}
}

void
rotation_reload(void)
{
	if (T.rot_ev != NULL && eng_policy()->rotates &&
	    T.next > now_ms() + (int64_t)eng_cfg()->rotation.max_ms) {
		evtimer_del(T.rot_ev);
		rotation_schedule();
	}
}

int
rotation_init(void)
{
	struct store_meta m;

	memset(&T, 0, sizeof T);
	if (store_meta_get(eng_store(), &m) != 1)
		return -1;
	T.epoch = m.epoch;
	T.next = m.rotation_next;
	return 0;
}

int
rotation_start(void)
{
	T.rot_ev = evtimer_new(eng_base(), rotation_fire, NULL);
	T.step_ev = evtimer_new(eng_base(), rotate_step, NULL);
	if (T.rot_ev == NULL || T.step_ev == NULL)
		return -1;
	if (eng_policy()->rotates) {
		if (T.next > 0)
			rotation_arm();
		else
			rotation_schedule();
	}
	return 0;
}

void
rotation_shutdown(void)
{
	if (T.rot_ev != NULL)
		event_free(T.rot_ev);
	if (T.step_ev != NULL)
		event_free(T.step_ev);
	memset(&T, 0, sizeof T);
}
