/* mqtt.c: the MQTT transport driver on paho.mqtt.c MQTTAsync (MQTT 5, QoS 1). */

/*
 * Sessions.  A peer that is offline must not lose frames, so the broker has
 * to hold QoS 1 messages for us while we are away: we connect with Clean
 * Start = 0 and a Session Expiry Interval (mqtt.session_expiry, or
 * transport_set_session_expiry()) under a client ID that stays the same
 * for a whole epoch.  A client ID is left by disconnecting with Session
 * Expiry 0, which makes the broker drop that session and its queue at once
 * instead of keeping an orphan that still names our topics; so is every
 * connection at transport_free(): the session never outlives the
 * transport.  Only a connection that is lost (a crash, the network) leaves
 * a session behind, for the expiry interval.  The old client of a rotation
 * lingers up to MQTT_DISCONNECT_WAIT to finish its in-flight work and
 * keeps delivering meanwhile, so a rotation under traffic yields
 * duplicates (the engine dedupes); frames published to our topics after
 * the old ID's DISCONNECT and before the new ID's SUBACK reach nobody, and
 * the engine's end-to-end ACK and retransmission cover that gap.  Every
 * live topic is subscribed again on every connect anyway: the broker may
 * have lost the session (restart without persistence, expiry), and a
 * SUBSCRIBE for a topic already held is harmless.
 *
 * MQTT 5 rather than 3.1.1: session expiry is what lets us discard an old
 * session without reconnecting under the old ID, and Maximum Packet Size
 * is what keeps oversized publishes away.  A 3.1.1-only broker is not
 * supported.
 *
 * Topics.  mqtt.topic_prefix is an MQTT matter (broker ACLs): this driver
 * puts it in front of every topic it subscribes and publishes, and takes
 * it off what it delivers.  The engine only ever sees its inbox names.
 *
 * Threads.  paho runs its callbacks on its own threads.  They only copy what
 * they got into a queue under a mutex and activate a libevent event; all
 * state lives on the loop thread, which drains the queue.  No paho call is
 * ever made with the queue mutex held, and none from a paho callback.  This
 * needs evthread_use_pthreads() before the event base is created (the
 * caller's job).  Each request carries a sequence number; a late answer for
 * a request that was re-issued or abandoned matches nothing and is dropped.
 *
 * Broker input is bounded.  CONNECT carries a Maximum Packet Size of one
 * frame's PUBLISH on our longest possible topic (mqtt_max_packet()), so a
 * broker that follows MQTT 5 drops anything larger instead of sending it
 * (mosquitto logs "Dropping too large outgoing PUBLISH").  One that does
 * not can still make paho read one such packet: paho has no limit of its
 * own.  On paho's thread, a payload that is not exactly frames.size bytes
 * is dropped before anything is copied.  The hand-off queue to the loop
 * holds at most MQTT_QUEUE_MSGS frames and MQTT_QUEUE_BYTES bytes; beyond
 * that, arriving frames are dropped and counted (on_dropped).  Why drop
 * rather than stop acknowledging: paho sends the PUBACK before it calls us
 * (MQTTProtocol_handlePublishes), so refusing a message only moves it into
 * paho's own unbounded queue, and MQTT 5's Receive Maximum counts unacked
 * messages, which paho never has.  A dropped frame is not lost for good:
 * the peer's outbox retransmits until our end-to-end ACK, and a first-
 * contact REQUEST is resent too.  The loop drains the queue in batches of
 * MQTT_DRAIN_BATCH, so a flood cannot starve the rest of the daemon either.
 *
 * Reconnects use transport.c's timer on the loop (exponential, with
 * jitter) instead of paho's automaticReconnect, which does not retry a
 * failed first connect.  Publishes beyond the in-flight window wait on the
 * loop side: handing paho everything at once is an order of magnitude
 * slower.
 */

#include <sys/queue.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include <MQTTAsync.h>

#include "compat.h"
#include "config.h"
#include "log.h"
#include "transport_driver.h"

