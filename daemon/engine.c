/* engine.c: the engine's orchestrator — identity, module start and stop in order, the tick, status, send and receive. */
#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include <config.h>	/* autoconf's */

#include "backup.h"
#include "core.h"
#include "log.h"

#define DEDUPE_MS	(30LL * 24 * 3600 * 1000)
#define SENDKEY_MS	((int64_t)ENGINE_SENDKEY_DAYS * 24 * 3600 * 1000)
/* Seconds between WAL checkpoints: how long a wiped key's page may stay
 * in veil.db-wal (protocol.md 8). */
#define CHECKPOINT_S	5

/* The obscurity levels (SPEC section 2) as policies. */
static const struct level_policy policies[] = {
	[1] = { .pair_inboxes = 0, .rotates = 0, .card_conn = 0, .card_per_conn = 0 },
	[2] = { .pair_inboxes = 1, .rotates = 1, .card_conn = 1, .card_per_conn = 0 },
	[3] = { .pair_inboxes = 0, .rotates = 1, .card_conn = 1, .card_per_conn = 1 },
};
/* A key period's receive tolerances: min(Pd / 4, 120 s) (protocol.md 2.1). */
#define KEY_SLACK_MAX	120

static struct engine {
	struct event_base	*base;
	/* A copy of the configuration: strings stay the caller's (they
	 * outlive the engine); engine_reload changes what may change. */
	struct veild_config	 cfg;
	struct store		*st;
	struct veil_identity	 id;
	struct event		*tick;
	uint64_t		 ticks;		/* seconds ticked, gates resync jumps */
	engine_event_cb		 cb;
	void			*cb_arg;
	int			 started;	/* modules up to where shutdown undoes */
	enum store_trouble	 trouble;	/* why the store takes no changes */
	char			 problem[512];	/* ... as a sentence */
} E;

const struct veild_config *
eng_cfg(void)
{
	return &E.cfg;
}

struct store *
eng_store(void)
{
	return E.st;
}

struct event_base *
eng_base(void)
{
	return E.base;
}

const struct veil_identity *
eng_identity(void)
{
	return &E.id;
}

const struct level_policy *
eng_policy(void)
{
	return &policies[E.cfg.identity.obscurity];
}

uint64_t
eng_tick(void)
{
	return E.ticks;
}

uint32_t
eng_epoch_len(void)
{
	return eng_policy()->rotates ? (uint32_t)(E.cfg.rotation.mean_ms / 1000) : 0;
}

uint32_t
eng_key_period(void)
{
	return (uint32_t)(E.cfg.keys.period_ms / 1000);
}

void
eng_clock(struct veil_clock *clk)
{
	uint32_t p = eng_key_period() / 4;

	clk->now = now_s();
	clk->grace = clk->lead = p < KEY_SLACK_MAX ? p : KEY_SLACK_MAX;
}

/* --- the disk ------------------------------------------------------------- */

static const char *
trouble_name(enum store_trouble t)
{
	switch (t) {
	case STORE_OK:		return "ok";
	case STORE_FULL:	return "full";
	case STORE_READONLY:	return "read-only";
	case STORE_IOERR:	return "io error";
	case STORE_DAMAGED:	return "damaged";
	}
	return "ok";
}

static void
trouble_text(enum store_trouble t, char *buf, size_t len)
{
	const char *dir = E.cfg.state_dir;

	switch (t) {
	case STORE_OK:
		buf[0] = '\0';
		break;
	case STORE_FULL:
		snprintf(buf, len, "the disk holding state_dir %s is full: nothing "
		    "was stored, so no message is accepted until there is space; "
		    "messages sent to us wait at their senders", dir);
		break;
	case STORE_READONLY:
		snprintf(buf, len, "state_dir %s cannot be written (a read-only file "
		    "system or permissions): nothing was stored, so no message is "
		    "accepted until it can be; messages sent to us wait at their "
		    "senders", dir);
		break;
	case STORE_IOERR:
		snprintf(buf, len, "the disk holding state_dir %s failed a write: "
		    "nothing was stored, so no message is accepted until writes "
		    "succeed again; messages sent to us wait at their senders", dir);
		break;
	case STORE_DAMAGED:
		snprintf(buf, len, "%s/veil.db is damaged: nothing more is stored; "
		    "stop veild, keep a copy of the state directory and restore "
		    "veil.db from a backup", dir);
		break;
	}
}

