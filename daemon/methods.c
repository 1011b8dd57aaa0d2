/* methods.c: the JSON-RPC methods — params in, JSON out, engine errors mapped to codes; the work is the engine's. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#include <config.h>	/* autoconf's */

#include "engine.h"
#include "methods.h"

/*
 * The socket API's version, in status: a client checks it before relying
 * on a method.  Raised when a method, a param or a result field changes
 * meaning or goes; additions (a new method, an optional param, a new
 * field, a new event) keep it.  1: the methods of README.md.
 */
#define API_VERSION	1

#define WAIT_MAX	3600
#define WAITERS_MAX	64
#define LIMIT_MAX	256

static struct event_base *mbase;

/* message.receive calls waiting for a message (long poll). */
static struct waiter {
	struct rpc_call	*call;
	int		 limit;
	struct event	*timer;
} waiters[WAITERS_MAX];

/* One table from the engine's errors to JSON-RPC codes. */
static const struct {
	enum engine_err	 err;
	int		 code;
} errmap[] = {
	{ ENGINE_EINVAL,	RPC_INVALID_PARAMS },
	{ ENGINE_ENOENT,	RPC_ERR_NOT_FOUND },
	{ ENGINE_EEXIST,	RPC_ERR_EXISTS },
	{ ENGINE_ESTATE,	RPC_ERR_STATE },
	{ ENGINE_ETOOBIG,	RPC_ERR_TOO_LARGE },
	{ ENGINE_EINTERNAL,	RPC_INTERNAL_ERROR },
};

static int
rpc_code(int err)
{
	for (size_t i = 0; i < sizeof errmap / sizeof errmap[0]; i++)
		if ((int)errmap[i].err == err)
			return errmap[i].code;
	return RPC_INTERNAL_ERROR;
}

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

	if (result == NULL)
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
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

/* rv from the engine: an error, or result once durable. */
static int
answer(struct rpc_call *call, int rv, json_t *result, const char *err)
{
	if (rv != ENGINE_OK) {
		json_decref(result);
		return rpc_error(call, rpc_code(rv), "%s", err);
	}
	return reply_durable(call, result);
}

static json_t *
contact_json(const struct engine_contact *c)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:b, s:s, s:I}",
	    "name", c->name, "peer_name", c->peer_name, "state", c->state,
	    "key_proven", c->key_proven, "verified", c->verified,
	    "fingerprint", c->fingerprint, "queued", (json_int_t)c->queued);
}

static void
append_text(const char *s, void *arr)
{
	json_array_append_new(arr, json_string(s));
}

struct id_lists {
	json_t	*clients, *topics;
};

static void
id_client(const char *s, void *arg)
{
	append_text(s, ((struct id_lists *)arg)->clients);
}

static void
id_topic(const char *s, void *arg)
{
	append_text(s, ((struct id_lists *)arg)->topics);
}

static int
m_status(struct rpc_call *call)
{
	struct engine_status s;
	int verbose = 0;
	json_t *o;

	if (rpc_param_bool(call, "verbose", 0, &verbose) < 0)
		return -1;
	engine_status(&s, verbose);
	o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:i, s:{s:I, s:I, s:I, s:I, s:I}, "
	    "s:I, s:I, s:{s:I, s:I, s:I}}",
	    "version", PACKAGE_VERSION,
	    "name", s.name,
	    "transport", s.transport,
	    "connected", s.connected,
	    "obscurity", s.obscurity,
	    "frame_size", (int)s.frame_size,
	    "contacts", "established", (json_int_t)s.established,
	    "pending", (json_int_t)s.pending,
	    "requested", (json_int_t)s.requested,
	    "accepted", (json_int_t)s.accepted,
	    "failed", (json_int_t)s.failed,
	    "outbox", (json_int_t)s.outbox,
	    "unread", (json_int_t)s.unread,
	    "frames", "in", (json_int_t)s.frames_in, "out", (json_int_t)s.frames_out,
	    "dropped", (json_int_t)s.dropped);
	if (o != NULL) {
		json_object_set_new(o, "wire", json_integer(s.wire));
		json_object_set_new(o, "api", json_integer(API_VERSION));
	}
	if (o != NULL && verbose) {
		struct id_lists l = { json_array(), json_array() };

		/* Every identifier the broker can see us by, right now. */
		if (l.clients != NULL && l.topics != NULL)
			engine_foreach_id(id_client, id_topic, &l);
		json_object_set_new(o, "ids", json_pack("{s:s, s:o*, s:o*, s:I, s:I}",
		    "card", s.card, "client_ids", l.clients, "topics", l.topics,
		    "epoch", (json_int_t)s.epoch,
		    "next_rotation", (json_int_t)s.next_rotation));
	}
	if (o == NULL)
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	return rpc_reply(call, o);
}

