/* veild JSON-RPC 2.0: framing, validation, method dispatch, deferred replies, notifications. */
#include <sys/queue.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control.h"
#include "log.h"
#include "rpc.h"

#define RPC_MSG_MAX	512	/* error message text */

/* Call states. */
#define CALL_IN_HANDLER	0x01	/* the dispatcher frees it, not rpc_reply */
#define CALL_DEFERRED	0x02
#define CALL_ANSWERED	0x04
#define CALL_LINKED	0x08	/* on rc->deferred */

struct rpc_call {
	TAILQ_ENTRY(rpc_call)	 entry;
	struct rpc_conn		*rc;
	json_t			*req;		/* owns id, method and params */
	json_t			*id;		/* NULL: none or invalid */
	json_t			*params;	/* owned; {} when absent */
	const char		*method;
	int			 notification;
	unsigned		 state;
	rpc_cancel_cb		 cancel;
	void			*cancel_arg;
};

struct rpc_conn {
	TAILQ_ENTRY(rpc_conn)	 entry;
	struct ctl_conn		*cc;
	TAILQ_HEAD(, rpc_call)	 deferred;
	int			 subscribed;
	unsigned		 events;	/* RPC_EV_* mask */
};

/* Events a client may subscribe to; bit i is rpc_events[i]. */
static const char *const rpc_events[] = {
	"message", "contact.request", "contact.state", "delivery", "transfer", NULL
};
#define RPC_EV_ALL	(~0u)	/* also matches events not in the list */

static TAILQ_HEAD(, rpc_conn) rpc_conns = TAILQ_HEAD_INITIALIZER(rpc_conns);
static const struct rpc_method *rpc_table;

static int	m_subscribe(struct rpc_call *);
static int	m_unsubscribe(struct rpc_call *);

static const struct rpc_method rpc_builtin[] = {
	{ "subscribe",		m_subscribe,	"events" },
	{ "unsubscribe",	m_unsubscribe,	"" },
	{ NULL,			NULL,		0 }
};

void
rpc_init(const struct rpc_method *table)
{
	rpc_table = table;
}

void
rpc_shutdown(void)
{
	if (!TAILQ_EMPTY(&rpc_conns))
		log_warnx("rpc: shutdown with clients still connected");
	rpc_table = NULL;
}

static int
dump_cb(const char *buf, size_t size, void *arg)
{
	return control_line_add(arg, buf, size) == 0 ? 0 : -1;
}

/* Serialises msg as one line straight into the client's output (a reply
 * of several MiB is not also held as one string); consumes msg. */
static int
send_msg(struct ctl_conn *cc, json_t *msg)
{
	int	 r = -1;

	if (msg == NULL)
		return -1;
	if (control_line_begin(cc) == 0) {
		if (json_dump_callback(msg, dump_cb, cc, JSON_COMPACT) == 0)
			r = control_line_end(cc);
		else {
			log_warnx("rpc: cannot serialise a reply");
			control_line_abort(cc);
		}
	}
	json_decref(msg);
	return r;
}

/* Error text must be valid UTF-8 for jansson; a message cut by snprintf
 * or quoting the bytes jansson choked on may not be. */
static json_t *
error_text(const char *text)
{
	char	 ascii[RPC_MSG_MAX];
	json_t	*s;
	size_t	 i;

	if ((s = json_string(text)) != NULL)
		return s;
	for (i = 0; text[i] != '\0' && i < sizeof(ascii) - 1; i++)
		ascii[i] = (unsigned char)text[i] < 0x80 ? text[i] : '?';
	ascii[i] = '\0';
	return json_string(ascii);
}

static json_t *
error_msg(json_t *id, int code, const char *text)
{
	return json_pack("{s:s, s:{s:i, s:o}, s:O}", "jsonrpc", "2.0",
	    "error", "code", code, "message", error_text(text),
	    "id", id ? id : json_null());
}

void
rpc_conn_error(struct ctl_conn *cc, int code, const char *text)
{
	send_msg(cc, error_msg(NULL, code, text));
}

