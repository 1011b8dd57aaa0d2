/* veild engine: the protocol state of every contact, driven by the store, the transport and the socket. */
#include <sys/types.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#include <config.h>	/* autoconf's */

#include "veil.h"

#include "config.h"
#include "engine.h"
#include "log.h"
#include "rpc.h"
#include "store.h"
#include "transport.h"

#define SLOT_RX		0	/* pair.rx */
#define SLOT_RX_PREV	1	/* pair.rx_prev, during a rotation's grace */
#define SLOT_EPOCH0	2	/* agreement keys before the DH (ACCEPT / FAIL) */
#define OWNER(id, slot)	(((uint64_t)(id) << 2) | (slot))

#define REASM_BYTES	(16u << 20)
#define REASM_MSGS	1024
#define REASM_AGE_MS	(10 * 60 * 1000)
#define DEDUPE_MS	(30LL * 24 * 3600 * 1000)
#define DUE_BATCH	32
#define ROT_BATCH	64
#define BACKLOG_MAX	256	/* frames handed to the transport, not yet at the broker */
/* Expected nonces armed ahead of each receive direction.  Reordering on
 * one topic is rare (QoS 1, one publisher), losses beyond this are caught
 * by the resync landmarks, and at 10,000 contacts every armed tag costs
 * memory: 8 is the daemon's choice, below libveil's default. */
#define RX_LOOKAHEAD	8
#define INBOX_MAX	(STORE_TOPIC_MAX + 1)	/* text of an inbox ID */

struct contact {
	int64_t		 id;
	char		 name[VEIL_NAME_MAX + 1];
	int		 state;
	char		 peer_name[VEIL_NAME_MAX + 1];
	uint8_t		 peer_pk[VEIL_KEY_BYTES];
	char		 peer_inbox[INBOX_MAX];
	char		 my_inbox[INBOX_MAX];
	int		 verified;
	int64_t		 created;
	struct veil_pair pair;
	struct veil_agree *agree;	/* during the agreement only */
	struct veil_rxdir *ep0;		/* SLOT_EPOCH0 key, during the agreement only */
	int		 armed;		/* bit per slot */
	unsigned	 dup_acks;	/* copies answered, to climb resync levels */
	int64_t		 dup_last;	/* ms of the last copy */
	uint64_t	 jumped_at;	/* E.round of the last resync jump */
	uint64_t	 done_at;	/* E.round of the last UPDATE-DONE sent */
	char		 upd_inbox[INBOX_MAX];	/* announced, awaiting UPDATE-ACK */
};

static struct engine {
	struct event_base		*base;
	const struct veild_config	*cfg;
	struct store			*st;
	struct transport		*tr;		/* current client ID */
	struct transport		*tr_old;	/* previous epoch's, until grace ends */
	struct transport		*tr_card;	/* level 2: the fixed card inbox */
	char				 card_client_id[VEIL_CLIENTID_MAX + 1];
	uintptr_t			 tr_gen;	/* callback arg of tr */
	struct event			*rot_ev;	/* next scheduled rotation */
	struct event			*cover_ev;	/* next COVER frame */
	struct event			*drain_ev;	/* frees tr_old */
	int64_t				 rot_next;	/* ms */
	struct event			*rot_step_ev;	/* announces in batches */
	struct event			*flush_ev;	/* outbox, next batch */
	int64_t				 rot_cursor;	/* last contact id announced */
	int64_t				 rot_grace_end;
	int64_t				 epoch;
	struct veil_tagtab		*tags;
	struct veil_reasm		*reasm;
	struct veil_identity		 id;
	struct veil_id			 card_cid;
	char				 card_topic[INBOX_MAX];
	char				 shared_inbox[INBOX_MAX];
	char				 client_id[VEIL_CLIENTID_MAX + 1];
	struct contact			**c;	/* sorted by id */
	size_t				 nc, capc;
	struct event			*tick;
	int				 up;
	uint64_t			 frames_in, frames_out, dropped;
	uint64_t			 round;		/* seconds ticked, gates resync jumps */
	uint64_t			 clock_hour;	/* of the armed clock landmarks */
	uint64_t			 pub_sent, pub_done; /* on E.tr: the broker's backlog */
	uint8_t				*bbuf;	/* one frame body, scratch */
} E;

