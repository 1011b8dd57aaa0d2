/* backup_rec.c: backup records as JSON objects — encoding the store's rows, and decoding with every field checked (the fuzzer's way in past the file's encryption). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "backup_rec.h"

#define B64	sodium_base64_VARIANT_ORIGINAL

static const char *const type_name[BREC_COUNT] = {
	[BREC_HEADER] = "header", [BREC_CONFIG] = "config",
	[BREC_IDENTITY] = "identity", [BREC_META] = "meta",
	[BREC_CONTACT] = "contact", [BREC_CARD] = "card",
	[BREC_OUTBOX] = "outbox", [BREC_RX] = "rx", [BREC_SEEN] = "seen",
	[BREC_END] = "end",
};

/* The members each type has, comma-separated: anything else is refused. */
static const char *const members[BREC_COUNT] = {
	[BREC_HEADER] = "t,format,wire,created",
	[BREC_CONFIG] = "t,text",
	[BREC_IDENTITY] = "t,pk,sk",
	[BREC_META] = "t,card_cid,shared_seed,card_shown,wire",
	[BREC_CONTACT] = "t,id,name,state,peer_name,peer_pk,peer_inbox,pair,"
	    "agree,verified,created,updated,upd_msgid,upd_prev_until,req_msgid,"
	    "req_deadline,seed_prev,seed_prev_epoch,seed_prev_until,heal_at,"
	    "accept_frames,reset_seen_t,reset_seen,reset_ack",
	[BREC_CARD] = "t,topic,one_time,created,retire_at",
	[BREC_OUTBOX] = "t,contact,msgid,type,body,created,attempts,next_try",
	[BREC_RX] = "t,contact,msgid,type,body,received,taken",
	[BREC_SEEN] = "t,t1,contact,seen_at",
	[BREC_END] = "t,records",
};

/* ---- encoding ------------------------------------------------------------ */

/* base64 of b (NULL or n == 0 with nullable: JSON null). */
static json_t *
b64(const uint8_t *b, size_t n, int nullable)
{
	size_t len;
	char *s;
	json_t *v;

	if ((b == NULL || n == 0) && nullable)
		return json_null();
	len = sodium_base64_encoded_len(n, B64);
	if ((s = malloc(len)) == NULL)
		return NULL;
	sodium_bin2base64(s, len, b != NULL ? b : (const uint8_t *)"", n, B64);
	v = json_string(s);
	sodium_memzero(s, len);
	free(s);
	return v;
}

static json_t *
encode_contact(const struct brec *r)
{
	const struct store_contact *c = &r->u.contact.c;
	const struct store_reset *x = &r->u.contact.reset;

	return json_pack("{s:s, s:I, s:s, s:i, s:s, s:o, s:s, s:o, s:o, s:b, "
	    "s:I, s:I, s:o, s:I, s:o, s:I, s:o, s:I, s:I, s:I, s:o, s:I, s:o, "
	    "s:o}",
	    "t", "contact", "id", (json_int_t)c->id, "name", c->name,
	    "state", c->state, "peer_name", c->peer_name,
	    "peer_pk", b64(c->peer_pk, sizeof(c->peer_pk), 0),
	    "peer_inbox", c->peer_inbox,
	    "pair", b64(c->pair, c->pair_len, 1),
	    "agree", b64(c->agree, c->agree_len, 1),
	    "verified", c->verified,
	    "created", (json_int_t)c->created, "updated", (json_int_t)c->updated,
	    "upd_msgid", b64(c->upd_msgid, c->has_upd_msgid ?
	    sizeof(c->upd_msgid) : 0, 1),
	    "upd_prev_until", (json_int_t)c->upd_prev_until,
	    "req_msgid", b64(c->req_msgid, c->has_req_msgid ?
	    sizeof(c->req_msgid) : 0, 1),
	    "req_deadline", (json_int_t)c->req_deadline,
	    "seed_prev", b64(c->seed_prev, c->has_seed_prev ?
	    sizeof(c->seed_prev) : 0, 1),
	    "seed_prev_epoch", (json_int_t)c->seed_prev_epoch,
	    "seed_prev_until", (json_int_t)c->seed_prev_until,
	    "heal_at", (json_int_t)c->heal_at,
	    "accept_frames", b64(r->u.contact.af, r->u.contact.aflen, 1),
	    "reset_seen_t", (json_int_t)x->seen_t,
	    "reset_seen", b64(x->seen, x->has_seen ? sizeof(x->seen) : 0, 1),
	    "reset_ack", b64(x->ack, x->ack_len, 1));
}