static void
call_free(struct rpc_call *call)
{
	if (call->state & CALL_LINKED) {
		TAILQ_REMOVE(&call->rc->deferred, call, entry);
		call->state &= ~CALL_LINKED;
	}
	json_decref(call->params);
	json_decref(call->req);
	free(call);
}

/* Marks the call answered; returns 0 if a message should go out. */
static int
call_answer(struct rpc_call *call)
{
	if (call->state & CALL_ANSWERED) {
		log_warnx("rpc: %s answered twice",
		    call->method ? call->method : "request");
		return -1;
	}
	call->state |= CALL_ANSWERED;
	/* Unlink first: from here on the client no longer waits on it. */
	if (call->state & CALL_LINKED) {
		TAILQ_REMOVE(&call->rc->deferred, call, entry);
		call->state &= ~CALL_LINKED;
	}
	return 0;
}

static int
call_done(struct rpc_call *call, int r)
{
	if (!(call->state & CALL_IN_HANDLER))
		call_free(call);
	return r;
}

int
rpc_reply(struct rpc_call *call, json_t *result)
{
	json_t	*msg;
	int	 r = 0;

	if (result == NULL)
		result = json_object();
	if (call_answer(call) == -1) {
		json_decref(result);
		return -1;
	}
	if (call->notification || call->rc == NULL) {
		json_decref(result);
		return call_done(call, call->rc == NULL ? -1 : 0);
	}
	/* "o" steals result, also when packing fails (jansson >= 2.11). */
	msg = json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result,
	    "id", call->id ? call->id : json_null());
	if (msg == NULL) {
		/* Still owe the client an answer, and a small one may fit. */
		send_msg(call->rc->cc, error_msg(call->id, RPC_INTERNAL_ERROR,
		    "out of memory"));
		return call_done(call, -1);
	}
	r = send_msg(call->rc->cc, msg);
	return call_done(call, r);
}

struct rpc_out {
	struct ctl_conn	*cc;
	int		 failed;
};

int
rpc_out_write(struct rpc_out *o, const void *buf, size_t len)
{
	if (o->failed)
		return -1;
	if (len > 0 && control_line_add(o->cc, buf, len) != 0) {
		o->failed = 1;
		return -1;
	}
	return 0;
}

int
rpc_reply_stream(struct rpc_call *call, int (*fn)(void *, struct rpc_out *),
    void *arg)
{
	static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
	static const char mid[] = ",\"result\":";
	struct rpc_out	 o;
	char		*id;
	int		 r;

	if (call_answer(call) == -1)
		return -1;
	if (call->notification || call->rc == NULL)
		return call_done(call, call->rc == NULL ? -1 : 0);
	if ((id = json_dumps(call->id ? call->id : json_null(),
	    JSON_COMPACT | JSON_ENCODE_ANY)) == NULL) {
		send_msg(call->rc->cc, error_msg(call->id, RPC_INTERNAL_ERROR,
		    "out of memory"));
		return call_done(call, -1);
	}
	o.cc = call->rc->cc;
	o.failed = 0;
	if (control_line_begin(o.cc) != 0) {
		free(id);
		return call_done(call, -1);
	}
	rpc_out_write(&o, head, sizeof(head) - 1);
	rpc_out_write(&o, id, strlen(id));
	rpc_out_write(&o, mid, sizeof(mid) - 1);
	free(id);
	r = fn(arg, &o);
	rpc_out_write(&o, "}", 1);
	if (r != 0 || o.failed) {
		control_line_abort(o.cc);
		return call_done(call, -1);
	}
	return call_done(call, control_line_end(o.cc));
}

int
rpc_error(struct rpc_call *call, int code, const char *fmt, ...)
{
	char	 text[RPC_MSG_MAX];
	va_list	 ap;

	if (call_answer(call) == -1)
		return -1;
	if (!call->notification && call->rc != NULL) {
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		send_msg(call->rc->cc, error_msg(call->id, code, text));
	}
	call_done(call, -1);
	return -1;
}

