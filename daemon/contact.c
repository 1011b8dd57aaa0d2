/* contact.c: the table of contacts in memory, their rows in the store, and the tag table of the nonces they are expected to use. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"
#include "log.h"

#define OWNER(id, slot)	(((uint64_t)(id) << 2) | (slot))
/* Expected nonces armed ahead of each receive direction.  Reordering on
 * one topic is rare (QoS 1, one publisher), losses beyond this are caught
 * by the resync landmarks, and at 10,000 contacts every armed tag costs
 * memory: 8 is the daemon's choice, below libveil's default. */
#define RX_LOOKAHEAD	8

static struct {
	struct contact		**c;		/* sorted by id */
	size_t			  nc, capc;
	struct veil_tagtab	 *tags;
	uint64_t		  clock_hour;	/* of the armed clock landmarks */
} C;

size_t
contact_count(void)
{
	return C.nc;
}

struct contact *
contact_at(size_t i)
{
	return i < C.nc ? C.c[i] : NULL;
}

size_t
contact_count_state(int state)
{
	size_t n = 0;

	for (size_t i = 0; i < C.nc; i++)
		if (C.c[i]->state == state)
			n++;
	return n;
}

struct contact *
contact_find(int64_t id)
{
	size_t lo = 0, hi = C.nc;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (C.c[mid]->id == id)
			return C.c[mid];
		if (C.c[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The store's index keeps this O(log n): a send must not cost more with
 * 10,000 contacts than with ten. */
struct contact *
contact_by_name(const char *name)
{
	int64_t id;

	if (store_contact_id_by_name(eng_store(), name, &id) != 1)
		return NULL;
	return contact_find(id);
}

struct contact *
contact_by_peer_pk(const uint8_t pk[VEIL_KEY_BYTES])
{
	int64_t id;

	if (store_contact_id_by_peer_pk(eng_store(), pk, &id) != 1)
		return NULL;
	return contact_find(id);
}

int
contact_insert(struct contact *c)
{
	size_t i;

	if (C.nc == C.capc) {
		size_t n = C.capc ? C.capc * 2 : 64;
		struct contact **p = reallocarray(C.c, n, sizeof *p);
		if (p == NULL)
			return -1;
		C.c = p;
		C.capc = n;
	}
	for (i = C.nc; i > 0 && C.c[i - 1]->id > c->id; i--)
		C.c[i] = C.c[i - 1];
	C.c[i] = c;
	C.nc++;
	return 0;
}

static void
contact_unlink(struct contact *c)
{
	for (size_t i = 0; i < C.nc; i++) {
		if (C.c[i] == c) {
			memmove(&C.c[i], &C.c[i + 1], (C.nc - i - 1) * sizeof *C.c);
			C.nc--;
			return;
		}
	}
}

void
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

void
contact_drop(struct contact *c)
{
	contact_arm_all(c, 0);
	recv_forget(c->id);
	contact_unlink(c);
	contact_free(c);
}

static struct veil_rxdir *
slot_dir(struct contact *c, int slot)
{
	switch (slot) {
	case SLOT_RX:		return &c->pair.rx;
	case SLOT_RX_PREV:	return &c->pair.rx_prev;
	default:		return c->ep0;
	}
}

/* Arms or disarms one slot's expected nonces in the tag table. */
void
contact_arm(struct contact *c, int slot, int on)
{
	struct veil_rxdir *d = slot_dir(c, slot);

	if (d == NULL)
		return;
	if (on && !(c->armed & (1 << slot)) && d->live) {
		if (veil_rx_arm(C.tags, d, OWNER(c->id, slot), RX_LOOKAHEAD) == 0 &&
		    (slot == SLOT_EPOCH0 || veil_rx_arm_clock(C.tags, d,
		    OWNER(c->id, slot), C.clock_hour, RX_LOOKAHEAD) == 0))
			c->armed |= 1 << slot;
		else
			log_warnx("contact %" PRId64 ": cannot arm slot %d", c->id, slot);
	} else if (!on && (c->armed & (1 << slot))) {
		if (slot != SLOT_EPOCH0)
			veil_rx_disarm_clock(C.tags, d, OWNER(c->id, slot),
			    C.clock_hour, RX_LOOKAHEAD);
		veil_rx_disarm(C.tags, d, RX_LOOKAHEAD);
		c->armed &= ~(1 << slot);
	}
}

void
contact_arm_all(struct contact *c, int on)
{
	for (int s = 0; s < SLOT_COUNT; s++)
		contact_arm(c, s, on);
}

struct veil_rxdir *
contact_lookup(const uint8_t tag[VEIL_TAG_BYTES], struct contact **cp, int *slot,
    uint64_t *seq)
{
	uint64_t owner;
	struct contact *c;

	if (veil_tagtab_get(C.tags, tag, &owner, seq) != 0 ||
	    (c = contact_find((int64_t)(owner >> 2))) == NULL)
		return NULL;
	*cp = c;
	*slot = (int)(owner & 3);
	return slot_dir(c, *slot);
}

void
contact_rx_commit(struct contact *c, int slot, uint64_t seq)
{
	struct veil_rxdir *d = slot_dir(c, slot);

	if (d != NULL)
		veil_rx_commit(C.tags, d, OWNER(c->id, slot), seq, RX_LOOKAHEAD);
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

uint64_t
contact_clock_hour(void)
{
	return (uint64_t)(now_ms() / 1000 / clock_period_s());
}

void
contact_clock_tick(void)
{
	uint64_t hour = contact_clock_hour();

	if (hour == C.clock_hour)
		return;
	for (size_t i = 0; i < C.nc; i++) {
		struct contact *c = C.c[i];

		for (int slot = SLOT_RX; slot <= SLOT_RX_PREV; slot++) {
			struct veil_rxdir *d = slot_dir(c, slot);

			if (!(c->armed & (1 << slot)))
				continue;
			veil_rx_disarm_clock(C.tags, d, OWNER(c->id, slot),
			    C.clock_hour, RX_LOOKAHEAD);
			if (veil_rx_arm_clock(C.tags, d, OWNER(c->id, slot), hour,
			    RX_LOOKAHEAD) != 0)
				log_warnx("contact %" PRId64 ": cannot arm slot %d",
				    c->id, slot);
		}
	}
	C.clock_hour = hour;
}

/* Epoch-0 receive key: ACCEPT for the initiator, FAIL for the responder. */
void
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

static void
row_bookkeeping(struct store_contact *row, const struct contact *c)
{
	copystr(row->upd_inbox, c->upd_inbox, sizeof row->upd_inbox);
	memcpy(row->upd_msgid, c->upd_msgid, sizeof row->upd_msgid);
	row->has_upd_msgid = c->has_upd_msgid;
	row->upd_prev_until = c->upd_prev_until;
	memcpy(row->req_msgid, c->req_msgid, sizeof row->req_msgid);
	row->has_req_msgid = c->has_req_msgid;
}

/* Writes the contact's row (keys packed) into the store. */
int
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
	row_bookkeeping(row, c);
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
	rv = store_contact_update(eng_store(), row);
	sodium_memzero(row, sizeof *row);
	free(row);
	if (rv != 1) {
		log_warnx("store: contact update: %s", store_errmsg(eng_store()));
		return -1;
	}
	return 0;
fail:
	sodium_memzero(row, sizeof *row);
	free(row);
	return -1;
}

struct contact *
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
	copystr(c->upd_inbox, row->upd_inbox, sizeof c->upd_inbox);
	memcpy(c->upd_msgid, row->upd_msgid, sizeof c->upd_msgid);
	c->has_upd_msgid = row->has_upd_msgid;
	c->upd_prev_until = row->upd_prev_until;
	memcpy(c->req_msgid, row->req_msgid, sizeof c->req_msgid);
	c->has_req_msgid = row->has_req_msgid;
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
	/* An announced inbox means nothing once its UPDATE is done. */
	if (!c->pair.upd_pending)
		c->upd_inbox[0] = '\0';
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
	if (contact_insert(c) != 0) {
		contact_free(c);
		return -1;
	}
	return 0;
}

int
contact_init(void)
{
	memset(&C, 0, sizeof C);
	if ((C.tags = veil_tagtab_new(1024)) == NULL)
		return -1;
	C.clock_hour = contact_clock_hour();
	if (store_contact_list(eng_store(), load_cb, NULL) < 0) {
		log_warnx("cannot load contacts: %s", store_errmsg(eng_store()));
		return -1;
	}
	for (size_t i = 0; i < C.nc; i++)
		contact_arm_all(C.c[i], 1);
	return 0;
}

void
contact_shutdown(void)
{
	for (size_t i = 0; i < C.nc; i++)
		contact_free(C.c[i]);
	free(C.c);
	veil_tagtab_free(C.tags);
	memset(&C, 0, sizeof C);
}