char *
brec_encode(const struct brec *r, size_t *len)
{
	json_t *o = NULL;
	char *s;

	switch (r->type) {
	case BREC_HEADER:
		o = json_pack("{s:s, s:i, s:i, s:I}", "t", "header", "format",
		    r->u.header.format, "wire", r->u.header.wire, "created",
		    (json_int_t)r->u.header.created);
		break;
	case BREC_CONFIG:
		o = json_pack("{s:s, s:s}", "t", "config", "text",
		    r->u.config.text);
		break;
	case BREC_IDENTITY:
		o = json_pack("{s:s, s:o, s:o}", "t", "identity",
		    "pk", b64(r->u.identity.pk, sizeof(r->u.identity.pk), 0),
		    "sk", b64(r->u.identity.sk, sizeof(r->u.identity.sk), 0));
		break;
	case BREC_META:
		o = json_pack("{s:s, s:s, s:o, s:b, s:i}", "t", "meta",
		    "card_cid", r->u.meta.card_cid,
		    "shared_seed", b64(r->u.meta.shared_seed,
		    r->u.meta.has_shared_seed ? sizeof(r->u.meta.shared_seed) : 0,
		    1),
		    "card_shown", r->u.meta.card_shown, "wire", r->u.meta.wire);
		break;
	case BREC_CONTACT:
		o = encode_contact(r);
		break;
	case BREC_CARD:
		o = json_pack("{s:s, s:s, s:b, s:I, s:I}", "t", "card",
		    "topic", r->u.card.topic, "one_time", r->u.card.one_time,
		    "created", (json_int_t)r->u.card.created,
		    "retire_at", (json_int_t)r->u.card.retire_at);
		break;
	case BREC_OUTBOX:
		o = json_pack("{s:s, s:I, s:o, s:i, s:o, s:I, s:i, s:I}",
		    "t", "outbox", "contact", (json_int_t)r->u.outbox.o.contact_id,
		    "msgid", b64(r->u.outbox.o.msgid, STORE_MSGID_BYTES, 0),
		    "type", r->u.outbox.o.type,
		    "body", b64(r->u.outbox.o.body, r->u.outbox.o.body_len, 0),
		    "created", (json_int_t)r->u.outbox.o.created,
		    "attempts", r->u.outbox.o.attempts,
		    "next_try", (json_int_t)r->u.outbox.o.next_try);
		break;
	case BREC_RX:
		o = json_pack("{s:s, s:I, s:o, s:i, s:o, s:I, s:b}",
		    "t", "rx", "contact", (json_int_t)r->u.rx.r.contact_id,
		    "msgid", b64(r->u.rx.r.msgid, STORE_MSGID_BYTES, 0),
		    "type", r->u.rx.r.type,
		    "body", r->u.rx.r.taken ? json_null() :
		    b64(r->u.rx.r.body, r->u.rx.r.body_len, 0),
		    "received", (json_int_t)r->u.rx.r.received_at,
		    "taken", r->u.rx.r.taken);
		break;
	case BREC_SEEN:
		o = json_pack("{s:s, s:o, s:I, s:I}", "t", "seen",
		    "t1", b64(r->u.seen.t1, sizeof(r->u.seen.t1), 0),
		    "contact", (json_int_t)r->u.seen.contact_id,
		    "seen_at", (json_int_t)r->u.seen.seen_at);
		break;
	case BREC_END:
		o = json_pack("{s:s, s:I}", "t", "end", "records",
		    (json_int_t)r->u.end.records);
		break;
	default:
		return NULL;
	}
	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s != NULL && len != NULL)
		*len = strlen(s);
	return s;
}

/* ---- decoding ------------------------------------------------------------ */

struct dec {
	json_t		*o;
	const char	*type;
	char		*err;
	size_t		 errlen;
};

static int __attribute__((format(printf, 3, 4)))
bad(struct dec *d, const char *field, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(d->err, d->errlen, "%s record: %s: %s", d->type, field, why);
	return -1;
}

