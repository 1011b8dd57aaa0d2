/* mqtt.c: the MQTT transport driver on paho.mqtt.c MQTTAsync (MQTT 5, QoS 1). */

/*
 * Sessions.  A peer that is offline must not lose frames, so the broker has
 * to hold QoS 1 messages for us while we are away: we connect with Clean
 * Start = 0 and a Session Expiry Interval (default 7 days) under a client ID
 * that stays the same for a whole epoch (daemon restarts included, the engine
 * stores it).  A client ID is retired by disconnecting with Session Expiry 0,
 * which makes the broker drop that session and its queue at once instead of
 * keeping an orphan that still names our topics.  The old client lingers
 * up to MQTT_DISCONNECT_WAIT to finish its in-flight work and keeps
 * delivering meanwhile, so a rotation under traffic yields duplicates (the
 * engine dedupes); frames published to our topics after the old ID's
 * DISCONNECT and before the new ID's SUBACK reach nobody, and the engine's
 * end-to-end ACK and retransmission cover that gap.
 * Every live topic is subscribed again on every connect anyway: the broker
 * may have lost the session (restart without persistence, expiry), and a
 * SUBSCRIBE for a topic already held is harmless.
 *
 * MQTT 5 rather than 3.1.1: session expiry is what lets us discard an old
 * session without reconnecting under the old ID.  A 3.1.1-only broker is
 * not supported.
 *
 * Threads.  paho runs its callbacks on its own threads.  They only copy what
 * they got into a queue under a mutex and activate a libevent event; all
 * state lives on the loop thread, which drains the queue.  No paho call is
 * ever made with the queue mutex held, and none from a paho callback.  This
 * needs evthread_use_pthreads() before the event base is created (the
 * caller's job).  Each request carries a sequence number; a late answer for
 * a request that was re-issued or abandoned matches nothing and is dropped.
 *
 * Reconnects use our own timer on the loop (transport_backoff(): exponential,
 * with jitter) instead of paho's automaticReconnect, which does not retry a
 * failed first connect.  Publishes beyond the in-flight window wait on the loop side:
 * handing paho everything at once is an order of magnitude slower.
 */

#include <sys/queue.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include <MQTTAsync.h>

#include "compat.h"
#include "log.h"
#include "transport.h"

#define MQTT_INFLIGHT_DEFAULT	100
#define MQTT_KEEPALIVE_DEFAULT	60	/* s */
#define MQTT_EXPIRY_DEFAULT	(7 * 24 * 3600)	/* s */
#define MQTT_CONNECT_TIMEOUT	10	/* s, per server URI */
#define MQTT_DISCONNECT_WAIT	1000	/* ms for in-flight work at retirement */
#define MQTT_DRAIN_BATCH	256	/* events per wake before yielding */

enum mev_type {
	MEV_UP,		/* seq = connect attempt */
	MEV_DOWN,	/* seq = connect attempt; text = reason */
	MEV_LOST,	/* seq = handle generation */
	MEV_CLOSED,	/* seq = handle generation */
	MEV_MSG,	/* text = topic; data, len */
	MEV_PUB,	/* seq = request */
	MEV_SUB,
	MEV_UNSUB,
};

struct mev {
	TAILQ_ENTRY(mev)	 entry;
	enum mev_type		 type;
	uint64_t		 seq;
	int			 ok;
	int			 permanent;	/* MEV_PUB failure: do not retry */
	int			 session_present;
	char			*text;
	void			*data;
	size_t			 len;
	struct mreq		*rq;		/* to free on the loop */
};
TAILQ_HEAD(mev_list, mev);

struct mqtt;

/*
 * Context of one paho request.  The loop thread owns it: the callback only
 * reads it and hands it back in its event, and the loop frees it then, or
 * at transport_free() for requests paho never answered.
 */
struct mreq {
	LIST_ENTRY(mreq)	 entry;
	struct mqtt		*m;
	uint64_t		 seq;
	enum mev_type		 type;
	int			 batch;		/* topics of a subscribeMany */
};
LIST_HEAD(mreq_list, mreq);

/* One paho client: paho fixes the client ID at creation. */
struct mhandle {
	struct mqtt	*m;
	uint64_t	 gen;
	MQTTAsync	 cli;
	char		 id[TRANSPORT_CLIENT_ID_MAX + 1];
};

struct mtopic {
	TAILQ_ENTRY(mtopic)	 entry;
	struct mtopic		*hnext;		/* name hash chain */
	struct mtopic		*snext;		/* request hash chain */
	char			*name;
	int			 live;		/* 0: still to UNSUBSCRIBE */
	int			 reported;	/* on_subscribed done */
	uint64_t		 seq;		/* outstanding request */
};
TAILQ_HEAD(mtopic_list, mtopic);

struct mpub {
	TAILQ_ENTRY(mpub)	 entry;
	char			*topic;
	void			*buf;
	size_t			 len;
	uint64_t		 cookie;
	uint64_t		 seq;		/* 0 while waiting */
};
TAILQ_HEAD(mpub_list, mpub);

enum mstate { MQTT_DOWN, MQTT_CONNECTING, MQTT_UP };

struct mqtt {
	struct transport	 t;
	struct event_base	*base;
	struct transport_cbs	 cbs;
	void			*arg;

	char			**uris;
	int			 nuris;
	char			*username;
	char			*password;
	char			*proxy;
	int			 keepalive_s;
	int			 inflight_max;
	int			 expiry_s;

	char			 client_id[TRANSPORT_CLIENT_ID_MAX + 1];
	struct mhandle		*cur;		/* NULL: disconnect()ed */
	struct mhandle		*closing;	/* sending its DISCONNECT */
	/*
	 * A destroyed handle is freed only at the next destroy: a paho thread
	 * may still be inside one of its callbacks, reading h->m and h->gen.
	 */
	struct mhandle		*dead;
	enum mstate		 state;
	uint64_t		 seq;
	uint64_t		 attempt;	/* current connect request */
	int			 backoff_ms;
	int			 ever_up;

