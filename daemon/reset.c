/* reset.c: the contact reset after a restore (protocol.md 6.1) — the restored side re-keys every contact at once with a sealed RESET and waits for each RESET-ACK; the other side answers, re-keyed, and tells its user. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"
#include "log.h"

/* Frames handed to the broker and not yet acknowledged, past which no
 * new reset starts: 10,000 RESETs must not sit in memory at once (as a
 * forced rotation, rotation.c).  A sweep batch of 256 contacts starts at
 * most 256, three X25519 each: about 40 ms of the loop. */
#define RESET_BACKLOG	256

/* Packed into the store: our RESET's outbox msgid, then the reset. */
#define MINE_MAX	(VEIL_MSGID_BYTES + VEIL_RESET_PACKED_MAX)
_Static_assert(MINE_MAX <= STORE_RESET_MAX, "reset state fits the store");
_Static_assert(VEIL_RESET_ACK_BODY <= STORE_RESET_MAX, "ACK fits the store");

int
contact_resetting(const struct contact *c)
{
	return c->reset != NULL || c->reset_due;
}

/* A body of a sealed type in one frame sealed to c's identity key, to
 * the topic of `to` now, on this epoch's connection (after the commit). */
static int
publish_sealed(struct contact *c, uint8_t type, const uint8_t *body, size_t len,
    const struct veil_inbox *to)
{
	size_t fs = eng_cfg()->frames.size;
	uint8_t msgid[VEIL_MSGID_BYTES], *frame;
	char topic[INBOX_MAX];
	int n;

	if (veil_topic_text(to->seed, veil_epoch_number(now_s(), to->epoch),
	    topic, sizeof topic) != 0 || (frame = malloc(fs)) == NULL)
		return -1;
	veil_msgid_new(msgid);
	n = veil_message_seal_box(frame, fs, fs, c->peer_pk, type, msgid, body,
	    len);
	if (n == 1)
		txn_publish(conn_epoch(), topic, frame, 1);
	free(frame);
	return n == 1 ? 0 : -1;
}

/* Our reset as stored: its outbox msgid and the packed reset (none:
 * mine_len 0); the peer's side of the row is kept as it is. */
static int
save_mine(struct contact *c)
{
	struct store *st = eng_store();
	struct store_reset rs;
	int n, rc;

	if (store_contact_reset_get(st, c->id, &rs) != 1)
		return -1;
	rs.due = c->reset_due;
	rs.mine_len = 0;
	if (c->reset != NULL) {
		memcpy(rs.mine, c->reset_msgid, VEIL_MSGID_BYTES);
		if ((n = veil_reset_pack(c->reset, rs.mine + VEIL_MSGID_BYTES,
		    sizeof rs.mine - VEIL_MSGID_BYTES)) < 0) {
			sodium_memzero(&rs, sizeof rs);
			return -1;
		}
		rs.mine_len = VEIL_MSGID_BYTES + (size_t)n;
	}
	rc = store_contact_reset_set(st, c->id, &rs) == 1 ? 0 : -1;
	sodium_memzero(&rs, sizeof rs);
	return rc;
}

static int
load_cb(int64_t id, void *arg)
{
	struct store_reset rs;
	struct contact *c = contact_find(id);
	struct veil_reset *r;

	(void)arg;
	if (c == NULL || store_contact_reset_get(eng_store(), id, &rs) != 1)
		return 0;
	c->reset_due = rs.due;
	if (rs.mine_len > VEIL_MSGID_BYTES &&
	    (r = calloc(1, sizeof *r)) != NULL) {
		if (veil_reset_unpack(r, rs.mine + VEIL_MSGID_BYTES,
		    rs.mine_len - VEIL_MSGID_BYTES) == 0) {
			memcpy(c->reset_msgid, rs.mine, VEIL_MSGID_BYTES);
			c->reset = r;
		} else {
			log_warnx("contact %" PRId64 ": damaged reset state: "
			    "starting again", id);
			free(r);
			c->reset_due = 1;
		}
	}
	sodium_memzero(&rs, sizeof rs);
	inbox_contact_sync(c);
	return 0;
}

int
reset_load(void)
{
	return store_contact_resets(eng_store(), load_cb, NULL) < 0 ? -1 : 0;
}

