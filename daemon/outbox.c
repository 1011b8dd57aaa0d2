/* outbox.c: sealing and sending frames — send jitter, the outbox's retransmissions with backoff, cover traffic. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "core.h"
#include "log.h"

#define DUE_BATCH	32

static struct {
	struct event	*flush_ev;	/* outbox, next batch */
	struct event	*cover_ev;	/* next COVER frame */
} O;

int64_t
backoff(int attempts)
{
	const struct veild_config *cfg = eng_cfg();
	uint64_t ms = cfg->retransmit.initial_ms;

	for (int i = 0; i < attempts && ms < cfg->retransmit.max_ms; i++)
		ms *= 2;
	if (ms > cfg->retransmit.max_ms)
		ms = cfg->retransmit.max_ms;
	return (int64_t)ms;
}

/* Frames held back by send jitter. */
struct delayed {
	struct event	*ev;
	int64_t		 epoch;		/* ours when they were sealed */
	char		 topic[INBOX_MAX];
	int		 n;
	uint8_t		 frames[];
};

static void
delayed_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct delayed *d = arg;

	(void)fd;
	(void)ev;
	conn_publish(d->epoch, d->topic, d->frames, d->n);
	event_free(d->ev);
	free(d);
}

/*
 * Publishes frames, after a uniform random delay in [0, jitter) when
 * jitter is configured: the frames are already sealed and their counters
 * saved, so a crash during the delay loses nothing the outbox cannot
 * resend.
 */
void
publish_direct(int64_t epoch, const char *topic, const uint8_t *frames, int n)
{
	size_t fs = eng_cfg()->frames.size;
	uint64_t j = eng_cfg()->frames.jitter_ms;
	struct delayed *d;

	if (j == 0 || (d = malloc(sizeof *d + (size_t)n * fs)) == NULL) {
		conn_publish(epoch, topic, frames, n);
		return;
	}
	d->epoch = epoch;
	copystr(d->topic, topic, sizeof d->topic);
	d->n = n;
	memcpy(d->frames, frames, (size_t)n * fs);
	j = randombytes_uniform(j > UINT32_MAX ? UINT32_MAX : (uint32_t)j);
	if ((d->ev = evtimer_new(eng_base(), delayed_fire, d)) == NULL ||
	    timer_add_ms(d->ev, (int64_t)j) != 0) {
		if (d->ev != NULL)
			event_free(d->ev);
		conn_publish(epoch, topic, frames, n);
		free(d);
	}
}

/*
 * Seals a message under key k (advancing *seq) into a malloc'd buffer.
 * The caller persists the advanced counter before publishing, so that a
 * crash can never make the daemon reuse a nonce.
 */
uint8_t *
seal_msg(const struct veil_dirkey *k, uint64_t *seq, uint8_t type,
    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body, size_t len, int *nframes)
{
	size_t fs = eng_cfg()->frames.size;
	int n = veil_message_frames(len, fs, 0);
	uint8_t *buf;

	if (n < 0 || (buf = malloc((size_t)n * fs)) == NULL)
		return NULL;
	if (veil_message_seal(buf, (size_t)n * fs, fs, k, seq, type, msgid, body, len) != n) {
		free(buf);
		return NULL;
	}
	*nframes = n;
	return buf;
}

/*
 * The topic of in's owner and our epoch, both of one instant: a frame
 * goes on the connection of the epoch its topic was taken for.  Taken
 * apart, a boundary between the two (the seal and the store write lie
 * between them) would send an old epoch's topic from the new epoch's
 * connection, and the broker would see the two connections of one user
 * write to one topic (protocol.md 5).
 */
int64_t
inbox_topic_now(const struct veil_inbox *in, char out[INBOX_MAX])
{
	int64_t t = now_ms();

	if (veil_topic_text(in->seed, veil_epoch_number((uint64_t)t / 1000,
	    in->epoch), out, INBOX_MAX) != 0)
		out[0] = '\0';
	return conn_epoch_at(t);
}

int64_t
peer_topic(const struct contact *c, char out[INBOX_MAX])
{
	return inbox_topic_now(&c->pair.peer_inbox, out);
}

