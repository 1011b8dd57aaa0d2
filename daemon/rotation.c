/* rotation.c: the contact update (UPDATE, UPDATE-ACK, UPDATE-DONE) — heals, new seeds, new settings — and what ends with time (old keys, old seeds). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "core.h"
#include "log.h"

/* Frames handed to the broker and not yet acknowledged, past which a
 * forced rotation waits: 10,000 UPDATEs queued at once would sit in
 * memory (peak RSS). */
#define RESEED_BACKLOG	256

static void reseed_check(struct contact *);

/*
 * Identifiers change without any message (derived topics, conn.c); the
 * contact update is kept for what cannot be derived (protocol.md 5, 6):
 * a periodic Diffie-Hellman re-key that heals a compromise (keys.heal), a
 * new seed (veilctl rotate; level 3 after a contact went), and new
 * settings (a reload that changed the epoch length or the key period).
 * Each goes out from the sweep (contact.c), a few contacts per loop pass,
 * and waits in the outbox for its ACK.
 */

int64_t
rotation_heal_time(void)
{
	int64_t h = (int64_t)eng_cfg()->keys.heal_ms;

	if (h <= 0)
		return 0;
	/* Uniform in [h/2, 3h/2): heals are spread, not a burst. */
	return now_ms() + h / 2 + random_below(h);
}

int
update_start(struct contact *c, const struct veil_inbox *new)
{
	struct store *st = eng_store();
	struct veil_inbox in = new != NULL ? *new : c->pair.my_inbox;
	uint8_t msgid[VEIL_MSGID_BYTES];
	char *body = NULL;
	size_t blen = 0;
	int64_t now = now_ms();

	if (c->state != CONTACT_ESTABLISHED || c->pair.upd_pending ||
	    contact_resetting(c))
		return -1;
	if (veil_update_build(&c->pair, eng_identity()->pk, eng_cfg()->identity.name,
	    &in, 0, &body, &blen) != 0) {
		sodium_memzero(&in, sizeof in);
		return -1;
	}
	sodium_memzero(&in, sizeof in);
	veil_msgid_new(msgid);
	if (txn_begin() != 0)
		goto fail;
	memcpy(c->upd_msgid, msgid, sizeof c->upd_msgid);
	c->has_upd_msgid = 1;
	if (store_outbox_add(st, c->id, msgid, VEIL_T_UPDATE, body, blen, now,
	    now + backoff(0)) < 0 ||
	    send_to(c, VEIL_T_UPDATE, msgid, (const uint8_t *)body, blen, 0) != 0 ||
	    txn_commit() != 0) {
		txn_rollback();
		goto fail;
	}
	free(body);
	return 0;
fail:
	/* The pair took the update as pending: undo, or it would wait
	 * for an ACK to an UPDATE that was never stored. */
	c->pair.upd_pending = 0;
	c->has_upd_msgid = 0;
	log_warnx("contact %" PRId64 ": update: store: %s", c->id,
	    store_errmsg(st));
	free(body);
	return -1;
}

void
handle_update(struct contact *c, const uint8_t *body, size_t len)
{
	struct veil_ccm ccm;
	char *ack = NULL;
	size_t acklen = 0;
	uint8_t msgid[VEIL_MSGID_BYTES];
	int r;

	if (c->state != CONTACT_ESTABLISHED)
		return;
	r = veil_update_on_update(&c->pair, c->peer_name, now_s(), (const char *)body,
	    len, &ccm, &ack, &acklen);
	if (r < 0) {
		log_warnx("contact %" PRId64 ": UPDATE rejected: %s", c->id, veil_strerror(r));
		eng_event_state(c, veil_strerror(r));
		return;
	}
	if (r == 0 && ccm.name_changed) {
		/* The peer renamed itself: the name it goes by changes, the
		 * name we gave it does not. */
		copystr(c->peer_name, ccm.cname, sizeof c->peer_name);
		eng_event_state(c, "the contact changed its display name");
	}
	veil_msgid_new(msgid);
	/* The ACK goes under tx, which the peer reads (the new chain waits
	 * in tx_next for its UPDATE-DONE), to the peer's new topic; a
	 * repeated UPDATE means our ACK was lost: resync as for data. */
	if (send_to(c, VEIL_T_UPDATE_ACK, msgid, (const uint8_t *)ack, acklen,
	    r == 1 ? dup_attempt(c) : 0) != 0)
		log_warnx("contact %" PRId64 ": cannot answer UPDATE", c->id);
	sodium_memzero(&ccm, sizeof ccm);
	free(ack);
}

