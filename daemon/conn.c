/* conn.c: the broker connections — one per epoch under a fresh client ID, the cards' own, and one-shot ones for requests. */
#include <sys/queue.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "compat.h"
#include "core.h"
#include "log.h"
#include "transport.h"

/*
 * What keeps a user's pseudonyms apart at the broker (protocol.md 5): a
 * connection subscribes and publishes only identifiers of its own epoch,
 * and no identifier — topic, client ID, username, session — is used by
 * two epochs.  Epoch n covers [n·L, (n+1)·L) of Unix time, the same for
 * every user of the broker, so everyone changes at the same moments: the
 * connection of epoch n + 1 connects at a random moment in the last
 * `grace` before the boundary, the one of epoch n goes at a random moment
 * in the first `grace` after it.  Which old connection a new one
 * continues is hidden among everyone who changed then.
 *
 * Cards live on connections of their own (levels 2 and 3), which hold
 * nothing else; at level 3 every card has its own, which ends with the
 * card.  A REQUEST goes out from a one-shot connection that publishes it
 * and leaves.  At level 1 one connection with a fixed client ID holds
 * everything: it hides nothing of the graph (docs/metadata.md).
 */
enum conn_kind { K_CHAT, K_CARD, K_ONESHOT };

struct conn {
	TAILQ_ENTRY(conn)	 entry;
	enum conn_kind		 kind;
	int64_t			 epoch;		/* K_CHAT: its epoch */
	struct transport	*t;
	char			 client_id[VEIL_CLIENTID_MAX + 1];
	int			 up;
	uint64_t		 pub_sent, pub_done;
	int			 outstanding;	/* K_ONESHOT: frames not acked */
	int64_t			 until;		/* K_ONESHOT: give up; K_CARD: card end */
	char			 card[INBOX_MAX];	/* level 3 K_CARD: its card */
	char			 (*dummy)[INBOX_MAX];	/* K_CHAT level 2 padding */
	int			 ndummy;
	char			 (*cards)[INBOX_MAX];	/* card topics it holds */
	int			 ncards;
	char			 (*fixed)[INBOX_MAX];	/* level 1: chat topics held */
	int			 nfixed;
	int			 ntopics;	/* K_CHAT: real topics subscribed */
	int			 dead;		/* to be freed by the reaper */
};
TAILQ_HEAD(conn_list, conn);

#define ONESHOT_WAIT_MS	60000	/* a one-shot connection gives up */
#define PAD_MIN		8	/* level 2: subscriptions padded to 8, 16, ... */
#define DUMMY_CTX	"veildumy"	/* KDF context of the dummy seeds */

static struct {
	struct conn_list	 all;
	struct conn		*cur, *next, *old;	/* chat, by epoch */
	struct event		*ev;		/* the epoch schedule */
	struct event		*reaper;	/* frees dead connections */
	int64_t			 epoch;		/* of cur */
	int64_t			 t_next;	/* next connects (ms) */
	int64_t			 t_switch;	/* the boundary: next becomes cur */
	int64_t			 t_drop;	/* old goes, after that boundary */
	int64_t			 old_drop;	/* old goes (ms), 0: no old */
	uint64_t		 frames_out;
} K;

static void conn_free(struct conn *);
static int64_t epoch_now(void);

int
conn_up(void)
{
	return K.cur != NULL && K.cur->up;
}

/*
 * The epoch of a frame sealed now is the clock's, not the last one the
 * epoch timer saw: a frame sealed after the wall clock crossed a boundary
 * but before epoch_fire() ran (a control request or a frame served first
 * in the same loop pass, a timer late after a stall) takes its
 * recipient's topic of the new epoch (peer_topic), and sent on the old
 * epoch's connection it would tie that connection to the new one, both
 * publishing to one topic.  It goes on the new epoch's connection, which
 * came in the grace before; if a stall kept that one from coming, the
 * frame is dropped and the outbox sends it again.
 */
int64_t
conn_epoch_at(int64_t t)
{
	if (eng_policy()->rotates && t >= K.t_switch)
		return (int64_t)veil_epoch_number((uint64_t)t / 1000,
		    eng_epoch_len());
	return K.epoch;
}

int64_t
conn_epoch(void)
{
	return conn_epoch_at(now_ms());
}

int64_t
conn_next_epoch_ms(void)
{
	return eng_policy()->rotates ? K.t_switch : 0;
}

