/* transport.c: the table of transport drivers, the calls that dispatch to them, and what the drivers share. */

/*
 * What transport.h promises of arguments (topics, client IDs, callbacks) is
 * checked here, once, rather than by each driver: a driver cannot then
 * accept what another refuses.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "transport.h"

typedef struct transport *(*transport_ctor)(struct event_base *,
    const struct transport_config *, const struct transport_cbs *, void *,
    char *, size_t);

static const struct {
	const char	*name;
	transport_ctor	 ctor;
} transport_drivers[] = {
	{ "mqtt", mqtt_transport_new },
	{ "xmpp", xmpp_transport_new },
};

struct transport *
transport_new(const char *name, struct event_base *base,
    const struct transport_config *cfg, const struct transport_cbs *cbs,
    void *arg, char *err, size_t errlen)
{
	size_t	 i;

	if (name == NULL || base == NULL || cfg == NULL || cbs == NULL) {
		snprintf(err, errlen, "transport: missing argument");
		return NULL;
	}
	for (i = 0; i < sizeof(transport_drivers) / sizeof(transport_drivers[0]);
	    i++) {
		if (strcmp(transport_drivers[i].name, name) != 0)
			continue;
		/* Drivers call every one of them unchecked. */
		if (cbs->on_state == NULL || cbs->on_message == NULL ||
		    cbs->on_published == NULL || cbs->on_subscribed == NULL) {
			snprintf(err, errlen, "%s: missing callback", name);
			return NULL;
		}
		return transport_drivers[i].ctor(base, cfg, cbs, arg, err,
		    errlen);
	}
	snprintf(err, errlen, "unknown transport \"%s\"", name);
	return NULL;
}

static int
transport_valid_topic(const char *topic)
{
	size_t	 i;

	if (topic == NULL || topic[0] == '\0')
		return 0;
	for (i = 0; topic[i] != '\0'; i++) {
		if (i >= 65535)
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

int
transport_connect(struct transport *t)
{
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
	if (!transport_valid_topic(topic)) {
		log_warnx("%s: subscribe: invalid topic", t->name);
		return -1;
	}
	return t->ops->subscribe(t, topic);
}

int
transport_unsubscribe(struct transport *t, const char *topic)
{
	if (!transport_valid_topic(topic)) {
		log_warnx("%s: unsubscribe: invalid topic", t->name);
		return -1;
	}
	return t->ops->unsubscribe(t, topic);
}

int
transport_publish(struct transport *t, const char *topic, const void *buf,
    size_t len, uint64_t cookie)
{
	if (!transport_valid_topic(topic)) {
		log_warnx("%s: publish: invalid topic", t->name);
		return -1;
	}
	return t->ops->publish(t, topic, buf, len, cookie);
}

int
transport_set_client_id(struct transport *t, const char *id)
{
	if (!transport_valid_client_id(id)) {
		log_warnx("%s: invalid client ID", t->name);
		return -1;
	}
	return t->ops->set_client_id(t, id);
}

void
transport_free(struct transport *t)
{
	if (t != NULL)
		t->ops->free(t);
}

void
transport_retire(struct transport *t)
{
	if (t != NULL)
		(t->ops->retire != NULL ? t->ops->retire : t->ops->free)(t);
}

/* --- for the drivers ---------------------------------------------------------- */

void
transport_backoff(struct event *timer, int *backoff_ms)
{
	struct timeval	 tv;
	int		 ms;

	/* Half fixed, half random: clients of one broker do not march in
	 * step after it restarts. */
	ms = *backoff_ms / 2 + (int)arc4random_uniform(*backoff_ms / 2 + 1);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(timer, &tv);
	if (*backoff_ms < TRANSPORT_BACKOFF_MAX / 2)
		*backoff_ms *= 2;
	else
		*backoff_ms = TRANSPORT_BACKOFF_MAX;
}

void
transport_log_down(const struct transport *t, int was_up, int ever_up,
    const char *why)
{
	/* A server that stays away would otherwise fill the log with one
	 * warning per retry; the first failure is worth one. */
	if (was_up || !ever_up)
		log_warnx("%s: %s", t->name, why);
	else
		log_debug("%s: %s", t->name, why);
}