/* Truncating copy that always terminates (glibc 2.36 has no strlcpy). */
static void
copystr(char *dst, const char *src, size_t len)
{
	size_t n = strnlen(src, len - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void rotation_fire(evutil_socket_t, short, void *);
static void rotation_arm(void);
static void rotation_schedule(void);
static void cover_fire(evutil_socket_t, short, void *);
static void cover_arm(void);
static void rotate_step(evutil_socket_t, short, void *);
static void drain_arm(void);
enum sub_mode { SUB_START, SUB_ROTATE, SUB_KEEP_GRACE };
static int subscribe_all(enum sub_mode);
static void inbox_housekeeping(void);
static int in_grace(void);

/*
 * Work split into batches continues on a zero-delay timer, not with
 * event_active(): libevent runs events activated from a callback in the
 * same pass, so I/O (the control socket, the broker) would starve.
 */
static const struct timeval zero_tv = { 0, 0 };
static const struct timeval backlog_tv = { 0, 20000 };

static char *kv_key(char *, size_t, const char *, int64_t);
static void retire_inbox(const char *, int64_t);

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

const char *
contact_state_name(int state)
{
	switch (state) {
	case CONTACT_REQUESTED:		return "requested";
	case CONTACT_PENDING:		return "pending";
	case CONTACT_ACCEPTED:		return "accepted";
	case CONTACT_ESTABLISHED:	return "established";
	case CONTACT_FAILED:		return "failed";
	}
	return "unknown";
}

/* The transport's name of an inbox is the inbox: the MQTT driver adds
 * mqtt.topic_prefix itself.  (To go in the engine split.) */
static void
topic_of(const char *inbox, char *out, size_t len)
{
	snprintf(out, len, "%s", inbox);
}

static void
new_inbox(char out[INBOX_MAX])
{
	struct veil_id id;

	veil_id_new(&id, E.cfg->identity.id_bits);
	veil_id_to_text(&id, out, VEIL_ID_TEXT_MAX);
}

/* --- contact cache --------------------------------------------------- */

static struct contact *
contact_find(int64_t id)
{
	size_t lo = 0, hi = E.nc;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (E.c[mid]->id == id)
			return E.c[mid];
		if (E.c[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The store's index keeps this O(log n): a send must not cost more with
 * 10,000 contacts than with ten. */
static struct contact *
contact_by_name(const char *name)
{
	struct store_contact *row;
	struct contact *c = NULL;

	if ((row = malloc(sizeof *row)) == NULL)
		return NULL;
	if (store_contact_get_by_name(E.st, name, row) == 1)
		c = contact_find(row->id);
	sodium_memzero(row, sizeof *row);
	free(row);
	return c;
}

static int
contact_insert(struct contact *c)
{
	size_t i;

	if (E.nc == E.capc) {
		size_t n = E.capc ? E.capc * 2 : 64;
		struct contact **p = reallocarray(E.c, n, sizeof *p);
		if (p == NULL)
			return -1;
		E.c = p;
		E.capc = n;
	}
	for (i = E.nc; i > 0 && E.c[i - 1]->id > c->id; i--)
		E.c[i] = E.c[i - 1];
	E.c[i] = c;
	E.nc++;
	return 0;
}

static void
contact_unlink(struct contact *c)
{
	for (size_t i = 0; i < E.nc; i++) {
		if (E.c[i] == c) {
			memmove(&E.c[i], &E.c[i + 1], (E.nc - i - 1) * sizeof *E.c);
			E.nc--;
			return;
		}
	}
}

static void
contact_free(struct contact *c)
{
	if (c == NULL)
		return;
	veil_pair_wipe(&c->pair);
	if (c->agree != NULL) {
		veil_agree_wipe(c->agree);
		free(c->agree);
	}
	if (c->ep0 != NULL) {
		sodium_memzero(c->ep0, sizeof *c->ep0);
		free(c->ep0);
	}
	sodium_memzero(c, sizeof *c);
	free(c);
}

/* Arms or disarms one slot's expected nonces in the tag table. */
static void
contact_arm(struct contact *c, int slot, int on)
{
	struct veil_rxdir *d;

	switch (slot) {
	case SLOT_RX:		d = &c->pair.rx; break;
	case SLOT_RX_PREV:	d = &c->pair.rx_prev; break;
	default:		d = c->ep0; break;
	}
	if (d == NULL)
		return;
	if (on && !(c->armed & (1 << slot)) && d->live) {
		if (veil_rx_arm(E.tags, d, OWNER(c->id, slot), RX_LOOKAHEAD) == 0 &&
		    (slot == SLOT_EPOCH0 || veil_rx_arm_clock(E.tags, d,
		    OWNER(c->id, slot), E.clock_hour, RX_LOOKAHEAD) == 0))
			c->armed |= 1 << slot;
		else
			log_warnx("contact %" PRId64 ": cannot arm slot %d", c->id, slot);
	} else if (!on && (c->armed & (1 << slot))) {
		if (slot != SLOT_EPOCH0)
			veil_rx_disarm_clock(E.tags, d, OWNER(c->id, slot),
			    E.clock_hour, RX_LOOKAHEAD);
		veil_rx_disarm(E.tags, d, RX_LOOKAHEAD);
		c->armed &= ~(1 << slot);
	}
}

/*
 * The clock landmarks' period: an hour (protocol.md 2.1).  VEIL_CLOCK_PERIOD
 * (seconds) shortens it for tests, which cannot wait an hour; both sides
 * of a pair must use the same.  Read once.
 */
static int64_t
clock_period_s(void)
{
	static int64_t p;
	const char *e;
	char *end;
	long long v;

	if (p != 0)
		return p;
	p = 3600;
	if ((e = getenv("VEIL_CLOCK_PERIOD")) != NULL && *e != '\0') {
		errno = 0;
		v = strtoll(e, &end, 10);
		if (errno == 0 && *end == '\0' && v >= 1 && v <= 3600)
			p = v;
		else
			log_warnx("VEIL_CLOCK_PERIOD=%s ignored: not 1 to 3600 seconds", e);
	}
	return p;
}

static uint64_t
clock_hour(void)
{
	return (uint64_t)(now_ms() / 1000 / clock_period_s());
}

/* On the hour: every receive direction's clock landmarks move on. */
static void
clock_rearm(void)
{
	uint64_t hour = clock_hour();

	if (hour == E.clock_hour)
		return;
	for (size_t i = 0; i < E.nc; i++) {
		struct contact *c = E.c[i];

		for (int slot = SLOT_RX; slot <= SLOT_RX_PREV; slot++) {
			struct veil_rxdir *d = slot == SLOT_RX ? &c->pair.rx :
			    &c->pair.rx_prev;

			if (!(c->armed & (1 << slot)))
				continue;
			veil_rx_disarm_clock(E.tags, d, OWNER(c->id, slot),
			    E.clock_hour, RX_LOOKAHEAD);
			if (veil_rx_arm_clock(E.tags, d, OWNER(c->id, slot), hour,
			    RX_LOOKAHEAD) != 0)
				log_warnx("contact %" PRId64 ": cannot arm slot %d",
				    c->id, slot);
		}
	}
	E.clock_hour = hour;
}

static void
contact_arm_all(struct contact *c, int on)
{
	for (int s = 0; s <= SLOT_EPOCH0; s++)
		contact_arm(c, s, on);
}

/* Epoch-0 receive key: ACCEPT for the initiator, FAIL for the responder. */
static void
contact_set_ep0(struct contact *c)
{
	struct veil_dirkey r2i, i2r;

	if (c->agree == NULL)
		return;
	if (c->state != CONTACT_REQUESTED && c->state != CONTACT_ACCEPTED)
		return;
	if (c->ep0 == NULL && (c->ep0 = calloc(1, sizeof *c->ep0)) == NULL)
		return;
	veil_agree_epoch0(c->agree, &r2i, &i2r);
	c->ep0->k = c->agree->role == VEIL_ROLE_INITIATOR ? r2i : i2r;
	veil_window_init(&c->ep0->w);
	c->ep0->live = 1;
	veil_dirkey_wipe(&r2i);
	veil_dirkey_wipe(&i2r);
}

/* Writes the contact's row (keys packed) into the store. */
static int
contact_save(struct contact *c)
{
	struct store_contact *row;
	int rv, n;

	if ((row = calloc(1, sizeof *row)) == NULL)
		return -1;
	row->id = c->id;
	copystr(row->name, c->name, sizeof row->name);
	row->state = c->state;
	copystr(row->peer_name, c->peer_name, sizeof row->peer_name);
	memcpy(row->peer_pk, c->peer_pk, sizeof row->peer_pk);
	copystr(row->peer_inbox, c->peer_inbox, sizeof row->peer_inbox);
	copystr(row->my_inbox, c->my_inbox, sizeof row->my_inbox);
	row->verified = c->verified;
	row->created = c->created;
	row->updated = now_ms();
	if (c->pair.role != 0) {
		if ((n = veil_pair_pack(&c->pair, row->pair, sizeof row->pair)) < 0)
			goto fail;
		row->pair_len = (size_t)n;
	}
	if (c->agree != NULL) {
		if ((n = veil_agree_pack(c->agree, row->agree, sizeof row->agree)) < 0)
			goto fail;
		row->agree_len = (size_t)n;
	}
	rv = store_contact_update(E.st, row);
	sodium_memzero(row, sizeof *row);
	free(row);
	if (rv != 1) {
		log_warnx("store: contact update: %s", store_errmsg(E.st));
		return -1;
	}
	return 0;
fail:
	sodium_memzero(row, sizeof *row);
	free(row);
	return -1;
}

static struct contact *
contact_from_row(const struct store_contact *row)
{
	struct contact *c;

	if ((c = calloc(1, sizeof *c)) == NULL)
		return NULL;
	c->id = row->id;
	copystr(c->name, row->name, sizeof c->name);
	c->state = row->state;
	copystr(c->peer_name, row->peer_name, sizeof c->peer_name);
	memcpy(c->peer_pk, row->peer_pk, sizeof c->peer_pk);
	copystr(c->peer_inbox, row->peer_inbox, sizeof c->peer_inbox);
	copystr(c->my_inbox, row->my_inbox, sizeof c->my_inbox);
	c->verified = row->verified;
	c->created = row->created;
	if (row->pair_len > 0 &&
	    veil_pair_unpack(&c->pair, row->pair, row->pair_len) != 0) {
		log_warnx("contact %" PRId64 ": damaged key state", row->id);
		contact_free(c);
		return NULL;
	}
	if (row->agree_len > 0) {
		if ((c->agree = calloc(1, sizeof *c->agree)) == NULL ||
		    veil_agree_unpack(c->agree, row->agree, row->agree_len) != 0) {
			log_warnx("contact %" PRId64 ": damaged agreement state", row->id);
			contact_free(c);
			return NULL;
		}
	}
	contact_set_ep0(c);
	return c;
}

static int
load_cb(const struct store_contact *row, void *arg)
{
	struct contact *c = contact_from_row(row);

	(void)arg;
	if (c == NULL)
		return 0;	/* skip a damaged row, keep it on disk */
	if (c->pair.upd_pending) {
		char key[64];
		size_t n = 0;

		if (store_kv_get(E.st, kv_key(key, sizeof key, "upd.inbox", c->id),
		    c->upd_inbox, sizeof c->upd_inbox - 1, &n) == 1)
			c->upd_inbox[n] = '\0';
		else
			c->upd_inbox[0] = '\0';
	}
	if (contact_insert(c) != 0) {
		contact_free(c);
		return -1;
	}
	return 0;
}

/* --- sending --------------------------------------------------------- */

static void publish_direct(const char *, const uint8_t *, int);

/*
 * Group commit.  Every write path brackets its work in txn_begin() /
 * txn_commit(); the first txn_begin() of a loop iteration opens one store
 * transaction and each bracket becomes a savepoint inside it, so a failing
 * path undoes only its own part.  The transaction commits (one fsync) on a
 * zero timer, after the iteration's other events: a burst of sends or
 * received frames costs one fsync, not one each.  Until then:
 *  - frames sealed inside wait in txq: a frame must never leave before the
 *    sequence counter it used is on disk, or a crash could reuse a nonce;
 *  - replies and notifications wait in the after-commit list: nothing is
 *    acknowledged before it is durable.
 */
struct queued {
	struct queued	*next;
	char		 inbox[INBOX_MAX];
	int		 n;
	uint8_t		 frames[];
};

struct after {
	struct after	*next;
	void		(*fn)(void *, int);
	void		*arg;
};

#define GROUP_DEPTH	8
#define GROUP_OPS	512	/* commit early past this many brackets */

static struct {
	int		 open, depth, ops;
	struct queued	*txq, **txq_tail;
	struct queued	**mark[GROUP_DEPTH];	/* txq_tail at each bracket */
	struct after	*after, **after_tail;
	struct event	*ev;
} G = { .txq_tail = &G.txq, .after_tail = &G.after };

static void
publish(const char *inbox, const uint8_t *frames, int n)
{
	size_t sz = (size_t)n * E.cfg->frames.size;
	struct queued *q;

	if (!store_in_transaction(E.st)) {
		publish_direct(inbox, frames, n);
		return;
	}
	if ((q = malloc(sizeof *q + sz)) == NULL) {
		log_warnx("out of memory: frame dropped, the outbox will resend");
		return;
	}
	copystr(q->inbox, inbox, sizeof q->inbox);
	q->n = n;
	memcpy(q->frames, frames, sz);
	q->next = NULL;
	*G.txq_tail = q;
	G.txq_tail = &q->next;
}

/* Frees (send = 0) or publishes (send = 1) the frames queued from *from on. */
static void
txq_drop(struct queued **from, int send)
{
	struct queued *q, *next;

	for (q = *from; q != NULL; q = next) {
		next = q->next;
		if (send)
			publish_direct(q->inbox, q->frames, q->n);
		free(q);
	}
	*from = NULL;
	G.txq_tail = from;
}

/* Runs fn(arg, committed) once the current group is durable (at once
 * when no group is open). */
static void
after_commit(void (*fn)(void *, int), void *arg)
{
	struct after *a;

	if (!G.open) {
		fn(arg, 1);
		return;
	}
	if ((a = malloc(sizeof *a)) == NULL) {
		fn(arg, 0);
		return;
	}
	a->fn = fn;
	a->arg = arg;
	a->next = NULL;
	*G.after_tail = a;
	G.after_tail = &a->next;
}

/* Commits the open group now; then its frames leave and its replies go. */
static int
group_commit(void)
{
	struct after *a, *next;
	int ok;

	if (!G.open || G.depth > 0)
		return 0;
	ok = store_commit(E.st) == 0;
	if (!ok) {
		log_warnx("store: commit failed: %s", store_errmsg(E.st));
		store_rollback(E.st);
	}
	G.open = 0;
	G.ops = 0;
	if (G.ev != NULL)
		evtimer_del(G.ev);
	txq_drop(&G.txq, ok);
	a = G.after;
	G.after = NULL;
	G.after_tail = &G.after;
	for (; a != NULL; a = next) {
		next = a->next;
		a->fn(a->arg, ok);
		free(a);
	}
	return ok ? 0 : -1;
}

static void
group_fire(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	group_commit();
}

static int
txn_begin(void)
{
	if (G.depth >= GROUP_DEPTH) {
		log_warnx("store: transactions nested too deep");
		return -1;
	}
	if (!G.open) {
		if (store_begin(E.st) != 0)
			return -1;
		G.open = 1;
		if (G.ev != NULL)
			evtimer_add(G.ev, &zero_tv);
	}
	if (store_savepoint(E.st) != 0)
		return -1;
	G.mark[G.depth++] = G.txq_tail;
	return 0;
}

/* Ends a bracket; durability comes with the group (group_commit). */
static int
txn_commit(void)
{
	if (G.depth == 0)
		return -1;
	if (store_release(E.st) != 0) {
		log_warnx("store: %s", store_errmsg(E.st));
		return -1;
	}
	G.depth--;
	if (G.depth == 0 && (++G.ops >= GROUP_OPS || G.ev == NULL))
		return group_commit();
	return 0;
}

/* Undoes this bracket only: its writes and the frames it queued. */
static int
txn_rollback(void)
{
	int rv;

	if (G.depth == 0)
		return 0;
	G.depth--;
	txq_drop(G.mark[G.depth], 0);
	rv = store_rollback_to(E.st);
	return rv;
}

static void
publish_now(const char *topic, const uint8_t *frames, int n)
{
	size_t fs = E.cfg->frames.size;

	for (int i = 0; i < n; i++) {
		if (transport_publish(E.tr, topic, frames + (size_t)i * fs, fs, 0) != 0)
			log_warnx("transport: publish failed");
		else {
			E.frames_out++;
			E.pub_sent++;
		}
	}
}

/* Frames held back by send jitter. */
struct delayed {
	struct event	*ev;
	char		 topic[256];
	int		 n;
	uint8_t		 frames[];
};

static void
delayed_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct delayed *d = arg;

	(void)fd;
	(void)ev;
	publish_now(d->topic, d->frames, d->n);
	event_free(d->ev);
	free(d);
}

/*
 * Publishes frames, after a uniform random delay in [0, jitter) when
 * jitter is configured: the frames are already sealed and their counters
 * saved, so a crash during the delay loses nothing the outbox cannot
 * resend.
 */
static void
publish_direct(const char *inbox, const uint8_t *frames, int n)
{
	char topic[256];
	size_t fs = E.cfg->frames.size;
	uint64_t j = E.cfg->frames.jitter_ms;
	struct delayed *d;
	struct timeval tv;

	topic_of(inbox, topic, sizeof topic);
	if (j == 0 || (d = malloc(sizeof *d + (size_t)n * fs)) == NULL) {
		publish_now(topic, frames, n);
		return;
	}
	copystr(d->topic, topic, sizeof d->topic);
	d->n = n;
	memcpy(d->frames, frames, (size_t)n * fs);
	j = randombytes_uniform(j > UINT32_MAX ? UINT32_MAX : (uint32_t)j);
	tv.tv_sec = (time_t)(j / 1000);
	tv.tv_usec = (suseconds_t)(j % 1000) * 1000;
	if ((d->ev = evtimer_new(E.base, delayed_fire, d)) == NULL ||
	    evtimer_add(d->ev, &tv) != 0) {
		if (d->ev != NULL)
			event_free(d->ev);
		publish_now(topic, frames, n);
		free(d);
	}
}

/*
 * Seals a message under key k (advancing *seq) into a malloc'd buffer.
 * The caller persists the advanced counter before publishing, so that a
 * crash can never make the daemon reuse a nonce.
 */
static uint8_t *
seal_msg(const struct veil_dirkey *k, uint64_t *seq, uint8_t type,
    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body, size_t len, int *nframes)
{
	size_t fs = E.cfg->frames.size;
	int n = veil_message_frames(len, fs, 0);
	uint8_t *buf;

	if (n < 0 || (buf = malloc((size_t)n * fs)) == NULL)
		return NULL;
	if (veil_message_seal(buf, (size_t)n * fs, fs, k, seq, type, msgid, body, len) != n) {
		free(buf);
		return NULL;
	}
	*nframes = n;
	return buf;
}

/* Seals under the contact's transmit key (always one the peer reads),
 * saves the counter, publishes.  Must run inside a store transaction
 * opened by the caller, or alone. */
static int
send_to(struct contact *c, uint8_t type, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len, int attempt)
{
	struct veil_txdir *tx = &c->pair.tx;
	uint8_t *frames;
	int n;

	if (!tx->live)
		return -1;
	/*
	 * A retransmission jumps to a resync landmark the receiver keeps
	 * armed, in case it lost more frames than its lookahead covers.  One
	 * jump per contact per second: the convergence argument is one jump
	 * per attempt, and a backlog of many rows must not climb the levels
	 * once per row (that overshoots the receiver's highest landmark).
	 * Past the last level the sender stops climbing: a receiver that
	 * missed every level lost the frames outright, and only the clock
	 * landmark, at most once an hour, can still meet it.
	 */
	if (attempt > 0 && c->jumped_at != E.round) {
		if (attempt <= VEIL_RESYNC_LEVELS)
			tx->seq = veil_resync_seq(tx->seq, (unsigned)attempt);
		else if (veil_clock_seq(clock_hour()) > tx->seq)
			tx->seq = veil_clock_seq(clock_hour());
		c->jumped_at = E.round;
	}
	if ((frames = seal_msg(&tx->k, &tx->seq, type, msgid, body, len, &n)) == NULL)
		return -1;
	if (contact_save(c) != 0) {
		free(frames);
		return -1;
	}
	publish(c->peer_inbox, frames, n);	/* after commit when in a transaction */
	free(frames);
	return 0;
}

static void
msgid_hex(const uint8_t id[VEIL_MSGID_BYTES], char out[2 * VEIL_MSGID_BYTES + 1])
{
	sodium_bin2hex(out, 2 * VEIL_MSGID_BYTES + 1, id, VEIL_MSGID_BYTES);
}

struct later_note {
	char	*method;
	json_t	*params;
};

static void
note_fire(void *arg, int ok)
{
	struct later_note *n = arg;

	if (ok)
		rpc_notify(n->method, n->params);
	else
		json_decref(n->params);
	free(n->method);
	free(n);
}

/* A notification goes out only once what it announces is durable. */
static void
notify(const char *method, json_t *params)
{
	struct later_note *n;

	if (params == NULL)
		return;
	if ((n = malloc(sizeof *n)) == NULL || (n->method = strdup(method)) == NULL) {
		free(n);
		json_decref(params);
		return;
	}
	n->params = params;
	after_commit(note_fire, n);
}

static void
arrived_fire(void *arg, int ok)
{
	(void)arg;
	if (ok)
		methods_message_arrived();
}

void
engine_after_commit(void (*fn)(void *, int), void *arg)
{
	after_commit(fn, arg);
}

static void
notify_state(struct contact *c)
{
	notify("contact.state", json_pack("{s:s, s:s}", "name", c->name,
	    "state", contact_state_name(c->state)));
}

/* --- receiving ------------------------------------------------------- */

static void finish_agreement(struct contact *);

/* The resync level for answering a copy: copies keep coming while the
 * sender cannot read us, so each climbs a level; after a quiet minute
 * the climb starts again from the bottom. */
static int
dup_attempt(struct contact *c)
{
	int64_t now = now_ms();

	if (now - c->dup_last > 60 * 1000)
		c->dup_acks = 0;
	c->dup_last = now;
	if (c->dup_acks < VEIL_RESYNC_LEVELS + 1)	/* + 1: the clock */
		c->dup_acks++;
	return (int)c->dup_acks;
}

static void
handle_text(struct contact *c, uint8_t type, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	int64_t rid = 0;
	int isnew;
	uint8_t ackid[VEIL_MSGID_BYTES];
	char hex[2 * VEIL_MSGID_BYTES + 1];

	if (c->state != CONTACT_ESTABLISHED) {
		if (c->state != CONTACT_ACCEPTED)
			return;
		/* Data under the pair key proves the initiator derived it. */
		c->state = CONTACT_ESTABLISHED;
		finish_agreement(c);
		notify_state(c);
	}
	if (txn_begin() != 0) {
		log_warnx("store: %s", store_errmsg(E.st));
		return;
	}
	isnew = store_rx_add(E.st, c->id, msgid, type, body, len, now_ms(), &rid);
	if (isnew < 0)
		goto fail;
	/* ACK every copy: the first ACK may have been lost.  A copy means
	 * the sender did not hear us, maybe because it lost more of our
	 * frames than its lookahead covers: answer it at a resync landmark,
	 * climbing a level with each copy. */
	veil_msgid_new(ackid);
	if (send_to(c, VEIL_T_ACK, ackid, msgid, VEIL_MSGID_BYTES,
	    isnew ? 0 : dup_attempt(c)) != 0)
		goto fail;
	if (txn_commit() != 0)
		goto fail;
	if (isnew) {
		msgid_hex(msgid, hex);
		log_debug("message %s stored", hex);
		notify("message", json_pack("{s:s, s:s, s:I}", "id", hex,
		    "from", c->name, "received", (json_int_t)(now_ms() / 1000)));
		after_commit(arrived_fire, NULL);
	}
	return;
fail:
	log_warnx("store: cannot keep a received message: %s", store_errmsg(E.st));
	txn_rollback();
}

static void
handle_ack(struct contact *c, const uint8_t *body, size_t len)
{
	struct store_outbox row;
	char hex[2 * VEIL_MSGID_BYTES + 1];

	if (len % VEIL_MSGID_BYTES != 0)
		return;
	for (size_t off = 0; off < len; off += VEIL_MSGID_BYTES) {
		int r = store_outbox_ack(E.st, c->id, body + off, &row);
		if (r == 1) {
			msgid_hex(body + off, hex);
			notify("delivery", json_pack("{s:s, s:s}", "id", hex,
			    "to", c->name));
		} else if (r < 0)
			log_warnx("store: %s", store_errmsg(E.st));
	}
	contact_save(c);	/* persists the receive window */
}

/* The peer answered our REQUEST (ACCEPT or FAIL): stop resending it. */
static void
request_answered(struct contact *c)
{
	char key[64];
	uint8_t msgid[VEIL_MSGID_BYTES];
	size_t n = 0;

	kv_key(key, sizeof key, "req.msgid", c->id);
	if (store_kv_get(E.st, key, msgid, sizeof msgid, &n) == 1 && n == sizeof msgid)
		store_outbox_ack(E.st, c->id, msgid, NULL);
	store_kv_del(E.st, key);
}

static void
finish_agreement(struct contact *c)
{
	char key[64];

	store_kv_del(E.st, kv_key(key, sizeof key, "accept.frames", c->id));
	contact_arm(c, SLOT_EPOCH0, 0);
	if (c->agree != NULL) {
		veil_agree_wipe(c->agree);
		free(c->agree);
		c->agree = NULL;
	}
	if (c->ep0 != NULL) {
		sodium_memzero(c->ep0, sizeof *c->ep0);
		free(c->ep0);
		c->ep0 = NULL;
	}
}

static void
handle_accept(struct contact *c, const uint8_t *body, size_t len)
{
	uint8_t out[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES];
	size_t outlen = sizeof out;
	uint8_t type = 0;
	int r;

	if (c->state != CONTACT_REQUESTED || c->agree == NULL)
		return;
	r = veil_agree_on_accept(c->agree, body, len, &c->pair, out, &outlen, &type);
	veil_msgid_new(msgid);
	if (r == 0 || r == VEIL_ERR_SECRET)
		request_answered(c);
	if (r == 0) {
		c->state = CONTACT_ESTABLISHED;
		veil_id_to_text(&c->agree->peer_inbox, c->peer_inbox, sizeof c->peer_inbox);
		memcpy(c->peer_pk, c->agree->peer_pk, sizeof c->peer_pk);
		finish_agreement(c);
		if (send_to(c, type, msgid, out, outlen, 0) != 0)
			log_warnx("contact %" PRId64 ": cannot send CONFIRM", c->id);
		contact_arm(c, SLOT_RX, 1);
		log_info("contact %" PRId64 " established", c->id);
	} else if (r == VEIL_ERR_SECRET) {
		struct veil_dirkey r2i, i2r;
		uint64_t seq = 0;
		int n;
		uint8_t *frames;

		veil_agree_epoch0(c->agree, &r2i, &i2r);
		c->state = CONTACT_FAILED;
		frames = seal_msg(&i2r, &seq, type, msgid, out, outlen, &n);
		veil_dirkey_wipe(&r2i);
		veil_dirkey_wipe(&i2r);
		veil_id_to_text(&c->agree->peer_inbox, c->peer_inbox, sizeof c->peer_inbox);
		finish_agreement(c);
		contact_save(c);
		if (frames != NULL) {
			publish(c->peer_inbox, frames, n);
			free(frames);
		}
		log_warnx("contact %" PRId64 ": agreement failed (hash mismatch)", c->id);
	} else {
		log_debug("contact %" PRId64 ": bad ACCEPT: %s", c->id, veil_strerror(r));
		return;
	}
	sodium_memzero(out, sizeof out);
	notify_state(c);
}

static void
handle_confirm(struct contact *c, const uint8_t *body, size_t len)
{
	int r;

	if (c->state != CONTACT_ACCEPTED || c->agree == NULL)
		return;
	r = veil_agree_on_confirm(c->agree, body, len);
	if (r == 0)
		c->state = CONTACT_ESTABLISHED;
	else if (r == VEIL_ERR_SECRET)
		c->state = CONTACT_FAILED;
	else
		return;
	finish_agreement(c);
	contact_save(c);
	notify_state(c);
	log_info("contact %" PRId64 " %s", c->id, contact_state_name(c->state));
}

static void
handle_fail(struct contact *c, const uint8_t *body, size_t len)
{
	if (c->agree == NULL || veil_agree_on_fail(c->agree, body, len) != 0)
		return;
	c->state = CONTACT_FAILED;
	contact_arm(c, SLOT_RX, 0);
	finish_agreement(c);
	contact_save(c);
	notify_state(c);
	log_warnx("contact %" PRId64 ": agreement failed (peer reported a mismatch)", c->id);
}

static char *
kv_key(char *buf, size_t len, const char *what, int64_t id)
{
	snprintf(buf, len, "%s:%" PRId64, what, id);
	return buf;
}

static void
handle_update(struct contact *c, const uint8_t *body, size_t len)
{
	struct veil_id ocid;
	struct veil_ccm ccm;
	char *ack = NULL;
	size_t acklen = 0;
	uint8_t msgid[VEIL_MSGID_BYTES];
	int r;

	if (c->state != CONTACT_ESTABLISHED || veil_id_from_text(&ocid, c->peer_inbox) != 0)
		return;
	r = veil_update_on_update(&c->pair, &ocid, (const char *)body, len, &ccm, &ack, &acklen);
	if (r < 0) {
		log_warnx("contact %" PRId64 ": UPDATE rejected: %s", c->id, veil_strerror(r));
		notify("contact.state", json_pack("{s:s, s:s, s:s}", "name", c->name,
		    "state", contact_state_name(c->state), "warning", veil_strerror(r)));
		return;
	}
	veil_id_to_text(&ccm.new_cid, c->peer_inbox, sizeof c->peer_inbox);
	veil_msgid_new(msgid);
	/* The ACK goes under tx, which the peer reads (the new key waits
	 * in tx_next for its UPDATE-DONE); a repeated UPDATE means our ACK
	 * was lost: resync as for data. */
	if (send_to(c, VEIL_T_UPDATE_ACK, msgid, (const uint8_t *)ack, acklen,
	    r == 1 ? dup_attempt(c) : 0) != 0)
		log_warnx("contact %" PRId64 ": cannot answer UPDATE", c->id);
	log_debug("contact %" PRId64 " moved to %s", c->id, c->peer_inbox);
	sodium_memzero(&ccm, sizeof ccm);
	free(ack);
}

/*
 * UPDATE-DONE: we hold the key the peer's ACK announced, so it may switch
 * its transmit key to it.  Sent once with the ACK's handling and again,
 * at most once a second, while the peer still seals under the old key
 * (frames arriving under rx_prev before any under rx): the DONE was lost.
 */
static void
send_done(struct contact *c)
{
	uint8_t msgid[VEIL_MSGID_BYTES];
	char *body = NULL;
	size_t len = 0;

	if (veil_update_done_build(&c->pair, &body, &len) != 0)
		return;
	c->done_at = E.round;
	veil_msgid_new(msgid);
	if (send_to(c, VEIL_T_UPDATE_DONE, msgid, (const uint8_t *)body, len, 0) != 0)
		log_warnx("contact %" PRId64 ": cannot confirm the new key", c->id);
	free(body);
}

static void
handle_update_done(struct contact *c, const uint8_t *body, size_t len)
{
	int r = veil_update_on_done(&c->pair, (const char *)body, len);

	if (r < 0) {
		log_debug("contact %" PRId64 ": UPDATE-DONE ignored: %s", c->id,
		    veil_strerror(r));
		return;
	}
	if (r == 0) {
		if (contact_save(c) != 0)
			log_warnx("store: %s", store_errmsg(E.st));
		log_debug("contact %" PRId64 ": sending under the new key", c->id);
	}
}

static void
handle_update_ack(struct contact *c, const uint8_t *body, size_t len)
{
	char key[64], inbox[INBOX_MAX];
	uint8_t msgid[VEIL_MSGID_BYTES];
	size_t n = 0;
	int64_t now = now_ms();
	int r;

	contact_arm(c, SLOT_RX, 0);
	contact_arm(c, SLOT_RX_PREV, 0);
	r = veil_update_on_ack(&c->pair, (const char *)body, len);
	contact_arm(c, SLOT_RX, 1);
	contact_arm(c, SLOT_RX_PREV, 1);
	if (r != 0) {
		log_debug("contact %" PRId64 ": UPDATE-ACK ignored: %s", c->id, veil_strerror(r));
		return;
	}
	if (txn_begin() != 0)
		return;
	if (store_kv_get(E.st, kv_key(key, sizeof key, "upd.inbox", c->id), inbox,
	    sizeof inbox - 1, &n) == 1) {
		inbox[n] = '\0';
		/* The grace period starts now: frames the peer wrote to the
		 * old inbox before it read our UPDATE may still be on the way. */
		retire_inbox(c->my_inbox, now + (int64_t)E.cfg->rotation.grace_ms);
		copystr(c->my_inbox, inbox, sizeof c->my_inbox);
		store_kv_del(E.st, key);
	}
	c->upd_inbox[0] = '\0';
	if (store_kv_get(E.st, kv_key(key, sizeof key, "upd.msgid", c->id), msgid,
	    sizeof msgid, &n) == 1 && n == sizeof msgid) {
		store_outbox_ack(E.st, c->id, msgid, NULL);
		store_kv_del(E.st, key);
	}
	store_kv_set_i64(E.st, kv_key(key, sizeof key, "upd.prev_until", c->id),
	    now + (int64_t)E.cfg->rotation.grace_ms);
	send_done(c);
	if (contact_save(c) != 0 || txn_commit() != 0) {
		txn_rollback();
		log_warnx("store: %s", store_errmsg(E.st));
		return;
	}
	log_debug("contact %" PRId64 ": rotation confirmed", c->id);
}

/* A whole message from an established (or establishing) contact. */
static void
dispatch(struct contact *c, int slot, uint8_t type, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	switch (type) {
	case VEIL_T_TEXT:
	case VEIL_T_FILE:
		handle_text(c, type, msgid, body, len);
		break;
	case VEIL_T_ACK:
		handle_ack(c, body, len);
		break;
	case VEIL_T_ACCEPT:
		if (slot == SLOT_EPOCH0)
			handle_accept(c, body, len);
		break;
	case VEIL_T_CONFIRM:
		if (slot == SLOT_RX)
			handle_confirm(c, body, len);
		break;
	case VEIL_T_FAIL:
		if (slot == SLOT_EPOCH0)
			handle_fail(c, body, len);
		break;
	case VEIL_T_UPDATE:
		handle_update(c, body, len);
		break;
	case VEIL_T_UPDATE_ACK:
		handle_update_ack(c, body, len);
		break;
	case VEIL_T_UPDATE_DONE:
		handle_update_done(c, body, len);
		break;
	case VEIL_T_COVER:
	default:
		break;
	}
}

/* Finds a free local name: name, name-2, name-3, ... */
static int
unique_name(const char *want, char out[VEIL_NAME_MAX + 1])
{
	struct store_contact *row;
	int found = 1;

	if ((row = malloc(sizeof *row)) == NULL)
		return -1;
	copystr(out, want, VEIL_NAME_MAX + 1);
	for (int i = 2; i < 1000; i++) {
		if ((found = store_contact_get_by_name(E.st, out, row)) != 1)
			break;
		snprintf(out, VEIL_NAME_MAX + 1, "%.*s-%d", VEIL_NAME_MAX - 5, want, i);
	}
	sodium_memzero(row, sizeof *row);
	free(row);
	return found == 0 ? 0 : -1;
}

static int accept_contact(struct contact *c, char *err, size_t errlen);

/* kv key marking a requester's identity key as refused. */
static void
rejected_key(const uint8_t pk[VEIL_KEY_BYTES], char out[96])
{
	char hex[2 * VEIL_KEY_BYTES + 1];

	sodium_bin2hex(hex, sizeof hex, pk, VEIL_KEY_BYTES);
	snprintf(out, 96, "rejected:%s", hex);
}

static void
replay_accept(struct contact *c)
{
	char key[64];
	size_t fs = E.cfg->frames.size, n = 0;
	uint8_t *frames;

	if ((frames = malloc(VEIL_AGREE_BODY_MAX + 4 * fs)) == NULL)
		return;
	kv_key(key, sizeof key, "accept.frames", c->id);
	if (store_kv_get(E.st, key, frames, VEIL_AGREE_BODY_MAX + 4 * fs, &n) == 1 &&
	    n > 0 && n % fs == 0)
		publish(c->peer_inbox, frames, (int)(n / fs));
	free(frames);
}

struct card_try {
	struct veil_agree	*a;
	const uint8_t		*body;
	size_t			 len;
	int			 result;
	char			 consume[INBOX_MAX];	/* one-time inbox to retire */
	char			 onetime_key[96];
};

static int
card_try_cb(const struct store_inbox *in, void *arg)
{
	struct card_try *t = arg;
	struct veil_id cid;
	size_t n;

	if (in->kind != STORE_INBOX_CARD || veil_id_from_text(&cid, in->topic) != 0)
		return 0;
	if (veil_agree_on_request(t->a, &cid, E.id.pk, t->body, t->len) != 0)
		return 0;
	t->result = 0;
	snprintf(t->onetime_key, sizeof t->onetime_key, "card.once:%s", in->topic);
	if (store_kv_get(E.st, t->onetime_key, NULL, 0, &n) == 1)
		copystr(t->consume, in->topic, sizeof t->consume);
	return 1;
}

static void retire_inbox(const char *, int64_t);

/*
 * A copy of a REQUEST we accepted, sent to a card that is gone (level 3
 * replaces the card at every rotation): the requester resends because our
 * ACCEPT was lost, and would otherwise never hear back.  Say it again.
 * (Anyone can seal a REQUEST naming a contact's key; all it earns them is
 * a copy of the ACCEPT, sealed for that contact, sent to its inbox.)
 */
static int
request_copy(const uint8_t *body, size_t len)
{
	uint8_t pk[VEIL_KEY_BYTES];
	struct store_contact *row;
	struct contact *c = NULL;

	if (veil_agree_request_key(body, len, pk) != 0 ||
	    (row = calloc(1, sizeof *row)) == NULL)
		return 0;
	if (store_contact_get_by_peer_pk(E.st, pk, row) == 1)
		c = contact_find(row->id);
	sodium_memzero(row, sizeof *row);
	free(row);
	if (c == NULL || c->state != CONTACT_ACCEPTED)
		return 0;
	log_debug("contact %" PRId64 ": REQUEST copy to a replaced card, ACCEPT again", c->id);
	replay_accept(c);
	return 1;
}

static void
handle_request(const uint8_t *body, size_t len)
{
	struct veil_agree *a;
	struct store_contact *row = NULL;
	struct contact *c;
	char name[VEIL_NAME_MAX + 1], fp[VEIL_FP_TEXT], err[256], rkey[96];
	size_t n = 0;
	int r;

	if ((a = calloc(1, sizeof *a)) == NULL)
		return;
	r = veil_agree_on_request(a, &E.card_cid, E.id.pk, body, len);
	if (r == VEIL_ERR_STATE) {
		/* Not the current card: a one-time card, or the previous
		 * card of a level 3 rotation still in its grace period. */
		struct card_try t = { .a = a, .body = body, .len = len, .result = VEIL_ERR_STATE };

		store_inbox_list(E.st, now_ms(), card_try_cb, &t);
		r = t.result;
		if (r == 0 && t.consume[0] != '\0') {
			retire_inbox(t.consume, now_ms());	/* one use only */
			store_kv_del(E.st, t.onetime_key);
		}
	}
	if (r == VEIL_ERR_STATE && request_copy(body, len))
		goto out;
	if (r != 0) {
		log_debug("REQUEST rejected: %s", veil_strerror(r));
		goto out;
	}
	rejected_key(a->peer_pk, rkey);
	if (store_kv_get(E.st, rkey, NULL, 0, &n) == 1) {
		log_debug("REQUEST from a refused key dropped");
		goto out;
	}
	if ((row = calloc(1, sizeof *row)) == NULL)
		goto out;
	/* The broker may deliver a REQUEST twice; one pending contact is enough. */
	if (store_contact_get_by_peer_pk(E.st, a->peer_pk, row) == 1) {
		c = contact_find(row->id);
		if (c != NULL && c->state != CONTACT_FAILED) {
			/* The requester resends until it hears back: if we
			 * accepted already, our ACCEPT was lost, say it again. */
			if (c->state == CONTACT_ACCEPTED)
				replay_accept(c);
			else
				log_debug("REQUEST from a known key ignored");
			goto out;
		}
		if (c != NULL) {	/* a new attempt after a failure */
			contact_arm_all(c, 0);
			contact_unlink(c);
			store_contact_delete(E.st, c->id, now_ms());
			contact_free(c);
		}
	}
	if (unique_name(a->peer_name, name) != 0)
		goto out;
	memset(row, 0, sizeof *row);
	copystr(row->name, name, sizeof row->name);
	row->state = CONTACT_PENDING;
	copystr(row->peer_name, a->peer_name, sizeof row->peer_name);
	memcpy(row->peer_pk, a->peer_pk, sizeof row->peer_pk);
	veil_id_to_text(&a->peer_inbox, row->peer_inbox, sizeof row->peer_inbox);
	row->created = row->updated = now_ms();
	if ((r = veil_agree_pack(a, row->agree, sizeof row->agree)) < 0)
		goto out;
	row->agree_len = (size_t)r;
	if ((row->id = store_contact_add(E.st, row)) < 0) {
		log_warnx("store: %s", store_errmsg(E.st));
		goto out;
	}
	if ((c = contact_from_row(row)) == NULL || contact_insert(c) != 0) {
		contact_free(c);
		goto out;
	}
	veil_fingerprint(E.id.pk, c->peer_pk, fp);
	log_info("contact request %" PRId64 " pending", c->id);
	notify("contact.request", json_pack("{s:s, s:s, s:s}", "name", c->name,
	    "peer_name", c->peer_name, "fingerprint", fp));
	if (E.cfg->accept == VEILD_ACCEPT_AUTO && accept_contact(c, err, sizeof err) != 0)
		log_warnx("auto-accept failed: %s", err);
out:
	if (row != NULL) {
		sodium_memzero(row, sizeof *row);
		free(row);
	}
	veil_agree_wipe(a);
	free(a);
}

static void
on_frame(const char *topic, const uint8_t *frame, size_t len)
{
	uint8_t tag[VEIL_TAG_BYTES];
	struct veil_frame_hdr h;
	uint64_t owner, seq;
	size_t fs = E.cfg->frames.size;
	struct contact *c = NULL;
	struct veil_rxdir *d;
	uint8_t *msg = NULL;
	size_t msglen;
	int slot, r;

	if (len != fs) {
		E.dropped++;
		return;
	}
	veil_frame_tag(frame, tag);
	if (veil_tagtab_get(E.tags, tag, &owner, &seq) == 0 &&
	    (c = contact_find((int64_t)(owner >> 2))) != NULL) {
		slot = (int)(owner & 3);
		d = slot == SLOT_RX ? &c->pair.rx : slot == SLOT_RX_PREV ?
		    &c->pair.rx_prev : c->ep0;
		if (d == NULL) {
			E.dropped++;
			return;
		}
		if ((r = veil_frame_open(frame, fs, &d->k, seq, &h, E.bbuf)) != 0 ||
		    (r = veil_window_check(&d->w, seq)) != 0) {
			log_debug("contact %" PRId64 " slot %d seq %" PRIu64 ": frame dropped: %s",
			    c->id, slot, seq, veil_strerror(r));
			E.dropped++;
			return;
		}
		veil_rx_commit(E.tags, d, owner, seq, RX_LOOKAHEAD);
		/* Still the old key after our UPDATE-DONE: it was lost. */
		if (slot == SLOT_RX_PREV && c->pair.rx.w.top == 0 &&
		    !c->pair.upd_pending && c->done_at != E.round &&
		    txn_begin() == 0) {
			send_done(c);
			txn_commit();
		}
		r = veil_reasm_add(E.reasm, owner >> 2, &h, E.bbuf,
		    veil_frame_capacity(fs, 0), (uint64_t)now_ms(), &msg, &msglen);
		if (r == 1) {
			/* One bracket: the handler's writes and the frames it
			 * answers with go together (and are grouped with the
			 * other frames of this loop iteration). */
			int bracket = txn_begin() == 0;

			dispatch(c, slot, h.type, h.msgid, msg, msglen);
			if (bracket)
				txn_commit();
			sodium_memzero(msg, msglen);
			free(msg);
		}
		return;
	}
	/* Unknown tag: maybe a first-contact REQUEST sealed to our identity. */
	if (veil_frame_open_box(frame, fs, E.id.pk, E.id.sk, &h, E.bbuf) != 0 ||
	    h.type != VEIL_T_REQUEST) {
		log_debug("frame on %s dropped: no key expects it", topic);
		E.dropped++;
		return;
	}
	r = veil_reasm_add(E.reasm, 0, &h, E.bbuf, veil_frame_capacity(fs, 1),
	    (uint64_t)now_ms(), &msg, &msglen);
	if (r == 1) {
		int bracket = txn_begin() == 0;

		handle_request(msg, msglen);
		if (bracket)
			txn_commit();
		sodium_memzero(msg, msglen);
		free(msg);
	}
}

/* --- transport callbacks --------------------------------------------- */

static void
flush_outbox(void);

/*
 * Frees the previous connection.  Frames it received but had not handed
 * over yet are acknowledged to the broker already: they are processed
 * first (a lost UPDATE-ACK costs a retransmission round), after E.tr_old
 * is let go, since that processing may run any engine code.
 */
static void
retire_old(void)
{
	struct transport *t = E.tr_old;

	E.tr_old = NULL;
	transport_retire(t);
}

static void
drain_done(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	if (E.tr_old != NULL) {
		/* Inboxes whose life was extended (an UPDATE-ACK still due
		 * there) must not go with the old connection. */
		inbox_housekeeping();
		subscribe_all(SUB_KEEP_GRACE);
		retire_old();
		store_kv_del(E.st, "client.id.prev");
		log_debug("previous client ID retired");
	}
}

static void
tr_state(int up, const char *reason, void *arg)
{
	if ((uintptr_t)arg != E.tr_gen)
		return;		/* the old or the card connection */
	E.up = up;
	if (up) {
		log_info("connected to the broker");
		/* Make-before-break: the old client ID goes only once the new
		 * one is up and the old inboxes' grace has ended. */
		drain_arm();
		flush_outbox();
	} else
		log_warnx("broker connection lost: %s", reason ? reason : "unknown");
}

static void
tr_message(const char *topic, const void *data, size_t len, void *arg)
{
	(void)arg;
	E.frames_in++;
	on_frame(topic, data, len);
}

static void
tr_published(uint64_t cookie, int ok, void *arg)
{
	(void)cookie;
	if ((uintptr_t)arg == E.tr_gen)
		E.pub_done++;
	if (!ok && (uintptr_t)arg == E.tr_gen)
		log_warnx("broker refused a frame");
}

/* Frames the driver dropped before on_message (wrong size, junk, overflow). */
static void
tr_dropped(unsigned int n, void *arg)
{
	(void)arg;
	E.dropped += n;
}

static void
tr_subscribed(const char *topic, int ok, void *arg)
{
	(void)arg;
	if (!ok)
		log_warnx("broker refused a subscription");
	(void)topic;
}

/*
 * Which connection holds which inbox is what keeps pseudonyms apart at
 * the broker: a topic subscribed under two client IDs links them.  So
 * the current epoch's inboxes live on E.tr only, the previous epoch's stay
 * on E.tr_old until its grace ends, and (level 2) the fixed card inbox
 * has a connection of its own, so it ties no chat client ID to another.
 */
static void
subscribe_on(struct transport *t, const char *inbox)
{
	char topic[256];

	topic_of(inbox, topic, sizeof topic);
	if (transport_subscribe(t, topic) != 0)
		log_warnx("transport: subscribe failed");
}

static void
subscribe_inbox(const char *inbox)
{
	subscribe_on(E.tr, inbox);
}

static void
unsubscribe_inbox(const char *inbox)
{
	char topic[256];

	topic_of(inbox, topic, sizeof topic);
	transport_unsubscribe(E.tr, topic);
	if (E.tr_old != NULL)
		transport_unsubscribe(E.tr_old, topic);
	if (E.tr_card != NULL)
		transport_unsubscribe(E.tr_card, topic);
}

/* Is topic the new inbox of an UPDATE still waiting for its ACK?  Then it
 * must stay (the ACK, and with it the contact, would be lost).  O(n): for
 * the few shared inboxes only. */
static int
awaited_by_update(const char *topic)
{
	for (size_t i = 0; i < E.nc; i++)
		if (E.c[i]->pair.upd_pending && strcmp(E.c[i]->upd_inbox, topic) == 0)
			return 1;
	return 0;
}

/* Will this inbox be replaced by the rotation that is starting?  Then it
 * stays on the old connection only. */
static int
inbox_rotates_away(const struct store_inbox *in)
{
	struct contact *c;

	if (in->retire_at != 0)
		return 1;
	if (in->kind == STORE_INBOX_SHARED)
		return strcmp(in->topic, E.shared_inbox) != 0 &&
		    !awaited_by_update(in->topic);
	if (in->kind != STORE_INBOX_PAIR)
		return 0;
	c = contact_find(in->contact_id);
	return c != NULL && c->state == CONTACT_ESTABLISHED && !c->pair.upd_pending &&
	    strcmp(c->my_inbox, in->topic) == 0;
}


static int
inbox_sub_cb(const struct store_inbox *in, void *arg)
{
	enum sub_mode mode = *(enum sub_mode *)arg;

	if (in->kind == STORE_INBOX_CARD && E.tr_card != NULL) {
		if (mode == SUB_START)
			subscribe_on(E.tr_card, in->topic);
		return 0;
	}
	if (mode == SUB_ROTATE) {
		if (!inbox_rotates_away(in))
			subscribe_on(E.tr, in->topic);
		return 0;
	}
	if (mode == SUB_KEEP_GRACE) {
		/* Everything the old connection holds that still lives: the
		 * inboxes in their grace period, and older shared inboxes a
		 * contact still writes to (it has not confirmed our UPDATE). */
		if (in->retire_at != 0 || (in->kind == STORE_INBOX_SHARED &&
		    strcmp(in->topic, E.shared_inbox) != 0))
			subscribe_on(E.tr, in->topic);
		return 0;
	}
	/* At start, inboxes in a grace period go back to the previous
	 * client ID when we still know it. */
	subscribe_on(in->retire_at != 0 && E.tr_old != NULL ? E.tr_old : E.tr, in->topic);
	return 0;
}

static int
subscribe_all(enum sub_mode mode)
{
	return store_inbox_list(E.st, now_ms(), inbox_sub_cb, &mode);
}

static int
inbox_expire_cb(const struct store_inbox *in, void *arg)
{
	(void)arg;
	unsubscribe_inbox(in->topic);
	return 0;
}

static int
grace_cb(const struct store_inbox *in, void *arg)
{
	int64_t *latest = arg;

	if (in->retire_at > *latest)
		*latest = in->retire_at;
	return 0;
}

static int
count_grace_cb(const struct store_inbox *in, void *arg)
{
	int *n = arg;

	if (in->retire_at != 0 && !(in->kind == STORE_INBOX_CARD && E.tr_card != NULL))
		(*n)++;
	return 0;
}

/* Are inboxes of the previous epoch still in their grace period? */
static int
in_grace(void)
{
	int n = 0;

	store_inbox_list(E.st, now_ms(), count_grace_cb, &n);
	return n > 0;
}

/* Frees the previous epoch's connection when the last grace period ends. */
static void
drain_arm(void)
{
	int64_t latest = 0, delay;
	struct timeval tv;

	if (E.tr_old == NULL || E.drain_ev == NULL)
		return;
	store_inbox_list(E.st, now_ms(), grace_cb, &latest);
	delay = latest - now_ms();
	if (delay < 1000)
		delay = 1000;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(E.drain_ev, &tv);
}

/* Adds an inbox row (if new) and subscribes to it. */
static int
add_inbox(const char *inbox, int64_t contact_id, int kind)
{
	int64_t r = store_inbox_add(E.st, inbox, contact_id, kind, now_ms());

	if (r < 0 && r != STORE_EXISTS)
		return -1;
	subscribe_inbox(inbox);
	return 0;
}

/* --- outbox ---------------------------------------------------------- */

struct due {
	int64_t		 id, contact_id;
	uint8_t		 msgid[VEIL_MSGID_BYTES];
	int		 type, attempts;
	uint8_t		*body;
	size_t		 len;
};

struct due_list {
	struct due	 d[DUE_BATCH];
	int		 n;
};

static int
due_cb(const struct store_outbox *o, void *arg)
{
	struct due_list *l = arg;
	struct due *d = &l->d[l->n];

	if ((d->body = malloc(o->body_len ? o->body_len : 1)) == NULL)
		return 1;
	memcpy(d->body, o->body, o->body_len);
	d->len = o->body_len;
	d->id = o->id;
	d->contact_id = o->contact_id;
	memcpy(d->msgid, o->msgid, sizeof d->msgid);
	d->type = o->type;
	d->attempts = o->attempts;
	l->n++;
	return l->n == DUE_BATCH;
}

static int64_t
backoff(int attempts)
{
	uint64_t ms = E.cfg->retransmit.initial_ms;

	for (int i = 0; i < attempts && ms < E.cfg->retransmit.max_ms; i++)
		ms *= 2;
	if (ms > E.cfg->retransmit.max_ms)
		ms = E.cfg->retransmit.max_ms;
	return (int64_t)ms;
}

/* Sends every due outbox row (force: everything, after a reconnect). */
/* A REQUEST again, in a fresh sealed box (the card owner ignores copies
 * from a key it already knows, or answers them with its ACCEPT again). */
static void
resend_request(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	size_t fs = E.cfg->frames.size;
	int n = veil_message_frames(len, fs, 1);
	uint8_t *frames;

	if (n < 0 || (frames = malloc((size_t)n * fs)) == NULL)
		return;
	if (veil_message_seal_box(frames, (size_t)n * fs, fs, c->peer_pk, VEIL_T_REQUEST,
	    msgid, body, len) == n)
		publish(c->peer_inbox, frames, n);
	free(frames);
}

/*
 * Sends one batch of due outbox rows (one transaction); if the batch was
 * full, another runs on the next loop iteration, so a large backlog never
 * stalls the loop.  A row is rescheduled with backoff before it is sent,
 * so it is sent once per due time, never twice in a burst.
 */
static void
flush_outbox(void)
{
	struct due_list *l;
	int64_t now = now_ms();
	int full;

	if ((l = calloc(1, sizeof *l)) == NULL)
		return;
	if (store_outbox_due(E.st, now, DUE_BATCH, due_cb, l) < 0) {
		log_warnx("store: %s", store_errmsg(E.st));
		free(l);
		return;
	}
	full = l->n == DUE_BATCH;
	if (l->n > 0 && txn_begin() == 0) {
		for (int i = 0; i < l->n; i++) {
			struct due *d = &l->d[i];
			struct contact *c = contact_find(d->contact_id);
			int64_t next = now + backoff(d->attempts + 1);

			if (c != NULL && d->type == VEIL_T_REQUEST &&
			    c->state == CONTACT_REQUESTED)
				resend_request(c, d->msgid, d->body, d->len);
			else if (c != NULL && c->state == CONTACT_ESTABLISHED)
				send_to(c, (uint8_t)d->type, d->msgid, d->body, d->len,
				    d->attempts + 1);
			store_outbox_reschedule(E.st, d->id, next, d->attempts + 1);
		}
		if (txn_commit() != 0) {
			log_warnx("store: %s", store_errmsg(E.st));
			txn_rollback();
			full = 0;
		}
	}
	for (int i = 0; i < l->n; i++) {
		sodium_memzero(l->d[i].body, l->d[i].len);
		free(l->d[i].body);
	}
	free(l);
	if (full && E.flush_ev != NULL)
		evtimer_add(E.flush_ev, &zero_tv);
}

static void
flush_fire(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	if (E.up)
		flush_outbox();
}

static void
drop_prev_keys(void)
{
	char key[64];
	int64_t until, now = now_ms();

	for (size_t i = 0; i < E.nc; i++) {
		struct contact *c = E.c[i];

		/*
		 * The old receive key goes when the grace period after our
		 * UPDATE-ACK has passed and the peer has switched: something
		 * arrived under the new key (it seals under the old one until
		 * our UPDATE-DONE reaches it).  The transmit side keeps no old
		 * key: the peer's UPDATE-DONE switches and wipes it.
		 */
		if (!c->pair.rx_prev.live || c->pair.rx.w.top == 0)
			continue;	/* the peer still seals under it */
		if (store_kv_get_i64(E.st, kv_key(key, sizeof key, "upd.prev_until", c->id),
		    &until) == 1 && until > now)
			continue;
		contact_arm(c, SLOT_RX_PREV, 0);
		veil_dirkey_wipe(&c->pair.rx_prev.k);
		sodium_memzero(&c->pair.rx_prev, sizeof c->pair.rx_prev);
		store_kv_del(E.st, key);
		contact_save(c);
	}
}

/*
 * An inbox lives while it is in use, and a grace period after:
 *  - the current shared inbox (levels 1, 3);
 *  - a contact's inbox (it is where the peer sends), and while an UPDATE
 *    is pending also the new inbox it announced;
 *  - so both live until the UPDATE-ACK arrives, however long the peer
 *    stays offline: the ACK comes to the new one, and until then the
 *    peer may not have read the UPDATE and writes to the old one; its
 *    own UPDATEs come there too.  Retiring the old inbox after the grace
 *    period instead deadlocks two peers whose UPDATEs crossed and were
 *    not read in time: each would announce to an inbox the other gave up.
 * The replaced inbox gets the grace period after the ACK.  Used inboxes
 * that were retired get their grace extended; unused ones are retired.
 * A hash set of the used topics keeps this O(contacts).
 */
struct topic_set {
	const char	**slot;
	size_t		  mask;
};

static size_t
topic_hash(const char *t)
{
	size_t h = 5381;

	while (*t != '\0')
		h = h * 33 + (unsigned char)*t++;
	return h;
}

static void
topic_set_add(struct topic_set *ts, const char *t)
{
	size_t i;

	if (t[0] == '\0')
		return;
	for (i = topic_hash(t) & ts->mask; ts->slot[i] != NULL; i = (i + 1) & ts->mask)
		if (strcmp(ts->slot[i], t) == 0)
			return;
	ts->slot[i] = t;
}

static int
topic_set_has(const struct topic_set *ts, const char *t)
{
	size_t i;

	for (i = topic_hash(t) & ts->mask; ts->slot[i] != NULL; i = (i + 1) & ts->mask)
		if (strcmp(ts->slot[i], t) == 0)
			return 1;
	return 0;
}

static int
inbox_gc_cb(const struct store_inbox *in, void *arg)
{
	const struct topic_set *used = arg;
	int64_t now = now_ms(), until = now + (int64_t)E.cfg->rotation.grace_ms;

	if (in->kind == STORE_INBOX_CARD)
		return 0;	/* cards follow their own rules */
	if (topic_set_has(used, in->topic)) {
		if (in->retire_at != 0 && in->retire_at < until)
			store_inbox_retire(E.st, in->id, until);
	} else if (in->retire_at == 0)
		store_inbox_retire(E.st, in->id, until);
	return 0;
}

/* Every row, also those whose retirement time has passed but that the
 * next expiry has not removed yet. */
#define ALL_ROWS	0

static void
inbox_gc(void)
{
	struct topic_set used;
	size_t cap = 64;

	while (cap < 4 * (E.nc + 1))	/* two topics a contact, load <= 1/2 */
		cap *= 2;
	if ((used.slot = calloc(cap, sizeof *used.slot)) == NULL)
		return;
	used.mask = cap - 1;
	if (E.cfg->identity.obscurity != 2)
		topic_set_add(&used, E.shared_inbox);
	for (size_t i = 0; i < E.nc; i++) {
		struct contact *c = E.c[i];

		/* Until its ACK, the peer may not have read our UPDATE
		 * (offline, or unable to open it yet): it still writes to
		 * the old inbox, and its own UPDATEs arrive only there. */
		topic_set_add(&used, c->my_inbox);
		if (c->pair.upd_pending)
			topic_set_add(&used, c->upd_inbox);
	}
	if (txn_begin() == 0) {
		/* Also the rows whose time ran out since the last pass: an
		 * inbox in use must be kept even if its extension lapsed
		 * (grace is as short as the 2 s between passes in tests). */
		store_inbox_list(E.st, ALL_ROWS, inbox_gc_cb, &used);
		txn_commit();
	}
	free(used.slot);
}

/*
 * The GC (keeps what is in use, lapsed or not, retires the rest), then the
 * expiry.  Also right before inboxes move to another connection: a row
 * whose time ran out must neither be carried over (it would live on
 * under the next client ID) nor be left behind while in use.
 */
static void
inbox_housekeeping(void)
{
	inbox_gc();
	store_inbox_expire(E.st, now_ms(), inbox_expire_cb, NULL);
}

static void
tick(evutil_socket_t fd, short ev, void *arg)
{
	static unsigned n;
	int64_t now = now_ms();

	(void)fd;
	(void)ev;
	(void)arg;
	E.round++;
	clock_rearm();
	if (E.up)
		flush_outbox();
	veil_reasm_expire(E.reasm, (uint64_t)now, REASM_AGE_MS);
	if (++n % 2 == 0) {
		/* Every 2 s: the grace periods are seconds long in tests and
		 * minutes in use; both must see an inbox's last use in time. */
		inbox_housekeeping();
	}
	if (n % 10 == 0)
		drop_prev_keys();
	if (n % 3600 == 0)
		store_rx_prune(E.st, now - DEDUPE_MS);
}

/* --- identity -------------------------------------------------------- */

static int
load_identity(char *err, size_t errlen)
{
	size_t n = 0;
	char text[INBOX_MAX];
	int r;

	r = store_kv_get(E.st, "identity.sk", E.id.sk, sizeof E.id.sk, &n);
	if (r == 1 && n == sizeof E.id.sk &&
	    store_kv_get(E.st, "identity.pk", E.id.pk, sizeof E.id.pk, &n) == 1 &&
	    n == sizeof E.id.pk) {
		/* found */
	} else if (r == 0) {
		veil_identity_new(&E.id);
		if (txn_begin() != 0 ||
		    store_kv_set(E.st, "identity.sk", E.id.sk, sizeof E.id.sk) != 0 ||
		    store_kv_set(E.st, "identity.pk", E.id.pk, sizeof E.id.pk) != 0 ||
		    txn_commit() != 0) {
			txn_rollback();
			seterr(err, errlen, "cannot store the identity: %s", store_errmsg(E.st));
			return -1;
		}
		log_info("created a new identity");
	} else {
		seterr(err, errlen, "damaged identity in the store");
		return -1;
	}
	/* The card's contact ID: fixed at levels 1 and 2. */
	r = store_kv_get(E.st, "card.cid", text, sizeof text - 1, &n);
	if (r == 1) {
		text[n] = '\0';
	} else {
		new_inbox(text);
		if (store_kv_set(E.st, "card.cid", text, strlen(text)) != 0 ||
		    store_inbox_add(E.st, text, 0, STORE_INBOX_CARD, now_ms()) < 0) {
			seterr(err, errlen, "cannot store the card: %s", store_errmsg(E.st));
			return -1;
		}
	}
	if (veil_id_from_text(&E.card_cid, text) != 0) {
		seterr(err, errlen, "damaged card ID in the store");
		return -1;
	}
	copystr(E.card_topic, text, sizeof E.card_topic);
	/* One inbox for all contacts at levels 1 and 3. */
	r = store_kv_get(E.st, "inbox.shared", text, sizeof text - 1, &n);
	if (r == 1) {
		text[n] = '\0';
	} else {
		new_inbox(text);
		if (store_kv_set(E.st, "inbox.shared", text, strlen(text)) != 0) {
			seterr(err, errlen, "store: %s", store_errmsg(E.st));
			return -1;
		}
	}
	copystr(E.shared_inbox, text, sizeof E.shared_inbox);
	if (E.cfg->identity.obscurity != 2 &&
	    store_inbox_add(E.st, E.shared_inbox, 0, STORE_INBOX_SHARED, now_ms()) == -1) {
		seterr(err, errlen, "store: %s", store_errmsg(E.st));
		return -1;
	}
	r = store_kv_get(E.st, "client.id", text, sizeof text - 1, &n);
	if (r == 1)
		text[n] = '\0';
	else {
		veil_clientid_new(text, 0);
		store_kv_set(E.st, "client.id", text, strlen(text));
	}
	copystr(E.client_id, text, sizeof E.client_id);
	return 0;
}

/* A transport under client ID id; its callbacks carry a fresh generation. */
static struct transport *
make_transport(const char *id, char *err, size_t errlen)
{
	struct transport_cbs cbs = { tr_state, tr_message, tr_published, tr_subscribed,
	    tr_dropped };
	struct transport *t;

	t = transport_new(E.cfg, E.base, &cbs, (void *)(E.tr_gen + 1), err, errlen);
	if (t == NULL)
		return NULL;
	if (transport_set_client_id(t, id) != 0) {
		transport_free(t);
		seterr(err, errlen, "transport refused the client ID");
		return NULL;
	}
	E.tr_gen++;
	return t;
}

/*
 * A connection under the client ID stored at key (the card's, or the
 * previous epoch's): id_out receives it.  With id_out NULL the ID must
 * already exist; NULL and an empty err when it does not.  Its callbacks
 * carry generation 0, so they never count as the current connection.
 */
static struct transport *
make_aux_transport(const char *key, char *id_out, char *err, size_t errlen)
{
	char id[VEIL_CLIENTID_MAX + 1];
	size_t n = 0;
	uintptr_t gen = E.tr_gen;
	struct transport *t;

	err[0] = '\0';
	if (store_kv_get(E.st, key, id, sizeof id - 1, &n) == 1) {
		id[n] = '\0';
	} else if (id_out != NULL) {
		veil_clientid_new(id, 0);
		if (store_kv_set(E.st, key, id, strlen(id)) != 0) {
			seterr(err, errlen, "store: %s", store_errmsg(E.st));
			return NULL;
		}
	} else
		return NULL;
	E.tr_gen = (uintptr_t)-1;	/* make_transport passes gen + 1 = 0 */
	t = make_transport(id, err, errlen);
	E.tr_gen = gen;
	if (t != NULL && id_out != NULL)
		copystr(id_out, id, VEIL_CLIENTID_MAX + 1);
	return t;
}

int
engine_init(struct event_base *base, const struct veild_config *cfg, char *err,
    size_t errlen)
{
	char path[4096];

	memset(&E, 0, sizeof E);
	E.base = base;
	E.cfg = cfg;
	if (veil_init() != 0) {
		seterr(err, errlen, "libsodium failed to initialise");
		return -1;
	}
	snprintf(path, sizeof path, "%s/veil.db", cfg->state_dir);
	if ((E.st = store_open(path, err, errlen)) == NULL)
		return -1;
	if (load_identity(err, errlen) != 0)
		return -1;
	E.tags = veil_tagtab_new(1024);
	E.clock_hour = clock_hour();
	E.reasm = veil_reasm_new(REASM_BYTES, REASM_MSGS);
	E.bbuf = malloc(cfg->frames.size);
	if (E.tags == NULL || E.reasm == NULL || E.bbuf == NULL) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	if (store_contact_list(E.st, load_cb, NULL) < 0) {
		seterr(err, errlen, "cannot load contacts: %s", store_errmsg(E.st));
		return -1;
	}
	for (size_t i = 0; i < E.nc; i++)
		contact_arm_all(E.c[i], 1);

	if ((E.tr = make_transport(E.client_id, err, errlen)) == NULL)
		return -1;
	if (cfg->identity.obscurity == 2 &&
	    (E.tr_card = make_aux_transport("client.card_id", E.card_client_id, err, errlen)) == NULL)
		return -1;
	if (cfg->identity.obscurity != 1 && in_grace() &&
	    (E.tr_old = make_aux_transport("client.id.prev", NULL, err, errlen)) == NULL &&
	    err[0] != '\0')
		return -1;
	if (subscribe_all(SUB_START) < 0) {
		seterr(err, errlen, "cannot list inboxes: %s", store_errmsg(E.st));
		return -1;
	}
	log_info("%zu contacts loaded", E.nc);
	return 0;
}

int
engine_start(void)
{
	struct timeval tv = { 1, 0 };

	if ((E.tick = event_new(E.base, -1, EV_PERSIST, tick, NULL)) == NULL ||
	    event_add(E.tick, &tv) != 0)
		return -1;
	E.rot_ev = evtimer_new(E.base, rotation_fire, NULL);
	E.cover_ev = evtimer_new(E.base, cover_fire, NULL);
	E.drain_ev = evtimer_new(E.base, drain_done, NULL);
	G.ev = evtimer_new(E.base, group_fire, NULL);
	E.rot_step_ev = evtimer_new(E.base, rotate_step, NULL);
	E.flush_ev = evtimer_new(E.base, flush_fire, NULL);
	if (E.rot_ev == NULL || E.cover_ev == NULL || E.drain_ev == NULL ||
	    E.rot_step_ev == NULL || E.flush_ev == NULL || G.ev == NULL)
		return -1;
	if (store_kv_get_i64(E.st, "rotation.epoch", &E.epoch) != 1)
		E.epoch = 0;
	if (E.cfg->identity.obscurity != 1) {
		if (store_kv_get_i64(E.st, "rotation.next", &E.rot_next) == 1)
			rotation_arm();
		else
			rotation_schedule();
	}
	cover_arm();
	if (E.tr_card != NULL && transport_connect(E.tr_card) != 0)
		return -1;
	if (E.tr_old != NULL) {
		transport_connect(E.tr_old);
		drain_arm();
	}
	return transport_connect(E.tr);
}

void
engine_reload(const struct veild_config *cfg)
{
	(void)cfg;	/* the same object, updated in place by veild.c */
	if (E.rot_ev != NULL && E.cfg->identity.obscurity != 1 &&
	    E.rot_next > now_ms() + (int64_t)E.cfg->rotation.max_ms) {
		evtimer_del(E.rot_ev);
		rotation_schedule();
	}
	if (E.cover_ev != NULL) {
		evtimer_del(E.cover_ev);
		cover_arm();
	}
}

void
engine_shutdown(void)
{
	/* Last state to disk while the transports still exist: committing
	 * hands queued frames to them. */
	if (E.st != NULL && txn_begin() == 0) {
		for (size_t i = 0; i < E.nc; i++)
			contact_save(E.c[i]);
		txn_commit();
	}
	group_commit();
	if (E.tick != NULL)
		event_free(E.tick);
	if (E.rot_ev != NULL)
		event_free(E.rot_ev);
	if (E.cover_ev != NULL)
		event_free(E.cover_ev);
	if (E.drain_ev != NULL)
		event_free(E.drain_ev);
	if (E.rot_step_ev != NULL)
		event_free(E.rot_step_ev);
	if (E.flush_ev != NULL)
		event_free(E.flush_ev);
	if (E.tr_old != NULL)
		transport_free(E.tr_old);
	if (E.tr_card != NULL)
		transport_free(E.tr_card);
	if (E.tr != NULL)
		transport_free(E.tr);
	for (size_t i = 0; i < E.nc; i++)
		contact_free(E.c[i]);
	free(E.c);
	veil_tagtab_free(E.tags);
	veil_reasm_free(E.reasm);
	free(E.bbuf);
	if (E.st != NULL)
		store_close(E.st);
	veil_identity_wipe(&E.id);
	if (G.ev != NULL) {
		event_free(G.ev);
		G.ev = NULL;
	}
	memset(&E, 0, sizeof E);
}

struct event_base *
engine_event_base(void)
{
	return E.base;
}

void
engine_status_line(char *buf, size_t len)
{
	snprintf(buf, len, "%s; %zu contacts; %" PRId64 " queued",
	    E.up ? "connected" : "connecting", E.nc, store_outbox_count(E.st, 0));
}

/* --- operations behind the socket ----------------------------------- */

json_t *
engine_status(int verbose)
{
	size_t n[6] = { 0 };
	json_t *o;

	for (size_t i = 0; i < E.nc; i++)
		if (E.c[i]->state >= 1 && E.c[i]->state <= 5)
			n[E.c[i]->state]++;
	o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:i, s:{s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:{s:I, s:I, s:I}}",
	    "version", PACKAGE_VERSION,
	    "name", E.cfg->identity.name,
	    "transport", transport_name(E.tr),
	    "connected", E.up,
	    "obscurity", E.cfg->identity.obscurity,
	    "frame_size", (int)E.cfg->frames.size,
	    "contacts", "established", (json_int_t)n[CONTACT_ESTABLISHED],
	    "pending", (json_int_t)n[CONTACT_PENDING],
	    "requested", (json_int_t)n[CONTACT_REQUESTED],
	    "accepted", (json_int_t)n[CONTACT_ACCEPTED],
	    "failed", (json_int_t)n[CONTACT_FAILED],
	    "outbox", (json_int_t)store_outbox_count(E.st, 0),
	    "unread", (json_int_t)store_rx_pending_count(E.st),
	    "frames", "in", (json_int_t)E.frames_in, "out", (json_int_t)E.frames_out,
	    "dropped", (json_int_t)E.dropped);
	if (o != NULL && verbose)
		json_object_set_new(o, "ids", json_pack("{s:s, s:s, s:s, s:I, s:I}",
		    "client_id", E.client_id, "card", E.card_topic,
		    "shared_inbox", E.shared_inbox, "epoch", (json_int_t)E.epoch,
		    "next_rotation", (json_int_t)(E.rot_next / 1000)));
	return o;
}

int
engine_card(int one_time, json_t **out, char *err, size_t errlen)
{
	struct veil_card card;
	char uri[VEIL_CARD_URI_MAX];
	char text[INBOX_MAX], key[96];
	int r;

	memset(&card, 0, sizeof card);
	card.cid = E.card_cid;
	if (one_time) {
		/* A one-time card has its own contact ID, dropped after one use. */
		new_inbox(text);
		if (add_inbox(text, 0, STORE_INBOX_CARD) != 0) {
			seterr(err, errlen, "store: %s", store_errmsg(E.st));
			return RPC_INTERNAL_ERROR;
		}
		veil_id_from_text(&card.cid, text);
		card.flags = VEIL_CARD_ONE_TIME;
		snprintf(key, sizeof key, "card.once:%s", text);
		store_kv_set(E.st, key, "", 0);
	}
	if (E.cfg->identity.obscurity == 3 && E.rot_next > 0)
		/* Level 3 cards die with the epoch (plus its grace). */
		card.expires = (uint64_t)((E.rot_next + (int64_t)E.cfg->rotation.grace_ms) / 1000);
	memcpy(card.pk, E.id.pk, sizeof card.pk);
	copystr(card.name, E.cfg->identity.name, sizeof card.name);
	if ((r = veil_card_encode(&card, uri, sizeof uri)) < 0) {
		seterr(err, errlen, "cannot encode the card: %s", veil_strerror(r));
		return RPC_INTERNAL_ERROR;
	}
	*out = json_pack("{s:s, s:s, s:b}", "uri", uri, "name", card.name,
	    "one_time", one_time);
	return 0;
}

static json_t *
contact_json(const struct contact *c)
{
	char fp[VEIL_FP_TEXT] = "";

	veil_fingerprint(E.id.pk, c->peer_pk, fp);
	return json_pack("{s:s, s:s, s:s, s:b, s:s, s:I}",
	    "name", c->name, "peer_name", c->peer_name,
	    "state", contact_state_name(c->state), "verified", c->verified,
	    "fingerprint", fp, "queued", (json_int_t)store_outbox_count(E.st, c->id));
}

int
engine_contact_add(const char *uri, const char *name, json_t **out, char *err,
    size_t errlen)
{
	struct veil_card card;
	struct veil_agree *a = NULL;
	struct store_contact *row = NULL;
	struct contact *c = NULL;
	struct veil_id inbox;
	uint8_t body[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES], *frames = NULL;
	size_t blen = sizeof body, fs = E.cfg->frames.size;
	char local[VEIL_NAME_MAX + 1], key[64];
	int r, n, rv = RPC_INTERNAL_ERROR;

	if ((r = veil_card_decode(&card, uri, (uint64_t)time(NULL))) != 0) {
		seterr(err, errlen, "bad card: %s", veil_strerror(r));
		return RPC_INVALID_PARAMS;
	}
	if (sodium_memcmp(card.pk, E.id.pk, sizeof card.pk) == 0) {
		seterr(err, errlen, "that is your own card");
		return RPC_INVALID_PARAMS;
	}
	if (name != NULL && veil_name_valid(name) != 0) {
		seterr(err, errlen, "bad name: 1 to %d bytes of UTF-8, no control characters",
		    VEIL_NAME_MAX);
		return RPC_INVALID_PARAMS;
	}
	row = calloc(1, sizeof *row);
	a = calloc(1, sizeof *a);
	if (row == NULL || a == NULL)
		goto out;
	if (store_contact_get_by_peer_pk(E.st, card.pk, row) == 1 &&
	    row->state != CONTACT_FAILED) {
		seterr(err, errlen, "already a contact: %s", row->name);
		rv = RPC_ERR_EXISTS;
		goto out;
	}
	if (name != NULL) {
		if (store_contact_get_by_name(E.st, name, row) == 1) {
			seterr(err, errlen, "the name %s is taken", name);
			rv = RPC_ERR_EXISTS;
			goto out;
		}
		copystr(local, name, sizeof local);
	} else if (unique_name(card.name, local) != 0) {
		seterr(err, errlen, "no free name for this contact; give one with name");
		rv = RPC_ERR_EXISTS;
		goto out;
	}
	if (E.cfg->identity.obscurity == 2)
		veil_id_new(&inbox, E.cfg->identity.id_bits);
	else
		veil_id_from_text(&inbox, E.shared_inbox);
	if (veil_agree_request(a, &card, E.id.pk, E.cfg->identity.name, &inbox,
	    body, &blen) != 0) {
		seterr(err, errlen, "cannot build the request");
		goto out;
	}
	veil_msgid_new(msgid);
	if ((n = veil_message_frames(blen, fs, 1)) < 0 ||
	    (frames = malloc((size_t)n * fs)) == NULL ||
	    veil_message_seal_box(frames, (size_t)n * fs, fs, card.pk, VEIL_T_REQUEST,
	    msgid, body, blen) != n) {
		seterr(err, errlen, "cannot seal the request");
		goto out;
	}
	memset(row, 0, sizeof *row);
	copystr(row->name, local, sizeof row->name);
	row->state = CONTACT_REQUESTED;
	copystr(row->peer_name, card.name, sizeof row->peer_name);
	memcpy(row->peer_pk, card.pk, sizeof row->peer_pk);
	veil_id_to_text(&card.cid, row->peer_inbox, sizeof row->peer_inbox);
	veil_id_to_text(&inbox, row->my_inbox, sizeof row->my_inbox);
	row->created = row->updated = now_ms();
	if ((r = veil_agree_pack(a, row->agree, sizeof row->agree)) < 0)
		goto out;
	row->agree_len = (size_t)r;
	if (txn_begin() != 0)
		goto storefail;
	if ((row->id = store_contact_add(E.st, row)) < 0)
		goto storefail;
	if (E.cfg->identity.obscurity == 2 &&
	    store_inbox_add(E.st, row->my_inbox, row->id, STORE_INBOX_PAIR, now_ms()) < 0)
		goto storefail;
	/* The REQUEST stays in the outbox until the ACCEPT (or FAIL): the
	 * card's owner may be offline, or not yet subscribed. */
	if (store_outbox_add(E.st, row->id, msgid, VEIL_T_REQUEST, body, blen, now_ms(),
	    now_ms() + backoff(0)) < 0 ||
	    store_kv_set(E.st, kv_key(key, sizeof key, "req.msgid", row->id), msgid,
	    sizeof msgid) != 0)
		goto storefail;
	if (txn_commit() != 0)
		goto storefail;
	if ((c = contact_from_row(row)) == NULL || contact_insert(c) != 0) {
		contact_free(c);
		goto out;
	}
	subscribe_inbox(c->my_inbox);
	contact_arm(c, SLOT_EPOCH0, 1);
	publish(c->peer_inbox, frames, n);
	*out = contact_json(c);
	log_info("contact %" PRId64 " requested", c->id);
	rv = 0;
	goto out;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(E.st));
	txn_rollback();
out:
	sodium_memzero(body, sizeof body);
	free(frames);
	if (row != NULL) {
		sodium_memzero(row, sizeof *row);
		free(row);
	}
	if (a != NULL) {
		veil_agree_wipe(a);
		free(a);
	}
	return rv;
}

json_t *
engine_contact_list(void)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && i < E.nc; i++)
		json_array_append_new(arr, contact_json(E.c[i]));
	return arr;
}