	struct event		*retry_ev;
	struct event		*wake_ev;
	pthread_mutex_t		 lock;		/* guards events only */
	struct mev_list		 events;

	struct mtopic_list	 topics;
	/* With 10,000 contacts there are 10,000 topics: finding one by name
	 * (every received frame) or by request (every SUBACK) must not
	 * walk the list. */
	struct mtopic		**hname, **hseq;
	size_t			 hcap, ntopics;
	struct event		*more_ev;	/* drain continues here */
	struct mpub_list	 pending;
	struct mpub_list	 inflight;
	int			 ninflight;
	struct mreq_list	 reqs;		/* outstanding */
};

static const struct timeval mqtt_zero_tv = { 0, 0 };

static void	mqtt_start_connect(struct mqtt *);
static void	mqtt_pump(struct mqtt *);

/* --- paho's threads: copy, enqueue, wake ---------------------------------- */

static void
mqtt_enqueue(struct mqtt *m, struct mev *ev)
{
	pthread_mutex_lock(&m->lock);
	TAILQ_INSERT_TAIL(&m->events, ev, entry);
	pthread_mutex_unlock(&m->lock);
	event_active(m->wake_ev, EV_READ, 0);
}

static struct mev *
mev_new(enum mev_type type, uint64_t seq)
{
	struct mev	*ev;

	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return NULL;
	ev->type = type;
	ev->seq = seq;
	return ev;
}

static void
mev_free(struct mev *ev)
{
	free(ev->text);
	free(ev->data);
	free(ev);
}

/*
 * Out of memory on paho's thread: nothing sane to do but drop the event.
 * A lost UP/DOWN is caught by the next state change, a lost PUB by the
 * engine's retransmission.
 */
static void
mqtt_post(struct mqtt *m, struct mreq *rq, enum mev_type type, uint64_t seq,
    int ok, int permanent, const char *text)
{
	struct mev	*ev;

	if ((ev = mev_new(type, seq)) == NULL)
		return;
	ev->rq = rq;
	ev->ok = ok;
	ev->permanent = permanent;
	if (text != NULL && (ev->text = strdup(text)) == NULL) {
		free(ev);
		return;
	}
	mqtt_enqueue(m, ev);
}

static void
mqtt_cb_connected(void *ctx, MQTTAsync_successData5 *r)
{
	struct mreq	*rq = ctx;
	struct mev	*ev;

	if ((ev = mev_new(MEV_UP, rq->seq)) != NULL) {
		ev->session_present = r != NULL ? r->alt.connect.sessionPresent : 0;
		ev->rq = rq;
		mqtt_enqueue(rq->m, ev);
	}
}

static void
mqtt_cb_connect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct mreq	*rq = ctx;
	char		 why[256];

	if (r == NULL)
		snprintf(why, sizeof(why), "connect failed");
	else if (r->reasonCode != MQTTREASONCODE_SUCCESS)
		snprintf(why, sizeof(why), "connect refused: %s",
		    MQTTReasonCode_toString(r->reasonCode));
	else
		snprintf(why, sizeof(why), "connect failed: %s",
		    r->message != NULL ? r->message : MQTTAsync_strerror(r->code));
	mqtt_post(rq->m, rq, MEV_DOWN, rq->seq, 0, 0, why);
}

static void
mqtt_cb_lost(void *ctx, char *cause)
{
	struct mhandle	*h = ctx;

	(void)cause;	/* always NULL in paho 1.3 */
	mqtt_post(h->m, NULL, MEV_LOST, h->gen, 0, 0, "connection lost");
}

/*
 * MQTT 5: the broker closed the session with a DISCONNECT packet (reason
 * code, e.g. 0x82 protocol error after a session resumption).  paho
 * reports that here and not through connectionLost, and then considers
 * the client disconnected: without this, veild believed it was still
 * connected and stopped receiving for good.
 */
static void
mqtt_cb_server_disconnect(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc)
{
	struct mhandle	*h = ctx;

	(void)props;
	(void)rc;
	mqtt_post(h->m, NULL, MEV_LOST, h->gen, 0, 0, "the broker closed the connection");
}

static int
mqtt_cb_message(void *ctx, char *topic, int topiclen, MQTTAsync_message *msg)
{
	struct mhandle	*h = ctx;
	struct mev	*ev;
	size_t		 tlen;

	tlen = topiclen > 0 ? (size_t)topiclen : strlen(topic);
	if ((ev = mev_new(MEV_MSG, 0)) == NULL)
		return 0;	/* paho offers it again later */
	if ((ev->text = malloc(tlen + 1)) == NULL ||
	    (msg->payloadlen > 0 &&
	    (ev->data = malloc((size_t)msg->payloadlen)) == NULL)) {
		mev_free(ev);
		return 0;
	}
	memcpy(ev->text, topic, tlen);
	ev->text[tlen] = '\0';
	if (msg->payloadlen > 0) {
		memcpy(ev->data, msg->payload, (size_t)msg->payloadlen);
		ev->len = (size_t)msg->payloadlen;
	}
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	mqtt_enqueue(h->m, ev);
	return 1;
}

