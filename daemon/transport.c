/* transport.c: the table of transport drivers, the calls that dispatch to them, and the parts every driver shares. */

/*
 * What transport.h promises of arguments (topics, client IDs, callbacks,
 * frame sizes) is checked here, once, rather than by each driver: a driver
 * cannot then accept what another refuses.  The topic registry, the
 * publish queue and the reconnect backoff are here too, so both drivers
 * find a topic or an answered request by hash, never by walking a list:
 * with 10,000 contacts there are 10,000 topics, and every received frame
 * and every answer needs one lookup.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "compat.h"
#include "config.h"
#include "log.h"
#include "transport_driver.h"

#define TRANSPORT_HASH_INIT	64	/* buckets of the shared tables */

typedef struct transport *(*transport_ctor)(const struct veild_config *,
    struct event_base *, const struct transport_cbs *, void *, char *,
    size_t);

static const struct {
	enum veild_transport	 which;
	transport_ctor		 ctor;
} transport_drivers[] = {
	{ VEILD_TRANSPORT_MQTT, mqtt_transport_new },
	{ VEILD_TRANSPORT_XMPP, xmpp_transport_new },
};

static void	transport_pub_free(struct transport_pub *);

/* --- the interface -------------------------------------------------------------- */

static void
transport_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct transport	*t = arg;

	(void)fd;
	(void)what;
	t->ops->retry(t);
}

/* Publishes refused before the server saw them, answered from the loop so
 * that transport_publish()'s caller is not re-entered. */
static void
transport_refused_cb(evutil_socket_t fd, short what, void *arg)
{
	struct transport	*t = arg;
	struct transport_pub	*p;

	(void)fd;
	(void)what;
	while ((p = TAILQ_FIRST(&t->refused)) != NULL) {
		TAILQ_REMOVE(&t->refused, p, entry);
		t->cbs.on_published(p->cookie, 0, t->arg);
		transport_pub_free(p);
	}
}

int
transport_init(struct transport *t, const struct transport_ops *ops,
    const struct veild_config *cfg, struct event_base *base,
    const struct transport_cbs *cbs, void *arg, const char *prefix,
    int window, char *err, size_t errlen)
{
	t->ops = ops;
	t->base = base;
	t->cbs = *cbs;
	t->arg = arg;
	t->frame_size = cfg->frames.size;
	t->window = window;
	t->state = TRANSPORT_DOWN;
	t->backoff_ms = TRANSPORT_BACKOFF_MIN;
	TAILQ_INIT(&t->topics);
	TAILQ_INIT(&t->pending);
	TAILQ_INIT(&t->inflight);
	TAILQ_INIT(&t->refused);
	if (t->frame_size == 0 || t->frame_size > TRANSPORT_FRAME_MAX) {
		snprintf(err, errlen, "%s: frame size %zu out of range",
		    ops->name, t->frame_size);
		return -1;
	}
	if (window < 1 || window > 65535) {
		snprintf(err, errlen, "%s: in-flight window %d out of range",
		    ops->name, window);
		return -1;
	}
	if ((t->prefix = strdup(prefix != NULL ? prefix : "")) == NULL)
		goto nomem;
	t->prefixlen = strlen(t->prefix);
	t->retry_ev = evtimer_new(base, transport_retry_cb, t);
	t->refused_ev = event_new(base, -1, 0, transport_refused_cb, t);
	if (t->retry_ev == NULL || t->refused_ev == NULL)
		goto nomem;
	/* Sized up front: adding to these never fails afterwards. */
	t->tbyname.cap = t->tbyreq.cap = t->pbyreq.cap = TRANSPORT_HASH_INIT;
	if ((t->tbyname.b = calloc(TRANSPORT_HASH_INIT, sizeof(void *))) ==
	    NULL ||
	    (t->tbyreq.b = calloc(TRANSPORT_HASH_INIT, sizeof(void *))) == NULL ||
	    (t->pbyreq.b = calloc(TRANSPORT_HASH_INIT, sizeof(void *))) == NULL)
		goto nomem;
	return 0;
nomem:
	snprintf(err, errlen, "%s: out of memory", ops->name);
	return -1;
}

struct transport *
transport_new(const struct veild_config *cfg, struct event_base *base,
    const struct transport_cbs *cbs, void *arg, char *err, size_t errlen)
{
	size_t	 i;

	if (cfg == NULL || base == NULL || cbs == NULL) {
		snprintf(err, errlen, "transport: missing argument");
		return NULL;
	}
	/* Drivers call every one of them unchecked (on_dropped excepted). */
	if (cbs->on_state == NULL || cbs->on_message == NULL ||
	    cbs->on_published == NULL || cbs->on_subscribed == NULL) {
		snprintf(err, errlen, "transport: missing callback");
		return NULL;
	}
	for (i = 0; i < sizeof(transport_drivers) / sizeof(transport_drivers[0]);
	    i++)
		if (transport_drivers[i].which == cfg->transport)
			return transport_drivers[i].ctor(cfg, base, cbs, arg,
			    err, errlen);
	snprintf(err, errlen, "unknown transport %d", (int)cfg->transport);
	return NULL;
}