/*
 * UPDATE-DONE: we hold the chain the peer's ACK announced, so it may
 * switch its transmit chain to it.  Sent with the ACK's handling and
 * again, at most once a second, while the peer still seals under the old
 * chain (frames arriving under rx_prev before any under rx): it was lost.
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
		contact_advance(c);
		if (contact_save(c) != 0)
			log_warnx("store: %s", store_errmsg(eng_store()));
		log_debug("contact %" PRId64 ": sending under the new key", c->id);
	}
}

void
handle_update_ack(struct contact *c, const uint8_t *body, size_t len)
{
	struct store *st = eng_store();
	struct veil_inbox old = c->pair.my_inbox;
	struct veil_clock clk;
	int64_t now = now_ms(), grace = (int64_t)eng_cfg()->rotation.grace_ms;
	int r;

	eng_clock(&clk);
	contact_arm(c, 0);
	r = veil_update_on_ack(&c->pair, &clk, (const char *)body, len);
	contact_arm(c, 1);
	if (r != 0) {
		log_debug("contact %" PRId64 ": UPDATE-ACK ignored: %s", c->id, veil_strerror(r));
		sodium_memzero(&old, sizeof old);
		return;
	}
	if (txn_begin() != 0)
		return;
	/* The peer sends to the new seed from now on; what it wrote to the
	 * old one before it read our UPDATE may still be on the way. */
	if (memcmp(old.seed, c->pair.my_inbox.seed, VEIL_SEED_BYTES) != 0 ||
	    old.epoch != c->pair.my_inbox.epoch) {
		memcpy(c->seed_prev, old.seed, VEIL_SEED_BYTES);
		c->seed_prev_epoch = old.epoch;
		c->has_seed_prev = 1;
		c->seed_prev_until = now + grace;
	}
	sodium_memzero(&old, sizeof old);
	if (c->has_upd_msgid && store_outbox_ack(st, c->id, c->upd_msgid, NULL) < 0)
		goto fail;
	c->has_upd_msgid = 0;
	c->upd_prev_until = now + grace;
	send_done(c);
	if (contact_save(c) != 0 || txn_commit() != 0)
		goto fail;
	log_debug("contact %" PRId64 ": update confirmed", c->id);
	return;
fail:
	txn_rollback();
	log_warnx("store: %s", store_errmsg(st));
}

/*
 * The sweep's work for one contact (in its transaction):
 *  - rx_prev goes once the grace after our UPDATE-ACK passed and the peer
 *    switched (something arrived under the new chain; it seals under the
 *    old one until our DONE reaches it).  The ratchet wipes its past
 *    periods meanwhile, so a quiet peer keeps no old key alive;
 *  - an old seed goes at the end of its grace;
 *  - a heal is due: a Diffie-Hellman re-key.
 */
void
rotation_check(struct contact *c, int64_t now)
{
	int save = 0;

	if (c->pair.rx_prev.live && rxchain_used(&c->pair.rx) &&
	    c->upd_prev_until <= now) {
		contact_arm(c, 0);
		veil_pair_drop_prev(&c->pair);
		contact_arm(c, 1);
		c->upd_prev_until = 0;
		save = 1;
	}
	if (c->has_seed_prev && c->seed_prev_until <= now) {
		sodium_memzero(c->seed_prev, sizeof c->seed_prev);
		c->has_seed_prev = 0;
		c->seed_prev_until = 0;
		save = 1;
	}
	if (save)
		contact_save(c);
	reseed_check(c);
	if (c->proof_left > 0 && c->proof_at <= now && conn_up()) {
		uint8_t msgid[VEIL_MSGID_BYTES];

		veil_msgid_new(msgid);
		if (c->state == CONTACT_ESTABLISHED &&
		    send_to(c, VEIL_T_COVER, msgid, NULL, 0, 0) == 0) {
			c->proof_left--;
			c->proof_at = now + ((int64_t)eng_cfg()->retransmit.initial_ms <<
			    (PROOF_FRAMES - c->proof_left));
			log_debug("contact %" PRId64 ": proof frame after the CONFIRM",
			    c->id);
		} else
			c->proof_left = 0;
	}
	if (c->state == CONTACT_ESTABLISHED && c->heal_at != 0 && c->heal_at <= now &&
	    !c->pair.upd_pending && !contact_resetting(c) && conn_up()) {
		c->heal_at = rotation_heal_time();
		if (update_start(c, NULL) == 0)
			log_debug("contact %" PRId64 ": re-keyed", c->id);
		else
			contact_save(c);
	}
}