/* Seals under the contact's transmit chain (always one the peer reads),
 * at the current key period, saves the counter, publishes to the peer's
 * topic of now.  Must run inside a store transaction opened by the
 * caller, or alone. */
int
send_to(struct contact *c, uint8_t type, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len, int attempt)
{
	struct veil_txchain *tx = &c->pair.tx;
	char topic[INBOX_MAX];
	uint8_t *frames;
	int64_t epoch;
	int n;

	if (!tx->live || c->pair.role == 0)
		return -1;
	/* Restored, keys not renewed yet: the stale chains seal nothing
	 * (protocol.md 6.1); the outbox keeps what waits. */
	if (contact_resetting(c))
		return 0;
	contact_advance(c);
	/*
	 * A retransmission jumps to a resync landmark the receiver keeps
	 * armed, in case it lost more frames than its lookahead covers
	 * (protocol.md 2.1).  Up the ladder one jump per contact per second:
	 * the convergence argument is one jump per attempt, and a backlog of
	 * many rows must not climb the levels once per row (that overshoots
	 * the receiver's highest landmark).  Beyond the ladder (attempt 6 on,
	 * past its top stride: its rungs may all have been lost, the
	 * receiver away) the clock landmark of this slot, if not used yet:
	 * each is used once, so it needs no gate, and the next slot's is
	 * ahead again.
	 */
	if (attempt > 0) {
		uint64_t seq = veil_txchain_resync(tx, now_s(), (unsigned)attempt);

		if (seq != tx->seq && (c->jumped_at != eng_tick() ||
		    veil_clock_landmark(seq, NULL))) {
			tx->seq = seq;
			c->jumped_at = eng_tick();
		}
	}
	epoch = peer_topic(c, topic);
	if (topic[0] == '\0')
		return -1;
	if ((frames = seal_msg(&tx->k, &tx->seq, type, msgid, body, len, &n)) == NULL)
		return -1;
	if (contact_save(c) != 0) {
		free(frames);
		return -1;
	}
	/* After commit when in a transaction; on the connection of the
	 * epoch its topic belongs to. */
	txn_publish(epoch, topic, frames, n);
	free(frames);
	return 0;
}

/* The resync level for answering a copy: copies keep coming while the
 * sender cannot read us, so each climbs a level; after a quiet minute
 * the climb starts again from the bottom. */
int
dup_attempt(struct contact *c)
{
	int64_t now = now_ms();

	if (now - c->dup_last > 60 * 1000)
		c->dup_acks = 0;
	c->dup_last = now;
	if (c->dup_acks < VEIL_RESYNC_LEVELS + 1)	/* + 1: the clock */
		c->dup_acks++;
	return (int)c->dup_acks;
}

struct due {
	int64_t		 id, contact_id;
	uint8_t		 msgid[VEIL_MSGID_BYTES];
	int		 type, attempts;
	uint8_t		*body;
	size_t		 len;
};

struct due_list {
	struct due	 d[DUE_BATCH];
	int		 n;
};

static int
due_cb(const struct store_outbox *o, void *arg)
{
	struct due_list *l = arg;
	struct due *d = &l->d[l->n];

	if ((d->body = malloc(o->body_len ? o->body_len : 1)) == NULL)
		return 1;
	/* An empty message has no body at all (NULL): memcpy may not see it. */
	if (o->body_len > 0)
		memcpy(d->body, o->body, o->body_len);
	d->len = o->body_len;
	d->id = o->id;
	d->contact_id = o->contact_id;
	memcpy(d->msgid, o->msgid, sizeof d->msgid);
	d->type = o->type;
	d->attempts = o->attempts;
	l->n++;
	return l->n == DUE_BATCH;
}

/*
 * Sends one batch of due outbox rows (one transaction); if the batch was
 * full, another runs on the next loop iteration, so a large backlog never
 * stalls the loop.  A row is rescheduled with backoff before it is sent,
 * so it is sent once per due time, never twice in a burst.
 */
