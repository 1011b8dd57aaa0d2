/* Fuzz stub of the engine (daemon/engine.h) for fuzz_methods: plausible answers, each outcome chosen by the input, every argument checked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "stub_engine.h"

struct stub_engine stub;

static engine_event_cb	event_cb;
static void		*event_arg;

/* What methods.c hands the engine must be what the engine can take: a
 * NUL-terminated string where one is due, a length that is the text's. */
static void
check_text(const char *s, size_t max)
{
	if (s == NULL || strnlen(s, max + 1) > max)
		abort();
}

static int
outcome(char *err, size_t errlen)
{
	if (err == NULL || errlen == 0)
		abort();
	if (stub.rv == ENGINE_OK)
		return ENGINE_OK;
	snprintf(err, errlen, "stub error %d", stub.rv);
	return stub.rv;
}

void
engine_set_event_cb(engine_event_cb cb, void *arg)
{
	event_cb = cb;
	event_arg = arg;
}

/* Commits are the harness's to run: stub_commit() fires them. */
void
engine_after_commit(void (*fn)(void *, int), void *arg)
{
	if (stub.nafter >= STUB_AFTER_MAX) {
		fn(arg, 0);
		return;
	}
	stub.after[stub.nafter].fn = fn;
	stub.after[stub.nafter].arg = arg;
	stub.nafter++;
}

void
stub_commit(int committed)
{
	size_t n = stub.nafter;

	/* A callback may queue more: those wait for the next commit. */
	stub.nafter = 0;
	for (size_t i = 0; i < n; i++)
		stub.after[i].fn(stub.after[i].arg, committed);
}

/* The engine's events, as after a commit: notifications and the waking
 * of waiting message.receive calls. */
void
stub_events(void)
{
	struct engine_event ev;

	if (event_cb == NULL)
		return;
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_MESSAGE;
	ev.name = "Bob";
	memcpy(ev.msgid, "00112233445566778899aabbccddeeff", ENGINE_ID_TEXT);
	ev.received = 1700000000;
	stub.pending = 2;
	event_cb(&ev, event_arg);
	ev.type = ENGINE_EV_CONTACT_STATE;
	ev.state = "established";
	ev.warning = stub.flags & 1 ? "a warning" : NULL;
	event_cb(&ev, event_arg);
	ev.type = ENGINE_EV_CONTACT_REQUEST;
	ev.peer_name = "Bob \xe2\x80\x94 the builder";
	ev.fingerprint = "12345 67890";
	event_cb(&ev, event_arg);
	ev.type = ENGINE_EV_DELIVERY;
	event_cb(&ev, event_arg);
}

const char *
engine_store_problem(void)
{
	return stub.store_problem ? "the disk holding state_dir /x is full" : NULL;
}

void
engine_status(struct engine_status *s, int verbose)
{
	memset(s, 0, sizeof *s);
	s->transport = "mqtt";
	s->name = "Alice";
	s->connected = 1;
	s->obscurity = 2;
	s->frame_size = 1024;
	s->established = 3;
	s->store = stub.store_problem ? "full" : "ok";
	s->wire = 2;
	if (verbose) {
		snprintf(s->card, sizeof s->card, "cardtopic");
		s->epoch = 42;
		s->next_rotation = 1700000004;
	}
}

void
engine_foreach_id(void (*client)(const char *, void *),
    void (*topic)(const char *, void *), void *arg)
{
	client("client-1", arg);
	topic("topic-1", arg);
	topic("topic-2", arg);
}

int
engine_card(int one_time, struct engine_card *out, char *err, size_t errlen)
{
	int rv = outcome(err, errlen);

	if (rv == ENGINE_OK) {
		memset(out, 0, sizeof *out);
		snprintf(out->uri, sizeof out->uri, "veil:AAAA");
		snprintf(out->name, sizeof out->name, "Alice");
		out->one_time = one_time;
	}
	return rv;
}