const char *
conn_transport_name(void)
{
	return K.cur != NULL ? transport_name(K.cur->t) : "none";
}

uint64_t
conn_backlog(void)
{
	return K.cur != NULL ? K.cur->pub_sent - K.cur->pub_done : 0;
}

uint64_t
conn_frames_out(void)
{
	return K.frames_out;
}

static struct conn *
chat_of(int64_t epoch)
{
	if (!eng_policy()->rotates)
		return K.cur;
	if (K.cur != NULL && K.cur->epoch == epoch)
		return K.cur;
	if (K.old != NULL && K.old->epoch == epoch)
		return K.old;
	if (K.next != NULL && K.next->epoch == epoch)
		return K.next;
	return NULL;
}

static int
publish_on(struct conn *k, const char *topic, const uint8_t *frames, int n)
{
	size_t fs = eng_cfg()->frames.size;

	for (int i = 0; i < n; i++) {
		if (transport_publish(k->t, topic, frames + (size_t)i * fs, fs, 0) != 0) {
			log_warnx("transport: publish failed");
			return -1;
		}
		K.frames_out++;
		k->pub_sent++;
		if (k->kind == K_ONESHOT)
			k->outstanding++;
	}
	return 0;
}

void
conn_publish(int64_t epoch, const char *topic, const uint8_t *frames, int n)
{
	struct conn *k = chat_of(epoch);

	if (k == NULL) {
		log_debug("frames of epoch %" PRId64 " dropped: its connection "
		    "is gone", epoch);
		return;
	}
	publish_on(k, topic, frames, n);
}

/* --- callbacks ------------------------------------------------------------ */

static void
reap_later(struct conn *k)
{
	k->dead = 1;
	if (K.reaper != NULL)
		timer_add_ms(K.reaper, 0);
}

static void
tr_state(int up, const char *reason, void *arg)
{
	struct conn *k = arg;

	k->up = up;
	if (k->kind != K_CHAT || k != K.cur) {
		if (!up && k->kind != K_ONESHOT)
			log_debug("a card connection is down: %s",
			    reason ? reason : "unknown");
		return;
	}
	if (up) {
		log_info("connected to the broker");
		outbox_flush();
	} else
		log_warnx("broker connection lost: %s", reason ? reason : "unknown");
}

static void
tr_message(const char *topic, const void *data, size_t len, void *arg)
{
	(void)arg;
	recv_frame(topic, data, len);
}

static void
tr_published(uint64_t cookie, int ok, void *arg)
{
	struct conn *k = arg;

	(void)cookie;
	k->pub_done++;
	if (!ok)
		log_warnx("broker refused a frame");
	if (k->kind == K_ONESHOT && --k->outstanding <= 0)
		reap_later(k);
}

static void
tr_subscribed(const char *topic, int ok, void *arg)
{
	(void)topic;
	(void)arg;
	if (!ok)
		log_warnx("broker refused a subscription");
}

static void
tr_dropped(unsigned int n, void *arg)
{
	(void)arg;
	recv_count_dropped(n);
}

/*
 * A connection under a fresh client ID (or id), whose session lasts
 * expiry seconds after an unplanned loss (a restart within the epoch
 * finds it again) and ends at a planned one.
 */
static struct conn *
conn_new(enum conn_kind kind, const char *id, uint32_t expiry)
{
	struct transport_cbs cbs = { tr_state, tr_message, tr_published,
	    tr_subscribed, tr_dropped };
	struct conn *k;
	char err[256];

	if ((k = calloc(1, sizeof *k)) == NULL)
		return NULL;
	k->kind = kind;
	if (id != NULL)
		copystr(k->client_id, id, sizeof k->client_id);
	else
		veil_clientid_new(k->client_id, 0);
	if ((k->t = transport_new(eng_cfg(), eng_base(), &cbs, k, err,
	    sizeof err)) == NULL) {
		log_warnx("transport: %s", err);
		free(k);
		return NULL;
	}
	if (transport_set_client_id(k->t, k->client_id) != 0 ||
	    transport_set_session_expiry(k->t, expiry) != 0) {
		log_warnx("transport refused the client ID");
		transport_free(k->t);
		free(k);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&K.all, k, entry);
	return k;
}

/*
 * Frees a connection.  Frames it received but had not handed over yet
 * are acknowledged to the broker already: transport_retire hands them
 * over first, after k is out of every list, since that may run any
 * engine code.
 */
