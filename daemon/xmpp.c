/* xmpp.c: the XMPP transport driver on libstrophe (SASL ANONYMOUS, XEP-0060 nodes as inboxes): its operations, its settings, TLS. */

/*
 * Names: x_* and X_* are ours, xmpp_* and XMPP_* libstrophe's.
 *
 * Identity.  Every connection logs in with SASL ANONYMOUS, so the server
 * hands out a fresh random JID each time; the "client ID" of the transport
 * interface is the connection itself.  set_client_id() only records the
 * wish, the rotation happens because disconnect + connect makes a new
 * connection.  XMPP cannot choose the JID: every reconnect, wanted or
 * not, is a new identity at the server.  There is no session to expire and
 * no credential to present: those calls are ignored.
 *
 * The files: libstrophe inside the event loop is xmpp_conn.c; the
 * publish-subscribe steps are xmpp_pubsub.c.
 */

#include <sys/queue.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include <sodium.h>
#include <strophe.h>

#include "compat.h"
#include "config.h"
#include "log.h"
#include "transport_tls.h"
#include "xmpp_int.h"

/* --- operations ------------------------------------------------------------- */

static int
x_op_connect(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	if (x->want)
		return 0;
	x->want = 1;
	t->backoff_ms = TRANSPORT_BACKOFF_MIN;
	if (x->cur == NULL)
		x_start_connect(x);
	return 0;
}

static void
x_op_disconnect(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	x->want = 0;
	transport_retry_cancel(t);
	x_leave(x, 1);
}

static int
x_op_subscribe(struct transport *t, struct transport_topic *tp)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xtopic	*xt = (struct xtopic *)tp;

	if (xt->ename == NULL) {
		if ((xt->ename = x_escape(tp->wire)) == NULL)
			return -1;
		TAILQ_INIT(&xt->seenq);
	}
	/* An unsubscribe still in flight is answered first; then this
	 * starts over (the step machine ignores the old answer's id). */
	if (t->state == TRANSPORT_UP) {
		xt->step = TS_CREATE;
		x_topic_next(x, xt);
	}
	return 0;
}

static void
x_op_unsubscribe(struct transport *t, struct transport_topic *tp)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xtopic	*xt = (struct xtopic *)tp;

	if (t->state == TRANSPORT_UP && xt->step >= TS_SUBSCRIBE)
		x_send_unsubscribe(x, xt);
	/* A step outstanding: x_iq_cb() frees it at the answer. */
	if (tp->req != 0 || xt->delivering)
		xt->step = TS_IDLE;
	else
		transport_topic_free(t, tp);
}

static const char *
x_op_client_id(const struct transport *t)
{
	const struct xmpp	*x = (const struct xmpp *)t;

	if (x->cur == NULL || t->state != TRANSPORT_UP)
		return NULL;
	return xmpp_conn_get_bound_jid(x->cur->conn);
}

static void
x_op_close(struct transport *t, int deliver)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xconn	*xc;

	/* No callback from here on, even from libstrophe closing sockets. */
	x->freeing = 1;
	/*
	 * Retired (a connection's planned end, at a boundary): unsubscribe
	 * every node and close the stream, as a disconnect does, and hand
	 * those stanzas to the kernel before the socket goes, or the nodes
	 * keep a subscriber that no longer exists.  Bounded: the daemon
	 * waits meanwhile.  (Frames are not held back here: delivery is
	 * synchronous, and what arrives now is fetched by no one, as after
	 * any unsubscribe.)
	 */
	if (deliver && (xc = x->cur) != NULL && t->state == TRANSPORT_UP) {
		struct timespec	 ts;
		int64_t		 until;

		x_leave(x, 1);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		until = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + X_FLUSH_MS;
		while (!xc->closed && xmpp_conn_send_queue_len(xc->conn) > 0) {
			xmpp_run_once(x->ctx, 10);
			clock_gettime(CLOCK_MONOTONIC, &ts);
			if ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 >= until)
				break;
		}
	}
	if (x->cur != NULL)
		LIST_INSERT_HEAD(&x->dead, x->cur, entry);
	x->cur = NULL;
	while ((xc = LIST_FIRST(&x->dead)) != NULL) {
		LIST_REMOVE(xc, entry);
		x_conn_free(xc);
	}
	if (x->ctx != NULL)
		xmpp_ctx_free(x->ctx);
	if (x->run_ev != NULL)
		event_free(x->run_ev);
	if (x->reap_ev != NULL)
		event_free(x->reap_ev);
	if (x->tick_ev != NULL)
		event_free(x->tick_ev);
	free(x->domain);
	free(x->host);
	free(x->pubsub);
	free(x->epubsub);
	free(x->jid);
	free(x->rxbuf);
	free(x->ca_file);
	free(x->ca_path);
}

