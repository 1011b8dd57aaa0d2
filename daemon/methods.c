/* veild JSON-RPC methods: parameter checking and result shapes; the work is in engine.c. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "engine.h"
#include "rpc.h"

#define WAIT_MAX	3600
#define WAITERS_MAX	64

/* message.receive calls waiting for a message (long poll). */
static struct waiter {
	struct rpc_call	*call;
	int		 limit;
	struct event	*timer;
} waiters[WAITERS_MAX];

/* A reply that reports a change waits until the change is durable (the
 * engine's group commit): "sent" must mean "on disk". */
struct durable {
	struct rpc_call	*call;		/* NULL once the client has gone */
	json_t		*result;
};

static void
durable_cancel(struct rpc_call *call, void *arg)
{
	struct durable *d = arg;

	(void)call;
	d->call = NULL;
}

static void
durable_fire(void *arg, int committed)
{
	struct durable *d = arg;

	if (d->call != NULL) {
		if (committed) {
			rpc_reply(d->call, d->result);
			d->result = NULL;
		} else
			rpc_error(d->call, RPC_INTERNAL_ERROR,
			    "the state database refused the change");
	}
	json_decref(d->result);
	free(d);
}

static int
reply_durable(struct rpc_call *call, json_t *result)
{
	struct durable *d;

	if ((d = calloc(1, sizeof *d)) == NULL) {
		json_decref(result);
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	}
	d->call = call;
	d->result = result;
	rpc_defer(call, durable_cancel, d);
	engine_after_commit(durable_fire, d);
	return 0;
}

static int
answer(struct rpc_call *call, int rv, json_t *result, const char *err)
{
	if (rv != 0) {
		json_decref(result);
		return rpc_error(call, rv, "%s", err);
	}
	return reply_durable(call, result);
}

static int
m_status(struct rpc_call *call)
{
	int verbose = 0;

	if (rpc_param_bool(call, "verbose", 0, &verbose) < 0)
		return -1;
	return rpc_reply(call, engine_status(verbose));
}

static int
m_card_get(struct rpc_call *call)
{
	int one_time = 0, rv;
	json_t *out = NULL;
	char err[256];

	if (rpc_param_bool(call, "one_time", 0, &one_time) < 0)
		return -1;
	rv = engine_card(one_time, &out, err, sizeof err);
	return answer(call, rv, out, err);
}

static int
m_contact_add(struct rpc_call *call)
{
	const char *card = NULL, *name = NULL;
	json_t *out = NULL;
	char err[256];
	int rv;

	if (rpc_param_string(call, "card", 1, &card) < 0 ||
	    rpc_param_string(call, "name", 0, &name) < 0)
		return -1;
	rv = engine_contact_add(card, name, &out, err, sizeof err);
	return answer(call, rv, out, err);
}

static int
m_contact_list(struct rpc_call *call)
{
	json_t *arr = engine_contact_list();

	if (arr == NULL)
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	return rpc_reply(call, json_pack("{s:o}", "contacts", arr));
}

/* accept, reject, remove: {name} -> {} */
static int
by_name(struct rpc_call *call, int (*fn)(const char *, char *, size_t))
{
	const char *name = NULL;
	char err[256];
	int rv;

	if (rpc_param_string(call, "name", 1, &name) < 0)
		return -1;
	rv = fn(name, err, sizeof err);
	return answer(call, rv, json_object(), err);
}

static int m_contact_accept(struct rpc_call *c) { return by_name(c, engine_contact_accept); }
static int m_contact_reject(struct rpc_call *c) { return by_name(c, engine_contact_reject); }
static int m_contact_remove(struct rpc_call *c) { return by_name(c, engine_contact_remove); }

static int
m_contact_verify(struct rpc_call *call)
{
	const char *name = NULL;
	int mark = 0, rv;
	json_t *out = NULL;
	char err[256];

	if (rpc_param_string(call, "name", 1, &name) < 0 ||
	    rpc_param_bool(call, "mark", 0, &mark) < 0)
		return -1;
	rv = engine_contact_verify(name, mark, &out, err, sizeof err);
	return answer(call, rv, out, err);
}