static void
mqtt_cb_done(void *ctx, MQTTAsync_successData5 *r)
{
	struct mreq	*rq = ctx;
	int		 ok = 1;

	/* SUBACK carries the granted QoS, or a failure code >= 0x80; a
	 * batch (subscribeMany) is ok only if every topic in it is. */
	if (r != NULL && r->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
		ok = 0;
	/* paho fills alt.sub / alt.unsub for the Many calls only. */
	if (r != NULL && rq->batch > 1 && (rq->type == MEV_SUB || rq->type == MEV_UNSUB)) {
		int n = rq->type == MEV_SUB ? r->alt.sub.reasonCodeCount :
		    r->alt.unsub.reasonCodeCount;
		enum MQTTReasonCodes *rc = rq->type == MEV_SUB ?
		    r->alt.sub.reasonCodes : r->alt.unsub.reasonCodes;

		for (int i = 0; rc != NULL && i < n; i++)
			if (rc[i] >= MQTTREASONCODE_UNSPECIFIED_ERROR)
				ok = 0;
	}
	mqtt_post(rq->m, rq, rq->type, rq->seq, ok, !ok, NULL);
}

static void
mqtt_cb_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct mreq	*rq = ctx;
	int		 permanent = 0;

	/* A reason code from the broker is its answer; anything else is the
	 * connection going away, and worth another try. */
	if (r != NULL && r->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
		permanent = 1;
	mqtt_post(rq->m, rq, rq->type, rq->seq, 0, permanent, NULL);
}

static void
mqtt_cb_disconnected(void *ctx, MQTTAsync_successData5 *r)
{
	struct mreq	*rq = ctx;

	(void)r;
	mqtt_post(rq->m, rq, MEV_CLOSED, rq->seq, 1, 0, NULL);
}

static void
mqtt_cb_disconnect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct mreq	*rq = ctx;

	(void)r;
	mqtt_post(rq->m, rq, MEV_CLOSED, rq->seq, 0, 0, NULL);
}

/* --- loop thread ------------------------------------------------------------ */

static struct mreq *
mreq_new(struct mqtt *m, enum mev_type type)
{
	struct mreq	*rq;

	if ((rq = malloc(sizeof(*rq))) == NULL)
		return NULL;
	rq->m = m;
	rq->seq = ++m->seq;
	rq->type = type;
	rq->batch = 0;
	LIST_INSERT_HEAD(&m->reqs, rq, entry);
	return rq;
}

static void
mreq_done(struct mreq *rq)
{
	if (rq == NULL)
		return;
	LIST_REMOVE(rq, entry);
	free(rq);
}

static size_t
hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	while (*s != '\0')
		h = (h ^ (uint8_t)*s++) * 1099511628211ULL;
	return (size_t)h;
}

static size_t
hash_seq(uint64_t seq)
{
	return (size_t)(seq * 0x9e3779b97f4a7c15ULL >> 17);
}

/* Unlinks tp from its request chain (if any) and sets its request. */
static void
topic_set_seq(struct mqtt *m, struct mtopic *tp, uint64_t seq)
{
	struct mtopic **pp;

	if (tp->seq != 0) {
		for (pp = &m->hseq[hash_seq(tp->seq) & (m->hcap - 1)]; *pp != NULL;
		    pp = &(*pp)->snext)
			if (*pp == tp) {
				*pp = tp->snext;
				break;
			}
	}
	tp->seq = seq;
	tp->snext = NULL;
	if (seq != 0) {
		pp = &m->hseq[hash_seq(seq) & (m->hcap - 1)];
		tp->snext = *pp;
		*pp = tp;
	}
}

static struct mtopic *
topic_by_seq(struct mqtt *m, uint64_t seq)
{
	struct mtopic *tp;

	if (seq == 0)
		return NULL;
	for (tp = m->hseq[hash_seq(seq) & (m->hcap - 1)]; tp != NULL; tp = tp->snext)
		if (tp->seq == seq)
			return tp;
	return NULL;
}

/* Doubles both tables when the load passes 1. */
static int
topic_grow(struct mqtt *m)
{
	size_t ncap = m->hcap * 2;
	struct mtopic **hn, **hs, *tp;

	if ((hn = calloc(ncap, sizeof(*hn))) == NULL ||
	    (hs = calloc(ncap, sizeof(*hs))) == NULL) {
		free(hn);
		return -1;
	}
	free(m->hname);
	free(m->hseq);
	m->hname = hn;
	m->hseq = hs;
	m->hcap = ncap;
	TAILQ_FOREACH(tp, &m->topics, entry) {
		size_t b = hash_name(tp->name) & (ncap - 1);

		tp->hnext = hn[b];
		hn[b] = tp;
		if (tp->seq != 0) {
			b = hash_seq(tp->seq) & (ncap - 1);
			tp->snext = hs[b];
			hs[b] = tp;
		}
	}
	return 0;
}

static struct mtopic *
mqtt_topic_find(struct mqtt *m, const char *name)
{
	struct mtopic	*tp;

	for (tp = m->hname[hash_name(name) & (m->hcap - 1)]; tp != NULL; tp = tp->hnext)
		if (strcmp(tp->name, name) == 0)
			return tp;
	return NULL;
}

static int
mqtt_topic_add(struct mqtt *m, struct mtopic *tp)
{
	size_t b;

	if (m->ntopics + 1 > m->hcap && topic_grow(m) != 0)
		return -1;
	TAILQ_INSERT_TAIL(&m->topics, tp, entry);
	b = hash_name(tp->name) & (m->hcap - 1);
	tp->hnext = m->hname[b];
	m->hname[b] = tp;
	m->ntopics++;
	return 0;
}

static void
mqtt_topic_free(struct mqtt *m, struct mtopic *tp)
{
	struct mtopic **pp;

	topic_set_seq(m, tp, 0);
	for (pp = &m->hname[hash_name(tp->name) & (m->hcap - 1)]; *pp != NULL;
	    pp = &(*pp)->hnext)
		if (*pp == tp) {
			*pp = tp->hnext;
			break;
		}
	TAILQ_REMOVE(&m->topics, tp, entry);
	m->ntopics--;
	free(tp->name);
	free(tp);
}