static void
conn_free(struct conn *k)
{
	struct transport *t = k->t;

	if (k == K.cur)
		K.cur = NULL;
	if (k == K.next)
		K.next = NULL;
	if (k == K.old)
		K.old = NULL;
	TAILQ_REMOVE(&K.all, k, entry);
	k->t = NULL;
	k->dead = 1;
	if (t != NULL)
		transport_retire(t);
	free(k->dummy);
	free(k->cards);
	free(k->fixed);
	free(k);
}

static void
reaper_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct conn *k, *tmp;

	(void)fd;
	(void)ev;
	(void)arg;
	TAILQ_FOREACH_SAFE(k, &K.all, entry, tmp)
		if (k->dead || (k->kind == K_ONESHOT && k->until < now_ms()))
			conn_free(k);
}

/* --- the topics of a chat connection ------------------------------------- */

static void
sub_cb(const char *topic, void *arg)
{
	struct conn *k = arg;

	if (transport_subscribe(k->t, topic) != 0)
		log_warnx("transport: subscribe failed");
	else
		k->ntopics++;
}

static int
pad_target(int n)
{
	int b = PAD_MIN;

	while (b < n)
		b *= 2;
	return b;
}

/*
 * The i-th dummy topic of an epoch is derived, like a real one, from a
 * seed only we know (KDF of our identity key) and the epoch, not drawn at
 * random: a restart within the epoch resumes the connection's session at
 * the broker, which still holds the dummies subscribed before, and fresh
 * ones would sit beside them (15 subscriptions where 8 were due, and the
 * one topic held before and after, the real one, standing out).
 */
static void
dummy_add(struct conn *k)
{
	char (*p)[INBOX_MAX];
	uint8_t seed[VEIL_SEED_BYTES];
	int r;

	if ((p = reallocarray(k->dummy, (size_t)k->ndummy + 1, sizeof *p)) == NULL)
		return;
	k->dummy = p;
	crypto_kdf_derive_from_key(seed, sizeof seed, (uint64_t)k->ndummy, DUMMY_CTX,
	    eng_identity()->sk);
	r = veil_topic_text(seed, (uint64_t)k->epoch, k->dummy[k->ndummy], INBOX_MAX);
	sodium_memzero(seed, sizeof seed);
	if (r == 0 && transport_subscribe(k->t, k->dummy[k->ndummy]) == 0)
		k->ndummy++;
}

static void
dummy_drop(struct conn *k)
{
	if (k->ndummy == 0)
		return;
	transport_unsubscribe(k->t, k->dummy[--k->ndummy]);
}

struct topic_list {
	char	(*t)[INBOX_MAX];
	int	 n;
};

static void
list_cb(const char *topic, void *arg)
{
	struct topic_list *l = arg;
	char (*p)[INBOX_MAX];

	if ((p = reallocarray(l->t, (size_t)l->n + 1, sizeof *p)) == NULL)
		return;
	l->t = p;
	copystr(l->t[l->n++], topic, INBOX_MAX);
}

static int
in_list(char (*t)[INBOX_MAX], int n, const char *topic)
{
	for (int i = 0; i < n; i++)
		if (strcmp(t[i], topic) == 0)
			return 1;
	return 0;
}

/*
 * Level 1 has no epochs and one connection, which holds each seed's topic
 * of now.  A contact may still number our topics by the epoch length it
 * had from us before a restart at level 1 (until our UPDATE reaches it):
 * those topics move on with time, and the connection follows them.
 */
static void
fixed_sync(struct conn *k)
{
	struct topic_list w = { NULL, 0 };
	int64_t at;

	inbox_foreach_topic(0, list_cb, &w);
	for (int i = 0; i < k->nfixed; i++)
		if (!in_list(w.t, w.n, k->fixed[i]))
			transport_unsubscribe(k->t, k->fixed[i]);
	for (int i = 0; i < w.n; i++)
		if (!in_list(k->fixed, k->nfixed, w.t[i]) &&
		    transport_subscribe(k->t, w.t[i]) != 0)
			log_warnx("transport: subscribe failed");
	free(k->fixed);
	k->fixed = w.t;
	k->nfixed = w.n;
	if (K.ev != NULL && (at = inbox_next_change_ms()) != 0)
		timer_add_ms(K.ev, at - now_ms());
}