static struct contact *
need_contact(const char *name, char *err, size_t errlen)
{
	struct contact *c = contact_by_name(name);

	if (c == NULL)
		seterr(err, errlen, "no contact named %s", name);
	return c;
}

static int
accept_contact(struct contact *c, char *err, size_t errlen)
{
	struct veil_id inbox;
	uint8_t body[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES], *frames;
	struct veil_dirkey r2i, i2r;
	size_t blen = sizeof body;
	uint64_t seq = 0;
	char key[64];
	int n;

	if (c->state != CONTACT_PENDING || c->agree == NULL) {
		seterr(err, errlen, "%s is %s, not pending", c->name,
		    contact_state_name(c->state));
		return RPC_ERR_STATE;
	}
	if (E.cfg->identity.obscurity == 2)
		veil_id_new(&inbox, E.cfg->identity.id_bits);
	else
		veil_id_from_text(&inbox, E.shared_inbox);
	if (veil_agree_accept(c->agree, &inbox, body, &blen, &c->pair) != 0) {
		seterr(err, errlen, "cannot accept");
		return RPC_INTERNAL_ERROR;
	}
	veil_agree_epoch0(c->agree, &r2i, &i2r);
	veil_msgid_new(msgid);
	frames = seal_msg(&r2i, &seq, VEIL_T_ACCEPT, msgid, body, blen, &n);
	veil_dirkey_wipe(&r2i);
	veil_dirkey_wipe(&i2r);
	sodium_memzero(body, sizeof body);
	if (frames == NULL) {
		seterr(err, errlen, "cannot seal");
		return RPC_INTERNAL_ERROR;
	}
	c->state = CONTACT_ACCEPTED;
	veil_id_to_text(&inbox, c->my_inbox, sizeof c->my_inbox);
	if (txn_begin() != 0 ||
	    (E.cfg->identity.obscurity == 2 &&
	    store_inbox_add(E.st, c->my_inbox, c->id, STORE_INBOX_PAIR, now_ms()) < 0) ||
	    store_kv_set(E.st, kv_key(key, sizeof key, "accept.frames", c->id), frames,
	    (size_t)n * E.cfg->frames.size) != 0 ||
	    contact_save(c) != 0 || txn_commit() != 0) {
		txn_rollback();
		free(frames);
		seterr(err, errlen, "store: %s", store_errmsg(E.st));
		return RPC_INTERNAL_ERROR;
	}
	subscribe_inbox(c->my_inbox);
	contact_set_ep0(c);
	contact_arm(c, SLOT_RX, 1);
	contact_arm(c, SLOT_EPOCH0, 1);
	publish(c->peer_inbox, frames, n);
	free(frames);
	notify_state(c);
	return 0;
}