static int
m_card_get(struct rpc_call *call)
{
	struct engine_card card;
	int one_time = 0, rv;
	char err[256];

	if (rpc_param_bool(call, "one_time", 0, &one_time) < 0)
		return -1;
	rv = engine_card(one_time, &card, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_pack("{s:s, s:s, s:b}",
	    "uri", card.uri, "name", card.name, "one_time", card.one_time), err);
}

static int
m_contact_add(struct rpc_call *call)
{
	const char *card = NULL, *name = NULL;
	struct engine_contact c;
	char err[256];
	int rv;

	if (rpc_param_string(call, "card", 1, &card) < 0 ||
	    rpc_param_string(call, "name", 0, &name) < 0)
		return -1;
	rv = engine_contact_add(card, name, &c, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : contact_json(&c), err);
}

static int
list_cb(const struct engine_contact *c, void *arg)
{
	return json_array_append_new(arg, contact_json(c)) != 0;
}

static int
m_contact_list(struct rpc_call *call)
{
	json_t *arr = json_array();

	if (arr == NULL || engine_contact_foreach(list_cb, arr) != 0) {
		json_decref(arr);
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	}
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
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_object(), err);
}

static int
m_contact_accept(struct rpc_call *call)
{
	const char *name = NULL, *as = NULL;
	char err[256];
	int rv;

	if (rpc_param_string(call, "name", 1, &name) < 0 ||
	    rpc_param_string(call, "as", 0, &as) < 0)
		return -1;
	rv = as != NULL ? engine_contact_accept_as(name, as, err, sizeof err) :
	    engine_contact_accept(name, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_object(), err);
}

static int
m_contact_rename(struct rpc_call *call)
{
	const char *name = NULL, *to = NULL;
	struct engine_contact c;
	char err[256];
	int rv;

	if (rpc_param_string(call, "name", 1, &name) < 0 ||
	    rpc_param_string(call, "new_name", 1, &to) < 0)
		return -1;
	rv = engine_contact_rename(name, to, &c, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : contact_json(&c), err);
}
static int m_contact_reject(struct rpc_call *c) { return by_name(c, engine_contact_reject); }
static int m_contact_remove(struct rpc_call *c) { return by_name(c, engine_contact_remove); }

static int
m_contact_verify(struct rpc_call *call)
{
	const char *name = NULL;
	struct engine_contact c;
	int mark = 0, rv;
	char err[256];

	if (rpc_param_string(call, "name", 1, &name) < 0 ||
	    rpc_param_bool(call, "mark", 0, &mark) < 0)
		return -1;
	rv = engine_contact_verify(name, mark, &c, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_pack("{s:s, s:s, s:b}",
	    "name", c.name, "fingerprint", c.fingerprint, "verified", c.verified), err);
}

static int
m_message_send(struct rpc_call *call)
{
	const char *to = NULL, *text = NULL;
	json_t *t;
	char err[256], id[ENGINE_ID_TEXT];
	int rv;

	if (rpc_param_string(call, "to", 1, &to) < 0 ||
	    rpc_param_string(call, "text", 1, &text) < 0)
		return -1;
	t = json_object_get(rpc_call_params(call), "text");
	rv = engine_send(to, text, json_string_length(t), id, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_pack("{s:s}", "id", id),
	    err);
}

static json_t *
file_json(const struct engine_file *f)
{
	return json_pack("{s:s, s:s, s:I, s:s}", "name", f->name, "path", f->path,
	    "size", (json_int_t)f->size, "hash", f->hash);
}

/* A received message as JSON: text when it is UTF-8, else base64 data; a
 * file that came, with type "file" and where it is. */
static int
rx_cb(const struct engine_rx *m, void *arg)
{
	json_t *arr = arg, *text, *o;

	if (m->file != NULL) {
		o = json_pack("{s:s, s:s, s:s, s:o, s:I}", "id", m->id, "from", m->from,
		    "type", "file", "file", file_json(m->file),
		    "received", (json_int_t)m->received);
		return o == NULL || json_array_append_new(arr, o) != 0;
	}
	text = json_stringn(m->body != NULL ? (const char *)m->body : "", m->len);
	if (text != NULL)
		o = json_pack("{s:s, s:s, s:s, s:o, s:I}", "id", m->id, "from",
		    m->from, "type", "text", "text", text,
		    "received", (json_int_t)m->received);
	else {
		/* Not UTF-8: hand it over as base64 rather than lose it. */
		size_t blen = sodium_base64_encoded_len(m->len,
		    sodium_base64_VARIANT_ORIGINAL);
		char *b64;

		if ((b64 = malloc(blen)) == NULL)
			return 1;
		sodium_bin2base64(b64, blen, m->body, m->len,
		    sodium_base64_VARIANT_ORIGINAL);
		o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", m->id, "from",
		    m->from, "type", "text", "data", b64,
		    "received", (json_int_t)m->received);
		free(b64);
	}
	/* Not in the reply, so not taken: it stays for the next call. */
	return o == NULL || json_array_append_new(arr, o) != 0;
}