/*
 * A reset is due (the contact came from a backup): a fresh inbox for the
 * peer to write to, a RESET in the outbox (resent until the ACK), sealed
 * to the peer's identity key.  Nothing is sealed under the stale chains:
 * the contact's other rows wait (send_to holds them) until the ACK.  An
 * UPDATE of ours from before the backup goes: it names inboxes the peer
 * no longer knows us by.
 */
static void
reset_start(struct contact *c)
{
	struct store *st = eng_store();
	struct veil_inbox in;
	struct veil_reset *r;
	int64_t now = now_ms();

	if ((r = calloc(1, sizeof *r)) == NULL)
		return;
	inbox_for_contact(&in);
	if (veil_reset_start(r, eng_identity(), &c->pair, &in, now_s()) != 0) {
		log_warnx("contact %" PRId64 ": cannot make a RESET", c->id);
		free(r);
		sodium_memzero(&in, sizeof in);
		return;
	}
	sodium_memzero(&in, sizeof in);
	if (txn_begin() != 0) {
		veil_reset_wipe(r);
		free(r);
		return;
	}
	veil_msgid_new(c->reset_msgid);
	if (c->has_upd_msgid &&
	    store_outbox_ack(st, c->id, c->upd_msgid, NULL) < 0)
		goto fail;
	c->has_upd_msgid = 0;
	c->pair.upd_pending = 0;
	c->reset = r;
	c->reset_due = 0;
	if (store_outbox_add(st, c->id, c->reset_msgid, VEIL_T_RESET, r->body,
	    sizeof r->body, now, now + backoff(0)) < 0 || save_mine(c) != 0 ||
	    contact_save(c) != 0)
		goto fail;
	publish_sealed(c, VEIL_T_RESET, r->body, sizeof r->body,
	    &c->pair.peer_inbox);
	if (txn_commit() != 0)
		goto fail;
	log_info("contact %" PRId64 ": restored from a backup: RESET sent", c->id);
	return;
fail:
	log_warnx("contact %" PRId64 ": reset: store: %s", c->id,
	    store_errmsg(st));
	txn_rollback();
	c->reset = NULL;
	c->reset_due = 1;
	veil_reset_wipe(r);
	free(r);
	inbox_contact_sync(c);
}

void
reset_check(struct contact *c)
{
	if (!c->reset_due || !conn_up())
		return;
	if (c->state != CONTACT_ESTABLISHED || c->pair.role == 0) {
		c->reset_due = 0;
		save_mine(c);
		return;
	}
	if (conn_backlog() > RESET_BACKLOG)
		return;		/* the next sweep goes on */
	reset_start(c);
}

int
reset_resend(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	if (c->reset == NULL || len != VEIL_RESET_BODY ||
	    memcmp(body, c->reset->body, len) != 0) {
		/* A stale row (its ACK came, or another reset replaced it). */
		if (store_outbox_ack(eng_store(), c->id, msgid, NULL) < 0)
			log_warnx("store: %s", store_errmsg(eng_store()));
		return 1;
	}
	publish_sealed(c, VEIL_T_RESET, body, len, &c->pair.peer_inbox);
	return 0;
}

/* The established contact with this (proven) identity key: the store's
 * index first, the table when that row is someone's unproven claim. */
static struct contact *
by_key(const uint8_t pk[VEIL_KEY_BYTES])
{
	struct contact *c;
	int64_t id;

	if (store_contact_id_by_peer_pk(eng_store(), pk, &id) == 1 &&
	    (c = contact_find(id)) != NULL && c->state == CONTACT_ESTABLISHED)
		return c;
	return contact_established_by_pk(pk);
}