int
engine_contact_accept(const char *name, char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);

	return c == NULL ? RPC_ERR_NOT_FOUND : accept_contact(c, err, errlen);
}

static int
remove_contact(struct contact *c, char *err, size_t errlen)
{
	if (store_contact_delete(E.st, c->id, now_ms()) != 1) {
		seterr(err, errlen, "store: %s", store_errmsg(E.st));
		return RPC_INTERNAL_ERROR;
	}
	contact_arm_all(c, 0);
	veil_reasm_forget(E.reasm, (uint64_t)c->id);
	if (E.cfg->identity.obscurity == 2 && c->my_inbox[0] != '\0')
		unsubscribe_inbox(c->my_inbox);
	contact_unlink(c);
	contact_free(c);
	return 0;
}

int
engine_contact_reject(const char *name, char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);
	char key[96];

	if (c == NULL)
		return RPC_ERR_NOT_FOUND;
	if (c->state != CONTACT_PENDING) {
		seterr(err, errlen, "%s is %s, not pending", c->name,
		    contact_state_name(c->state));
		return RPC_ERR_STATE;
	}
	/* Silence: a forwarded card's holder learns nothing.  Its key is
	 * remembered, so the copies it keeps sending are dropped unseen. */
	rejected_key(c->peer_pk, key);
	if (store_kv_set(E.st, key, "", 0) != 0) {
		seterr(err, errlen, "store: %s", store_errmsg(E.st));
		return RPC_INTERNAL_ERROR;
	}
	return remove_contact(c, err, errlen);
}