#define MQTT_CONNECT_TIMEOUT	10	/* s, per server URI */
#define MQTT_DISCONNECT_WAIT	1000	/* ms for in-flight work at a rotation */
#define MQTT_CLOSE_WAIT		1000	/* ms for paho to say DISCONNECT at free */
#define MQTT_DRAIN_BATCH	256	/* events per wake before yielding */
#define MQTT_QUEUE_MSGS		1024	/* frames waiting for the loop */
#define MQTT_QUEUE_BYTES	(4 << 20)
#define MQTT_CONTROL_MIN	512	/* bytes: CONNACK, SUBACK of a batch */
#define MQTT_SUB_BATCH		128
#define MQTT_RANDOM_USER	16	/* characters */
#define MQTT_RANDOM_PASS	24

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

struct mreq;

/* One allocation: text and data point into buf. */
struct mev {
	TAILQ_ENTRY(mev)	 entry;
	enum mev_type		 type;
	uint64_t		 seq;
	int			 ok;
	int			 permanent;	/* MEV_PUB failure: do not retry */
	int			 session_present;
	struct mreq		*rq;		/* to free on the loop */
	char			*text;
	void			*data;
	size_t			 len;
	size_t			 cost;		/* MEV_MSG: against the bound */
	char			 buf[];
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
	char		*user;		/* presented at every (re)connect */
	char		*pass;
};

struct mqtt {
	struct transport	 t;

	/* From the configuration; read-only once created (paho's threads
	 * read frame_size and wire_max too). */
	char			**uris;
	int			 nuris;
	char			*username;
	char			*password;
	int			 random_username;
	char			*proxy;
	int			 keepalive_s;
	uint32_t		 expiry_s;
	uint32_t		 max_packet;
	size_t			 wire_max;	/* longest topic, prefix included */

	/* transport_set_credentials(): they win over the configuration. */
	int			 own_creds;
	char			*own_user;
	char			*own_pass;

	struct mhandle		*cur;		/* NULL: disconnect()ed */
	struct mhandle		*closing;	/* sending its DISCONNECT */
	/*
	 * A destroyed handle is freed only at the next destroy: a paho thread
	 * may still be inside one of its callbacks, reading h->m and h->gen.
	 */
	struct mhandle		*dead;
	uint64_t		 seq;
	uint64_t		 attempt;	/* current connect request */
	int			 session_present; /* of the last CONNACK */
	struct mreq_list	 reqs;		/* outstanding */

	struct event		*wake_ev;
	struct event		*more_ev;	/* drain continues here */
	int			 lock_ok;
	pthread_mutex_t		 lock;		/* guards what follows */
	pthread_cond_t		 cond;		/* an event was queued */
	struct mev_list		 events;
	size_t			 qmsgs, qbytes;	/* MEV_MSG in events */
	unsigned int		 qdropped;	/* not yet reported */
};

static const struct timeval mqtt_zero_tv = { 0, 0 };

static void	mqtt_start_connect(struct mqtt *);

/* --- paho's threads: check, copy, enqueue, wake ------------------------------ */

static void
mqtt_enqueue(struct mqtt *m, struct mev *ev)
{
	pthread_mutex_lock(&m->lock);
	TAILQ_INSERT_TAIL(&m->events, ev, entry);
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
	event_active(m->wake_ev, EV_READ, 0);
}

static struct mev *
mev_new(enum mev_type type, uint64_t seq, size_t extra)
{
	struct mev	*ev;

	if ((ev = calloc(1, sizeof(*ev) + extra)) == NULL)
		return NULL;
	ev->type = type;
	ev->seq = seq;
	return ev;
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
	size_t		 n = text != NULL ? strlen(text) + 1 : 0;

	if ((ev = mev_new(type, seq, n)) == NULL)
		return;
	ev->rq = rq;
	ev->ok = ok;
	ev->permanent = permanent;
	if (text != NULL) {
		ev->text = ev->buf;
		memcpy(ev->text, text, n);
	}
	mqtt_enqueue(m, ev);
}

