/* xmpp_pubsub.c: the XEP-0060 steps of the XMPP driver: IQs, node creation, subscriptions, fetching and delivering items. */

/*
 * Inboxes.  A topic is a publish-subscribe node of the same name on the
 * configured service (mqtt.topic_prefix is MQTT's alone: node names are
 * the engine's names).  On every connect, for every live topic: create the
 * node (open access, open publishing, persistent items, max_items "max";
 * a conflict or refusal just means it exists or is not ours to create),
 * subscribe the current full JID, then fetch the stored items and deliver
 * those not seen yet.  The fetch is what gives offline delivery: frames
 * published while we were away wait in the node.  Items are not retracted
 * after delivery: the node's creator (an anonymous JID) is gone after its
 * first reconnect and prosody lets only owners and publishers retract, so
 * the node is a ring of its last max_items frames instead (docs/xmpp.md).
 * A publish to a node that does not exist yet creates it, so a frame sent
 * before the peer's first subscribe waits there too.  A service that
 * creates nodes on publish by itself (disco#info says auto-create:
 * ejabberd) would make them with its default configuration, where only
 * the first publisher may publish: there every publish creates the node
 * first (a conflict means it is there) and goes out after that answer.
 *
 * Payload.  One item, server-assigned id, one element of a fixed namespace
 * whose text is the frame in standard base64; IQ ids are random and of a
 * fixed length, so every publish of a fixed-size frame to a fixed-length
 * node name has the same size on the wire.
 *
 * Input from the server is bounded where we can bound it.  libstrophe
 * parses a whole stanza into memory before any handler runs and has no
 * size limit of its own, so one stanza costs what the server sends; what
 * this file adds per item is constant: an item is dropped (and counted)
 * unless its id is at most X_ITEM_ID_MAX bytes and its payload text is
 * exactly the base64 length of one frame, checked before decoding, and it
 * decodes into one preallocated frame buffer without copying the text.  At
 * most X_ITEMS_MAX items of one stanza are looked at.  Seen item ids are
 * remembered in a hash per node (at most X_SEEN_MAX, oldest forgotten
 * first), and IQ answers find their publish or topic by hash: nothing is
 * scanned per answer or per item.
 */

#define _GNU_SOURCE		/* asprintf */

#include <sys/queue.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <strophe.h>

#include "compat.h"
#include "config.h"
#include "log.h"
#include "xmpp_int.h"

/* --- helpers ----------------------------------------------------------------- */