int
engine_contact_remove(const char *name, char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);

	return c == NULL ? RPC_ERR_NOT_FOUND : remove_contact(c, err, errlen);
}

int
engine_contact_verify(const char *name, int mark, json_t **out, char *err,
    size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);
	char fp[VEIL_FP_TEXT];

	if (c == NULL)
		return RPC_ERR_NOT_FOUND;
	if (mark && !c->verified) {
		c->verified = 1;
		if (contact_save(c) != 0) {
			seterr(err, errlen, "store: %s", store_errmsg(E.st));
			return RPC_INTERNAL_ERROR;
		}
	}
	veil_fingerprint(E.id.pk, c->peer_pk, fp);
	*out = json_pack("{s:s, s:s, s:b}", "name", c->name, "fingerprint", fp,
	    "verified", c->verified);
	return 0;
}

int
engine_send(const char *to, const char *text, size_t len, json_t **out, char *err,
    size_t errlen)
{
	struct contact *c = need_contact(to, err, errlen);
	uint8_t msgid[VEIL_MSGID_BYTES];
	char hex[2 * VEIL_MSGID_BYTES + 1];
	int64_t now = now_ms();

	if (c == NULL)
		return RPC_ERR_NOT_FOUND;
	if (c->state != CONTACT_ESTABLISHED) {
		seterr(err, errlen, "%s is %s, not established", c->name,
		    contact_state_name(c->state));
		return RPC_ERR_STATE;
	}
	if (len > VEIL_MESSAGE_MAX) {
		seterr(err, errlen, "message too large (at most %u bytes)", VEIL_MESSAGE_MAX);
		return RPC_ERR_TOO_LARGE;
	}
	veil_msgid_new(msgid);
	/* Durable before acknowledged: the row and the advanced counter
	 * commit together, then the frames leave. */
	if (txn_begin() != 0)
		goto fail;
	if (store_outbox_add(E.st, c->id, msgid, VEIL_T_TEXT, text, len, now,
	    now + backoff(0)) < 0)
		goto fail;
	if (send_to(c, VEIL_T_TEXT, msgid, (const uint8_t *)text, len, 0) != 0)
		goto fail;
	if (txn_commit() != 0)
		goto fail;
	msgid_hex(msgid, hex);
	*out = json_pack("{s:s}", "id", hex);
	return 0;
fail:
	seterr(err, errlen, "store: %s", store_errmsg(E.st));
	txn_rollback();
	return RPC_INTERNAL_ERROR;
}