void
rpc_defer(struct rpc_call *call, rpc_cancel_cb cancel, void *arg)
{
	call->cancel = cancel;
	call->cancel_arg = arg;
	call->state |= CALL_DEFERRED;
	if (!(call->state & (CALL_ANSWERED | CALL_LINKED)) && call->rc) {
		TAILQ_INSERT_TAIL(&call->rc->deferred, call, entry);
		call->state |= CALL_LINKED;
	}
}

json_t *
rpc_call_params(const struct rpc_call *call)
{
	return call->params;
}

int
rpc_call_take_fd(struct rpc_call *call)
{
	return call->rc != NULL && call->rc->cc != NULL ?
	    control_take_fd(call->rc->cc) : -1;
}

int
rpc_call_peer(const struct rpc_call *call, uid_t *uid, gid_t *gid)
{
	if (call->rc == NULL)
		return -1;
	control_peer(call->rc->cc, uid, gid);
	return 0;
}

static json_t *
param_get(struct rpc_call *call, const char *name)
{
	json_t	*v;

	v = json_object_get(call->params, name);
	return json_is_null(v) ? NULL : v;
}

static int
param_missing(struct rpc_call *call, const char *name, int required)
{
	if (required)
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "missing parameter \"%s\"", name);
	return 0;
}

int
rpc_param_string(struct rpc_call *call, const char *name, int required,
    const char **out)
{
	json_t		*v;
	const char	*s;

	if ((v = param_get(call, name)) == NULL)
		return param_missing(call, name, required);
	if (!json_is_string(v))
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "parameter \"%s\" must be a string", name);
	/* The parser refuses \u0000, but params may come from elsewhere. */
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "parameter \"%s\" contains a NUL character", name);
	*out = s;
	return 1;
}

int
rpc_param_bool(struct rpc_call *call, const char *name, int required,
    int *out)
{
	json_t	*v;

	if ((v = param_get(call, name)) == NULL)
		return param_missing(call, name, required);
	if (!json_is_boolean(v))
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "parameter \"%s\" must be true or false", name);
	*out = json_is_true(v);
	return 1;
}

int
rpc_param_int(struct rpc_call *call, const char *name, int required,
    json_int_t *out)
{
	json_t	*v;

	if ((v = param_get(call, name)) == NULL)
		return param_missing(call, name, required);
	if (!json_is_integer(v))
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "parameter \"%s\" must be an integer", name);
	*out = json_integer_value(v);
	return 1;
}

static unsigned
event_bit(const char *name)
{
	unsigned	i;

	for (i = 0; rpc_events[i] != NULL; i++)
		if (strcmp(rpc_events[i], name) == 0)
			return 1u << i;
	return 0;
}

int
rpc_notify(const char *method, json_t *params)
{
	struct rpc_conn	*rc;
	json_t		*msg;
	char		*s;
	size_t		 len;
	unsigned	 bit;
	int		 n = 0;

	if (params == NULL)
		params = json_object();
	msg = json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method,
	    "params", params);
	if (msg == NULL) {
		log_warnx("rpc: cannot build notification %s", method);
		return 0;
	}
	s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (s == NULL) {
		log_warnx("rpc: cannot serialise notification %s", method);
		return 0;
	}
	len = strlen(s);
	bit = event_bit(method);
	/* control_send never frees a connection (drops are reaped later),
	 * so the list stays intact while we walk it. */
	TAILQ_FOREACH(rc, &rpc_conns, entry) {
		if (!rc->subscribed)
			continue;
		if (rc->events != RPC_EV_ALL && (rc->events & bit) == 0)
			continue;
		if (control_send(rc->cc, s, len) == 0)
			n++;
	}
	free(s);
	return n;
}