static void
mqtt_pub_free(struct mpub *p)
{
	free(p->topic);
	free(p->buf);
	free(p);
}

/* Put every unacknowledged publish back in front of the queue, in order. */
static void
mqtt_requeue_inflight(struct mqtt *m)
{
	struct mpub	*p;

	while ((p = TAILQ_LAST(&m->inflight, mpub_list)) != NULL) {
		TAILQ_REMOVE(&m->inflight, p, entry);
		p->seq = 0;
		TAILQ_INSERT_HEAD(&m->pending, p, entry);
	}
	m->ninflight = 0;
}

#define MQTT_SUB_BATCH	128

/* Sends one SUBSCRIBE (live) or UNSUBSCRIBE for up to MQTT_SUB_BATCH
 * topics: re-subscribing 10,000 inboxes after a reconnect is 80 packets,
 * not 10,000 paho commands. */
static void
mqtt_send_batch(struct mqtt *m, struct mtopic **tps, int n, int live)
{
	MQTTAsync_responseOptions	 ro = MQTTAsync_responseOptions_initializer;
	char				*names[MQTT_SUB_BATCH];
	int				 qos[MQTT_SUB_BATCH];
	struct mreq			*rq;
	int				 rc, i;

	if (n == 0)
		return;
	if ((rq = mreq_new(m, live ? MEV_SUB : MEV_UNSUB)) == NULL) {
		log_warnx("mqtt: out of memory");
		return;
	}
	ro.onSuccess5 = mqtt_cb_done;
	ro.onFailure5 = mqtt_cb_failed;
	ro.context = rq;
	rq->batch = n;
	for (i = 0; i < n; i++) {
		names[i] = tps[i]->name;
		qos[i] = 1;
		topic_set_seq(m, tps[i], rq->seq);
	}
	if (live)
		rc = MQTTAsync_subscribeMany(m->cur->cli, n, names, qos, &ro);
	else
		rc = MQTTAsync_unsubscribeMany(m->cur->cli, n, names, &ro);
	if (rc != MQTTASYNC_SUCCESS) {
		log_debug("mqtt: %s batch: %s", live ? "subscribe" : "unsubscribe",
		    MQTTAsync_strerror(rc));
		mreq_done(rq);
		for (i = 0; i < n; i++)
			topic_set_seq(m, tps[i], 0);
	}
}

static void
mqtt_send_subs(struct mqtt *m)
{
	struct mtopic	*tp, *sub[MQTT_SUB_BATCH], *unsub[MQTT_SUB_BATCH];
	int		 ns = 0, nu = 0;

	TAILQ_FOREACH(tp, &m->topics, entry) {
		if (tp->live) {
			sub[ns++] = tp;
			if (ns == MQTT_SUB_BATCH) {
				mqtt_send_batch(m, sub, ns, 1);
				ns = 0;
			}
		} else {
			unsub[nu++] = tp;
			if (nu == MQTT_SUB_BATCH) {
				mqtt_send_batch(m, unsub, nu, 0);
				nu = 0;
			}
		}
	}
	mqtt_send_batch(m, sub, ns, 1);
	mqtt_send_batch(m, unsub, nu, 0);
}

static void
mqtt_send_sub(struct mqtt *m, struct mtopic *tp)
{
	MQTTAsync_responseOptions	 ro = MQTTAsync_responseOptions_initializer;
	struct mreq			*rq;
	int				 rc;

	if ((rq = mreq_new(m, tp->live ? MEV_SUB : MEV_UNSUB)) == NULL) {
		log_warnx("mqtt: out of memory");
		return;
	}
	ro.onSuccess5 = mqtt_cb_done;
	ro.onFailure5 = mqtt_cb_failed;
	ro.context = rq;
	/* Before the call: the answer may free rq before it returns. */
	topic_set_seq(m, tp, rq->seq);
	if (tp->live)
		rc = MQTTAsync_subscribe(m->cur->cli, tp->name, 1, &ro);
	else
		rc = MQTTAsync_unsubscribe(m->cur->cli, tp->name, &ro);
	if (rc != MQTTASYNC_SUCCESS) {
		/* Connection going down: the next connect tries again. */
		log_debug("mqtt: %s %s: %s", tp->live ? "subscribe" :
		    "unsubscribe", tp->name, MQTTAsync_strerror(rc));
		mreq_done(rq);
		topic_set_seq(m, tp, 0);
	}
}

static void
mqtt_destroy_handle(struct mqtt *m, struct mhandle *h)
{
	MQTTAsync_destroy(&h->cli);
	free(m->dead);
	m->dead = h;
}

/*
 * Leave the current client.  When the client ID changes, its broker
 * session is discarded (Session Expiry 0) and with it whatever the broker
 * knew of our subscriptions.
 */