static void
mqtt_cb_connected(void *ctx, MQTTAsync_successData5 *r)
{
	struct mreq	*rq = ctx;
	struct mev	*ev;

	if ((ev = mev_new(MEV_UP, rq->seq, 0)) != NULL) {
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

/* Junk, or no room: paho's copy goes, and the loop hears how many. */
static int
mqtt_drop(struct mqtt *m, char *topic, MQTTAsync_message *msg)
{
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	pthread_mutex_lock(&m->lock);
	m->qdropped++;
	pthread_mutex_unlock(&m->lock);
	event_active(m->wake_ev, EV_READ, 0);
	return 1;	/* consumed: paho would only offer it again */
}

static int
mqtt_cb_message(void *ctx, char *topic, int topiclen, MQTTAsync_message *msg)
{
	struct mhandle	*h = ctx;
	struct mqtt	*m = h->m;
	struct mev	*ev;
	size_t		 tlen, cost;
	int		 full;

	tlen = topiclen > 0 ? (size_t)topiclen : strlen(topic);
	/* Before any copy: every frame is frames.size bytes, on a topic no
	 * longer than ours can be. */
	if (msg->payloadlen < 0 || (size_t)msg->payloadlen != m->t.frame_size ||
	    tlen > m->wire_max)
		return mqtt_drop(m, topic, msg);
	cost = sizeof(*ev) + tlen + 1 + m->t.frame_size;
	pthread_mutex_lock(&m->lock);
	full = m->qmsgs >= MQTT_QUEUE_MSGS ||
	    m->qbytes + cost > MQTT_QUEUE_BYTES;
	if (!full) {
		/* Reserved now, so that two paho threads cannot both take
		 * the last place. */
		m->qmsgs++;
		m->qbytes += cost;
	}
	pthread_mutex_unlock(&m->lock);
	if (full)
		return mqtt_drop(m, topic, msg);
	if ((ev = mev_new(MEV_MSG, 0, tlen + 1 + m->t.frame_size)) == NULL) {
		pthread_mutex_lock(&m->lock);
		m->qmsgs--;
		m->qbytes -= cost;
		pthread_mutex_unlock(&m->lock);
		return 0;	/* paho offers it again later */
	}
	ev->cost = cost;
	ev->text = ev->buf;
	memcpy(ev->text, topic, tlen);
	ev->text[tlen] = '\0';
	ev->data = ev->buf + tlen + 1;
	ev->len = m->t.frame_size;
	memcpy(ev->data, msg->payload, ev->len);
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	mqtt_enqueue(m, ev);
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

static void
mqtt_handle_free(struct mhandle *h)
{
	if (h == NULL)
		return;
	free(h->user);
	if (h->pass != NULL) {
		explicit_bzero(h->pass, strlen(h->pass));
		free(h->pass);
	}
	free(h);
}

static void
mqtt_destroy_handle(struct mqtt *m, struct mhandle *h)
{
	MQTTAsync_destroy(&h->cli);
	mqtt_handle_free(m->dead);
	m->dead = h;
}

/* Sends one SUBSCRIBE (live) or UNSUBSCRIBE for up to MQTT_SUB_BATCH
 * topics: re-subscribing 10,000 inboxes after a reconnect is 80 packets,
 * not 10,000 paho commands. */
static void
mqtt_send_batch(struct mqtt *m, struct transport_topic **tps, int n, int live)
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
		names[i] = tps[i]->wire;
		qos[i] = 1;
		transport_topic_set_req(&m->t, tps[i], rq->seq);
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
			transport_topic_set_req(&m->t, tps[i], 0);
	}
}

static void
mqtt_send_subs(struct mqtt *m)
{
	struct transport_topic	*tp, *sub[MQTT_SUB_BATCH], *unsub[MQTT_SUB_BATCH];
	int			 ns = 0, nu = 0;

	TAILQ_FOREACH(tp, &m->t.topics, entry) {
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

/* SUBSCRIBE if tp is live, else UNSUBSCRIBE. */
static void
mqtt_send_sub(struct mqtt *m, struct transport_topic *tp)
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
	transport_topic_set_req(&m->t, tp, rq->seq);
	if (tp->live)
		rc = MQTTAsync_subscribe(m->cur->cli, tp->wire, 1, &ro);
	else
		rc = MQTTAsync_unsubscribe(m->cur->cli, tp->wire, &ro);
	if (rc != MQTTASYNC_SUCCESS) {
		/* Connection going down: the next connect tries again. */
		log_debug("mqtt: %s %s: %s", tp->live ? "subscribe" :
		    "unsubscribe", tp->wire, MQTTAsync_strerror(rc));
		mreq_done(rq);
		transport_topic_set_req(&m->t, tp, 0);
	}
}

/*
 * Leave the current client.  When the client ID changed, or the session
 * must end with the connection (end_session), the broker session is
 * discarded (Session Expiry 0) and with it whatever the broker knew of our
 * subscriptions.
 */
static void
mqtt_leave(struct mqtt *m, int end_session)
{
	MQTTAsync_disconnectOptions	 dopts =
	    MQTTAsync_disconnectOptions_initializer5;
	MQTTProperty			 prop;
	struct mhandle			*h = m->cur;
	struct transport_topic		*tp, *ttp;
	struct mreq			*rq;
	int				 expire, rc;

	if (h == NULL)
		return;
	m->cur = NULL;
	m->t.state = TRANSPORT_DOWN;
	transport_retry_cancel(&m->t);
	if (m->closing != NULL) {
		mqtt_destroy_handle(m, m->closing);
		m->closing = NULL;
	}
	expire = end_session || strcmp(h->id, m->t.client_id) != 0;
	log_debug("mqtt: leaving client %s%s", h->id,
	    expire ? " and its session" : "");

	/* The next handle's paho knows nothing of these: send them again. */
	transport_requeue(&m->t);
	TAILQ_FOREACH_SAFE(tp, &m->t.topics, entry, ttp) {
		transport_topic_set_req(&m->t, tp, 0);
		if (expire && !tp->live)
			transport_topic_free(&m->t, tp);
	}

	if ((rq = mreq_new(m, MEV_CLOSED)) == NULL) {
		mqtt_destroy_handle(m, h);
		return;
	}
	rq->seq = h->gen;
	/* At a rotation the old client may finish what is in flight; at
	 * the end nothing is waited for (the engine's outbox resends). */
	dopts.timeout = end_session ? 0 : MQTT_DISCONNECT_WAIT;
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

/* From transport_went_up(): the session decides what paho still has. */
static void
mqtt_restore(struct transport *t)
{
	struct mqtt		*m = (struct mqtt *)t;
	struct transport_topic	*tp, *ttp;

	if (!m->session_present) {
		/* paho has dropped its in-flight state to match the broker. */
		transport_requeue(t);
	}
	TAILQ_FOREACH_SAFE(tp, &t->topics, entry, ttp) {
		transport_topic_set_req(t, tp, 0);
		if (!tp->live && !m->session_present)
			transport_topic_free(t, tp);
	}
	mqtt_send_subs(m);
}

static void
mqtt_on_up(struct mqtt *m, struct mev *ev)
{
	if (m->cur == NULL || ev->seq != m->attempt ||
	    m->t.state != TRANSPORT_CONNECTING)
		return;
	mqtt_nodelay();
	m->session_present = ev->session_present;
	transport_went_up(&m->t, ev->session_present ? "" : ", new session");
}

static void
mqtt_on_down(struct mqtt *m, struct mev *ev)
{
	struct transport_topic	*tp;
	int			 was_up;

	/* A late answer to an earlier attempt or handle says nothing now. */
	if (m->cur == NULL || m->t.state == TRANSPORT_DOWN)
		return;
	if (ev->type == MEV_DOWN && (ev->seq != m->attempt ||
	    m->t.state != TRANSPORT_CONNECTING))
		return;
	if (ev->type == MEV_LOST && (ev->seq != m->cur->gen ||
	    m->t.state != TRANSPORT_UP))
		return;
	was_up = m->t.state == TRANSPORT_UP;
	m->t.state = TRANSPORT_DOWN;
	TAILQ_FOREACH(tp, &m->t.topics, entry)
		transport_topic_set_req(&m->t, tp, 0);
	/* In-flight publishes stay with paho: it sends them again if the
	 * broker still has our session, else mqtt_restore() requeues them. */
	transport_went_down(&m->t, was_up, ev->text != NULL ? ev->text :
	    "down", 0);
}

static void
mqtt_on_pub(struct mqtt *m, struct mev *ev)
{
	struct transport_pub	*p;

	if ((p = transport_pub_find(&m->t, ev->seq)) == NULL)
		return;
	if (ev->ok || ev->permanent) {
		if (!ev->ok)
			log_warnx("mqtt: broker refused a publish");
		transport_pub_answer(&m->t, p, ev->ok);
	} else
		transport_pub_again(&m->t, p);
}

static void
mqtt_on_sub(struct mqtt *m, struct mev *ev)
{
	struct transport_topic	*tp;

	/* One request may cover a batch of topics (mqtt_send_subs). */
	while ((tp = transport_topic_by_req(&m->t, ev->seq)) != NULL) {
		transport_topic_set_req(&m->t, tp, 0);
		if (ev->type == MEV_UNSUB) {
			if (ev->ok && !tp->live)
				transport_topic_free(&m->t, tp);
			continue;
		}
		if (!ev->ok)
			log_warnx("mqtt: subscription refused");
		if (tp->live && !tp->reported) {
			tp->reported = 1;
			m->t.cbs.on_subscribed(tp->name, ev->ok, m->t.arg);
		}
	}
}

static void
mqtt_on_message(struct mqtt *m, struct mev *ev)
{
	struct transport_topic	*tp;

	/* After unsubscribe() nothing more is delivered, even what the broker
	 * had already sent. */
	if ((tp = transport_topic_find_wire(&m->t, ev->text)) == NULL ||
	    !tp->live) {
		log_debug("mqtt: dropped a frame for %s", ev->text);
		return;
	}
	m->t.cbs.on_message(tp->name, ev->data, ev->len, m->t.arg);
}

static void
mqtt_wake(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt	*m = arg;
	struct mev	*ev;
	unsigned int	 dropped;
	int		 n;

	(void)fd;
	(void)what;
	for (n = 0; n < MQTT_DRAIN_BATCH; n++) {
		pthread_mutex_lock(&m->lock);
		if ((ev = TAILQ_FIRST(&m->events)) != NULL) {
			TAILQ_REMOVE(&m->events, ev, entry);
			if (ev->type == MEV_MSG) {
				m->qmsgs--;
				m->qbytes -= ev->cost;
			}
		}
		dropped = m->qdropped;
		m->qdropped = 0;
		pthread_mutex_unlock(&m->lock);
		transport_dropped(&m->t, dropped);
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
		free(ev);
	}
	/* More left: let the rest of the loop run first (a zero timer, not
	 * event_active(), which libevent would run again in this very pass). */
	evtimer_add(m->more_ev, &mqtt_zero_tv);
}

static void
mqtt_retry(struct transport *t)
{
	struct mqtt	*m = (struct mqtt *)t;

	if (m->cur != NULL && t->state == TRANSPORT_DOWN)
		mqtt_start_connect(m);
}

/* Hand paho one publish (transport_pump() has checked the window). */
static int
mqtt_send(struct transport *t, struct transport_pub *p, uint64_t *req)
{
	struct mqtt			*m = (struct mqtt *)t;
	MQTTAsync_responseOptions	 ro = MQTTAsync_responseOptions_initializer;
	MQTTAsync_message		 msg = MQTTAsync_message_initializer;
	struct mreq			*rq;
	uint64_t			 seq;
	int				 rc;

	if ((rq = mreq_new(m, MEV_PUB)) == NULL)
		return 1;
	ro.onSuccess5 = mqtt_cb_done;
	ro.onFailure5 = mqtt_cb_failed;
	ro.context = rq;
	msg.payload = p->buf;
	msg.payloadlen = (int)p->len;
	msg.qos = 1;
	/* Before the call: the answer may free rq before it returns. */
	seq = rq->seq;
	rc = MQTTAsync_sendMessage(m->cur->cli, p->wire, &msg, &ro);
	if (rc == MQTTASYNC_SUCCESS) {
		*req = seq;
		return 0;
	}
	mreq_done(rq);
	if (rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT ||
	    rc == MQTTASYNC_DISCONNECTED || rc == MQTTASYNC_NO_MORE_MSGIDS)
		return 1;	/* an answer or a reconnect will pump again */
	log_warnx("mqtt: publish: %s", MQTTAsync_strerror(rc));
	return -1;
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
		transport_retry_arm(&m->t);
		return;
	}
	m->attempt = rq->seq;
	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
	prop.value.integer4 = m->expiry_s;
	rc = MQTTProperties_add(&props, &prop);
	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_MAXIMUM_PACKET_SIZE;
	prop.value.integer4 = m->max_packet;
	if (rc == 0)
		rc = MQTTProperties_add(&props, &prop);
	if (rc != 0) {
		/* Without them the session or the bound would be wrong. */
		log_warnx("mqtt: connect: cannot set the properties");
		MQTTProperties_free(&props);
		mreq_done(rq);
		transport_retry_arm(&m->t);
		return;
	}

	co.keepAliveInterval = m->keepalive_s;
	co.cleansession = 0;
	co.cleanstart = 0;
	co.maxInflight = m->t.window;
	co.username = m->cur->user;
	co.password = m->cur->pass;
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

	m->t.state = TRANSPORT_CONNECTING;
	rc = MQTTAsync_connect(m->cur->cli, &co);
	MQTTProperties_free(&props);
	if (rc != MQTTASYNC_SUCCESS) {
		mreq_done(rq);
		m->t.state = TRANSPORT_DOWN;
		log_warnx("mqtt: connect: %s", MQTTAsync_strerror(rc));
		transport_retry_arm(&m->t);
	}
}

/* n random characters of [0-9a-zA-Z]. */
static char *
mqtt_random_text(size_t n)
{
	static const char	 a[] =
	    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	char			*s;
	size_t			 i;

	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		s[i] = a[arc4random_uniform(sizeof(a) - 1)];
	s[n] = '\0';
	return s;
}

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

/*
 * What this client ID presents.  Random ones are drawn per client ID, not
 * per reconnect: a broker sees one name per session either way, and one
 * that changed under a resumed session would only stand out.
 */
static int
mqtt_handle_creds(struct mqtt *m, struct mhandle *h)
{
	int	 bad = 0;

	if (m->own_creds) {
		h->user = mqtt_strdup_opt(m->own_user, &bad);
		h->pass = mqtt_strdup_opt(m->own_pass, &bad);
	} else if (m->random_username) {
		h->user = mqtt_random_text(MQTT_RANDOM_USER);
		h->pass = mqtt_random_text(MQTT_RANDOM_PASS);
		bad = h->user == NULL || h->pass == NULL;
	} else {
		h->user = mqtt_strdup_opt(m->username, &bad);
		h->pass = mqtt_strdup_opt(m->password, &bad);
	}
	return bad ? -1 : 0;
}

/* --- operations ------------------------------------------------------------- */

static int
mqtt_op_connect(struct transport *t)
{
	MQTTAsync_createOptions	 cro = MQTTAsync_createOptions_initializer5;
	struct mqtt		*m = (struct mqtt *)t;
	struct mhandle		*h;
	int			 rc;

	if (m->cur != NULL)
		return 0;
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    mqtt_handle_creds(m, h) == -1) {
		mqtt_handle_free(h);
		log_warnx("mqtt: out of memory");
		return -1;
	}
	h->m = m;
	h->gen = ++m->seq;
	memcpy(h->id, t->client_id, sizeof(h->id));
	cro.sendWhileDisconnected = 0;	/* we queue ourselves */
	rc = MQTTAsync_createWithOptions(&h->cli, m->uris[0], h->id,
	    MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: create: %s", MQTTAsync_strerror(rc));
		mqtt_handle_free(h);
		return -1;
	}
	rc = MQTTAsync_setCallbacks(h->cli, h, mqtt_cb_lost, mqtt_cb_message,
	    NULL);
	if (rc == MQTTASYNC_SUCCESS)
		rc = MQTTAsync_setDisconnected(h->cli, h, mqtt_cb_server_disconnect);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: callbacks: %s", MQTTAsync_strerror(rc));
		MQTTAsync_destroy(&h->cli);
		mqtt_handle_free(h);
		return -1;
	}
	log_debug("mqtt: connecting as %s", h->id);
	m->cur = h;
	t->backoff_ms = TRANSPORT_BACKOFF_MIN;
	mqtt_start_connect(m);
	return 0;
}

