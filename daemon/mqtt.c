/* mqtt.c: the MQTT transport driver's operations on paho.mqtt.c MQTTAsync (MQTT 5, QoS 1): sessions, subscriptions, publishes. */

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
 * Topics.  mqtt.topic_prefix is an MQTT matter (broker ACLs): this driver
 * puts it in front of every topic it subscribes and publishes, and takes
 * it off what it delivers.  The engine only ever sees its inbox names.
 *
 * Reconnects use transport.c's timer on the loop (exponential, with
 * jitter) instead of paho's automaticReconnect, which does not retry a
 * failed first connect.  Publishes beyond the in-flight window wait on the
 * loop side: handing paho everything at once is an order of magnitude
 * slower.

 *
 * The files: paho's threads and the hand-off to the loop are in
 * mqtt_paho.c; what a connection presents (CONNECT options, TLS,
 * credentials, the proxy) in mqtt_connect.c.
 */

#include <sys/queue.h>

#include <errno.h>
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
#include "mqtt_int.h"

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
	if ((rq = mqtt_req_new(m, live ? MEV_SUB : MEV_UNSUB)) == NULL) {
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
		mqtt_req_done(rq);
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

	if ((rq = mqtt_req_new(m, tp->live ? MEV_SUB : MEV_UNSUB)) == NULL) {
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
		mqtt_req_done(rq);
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

	if ((rq = mqtt_req_new(m, MEV_CLOSED)) == NULL) {
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
		mqtt_req_done(rq);
		mqtt_destroy_handle(m, h);
		return;
	}
	m->closing = h;
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

void
mqtt_on_up(struct mqtt *m, struct mev *ev)
{
	if (m->cur == NULL || ev->seq != m->attempt ||
	    m->t.state != TRANSPORT_CONNECTING)
		return;
	mqtt_sockopts(m->keepalive_s);
	m->session_present = ev->session_present;
	transport_went_up(&m->t, ev->session_present ? "" : ", new session");
}

void
mqtt_on_down(struct mqtt *m, struct mev *ev)
{
	struct transport_topic	*tp;
	char			 tls[300], why[600];
	int			 was_up, refused = 0;

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
	snprintf(why, sizeof(why), "%s", ev->text != NULL ? ev->text : "down");
	if (ev->type == MEV_DOWN && m->ntls_hosts > 0) {
		refused = mqtt_tls_reason(m, tls, sizeof(tls));
		if (tls[0] != '\0')
			snprintf(why, sizeof(why), "connect failed: %s", tls);
	}
	/* In-flight publishes stay with paho: it sends them again if the
	 * broker still has our session, else mqtt_restore() requeues them. */
	transport_went_down(&m->t, was_up, why, refused);
}

void
mqtt_on_pub(struct mqtt *m, struct mev *ev)
{
	struct transport_pub	*p;

	if (ev->poison && m->cur != NULL && ev->rq != NULL &&
	    ev->rq->gen == m->cur->gen)
		m->cur->poisoned = 1;
	if ((p = transport_pub_find(&m->t, ev->seq)) == NULL)
		return;
	if (ev->ok || ev->permanent) {
		if (!ev->ok)
			log_warnx("mqtt: broker refused a publish");
		transport_pub_answer(&m->t, p, ev->ok);
	} else
		transport_pub_again(&m->t, p);
}

void
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

void
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

static int	mqtt_op_connect(struct transport *);

static void
mqtt_retry(struct transport *t)
{
	struct mqtt	*m = (struct mqtt *)t;
	struct mhandle	*h = m->cur;

	if (h == NULL || t->state != TRANSPORT_DOWN)
		return;
	if (!h->poisoned) {
		mqtt_start_connect(m);
		return;
	}
	/* The same client ID on a new paho client: the broker's session
	 * goes on, what was in flight is ours to send again. */
	m->cur = NULL;
	transport_requeue(t);
	mqtt_destroy_handle(m, h);
	if (mqtt_op_connect(t) != 0)
		transport_retry_arm(t);
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

	if ((rq = mqtt_req_new(m, MEV_PUB)) == NULL)
		return 1;
	rq->gen = m->cur->gen;
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
	mqtt_req_done(rq);
	if (rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT ||
	    rc == MQTTASYNC_DISCONNECTED || rc == MQTTASYNC_NO_MORE_MSGIDS)
		return 1;	/* an answer or a reconnect will pump again */
	log_warnx("mqtt: publish: %s", MQTTAsync_strerror(rc));
	return -1;
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
	/* The proxy user (never the password) ties a client ID to its
	 * stream in Tor's control port: tools/tor-testnet. */
	if (h->proxy != NULL)
		log_debug("mqtt: connecting as %s (proxy user %.*s)", h->id,
		    (int)strcspn(h->proxy + strlen("http://"), ":"),
		    h->proxy + strlen("http://"));
	else
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
		mqtt_req_done(rq);
	for (i = 0; i < m->nuris; i++)
		free(m->uris[i]);
	free(m->uris);
	free(m->username);
	if (m->password != NULL) {
		explicit_bzero(m->password, strlen(m->password));
		free(m->password);
	}
	(void)mqtt_op_set_credentials(t, NULL, NULL);	/* frees our own */
	mqtt_connect_free(m);
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
	if (mqtt_connect_init(m, cfg, err, errlen) == -1) {
		transport_free(&m->t);
		return NULL;
	}
	m->wake_ev = event_new(base, -1, 0, mqtt_wake, m);
	m->more_ev = evtimer_new(base, mqtt_wake, m);
	if (bad || m->wake_ev == NULL || m->more_ev == NULL) {
		snprintf(err, errlen, "mqtt: out of memory");
		transport_free(&m->t);
		return NULL;
	}
	return &m->t;
}