/*
 * Whether the disk takes changes, from the outcome of writes: a failure
 * of the disk's (full, read-only, I/O, damage) stops the engine from
 * accepting messages with a clear error until a write succeeds again (a
 * damaged file stays damaged).  Each change is logged once.
 */
void
eng_store_result(int ok)
{
	enum store_trouble t = ok ? STORE_OK : store_trouble(E.st);

	if (!ok && t == STORE_OK)
		return;		/* not the disk's doing */
	if (t == E.trouble || E.trouble == STORE_DAMAGED)
		return;
	if (t != STORE_OK) {
		trouble_text(t, E.problem, sizeof E.problem);
		log_warnx("state database: %s (%s)", E.problem, store_errmsg(E.st));
	} else {
		E.problem[0] = '\0';
		log_info("state database: changes are stored again; messages are "
		    "accepted");
	}
	E.trouble = t;
}

const char *
engine_store_problem(void)
{
	return E.trouble != STORE_OK ? E.problem : NULL;
}

/* --- events, after the commit ------------------------------------------ */

struct queued_event {
	struct engine_event	 ev;
	char			 name[VEIL_NAME_MAX + 1];
	char			 peer_name[VEIL_NAME_MAX + 1];
	char			 state[32];
	char			 warning[128];
	char			 fingerprint[VEIL_FP_TEXT];
	struct engine_transfer	*transfer;	/* a copy, when there is one */
};

static void
event_fire(void *arg, int committed)
{
	struct queued_event *q = arg;

	if (committed && E.cb != NULL)
		E.cb(&q->ev, E.cb_arg);
	free(q->transfer);
	free(q);
}

static const char *
keep(char *dst, size_t len, const char *src)
{
	if (src == NULL)
		return NULL;
	copystr(dst, src, len);
	return dst;
}

void
eng_event(const struct engine_event *ev)
{
	struct queued_event *q;

	if ((q = calloc(1, sizeof *q)) == NULL) {
		log_warnx("out of memory: an event is lost");
		return;
	}
	q->ev = *ev;
	q->ev.name = keep(q->name, sizeof q->name, ev->name);
	q->ev.peer_name = keep(q->peer_name, sizeof q->peer_name, ev->peer_name);
	q->ev.state = keep(q->state, sizeof q->state, ev->state);
	q->ev.warning = keep(q->warning, sizeof q->warning, ev->warning);
	q->ev.fingerprint = keep(q->fingerprint, sizeof q->fingerprint,
	    ev->fingerprint);
	if (ev->transfer != NULL) {
		if ((q->transfer = malloc(sizeof *q->transfer)) == NULL) {
			free(q);
			return;
		}
		*q->transfer = *ev->transfer;
		q->ev.transfer = q->transfer;
	}
	after_commit(event_fire, q);
}

void
eng_event_state(const struct contact *c, const char *warning)
{
	struct engine_event ev;

	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_CONTACT_STATE;
	ev.name = c->name;
	ev.state = veil_agree_state_name(c->state);
	ev.warning = warning;
	eng_event(&ev);
}

void
engine_set_event_cb(engine_event_cb cb, void *arg)
{
	E.cb = cb;
	E.cb_arg = arg;
}

void
engine_after_commit(void (*fn)(void *, int), void *arg)
{
	after_commit(fn, arg);
}

/* --- identity, tick, start and stop ------------------------------------ */

/* A database whose contacts were paired under wire protocol 1 (which did
 * not prove the requester's key) cannot go on: say so and stop. */
