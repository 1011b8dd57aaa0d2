/* mqtt_paho.c: paho's threads and the hand-off to the loop: callbacks, the bounded event queue, requests and client handles. */

/*
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

static const struct timeval mqtt_zero_tv = { 0, 0 };

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

void
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

void
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

void
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
void
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

int
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

void
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

/*
 * paho.mqtt.c 1.3.12 (and its main branch as of 2026-12): when the write
 * of a QoS 1 PUBLISH fails with a socket error, MQTTAsync_processCommand()
 * frees the command's topic and payload while the message it has just
 * stored for retransmission still points to them.  Reconnecting that
 * client with its session resends the message from freed memory (our
 * sanitizer pass caught it: a heap-use-after-free in paho's receive
 * thread after a broker restart); cleaning or destroying it frees them a
 * second time.  That failure is the only one paho reports as
 * MQTTASYNC_FAILURE with no reason code for a publish: the handle is
 * marked, and the loop neither reuses nor destroys it (quarantine()).
 */
void
mqtt_cb_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct mreq	*rq = ctx;
	struct mev	*ev;
	int		 permanent = 0;

	/* A reason code from the broker is its answer; anything else is the
	 * connection going away, and worth another try. */
	if (r != NULL && r->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
		permanent = 1;
	if ((ev = mev_new(rq->type, rq->seq, 0)) == NULL)
		return;
	ev->rq = rq;
	ev->permanent = permanent;
	ev->poison = rq->type == MEV_PUB && r != NULL &&
	    r->code == MQTTASYNC_FAILURE && !permanent;
	mqtt_enqueue(rq->m, ev);
}

void
mqtt_cb_disconnected(void *ctx, MQTTAsync_successData5 *r)
{
	struct mreq	*rq = ctx;

	(void)r;
	mqtt_post(rq->m, rq, MEV_CLOSED, rq->seq, 1, 0, NULL);
}

void
mqtt_cb_disconnect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct mreq	*rq = ctx;

	(void)r;
	mqtt_post(rq->m, rq, MEV_CLOSED, rq->seq, 0, 0, NULL);
}

/* --- loop thread ------------------------------------------------------------ */

struct mreq *
mqtt_req_new(struct mqtt *m, enum mev_type type)
{
	struct mreq	*rq;

	if ((rq = malloc(sizeof(*rq))) == NULL)
		return NULL;
	rq->m = m;
	rq->seq = ++m->seq;
	rq->type = type;
	rq->gen = 0;
	rq->batch = 0;
	LIST_INSERT_HEAD(&m->reqs, rq, entry);
	return rq;
}

void
mqtt_req_done(struct mreq *rq)
{
	if (rq == NULL)
		return;
	LIST_REMOVE(rq, entry);
	free(rq);
}

void
mqtt_handle_free(struct mhandle *h)
{
	if (h == NULL)
		return;
	free(h->user);
	if (h->proxy != NULL) {
		explicit_bzero(h->proxy, strlen(h->proxy));
		free(h->proxy);
	}
	if (h->pass != NULL) {
		explicit_bzero(h->pass, strlen(h->pass));
		free(h->pass);
	}
	free(h);
}

/* Handles paho cannot safely reuse or destroy (mqtt_cb_failed()): kept,
 * reachable, until the process ends; one per such failure. */
static struct mhandle *quarantine;

void
mqtt_destroy_handle(struct mqtt *m, struct mhandle *h)
{
	if (h->poisoned) {
		log_warnx("mqtt: client %s set aside, not destroyed: a publish "
		    "failed mid-write and paho's copy of it is unsafe to free",
		    h->id);
		h->next = quarantine;
		quarantine = h;
		return;
	}
	MQTTAsync_destroy(&h->cli);
	mqtt_handle_free(m->dead);
	m->dead = h;
}

/* Until paho has answered h's DISCONNECT, or MQTT_CLOSE_WAIT. */
void
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

void
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
		mqtt_req_done(ev->rq);
		free(ev);
	}
	/* More left: let the rest of the loop run first (a zero timer, not
	 * event_active(), which libevent would run again in this very pass). */
	evtimer_add(m->more_ev, &mqtt_zero_tv);
}
