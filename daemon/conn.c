/* conn.c: the broker connections under client IDs — the current one, the previous epoch's until its grace ends, and the level 2 card's. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "core.h"
#include "log.h"
#include "transport.h"

/*
 * Which connection holds which inbox is what keeps pseudonyms apart at
 * the broker: a topic subscribed under two client IDs links them.  So
 * the current epoch's inboxes live on the current connection only, the
 * previous epoch's stay on the old one until its grace ends, and (level
 * 2) the fixed card inbox has a connection of its own, so it ties no chat
 * client ID to another.  inbox.c decides which inbox goes where.
 *
 * Callbacks carry a generation number: only the current connection's
 * count as "the" connection; the old and the card connection carry 0.
 */
static struct {
	struct transport	*tr;		/* current client ID */
	struct transport	*tr_old;	/* previous epoch's, until grace ends */
	struct transport	*tr_card;	/* level 2: the fixed card inbox */
	uintptr_t		 gen;		/* callback arg of tr */
	struct event		*drain_ev;	/* frees tr_old */
	int			 up;
	uint64_t		 pub_sent, pub_done; /* on tr: the broker's backlog */
	uint64_t		 frames_out;
	char			 client_id[VEIL_CLIENTID_MAX + 1];
} K;

int
conn_up(void)
{
	return K.up;
}

int
conn_has_card(void)
{
	return K.tr_card != NULL;
}

int
conn_has_old(void)
{
	return K.tr_old != NULL;
}

const char *
conn_client_id(void)
{
	return K.client_id;
}

const char *
conn_transport_name(void)
{
	return K.tr != NULL ? transport_name(K.tr) : "none";
}

uint64_t
conn_backlog(void)
{
	return K.pub_sent - K.pub_done;
}

uint64_t
conn_frames_out(void)
{
	return K.frames_out;
}

void
conn_publish(const char *inbox, const uint8_t *frames, int n)
{
	size_t fs = eng_cfg()->frames.size;

	for (int i = 0; i < n; i++) {
		if (transport_publish(K.tr, inbox, frames + (size_t)i * fs, fs, 0) != 0)
			log_warnx("transport: publish failed");
		else {
			K.frames_out++;
			K.pub_sent++;
		}
	}
}

static struct transport *
pick(enum conn_which which)
{
	switch (which) {
	case CONN_OLD:	return K.tr_old;
	case CONN_CARD:	return K.tr_card;
	default:	return K.tr;
	}
}

void
conn_subscribe(enum conn_which which, const char *inbox)
{
	struct transport *t = pick(which);

	if (t == NULL)
		t = K.tr;
	if (transport_subscribe(t, inbox) != 0)
		log_warnx("transport: subscribe failed");
}

void
conn_unsubscribe(const char *inbox)
{
	transport_unsubscribe(K.tr, inbox);
	if (K.tr_old != NULL)
		transport_unsubscribe(K.tr_old, inbox);
	if (K.tr_card != NULL)
		transport_unsubscribe(K.tr_card, inbox);
}

/*
 * Frees the previous connection.  Frames it received but had not handed
 * over yet are acknowledged to the broker already: they are processed
 * first (a lost UPDATE-ACK costs a retransmission round), after K.tr_old
 * is let go, since that processing may run any engine code.
 */
static void
retire_old(void)
{
	struct transport *t = K.tr_old;

	K.tr_old = NULL;
	transport_retire(t);
}

static void
drain_done(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	if (K.tr_old != NULL) {
		/* Inboxes whose life was extended (an UPDATE-ACK still due
		 * there) must not go with the old connection. */
		inbox_housekeeping();
		inbox_subscribe_all(SUB_KEEP_GRACE);
		retire_old();
		if (store_meta_set_text(eng_store(), STORE_META_CLIENT_ID_PREV, "") != 0)
			log_warnx("store: %s", store_errmsg(eng_store()));
		log_debug("previous client ID retired");
	}
}

void
conn_drain_arm(void)
{
	int64_t delay;

	if (K.tr_old == NULL || K.drain_ev == NULL)
		return;
	delay = inbox_grace_end() - now_ms();
	if (delay < 1000)
		delay = 1000;
	timer_add_ms(K.drain_ev, delay);
}