struct rx_ctx {
	json_t	*arr;
	int64_t	 ids[256];
	int	 n;
};

static int
rx_cb(const struct store_rx *r, void *arg)
{
	struct rx_ctx *x = arg;
	struct contact *c = contact_find(r->contact_id);
	char hex[2 * VEIL_MSGID_BYTES + 1];
	json_t *text;

	msgid_hex(r->msgid, hex);
	text = json_stringn(r->body ? (const char *)r->body : "", r->body_len);
	if (text == NULL) {
		/* Not UTF-8: hand it over as base64 rather than lose it. */
		char *b64;
		size_t blen = sodium_base64_encoded_len(r->body_len, sodium_base64_VARIANT_ORIGINAL);

		if ((b64 = malloc(blen)) == NULL)
			return 1;
		sodium_bin2base64(b64, blen, r->body, r->body_len, sodium_base64_VARIANT_ORIGINAL);
		json_array_append_new(x->arr, json_pack("{s:s, s:s, s:s, s:I}", "id", hex,
		    "from", c ? c->name : "", "data", b64,
		    "received", (json_int_t)(r->received_at / 1000)));
		free(b64);
	} else
		json_array_append_new(x->arr, json_pack("{s:s, s:s, s:o, s:I}", "id", hex,
		    "from", c ? c->name : "", "text", text,
		    "received", (json_int_t)(r->received_at / 1000)));
	x->ids[x->n++] = r->id;
	return 0;
}