void
outbox_flush(void)
{
	struct store *st = eng_store();
	struct due_list *l;
	int64_t now = now_ms();
	int full;

	if ((l = calloc(1, sizeof *l)) == NULL)
		return;
	if (store_outbox_due(st, now, DUE_BATCH, due_cb, l) < 0) {
		log_warnx("store: %s", store_errmsg(st));
		free(l);
		return;
	}
	full = l->n == DUE_BATCH;
	if (l->n > 0 && txn_begin() == 0) {
		int ok = 1;

		for (int i = 0; i < l->n && ok; i++) {
			struct due *d = &l->d[i];
			struct contact *c = contact_find(d->contact_id);
			int64_t next = now + backoff(d->attempts + 1);

			if (c != NULL && d->type == VEIL_T_RESET) {
				if (reset_resend(c, d->msgid, d->body, d->len) == 1)
					continue;	/* over: the row is gone */
			} else if (c != NULL && d->type == VEIL_T_REQUEST &&
			    c->state == CONTACT_REQUESTED) {
				if (resend_request(c, d->msgid, d->body, d->len) == 1)
					continue;	/* given up: the row is gone */
			} else if (c != NULL && c->state == CONTACT_ESTABLISHED)
				send_to(c, (uint8_t)d->type, d->msgid, d->body, d->len,
				    d->attempts + 1);
			if (store_outbox_reschedule(st, d->id, next, d->attempts + 1) < 0)
				ok = 0;
		}
		if (!ok || txn_commit() != 0) {
			log_warnx("store: %s", store_errmsg(st));
			txn_rollback();
			full = 0;
		}
	}
	for (int i = 0; i < l->n; i++) {
		sodium_memzero(l->d[i].body, l->d[i].len);
		free(l->d[i].body);
	}
	free(l);
	if (full)
		outbox_flush_later();
}

/*
 * A frame from c came: c is reachable now, so what waits for it with
 * backoff goes at once (a peer back after a day need not wait for the
 * next retransmission).  At most once a second per contact.
 */
void
outbox_hurry(struct contact *c)
{
	int r;

	if (c->hurried_at == eng_tick())
		return;
	c->hurried_at = eng_tick();
	if ((r = store_outbox_hurry(eng_store(), c->id, now_ms())) < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
	else if (r > 0)
		outbox_flush_later();
}

void
outbox_flush_later(void)
{
	if (O.flush_ev != NULL)
		timer_add_ms(O.flush_ev, 0);
}

static void
flush_fire(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	if (conn_up())
		outbox_flush();
}

/* COVER frames: a Poisson process of cover_rate per hour per contact. */
void
cover_arm(void)
{
	size_t n = contact_count_state(CONTACT_ESTABLISHED);
	double rate, gap;

	rate = eng_cfg()->frames.cover_rate * (double)(n ? n : 1) / 3600.0;	/* per second */
	if (O.cover_ev == NULL)
		return;
	evtimer_del(O.cover_ev);
	if (rate <= 0)
		return;
	gap = random_exp(1.0 / rate);
	if (gap > 86400)
		gap = 86400;
	timer_add_ms(O.cover_ev, (int64_t)(gap * 1000.0));
}

static void
cover_fire(evutil_socket_t fd, short ev, void *arg)
{
	size_t n = contact_count_state(CONTACT_ESTABLISHED), pick;
	uint8_t msgid[VEIL_MSGID_BYTES];

	(void)fd;
	(void)ev;
	(void)arg;
	if (n > 0 && conn_up()) {
		pick = randombytes_uniform((uint32_t)n);
		for (size_t i = 0; i < contact_count(); i++) {
			struct contact *c = contact_at(i);

			if (c->state != CONTACT_ESTABLISHED)
				continue;
			if (pick-- == 0) {
				veil_msgid_new(msgid);
				send_to(c, VEIL_T_COVER, msgid, NULL, 0, 0);
				break;
			}
		}
	}
	cover_arm();
}

int
outbox_init(void)
{
	memset(&O, 0, sizeof O);
	O.flush_ev = evtimer_new(eng_base(), flush_fire, NULL);
	O.cover_ev = evtimer_new(eng_base(), cover_fire, NULL);
	if (O.flush_ev == NULL || O.cover_ev == NULL)
		return -1;
	cover_arm();
	return 0;
}

void
outbox_shutdown(void)
{
	if (O.flush_ev != NULL)
		event_free(O.flush_ev);
	if (O.cover_ev != NULL)
		event_free(O.cover_ev);
	memset(&O, 0, sizeof O);
}