/* Takes up to limit messages and answers call with them. */
static int
reply_messages(struct rpc_call *call, int limit)
{
	json_t *arr = json_array();

	if (arr == NULL || engine_receive(limit, rx_cb, arr) < 0) {
		json_decref(arr);
		return rpc_error(call, RPC_INTERNAL_ERROR, "store error");
	}
	return reply_durable(call, json_pack("{s:o}", "messages", arr));
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
	int limit = w->limit;

	waiter_done(w);
	reply_messages(call, limit);
}

static void
waiter_timeout(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	waiter_reply(arg);
}

static void
message_arrived(void)
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
	struct waiter *w = NULL;
	struct timeval tv;

	if (rpc_param_int(call, "wait", 0, &wait) < 0 ||
	    rpc_param_int(call, "limit", 0, &limit) < 0)
		return -1;
	if (wait < 0 || wait > WAIT_MAX)
		return rpc_error(call, RPC_INVALID_PARAMS, "wait: 0 to %d seconds", WAIT_MAX);
	if (limit < 1 || limit > LIMIT_MAX)
		return rpc_error(call, RPC_INVALID_PARAMS, "limit: 1 to %d", LIMIT_MAX);
	if (wait == 0 || engine_pending_count() > 0)
		return reply_messages(call, (int)limit);
	for (int i = 0; i < WAITERS_MAX; i++)
		if (waiters[i].call == NULL) {
			w = &waiters[i];
			break;
		}
	if (w == NULL)
		return rpc_error(call, RPC_ERR_BUSY, "too many waiting receive calls");
	w->call = call;
	w->limit = (int)limit;
	w->timer = evtimer_new(mbase, waiter_timeout, w);
	tv.tv_sec = (time_t)wait;
	tv.tv_usec = 0;
	if (w->timer == NULL || evtimer_add(w->timer, &tv) != 0) {
		waiter_done(w);
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	}
	rpc_defer(call, waiter_cancel, w);
	return 0;
}

static json_t *
transfer_json(const struct engine_transfer *t)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:I}",
	    "id", t->id, "direction", t->outgoing ? "out" : "in",
	    "contact", t->contact, "name", t->name, "size", (json_int_t)t->size,
	    "bytes", (json_int_t)t->bytes, "state", t->state,
	    "created", (json_int_t)t->created);

	if (o != NULL && t->status != NULL)
		json_object_set_new(o, "reason", json_string(t->status));
	if (o != NULL && t->path[0] != '\0')
		json_object_set_new(o, "path", json_string(t->path));
	return o;
}

/*
 * file.send {to, fd?, path?, name?}.  With fd true the client passes the
 * open file with the request (SCM_RIGHTS), and its own permissions are
 * what count; path is then only shown.  Without, veild opens path itself,
 * for root and veild's own user only.  The answer comes once veild holds
 * its own copy and the transfer is durable: its progress comes as
 * "transfer" notifications.
 */
struct file_send {
	struct rpc_call	*call;
	void		*handle;
};

static void
file_send_cancel(struct rpc_call *call, void *arg)
{
	struct file_send *fs = arg;

	(void)call;
	engine_file_send_abort(fs->handle);
	free(fs);
}

static void
file_send_done(void *arg, int rv, const struct engine_transfer *t, const char *err)
{
	struct file_send *fs = arg;
	struct rpc_call *call = fs->call;

	free(fs);
	/* The call is ours again: answered now, so no cancel will come. */
	answer(call, rv, rv != ENGINE_OK ? NULL : transfer_json(t), err);
}