static void
fill_contact(struct engine_contact *c, const char *name)
{
	memset(c, 0, sizeof *c);
	snprintf(c->name, sizeof c->name, "%s", name);
	snprintf(c->peer_name, sizeof c->peer_name, "peer \x01 of %s", name);
	c->state = "established";
	c->key_proven = 1;
	snprintf(c->fingerprint, sizeof c->fingerprint, "12345 67890");
	c->queued = 7;
}

int
engine_contact_add(const char *uri, const char *name, struct engine_contact *out,
    char *err, size_t errlen)
{
	int rv = outcome(err, errlen);

	check_text(uri, 8 << 20);
	if (name != NULL)
		check_text(name, 8 << 20);
	if (rv == ENGINE_OK)
		fill_contact(out, name != NULL ? "named" : "from card");
	return rv;
}

int
engine_contact_foreach(int (*cb)(const struct engine_contact *, void *), void *arg)
{
	struct engine_contact c;

	for (int i = 0; i < (stub.flags & 3); i++) {
		fill_contact(&c, i ? "Carol" : "Bob");
		if (cb(&c, arg) != 0)
			return 1;
	}
	return 0;
}

static int
by_name(const char *name, char *err, size_t errlen)
{
	check_text(name, 8 << 20);
	return outcome(err, errlen);
}

int engine_contact_accept(const char *n, char *e, size_t l) { return by_name(n, e, l); }
int engine_contact_reject(const char *n, char *e, size_t l) { return by_name(n, e, l); }
int engine_contact_remove(const char *n, char *e, size_t l) { return by_name(n, e, l); }

int
engine_contact_verify(const char *name, int mark, struct engine_contact *out,
    char *err, size_t errlen)
{
	int rv = by_name(name, err, errlen);

	if (rv == ENGINE_OK) {
		fill_contact(out, "Bob");
		out->verified = mark;
	}
	return rv;
}

int
engine_send(const char *to, const void *text, size_t len, char id[ENGINE_ID_TEXT],
    char *err, size_t errlen)
{
	return engine_send_keyed(to, text, len, NULL, 0, id, err, errlen);
}

int
engine_send_keyed(const char *to, const void *text, size_t len, const char *key,
    size_t keylen, char id[ENGINE_ID_TEXT], char *err, size_t errlen)
{
	int rv = outcome(err, errlen);

	check_text(to, 8 << 20);
	/* The text may hold NULs (\u0000 is refused by rpc.c, but the length
	 * is what counts): every byte of it must be readable. */
	if (text == NULL && len > 0)
		abort();
	for (size_t i = 0; i < len; i++)
		stub.sink ^= ((const uint8_t *)text)[i];
	if (key != NULL && strlen(key) != keylen)
		abort();
	if (key == NULL && keylen != 0)
		abort();
	if (rv == ENGINE_OK)
		memcpy(id, "ffeeddccbbaa99887766554433221100", ENGINE_ID_TEXT);
	return rv;
}

int
engine_receive(int limit, int (*cb)(const struct engine_rx *, void *), void *arg)
{
	static const uint8_t binary[] = { 0xff, 0xfe, 0x00, 'x', 0xc3 };
	static const char text[] = "a text\twith \"quotes\" and \\ and \n";
	struct engine_rx m;
	int n = 0;

	if (limit < 1 || limit > 256)
		abort();
	if (stub.flags & 8)
		return -1;
	for (int i = 0; i < stub.pending && n < limit; i++) {
		memset(&m, 0, sizeof m);
		snprintf(m.id, sizeof m.id, "%032x", i);
		m.from = i % 2 ? "Bob" : "Carol \xc3\xa9";
		m.type = 1;
		m.body = i % 2 ? binary : (const uint8_t *)text;
		m.len = i % 2 ? sizeof binary : sizeof text - 1;
		m.received = 1700000000 + i;
		if (cb(&m, arg) != 0)
			break;
		n++;
	}
	/* Nothing is taken: message.ack does that. */
	return n;
}

int
engine_pending_any(void)
{
	return stub.flags & 8 ? -1 : stub.pending > 0;
}