/*
 * Everything a connection of epoch n holds: the topic of every seed some
 * contact writes to in that epoch, and at level 2 dummy topics up to the
 * next of 8, 16, 32, ..., so that the count tells nothing of how many
 * contacts there are; at level 1 also the cards.
 */
static void
chat_subscribe(struct conn *k)
{
	if (!eng_policy()->rotates) {
		fixed_sync(k);
		return;
	}
	inbox_foreach_topic(k->epoch, sub_cb, k);
	if (eng_policy()->pair_inboxes)
		while (k->ntopics + k->ndummy < pad_target(k->ntopics))
			dummy_add(k);
}

static void
topic_change(const struct veil_inbox *in, int add)
{
	struct conn *ks[2] = { K.cur, K.next };
	char topic[INBOX_MAX];

	if (!eng_policy()->rotates) {
		if (K.cur != NULL)
			fixed_sync(K.cur);
		return;
	}
	for (int i = 0; i < 2; i++) {
		struct conn *k = ks[i];
		uint64_t t;

		if (k == NULL)
			continue;
		t = (uint64_t)k->epoch * eng_epoch_len();
		if (veil_topic_text(in->seed, veil_epoch_number(t, in->epoch), topic,
		    sizeof topic) != 0)
			continue;
		/* A real topic takes a dummy's place and gives it back: the
		 * count stays what it was for the rest of the epoch. */
		if (add) {
			if (transport_subscribe(k->t, topic) == 0) {
				k->ntopics++;
				dummy_drop(k);
			}
		} else if (transport_unsubscribe(k->t, topic) == 0) {
			k->ntopics--;
			if (eng_policy()->pair_inboxes)
				dummy_add(k);
		}
	}
}

void
conn_topic_add(const struct veil_inbox *in)
{
	topic_change(in, 1);
}

void
conn_topic_del(const struct veil_inbox *in)
{
	topic_change(in, 0);
}

/* --- cards ------------------------------------------------------------------ */

static int
holds_card(const struct conn *k, const char *topic)
{
	for (int i = 0; i < k->ncards; i++)
		if (strcmp(k->cards[i], topic) == 0)
			return 1;
	return 0;
}

static void
hold_card(struct conn *k, const char *topic)
{
	char (*p)[INBOX_MAX];

	if (holds_card(k, topic))
		return;
	if ((p = reallocarray(k->cards, (size_t)k->ncards + 1, sizeof *p)) == NULL)
		return;
	k->cards = p;
	copystr(k->cards[k->ncards], topic, INBOX_MAX);
	if (transport_subscribe(k->t, topic) == 0)
		k->ncards++;
}

/* Card topics k holds that are no longer live cards go. */
static void
drop_dead_cards(struct conn *k)
{
	struct veil_id cid;
	int once;

	for (int i = 0; i < k->ncards; ) {
		if (inbox_card_live(k->cards[i], &cid, &once)) {
			i++;
			continue;
		}
		transport_unsubscribe(k->t, k->cards[i]);
		memmove(k->cards[i], k->cards[i + 1],
		    (size_t)(k->ncards - i - 1) * INBOX_MAX);
		k->ncards--;
	}
}

static struct conn *
card_conn_of(const char *topic)
{
	struct conn *k;

	TAILQ_FOREACH(k, &K.all, entry)
		if (k->kind == K_CARD && !k->dead && holds_card(k, topic))
			return k;
	return NULL;
}

static uint32_t
card_expiry(void)
{
	return (uint32_t)(eng_cfg()->mqtt.session_expiry_ms / 1000);
}

/* Level 2's one card connection, under the fixed client ID it keeps. */
static struct conn *
card_conn(void)
{
	struct store_meta m;
	struct conn *k;

	TAILQ_FOREACH(k, &K.all, entry)
		if (k->kind == K_CARD && !k->dead)
			return k;
	if (store_meta_get(eng_store(), &m) != 1)
		return NULL;
	if (m.card_client_id[0] == '\0') {
		veil_clientid_new(m.card_client_id, 0);
		if (store_meta_set_text(eng_store(), STORE_META_CARD_CLIENT_ID,
		    m.card_client_id) != 0)
			return NULL;
	}
	if ((k = conn_new(K_CARD, m.card_client_id, card_expiry())) == NULL)
		return NULL;
	if (transport_connect(k->t) != 0)
		log_warnx("the card connection cannot start");
	return k;
}