static int
check_wire(const char *path, char *err, size_t errlen)
{
	struct store_meta m;

	if (store_meta_get(E.st, &m) != 1) {
		seterr(err, errlen, "store: %s", store_errmsg(E.st));
		return -1;
	}
	if (m.wire == VEIL_PROTOCOL_VERSION)
		return 0;
	seterr(err, errlen, "%s holds contacts of veil wire protocol %d; this "
	    "veild speaks protocol %d, which proves both identities when "
	    "contacts pair, and contacts paired the old way cannot be carried "
	    "over: move the file away (mv %s %s.v%d) and pair again",
	    path, m.wire, VEIL_PROTOCOL_VERSION, path, path, m.wire);
	return -1;
}

static int
load_identity(char *err, size_t errlen)
{
	int r = store_identity_get(E.st, E.id.pk, E.id.sk);

	if (r == 1)
		return 0;
	if (r < 0) {
		seterr(err, errlen, "damaged identity in the store: %s",
		    store_errmsg(E.st));
		return -1;
	}
	veil_identity_new(&E.id);
	if (store_identity_set(E.st, E.id.pk, E.id.sk) != 0) {
		seterr(err, errlen, "cannot store the identity: %s", store_errmsg(E.st));
		return -1;
	}
	log_info("created a new identity");
	return 0;
}

static void
tick(evutil_socket_t fd, short ev, void *arg)
{
	int64_t now = now_ms();

	(void)fd;
	(void)ev;
	(void)arg;
	E.ticks++;
	contact_sweep();
	if (conn_up())
		outbox_flush();
	recv_tick(now);
	if (E.ticks % 2 == 0)
		inbox_housekeeping();	/* expired cards */
	/* Requests unanswered too long: a second after start, then each
	 * minute. */
	if (E.ticks % 60 == 1 && txn_begin() == 0) {
		pairing_expire();
		txn_commit();
	}
	if (E.ticks % CHECKPOINT_S == 0) {
		/* The sweep above opened a group: commit it first, or the
		 * checkpoint would always find a transaction open. */
		txn_flush();
		/* Still no space, or read-only?  A small write finds out,
		 * so that status tells and the log says when it is over. */
		if (E.trouble != STORE_OK && E.trouble != STORE_DAMAGED)
			eng_store_result(store_probe(E.st) == 0);
		if (store_checkpoint(E.st) < 0)
			log_warnx("store: checkpoint: %s", store_errmsg(E.st));
	}
	if (E.ticks % 3600 == 0) {
		if (store_rx_prune(E.st, now - DEDUPE_MS) < 0 ||
		    store_sendkey_prune(E.st, now - SENDKEY_MS) < 0)
			log_warnx("store: %s", store_errmsg(E.st));
		pairing_prune();
		file_housekeeping(now);
	}
}

/*
 * The modules in dependency order; shutdown runs the started ones in
 * reverse.  Each init may use the ones before it.
 */
enum { UP_NONE, UP_STORE, UP_INBOX, UP_CONTACT, UP_CONN, UP_RECV, UP_FILE };

static int engine_init_modules(struct event_base *base,
    const struct veild_config *cfg, struct store *st, char *err,
    size_t errlen);

/* engine_init_modules, and when the disk was why it failed, says so. */
int
engine_init(struct event_base *base, const struct veild_config *cfg,
    struct store *st, char *err, size_t errlen)
{
	enum store_trouble t;
	size_t n;

	if (engine_init_modules(base, cfg, st, err, errlen) == 0)
		return 0;
	if (E.st != NULL && (t = store_trouble(E.st)) != STORE_OK) {
		n = strlen(err);
		trouble_text(t, E.problem, sizeof E.problem);
		snprintf(err + n, errlen - n, ": %s", E.problem);
	}
	return -1;
}