const char *
transport_name(const struct transport *t)
{
	return t->ops->name;
}

static int
transport_valid_topic(const char *topic)
{
	size_t	 i;

	if (topic == NULL || topic[0] == '\0')
		return 0;
	for (i = 0; topic[i] != '\0'; i++) {
		if (i >= TRANSPORT_TOPIC_MAX)
			return 0;
		/* Printable ASCII without MQTT's wildcards: no UTF-8
		 * surprises, and a topic means the same to every driver. */
		if (topic[i] < 0x20 || topic[i] > 0x7e ||
		    topic[i] == '+' || topic[i] == '#')
			return 0;
	}
	return 1;
}

static int
transport_valid_client_id(const char *id)
{
	size_t	 i;

	for (i = 0; id != NULL && id[i] != '\0'; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'a' && id[i] <= 'z') ||
		    (id[i] >= 'A' && id[i] <= 'Z')))
			return 0;
	return id != NULL && i > 0 && i <= TRANSPORT_CLIENT_ID_MAX;
}

/* prefix + name, the name as the server knows it. */
static char *
transport_wire(const struct transport *t, const char *name)
{
	size_t	 n = strlen(name);
	char	*w;

	if ((w = malloc(t->prefixlen + n + 1)) == NULL)
		return NULL;
	memcpy(w, t->prefix, t->prefixlen);
	memcpy(w + t->prefixlen, name, n + 1);
	return w;
}

int
transport_connect(struct transport *t)
{
	if (t->client_id[0] == '\0') {
		log_warnx("%s: connect without a client ID", t->ops->name);
		return -1;
	}
	return t->ops->connect(t);
}

void
transport_disconnect(struct transport *t)
{
	t->ops->disconnect(t);
}

int
transport_subscribe(struct transport *t, const char *topic)
{
	struct transport_topic	*tp;
	int			 isnew = 0;

	if (!transport_valid_topic(topic)) {
		log_warnx("%s: subscribe: invalid topic", t->ops->name);
		return -1;
	}
	if ((tp = transport_topic_find(t, topic)) == NULL) {
		if ((tp = calloc(1, t->ops->topic_size)) == NULL ||
		    (tp->wire = transport_wire(t, topic)) == NULL) {
			free(tp);
			log_warn("%s", t->ops->name);
			return -1;
		}
		tp->name = tp->wire + t->prefixlen;
		TAILQ_INSERT_TAIL(&t->topics, tp, entry);
		(void)htab_add(&t->tbyname, &tp->byname,
		    htab_str(tp->name));
		isnew = 1;
	}
	if (tp->live)
		return 0;
	tp->live = 1;
	tp->reported = 0;
	if (t->ops->subscribe(t, tp) == -1) {
		log_warnx("%s: subscribe: out of memory", t->ops->name);
		if (isnew)
			transport_topic_free(t, tp);
		else
			tp->live = 0;
		return -1;
	}
	return 0;
}

int
transport_unsubscribe(struct transport *t, const char *topic)
{
	struct transport_topic	*tp;

	if (!transport_valid_topic(topic)) {
		log_warnx("%s: unsubscribe: invalid topic", t->ops->name);
		return -1;
	}
	if ((tp = transport_topic_find(t, topic)) == NULL || !tp->live)
		return 0;
	tp->live = 0;
	tp->reported = 0;
	t->ops->unsubscribe(t, tp);	/* may free tp */
	return 0;
}

int
transport_publish(struct transport *t, const char *topic, const void *buf,
    size_t len, uint64_t cookie)
{
	struct transport_pub	*p;

	if (!transport_valid_topic(topic)) {
		log_warnx("%s: publish: invalid topic", t->ops->name);
		return -1;
	}
	/* The receiving side drops anything else: sending it is a bug. */
	if (len != t->frame_size || buf == NULL) {
		log_warnx("%s: publish: %zu bytes, not a frame", t->ops->name,
		    len);
		return -1;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->wire = transport_wire(t, topic)) == NULL ||
	    (p->buf = malloc(len)) == NULL) {
		if (p != NULL)
			free(p->wire);
		free(p);
		log_warn("%s", t->ops->name);
		return -1;
	}
	memcpy(p->buf, buf, len);
	p->len = len;
	p->cookie = cookie;
	TAILQ_INSERT_TAIL(&t->pending, p, entry);
	transport_pump(t);
	return 0;
}