static void
card_cb(const char *topic, int64_t expires, void *arg)
{
	struct conn *holder = arg, *k;

	if (holder != NULL) {			/* levels 1 and 2 */
		hold_card(holder, topic);
		return;
	}
	if (card_conn_of(topic) != NULL)	/* level 3 */
		return;
	/* A connection for this card alone, gone with it. */
	if ((k = conn_new(K_CARD, NULL, card_expiry())) == NULL)
		return;
	k->until = expires;
	hold_card(k, topic);
	if (transport_connect(k->t) != 0)
		log_warnx("a card connection cannot start");
}

void
conn_cards_changed(void)
{
	const struct level_policy *lp = eng_policy();
	struct conn *holder = NULL, *k, *tmp;

	if (K.ev == NULL)
		return;		/* not started yet: conn_start comes here */
	if (!lp->card_conn)
		holder = K.cur;
	else if (!lp->card_per_conn)
		holder = card_conn();
	if (holder != NULL)
		drop_dead_cards(holder);
	inbox_foreach_card(card_cb, holder);
	if (lp->card_per_conn)
		TAILQ_FOREACH_SAFE(k, &K.all, entry, tmp)
			if (k->kind == K_CARD && !k->dead) {
				drop_dead_cards(k);
				if (k->ncards == 0)
					reap_later(k);
			}
}

/* --- one-shot connections -------------------------------------------------- */

int
conn_oneshot(const char *topic, const uint8_t *frames, int n)
{
	struct conn *k;

	if ((k = conn_new(K_ONESHOT, NULL, 0)) == NULL)
		return -1;
	k->until = now_ms() + ONESHOT_WAIT_MS;
	if (publish_on(k, topic, frames, n) != 0 || transport_connect(k->t) != 0) {
		reap_later(k);
		return -1;
	}
	return 0;
}

/* --- the epoch schedule ----------------------------------------------------- */

static int64_t
grace_ms(void)
{
	int64_t g = (int64_t)eng_cfg()->rotation.grace_ms;
	int64_t half = (int64_t)eng_epoch_len() * 1000 / 2;

	return g < half ? g : half;
}

static int64_t
epoch_now(void)
{
	return eng_policy()->rotates ?
	    (int64_t)veil_epoch_number(now_s(), eng_epoch_len()) : 0;
}

/* The session of a chat connection outlives its epoch by the grace and a
 * minute, so that a restart within the epoch finds its frames queued. */
static uint32_t
chat_expiry(int64_t epoch)
{
	int64_t end;

	if (!eng_policy()->rotates)
		return (uint32_t)(eng_cfg()->mqtt.session_expiry_ms / 1000);
	end = ((epoch + 1) * (int64_t)eng_epoch_len() + 60) * 1000 + grace_ms() -
	    now_ms();
	return end > 0 ? (uint32_t)(end / 1000) : 0;
}

static struct conn *
chat_new(int64_t epoch, const char *id)
{
	struct conn *k;

	if ((k = conn_new(K_CHAT, id, chat_expiry(epoch))) == NULL)
		return NULL;
	k->epoch = epoch;
	chat_subscribe(k);
	if (!eng_policy()->card_conn)
		inbox_foreach_card(card_cb, k);
	if (transport_connect(k->t) != 0)
		log_warnx("epoch %" PRId64 ": the connection cannot start", epoch);
	return k;
}

/* The moments around the next boundary, drawn afresh for each epoch:
 * independent uniform draws, as everyone else's. */
static void
schedule(void)
{
	int64_t b = (K.epoch + 1) * (int64_t)eng_epoch_len() * 1000, g = grace_ms();

	K.t_next = b - (g > 0 ? random_below(g) + 1 : 0);
	K.t_switch = b;
	K.t_drop = b + (g > 0 ? random_below(g) + 1 : 0);
}

static void
arm(void)
{
	int64_t at = K.t_switch;

	if (K.next == NULL && K.t_next < at)
		at = K.t_next;
	if (K.old != NULL && K.old_drop < at)
		at = K.old_drop;
	timer_add_ms(K.ev, at - now_ms());
}

static void
remember_client(void)
{
	struct store *st = eng_store();

	if (K.cur == NULL)
		return;
	if (store_meta_set_text(st, STORE_META_CLIENT_ID, K.cur->client_id) != 0 ||
	    store_meta_set_int(st, STORE_META_CLIENT_EPOCH, K.epoch) != 0)
		log_warnx("store: %s", store_errmsg(st));
}

