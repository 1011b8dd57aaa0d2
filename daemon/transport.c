/* transport.c: the table of transport drivers and the calls that dispatch to them. */
#include <stdio.h>
#include <string.h>

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
	    i++)
		if (strcmp(transport_drivers[i].name, name) == 0)
			return transport_drivers[i].ctor(base, cfg, cbs, arg,
			    err, errlen);
	snprintf(err, errlen, "unknown transport \"%s\"", name);
	return NULL;
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
	return t->ops->subscribe(t, topic);
}

int
transport_unsubscribe(struct transport *t, const char *topic)
{
	return t->ops->unsubscribe(t, topic);
}

int
transport_publish(struct transport *t, const char *topic, const void *buf,
    size_t len, uint64_t cookie)
{
	return t->ops->publish(t, topic, buf, len, cookie);
}

int
transport_set_client_id(struct transport *t, const char *id)
{
	return t->ops->set_client_id(t, id);
}

void
transport_free(struct transport *t)
{
	if (t != NULL)
		t->ops->free(t);
}