static void
mqtt_retire(struct mqtt *m)
{
	MQTTAsync_disconnectOptions	 dopts =
	    MQTTAsync_disconnectOptions_initializer5;
	MQTTProperty			 prop;
	struct mhandle			*h = m->cur;
	struct mtopic			*tp, *ttp;
	struct mreq			*rq;
	int				 expire, rc;

	if (h == NULL)
		return;
	m->cur = NULL;
	m->state = MQTT_DOWN;
	event_del(m->retry_ev);
	if (m->closing != NULL) {
		mqtt_destroy_handle(m, m->closing);
		m->closing = NULL;
	}
	expire = strcmp(h->id, m->client_id) != 0;
	log_debug("mqtt: leaving client %s%s", h->id,
	    expire ? " and its session" : "");

	/* The next handle's paho knows nothing of these: send them again. */
	mqtt_requeue_inflight(m);
	TAILQ_FOREACH_SAFE(tp, &m->topics, entry, ttp) {
		topic_set_seq(m, tp, 0);
		if (expire && !tp->live)
			mqtt_topic_free(m, tp);
	}

	if ((rq = mreq_new(m, MEV_CLOSED)) == NULL) {
		mqtt_destroy_handle(m, h);
		return;
	}
	rq->seq = h->gen;
	dopts.timeout = MQTT_DISCONNECT_WAIT;
	dopts.onSuccess5 = mqtt_cb_disconnected;
	dopts.onFailure5 = mqtt_cb_disconnect_failed;
	dopts.context = rq;
	if (expire) {
		memset(&prop, 0, sizeof(prop));
		prop.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
		prop.value.integer4 = 0;
		if (MQTTProperties_add(&dopts.properties, &prop) != 0)
			log_warnx("mqtt: cannot discard the old session");
	}
	rc = MQTTAsync_disconnect(h->cli, &dopts);
	MQTTProperties_free(&dopts.properties);
	if (rc != MQTTASYNC_SUCCESS) {
		/* Not connected: nothing to say to the broker. */
		mreq_done(rq);
		mqtt_destroy_handle(m, h);
		return;
	}
	m->closing = h;
}

/*
 * TCP_NODELAY on our broker connections.  veil's traffic is small frames
 * that are often answered (delivery ACKs, UPDATE-ACKs): with Nagle on, a
 * frame written right after another waits for the broker's delayed ACK,
 * about 40 ms each way (measured: docs/benchmarks.md).  paho gives no
 * access to its socket, so every TCP socket of the process gets the
 * option; the daemon has no other TCP sockets (the control socket is a
 * Unix socket).
 */
static void
mqtt_nodelay(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 on = 1, fd, type, domain;
	socklen_t	 len;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
		    type != SOCK_STREAM)
			continue;
		len = sizeof(domain);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == -1 ||
		    (domain != AF_INET && domain != AF_INET6))
			continue;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	}
	closedir(d);
}

static void
mqtt_on_up(struct mqtt *m, struct mev *ev)
{
	struct mtopic	*tp, *ttp;

	if (m->cur == NULL || ev->seq != m->attempt ||
	    m->state != MQTT_CONNECTING)
		return;
	event_del(m->retry_ev);
	m->state = MQTT_UP;
	m->backoff_ms = TRANSPORT_BACKOFF_MIN;
	m->ever_up = 1;
	mqtt_nodelay();
	log_info("mqtt: connected%s", ev->session_present ?
	    "" : ", new session");
	if (!ev->session_present) {
		/* paho has dropped its in-flight state to match the broker. */
		mqtt_requeue_inflight(m);
	}
	TAILQ_FOREACH_SAFE(tp, &m->topics, entry, ttp) {
		topic_set_seq(m, tp, 0);
		if (!tp->live && !ev->session_present)
			mqtt_topic_free(m, tp);
	}
	mqtt_send_subs(m);
	mqtt_pump(m);
	m->cbs.on_state(1, "connected", m->arg);
}

static void
mqtt_on_down(struct mqtt *m, struct mev *ev)
{
	struct mtopic	*tp;
	int		 was_up;

	/* A late answer to an earlier attempt or handle says nothing now. */
	if (m->cur == NULL || m->state == MQTT_DOWN)
		return;
	if (ev->type == MEV_DOWN && (ev->seq != m->attempt ||
	    m->state != MQTT_CONNECTING))
		return;
	if (ev->type == MEV_LOST && (ev->seq != m->cur->gen ||
	    m->state != MQTT_UP))
		return;
	was_up = m->state == MQTT_UP;
	m->state = MQTT_DOWN;
	TAILQ_FOREACH(tp, &m->topics, entry)
		topic_set_seq(m, tp, 0);
	/* In-flight publishes stay with paho: it sends them again if the
	 * broker still has our session, else mqtt_on_up() requeues them. */
	transport_log_down(&m->t, was_up, m->ever_up,
	    ev->text != NULL ? ev->text : "down");
	transport_backoff(m->retry_ev, &m->backoff_ms);
	if (was_up)
		m->cbs.on_state(0, ev->text != NULL ? ev->text : "down",
		    m->arg);
}

static void
mqtt_on_pub(struct mqtt *m, struct mev *ev)
{
	struct mpub	*p;

	TAILQ_FOREACH(p, &m->inflight, entry)
		if (p->seq == ev->seq)
			break;
	if (p == NULL)
		return;
	TAILQ_REMOVE(&m->inflight, p, entry);
	m->ninflight--;
	if (ev->ok || ev->permanent) {
		if (!ev->ok)
			log_warnx("mqtt: broker refused a publish");
		m->cbs.on_published(p->cookie, ev->ok, m->arg);
		mqtt_pub_free(p);
	} else {
		p->seq = 0;
		TAILQ_INSERT_HEAD(&m->pending, p, entry);
	}
	mqtt_pump(m);
}

static void
mqtt_on_sub(struct mqtt *m, struct mev *ev)
{
	struct mtopic	*tp;

	/* One request may cover a batch of topics (mqtt_send_subs). */
	while ((tp = topic_by_seq(m, ev->seq)) != NULL) {
		topic_set_seq(m, tp, 0);
		if (ev->type == MEV_UNSUB) {
			if (ev->ok && !tp->live)
				mqtt_topic_free(m, tp);
			continue;
		}
		if (!ev->ok)
			log_warnx("mqtt: subscription refused");
		if (tp->live && !tp->reported) {
			tp->reported = 1;
			m->cbs.on_subscribed(tp->name, ev->ok, m->arg);
		}
	}
}

static void
mqtt_on_message(struct mqtt *m, struct mev *ev)
{
	struct mtopic	*tp;

	/* After unsubscribe() nothing more is delivered, even what the broker
	 * had already sent. */
	if ((tp = mqtt_topic_find(m, ev->text)) == NULL || !tp->live) {
		log_debug("mqtt: dropped a frame for %s", ev->text);
		return;
	}
	m->cbs.on_message(ev->text, ev->data != NULL ? ev->data : "", ev->len,
	    m->arg);
}

