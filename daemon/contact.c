/* contact.c: the table of contacts in memory, their rows in the store, the tag table of the nonces they are expected to use, and the sweep that moves their keys on with time. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "core.h"
#include "log.h"

#define OWNER(id)	((uint64_t)(id) << SLOT_BITS)
/* Expected nonces armed ahead of each receive key.  Reordering on one
 * topic is rare (QoS 1, one publisher), losses beyond this are caught by
 * the resync landmarks, and at 10,000 contacts every armed tag costs
 * memory: 8 is the daemon's choice, below libveil's default. */
#define RX_LOOKAHEAD	8
/* Contacts the sweep visits per loop pass: the keys of 100,000 contacts
 * move on in a few hundred short passes, not in one long stall. */
#define SWEEP_BATCH	256
#define SWEEP_SLICE_US	10000	/* and at most this much work a pass */

static struct {
	struct contact		**c;		/* sorted by id */
	size_t			  nc, capc;
	struct veil_tagtab	 *tags;
	size_t			  sweep;	/* next index of the sweep */
	int			  sweeping;	/* a sweep is under way */
	struct event		 *sweep_ev;	/* its next batch */
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

/* Every state's count in one pass (status: 10,000 contacts, called in a
 * loop by whoever watches us). */
void
contact_tally(size_t by_state[CONTACT_STATES])
{
	memset(by_state, 0, CONTACT_STATES * sizeof *by_state);
	for (size_t i = 0; i < C.nc; i++)
		if (C.c[i]->state >= 0 && C.c[i]->state < CONTACT_STATES)
			by_state[C.c[i]->state]++;
}

size_t
contact_count_state(int state)
{
	size_t by_state[CONTACT_STATES];

	if (state < 0 || state >= CONTACT_STATES)
		return 0;
	contact_tally(by_state);
	return by_state[state];
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

/* Only proven keys count: a pending request's key is a claim (protocol.md 4). */
struct contact *
contact_established_by_pk(const uint8_t pk[VEIL_KEY_BYTES])
{
	for (size_t i = 0; i < C.nc; i++)
		if (C.c[i]->state == CONTACT_ESTABLISHED &&
		    sodium_memcmp(C.c[i]->peer_pk, pk, VEIL_KEY_BYTES) == 0)
			return C.c[i];
	return NULL;
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
	inbox_contact_sync(c);
	return 0;
}

static void
contact_unlink(struct contact *c)
{
	for (size_t i = 0; i < C.nc; i++) {
		if (C.c[i] == c) {
			memmove(&C.c[i], &C.c[i + 1], (C.nc - i - 1) * sizeof *C.c);
			C.nc--;
			if (C.sweep > i)
				C.sweep--;
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
	if (c->reset != NULL) {
		veil_reset_wipe(c->reset);
		free(c->reset);
	}
	sodium_memzero(c, sizeof *c);
	free(c);
}

void
contact_drop(struct contact *c)
{
	contact_arm(c, 0);
	inbox_contact_forget(c);
	recv_forget(c->id);
	contact_unlink(c);
	contact_free(c);
}

/*
 * The pair's receive keys (up to six: three periods of rx and of rx_prev)
 * and, during the agreement, the epoch-0 key.  Armed as a whole: the pair
 * moves its own slots in the table as its chains advance.
 */
void
contact_arm(struct contact *c, int on)
{
	if (on && !c->armed) {
		if (c->pair.role != 0 &&
		    veil_pair_arm(C.tags, &c->pair, OWNER(c->id), RX_LOOKAHEAD) != 0)
			log_warnx("contact %" PRId64 ": cannot arm its keys", c->id);
		if (c->ep0 != NULL && c->ep0->live &&
		    veil_rx_arm(C.tags, c->ep0, OWNER(c->id) | SLOT_EPOCH0,
		    RX_LOOKAHEAD) != 0)
			log_warnx("contact %" PRId64 ": cannot arm its agreement key",
			    c->id);
		c->armed = 1;
	} else if (!on && c->armed) {
		if (c->pair.role != 0)
			veil_pair_disarm(C.tags, &c->pair, RX_LOOKAHEAD);
		if (c->ep0 != NULL && c->ep0->live)
			veil_rx_disarm(C.tags, c->ep0, RX_LOOKAHEAD);
		c->armed = 0;
	}
}

static struct veil_rxdir *
slot_dir(struct contact *c, int slot)
{
	if (slot == SLOT_EPOCH0)
		return c->ep0;
	return veil_pair_rxslot(&c->pair, (unsigned)slot);
}

struct veil_rxdir *
contact_lookup(const uint8_t tag[VEIL_TAG_BYTES], struct contact **cp, int *slot,
    uint64_t *seq)
{
	uint64_t owner;
	struct contact *c;

	if (veil_tagtab_get(C.tags, tag, &owner, seq) != 0 ||
	    (c = contact_find((int64_t)(owner >> SLOT_BITS))) == NULL)
		return NULL;
	*cp = c;
	*slot = (int)(owner & ((1 << SLOT_BITS) - 1));
	return slot_dir(c, *slot);
}

void
contact_rx_commit(struct contact *c, int slot, uint64_t seq)
{
	struct veil_rxdir *d = slot_dir(c, slot);

	if (d != NULL)
		veil_rx_commit(C.tags, d, OWNER(c->id) | (uint64_t)slot, seq,
		    RX_LOOKAHEAD);
}

/* Does a receive chain hold a key that anything arrived under? */
int
rxchain_used(const struct veil_rxchain *rx)
{
	for (int i = 0; i < VEIL_RX_SLOTS; i++)
		if (rx->slot[i].live && rx->slot[i].w.top != 0)
			return 1;
	return 0;
}

/*
 * Key periods end on time whether or not anything is sent (protocol.md
 * 2.1): every chain of the pair moves to now, wiping the roots it passes,
 * and the tag table follows.  The caller persists when it returns 1.
 */
int
contact_advance(struct contact *c)
{
	struct veil_clock clk;
	int r, changed = 0;

	if (c->pair.role == 0)
		return 0;
	eng_clock(&clk);
	for (int i = 0; i < 64; i++) {	/* RATCHET: far behind, go on */
		r = veil_pair_advance(&c->pair, &clk, c->armed ? C.tags : NULL,
		    OWNER(c->id), RX_LOOKAHEAD);
		if (r == 1)
			changed = 1;
		if (r != VEIL_ERR_RATCHET)
			break;
		changed = 1;
	}
	if (r < 0 && r != VEIL_ERR_RATCHET) {
		log_warnx("contact %" PRId64 ": keys: %s", c->id, veil_strerror(r));
		if (r == VEIL_ERR_NOMEM && c->armed) {	/* arm again */
			contact_arm(c, 0);
			contact_arm(c, 1);
		}
	}
	return changed;
}

/*
 * The sweep visits every contact, a batch per loop pass back to back, so
 * that 100,000 contacts cost many short passes instead of one long stall:
 * their chains move to now (keys of the next period armed before the
 * boundary, passed ones wiped), and rotation.c does what is due.  It
 * starts every few seconds, often enough that the lead before a key
 * period's boundary (min(Pd / 4, 120 s)) sees a whole sweep.
 */
static void
sweep_batch(evutil_socket_t fd, short ev, void *arg)
{
	int64_t now = now_ms();
	size_t end;

	(void)fd;
	(void)ev;
	(void)arg;
	if (C.sweep >= C.nc) {
		C.sweeping = 0;
		return;
	}
	end = C.sweep + SWEEP_BATCH < C.nc ? C.sweep + SWEEP_BATCH : C.nc;
	if (txn_begin() != 0) {
		C.sweeping = 0;
		return;
	}
	for (int64_t t0 = mono_us(); C.sweep < end &&
	    mono_us() - t0 < SWEEP_SLICE_US; C.sweep++) {
		struct contact *c = C.c[C.sweep];

		if (contact_advance(c))
			contact_save(c);
		rotation_check(c, now);
		reset_check(c);
	}
	if (txn_commit() != 0) {
		log_warnx("store: %s", store_errmsg(eng_store()));
		txn_rollback();
	}
	if (C.sweep < C.nc && C.sweep_ev != NULL)
		timer_add_ms(C.sweep_ev, 0);
	else
		C.sweeping = 0;
}

void
contact_sweep(void)
{
	struct veil_clock clk;
	uint64_t every;

	eng_clock(&clk);
	every = clk.lead / 4 > 10 ? 10 : clk.lead / 4;
	if (C.sweeping || C.nc == 0 || (every > 1 && eng_tick() % every != 0))
		return;
	if (C.sweep_ev == NULL &&
	    (C.sweep_ev = evtimer_new(eng_base(), sweep_batch, NULL)) == NULL)
		return;
	C.sweep = 0;
	C.sweeping = 1;
	sweep_batch(-1, 0, NULL);
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
	memcpy(row->upd_msgid, c->upd_msgid, sizeof row->upd_msgid);
	row->has_upd_msgid = c->has_upd_msgid;
	row->upd_prev_until = c->upd_prev_until;
	memcpy(row->req_msgid, c->req_msgid, sizeof row->req_msgid);
	row->has_req_msgid = c->has_req_msgid;
	row->req_deadline = c->req_deadline;
	memcpy(row->seed_prev, c->seed_prev, sizeof row->seed_prev);
	row->has_seed_prev = c->has_seed_prev;
	row->seed_prev_epoch = c->seed_prev_epoch;
	row->seed_prev_until = c->seed_prev_until;
	row->heal_at = c->heal_at;
}

/* Writes the contact's row (keys packed) into the store; what the contact
 * writes to is registered with inbox.c as it goes. */
int
contact_save(struct contact *c)
{
	struct store_contact *row;
	int rv, n;

	inbox_contact_sync(c);
	if ((row = calloc(1, sizeof *row)) == NULL)
		return -1;
	row->id = c->id;
	copystr(row->name, c->name, sizeof row->name);
	row->state = c->state;
	copystr(row->peer_name, c->peer_name, sizeof row->peer_name);
	memcpy(row->peer_pk, c->peer_pk, sizeof row->peer_pk);
	copystr(row->peer_inbox, c->card_topic, sizeof row->peer_inbox);
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
	int r;

	if ((c = calloc(1, sizeof *c)) == NULL)
		return NULL;
	c->id = row->id;
	copystr(c->name, row->name, sizeof c->name);
	c->state = row->state;
	copystr(c->peer_name, row->peer_name, sizeof c->peer_name);
	memcpy(c->peer_pk, row->peer_pk, sizeof c->peer_pk);
	copystr(c->card_topic, row->peer_inbox, sizeof c->card_topic);
	c->verified = row->verified;
	c->created = row->created;
	memcpy(c->upd_msgid, row->upd_msgid, sizeof c->upd_msgid);
	c->has_upd_msgid = row->has_upd_msgid;
	c->upd_prev_until = row->upd_prev_until;
	memcpy(c->req_msgid, row->req_msgid, sizeof c->req_msgid);
	c->has_req_msgid = row->has_req_msgid;
	c->req_deadline = row->req_deadline;
	memcpy(c->seed_prev, row->seed_prev, sizeof c->seed_prev);
	c->has_seed_prev = row->has_seed_prev;
	c->seed_prev_epoch = row->seed_prev_epoch;
	c->seed_prev_until = row->seed_prev_until;
	c->heal_at = row->heal_at;
	if (row->pair_len > 0 &&
	    (r = veil_pair_unpack(&c->pair, row->pair, row->pair_len)) != 0) {
		log_warnx("contact %" PRId64 ": damaged key state: %s", row->id,
		    veil_strerror(r));
		contact_free(c);
		return NULL;
	}
	if (row->agree_len > 0) {
		if ((c->agree = calloc(1, sizeof *c->agree)) == NULL ||
		    (r = veil_agree_unpack(c->agree, row->agree, row->agree_len)) != 0) {
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
	if (store_contact_list(eng_store(), load_cb, NULL) < 0) {
		log_warnx("cannot load contacts: %s", store_errmsg(eng_store()));
		return -1;
	}
	/* Keys move to now before they are armed: a restart after a
	 * while must not arm keys of periods long gone. */
	for (size_t i = 0; i < C.nc; i++) {
		contact_advance(C.c[i]);
		contact_arm(C.c[i], 1);
	}
	/* The epoch length or key period changed while we were down (the
	 * level, rotation.mean, keys.period): the contacts number our
	 * topics and keys the old way until an UPDATE tells them, as after
	 * a reload. */
	for (size_t i = 0; i < C.nc; i++) {
		const struct veil_inbox *in = &C.c[i]->pair.my_inbox;

		if (C.c[i]->state == CONTACT_ESTABLISHED && C.c[i]->pair.role != 0 &&
		    (in->epoch != eng_epoch_len() || in->period != eng_key_period())) {
			log_info("epoch length %us, key period %us since the last "
			    "start: telling every contact", eng_epoch_len(),
			    eng_key_period());
			rotation_announce_all(0, NULL);
			break;
		}
	}
	return 0;
}

void
contact_shutdown(void)
{
	if (C.sweep_ev != NULL)
		event_free(C.sweep_ev);
	for (size_t i = 0; i < C.nc; i++)
		contact_free(C.c[i]);
	free(C.c);
	veil_tagtab_free(C.tags);
	memset(&C, 0, sizeof C);
}