/* cur goes to old (dropped at drop), a connection of epoch becomes cur. */
static void
switch_to(int64_t epoch, int64_t drop)
{
	if (K.old != NULL)
		conn_free(K.old);	/* epochs shorter than the grace */
	K.old = K.cur;
	K.old_drop = drop;
	if (K.next != NULL && K.next->epoch == epoch) {
		K.cur = K.next;
		K.next = NULL;
	} else {
		if (K.next != NULL)
			conn_free(K.next);
		K.cur = chat_new(epoch, NULL);
	}
	K.epoch = epoch;
	remember_client();
	log_debug("epoch %" PRId64 " begins", epoch);
	if (K.cur != NULL && K.cur->up)
		outbox_flush();
	if (!eng_policy()->card_conn)
		conn_cards_changed();
}

static void
epoch_fire(evutil_socket_t fd, short ev, void *arg)
{
	int64_t now = now_ms(), target;

	(void)fd;
	(void)ev;
	(void)arg;
	if (!eng_policy()->rotates) {
		if (K.cur != NULL)
			fixed_sync(K.cur);	/* a seed's numbering moved on */
		return;
	}
	if (K.next == NULL && now >= K.t_next && now < K.t_switch)
		K.next = chat_new(K.epoch + 1, NULL);
	if (now >= K.t_switch) {
		/* The boundary (or several, after a sleep): frames sealed
		 * from now on belong to the new epoch and leave on its
		 * connection. */
		target = epoch_now();
		if (target <= K.epoch)
			target = K.epoch + 1;
		switch_to(target, target == K.epoch + 1 ? K.t_drop : now);
		schedule();
	}
	if (K.old != NULL && now >= K.old_drop) {
		struct conn *o = K.old;

		K.old = NULL;
		conn_free(o);
	}
	arm();
}

void
conn_reschedule(void)
{
	if (K.ev == NULL || !eng_policy()->rotates)
		return;
	/* A new epoch length numbers epochs anew: the connection of the
	 * new numbering starts now (a change of settings is no boundary
	 * the crowd shares; it shows once). */
	switch_to(epoch_now(), now_ms() + grace_ms());
	schedule();
	arm();
}

void
conn_foreach_id(void (*client)(const char *, void *),
    void (*topic)(const char *, void *), void *arg)
{
	struct conn *k;

	TAILQ_FOREACH(k, &K.all, entry) {
		const char *id;

		if (k->dead)
			continue;
		/* The name the server knows the connection by: on XMPP the
		 * JID it assigned, not our client ID, which never leaves. */
		if ((id = transport_client_id(k->t)) != NULL)
			client(id, arg);
		transport_foreach_topic(k->t, topic, arg);
	}
}

int
conn_init(char *err, size_t errlen)
{
	memset(&K, 0, sizeof K);
	TAILQ_INIT(&K.all);
	(void)err;
	(void)errlen;
	return 0;
}

int
conn_start(void)
{
	struct store_meta m;
	const char *id = NULL;

	if ((K.ev = evtimer_new(eng_base(), epoch_fire, NULL)) == NULL ||
	    (K.reaper = evtimer_new(eng_base(), reaper_fire, NULL)) == NULL)
		return -1;
	if (store_meta_get(eng_store(), &m) != 1)
		return -1;
	K.epoch = epoch_now();
	/* Level 1 keeps one client ID; the others keep theirs within the
	 * epoch only (a restart finds its session), never across. */
	if (m.client_id[0] != '\0' && (!eng_policy()->rotates ||
	    m.client_epoch == K.epoch))
		id = m.client_id;
	if ((K.cur = chat_new(K.epoch, id)) == NULL)
		return -1;
	remember_client();
	conn_cards_changed();
	if (eng_policy()->rotates) {
		schedule();
		arm();
	}
	return 0;
}

void
conn_shutdown(void)
{
	struct conn *k;

	if (K.ev != NULL)
		event_free(K.ev);
	if (K.reaper != NULL)
		event_free(K.reaper);
	K.ev = K.reaper = NULL;
	while ((k = TAILQ_FIRST(&K.all)) != NULL) {
		struct transport *t = k->t;

		TAILQ_REMOVE(&K.all, k, entry);
		transport_free(t);
		free(k->dummy);
		free(k->cards);
		free(k->fixed);
		free(k);
	}
	memset(&K, 0, sizeof K);
}