static void
mqtt_wake(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt	*m = arg;
	struct mev	*ev;
	int		 n;

	(void)fd;
	(void)what;
	for (n = 0; n < MQTT_DRAIN_BATCH; n++) {
		pthread_mutex_lock(&m->lock);
		if ((ev = TAILQ_FIRST(&m->events)) != NULL)
			TAILQ_REMOVE(&m->events, ev, entry);
		pthread_mutex_unlock(&m->lock);
		if (ev == NULL)
			return;
		switch (ev->type) {
		case MEV_UP:
			mqtt_on_up(m, ev);
			break;
		case MEV_DOWN:
		case MEV_LOST:
			mqtt_on_down(m, ev);
			break;
		case MEV_CLOSED:
			if (m->closing != NULL && m->closing->gen == ev->seq) {
				mqtt_destroy_handle(m, m->closing);
				m->closing = NULL;
			}
			break;
		case MEV_MSG:
			mqtt_on_message(m, ev);
			break;
		case MEV_PUB:
			mqtt_on_pub(m, ev);
			break;
		case MEV_SUB:
		case MEV_UNSUB:
			mqtt_on_sub(m, ev);
			break;
		}
		mreq_done(ev->rq);
		mev_free(ev);
	}
	/* More left: let the rest of the loop run first (a zero timer, not
	 * event_active(), which libevent would run again in this very pass). */
	evtimer_add(m->more_ev, &mqtt_zero_tv);
}

static void
mqtt_retry(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt	*m = arg;

	(void)fd;
	(void)what;
	if (m->cur != NULL && m->state == MQTT_DOWN)
		mqtt_start_connect(m);
}

/* Hand paho the next publishes, up to the in-flight window. */
static void
mqtt_pump(struct mqtt *m)
{
	MQTTAsync_responseOptions	 ro;
	MQTTAsync_message		 msg;
	struct mpub			*p;
	struct mreq			*rq;
	uint64_t			 seq;
	int				 rc;

	while (m->state == MQTT_UP && m->ninflight < m->inflight_max &&
	    (p = TAILQ_FIRST(&m->pending)) != NULL) {
		if ((rq = mreq_new(m, MEV_PUB)) == NULL)
			return;
		ro = (MQTTAsync_responseOptions)MQTTAsync_responseOptions_initializer;
		msg = (MQTTAsync_message)MQTTAsync_message_initializer;
		ro.onSuccess5 = mqtt_cb_done;
		ro.onFailure5 = mqtt_cb_failed;
		ro.context = rq;
		msg.payload = p->buf;
		msg.payloadlen = (int)p->len;
		msg.qos = 1;
		/* Before the call: the answer may free rq before it returns. */
		seq = rq->seq;
		rc = MQTTAsync_sendMessage(m->cur->cli, p->topic, &msg, &ro);
		if (rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT ||
		    rc == MQTTASYNC_DISCONNECTED ||
		    rc == MQTTASYNC_NO_MORE_MSGIDS) {
			/* An answer or a reconnect will pump again. */
			mreq_done(rq);
			return;
		}
		TAILQ_REMOVE(&m->pending, p, entry);
		TAILQ_INSERT_TAIL(&m->inflight, p, entry);
		m->ninflight++;
		p->seq = seq;
		if (rc != MQTTASYNC_SUCCESS) {
			/* paho will never answer: answer ourselves, from the
			 * loop, so the caller's callback is not re-entered. */
			log_warnx("mqtt: publish: %s", MQTTAsync_strerror(rc));
			mqtt_post(m, NULL, MEV_PUB, seq, 0, 1, NULL);
			mreq_done(rq);
		}
	}
}

static void
mqtt_start_connect(struct mqtt *m)
{
	MQTTAsync_connectOptions	 co = MQTTAsync_connectOptions_initializer5;
	MQTTProperties			 props = MQTTProperties_initializer;
	MQTTProperty			 prop;
	struct mreq			*rq;
	int				 rc;

	if ((rq = mreq_new(m, MEV_UP)) == NULL) {
		transport_backoff(m->retry_ev, &m->backoff_ms);
		return;
	}
	m->attempt = rq->seq;
	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
	prop.value.integer4 = (unsigned int)m->expiry_s;
	MQTTProperties_add(&props, &prop);

	co.keepAliveInterval = m->keepalive_s;
	co.cleansession = 0;
	co.cleanstart = 0;
	co.maxInflight = m->inflight_max;
	co.username = m->username;
	co.password = m->password;
	co.connectTimeout = MQTT_CONNECT_TIMEOUT;
	co.retryInterval = 0;
	co.serverURIs = m->uris;
	co.serverURIcount = m->nuris;
	co.MQTTVersion = MQTTVERSION_5;
	co.automaticReconnect = 0;
	co.connectProperties = &props;
	co.onSuccess5 = mqtt_cb_connected;
	co.onFailure5 = mqtt_cb_connect_failed;
	co.context = rq;
	co.httpProxy = m->proxy;
	co.httpsProxy = m->proxy;

	m->state = MQTT_CONNECTING;
	rc = MQTTAsync_connect(m->cur->cli, &co);
	MQTTProperties_free(&props);
	if (rc != MQTTASYNC_SUCCESS) {
		mreq_done(rq);
		m->state = MQTT_DOWN;
		log_warnx("mqtt: connect: %s", MQTTAsync_strerror(rc));
		transport_backoff(m->retry_ev, &m->backoff_ms);
	}
}

/* --- operations ------------------------------------------------------------- */