static int
get_int(struct dec *d, const char *name, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(d->o, name);

	if (!json_is_integer(v))
		return bad(d, name, "must be an integer");
	if (json_integer_value(v) < min || json_integer_value(v) > max)
		return bad(d, name, "out of range");
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int
get_i(struct dec *d, const char *name, int min, int max, int *out)
{
	int64_t v;

	if (get_int(d, name, min, max, &v) == -1)
		return -1;
	*out = (int)v;
	return 0;
}

static int
get_bool(struct dec *d, const char *name, int *out)
{
	json_t *v = json_object_get(d->o, name);

	if (!json_is_boolean(v))
		return bad(d, name, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

/* Text without NUL into out (cap bytes with the terminator). */
static int
get_text(struct dec *d, const char *name, char *out, size_t cap, int nonempty)
{
	json_t *v = json_object_get(d->o, name);
	size_t n;

	if (!json_is_string(v))
		return bad(d, name, "must be a string");
	n = json_string_length(v);
	if (n >= cap || memchr(json_string_value(v), '\0', n) != NULL ||
	    (nonempty && n == 0))
		return bad(d, name, "bad length");
	memcpy(out, json_string_value(v), n);
	out[n] = '\0';
	return 0;
}

/* base64 into out: exact bytes (if exact) or at most cap; null allowed
 * (len 0) when nullable. */
static int
get_b64(struct dec *d, const char *name, uint8_t *out, size_t cap, int exact,
    int nullable, size_t *len)
{
	json_t *v = json_object_get(d->o, name);
	const char *end;
	size_t n = 0;

	if (len != NULL)
		*len = 0;
	if (json_is_null(v) && nullable)
		return 0;
	if (!json_is_string(v))
		return bad(d, name, "must be base64%s", nullable ? " or null" : "");
	if (sodium_base642bin(out, cap, json_string_value(v),
	    json_string_length(v), NULL, &n, &end, B64) != 0 ||
	    end != json_string_value(v) + json_string_length(v) ||
	    (exact && n != cap))
		return bad(d, name, "bad base64 or length");
	if (len != NULL)
		*len = n;
	return 0;
}

/* base64 of at most max bytes into a new buffer (NULL when null). */
static int
get_b64_alloc(struct dec *d, const char *name, size_t max, int nullable,
    uint8_t **out, size_t *len)
{
	json_t *v = json_object_get(d->o, name);
	size_t cap;

	*out = NULL;
	*len = 0;
	if (json_is_null(v) && nullable)
		return 0;
	if (!json_is_string(v))
		return bad(d, name, "must be base64%s", nullable ? " or null" : "");
	cap = json_string_length(v) / 4 * 3 + 3;
	if (cap > max + 3)
		return bad(d, name, "too large");
	if ((*out = malloc(cap > 0 ? cap : 1)) == NULL)
		return bad(d, name, "out of memory");
	if (get_b64(d, name, *out, cap, 0, 0, len) == -1 || *len > max) {
		free(*out);
		*out = NULL;
		*len = 0;
		return d->err[0] != '\0' ? -1 : bad(d, name, "too large");
	}
	return 0;
}

static int
check_members(struct dec *d, const char *list)
{
	const char *key, *p;
	size_t n;
	json_t *v;

	json_object_foreach(d->o, key, v) {
		n = strlen(key);
		for (p = list; p != NULL; p = strchr(p, ',')) {
			if (*p == ',')
				p++;
			if (strncmp(p, key, n) == 0 && (p[n] == ',' || p[n] == '\0'))
				break;
		}
		if (p == NULL)
			return bad(d, "?", "an unknown member");
	}
	for (p = list; p != NULL; p = strchr(p, ',')) {
		char k[32];

		if (*p == ',')
			p++;
		n = strcspn(p, ",");
		if (n >= sizeof(k))
			continue;
		memcpy(k, p, n);
		k[n] = '\0';
		if (json_object_get(d->o, k) == NULL)
			return bad(d, k, "missing");
	}
	return 0;
}

#define I64	INT64_MIN, INT64_MAX
#define POS	1, INT64_MAX
#define NONNEG	0, INT64_MAX

static int
decode_contact(struct dec *d, struct brec *r)
{
	struct store_contact *c = &r->u.contact.c;
	struct store_reset *x = &r->u.contact.reset;
	int64_t ep;
	size_t n1, n2, n3, n4;

	if (get_int(d, "id", POS, &c->id) || get_text(d, "name", c->name,
	    sizeof(c->name), 1) || get_i(d, "state", 0, 255, &c->state) ||
	    get_text(d, "peer_name", c->peer_name, sizeof(c->peer_name), 0) ||
	    get_b64(d, "peer_pk", c->peer_pk, sizeof(c->peer_pk), 1, 0, NULL) ||
	    get_text(d, "peer_inbox", c->peer_inbox, sizeof(c->peer_inbox), 0) ||
	    get_b64(d, "pair", c->pair, sizeof(c->pair), 0, 1, &c->pair_len) ||
	    get_b64(d, "agree", c->agree, sizeof(c->agree), 0, 1,
	    &c->agree_len) ||
	    get_bool(d, "verified", &c->verified) ||
	    get_int(d, "created", I64, &c->created) ||
	    get_int(d, "updated", I64, &c->updated) ||
	    get_b64(d, "upd_msgid", c->upd_msgid, sizeof(c->upd_msgid), 1, 1,
	    &n1) ||
	    get_int(d, "upd_prev_until", I64, &c->upd_prev_until) ||
	    get_b64(d, "req_msgid", c->req_msgid, sizeof(c->req_msgid), 1, 1,
	    &n2) ||
	    get_int(d, "req_deadline", I64, &c->req_deadline) ||
	    get_b64(d, "seed_prev", c->seed_prev, sizeof(c->seed_prev), 1, 1,
	    &n3) ||
	    get_int(d, "seed_prev_epoch", 0, UINT32_MAX, &ep) ||
	    get_int(d, "seed_prev_until", I64, &c->seed_prev_until) ||
	    get_int(d, "heal_at", I64, &c->heal_at) ||
	    get_b64_alloc(d, "accept_frames", BREC_ACCEPT_MAX, 1,
	    &r->u.contact.af, &r->u.contact.aflen) ||
	    get_int(d, "reset_seen_t", I64, &x->seen_t) ||
	    get_b64(d, "reset_seen", x->seen, sizeof(x->seen), 1, 1, &n4) ||
	    get_b64(d, "reset_ack", x->ack, sizeof(x->ack), 0, 1, &x->ack_len))
		return -1;
	c->has_upd_msgid = n1 != 0;
	c->has_req_msgid = n2 != 0;
	c->has_seed_prev = n3 != 0;
	c->seed_prev_epoch = (uint32_t)ep;
	x->has_seen = n4 != 0;
	return 0;
}

int
brec_decode(const uint8_t *json, size_t len, struct brec *r, char *err,
    size_t errlen)
{
	json_error_t je;
	struct dec d;
	json_t *t;
	const char *ts;
	size_t n = 0;
	int i, rc = -1;

	memset(r, 0, sizeof(*r));
	d.err = err;
	d.errlen = errlen;
	d.type = "a";
	if (errlen > 0)
		err[0] = '\0';
	d.o = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(d.o)) {
		snprintf(err, errlen, "a record is not a JSON object");
		goto out;
	}
	t = json_object_get(d.o, "t");
	ts = json_string_value(t);
	for (i = 0; ts != NULL && i < BREC_COUNT; i++)
		if (strcmp(ts, type_name[i]) == 0)
			break;
	if (ts == NULL || i == BREC_COUNT) {
		snprintf(err, errlen, "a record of an unknown type");
		goto out;
	}
	r->type = (enum brec_type)i;
	d.type = type_name[i];
	if (check_members(&d, members[i]) == -1)
		goto out;
	switch (r->type) {
	case BREC_HEADER:
		if (get_i(&d, "format", 1, INT32_MAX, &r->u.header.format) ||
		    get_i(&d, "wire", 0, 255, &r->u.header.wire) ||
		    get_int(&d, "created", I64, &r->u.header.created))
			goto out;
		break;
	case BREC_CONFIG: {
		json_t *v = json_object_get(d.o, "text");

		if (!json_is_string(v) || json_string_length(v) > BREC_CONFIG_MAX ||
		    memchr(json_string_value(v), '\0', json_string_length(v)))
			goto badconf;
		if ((r->u.config.text = strdup(json_string_value(v))) == NULL)
			goto badconf;
		break;
badconf:
		bad(&d, "text", "not a text of at most 1 MiB");
		goto out;
	}
	case BREC_IDENTITY:
		if (get_b64(&d, "pk", r->u.identity.pk, sizeof(r->u.identity.pk),
		    1, 0, NULL) || get_b64(&d, "sk", r->u.identity.sk,
		    sizeof(r->u.identity.sk), 1, 0, NULL))
			goto out;
		break;
	case BREC_META:
		if (get_text(&d, "card_cid", r->u.meta.card_cid,
		    sizeof(r->u.meta.card_cid), 0) ||
		    get_b64(&d, "shared_seed", r->u.meta.shared_seed,
		    sizeof(r->u.meta.shared_seed), 1, 1, &n) ||
		    get_bool(&d, "card_shown", &r->u.meta.card_shown) ||
		    get_i(&d, "wire", 0, 255, &r->u.meta.wire))
			goto out;
		r->u.meta.has_shared_seed = n != 0;
		break;
	case BREC_CONTACT:
		if (decode_contact(&d, r) == -1)
			goto out;
		break;
	case BREC_CARD:
		if (get_text(&d, "topic", r->u.card.topic,
		    sizeof(r->u.card.topic), 1) ||
		    get_bool(&d, "one_time", &r->u.card.one_time) ||
		    get_int(&d, "created", I64, &r->u.card.created) ||
		    get_int(&d, "retire_at", NONNEG, &r->u.card.retire_at))
			goto out;
		r->u.card.kind = STORE_INBOX_CARD;
		break;
	case BREC_OUTBOX: {
		struct store_outbox *o = &r->u.outbox.o;
		uint8_t *body;

		/* The body last: nothing after it may fail and leave it
		 * allocated (fuzz_backup found that). */
		if (get_int(&d, "contact", POS, &o->contact_id) ||
		    get_b64(&d, "msgid", o->msgid, sizeof(o->msgid), 1, 0, NULL) ||
		    get_i(&d, "type", 0, 255, &o->type) ||
		    get_int(&d, "created", I64, &o->created) ||
		    get_i(&d, "attempts", 0, INT32_MAX, &o->attempts) ||
		    get_int(&d, "next_try", I64, &o->next_try) ||
		    get_b64_alloc(&d, "body", BREC_BODY_MAX, 0, &body,
		    &o->body_len))
			goto out;
		o->body = body;
		break;
	}
	case BREC_RX: {
		struct store_rx_row *x = &r->u.rx.r;
		uint8_t *body;

		if (get_int(&d, "contact", POS, &x->contact_id) ||
		    get_b64(&d, "msgid", x->msgid, sizeof(x->msgid), 1, 0, NULL) ||
		    get_i(&d, "type", 0, 255, &x->type) ||
		    get_bool(&d, "taken", &x->taken) ||
		    get_int(&d, "received", I64, &x->received_at) ||
		    get_b64_alloc(&d, "body", BREC_BODY_MAX, x->taken, &body,
		    &x->body_len))
			goto out;
		x->body = body;
		if (x->taken && body != NULL) {
			bad(&d, "body", "a message already read keeps no body");
			goto out;
		}
		break;
	}
	case BREC_SEEN:
		if (get_b64(&d, "t1", r->u.seen.t1, sizeof(r->u.seen.t1), 1, 0,
		    NULL) || get_int(&d, "contact", NONNEG, &r->u.seen.contact_id) ||
		    get_int(&d, "seen_at", I64, &r->u.seen.seen_at))
			goto out;
		break;
	case BREC_END:
		if (get_int(&d, "records", NONNEG, &r->u.end.records))
			goto out;
		break;
	default:
		goto out;
	}
	rc = 0;
out:
	json_decref(d.o);
	if (rc != 0)
		brec_free(r);
	return rc;
}

void
brec_free(struct brec *r)
{
	switch (r->type) {
	case BREC_CONFIG:
		if (r->u.config.text != NULL) {
			sodium_memzero(r->u.config.text, strlen(r->u.config.text));
			free(r->u.config.text);
		}
		break;
	case BREC_CONTACT:
		if (r->u.contact.af != NULL) {
			sodium_memzero(r->u.contact.af, r->u.contact.aflen);
			free(r->u.contact.af);
		}
		break;
	case BREC_OUTBOX:
		if (r->u.outbox.o.body != NULL) {
			sodium_memzero((uint8_t *)(uintptr_t)r->u.outbox.o.body,
			    r->u.outbox.o.body_len);
			free((void *)(uintptr_t)r->u.outbox.o.body);
		}
		break;
	case BREC_RX:
		if (r->u.rx.r.body != NULL) {
			sodium_memzero((uint8_t *)(uintptr_t)r->u.rx.r.body,
			    r->u.rx.r.body_len);
			free((void *)(uintptr_t)r->u.rx.r.body);
		}
		break;
	default:
		break;
	}
	sodium_memzero(r, sizeof(*r));
}