static int
m_message_send(struct rpc_call *call)
{
	const char *to = NULL, *text = NULL;
	json_t *params = rpc_call_params(call), *t, *out = NULL;
	char err[256];
	int rv;

	if (rpc_param_string(call, "to", 1, &to) < 0 ||
	    rpc_param_string(call, "text", 1, &text) < 0)
		return -1;
	t = json_object_get(params, "text");
	rv = engine_send(to, text, json_string_length(t), &out, err, sizeof err);
	return answer(call, rv, out, err);
}

static void
waiter_done(struct waiter *w)
{
	if (w->timer != NULL)
		event_free(w->timer);
	memset(w, 0, sizeof *w);
}

static void
waiter_cancel(struct rpc_call *call, void *arg)
{
	struct waiter *w = arg;

	(void)call;
	waiter_done(w);
}

static void
waiter_reply(struct waiter *w)
{
	struct rpc_call *call = w->call;
	json_t *msgs = engine_receive(w->limit);

	waiter_done(w);
	if (msgs == NULL)
		rpc_error(call, RPC_INTERNAL_ERROR, "store error");
	else
		reply_durable(call, json_pack("{s:o}", "messages", msgs));
}

static void
waiter_timeout(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	waiter_reply(arg);
}

void
methods_message_arrived(void)
{
	for (int i = 0; i < WAITERS_MAX; i++) {
		if (waiters[i].call == NULL)
			continue;
		if (engine_pending_count() <= 0)
			return;
		waiter_reply(&waiters[i]);
	}
}

static int
m_message_receive(struct rpc_call *call)
{
	json_int_t wait = 0, limit = 100;
	json_t *msgs;
	struct waiter *w = NULL;
	struct timeval tv;

	if (rpc_param_int(call, "wait", 0, &wait) < 0 ||
	    rpc_param_int(call, "limit", 0, &limit) < 0)
		return -1;
	if (wait < 0 || wait > WAIT_MAX)
		return rpc_error(call, RPC_INVALID_PARAMS, "wait: 0 to %d seconds", WAIT_MAX);
	if (limit < 1 || limit > 256)
		return rpc_error(call, RPC_INVALID_PARAMS, "limit: 1 to 256");
	if (wait == 0 || engine_pending_count() > 0) {
		if ((msgs = engine_receive((int)limit)) == NULL)
			return rpc_error(call, RPC_INTERNAL_ERROR, "store error");
		return reply_durable(call, json_pack("{s:o}", "messages", msgs));
	}
	for (int i = 0; i < WAITERS_MAX; i++)
		if (waiters[i].call == NULL) {
			w = &waiters[i];
			break;
		}
	if (w == NULL)
		return rpc_error(call, RPC_ERR_BUSY, "too many waiting receive calls");
	w->call = call;
	w->limit = (int)limit;
	w->timer = evtimer_new(engine_event_base(), waiter_timeout, w);
	tv.tv_sec = (time_t)wait;
	tv.tv_usec = 0;
	if (w->timer == NULL || evtimer_add(w->timer, &tv) != 0) {
		waiter_done(w);
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	}
	rpc_defer(call, waiter_cancel, w);
	return 0;
}

static int
m_rotate(struct rpc_call *call)
{
	json_t *out = NULL;
	char err[256];
	int rv = engine_rotate(&out, err, sizeof err);

	return answer(call, rv, out, err);
}

const struct rpc_method engine_methods[] = {
	{ "status",		m_status,		0 },
	{ "card.get",		m_card_get,		0 },
	{ "contact.add",	m_contact_add,		0 },
	{ "contact.list",	m_contact_list,		RPC_F_NOPARAMS },
	{ "contact.accept",	m_contact_accept,	0 },
	{ "contact.reject",	m_contact_reject,	0 },
	{ "contact.remove",	m_contact_remove,	0 },
	{ "contact.verify",	m_contact_verify,	0 },
	{ "message.send",	m_message_send,		0 },
	{ "message.receive",	m_message_receive,	0 },
	{ "rotate",		m_rotate,		RPC_F_NOPARAMS },
	{ NULL,			NULL,			0 }
};