/* subscribe {events?: ["message", ...]}: notifications from now on. */
static int
m_subscribe(struct rpc_call *call)
{
	json_t		*ev, *v, *names;
	const char	*s;
	size_t		 i;
	unsigned	 mask = 0, bit;

	ev = param_get(call, "events");
	if (ev == NULL)
		mask = RPC_EV_ALL;
	else if (!json_is_array(ev) || json_array_size(ev) == 0)
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "parameter \"events\" must be a non-empty array of strings");
	else {
		json_array_foreach(ev, i, v) {
			if (!json_is_string(v))
				return rpc_error(call, RPC_INVALID_PARAMS,
				    "parameter \"events\" must be a non-empty "
				    "array of strings");
			s = json_string_value(v);
			if ((bit = event_bit(s)) == 0)
				return rpc_error(call, RPC_INVALID_PARAMS,
				    "unknown event \"%.64s\"", s);
			mask |= bit;
		}
	}
	if ((names = json_array()) == NULL)
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	for (i = 0; rpc_events[i] != NULL; i++)
		if (mask & (1u << i))
			json_array_append_new(names, json_string(rpc_events[i]));
	call->rc->subscribed = 1;
	call->rc->events = mask;
	return rpc_reply(call, json_pack("{s:o}", "events", names));
}

static int
m_unsubscribe(struct rpc_call *call)
{
	call->rc->subscribed = 0;
	call->rc->events = 0;
	return rpc_reply(call, NULL);
}

static const struct rpc_method *
method_find(const char *name)
{
	const struct rpc_method	*m;

	for (m = rpc_builtin; m->name != NULL; m++)
		if (strcmp(m->name, name) == 0)
			return m;
	for (m = rpc_table; m != NULL && m->name != NULL; m++)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

/* Is name one of the comma-separated names in list? */
static int
param_listed(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p;

	for (p = list; *p != '\0'; p++) {	/* p: the start of an item */
		if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
		if ((p = strchr(p, ',')) == NULL)
			break;
	}
	return 0;
}

/* Every param must be one the method declares; answers -32602 if not. */
static int
params_check(struct rpc_call *call, const struct rpc_method *m)
{
	const char	*key;
	json_t		*v;

	if (json_object_size(call->params) == 0)
		return 0;
	if (m->params == NULL || *m->params == '\0')
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "%s takes no parameters", m->name);
	json_object_foreach(call->params, key, v) {
		if (!param_listed(m->params, key))
			return rpc_error(call, RPC_INVALID_PARAMS,
			    "unknown parameter \"%.64s\" (%s takes %s)", key,
			    m->name, m->params);
	}
	return 0;
}

static int
valid_id(const json_t *id)
{
	return json_is_string(id) || json_is_number(id) || json_is_null(id);
}

/* Checks the request shape; answers and returns -1 if it is not one. */
static int
request_check(struct rpc_call *call)
{
	json_t		*v;
	const char	*key, *s;

	json_object_foreach(call->req, key, v) {
		if (strcmp(key, "jsonrpc") != 0 && strcmp(key, "method") != 0 &&
		    strcmp(key, "params") != 0 && strcmp(key, "id") != 0)
			return rpc_error(call, RPC_INVALID_REQUEST,
			    "unknown member \"%.64s\"", key);
	}
	v = json_object_get(call->req, "id");
	if (v != NULL && !valid_id(v))
		return rpc_error(call, RPC_INVALID_REQUEST,
		    "\"id\" must be a string, a number or null");
	v = json_object_get(call->req, "jsonrpc");
	if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0)
		return rpc_error(call, RPC_INVALID_REQUEST,
		    "\"jsonrpc\" must be \"2.0\"");
	v = json_object_get(call->req, "method");
	if (!json_is_string(v) || json_string_length(v) == 0)
		return rpc_error(call, RPC_INVALID_REQUEST,
		    "\"method\" must be a non-empty string");
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return rpc_error(call, RPC_INVALID_REQUEST,
		    "\"method\" contains a NUL character");
	call->method = s;
	v = json_object_get(call->req, "params");
	if (v == NULL || json_is_null(v))
		call->params = json_object();
	else if (json_is_object(v))
		call->params = json_incref(v);
	else if (json_is_array(v))
		return rpc_error(call, RPC_INVALID_PARAMS,
		    "\"params\" must be an object (named parameters)");
	else
		return rpc_error(call, RPC_INVALID_REQUEST,
		    "\"params\" must be an object");
	if (call->params == NULL)
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	return 0;
}