static int
engine_init_modules(struct event_base *base, const struct veild_config *cfg,
    struct store *st, char *err, size_t errlen)
{
	engine_event_cb cb = E.cb;
	void *cb_arg = E.cb_arg;
	char path[4096];

	/* The event callback outlives a restart of the engine (a restore). */
	memset(&E, 0, sizeof E);
	E.cb = cb;
	E.cb_arg = cb_arg;
	E.base = base;
	E.cfg = *cfg;
	if (cfg->identity.obscurity < 1 || cfg->identity.obscurity > 3) {
		seterr(err, errlen, "obscurity must be 1, 2 or 3");
		return -1;
	}
	if (veil_init() != 0) {
		seterr(err, errlen, "libsodium failed to initialise");
		return -1;
	}
	snprintf(path, sizeof path, "%s/veil.db", cfg->state_dir);
	E.st = st;
	E.started = UP_STORE;
	if (check_wire(path, err, errlen) != 0 || load_identity(err, errlen) != 0)
		return -1;
	if (inbox_init(err, errlen) != 0)
		return -1;
	E.started = UP_INBOX;
	if (contact_init() != 0 || reset_load() != 0) {
		seterr(err, errlen, "cannot load contacts: %s", store_errmsg(E.st));
		return -1;
	}
	E.started = UP_CONTACT;
	if (conn_init(err, errlen) != 0)
		return -1;
	E.started = UP_CONN;
	if (recv_init() != 0) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	E.started = UP_RECV;
	if (file_init(err, errlen) != 0)
		return -1;
	E.started = UP_FILE;
	log_info("%zu contacts loaded", contact_count());
	return 0;
}

int
engine_start(void)
{
	struct timeval tv = { 1, 0 };
	int64_t now = now_ms();

	/* The hourly prune, once at start too: a daemon restarted more
	 * often than hourly would never get to it. */
	if (store_rx_prune(E.st, now - DEDUPE_MS) < 0 ||
	    store_sendkey_prune(E.st, now - SENDKEY_MS) < 0)
		log_warnx("store: %s", store_errmsg(E.st));
	/* From here brackets commit as a group, once per loop pass. */
	if (txn_init() != 0 || outbox_init() != 0 || backup_init() != 0)
		return -1;
	if ((E.tick = event_new(E.base, -1, EV_PERSIST, tick, NULL)) == NULL ||
	    event_add(E.tick, &tv) != 0)
		return -1;
	file_start();
	return conn_start();
}

void
engine_reload(const struct veild_config *next)
{
	uint32_t l = eng_epoch_len(), p = eng_key_period();

	E.cfg.retransmit = next->retransmit;
	E.cfg.accept = next->accept;
	E.cfg.rotation = next->rotation;
	E.cfg.frames.cover_rate = next->frames.cover_rate;
	E.cfg.frames.jitter_ms = next->frames.jitter_ms;
	E.cfg.keys = next->keys;
	E.cfg.requests = next->requests;
	/* Reassembly is sized at start (by both); the quotas apply at once. */
	if (next->limits.message_max != E.cfg.limits.message_max ||
	    next->limits.reassembly != E.cfg.limits.reassembly)
		log_warnx("limits.message_max and limits.reassembly change at "
		    "the next restart");
	E.cfg.limits.unread_messages = next->limits.unread_messages;
	E.cfg.limits.unread_bytes = next->limits.unread_bytes;
	E.cfg.limits.outbox_messages = next->limits.outbox_messages;
	E.cfg.limits.outbox_bytes = next->limits.outbox_bytes;
	E.cfg.limits.receive_reply = next->limits.receive_reply;
	E.cfg.cards = next->cards;
	cover_arm();
	if (eng_epoch_len() != l || eng_key_period() != p) {
		/* The epochs are numbered anew at once; the contacts learn
		 * the new settings by UPDATE, and until each has, it sends
		 * to topics numbered the old way, which we keep. */
		log_info("epoch length %us, key period %us: telling every contact",
		    eng_epoch_len(), eng_key_period());
		inbox_params_changed();
		if (eng_epoch_len() != l)
			conn_reschedule();
		rotation_announce_all(0, NULL);
	}
}