static void
tr_state(int up, const char *reason, void *arg)
{
	if ((uintptr_t)arg != K.gen)
		return;		/* the old or the card connection */
	K.up = up;
	if (up) {
		log_info("connected to the broker");
		/* Make-before-break: the old client ID goes only once the new
		 * one is up and the old inboxes' grace has ended. */
		conn_drain_arm();
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
	(void)cookie;
	if ((uintptr_t)arg != K.gen)
		return;
	K.pub_done++;
	if (!ok)
		log_warnx("broker refused a frame");
}

/* Frames the driver dropped before on_message (wrong size, junk, overflow). */
static void
tr_dropped(unsigned int n, void *arg)
{
	(void)arg;
	while (n-- > 0)
		recv_count_dropped();
}

static void
tr_subscribed(const char *topic, int ok, void *arg)
{
	(void)topic;
	(void)arg;
	if (!ok)
		log_warnx("broker refused a subscription");
}

/* A transport under client ID id, its callbacks carrying generation gen. */
static struct transport *
make_transport(const char *id, uintptr_t gen, char *err, size_t errlen)
{
	struct transport_cbs cbs = { tr_state, tr_message, tr_published,
	    tr_subscribed, tr_dropped };
	struct transport *t;

	t = transport_new(eng_cfg(), eng_base(), &cbs, (void *)gen, err, errlen);
	if (t == NULL)
		return NULL;
	if (transport_set_client_id(t, id) != 0) {
		transport_free(t);
		seterr(err, errlen, "transport refused the client ID");
		return NULL;
	}
	return t;
}

/* The current connection, under a fresh generation. */
static struct transport *
make_current(const char *id, char *err, size_t errlen)
{
	struct transport *t = make_transport(id, K.gen + 1, err, errlen);

	if (t != NULL)
		K.gen++;
	return t;
}

int
conn_rotate(const char *id)
{
	char err[256];
	struct transport *t;

	if (K.tr_old != NULL) {
		/* A rotation before the last one's grace ended: the inboxes
		 * still in grace move to the connection that becomes the old
		 * one, since the oldest goes now.  (This links two retired
		 * client IDs by those topics: rotations faster than the
		 * grace period buy less unlinkability.) */
		inbox_housekeeping();
		inbox_subscribe_all(SUB_KEEP_GRACE);
		retire_old();
	}
	if ((t = make_current(id, err, sizeof err)) == NULL) {
		log_warnx("rotation: %s", err);
		return -1;
	}
	K.tr_old = K.tr;
	K.tr = t;
	K.up = 0;
	K.pub_sent = K.pub_done = 0;	/* the new connection's backlog */
	copystr(K.client_id, id, sizeof K.client_id);
	/* Only what this rotation does not replace moves to the new ID. */
	inbox_subscribe_all(SUB_ROTATE);
	return transport_connect(K.tr);
}

int
conn_init(char *err, size_t errlen)
{
	const struct level_policy *lp = eng_policy();
	struct store *st = eng_store();
	struct store_meta m;

	memset(&K, 0, sizeof K);
	if (store_meta_get(st, &m) != 1) {
		seterr(err, errlen, "store: %s", store_errmsg(st));
		return -1;
	}
	if (m.client_id[0] == '\0') {
		veil_clientid_new(m.client_id, 0);
		if (store_meta_set_text(st, STORE_META_CLIENT_ID, m.client_id) != 0)
			goto storefail;
	}
	copystr(K.client_id, m.client_id, sizeof K.client_id);
	if ((K.tr = make_current(K.client_id, err, errlen)) == NULL)
		return -1;
	if (lp->card_conn) {
		if (m.card_client_id[0] == '\0') {
			veil_clientid_new(m.card_client_id, 0);
			if (store_meta_set_text(st, STORE_META_CARD_CLIENT_ID,
			    m.card_client_id) != 0)
				goto storefail;
		}
		if ((K.tr_card = make_transport(m.card_client_id, 0, err,
		    errlen)) == NULL)
			return -1;
	}
	if (lp->rotates && m.client_id_prev[0] != '\0' && inbox_in_grace() &&
	    (K.tr_old = make_transport(m.client_id_prev, 0, err, errlen)) == NULL)
		return -1;
	return 0;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(st));
	return -1;
}

int
conn_start(void)
{
	if ((K.drain_ev = evtimer_new(eng_base(), drain_done, NULL)) == NULL)
		return -1;
	if (K.tr_card != NULL && transport_connect(K.tr_card) != 0)
		return -1;
	if (K.tr_old != NULL) {
		transport_connect(K.tr_old);
		conn_drain_arm();
	}
	return transport_connect(K.tr);
}

void
conn_shutdown(void)
{
	if (K.drain_ev != NULL)
		event_free(K.drain_ev);
	if (K.tr_old != NULL)
		transport_free(K.tr_old);
	if (K.tr_card != NULL)
		transport_free(K.tr_card);
	if (K.tr != NULL)
		transport_free(K.tr);
	memset(&K, 0, sizeof K);
}