/* The peer restored a backup and re-keys: answer, with new chains. */
void
handle_reset(const uint8_t *body, size_t len)
{
	struct store *st = eng_store();
	uint8_t pk[VEIL_KEY_BYTES], tr[VEIL_KEY_BYTES], ack[VEIL_RESET_ACK_BODY];
	struct store_reset rs;
	struct veil_clock clk;
	struct contact *c;
	uint64_t t = 0;
	int r;

	if (veil_reset_peek(body, len, 0, pk) != 0 || (c = by_key(pk)) == NULL) {
		log_debug("RESET from no contact of ours: dropped");
		recv_count_dropped(1);
		return;
	}
	if (store_contact_reset_get(st, c->id, &rs) != 1) {
		log_warnx("store: %s", store_errmsg(st));
		return;
	}
	eng_clock(&clk);
	contact_arm(c, 0);
	r = veil_reset_on_request(&c->pair, eng_identity(), &clk, body, len,
	    rs.has_seen ? (uint64_t)rs.seen_t : 0, rs.has_seen ? rs.seen : NULL,
	    &t, tr, ack);
	contact_arm(c, 1);
	if (r == 1) {
		/* Our ACK was lost: the same one again. */
		if (rs.ack_len > 0)
			publish_sealed(c, VEIL_T_RESET_ACK, rs.ack, rs.ack_len,
			    &c->pair.peer_inbox);
		goto out;
	}
	if (r < 0) {
		log_warnx("contact %" PRId64 ": RESET refused: %s", c->id,
		    veil_strerror(r));
		goto out;
	}
	if (txn_begin() != 0)
		goto out;
	/* Our UPDATE in flight was for the old chains: gone with them. */
	if (c->has_upd_msgid &&
	    store_outbox_ack(st, c->id, c->upd_msgid, NULL) < 0)
		goto fail;
	c->has_upd_msgid = 0;
	c->upd_prev_until = 0;
	c->heal_at = rotation_heal_time();
	rs.seen_t = (int64_t)t;
	memcpy(rs.seen, tr, sizeof rs.seen);
	rs.has_seen = 1;
	memcpy(rs.ack, ack, sizeof ack);
	rs.ack_len = sizeof ack;
	if (store_contact_reset_set(st, c->id, &rs) != 1 || contact_save(c) != 0)
		goto fail;
	publish_sealed(c, VEIL_T_RESET_ACK, ack, sizeof ack, &c->pair.peer_inbox);
	if (txn_commit() != 0)
		goto fail;
	log_info("contact %" PRId64 ": it restored a backup: new keys", c->id);
	eng_event_state(c, "the contact restored a backup: its keys were renewed");
	goto out;
fail:
	log_warnx("contact %" PRId64 ": reset: store: %s", c->id,
	    store_errmsg(st));
	txn_rollback();
out:
	sodium_memzero(&rs, sizeof rs);
	sodium_memzero(ack, sizeof ack);
}

/* Our reset answered: the new chains are live both ways.  A frame under
 * them tells the peer (which then sends what waits for us), and what
 * waited here goes now. */
void
handle_reset_ack(const uint8_t *body, size_t len)
{
	struct store *st = eng_store();
	uint8_t pk[VEIL_KEY_BYTES], msgid[VEIL_MSGID_BYTES];
	struct veil_clock clk;
	struct contact *c;
	int r;

	if (veil_reset_peek(body, len, 1, pk) != 0 || (c = by_key(pk)) == NULL ||
	    c->reset == NULL) {
		log_debug("RESET-ACK not awaited: dropped");
		recv_count_dropped(1);
		return;
	}
	eng_clock(&clk);
	contact_arm(c, 0);
	r = veil_reset_on_ack(&c->pair, eng_identity(), c->reset, &clk, body, len);
	contact_arm(c, 1);
	if (r != 0) {
		log_warnx("contact %" PRId64 ": RESET-ACK refused: %s", c->id,
		    veil_strerror(r));
		return;
	}
	free(c->reset);		/* wiped by veil_reset_on_ack */
	c->reset = NULL;
	c->heal_at = rotation_heal_time();
	c->has_seed_prev = 0;
	sodium_memzero(c->seed_prev, sizeof c->seed_prev);
	if (txn_begin() != 0)
		return;
	veil_msgid_new(msgid);
	if (store_outbox_ack(st, c->id, c->reset_msgid, NULL) < 0 ||
	    save_mine(c) != 0 || contact_save(c) != 0 ||
	    send_to(c, VEIL_T_COVER, msgid, NULL, 0, 0) != 0 ||
	    store_outbox_hurry(st, c->id, now_ms()) < 0) {
		log_warnx("contact %" PRId64 ": reset: store: %s", c->id,
		    store_errmsg(st));
		txn_rollback();
		return;
	}
	if (txn_commit() != 0)
		return;
	outbox_flush_later();
	log_info("contact %" PRId64 ": reset done: new keys both ways", c->id);
	eng_event_state(c, "keys renewed after the restore");
}