void
engine_shutdown(void)
{
	/* Last state to disk while the transports still exist: committing
	 * hands queued frames to them. */
	if (E.started >= UP_CONTACT && txn_begin() == 0) {
		for (size_t i = 0; i < contact_count(); i++)
			contact_save(contact_at(i));
		txn_commit();
	}
	rotation_shutdown();
	txn_shutdown();
	if (E.tick != NULL)
		event_free(E.tick);
	backup_shutdown();
	outbox_shutdown();
	switch (E.started) {
	case UP_FILE:
		file_shutdown();
		/* FALLTHROUGH */
	case UP_RECV:
		recv_shutdown();
		/* FALLTHROUGH */
	case UP_CONN:
		conn_shutdown();
		/* FALLTHROUGH */
	case UP_CONTACT:
		contact_shutdown();
		/* FALLTHROUGH */
	case UP_INBOX:
		inbox_shutdown();
		/* FALLTHROUGH */
	case UP_STORE:
		/* The store is the vault's (vault.c): it outlives us. */
		store_checkpoint(E.st);
		break;
	}
	veil_identity_wipe(&E.id);
	{
		engine_event_cb cb = E.cb;
		void *cb_arg = E.cb_arg;

		memset(&E, 0, sizeof E);
		E.cb = cb;
		E.cb_arg = cb_arg;
	}
}

/* --- operations ---------------------------------------------------------- */

void
engine_status_line(char *buf, size_t len)
{
	snprintf(buf, len, "%s; %zu contacts; %" PRId64 " queued",
	    conn_up() ? "connected" : "connecting", contact_count(),
	    store_outbox_count(E.st, 0));
}

void
engine_status(struct engine_status *s, int verbose)
{
	size_t by_state[CONTACT_STATES];

	memset(s, 0, sizeof *s);
	s->transport = conn_transport_name();
	s->name = E.cfg.identity.name;
	s->connected = conn_up();
	s->obscurity = E.cfg.identity.obscurity;
	s->frame_size = E.cfg.frames.size;
	contact_tally(by_state);
	s->established = (int64_t)by_state[CONTACT_ESTABLISHED];
	s->pending = (int64_t)by_state[CONTACT_PENDING];
	s->requested = (int64_t)by_state[CONTACT_REQUESTED];
	s->accepted = (int64_t)by_state[CONTACT_ACCEPTED];
	s->failed = (int64_t)by_state[CONTACT_FAILED];
	s->outbox = store_outbox_count(E.st, 0);
	s->unread = store_rx_pending_count(E.st);
	recv_counters(&s->frames_in, &s->dropped);
	s->frames_out = conn_frames_out();
	s->wire = VEIL_PROTOCOL_VERSION;
	s->store = trouble_name(E.trouble);
	if (verbose) {
		copystr(s->card, inbox_card_topic(), sizeof s->card);
		s->epoch = conn_epoch();
		s->next_rotation = conn_next_epoch_ms() / 1000;
	}
}

void
engine_foreach_id(void (*client)(const char *, void *),
    void (*topic)(const char *, void *), void *arg)
{
	conn_foreach_id(client, topic, arg);
}

int
engine_send(const char *to, const void *text, size_t len, char id[ENGINE_ID_TEXT],
    char *err, size_t errlen)
{
	return engine_send_keyed(to, text, len, NULL, 0, id, err, errlen);
}

/* A send key seen before: 1 with its message's ID in id, 0 not seen,
 * else an engine error (another message had that key, the store). */