/* Small, so that a reply stops before its budget now and then. */
size_t
engine_receive_budget(void)
{
	return 64;
}

int
engine_ack(const char *const *ids, size_t n, int *taken, char *err, size_t errlen)
{
	int rv = outcome(err, errlen);

	for (size_t i = 0; i < n; i++)
		check_text(ids[i], 8 << 20);
	*taken = rv == ENGINE_OK ? (int)n : 0;
	return rv;
}

int
engine_rotate(int *announced, int64_t *epoch, char *err, size_t errlen)
{
	int rv = outcome(err, errlen);

	*announced = 3;
	*epoch = 43;
	return rv;
}

/* --- names and file transfers ------------------------------------------ */

int
engine_contact_accept_as(const char *name, const char *as, char *err,
    size_t errlen)
{
	if (as != NULL)
		check_text(as, 4 * VEIL_NAME_MAX);
	return by_name(name, err, errlen);
}

int
engine_contact_rename(const char *name, const char *to,
    struct engine_contact *out, char *err, size_t errlen)
{
	int rv;

	check_text(to, 4 * VEIL_NAME_MAX);
	if ((rv = by_name(name, err, errlen)) == ENGINE_OK)
		fill_contact(out, "Bob");
	return rv;
}

static void
fill_transfer(struct engine_transfer *t)
{
	memset(t, 0, sizeof *t);
	memcpy(t->id, "00112233445566778899aabbccddeeff", 32);
	t->outgoing = 1;
	snprintf(t->contact, sizeof t->contact, "Bob");
	snprintf(t->name, sizeof t->name, "photo.jpg");
	t->size = 1024;
	t->bytes = 512;
	t->state = "sending";
	t->created = 1700000000;
}

/* One send in flight: its done runs at the next commit, as in veild
 * (after the copy is durable), unless methods.c gives it up first. */
static struct {
	engine_send_done	 done;
	void			*arg;
	int			 rv;
} file_pending;

static void
file_fire(void *unused, int committed)
{
	struct engine_transfer	 t;
	engine_send_done	 done = file_pending.done;

	(void)unused;
	if (done == NULL)
		return;
	file_pending.done = NULL;
	fill_transfer(&t);
	if (committed && file_pending.rv == ENGINE_OK)
		done(file_pending.arg, ENGINE_OK, &t, NULL);
	else
		done(file_pending.arg, ENGINE_EINTERNAL, NULL, "stub: failed");
}

int
engine_file_send(const char *to, int fd, const char *path, uid_t peer,
    const char *name, engine_send_done done, void *arg, void **handle,
    char *err, size_t errlen)
{
	int rv;

	(void)peer;
	check_text(to, 4 * VEIL_NAME_MAX);
	if (fd < 0 && path == NULL)
		abort();
	if (path != NULL)
		check_text(path, ENGINE_PATH_MAX);
	if (name != NULL)
		check_text(name, 4 * VEIL_FILE_NAME_MAX);
	if (done == NULL || handle == NULL)
		abort();
	if ((rv = outcome(err, errlen)) != ENGINE_OK)
		return rv;
	if (file_pending.done != NULL) {	/* one at a time, like a busy veild */
		snprintf(err, errlen, "stub: busy");
		return ENGINE_EQUOTA;
	}
	file_pending.done = done;
	file_pending.arg = arg;
	file_pending.rv = stub.rv;
	*handle = &file_pending;
	engine_after_commit(file_fire, NULL);
	return ENGINE_OK;
}

void
engine_file_send_abort(void *handle)
{
	if (handle != &file_pending || file_pending.done == NULL)
		abort();
	file_pending.done = NULL;
}

int
engine_transfer_foreach(int (*cb)(const struct engine_transfer *, void *),
    void *arg)
{
	struct engine_transfer t;

	fill_transfer(&t);
	if (stub.rv != ENGINE_OK)
		return -1;
	return cb(&t, arg) < 0 ? -1 : 0;
}

int
engine_transfer_cancel(const char *id, char *err, size_t errlen)
{
	check_text(id, 64);
	return outcome(err, errlen);
}