static int
mqtt_connect(struct transport *t)
{
	MQTTAsync_createOptions	 cro = MQTTAsync_createOptions_initializer5;
	struct mqtt		*m = (struct mqtt *)t;
	struct mhandle		*h;
	int			 rc;

	if (m->cur != NULL)
		return 0;
	if (m->client_id[0] == '\0') {
		log_warnx("mqtt: connect without a client ID");
		return -1;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		log_warn("mqtt");
		return -1;
	}
	h->m = m;
	h->gen = ++m->seq;
	memcpy(h->id, m->client_id, sizeof(h->id));
	cro.sendWhileDisconnected = 0;	/* we queue ourselves */
	rc = MQTTAsync_createWithOptions(&h->cli, m->uris[0], h->id,
	    MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: create: %s", MQTTAsync_strerror(rc));
		free(h);
		return -1;
	}
	rc = MQTTAsync_setCallbacks(h->cli, h, mqtt_cb_lost, mqtt_cb_message,
	    NULL);
	if (rc == MQTTASYNC_SUCCESS)
		rc = MQTTAsync_setDisconnected(h->cli, h, mqtt_cb_server_disconnect);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: callbacks: %s", MQTTAsync_strerror(rc));
		MQTTAsync_destroy(&h->cli);
		free(h);
		return -1;
	}
	log_debug("mqtt: connecting as %s", h->id);
	m->cur = h;
	m->backoff_ms = TRANSPORT_BACKOFF_MIN;
	mqtt_start_connect(m);
	return 0;
}

static void
mqtt_disconnect(struct transport *t)
{
	mqtt_retire((struct mqtt *)t);
}

static int
mqtt_subscribe(struct transport *t, const char *topic)
{
	struct mqtt	*m = (struct mqtt *)t;
	struct mtopic	*tp;

	if ((tp = mqtt_topic_find(m, topic)) == NULL) {
		if ((tp = calloc(1, sizeof(*tp))) == NULL ||
		    (tp->name = strdup(topic)) == NULL) {
			free(tp);
			log_warn("mqtt");
			return -1;
		}
		if (mqtt_topic_add(m, tp) != 0) {
			free(tp->name);
			free(tp);
			log_warn("mqtt");
			return -1;
		}
	}
	tp->live = 1;
	tp->reported = 0;
	if (m->state == MQTT_UP)
		mqtt_send_sub(m, tp);
	return 0;
}

static int
mqtt_unsubscribe(struct transport *t, const char *topic)
{
	struct mqtt	*m = (struct mqtt *)t;
	struct mtopic	*tp;

	if ((tp = mqtt_topic_find(m, topic)) == NULL || !tp->live)
		return 0;
	tp->live = 0;
	tp->reported = 0;
	if (m->state == MQTT_UP)
		mqtt_send_sub(m, tp);
	/* else: sent at the next connect if the session survived */
	return 0;
}

static int
mqtt_publish(struct transport *t, const char *topic, const void *buf,
    size_t len, uint64_t cookie)
{
	struct mqtt	*m = (struct mqtt *)t;
	struct mpub	*p;

	if (len > INT_MAX || (len > 0 && buf == NULL)) {
		log_warnx("mqtt: publish: bad payload");
		return -1;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->topic = strdup(topic)) == NULL ||
	    (len > 0 && (p->buf = malloc(len)) == NULL)) {
		if (p != NULL)
			free(p->topic);
		free(p);
		log_warn("mqtt");
		return -1;
	}
	if (len > 0)
		memcpy(p->buf, buf, len);
	p->len = len;
	p->cookie = cookie;
	TAILQ_INSERT_TAIL(&m->pending, p, entry);
	mqtt_pump(m);
	return 0;
}

static int
mqtt_set_client_id(struct transport *t, const char *id)
{
	struct mqtt	*m = (struct mqtt *)t;

	/* transport_set_client_id() has checked that it fits. */
	memcpy(m->client_id, id, strlen(id) + 1);
	return 0;
}

static void
mqtt_free_common(struct transport *t, int deliver)
{
	struct mqtt	*m = (struct mqtt *)t;
	struct mtopic	*tp;
	struct mpub	*p;
	struct mev	*ev;
	struct mreq	*rq;
	int		 i;

	/* Keep the session: the broker holds our messages until we return. */
	if (m->cur != NULL)
		MQTTAsync_destroy(&m->cur->cli);
	if (m->closing != NULL)
		MQTTAsync_destroy(&m->closing->cli);
	/*
	 * No paho thread is left.  Frames it took are acknowledged to the
	 * broker already (QoS 1): retiring, hand them over, or they are gone.
	 * The topics and callbacks are still intact here.
	 */
	if (deliver) {
		TAILQ_FOREACH(ev, &m->events, entry)
			if (ev->type == MEV_MSG)
				mqtt_on_message(m, ev);
	}
	free(m->cur);
	free(m->closing);
	free(m->dead);
	if (m->retry_ev != NULL)
		event_free(m->retry_ev);
	if (m->wake_ev != NULL)
		event_free(m->wake_ev);
	if (m->more_ev != NULL)
		event_free(m->more_ev);
	/* No paho thread is left to answer: every request goes now. */
	while ((ev = TAILQ_FIRST(&m->events)) != NULL) {
		TAILQ_REMOVE(&m->events, ev, entry);
		mev_free(ev);
	}
	while ((rq = LIST_FIRST(&m->reqs)) != NULL)
		mreq_done(rq);
	pthread_mutex_destroy(&m->lock);
	while ((tp = TAILQ_FIRST(&m->topics)) != NULL)
		mqtt_topic_free(m, tp);
	free(m->hname);
	free(m->hseq);
	while ((p = TAILQ_FIRST(&m->pending)) != NULL) {
		TAILQ_REMOVE(&m->pending, p, entry);
		mqtt_pub_free(p);
	}
	while ((p = TAILQ_FIRST(&m->inflight)) != NULL) {
		TAILQ_REMOVE(&m->inflight, p, entry);
		mqtt_pub_free(p);
	}
	for (i = 0; i < m->nuris; i++)
		free(m->uris[i]);
	free(m->uris);
	free(m->username);
	if (m->password != NULL) {
		explicit_bzero(m->password, strlen(m->password));
		free(m->password);
	}
	free(m->proxy);
	free(m);
}