int
transport_set_client_id(struct transport *t, const char *id)
{
	if (!transport_valid_client_id(id)) {
		log_warnx("%s: invalid client ID", t->ops->name);
		return -1;
	}
	memcpy(t->client_id, id, strlen(id) + 1);
	return 0;
}

int
transport_set_session_expiry(struct transport *t, uint32_t seconds)
{
	if (t->ops->set_session_expiry == NULL)
		return 0;
	return t->ops->set_session_expiry(t, seconds);
}

int
transport_set_credentials(struct transport *t, const char *user,
    const char *pass)
{
	/* MQTT's strings are at most 65535 bytes. */
	if ((user != NULL && strlen(user) > 65535) ||
	    (pass != NULL && strlen(pass) > 65535)) {
		log_warnx("%s: credentials too long", t->ops->name);
		return -1;
	}
	if (t->ops->set_credentials == NULL)
		return 0;
	return t->ops->set_credentials(t, user, pass);
}

const char *
transport_client_id(const struct transport *t)
{
	return t->ops->client_id(t);
}

void
transport_foreach_topic(const struct transport *t,
    void (*fn)(const char *, void *), void *arg)
{
	struct transport_topic	*tp;

	TAILQ_FOREACH(tp, &t->topics, entry)
		if (tp->live)
			fn(tp->wire, arg);
}

static void
transport_destroy(struct transport *t, int deliver)
{
	struct transport_topic	*tp;
	struct transport_pub	*p;

	if (t == NULL)
		return;
	t->ops->close(t, deliver);
	while ((tp = TAILQ_FIRST(&t->topics)) != NULL)
		transport_topic_free(t, tp);
	while ((p = TAILQ_FIRST(&t->pending)) != NULL) {
		TAILQ_REMOVE(&t->pending, p, entry);
		transport_pub_free(p);
	}
	while ((p = TAILQ_FIRST(&t->inflight)) != NULL) {
		TAILQ_REMOVE(&t->inflight, p, entry);
		transport_pub_free(p);
	}
	while ((p = TAILQ_FIRST(&t->refused)) != NULL) {
		TAILQ_REMOVE(&t->refused, p, entry);
		transport_pub_free(p);
	}
	htab_free(&t->tbyname);
	htab_free(&t->tbyreq);
	htab_free(&t->pbyreq);
	if (t->retry_ev != NULL)
		event_free(t->retry_ev);
	if (t->refused_ev != NULL)
		event_free(t->refused_ev);
	free(t->prefix);
	free(t);
}

void
transport_free(struct transport *t)
{
	transport_destroy(t, 0);
}

void
transport_retire(struct transport *t)
{
	transport_destroy(t, 1);
}

/* --- topics ----------------------------------------------------------------------- */

struct transport_topic *
transport_topic_find(const struct transport *t, const char *name)
{
	struct hlink	*l;
	struct transport_topic	*tp;

	for (l = htab_get(&t->tbyname, htab_str(name));
	    l != NULL; l = htab_next(l)) {
		tp = HLINK_OF(l, struct transport_topic, byname);
		if (strcmp(tp->name, name) == 0)
			return tp;
	}
	return NULL;
}

struct transport_topic *
transport_topic_find_wire(const struct transport *t, const char *wire)
{
	if (strncmp(wire, t->prefix, t->prefixlen) != 0)
		return NULL;
	return transport_topic_find(t, wire + t->prefixlen);
}

/* Request 0 is "none": never in a table. */
static struct hlink *
transport_req_get(const struct htab *h, uint64_t req)
{
	return req == 0 ? NULL : htab_get(h, req);
}

static void
transport_req_set(struct htab *h, struct hlink *l,
    uint64_t *cur, uint64_t req)
{
	if (*cur != 0)
		htab_del(h, l);
	*cur = req;
	/* The table was sized at transport_init(): adding cannot fail. */
	if (req != 0)
		(void)htab_add(h, l, req);
}

struct transport_topic *
transport_topic_by_req(const struct transport *t, uint64_t req)
{
	struct hlink	*l;

	if ((l = transport_req_get(&t->tbyreq, req)) == NULL)
		return NULL;
	return HLINK_OF(l, struct transport_topic, byreq);
}

void
transport_topic_set_req(struct transport *t, struct transport_topic *tp,
    uint64_t req)
{
	transport_req_set(&t->tbyreq, &tp->byreq, &tp->req, req);
}

void
transport_topic_free(struct transport *t, struct transport_topic *tp)
{
	transport_topic_set_req(t, tp, 0);
	htab_del(&t->tbyname, &tp->byname);
	TAILQ_REMOVE(&t->topics, tp, entry);
	if (t->ops->topic_free != NULL)
		t->ops->topic_free(tp);
	free(tp->wire);
	free(tp);
}