static void
mqtt_op_disconnect(struct transport *t)
{
	mqtt_leave((struct mqtt *)t, 0);
}

static int
mqtt_op_subscribe(struct transport *t, struct transport_topic *tp)
{
	if (t->state == TRANSPORT_UP)
		mqtt_send_sub((struct mqtt *)t, tp);
	return 0;
}

static void
mqtt_op_unsubscribe(struct transport *t, struct transport_topic *tp)
{
	/* Down: sent at the next connect if the session survived. */
	if (t->state == TRANSPORT_UP)
		mqtt_send_sub((struct mqtt *)t, tp);
}

static int
mqtt_op_set_session_expiry(struct transport *t, uint32_t seconds)
{
	((struct mqtt *)t)->expiry_s = seconds;
	return 0;
}

static int
mqtt_op_set_credentials(struct transport *t, const char *user,
    const char *pass)
{
	struct mqtt	*m = (struct mqtt *)t;
	char		*u = NULL, *p = NULL;
	int		 bad = 0;

	u = mqtt_strdup_opt(user, &bad);
	p = mqtt_strdup_opt(pass, &bad);
	if (bad) {
		free(u);
		free(p);
		log_warnx("mqtt: out of memory");
		return -1;
	}
	free(m->own_user);
	if (m->own_pass != NULL) {
		explicit_bzero(m->own_pass, strlen(m->own_pass));
		free(m->own_pass);
	}
	m->own_user = u;
	m->own_pass = p;
	m->own_creds = u != NULL || p != NULL;
	return 0;
}