static int
blank(const char *line, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return 0;
	return 1;
}

void
rpc_conn_input(struct rpc_conn *rc, const char *line, size_t len)
{
	const struct rpc_method	*m;
	struct rpc_call		*call;
	json_error_t		 err;
	json_t			*req, *id;
	int			 r;

	/* An empty line is what a human typing into socat sends by accident. */
	if (blank(line, len))
		return;
	/* jansson rejects NUL bytes, \u0000 and invalid UTF-8 by default. */
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
	    &err);
	if (req == NULL) {
		char	text[RPC_MSG_MAX];

		snprintf(text, sizeof(text), "parse error: %s at byte %d",
		    err.text, err.position);
		rpc_conn_error(rc->cc, RPC_PARSE_ERROR, text);
		return;
	}
	if (!json_is_object(req)) {
		rpc_conn_error(rc->cc, RPC_INVALID_REQUEST, json_is_array(req) ?
		    "batch requests are not supported" :
		    "a request must be a JSON object");
		json_decref(req);
		return;
	}
	if ((call = calloc(1, sizeof(*call))) == NULL) {
		rpc_conn_error(rc->cc, RPC_INTERNAL_ERROR, "out of memory");
		json_decref(req);
		return;
	}
	call->rc = rc;
	call->req = req;
	id = json_object_get(req, "id");
	if (id != NULL && valid_id(id))
		call->id = id;
	call->state = CALL_IN_HANDLER;

	/* An invalid request is not a notification: it is answered (id null
	 * when there was none), as JSON-RPC 2.0 section 5 asks. */
	if (request_check(call) == 0) {
		call->notification = (id == NULL);
		if ((m = method_find(call->method)) == NULL)
			rpc_error(call, RPC_METHOD_NOT_FOUND,
			    "method not found: %.64s", call->method);
		else if (params_check(call, m) == 0) {
			r = m->fn(call);
			if (!(call->state & CALL_ANSWERED) &&
			    (!(call->state & CALL_DEFERRED) || r < 0)) {
				log_warnx("rpc: %s returned without an answer",
				    m->name);
				rpc_error(call, RPC_INTERNAL_ERROR,
				    "internal error");
			}
		}
	}
	call->state &= ~CALL_IN_HANDLER;
	if (call->state & CALL_ANSWERED)
		call_free(call);
}

struct rpc_conn *
rpc_conn_new(struct ctl_conn *cc)
{
	struct rpc_conn	*rc;

	if ((rc = calloc(1, sizeof(*rc))) == NULL)
		return NULL;
	rc->cc = cc;
	TAILQ_INIT(&rc->deferred);
	TAILQ_INSERT_TAIL(&rpc_conns, rc, entry);
	return rc;
}

void
rpc_conn_free(struct rpc_conn *rc)
{
	struct rpc_call	*call;

	if (rc == NULL)
		return;
	TAILQ_REMOVE(&rpc_conns, rc, entry);
	rc->subscribed = 0;
	while ((call = TAILQ_FIRST(&rc->deferred)) != NULL) {
		TAILQ_REMOVE(&rc->deferred, call, entry);
		call->state &= ~CALL_LINKED;
		/* Answered from now on: a stray rpc_reply in the callback
		 * is refused instead of touching freed memory. */
		call->state |= CALL_ANSWERED | CALL_IN_HANDLER;
		call->rc = NULL;
		if (call->cancel != NULL)
			call->cancel(call, call->cancel_arg);
		call_free(call);
	}
	free(rc);
}

int
rpc_conn_busy(const struct rpc_conn *rc)
{
	return rc->subscribed || !TAILQ_EMPTY(&rc->deferred);
}