char *
x_escape(const char *s)
{
	size_t	 n = 0, i;
	char	*d, *p;

	for (i = 0; s[i] != '\0'; i++)
		n += (s[i] == '&') ? 5 : (s[i] == '<' || s[i] == '>') ? 4 :
		    (s[i] == '"' || s[i] == '\'') ? 6 : 1;
	if ((d = p = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; s[i] != '\0'; i++) {
		switch (s[i]) {
		case '&':
			memcpy(p, "&amp;", 5), p += 5;
			break;
		case '<':
			memcpy(p, "&lt;", 4), p += 4;
			break;
		case '>':
			memcpy(p, "&gt;", 4), p += 4;
			break;
		case '"':
			memcpy(p, "&quot;", 6), p += 6;
			break;
		case '\'':
			memcpy(p, "&apos;", 6), p += 6;
			break;
		default:
			*p++ = s[i];
		}
	}
	*p = '\0';
	return d;
}

/*
 * Random, fixed length: IQ ids say nothing and keep stanza sizes equal.
 * The id is the request number in hex, so an answer finds its publish or
 * topic by hash.
 */
static uint64_t
x_new_id(char id[X_ID_LEN + 1])
{
	uint64_t	 req;

	do
		randombytes_buf(&req, sizeof(req));
	while (req == 0);
	snprintf(id, X_ID_LEN + 1, "%016" PRIx64, req);
	return req;
}

/* 0 unless id is one of ours in form. */
static uint64_t
x_parse_id(const char *id)
{
	uint64_t	 req = 0;
	size_t		 i;

	for (i = 0; i < X_ID_LEN; i++) {
		if (id[i] >= '0' && id[i] <= '9')
			req = req << 4 | (uint64_t)(id[i] - '0');
		else if (id[i] >= 'a' && id[i] <= 'f')
			req = req << 4 | (uint64_t)(id[i] - 'a' + 10);
		else
			return 0;
	}
	return id[i] == '\0' ? req : 0;
}

void
x_topic_free(struct transport_topic *tp)
{
	struct xtopic	*xt = (struct xtopic *)tp;
	struct xseen	*s;

	if (xt->ename == NULL)
		return;
	while ((s = TAILQ_FIRST(&xt->seenq)) != NULL) {
		TAILQ_REMOVE(&xt->seenq, s, entry);
		free(s);
	}
	htab_free(&xt->seen);
	free(xt->ename);
}

/* Unsubscribed, nothing outstanding, nobody inside a callback for it. */
void
x_topic_gc(struct xmpp *x, struct xtopic *xt)
{
	if (!xt->tt.live && xt->tt.req == 0 && xt->step != TS_SUBSCRIBE &&
	    xt->delivering == 0)
		transport_topic_free(&x->t, &xt->tt);
}

/* Returns 1 if id was new (and remembers it). */
static int
x_seen_add(struct xtopic *xt, const char *id)
{
	struct hlink	*l;
	struct xseen		*s;
	uint64_t		 key = htab_str(id);
	size_t			 n = strlen(id);

	for (l = htab_get(&xt->seen, key); l != NULL;
	    l = htab_next(l))
		if (strcmp(HLINK_OF(l, struct xseen, link)->id, id) == 0)
			return 0;
	/* Out of memory: deliver anyway, the engine dedupes. */
	if ((s = malloc(sizeof(*s) + n + 1)) == NULL)
		return 1;
	memcpy(s->id, id, n + 1);
	if (htab_add(&xt->seen, &s->link, key) == -1) {
		free(s);
		return 1;
	}
	TAILQ_INSERT_TAIL(&xt->seenq, s, entry);
	if (++xt->nseen > X_SEEN_MAX) {
		s = TAILQ_FIRST(&xt->seenq);
		TAILQ_REMOVE(&xt->seenq, s, entry);
		htab_del(&xt->seen, &s->link);
		free(s);
		xt->nseen--;
	}
	return 1;
}

/* --- stanzas ----------------------------------------------------------------- */

/*
 * One IQ to the pubsub service.  With h, its answer goes to h and *req
 * receives the request it carries.  -1: out of memory, nothing sent (the
 * connection's next life sends it again).
 */
int
x_send_iq(struct xmpp *x, uint64_t *req, xmpp_handler h, const char *type,
    const char *fmt, ...)
{
	va_list		 ap;
	char		 id[X_ID_LEN + 1], *body = NULL, *iq = NULL;
	uint64_t	 r;
	int		 n;

	r = x_new_id(id);
	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (n == -1) {
		body = NULL;
		goto fail;
	}
	if ((n = asprintf(&iq, "<iq type=\"%s\" id=\"%s\" to=\"%s\">"
	    "<pubsub xmlns=\"" X_NS_PUBSUB "\">%s</pubsub></iq>", type, id,
	    x->epubsub, body)) == -1) {
		iq = NULL;
		goto fail;
	}
	if (h != NULL)
		xmpp_id_handler_add(x->cur->conn, h, id, x->cur);
	xmpp_send_raw(x->cur->conn, iq, (size_t)n);
	free(body);
	free(iq);
	x_kick(x);
	if (req != NULL)
		*req = r;
	return 0;
fail:
	log_warnx("xmpp: out of memory");
	free(body);
	return -1;
}

/* What the service does; x_disco_cb() takes the answer. */
int
x_send_disco(struct xmpp *x)
{
	char	 id[X_ID_LEN + 1], *iq;
	int	 n;

	(void)x_new_id(id);
	if ((n = asprintf(&iq, "<iq type=\"get\" id=\"%s\" to=\"%s\">"
	    "<query xmlns=\"" X_NS_DISCO_INFO "\"/></iq>", id,
	    x->epubsub)) == -1) {
		log_warnx("xmpp: out of memory");
		return -1;
	}
	xmpp_id_handler_add(x->cur->conn, x_disco_cb, id, x->cur);
	xmpp_timed_handler_add(x->cur->conn, x_disco_timeout, X_DISCO_WAIT_MS,
	    x->cur);
	xmpp_send_raw(x->cur->conn, iq, (size_t)n);
	free(iq);
	x_kick(x);
	return 0;
}

static int
x_send_create(struct xmpp *x, uint64_t *req, xmpp_handler h,
    const char *ename)
{
	return x_send_iq(x, req, h, "set", "<create node=\"%s\"/><configure>"
	    "<x xmlns=\"jabber:x:data\" type=\"submit\">"
	    "<field var=\"FORM_TYPE\" type=\"hidden\"><value>"
	    X_NS_PUBSUB "#node_config</value></field>"
	    "<field var=\"pubsub#access_model\"><value>open</value></field>"
	    "<field var=\"pubsub#publish_model\"><value>open</value></field>"
	    "<field var=\"pubsub#persist_items\"><value>1</value></field>"
	    "<field var=\"pubsub#max_items\"><value>max</value></field>"
	    "<field var=\"pubsub#send_last_published_item\"><value>never"
	    "</value></field>"
	    "<field var=\"pubsub#notification_type\"><value>headline"
	    "</value></field></x></configure>", ename);
}

/* The frame goes as base64 text; with create, after a node creation. */
static int
x_send_publish(struct xmpp *x, struct transport_pub *p, int create,
    uint64_t *req)
{
	size_t	 blen;
	char	*ename, *b64;
	int	 rc = -1;

	blen = sodium_base64_encoded_len(p->len, sodium_base64_VARIANT_ORIGINAL);
	if ((ename = x_escape(p->wire)) == NULL ||
	    (b64 = malloc(blen)) == NULL) {
		free(ename);
		log_warnx("xmpp: out of memory");
		return -1;
	}
	sodium_bin2base64(b64, blen, p->buf, p->len,
	    sodium_base64_VARIANT_ORIGINAL);
	if (!create || x_send_create(x, NULL, NULL, ename) == 0)
		rc = x_send_iq(x, req, x_iq_cb, "set", "<publish node=\"%s\">"
		    "<item><f xmlns=\"" X_NS_PAYLOAD "\">%s</f></item></publish>",
		    ename, b64);
	free(b64);
	free(ename);
	return rc;
}

/*
 * A service that creates a node on publish gives it its default
 * configuration and makes the publisher its only publisher (ejabberd's
 * publish_model is "publishers", and its publish-options cannot ask for
 * another): whoever publishes next is refused with forbidden.  There
 * the node is created first, open, and the publish waits for the answer:
 * a create that failed (ejabberd aborts one of two that race) would
 * otherwise leave the publish to create it the wrong way.
 */
static int
x_send_pub_create(struct xmpp *x, struct transport_pub *p, uint64_t *req)
{
	char	*ename;
	int	 rc;

	if ((ename = x_escape(p->wire)) == NULL) {
		log_warnx("xmpp: out of memory");
		return -1;
	}
	rc = x_send_create(x, req, x_iq_cb, ename);
	free(ename);
	return rc;
}

static const char *
x_error_condition(xmpp_stanza_t *st)
{
	xmpp_stanza_t	*e, *c;

	if ((e = xmpp_stanza_get_child_by_name(st, "error")) == NULL)
		return "error";
	for (c = xmpp_stanza_get_children(e); c != NULL;
	    c = xmpp_stanza_get_next(c))
		if (xmpp_stanza_is_tag(c) && xmpp_stanza_get_name(c) != NULL &&
		    strcmp(xmpp_stanza_get_name(c), "text") != 0)
			return xmpp_stanza_get_name(c);
	return "error";
}

/*
 * One <item>: checked, decoded into x->rxbuf and handed over if new.  -1:
 * not a frame of ours (dropped); 0: delivered, or seen before.  What the
 * checks cost does not depend on what the item holds.
 */
static int
x_deliver_item(struct xmpp *x, struct xtopic *xt, xmpp_stanza_t *item)
{
	xmpp_stanza_t	*pl, *txt;
	const char	*id, *ns, *name, *text;
	size_t		 blen;

	if ((id = xmpp_stanza_get_id(item)) == NULL ||
	    strnlen(id, X_ITEM_ID_MAX + 1) > X_ITEM_ID_MAX)
		return -1;
	for (pl = xmpp_stanza_get_children(item); pl != NULL;
	    pl = xmpp_stanza_get_next(pl))
		if (xmpp_stanza_is_tag(pl))
			break;
	if (pl == NULL || (ns = xmpp_stanza_get_ns(pl)) == NULL ||
	    strcmp(ns, X_NS_PAYLOAD) != 0 ||
	    (name = xmpp_stanza_get_name(pl)) == NULL || strcmp(name, "f") != 0)
		return -1;
	/* One text child, read in place: libstrophe's copy would cost what
	 * the server chose to send. */
	if ((txt = xmpp_stanza_get_children(pl)) == NULL ||
	    !xmpp_stanza_is_text(txt) || xmpp_stanza_get_next(txt) != NULL ||
	    (text = xmpp_stanza_get_text_ptr(txt)) == NULL ||
	    strnlen(text, x->b64len + 1) != x->b64len)
		return -1;
	if (sodium_base642bin(x->rxbuf, x->t.frame_size, text, x->b64len, NULL,
	    &blen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    blen != x->t.frame_size)
		return -1;
	if (x_seen_add(xt, id))
		x->t.cbs.on_message(xt->tt.name, x->rxbuf, blen, x->t.arg);
	return 0;
}

/* The <item>s under items, at most X_ITEMS_MAX of them; the rest and
 * the junk are counted as dropped. */
static void
x_deliver_items(struct xmpp *x, struct xconn *xc, struct xtopic *xt,
    xmpp_stanza_t *items)
{
	xmpp_stanza_t	*it;
	const char	*name;
	unsigned int	 n = 0, dropped = 0;

	/* The callbacks may unsubscribe xt: it stays until we are done. */
	xt->delivering++;
	for (it = xmpp_stanza_get_children(items); it != NULL;
	    it = xmpp_stanza_get_next(it)) {
		if (!xmpp_stanza_is_tag(it) ||
		    (name = xmpp_stanza_get_name(it)) == NULL ||
		    strcmp(name, "item") != 0)
			continue;
		if (n++ >= X_ITEMS_MAX || x_deliver_item(x, xt, it) == -1)
			dropped++;
		if (x->freeing || xc != x->cur || !xt->tt.live)
			break;
	}
	xt->delivering--;
	transport_dropped(&x->t, dropped);
}

/* The answer to a publish. */
static void
x_pub_answer(struct xmpp *x, struct transport_pub *p, xmpp_stanza_t *st,
    int ok)
{
	uint64_t	 req;

	if (p->flags & XP_CREATING) {
		/* Made, or there already (conflict), or not ours to make:
		 * the publish says which. */
		if (!ok && XP_TRIES(p) + 1 < X_CREATE_TRIES &&
		    strcmp(x_error_condition(st), "internal-server-error") == 0) {
			p->flags += XP_TRY;
			if (x_send_pub_create(x, p, &req) == 0)
				transport_pub_set_req(&x->t, p, req);
			else
				transport_pub_again(&x->t, p);
			return;
		}
		if (!ok && strcmp(x_error_condition(st), "conflict") != 0)
			log_debug("xmpp: create %s: %s", p->wire,
			    x_error_condition(st));
		p->flags &= ~XP_CREATING;
		if (x_send_publish(x, p, 0, &req) == 0)
			transport_pub_set_req(&x->t, p, req);
		else
			transport_pub_again(&x->t, p);
		return;
	}
	if (!ok && !(p->flags & XP_CREATED) &&
	    (strcmp(x_error_condition(st), "item-not-found") == 0 ||
	    strcmp(x_error_condition(st), "forbidden") == 0)) {
		/* The peer has not subscribed yet: make the node, so the
		 * frame waits there for it.  prosody answers a publish to a
		 * node that does not exist with forbidden, not item-not-found
		 * (util/pubsub.lua checks the publisher's rights on the node
		 * before it looks the node up).  Once only: a node that exists
		 * and refuses us stays refused. */
		p->flags |= XP_CREATED;
		if (x_send_publish(x, p, 1, &req) == 0)
			transport_pub_set_req(&x->t, p, req);
		else
			transport_pub_again(&x->t, p);
		return;
	}
	if (!ok)
		log_warnx("xmpp: publish refused: %s", x_error_condition(st));
	transport_pub_answer(&x->t, p, ok);
}

/* One IQ answer: a publish, or a step of a topic's (re)subscription. */
int
x_iq_cb(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct xconn		*xc = arg;
	struct xmpp		*x = xc->x;
	struct transport_pub	*p;
	struct transport_topic	*tp;
	struct xtopic		*xt;
	xmpp_stanza_t		*ps, *items;
	const char		*id, *type;
	uint64_t		 req;
	int			 ok;

	(void)conn;
	if (x->freeing || xc != x->cur || x->t.state != TRANSPORT_UP)
		return 0;
	if ((id = xmpp_stanza_get_id(st)) == NULL || (req = x_parse_id(id)) == 0)
		return 0;
	type = xmpp_stanza_get_type(st);
	ok = type != NULL && strcmp(type, "result") == 0;

	if ((p = transport_pub_find(&x->t, req)) != NULL) {
		x_pub_answer(x, p, st, ok);
		return 0;
	}
	if ((tp = transport_topic_by_req(&x->t, req)) == NULL)
		return 0;
	xt = (struct xtopic *)tp;
	transport_topic_set_req(&x->t, tp, 0);
	switch (xt->step) {
	case TS_CREATE:
		/* conflict: it exists; forbidden: not ours to create.  The
		 * subscribe says whether the node is usable.  ejabberd aborts
		 * one of two creates that race in its database with
		 * internal-server-error: that one is worth another try. */
		if (!ok)
			log_debug("xmpp: create %s: %s", tp->name,
			    x_error_condition(st));
		if (!ok && tp->live && ++xt->tries < X_CREATE_TRIES &&
		    strcmp(x_error_condition(st), "internal-server-error") == 0) {
			x_topic_next(x, xt);
			break;
		}
		xt->tries = 0;
		xt->step = TS_SUBSCRIBE;
		x_topic_next(x, xt);
		break;
	case TS_SUBSCRIBE:
		if (!ok) {
			log_warnx("xmpp: subscription refused: %s",
			    x_error_condition(st));
			xt->step = TS_IDLE;
		} else
			xt->step = TS_ITEMS;
		if (tp->live && !tp->reported) {
			tp->reported = 1;
			xt->delivering++;	/* the callback may unsubscribe */
			x->t.cbs.on_subscribed(tp->name, ok, x->t.arg);
			xt->delivering--;
		}
		if (ok && xt->step == TS_ITEMS)
			x_topic_next(x, xt);
		break;
	case TS_ITEMS:
		xt->step = TS_READY;
		if (!ok || !tp->live)
			break;
		if ((ps = xmpp_stanza_get_child_by_ns(st, X_NS_PUBSUB)) !=
		    NULL && (items = xmpp_stanza_get_child_by_name(ps,
		    "items")) != NULL)
			x_deliver_items(x, xc, xt, items);
		break;
	default:
		break;
	}
	/* Unsubscribed meanwhile and nothing outstanding: forget it. */
	x_topic_gc(x, xt);
	return 0;
}

/* Send the IQ for the topic's current step. */
void
x_topic_next(struct xmpp *x, struct xtopic *xt)
{
	uint64_t	 req = 0;

	switch (xt->step) {
	case TS_CREATE:
		(void)x_send_create(x, &req, x_iq_cb, xt->ename);
		break;
	case TS_SUBSCRIBE:
		(void)x_send_iq(x, &req, x_iq_cb, "set",
		    "<subscribe node=\"%s\" jid=\"%s\"/>", xt->ename, x->jid);
		break;
	case TS_ITEMS:
		(void)x_send_iq(x, &req, x_iq_cb, "get", "<items node=\"%s\"/>",
		    xt->ename);
		break;
	default:
		break;
	}
	transport_topic_set_req(&x->t, &xt->tt, req);
}

void
x_send_unsubscribe(struct xmpp *x, struct xtopic *xt)
{
	(void)x_send_iq(x, NULL, NULL, "set",
	    "<unsubscribe node=\"%s\" jid=\"%s\"/>", xt->ename, x->jid);
}

int
x_message_cb(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct xconn		*xc = arg;
	struct xmpp		*x = xc->x;
	struct transport_topic	*tp;
	xmpp_stanza_t		*ev, *items;
	const char		*from, *node;

	(void)conn;
	if (x->freeing || xc != x->cur || x->t.state != TRANSPORT_UP)
		return 1;
	/* Only the service may speak for its nodes. */
	if ((from = xmpp_stanza_get_from(st)) == NULL ||
	    strcmp(from, x->pubsub) != 0)
		return 1;
	if ((ev = xmpp_stanza_get_child_by_ns(st, X_NS_EVENT)) == NULL ||
	    (items = xmpp_stanza_get_child_by_name(ev, "items")) == NULL ||
	    (node = xmpp_stanza_get_attribute(items, "node")) == NULL)
		return 1;
	/* After unsubscribe() nothing more is delivered. */
	if ((tp = transport_topic_find_wire(&x->t, node)) == NULL || !tp->live) {
		log_debug("xmpp: dropped an event for %s", node);
		return 1;
	}
	x_deliver_items(x, xc, (struct xtopic *)tp, items);
	x_topic_gc(x, (struct xtopic *)tp);
	return 1;
}

/* From transport_went_up(): every live topic starts over. */
void
x_restore(struct transport *t)
{
	struct xmpp		*x = (struct xmpp *)t;
	struct transport_topic	*tp;

	TAILQ_FOREACH(tp, &t->topics, entry) {
		if (!tp->live)
			continue;
		((struct xtopic *)tp)->step = TS_CREATE;
		x_topic_next(x, (struct xtopic *)tp);
	}
}

/* transport_pump() has checked the window. */
int
x_send(struct transport *t, struct transport_pub *p, uint64_t *req)
{
	struct xmpp	*x = (struct xmpp *)t;

	/* Out of memory: try again at the next answer. */
	if (x->autocreate) {
		p->flags |= XP_CREATED | XP_CREATING;
		return x_send_pub_create(x, p, req) == 0 ? 0 : 1;
	}
	return x_send_publish(x, p, 0, req) == 0 ? 0 : 1;
}