static void
mqtt_free(struct transport *t)
{
	mqtt_free_common(t, 0);
}

static void
mqtt_retire_free(struct transport *t)
{
	mqtt_free_common(t, 1);
}

static const struct transport_ops mqtt_transport_ops = {
	.connect = mqtt_connect,
	.disconnect = mqtt_disconnect,
	.subscribe = mqtt_subscribe,
	.unsubscribe = mqtt_unsubscribe,
	.publish = mqtt_publish,
	.set_client_id = mqtt_set_client_id,
	.free = mqtt_free,
	.retire = mqtt_retire_free,
};

static char *
mqtt_strdup_opt(const char *s, int *bad)
{
	char	*d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*bad = 1;
	return d;
}

struct transport *
mqtt_transport_new(struct event_base *base, const struct transport_config *cfg,
    const struct transport_cbs *cbs, void *arg, char *err, size_t errlen)
{
	struct mqtt	*m;
	size_t		 i;
	int		 bad = 0;

	if (cfg->nuris == 0 || cfg->uris == NULL || cfg->nuris > 64) {
		snprintf(err, errlen, "mqtt: need 1 to 64 server URIs");
		return NULL;
	}
	for (i = 0; i < cfg->nuris; i++)
		if (cfg->uris[i] == NULL || (strncmp(cfg->uris[i], "tcp://", 6) &&
		    strncmp(cfg->uris[i], "mqtt://", 7) &&
		    strncmp(cfg->uris[i], "ssl://", 6) &&
		    strncmp(cfg->uris[i], "mqtts://", 8) &&
		    strncmp(cfg->uris[i], "ws://", 5) &&
		    strncmp(cfg->uris[i], "wss://", 6))) {
			snprintf(err, errlen, "mqtt: bad server URI \"%s\"",
			    cfg->uris[i] != NULL ? cfg->uris[i] : "");
			return NULL;
		}
	if (cfg->proxy != NULL && strncmp(cfg->proxy, "http://", 7) != 0) {
		snprintf(err, errlen, "mqtt: proxy must be http://host:port");
		return NULL;
	}
	if (cfg->keepalive_ms > 65535U * 1000) {
		snprintf(err, errlen, "mqtt: keepalive over 65535 s");
		return NULL;
	}
	if (cfg->inflight > 65535) {
		snprintf(err, errlen, "mqtt: in-flight window over 65535");
		return NULL;
	}

	/*
	 * paho takes http_proxy/https_proxy from the environment even for
	 * tcp:// and ignores no_proxy: a proxy nobody configured for veil would
	 * see every connection.  Only an explicit one is used.
	 */
	if (cfg->proxy == NULL) {
		unsetenv("http_proxy");
		unsetenv("https_proxy");
		unsetenv("HTTP_PROXY");
		unsetenv("HTTPS_PROXY");
	}

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		snprintf(err, errlen, "mqtt: %s", strerror(errno));
		return NULL;
	}
	m->t.ops = &mqtt_transport_ops;
	m->t.name = "mqtt";
	m->base = base;
	m->cbs = *cbs;
	m->arg = arg;
	m->keepalive_s = cfg->keepalive_ms == 0 ? MQTT_KEEPALIVE_DEFAULT :
	    (int)((cfg->keepalive_ms + 999) / 1000);
	m->inflight_max = cfg->inflight == 0 ? MQTT_INFLIGHT_DEFAULT :
	    (int)cfg->inflight;
	m->expiry_s = cfg->session_expiry_s == 0 ? MQTT_EXPIRY_DEFAULT :
	    (cfg->session_expiry_s > INT_MAX ? INT_MAX :
	    (int)cfg->session_expiry_s);
	m->backoff_ms = TRANSPORT_BACKOFF_MIN;
	m->state = MQTT_DOWN;
	TAILQ_INIT(&m->events);
	TAILQ_INIT(&m->topics);
	TAILQ_INIT(&m->pending);
	TAILQ_INIT(&m->inflight);
	LIST_INIT(&m->reqs);
	pthread_mutex_init(&m->lock, NULL);

	if ((m->uris = calloc(cfg->nuris, sizeof(*m->uris))) == NULL)
		bad = 1;
	else {
		m->nuris = (int)cfg->nuris;
		for (i = 0; i < cfg->nuris; i++)
			m->uris[i] = mqtt_strdup_opt(cfg->uris[i], &bad);
	}
	m->username = mqtt_strdup_opt(cfg->username, &bad);
	m->password = mqtt_strdup_opt(cfg->password, &bad);
	m->proxy = mqtt_strdup_opt(cfg->proxy, &bad);
	m->wake_ev = event_new(base, -1, 0, mqtt_wake, m);
	m->more_ev = evtimer_new(base, mqtt_wake, m);
	m->hcap = 64;
	m->hname = calloc(m->hcap, sizeof(*m->hname));
	m->hseq = calloc(m->hcap, sizeof(*m->hseq));
	m->retry_ev = evtimer_new(base, mqtt_retry, m);
	if (bad || m->wake_ev == NULL || m->retry_ev == NULL || m->more_ev == NULL ||
	    m->hname == NULL || m->hseq == NULL) {
		snprintf(err, errlen, "mqtt: out of memory");
		mqtt_free(&m->t);
		return NULL;
	}
	return &m->t;
}
