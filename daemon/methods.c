/* methods.c: the JSON-RPC methods — params in, JSON out, engine errors mapped to codes; the work is the engine's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#include <config.h>	/* autoconf's */

#include "engine.h"
#include "log.h"
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
#define ACK_MAX		1024	/* ids in one message.ack */
/* A text may take this much more as JSON than as base64 and stay text
 * (a short line with a tab or a newline). */
#define TEXT_SLACK	256

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
	{ ENGINE_EQUOTA,	RPC_ERR_BUSY },
	{ ENGINE_ESTORAGE,	RPC_ERR_STORAGE },
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
		const char *why = engine_store_problem();

		if (committed) {
			rpc_reply(d->call, d->result);
			d->result = NULL;
		} else if (why != NULL)
			rpc_error(d->call, RPC_ERR_STORAGE, "%s", why);
		else
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
	const char *why;

	if (rv != ENGINE_OK) {
		json_decref(result);
		/* A store failure while the disk is known to take no changes
		 * is the disk's: say so, as for a failed commit. */
		if (rv == ENGINE_EINTERNAL && (why = engine_store_problem()) != NULL)
			return rpc_error(call, RPC_ERR_STORAGE, "%s", why);
		return rpc_error(call, rpc_code(rv), "%s", err);
	}
	return reply_durable(call, result);
}

static json_t *
contact_json(const struct engine_contact *c)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:b, s:s, s:I, s:b}",
	    "name", c->name, "peer_name", c->peer_name, "state", c->state,
	    "key_proven", c->key_proven, "verified", c->verified,
	    "fingerprint", c->fingerprint, "queued", (json_int_t)c->queued,
	    "resetting", c->resetting);
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
		json_object_set_new(o, "store", json_string(s.store));
		json_object_set_new(o, "api", json_integer(API_VERSION));
		methods_vault_status(o);
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
	const char *to = NULL, *text = NULL, *key = NULL;
	json_t *t;
	char err[256], id[ENGINE_ID_TEXT];
	int rv;

	if (rpc_param_string(call, "to", 1, &to) < 0 ||
	    rpc_param_string(call, "text", 1, &text) < 0 ||
	    rpc_param_string(call, "key", 0, &key) < 0)
		return -1;
	t = json_object_get(rpc_call_params(call), "text");
	rv = engine_send_keyed(to, text, json_string_length(t), key,
	    key != NULL ? strlen(key) : 0, id, err, sizeof err);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_pack("{s:s}", "id", id),
	    err);
}

/* The bytes a JSON string of these len bytes takes, quotes included: a
 * quote, a backslash and the short escapes take 2, other controls 6
 * (\u00XX); UTF-8 goes as it is. */
static size_t
json_text_size(const uint8_t *p, size_t len)
{
	size_t n = 2;

	for (size_t i = 0; i < len; i++)
		if (p[i] == '"' || p[i] == '\\' || p[i] == '\b' || p[i] == '\f' ||
		    p[i] == '\n' || p[i] == '\r' || p[i] == '\t')
			n += 2;
		else if (p[i] < 0x20)
			n += 6;
		else
			n++;
	return n;
}

/* Writes the body as a JSON string, escaping as json_text_size() counts. */
static int
write_text(struct rpc_out *out, const uint8_t *p, size_t len)
{
	static const char hexd[] = "0123456789abcdef";
	size_t run = 0;
	char esc[6];

	if (rpc_out_write(out, "\"", 1) != 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		size_t elen = 2;

		if (p[i] >= 0x20 && p[i] != '"' && p[i] != '\\')
			continue;
		if (rpc_out_write(out, p + run, i - run) != 0)
			return -1;
		run = i + 1;
		esc[0] = '\\';
		switch (p[i]) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hexd[p[i] >> 4];
			esc[5] = hexd[p[i] & 15];
			elen = 6;
		}
		if (rpc_out_write(out, esc, elen) != 0)
			return -1;
	}
	if (rpc_out_write(out, p + run, len - run) != 0)
		return -1;
	return rpc_out_write(out, "\"", 1);
}