static int
m_file_send(struct rpc_call *call)
{
	const char *to = NULL, *path = NULL, *name = NULL;
	struct file_send *fs;
	uid_t uid = (uid_t)-1;
	gid_t gid;
	int withfd = 0, fd = -1, rv;
	char err[512];

	if (rpc_param_string(call, "to", 1, &to) < 0 ||
	    rpc_param_bool(call, "fd", 0, &withfd) < 0 ||
	    rpc_param_string(call, "path", 0, &path) < 0 ||
	    rpc_param_string(call, "name", 0, &name) < 0)
		return -1;
	if (withfd && (fd = rpc_call_take_fd(call)) == -1)
		return rpc_error(call, RPC_INVALID_PARAMS, "fd: no file descriptor "
		    "came with the request (SCM_RIGHTS)");
	if (!withfd && path == NULL) {
		return rpc_error(call, RPC_INVALID_PARAMS, "give path, or fd: true "
		    "with the open file passed along");
	}
	if (rpc_call_peer(call, &uid, &gid) != 0 ||
	    (fs = calloc(1, sizeof *fs)) == NULL) {
		if (fd != -1)
			close(fd);
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	}
	fs->call = call;
	rv = engine_file_send(to, fd, path, uid, name, file_send_done, fs, &fs->handle,
	    err, sizeof err);
	if (rv != ENGINE_OK) {
		free(fs);
		return rpc_error(call, rpc_code(rv), "%s", err);
	}
	rpc_defer(call, file_send_cancel, fs);
	return 0;
}

static int
transfer_cb(const struct engine_transfer *t, void *arg)
{
	return json_array_append_new(arg, transfer_json(t)) != 0;
}

static int
m_transfer_list(struct rpc_call *call)
{
	json_t *arr = json_array();

	if (arr == NULL || engine_transfer_foreach(transfer_cb, arr) != 0) {
		json_decref(arr);
		return rpc_error(call, RPC_INTERNAL_ERROR, "store error");
	}
	return rpc_reply(call, json_pack("{s:o}", "transfers", arr));
}

static int
m_transfer_cancel(struct rpc_call *call)
{
	const char *id = NULL;
	char err[256];
	int rv;

	if (rpc_param_string(call, "id", 1, &id) < 0)
		return -1;
	rv = engine_transfer_cancel(id, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_object(), err);
}

static int
m_rotate(struct rpc_call *call)
{
	int announced = 0, rv;
	int64_t epoch = 0;
	char err[256];

	rv = engine_rotate(&announced, &epoch, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_pack("{s:i, s:I}",
	    "announced", announced, "epoch", (json_int_t)epoch), err);
}

/* The engine's events as notifications (they come after the commit). */
static void
on_event(const struct engine_event *ev, void *arg)
{
	json_t *p = NULL;

	(void)arg;
	switch (ev->type) {
	case ENGINE_EV_MESSAGE:
		p = json_pack("{s:s, s:s, s:I, s:s}", "id", ev->msgid, "from", ev->name,
		    "received", (json_int_t)ev->received,
		    "type", ev->msgtype == VEIL_T_FILE ? "file" : "text");
		rpc_notify("message", p);
		message_arrived();
		return;
	case ENGINE_EV_CONTACT_REQUEST:
		/* The fingerprint is of a key the requester only claims:
		 * it means something once the contact is established. */
		rpc_notify("contact.request", json_pack("{s:s, s:s, s:s, s:b}",
		    "name", ev->name, "peer_name", ev->peer_name,
		    "fingerprint", ev->fingerprint, "key_proven", 0));
		return;
	case ENGINE_EV_CONTACT_STATE:
		p = json_pack("{s:s, s:s}", "name", ev->name, "state", ev->state);
		if (p != NULL && ev->warning != NULL)
			json_object_set_new(p, "warning", json_string(ev->warning));
		rpc_notify("contact.state", p);
		return;
	case ENGINE_EV_DELIVERY:
		rpc_notify("delivery", json_pack("{s:s, s:s}", "id", ev->msgid,
		    "to", ev->name));
		return;
	case ENGINE_EV_TRANSFER:
		rpc_notify("transfer", transfer_json(ev->transfer));
		return;
	}
}

void
methods_init(struct event_base *base)
{
	mbase = base;
	engine_set_event_cb(on_event, NULL);
}

void
methods_shutdown(void)
{
	engine_set_event_cb(NULL, NULL);
	mbase = NULL;
}

const struct rpc_method methods_table[] = {
	{ "status",		m_status,		"verbose" },
	{ "card.get",		m_card_get,		"one_time" },
	{ "contact.add",	m_contact_add,		"card,name" },
	{ "contact.list",	m_contact_list,		"" },
	{ "contact.accept",	m_contact_accept,	"name,as" },
	{ "contact.rename",	m_contact_rename,	"name,new_name" },
	{ "contact.reject",	m_contact_reject,	"name" },
	{ "contact.remove",	m_contact_remove,	"name" },
	{ "contact.verify",	m_contact_verify,	"name,mark" },
	{ "message.send",	m_message_send,		"to,text" },
	{ "message.receive",	m_message_receive,	"wait,limit" },
	{ "file.send",		m_file_send,		"to,fd,path,name" },
	{ "transfer.list",	m_transfer_list,	"" },
	{ "transfer.cancel",	m_transfer_cancel,	"id" },
	{ "rotate",		m_rotate,		"" },
	{ NULL,			NULL,			NULL }
};