static const char *
mqtt_op_client_id(const struct transport *t)
{
	const struct mqtt	*m = (const struct mqtt *)t;

	return m->cur != NULL ? m->cur->id : NULL;
}

/* Until paho has answered h's DISCONNECT, or MQTT_CLOSE_WAIT. */
static void
mqtt_wait_closed(struct mqtt *m, const struct mhandle *h)
{
	struct timespec	 ts;
	struct mev	*ev;
	int		 rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += MQTT_CLOSE_WAIT / 1000;
	ts.tv_nsec += (long)(MQTT_CLOSE_WAIT % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->lock);
	for (;;) {
		TAILQ_FOREACH_REVERSE(ev, &m->events, mev_list, entry)
			if (ev->type == MEV_CLOSED && ev->seq == h->gen)
				break;
		if (ev != NULL || rc == ETIMEDOUT)
			break;
		rc = pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
	if (ev == NULL)
		log_debug("mqtt: no answer to the DISCONNECT of %s", h->id);
}

/*
 * The session ends here: paho's own DISCONNECT at MQTTAsync_destroy()
 * carries no Session Expiry, which would leave the session to its CONNECT
 * interval.  So ours goes first and destroy waits for it.
 */
static void
mqtt_op_close(struct transport *t, int deliver)
{
	struct mqtt	*m = (struct mqtt *)t;
	struct mev	*ev;
	struct mreq	*rq;
	int		 i;

	if (m->lock_ok) {
		if (m->closing != NULL) {
			mqtt_wait_closed(m, m->closing);
			mqtt_destroy_handle(m, m->closing);
			m->closing = NULL;
		}
		mqtt_leave(m, 1);
		if (m->closing != NULL) {
			mqtt_wait_closed(m, m->closing);
			mqtt_destroy_handle(m, m->closing);
			m->closing = NULL;
		}
	}
	/*
	 * No paho thread is left.  Frames it took are acknowledged to the
	 * broker already (QoS 1): retiring, hand them over, or they are gone.
	 * The topics and callbacks are still intact here.
	 */
	if (deliver && m->lock_ok)
		TAILQ_FOREACH(ev, &m->events, entry)
			if (ev->type == MEV_MSG)
				mqtt_on_message(m, ev);
	mqtt_handle_free(m->dead);
	if (m->wake_ev != NULL)
		event_free(m->wake_ev);
	if (m->more_ev != NULL)
		event_free(m->more_ev);
	if (m->lock_ok) {
		while ((ev = TAILQ_FIRST(&m->events)) != NULL) {
			TAILQ_REMOVE(&m->events, ev, entry);
			free(ev);
		}
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
	}
	/* No paho thread is left to answer: every request goes now. */
	while ((rq = LIST_FIRST(&m->reqs)) != NULL)
		mreq_done(rq);
	for (i = 0; i < m->nuris; i++)
		free(m->uris[i]);
	free(m->uris);
	free(m->username);
	if (m->password != NULL) {
		explicit_bzero(m->password, strlen(m->password));
		free(m->password);
	}
	(void)mqtt_op_set_credentials(t, NULL, NULL);	/* frees our own */
	free(m->proxy);
}

static const struct transport_ops mqtt_transport_ops = {
	.name = "mqtt",
	.topic_size = sizeof(struct transport_topic),
	.connect = mqtt_op_connect,
	.disconnect = mqtt_op_disconnect,
	.retry = mqtt_retry,
	.restore = mqtt_restore,
	.subscribe = mqtt_op_subscribe,
	.unsubscribe = mqtt_op_unsubscribe,
	.send = mqtt_send,
	.set_session_expiry = mqtt_op_set_session_expiry,
	.set_credentials = mqtt_op_set_credentials,
	.client_id = mqtt_op_client_id,
	.close = mqtt_op_close,
};

static size_t
mqtt_varint_len(size_t v)
{
	size_t	 n = 1;

	while (v >= 128) {
		v /= 128;
		n++;
	}
	return n;
}

/*
 * The largest packet the broker may send us: a PUBLISH of one frame at
 * QoS 1 on our longest possible topic, with no properties (veil publishes
 * none, and we ask for neither topic aliases nor subscription
 * identifiers).  Everything else a broker sends is small; the floor keeps
 * room for a CONNACK's properties and the SUBACK of a batch even with the
 * probe's tiny frames.
 */
static uint32_t
mqtt_max_packet(size_t frame, size_t topic)
{
	size_t	 rl;

	rl = 2 + topic		/* topic name, length first */
	    + 2			/* packet identifier (QoS 1) */
	    + 1			/* property length: 0 */
	    + frame;
	rl += 1 + mqtt_varint_len(rl);	/* packet type, remaining length */
	return rl < MQTT_CONTROL_MIN ? MQTT_CONTROL_MIN : (uint32_t)rl;
}

struct transport *
mqtt_transport_new(const struct veild_config *cfg, struct event_base *base,
    const struct transport_cbs *cbs, void *arg, char *err, size_t errlen)
{
	pthread_condattr_t	 ca;
	struct mqtt		*m;
	size_t			 i;
	int			 bad = 0;

	/* Only to index safely: config_load() checked the URIs. */
	if (cfg->mqtt.nuris == 0 || cfg->mqtt.nuris > CONFIG_MQTT_URIS_MAX) {
		snprintf(err, errlen, "mqtt: no server URI");
		return NULL;
	}

	/*
	 * paho takes http_proxy/https_proxy from the environment even for
	 * tcp:// and ignores no_proxy: a proxy nobody configured for veil would
	 * see every connection.  Only an explicit one is used.
	 */
	if (cfg->mqtt.proxy == NULL) {
		unsetenv("http_proxy");
		unsetenv("https_proxy");
		unsetenv("HTTP_PROXY");
		unsetenv("HTTPS_PROXY");
	}

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		snprintf(err, errlen, "mqtt: %s", strerror(errno));
		return NULL;
	}
	TAILQ_INIT(&m->events);
	LIST_INIT(&m->reqs);
	if (transport_init(&m->t, &mqtt_transport_ops, cfg, base, cbs, arg,
	    cfg->mqtt.topic_prefix, (int)cfg->mqtt.inflight, err, errlen) ==
	    -1) {
		transport_free(&m->t);
		return NULL;
	}
	m->keepalive_s = (int)(cfg->mqtt.keepalive_ms / 1000);
	m->expiry_s = (uint32_t)(cfg->mqtt.session_expiry_ms / 1000);
	m->random_username = cfg->mqtt.random_username;
	m->wire_max = m->t.prefixlen + TRANSPORT_TOPIC_MAX;
	m->max_packet = mqtt_max_packet(m->t.frame_size, m->wire_max);

	/* A monotonic clock for mqtt_wait_closed(): a clock step must not
	 * stretch or skip the wait. */
	if (pthread_condattr_init(&ca) == 0) {
		if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
		    pthread_cond_init(&m->cond, &ca) == 0) {
			if (pthread_mutex_init(&m->lock, NULL) == 0)
				m->lock_ok = 1;
			else
				pthread_cond_destroy(&m->cond);
		}
		pthread_condattr_destroy(&ca);
	}
	if (!m->lock_ok)
		bad = 1;
	if ((m->uris = calloc(cfg->mqtt.nuris, sizeof(*m->uris))) == NULL)
		bad = 1;
	else {
		m->nuris = (int)cfg->mqtt.nuris;
		for (i = 0; i < cfg->mqtt.nuris; i++)
			m->uris[i] = mqtt_strdup_opt(cfg->mqtt.uris[i], &bad);
	}
	m->username = mqtt_strdup_opt(cfg->mqtt.username, &bad);
	m->password = mqtt_strdup_opt(cfg->mqtt.password, &bad);
	m->proxy = mqtt_strdup_opt(cfg->mqtt.proxy, &bad);
	m->wake_ev = event_new(base, -1, 0, mqtt_wake, m);
	m->more_ev = evtimer_new(base, mqtt_wake, m);
	if (bad || m->wake_ev == NULL || m->more_ev == NULL) {
		snprintf(err, errlen, "mqtt: out of memory");
		transport_free(&m->t);
		return NULL;
	}
	return &m->t;
}