json_t *
engine_receive(int limit)
{
	struct rx_ctx x;

	memset(&x, 0, sizeof x);
	if (limit <= 0 || limit > 256)
		limit = 256;
	if ((x.arr = json_array()) == NULL)
		return NULL;
	if (store_rx_pending(E.st, limit, rx_cb, &x) < 0)
		goto fail;
	/* Taken only once the reply is built: a crash before this loses nothing. */
	if (txn_begin() != 0)
		goto fail;
	for (int i = 0; i < x.n; i++)
		if (store_rx_take(E.st, x.ids[i]) < 0)
			goto fail;
	if (txn_commit() != 0)
		goto fail;
	return x.arr;
fail:
	log_warnx("store: %s", store_errmsg(E.st));
	txn_rollback();
	json_decref(x.arr);
	return NULL;
}

int64_t
engine_pending_count(void)
{
	return store_rx_pending_count(E.st);
}

/*
 * Rotation gaps follow the paper's X(i+1) = X(i) + Rand(): exponential
 * with the configured mean, clipped to [min, max], drawn from libsodium
 * so neither the user nor an observer can predict or steer them.
 */
static int64_t
rotation_gap(void)
{
	double u = ((double)randombytes_uniform(UINT32_MAX) + 1.0) / 4294967296.0;
	double g = -log(u) * (double)E.cfg->rotation.mean_ms;

	if (g < (double)E.cfg->rotation.min_ms)
		g = (double)E.cfg->rotation.min_ms;
	if (g > (double)E.cfg->rotation.max_ms)
		g = (double)E.cfg->rotation.max_ms;
	return (int64_t)g;
}