static int
sendkey_lookup(const struct contact *c, const char *key, size_t keylen,
    const uint8_t digest[STORE_DIGEST_BYTES], char id[ENGINE_ID_TEXT],
    char *err, size_t errlen)
{
	struct store_sendkey k;
	int r;

	if ((r = store_sendkey_get(E.st, key, keylen, &k)) < 0) {
		seterr(err, errlen, "store: %s", store_errmsg(E.st));
		return ENGINE_EINTERNAL;
	}
	if (r == 0)
		return 0;
	if (k.contact_id != c->id ||
	    sodium_memcmp(k.digest, digest, sizeof k.digest) != 0) {
		seterr(err, errlen, "key already named another message (to "
		    "another contact or with another text)");
		return ENGINE_EEXIST;
	}
	msgid_hex(k.msgid, id);
	return 1;
}

int
engine_send_keyed(const char *to, const void *text, size_t len,
    const char *key, size_t keylen, char id[ENGINE_ID_TEXT], char *err,
    size_t errlen)
{
	struct contact *c = contact_by_name(to);
	uint8_t msgid[VEIL_MSGID_BYTES];
	struct store_sendkey k;
	int64_t now = now_ms();
	int r;

	if (key != NULL && (keylen == 0 || keylen > ENGINE_SENDKEY_MAX)) {
		seterr(err, errlen, "key: 1 to %d bytes", ENGINE_SENDKEY_MAX);
		return ENGINE_EINVAL;
	}
	if (c == NULL) {
		seterr(err, errlen, "no contact named %s", to);
		return ENGINE_ENOENT;
	}
	if (key != NULL) {
		/* Text and contact bind the key: a retry must be the same
		 * message, not a new one that happens to reuse a key.  The
		 * digest is keyed by a subkey of the identity's secret (sealed
		 * at rest): one who copies veil.db cannot test guesses of a
		 * short text against it. */
		uint8_t dk[crypto_generichash_KEYBYTES];

		crypto_generichash(dk, sizeof dk,
		    (const uint8_t *)"veil send-key digest", 20,
		    E.id.sk, sizeof E.id.sk);
		crypto_generichash(k.digest, sizeof k.digest, text, len, dk,
		    sizeof dk);
		sodium_memzero(dk, sizeof dk);
		if ((r = sendkey_lookup(c, key, keylen, k.digest, id, err,
		    errlen)) != 0)
			return r == 1 ? ENGINE_OK : r;
	}
	if (c->state != CONTACT_ESTABLISHED) {
		seterr(err, errlen, "%s is %s, not established", c->name,
		    veil_agree_state_name(c->state));
		return ENGINE_ESTATE;
	}
	if (len > E.cfg.limits.message_max) {
		seterr(err, errlen, "message too large (at most %zu bytes, "
		    "limits.message_max)", E.cfg.limits.message_max);
		return ENGINE_ETOOBIG;
	}
	/* A contact that acknowledges nothing (gone, or hostile) must not
	 * fill our disk with what we queue for it. */
	{
		int64_t rows, bytes;

		if (store_outbox_usage(E.st, c->id, &rows, &bytes) != 0)
			goto fail;
		if (rows >= (int64_t)E.cfg.limits.outbox_messages ||
		    bytes + (int64_t)len > (int64_t)E.cfg.limits.outbox_bytes) {
			seterr(err, errlen, "the outbox for %s is full: %" PRId64
			    " messages (%" PRId64 " bytes) not yet acknowledged "
			    "(limits.outbox_messages, limits.outbox_bytes)",
			    c->name, rows, bytes);
			return ENGINE_EQUOTA;
		}
	}
	veil_msgid_new(msgid);
	/* Durable before acknowledged: the row, its key and the advanced
	 * counter commit together, then the frames leave. */
	if (txn_begin() != 0)
		goto fail;
	if (store_outbox_add(E.st, c->id, msgid, VEIL_T_TEXT, text, len, now,
	    now + backoff(0)) < 0)
		goto fail;
	if (key != NULL) {
		k.contact_id = c->id;
		memcpy(k.msgid, msgid, sizeof k.msgid);
		k.created = now;
		if (store_sendkey_add(E.st, key, keylen, &k) != 0)
			goto fail;
	}
	if (send_to(c, VEIL_T_TEXT, msgid, text, len, 0) != 0)
		goto fail;
	if (txn_commit() != 0)
		goto fail;
	msgid_hex(msgid, id);
	return ENGINE_OK;
fail:
	seterr(err, errlen, "store: %s", store_errmsg(E.st));
	eng_store_result(0);
	txn_rollback();
	if (E.trouble != STORE_OK) {
		copystr(err, E.problem, errlen);
		return ENGINE_ESTORAGE;
	}
	return ENGINE_EINTERNAL;
}