/* Writes the body as a base64 JSON string, a piece at a time. */
static int
write_b64(struct rpc_out *out, const uint8_t *p, size_t len)
{
	enum { CHUNK = 3 * 16384 };
	char buf[4 * (CHUNK / 3) + 1];

	if (rpc_out_write(out, "\"", 1) != 0)
		return -1;
	for (size_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;

		sodium_bin2base64(buf, sizeof buf, p + off, n,
		    sodium_base64_VARIANT_ORIGINAL);
		if (rpc_out_write(out, buf, strlen(buf)) != 0)
			return -1;
	}
	return rpc_out_write(out, "\"", 1);
}

/* A path as JSON: null when it is not UTF-8 (files.dir is the admin's
 * bytes), so that the message around it is never stuck unencodable. */
static json_t *
path_json(const char *path)
{
	json_t *p = json_string(path);

	return p != NULL ? p : json_null();
}

static json_t *
file_json(const struct engine_file *f)
{
	return json_pack("{s:s, s:o, s:I, s:s}", "name", f->name,
	    "path", path_json(f->path), "size", (json_int_t)f->size, "hash", f->hash);
}

/* One reply: where it goes and the bytes of its messages so far. */
struct reply_acc {
	struct rpc_out	*out;
	size_t		 bytes, budget;
	int		 n, limit, failed;
};

/* A file that came, into the reply: {"id", "type": "file", "from", "file":
 * {name, path, size, hash}, "received"}; small, so built with jansson. */
static int
file_cb(const struct engine_rx *m, struct reply_acc *r)
{
	json_t *o;
	char *s;
	size_t len;

	o = json_pack("{s:s, s:s, s:s, s:o, s:I}", "id", m->id, "type", "file",
	    "from", m->from, "file", file_json(m->file),
	    "received", (json_int_t)m->received);
	if (o == NULL || (s = json_dumps(o, JSON_COMPACT)) == NULL) {
		json_decref(o);
		return 1;
	}
	json_decref(o);
	len = strlen(s);
	if (r->n > 0 && r->bytes + len + 1 > r->budget) {
		free(s);
		return 1;
	}
	if ((r->n > 0 && rpc_out_write(r->out, ",", 1) != 0) ||
	    rpc_out_write(r->out, s, len) != 0) {
		free(s);
		r->failed = 1;
		return 1;
	}
	free(s);
	r->bytes += len + 1;
	r->n++;
	return 0;
}

/*
 * One received message into the reply: {"id", "type": "text", "from",
 * "text" or "data", "received"}.  "text" when the body is UTF-8 and, as JSON, at most
 * TEXT_SLACK bytes longer than base64 would be, else "data" in base64: no
 * message costs much more than 4/3 of its size in a reply, whatever bytes
 * a contact put in it (control characters would cost six each as text).  Its size is known before a
 * byte is written: once the reply would pass the budget it stops there
 * (the message is the next reply's first); one message always goes,
 * however large, or it could never be received.
 */
static int
rx_cb(const struct engine_rx *m, void *arg)
{
	struct reply_acc *r = arg;
	const uint8_t *body = m->body != NULL ? m->body : (const uint8_t *)"";
	size_t tsize = SIZE_MAX, bsize = 4 * ((m->len + 2) / 3) + 2, size;
	char head[96 + 2 * ENGINE_ID_TEXT], tail[64], *from;
	json_t *f;
	int as_text;

	if (m->file != NULL)
		return file_cb(m, r);

	if (veil_utf8_valid(body, m->len))
		tsize = json_text_size(body, m->len);
	as_text = tsize <= bsize + TEXT_SLACK;
	if ((f = json_string(m->from)) == NULL)
		f = json_string("");
	from = json_dumps(f, JSON_ENCODE_ANY);
	json_decref(f);
	if (from == NULL)
		return 1;
	snprintf(head, sizeof head, "%s{\"id\":\"%s\",\"type\":\"text\",\"from\":",
	    r->n > 0 ? "," : "", m->id);
	snprintf(tail, sizeof tail, ",\"received\":%lld}", (long long)m->received);
	size = strlen(head) + strlen(from) + strlen(",\"text\":") +
	    (as_text ? tsize : bsize) + strlen(tail);
	if (r->n > 0 && r->bytes + size > r->budget) {
		free(from);
		return 1;
	}
	if (rpc_out_write(r->out, head, strlen(head)) != 0 ||
	    rpc_out_write(r->out, from, strlen(from)) != 0 ||
	    rpc_out_write(r->out, as_text ? ",\"text\":" : ",\"data\":", 8) != 0 ||
	    (as_text ? write_text(r->out, body, m->len) :
	    write_b64(r->out, body, m->len)) != 0 ||
	    rpc_out_write(r->out, tail, strlen(tail)) != 0) {
		free(from);
		r->failed = 1;
		return 1;
	}
	free(from);
	r->bytes += size;
	r->n++;
	return 0;
}