/*
 * veilctl rotate: every contact gets a fresh seed (level 3: the new
 * shared one) and a fresh DH.  The updates go out from the sweep, a batch
 * per loop pass, so 100,000 contacts do not stall the loop; a restart in
 * between leaves the rest on their old seeds (the next rotate or heal
 * catches up).  The topics change with the next message, the client ID
 * with the next epoch as always: a connection that switched mid-epoch
 * would be linked to the one before by its timing.
 */
static uint64_t reseed_gen;	/* announcements asked for */
static int reseed_seed;		/* the last one gives new seeds */

/*
 * The announcement's pump: RESEED_BATCH contacts per loop pass, in one
 * transaction, at most RESEED_SLICE_US of work (each is a key pair and
 * a sealed row: with passes of 64 and no slice, status answers took up
 * to 61 ms on a loaded machine), as long as the transport has room
 * (RESEED_BACKLOG); when it has none, it looks again RESEED_WAIT_MS
 * later, not at the next sweep (seconds away: 10,000 contacts took 105 s
 * that way).  The sweep still catches a contact the pump passed while its
 * own UPDATE was pending.
 */
#define RESEED_BATCH	64
#define RESEED_SLICE_US	10000	/* a pass ends after this much work */
#define RESEED_WAIT_MS	20
static struct event *reseed_ev;
static size_t reseed_next;	/* the pump's place in the contact list */

static void
reseed_pump(evutil_socket_t fd, short ev, void *arg)
{
	size_t end = reseed_next + RESEED_BATCH;
	int64_t t0 = mono_us();

	(void)fd;
	(void)ev;
	(void)arg;
	if (!conn_up() || conn_backlog() > RESEED_BACKLOG) {
		timer_add_ms(reseed_ev, conn_up() ? RESEED_WAIT_MS : 1000);
		return;
	}
	if (txn_begin() != 0)
		return;		/* the sweep goes on with it */
	for (; reseed_next < end && reseed_next < contact_count(); reseed_next++) {
		if (conn_backlog() > RESEED_BACKLOG ||
		    mono_us() - t0 > RESEED_SLICE_US)
			break;
		reseed_check(contact_at(reseed_next));
	}
	if (txn_commit() != 0) {
		log_warnx("store: %s", store_errmsg(eng_store()));
		txn_rollback();
	}
	if (reseed_next < contact_count())
		timer_add_ms(reseed_ev, conn_backlog() > RESEED_BACKLOG ?
		    RESEED_WAIT_MS : 0);
}

void
rotation_shutdown(void)
{
	if (reseed_ev != NULL)
		event_free(reseed_ev);
	reseed_ev = NULL;
}

int
rotation_reseed_all(int *announced)
{
	return rotation_announce_all(1, announced);
}

/*
 * Every established contact gets an UPDATE: with a new seed (a forced
 * rotation), or with our current settings (a reload changed the epoch
 * length or the key period).
 */
int
rotation_announce_all(int new_seed, int *announced)
{
	int n = 0;

	if (new_seed && !eng_policy()->pair_inboxes && inbox_reseed_shared() != 0)
		return -1;
	reseed_gen++;
	reseed_seed = new_seed;
	for (size_t i = 0; i < contact_count(); i++)
		if (contact_at(i)->state == CONTACT_ESTABLISHED)
			n++;
	if (announced != NULL)
		*announced = n;
	log_info("rotation: %d contacts get new inboxes and keys", n);
	if (reseed_ev == NULL &&
	    (reseed_ev = evtimer_new(eng_base(), reseed_pump, NULL)) == NULL)
		return 0;	/* the sweep alone does it */
	reseed_next = 0;
	timer_add_ms(reseed_ev, 0);
	return 0;
}

/* The sweep's part of a forced rotation. */
static void
reseed_check(struct contact *c)
{
	struct veil_inbox in;

	if (c->reseed_gen >= reseed_gen || c->state != CONTACT_ESTABLISHED ||
	    c->pair.upd_pending || contact_resetting(c) ||
	    conn_backlog() > RESEED_BACKLOG)
		return;
	c->reseed_gen = reseed_gen;
	if (reseed_seed)
		inbox_for_contact(&in);
	else {
		in = c->pair.my_inbox;
		in.epoch = eng_epoch_len();
		in.period = eng_key_period();
	}
	if (update_start(c, &in) != 0)
		c->reseed_gen = 0;	/* the next sweep tries again */
	sodium_memzero(&in, sizeof in);
}

int
engine_rotate(int *announced, int64_t *epoch, char *err, size_t errlen)
{
	if (rotation_reseed_all(announced) != 0) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return ENGINE_EINTERNAL;
	}
	if (epoch != NULL)
		*epoch = conn_epoch();
	return ENGINE_OK;
}