struct rx_ctx {
	int	(*cb)(const struct engine_rx *, void *);
	void	*arg;
	int	 n;
};

static int
rx_cb(const struct store_rx *r, void *arg)
{
	struct rx_ctx *x = arg;
	struct contact *c = contact_find(r->contact_id);
	struct engine_rx m;
	struct engine_file *f = NULL;
	int rv;

	memset(&m, 0, sizeof m);
	msgid_hex(r->msgid, m.id);
	m.from = c != NULL ? c->name : "";
	m.type = r->type;
	m.body = r->body;
	m.len = r->body_len;
	if (r->type == VEIL_T_FILE) {
		if ((f = malloc(sizeof *f)) == NULL)
			return 1;
		if (file_rx_info(r->body, r->body_len, f) != 0) {
			free(f);
			return 1;
		}
		m.file = f;
		m.body = NULL;
		m.len = 0;
	}
	m.received = r->received_at / 1000;
	rv = x->cb(&m, x->arg);
	free(f);
	if (rv != 0)
		return 1;	/* not handed out: the next call starts there */
	x->n++;
	return 0;
}

int
engine_receive(int limit, int (*cb)(const struct engine_rx *, void *), void *arg)
{
	struct rx_ctx x;

	memset(&x, 0, sizeof x);
	x.cb = cb;
	x.arg = arg;
	if (limit <= 0 || limit > 256)
		limit = 256;
	/* Nothing is taken here: a reply that never reaches its app (the
	 * client went away mid-reply) loses nothing; engine_ack takes. */
	if (store_rx_pending(E.st, limit, rx_cb, &x) < 0) {
		log_warnx("store: %s", store_errmsg(E.st));
		return -1;
	}
	return x.n;
}

int
engine_ack(const char *const *ids, size_t n, int *taken, char *err, size_t errlen)
{
	uint8_t (*bin)[VEIL_MSGID_BYTES];
	size_t blen;
	int r;

	*taken = 0;
	if (n == 0)
		return ENGINE_OK;
	if ((bin = calloc(n, sizeof *bin)) == NULL) {
		seterr(err, errlen, "out of memory");
		return ENGINE_EINTERNAL;
	}
	for (size_t i = 0; i < n; i++)
		if (ids[i] == NULL || strlen(ids[i]) != 2 * VEIL_MSGID_BYTES ||
		    sodium_hex2bin(bin[i], VEIL_MSGID_BYTES, ids[i],
		    2 * VEIL_MSGID_BYTES, NULL, &blen, NULL) != 0 ||
		    blen != VEIL_MSGID_BYTES) {
			free(bin);
			seterr(err, errlen, "ids[%zu]: not a message ID "
			    "(32 hex digits)", i);
			return ENGINE_EINVAL;
		}
	if (txn_begin() != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if ((r = store_rx_take_msgid(E.st, bin[i])) < 0) {
			txn_rollback();
			goto fail;
		}
		*taken += r;
	}
	if (txn_commit() != 0)
		goto fail;
	free(bin);
	return ENGINE_OK;
fail:
	free(bin);
	*taken = 0;
	seterr(err, errlen, "store: %s", store_errmsg(E.st));
	return ENGINE_EINTERNAL;
}

int
engine_pending_any(void)
{
	return store_rx_pending_any(E.st);
}

size_t
engine_receive_budget(void)
{
	return E.cfg.limits.receive_reply;
}