static int
write_messages(void *arg, struct rpc_out *out)
{
	struct reply_acc *r = arg;

	r->out = out;
	if (rpc_out_write(out, "{\"messages\":[", 13) != 0)
		return -1;
	/* A store error after some messages still ends a valid reply:
	 * nothing was taken, the next call hands them out again. */
	if (engine_receive(r->limit, rx_cb, r) < 0)
		log_warnx("message.receive: a store error cut the reply short");
	if (r->failed)
		return -1;
	return rpc_out_write(out, "]}", 2);
}

/* Up to limit messages, within the reply budget, and answers call with
 * them.  Nothing is taken: message.ack does that. */
static int
reply_messages(struct rpc_call *call, int limit)
{
	struct reply_acc r;

	memset(&r, 0, sizeof r);
	r.budget = engine_receive_budget();
	r.limit = limit;
	return rpc_reply_stream(call, write_messages, &r);
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
		if (engine_pending_any() <= 0)
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
	if (wait == 0 || engine_pending_any() != 0)
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

/* {ids: [message IDs]} -> {acked: n}: the app has these messages. */
static int
m_message_ack(struct rpc_call *call)
{
	json_t *ids = json_object_get(rpc_call_params(call), "ids"), *v;
	const char **list;
	char err[256];
	size_t i, n;
	int rv, taken = 0;

	if (!json_is_array(ids))
		return rpc_error(call, RPC_INVALID_PARAMS, "ids: an array of "
		    "message IDs is required");
	if ((n = json_array_size(ids)) > ACK_MAX)
		return rpc_error(call, RPC_INVALID_PARAMS, "ids: at most %d",
		    ACK_MAX);
	if ((list = calloc(n + 1, sizeof *list)) == NULL)
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	json_array_foreach(ids, i, v) {
		if ((list[i] = json_string_value(v)) == NULL) {
			free(list);
			return rpc_error(call, RPC_INVALID_PARAMS,
			    "ids[%zu]: not a string", i);
		}
	}
	rv = engine_ack(list, n, &taken, err, sizeof err);
	free(list);
	return answer(call, rv, rv != ENGINE_OK ? NULL : json_pack("{s:i}",
	    "acked", taken), err);
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
		json_object_set_new(o, "path", path_json(t->path));
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
	{ "message.send",	m_message_send,		"to,text,key" },
	{ "message.receive",	m_message_receive,	"wait,limit" },
	{ "message.ack",	m_message_ack,		"ids" },
	{ "file.send",		m_file_send,		"to,fd,path,name" },
	{ "transfer.list",	m_transfer_list,	"" },
	{ "transfer.cancel",	m_transfer_cancel,	"id" },
	{ "rotate",		m_rotate,		"" },
	{ "unlock",		m_unlock,		"passphrase" },
	{ "passphrase",		m_passphrase,		"old,new,forget_keys" },
	{ "backup.create",	m_backup_create,	"passphrase,public_key" },
	{ "backup.restore",	m_backup_restore,
	    "passphrase,recovery_key,new_passphrase" },
	{ "backup.now",		m_backup_now,		"" },
	{ NULL,			NULL,			NULL }
};