/* --- the publish queue ------------------------------------------------------------- */

static void
transport_pub_free(struct transport_pub *p)
{
	free(p->wire);
	free(p->buf);
	free(p);
}

void
transport_pump(struct transport *t)
{
	struct transport_pub	*p;
	uint64_t		 req;
	int			 rc;

	while (t->state == TRANSPORT_UP && t->ninflight < t->window &&
	    (p = TAILQ_FIRST(&t->pending)) != NULL) {
		req = 0;
		if ((rc = t->ops->send(t, p, &req)) > 0)
			return;
		TAILQ_REMOVE(&t->pending, p, entry);
		if (rc < 0) {
			TAILQ_INSERT_TAIL(&t->refused, p, entry);
			event_active(t->refused_ev, EV_TIMEOUT, 0);
			continue;
		}
		TAILQ_INSERT_TAIL(&t->inflight, p, entry);
		t->ninflight++;
		transport_pub_set_req(t, p, req);
	}
}

struct transport_pub *
transport_pub_find(const struct transport *t, uint64_t req)
{
	struct hlink	*l;

	if ((l = transport_req_get(&t->pbyreq, req)) == NULL)
		return NULL;
	return HLINK_OF(l, struct transport_pub, byreq);
}

void
transport_pub_set_req(struct transport *t, struct transport_pub *p,
    uint64_t req)
{
	transport_req_set(&t->pbyreq, &p->byreq, &p->req, req);
}

/* Out of the in-flight window. */
static void
transport_pub_land(struct transport *t, struct transport_pub *p)
{
	transport_pub_set_req(t, p, 0);
	TAILQ_REMOVE(&t->inflight, p, entry);
	t->ninflight--;
}

void
transport_pub_answer(struct transport *t, struct transport_pub *p, int ok)
{
	transport_pub_land(t, p);
	t->cbs.on_published(p->cookie, ok, t->arg);
	transport_pub_free(p);
	transport_pump(t);
}

void
transport_pub_again(struct transport *t, struct transport_pub *p)
{
	transport_pub_land(t, p);
	p->flags = 0;
	TAILQ_INSERT_HEAD(&t->pending, p, entry);
	transport_pump(t);
}

void
transport_requeue(struct transport *t)
{
	struct transport_pub	*p;

	while ((p = TAILQ_LAST(&t->inflight, transport_pub_list)) != NULL) {
		transport_pub_land(t, p);
		p->flags = 0;
		TAILQ_INSERT_HEAD(&t->pending, p, entry);
	}
}

/* --- connection life ------------------------------------------------------------- */

void
transport_went_up(struct transport *t, const char *note)
{
	evtimer_del(t->retry_ev);
	t->state = TRANSPORT_UP;
	t->backoff_ms = TRANSPORT_BACKOFF_MIN;
	t->ever_up = 1;
	t->refusal_reported = 0;
	log_info("%s: connected%s", t->ops->name, note != NULL ? note : "");
	/* Subscriptions first, then the queue: servers handle them in
	 * order, so a frame to our own topic finds the subscription. */
	t->ops->restore(t);
	transport_pump(t);
	t->cbs.on_state(1, "connected", t->arg);
}

void
transport_went_down(struct transport *t, int was_up, const char *why,
    int refused)
{
	/* A server that stays away would otherwise fill the log with one
	 * warning per retry; the first failure is worth one. */
	if (was_up || !t->ever_up)
		log_warnx("%s: %s", t->ops->name, why);
	else
		log_debug("%s: %s", t->ops->name, why);
	if (refused && t->backoff_ms < TRANSPORT_REFUSED_MIN)
		t->backoff_ms = TRANSPORT_REFUSED_MIN;
	transport_retry_arm(t);
	if (was_up || (refused && !t->refusal_reported)) {
		t->refusal_reported = refused;
		t->cbs.on_state(0, why, t->arg);
	}
}

void
transport_retry_arm(struct transport *t)
{
	struct timeval	 tv;
	int		 ms;

	/* Half fixed, half random: clients of one broker do not march in
	 * step after it restarts. */
	ms = t->backoff_ms / 2 +
	    (int)arc4random_uniform((uint32_t)t->backoff_ms / 2 + 1);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(t->retry_ev, &tv);
	if (t->backoff_ms < TRANSPORT_BACKOFF_MAX / 2)
		t->backoff_ms *= 2;
	else
		t->backoff_ms = TRANSPORT_BACKOFF_MAX;
}

void
transport_retry_cancel(struct transport *t)
{
	evtimer_del(t->retry_ev);
}

void
transport_dropped(struct transport *t, unsigned int n)
{
	if (n > 0 && t->cbs.on_dropped != NULL)
		t->cbs.on_dropped(n, t->arg);
}