static void
rotation_arm(void)
{
	int64_t delay = E.rot_next - now_ms();
	struct timeval tv;

	if (E.rot_ev == NULL)
		return;
	if (delay < 0)
		delay = 0;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(E.rot_ev, &tv);
}

/* Draws and persists the next rotation time: a restart neither resets nor
 * reveals the schedule. */
static void
rotation_schedule(void)
{
	E.rot_next = now_ms() + rotation_gap();
	if (store_kv_set_i64(E.st, "rotation.next", E.rot_next) != 0)
		log_warnx("store: %s", store_errmsg(E.st));
	rotation_arm();
}

/* Make-before-break for the client ID: a second connection under a fresh
 * ID takes the inboxes that stay; the old one keeps the replaced inboxes
 * until their grace period ends (drain_arm). */
static int
rotate_client_id(const char *id)
{
	char err[256];
	struct transport *t;

	if (E.tr_old != NULL) {
		/* A rotation before the last one's grace ended: the inboxes
		 * still in grace move to the connection that becomes the old
		 * one, since the oldest goes now.  (This links two retired
		 * client IDs by those topics: rotations faster than the
		 * grace period buy less unlinkability.) */
		inbox_housekeeping();
		subscribe_all(SUB_KEEP_GRACE);
		retire_old();
	}
	if ((t = make_transport(id, err, sizeof err)) == NULL) {
		log_warnx("rotation: %s", err);
		return -1;
	}
	E.tr_old = E.tr;
	E.tr = t;
	E.up = 0;
	E.pub_sent = E.pub_done = 0;	/* the new connection's backlog */
	copystr(E.client_id, id, sizeof E.client_id);
	/* Only what this rotation does not replace moves to the new ID. */
	subscribe_all(SUB_ROTATE);
	return transport_connect(E.tr);
}

/* Retires an inbox row at the end of a grace period: it lives at least
 * until at (an earlier retirement is pushed back, a later one stays). */
static void
retire_inbox(const char *inbox, int64_t at)
{
	struct store_inbox in;

	if (inbox[0] != '\0' && store_inbox_get(E.st, inbox, &in) == 1 &&
	    (in.retire_at == 0 || in.retire_at < at))
		store_inbox_retire(E.st, in.id, at);
}

/*
 * One rotation (make-before-break): a new client ID connects and
 * subscribes first; every established contact gets an UPDATE naming its
 * new inbox, kept in the outbox until its UPDATE-ACK; old inboxes stay
 * subscribed until the grace period ends.  Level 3 also replaces the
 * shared inbox and the card's contact ID.
 */
static int
rotate(json_t **out, char *err, size_t errlen)
{
	char shared[INBOX_MAX], card[INBOX_MAX], id[VEIL_CLIENTID_MAX + 1];
	int level = E.cfg->identity.obscurity, count = 0;
	int64_t now = now_ms(), grace_end = now + (int64_t)E.cfg->rotation.grace_ms;
	int64_t next = now + rotation_gap();

	if (level == 1) {
		seterr(err, errlen, "obscurity level 1 uses fixed identifiers: nothing rotates");
		return RPC_ERR_STATE;
	}
	new_inbox(shared);
	new_inbox(card);
	veil_clientid_new(id, 0);
	/* Everything the rotation decides commits at once (one fsync, not
	 * six); the connections and memory follow only after. */
	if (txn_begin() != 0)
		goto storefail;
	if (level == 3) {
		if (store_inbox_add(E.st, shared, 0, STORE_INBOX_SHARED, now) < 0 ||
		    store_inbox_add(E.st, card, 0, STORE_INBOX_CARD, now) < 0 ||
		    store_kv_set(E.st, "inbox.shared", shared, strlen(shared)) != 0 ||
		    store_kv_set(E.st, "card.cid", card, strlen(card)) != 0)
			goto storefail;
		/* The old shared inbox retires once no contact uses it
		 * (inbox_gc): contacts still pairing, or not yet told, may. */
		retire_inbox(E.card_topic, grace_end);
	}
	if (store_kv_set(E.st, "client.id.prev", E.client_id, strlen(E.client_id)) != 0 ||
	    store_kv_set(E.st, "client.id", id, strlen(id)) != 0 ||
	    store_kv_set_i64(E.st, "rotation.epoch", E.epoch + 1) != 0 ||
	    store_kv_set_i64(E.st, "rotation.next", next) != 0)
		goto storefail;
	if (txn_commit() != 0)
		goto storefail;
	E.epoch++;
	E.rot_next = next;
	rotation_arm();
	if (level == 3) {
		copystr(E.shared_inbox, shared, sizeof E.shared_inbox);
		copystr(E.card_topic, card, sizeof E.card_topic);
		veil_id_from_text(&E.card_cid, card);
	}
	if (rotate_client_id(id) != 0)
		log_warnx("rotation: the new client ID applies after a restart");
	for (size_t i = 0; i < E.nc; i++)
		if (E.c[i]->state == CONTACT_ESTABLISHED && !E.c[i]->pair.upd_pending)
			count++;
	log_info("rotation %" PRId64 ": telling %d contacts", E.epoch, count);
	/* The UPDATEs go out in batches, one transaction each, between
	 * which the loop serves everything else: 10,000 contacts must not
	 * stall it. */
	E.rot_cursor = 0;
	E.rot_grace_end = grace_end;
	evtimer_add(E.rot_step_ev, &zero_tv);
	if (out != NULL)
		*out = json_pack("{s:i, s:I}", "announced", count, "epoch", (json_int_t)E.epoch);
	return 0;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(E.st));
	txn_rollback();
	return RPC_INTERNAL_ERROR;
}

/* Announces the new inbox to up to ROT_BATCH contacts after rot_cursor. */
static void
rotate_step(evutil_socket_t fd, short ev, void *arg)
{
	char key[64], inbox[INBOX_MAX];
	int level = E.cfg->identity.obscurity, done = 0;
	int64_t now = now_ms();
	size_t i;
	struct veil_pair *saved;
	struct contact *mod[ROT_BATCH];

	(void)fd;
	(void)ev;
	(void)arg;
	/* Announce no faster than the broker takes the frames: 10,000
	 * UPDATEs queued at once would sit in memory (peak RSS). */
	if (E.pub_sent - E.pub_done > BACKLOG_MAX) {
		evtimer_add(E.rot_step_ev, &backlog_tv);
		return;
	}
	if ((saved = malloc(sizeof *saved * ROT_BATCH)) == NULL || txn_begin() != 0) {
		free(saved);
		log_warnx("rotation: store: %s; retrying", store_errmsg(E.st));
		evtimer_add(E.rot_step_ev, &zero_tv);
		return;
	}
	for (i = 0; i < E.nc && E.c[i]->id <= E.rot_cursor; i++)
		;
	for (; i < E.nc && done < ROT_BATCH; i++) {
		struct contact *c = E.c[i];
		struct veil_id oldid, newid;
		uint8_t msgid[VEIL_MSGID_BYTES];
		char *body = NULL;
		size_t blen = 0;

		E.rot_cursor = c->id;
		if (c->state != CONTACT_ESTABLISHED || c->pair.upd_pending)
			continue;
		if (level == 2)
			new_inbox(inbox);
		else
			copystr(inbox, E.shared_inbox, sizeof inbox);
		if (veil_id_from_text(&oldid, c->my_inbox) != 0 ||
		    veil_id_from_text(&newid, inbox) != 0)
			continue;
		saved[done] = c->pair;
		mod[done] = c;
		if (veil_update_build(&c->pair, E.id.pk, E.cfg->identity.name, &oldid,
		    &newid, 0, &body, &blen) != 0)
			continue;
		done++;
		veil_msgid_new(msgid);
		if ((level == 2 && (store_inbox_add(E.st, inbox, c->id, STORE_INBOX_PAIR, now) < 0 ||
		    (retire_inbox(c->my_inbox, E.rot_grace_end), 0))) ||
		    store_kv_set(E.st, kv_key(key, sizeof key, "upd.inbox", c->id), inbox,
		    strlen(inbox)) != 0 ||
		    store_kv_set(E.st, kv_key(key, sizeof key, "upd.msgid", c->id), msgid,
		    sizeof msgid) != 0 ||
		    store_outbox_add(E.st, c->id, msgid, VEIL_T_UPDATE, body, blen, now,
		    now + backoff(0)) < 0 ||
		    send_to(c, VEIL_T_UPDATE, msgid, (const uint8_t *)body, blen, 0) != 0) {
			free(body);
			goto fail;
		}
		free(body);
		copystr(c->upd_inbox, inbox, sizeof c->upd_inbox);
		if (level == 2)
			subscribe_inbox(inbox);	/* before the UPDATE leaves at commit */
	}
	if (txn_commit() != 0)
		goto fail;
	sodium_memzero(saved, sizeof *saved * ROT_BATCH);
	free(saved);
	if (i < E.nc)
		evtimer_add(E.rot_step_ev, &zero_tv);
	else
		log_debug("rotation %" PRId64 " announced", E.epoch);
	return;
fail:
	/* Undo the in-memory half of this batch; the store rolled back. */
	log_warnx("rotation: store: %s", store_errmsg(E.st));
	txn_rollback();
	for (int j = 0; j < done; j++)
		mod[j]->pair = saved[j];
	E.rot_cursor = 0;	/* the next rotation retries them all */
	/* The contacts not told keep their inboxes: those were left on the
	 * old connection, which goes when the grace period ends. */
	for (i = 0; i < E.nc; i++)
		if (E.c[i]->state == CONTACT_ESTABLISHED && !E.c[i]->pair.upd_pending)
			subscribe_inbox(E.c[i]->my_inbox);
	sodium_memzero(saved, sizeof *saved * ROT_BATCH);
	free(saved);
}

int
engine_rotate(json_t **out, char *err, size_t errlen)
{
	/* A forced rotation restarts the clock too (rotate draws the next). */
	return rotate(out, err, errlen);
}

static void
rotation_fire(evutil_socket_t fd, short ev, void *arg)
{
	char err[256];

	(void)fd;
	(void)ev;
	(void)arg;
	if (rotate(NULL, err, sizeof err) != 0) {
		log_warnx("rotation: %s", err);
		rotation_schedule();	/* try again at the next draw */
	}
}

/* COVER frames: a Poisson process of cover_rate per hour per contact. */
static void
cover_arm(void)
{
	size_t n = 0;
	double rate, gap, u;
	struct timeval tv;

	for (size_t i = 0; i < E.nc; i++)
		if (E.c[i]->state == CONTACT_ESTABLISHED)
			n++;
	rate = E.cfg->frames.cover_rate * (double)(n ? n : 1) / 3600.0;	/* per second */
	if (E.cover_ev == NULL || rate <= 0)
		return;
	u = ((double)randombytes_uniform(UINT32_MAX) + 1.0) / 4294967296.0;
	gap = -log(u) / rate;
	if (gap > 86400)
		gap = 86400;
	tv.tv_sec = (time_t)gap;
	tv.tv_usec = (suseconds_t)((gap - (double)tv.tv_sec) * 1e6);
	evtimer_add(E.cover_ev, &tv);
}

static void
cover_fire(evutil_socket_t fd, short ev, void *arg)
{
	size_t n = 0, pick;
	uint8_t msgid[VEIL_MSGID_BYTES];

	(void)fd;
	(void)ev;
	(void)arg;
	for (size_t i = 0; i < E.nc; i++)
		if (E.c[i]->state == CONTACT_ESTABLISHED)
			n++;
	if (n > 0 && E.up) {
		pick = randombytes_uniform((uint32_t)n);
		for (size_t i = 0; i < E.nc; i++) {
			if (E.c[i]->state != CONTACT_ESTABLISHED)
				continue;
			if (pick-- == 0) {
				veil_msgid_new(msgid);
				send_to(E.c[i], VEIL_T_COVER, msgid, NULL, 0, 0);
				break;
			}
		}
	}
	cover_arm();
}