static const struct transport_ops x_transport_ops = {
	.name = "xmpp",
	.topic_size = sizeof(struct xtopic),
	.connect = x_op_connect,
	.disconnect = x_op_disconnect,
	.retry = x_retry,
	.restore = x_restore,
	.subscribe = x_op_subscribe,
	.unsubscribe = x_op_unsubscribe,
	.send = x_send,
	.topic_free = x_topic_free,
	.client_id = x_op_client_id,
	.close = x_op_close,
};

/* Safe inside our stanzas' attributes, and nothing a JID would mangle. */
static int
x_valid_name(const char *s)
{
	size_t	 i;

	if (s == NULL || s[0] == '\0' || strlen(s) > 1023)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (s[i] <= 0x20 || s[i] > 0x7e || strchr("\"'<>&@/", s[i]))
			return 0;
	return 1;
}

/*
 * xmpp.tls_*: libstrophe checks the chain against tls_ca_file/tls_ca_path
 * and the domain against the certificate; transport_tls.c adds the pins,
 * keyed by the domain libstrophe sends as the server name, and the reason
 * a certificate was refused.
 */
static int
x_tls_init(struct xmpp *x, const struct veild_config *cfg, char *err,
    size_t errlen)
{
	struct transport_tls_policy	 pol;
	const struct veild_tls		*t = &cfg->xmpp.trust;
	char				 why[200];

	x->tls_verify = t->verify;
	if ((t->ca_file != NULL && (x->ca_file = strdup(t->ca_file)) == NULL) ||
	    (t->ca_path != NULL && (x->ca_path = strdup(t->ca_path)) == NULL)) {
		snprintf(err, errlen, "xmpp: out of memory");
		return -1;
	}
	if (x->tls == VEILD_TLS_OFF)
		return 0;
	memset(&pol, 0, sizeof(pol));
	pol.verify = t->verify;
	if (t->pin_sha256 != NULL &&
	    transport_tls_parse_pins(t->pin_sha256, &pol, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "xmpp.tls_pin_sha256: %s", why);
		return -1;
	}
	if (transport_tls_expect(cfg->xmpp.domain, &pol, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "xmpp.tls: %s", why);
		return -1;
	}
	return 0;
}

struct transport *
xmpp_transport_new(const struct veild_config *cfg, struct event_base *base,
    const struct transport_cbs *cbs, void *arg, char *err, size_t errlen)
{
	struct xmpp	*x;

	if (!x_valid_name(cfg->xmpp.domain)) {
		snprintf(err, errlen, "xmpp: need a domain");
		return NULL;
	}
	if (!x_valid_name(cfg->xmpp.pubsub)) {
		snprintf(err, errlen, "xmpp: need a pubsub service");
		return NULL;
	}
	if (cfg->xmpp.host != NULL && !x_valid_name(cfg->xmpp.host)) {
		snprintf(err, errlen, "xmpp: bad host");
		return NULL;
	}
	if (sodium_init() == -1) {
		snprintf(err, errlen, "xmpp: libsodium failed to start");
		return NULL;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		snprintf(err, errlen, "xmpp: %s", strerror(errno));
		return NULL;
	}
	LIST_INIT(&x->dead);
	/* Node names are the engine's: no prefix. */
	if (transport_init(&x->t, &x_transport_ops, cfg, base, cbs, arg, "",
	    (int)cfg->xmpp.inflight, err, errlen) == -1) {
		transport_free(&x->t);
		return NULL;
	}
	x->port = (unsigned short)cfg->xmpp.port;
	x->tls = cfg->xmpp.tls;
	if (x_tls_init(x, cfg, err, errlen) == -1) {
		transport_free(&x->t);
		return NULL;
	}
	x->b64len = sodium_base64_encoded_len(x->t.frame_size,
	    sodium_base64_VARIANT_ORIGINAL) - 1;
	x->logger.handler = x_strophe_log;
	x->logger.userdata = x;

	xmpp_initialize();
	x->domain = strdup(cfg->xmpp.domain);
	x->pubsub = strdup(cfg->xmpp.pubsub);
	x->epubsub = x_escape(cfg->xmpp.pubsub);
	/* Without a host libstrophe resolves the domain (SRV, then A). */
	x->host = cfg->xmpp.host != NULL ? strdup(cfg->xmpp.host) : NULL;
	x->rxbuf = malloc(x->t.frame_size);
	x->ctx = xmpp_ctx_new(NULL, &x->logger);
	x->run_ev = event_new(base, -1, 0, x_run_cb, x);
	x->reap_ev = event_new(base, -1, 0, x_reap, x);
	x->tick_ev = evtimer_new(base, x_run_cb, x);
	if (x->domain == NULL || x->pubsub == NULL || x->epubsub == NULL ||
	    (cfg->xmpp.host != NULL && x->host == NULL) || x->rxbuf == NULL ||
	    x->ctx == NULL || x->run_ev == NULL || x->reap_ev == NULL ||
	    x->tick_ev == NULL) {
		snprintf(err, errlen, "xmpp: out of memory");
		transport_free(&x->t);
		return NULL;
	}
	return &x->t;
}
