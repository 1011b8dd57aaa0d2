/* inbox.c: our inbox seeds (which topics each epoch's connection holds) and our cards. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"
#include "htab.h"
#include "log.h"

/*
 * Nobody names an inbox of ours any more: each contact writes to
 * topic(J, n), J a seed we gave it and n the epoch (protocol.md 5).  What
 * a connection of epoch n subscribes is therefore the topic of every seed
 * some contact writes to, in that epoch.  Many contacts share a seed at
 * levels 1 and 3, and a contact writes to up to three at once (its
 * current one, the one our pending UPDATE announces, and the one it
 * replaced, in grace), so seeds are counted: the first reference
 * subscribes a topic, the last one's going unsubscribes it.
 */
struct seedref {
	struct hlink		 link;	/* in I.byseed */
	struct veil_inbox	 in;	/* seed and epoch length (the peer's view) */
	unsigned		 refs;
	size_t			 idx;	/* in I.seeds */
};

/* A card: a topic of its own, where REQUESTs come. */
struct card {
	char		 topic[INBOX_MAX];
	struct veil_id	 cid;
	int64_t		 expires;	/* ms; 0: never */
	int		 one_time;
};

static struct {
	/* Found by a keyed hash of the seed (a random key per start: the
	 * buckets say nothing about the seeds), listed in an array for the
	 * walks; 10,000 contacts made the list scan quadratic at start and
	 * at a rotation (docs/benchmarks.md). */
	struct seedref	**seeds;
	size_t		 nseeds, capseeds;
	struct htab	 byseed;
	uint8_t		 hkey[crypto_shorthash_KEYBYTES];
	struct veil_inbox shared;	/* levels 1 and 3 */
	int		 shared_ref;	/* the shared seed is referenced by us */
	struct card	*cards;
	size_t		 ncards;
	char		 main_card[INBOX_MAX];
} I;

static int
same_inbox(const struct veil_inbox *a, const struct veil_inbox *b)
{
	return a->epoch == b->epoch &&
	    sodium_memcmp(a->seed, b->seed, VEIL_SEED_BYTES) == 0;
}

static uint64_t
seed_key(const struct veil_inbox *in)
{
	uint8_t buf[VEIL_SEED_BYTES + 4], h[crypto_shorthash_BYTES];
	uint64_t k = 0;

	memcpy(buf, in->seed, VEIL_SEED_BYTES);
	buf[VEIL_SEED_BYTES] = (uint8_t)(in->epoch >> 24);
	buf[VEIL_SEED_BYTES + 1] = (uint8_t)(in->epoch >> 16);
	buf[VEIL_SEED_BYTES + 2] = (uint8_t)(in->epoch >> 8);
	buf[VEIL_SEED_BYTES + 3] = (uint8_t)in->epoch;
	crypto_shorthash(h, buf, sizeof buf, I.hkey);
	for (size_t i = 0; i < sizeof h; i++)
		k = (k << 8) | h[i];
	sodium_memzero(buf, sizeof buf);
	return k;
}

static struct seedref *
seed_find(const struct veil_inbox *in, uint64_t key)
{
	struct hlink *l;

	for (l = htab_get(&I.byseed, key); l != NULL; l = htab_next(l)) {
		struct seedref *r = HLINK_OF(l, struct seedref, link);

		if (same_inbox(&r->in, in))
			return r;
	}
	return NULL;
}

static void
seed_ref(const struct veil_inbox *in)
{
	uint64_t key = seed_key(in);
	struct seedref *r, **p;

	if ((r = seed_find(in, key)) != NULL) {
		r->refs++;
		return;
	}
	if (I.nseeds == I.capseeds) {
		size_t n = I.capseeds ? I.capseeds * 2 : 16;

		if ((p = reallocarray(I.seeds, n, sizeof *p)) == NULL)
			goto nomem;
		I.seeds = p;
		I.capseeds = n;
	}
	if ((r = calloc(1, sizeof *r)) == NULL)
		goto nomem;
	if (htab_add(&I.byseed, &r->link, key) != 0) {
		free(r);
		goto nomem;
	}
	r->in = *in;
	r->refs = 1;
	r->idx = I.nseeds;
	I.seeds[I.nseeds++] = r;
	conn_topic_add(in);
	return;
nomem:
	log_warnx("out of memory: an inbox is not subscribed");
}

static void
seed_drop(struct seedref *r)
{
	htab_del(&I.byseed, &r->link);
	I.seeds[r->idx] = I.seeds[--I.nseeds];
	I.seeds[r->idx]->idx = r->idx;
	I.seeds[I.nseeds] = NULL;
	sodium_memzero(r, sizeof *r);
	free(r);
}

static void
seed_unref(const struct veil_inbox *in)
{
	struct seedref *r = seed_find(in, seed_key(in));

	if (r == NULL || --r->refs > 0)
		return;
	conn_topic_del(&r->in);
	seed_drop(r);
}

/* What c writes to now (at most CONTACT_SEEDS). */
static int
contact_seeds(const struct contact *c, struct veil_inbox out[CONTACT_SEEDS])
{
	int n = 0;

	if (c->state == CONTACT_REQUESTED && c->agree != NULL)
		out[n++] = c->agree->my_inbox;
	else if ((c->state == CONTACT_ACCEPTED ||
	    c->state == CONTACT_ESTABLISHED) && c->pair.role != 0) {
		out[n++] = c->pair.my_inbox;
		if (c->pair.upd_pending && !same_inbox(&c->pair.upd_new, &out[0]))
			out[n++] = c->pair.upd_new;
		if (c->has_seed_prev && c->seed_prev_until > now_ms()) {
			memcpy(out[n].seed, c->seed_prev, VEIL_SEED_BYTES);
			out[n].epoch = c->seed_prev_epoch;
			out[n].period = 0;
			n++;
		}
		/* Where a restored contact's RESET-ACK comes. */
		if (c->reset != NULL && !same_inbox(&c->reset->my_inbox, &out[0]))
			out[n++] = c->reset->my_inbox;
	}
	return n;
}

void
inbox_contact_sync(struct contact *c)
{
	struct veil_inbox now[CONTACT_SEEDS];
	int n = contact_seeds(c, now), i, j;

	/* Reference the new ones first: a seed that moves from one slot to
	 * another is never unsubscribed in between. */
	for (i = 0; i < n; i++) {
		for (j = 0; j < c->nreg && !same_inbox(&now[i], &c->reg[j]); j++)
			;
		if (j == c->nreg)
			seed_ref(&now[i]);
	}
	for (j = 0; j < c->nreg; j++) {
		for (i = 0; i < n && !same_inbox(&now[i], &c->reg[j]); i++)
			;
		if (i == n)
			seed_unref(&c->reg[j]);
	}
	for (i = 0; i < n; i++)
		c->reg[i] = now[i];
	c->nreg = n;
	sodium_memzero(now, sizeof now);
}

void
inbox_contact_forget(struct contact *c)
{
	for (int j = 0; j < c->nreg; j++)
		seed_unref(&c->reg[j]);
	sodium_memzero(c->reg, sizeof c->reg);
	c->nreg = 0;
}

/*
 * The topic of a seed in our epoch: the peer numbers epochs with the
 * length it knows for this seed, which is ours except while an UPDATE
 * changing it is on its way; the epoch is taken at its start.  At level 1
 * (no epochs) it is taken now: a contact told of our epochs before a
 * restart at level 1 numbers them until our UPDATE reaches it.
 */
void
inbox_foreach_topic(int64_t epoch, void (*cb)(const char *, void *), void *arg)
{
	uint64_t t = eng_epoch_len() != 0 ? (uint64_t)epoch * eng_epoch_len() : now_s();
	char topic[INBOX_MAX];

	for (size_t i = 0; i < I.nseeds; i++) {
		const struct veil_inbox *in = &I.seeds[i]->in;

		if (veil_topic_text(in->seed, veil_epoch_number(t, in->epoch), topic,
		    sizeof topic) == 0)
			cb(topic, arg);
	}
}

/* Level 1: when the topic of a seed still numbered by epochs changes next
 * (ms), or 0 when none is. */
int64_t
inbox_next_change_ms(void)
{
	uint64_t now = now_s(), best = 0;

	for (size_t i = 0; i < I.nseeds; i++) {
		uint32_t l = I.seeds[i]->in.epoch;
		uint64_t at;

		if (l == 0)
			continue;
		at = (now / l + 1) * l;
		if (best == 0 || at < best)
			best = at;
	}
	return (int64_t)best * 1000;
}

void
inbox_shared(struct veil_inbox *out)
{
	*out = I.shared;
}

void
inbox_for_contact(struct veil_inbox *out)
{
	if (eng_policy()->pair_inboxes) {
		veil_seed_new(out->seed);
		out->epoch = eng_epoch_len();
		out->period = eng_key_period();
	} else
		*out = I.shared;
}

/* Our own reference to the shared seed keeps its topic subscribed while
 * no contact writes there yet (a request in flight is one). */
static void
shared_ref(int on)
{
	if (on && !I.shared_ref && !eng_policy()->pair_inboxes) {
		seed_ref(&I.shared);
		I.shared_ref = 1;
	} else if (!on && I.shared_ref) {
		seed_unref(&I.shared);
		I.shared_ref = 0;
	}
}

/* A reload changed our epoch length or key period: the shared seed is
 * given out with the new ones (the contacts learn them by UPDATE). */
void
inbox_params_changed(void)
{
	shared_ref(0);
	I.shared.epoch = eng_epoch_len();
	I.shared.period = eng_key_period();
	shared_ref(1);
}

int
inbox_reseed_shared(void)
{
	struct veil_inbox in = I.shared;

	veil_seed_new(in.seed);
	if (store_meta_set_blob(eng_store(), STORE_META_SHARED_SEED, in.seed,
	    VEIL_SEED_BYTES) != 0) {
		sodium_memzero(&in, sizeof in);
		return -1;
	}
	shared_ref(0);
	I.shared = in;
	shared_ref(1);
	sodium_memzero(&in, sizeof in);
	return 0;
}

/* --- cards --------------------------------------------------------------- */

static int
card_cb(const struct store_inbox *in, void *arg)
{
	struct card *p;

	(void)arg;
	if (in->kind != STORE_INBOX_CARD)
		return 0;
	if ((p = reallocarray(I.cards, I.ncards + 1, sizeof *p)) == NULL)
		return 1;
	I.cards = p;
	p = &I.cards[I.ncards];
	memset(p, 0, sizeof *p);
	copystr(p->topic, in->topic, sizeof p->topic);
	if (veil_id_from_text(&p->cid, in->topic) != 0)
		return 0;	/* not ours to read: skip it */
	p->expires = in->retire_at;
	p->one_time = in->one_time;
	I.ncards++;
	return 0;
}

/* The card rows, again, after any change (a handful of rows). */
static int
cards_load(void)
{
	free(I.cards);
	I.cards = NULL;
	I.ncards = 0;
	if (store_inbox_list(eng_store(), now_ms(), card_cb, NULL) < 0) {
		log_warnx("store: %s", store_errmsg(eng_store()));
		return -1;
	}
	conn_cards_changed();
	return 0;
}

static int
card_add(const char *topic, int one_time, int64_t expires)
{
	struct store *st = eng_store();
	int64_t id;

	if ((id = store_inbox_add(st, topic, 0, STORE_INBOX_CARD, one_time,
	    now_ms())) < 0)
		return -1;
	if (expires > 0 && store_inbox_retire(st, id, expires) != 1)
		return -1;
	return cards_load();
}

static void
new_card_topic(char out[INBOX_MAX])
{
	struct veil_id id;

	veil_id_new(&id, eng_cfg()->identity.id_bits);
	veil_id_to_text(&id, out, INBOX_MAX);
}

/*
 * The card to hand out.  Levels 1 and 2: the fixed card, or a fresh
 * one-time card that its owner drops after one_time_ttl unless used.
 * Level 3: cards live cards.ttl; a new one is made when the current one
 * has less than half of that left, so a card handed out lives at least
 * half of it.  Never the rotation schedule: a card says nothing of when
 * our identifiers change.
 */
int
inbox_card(int one_time, struct veil_id *cid, uint64_t *expires)
{
	const struct veild_config *cfg = eng_cfg();
	int64_t now = now_ms(), ttl = (int64_t)cfg->cards.ttl_ms;
	char topic[INBOX_MAX];
	struct card *best = NULL;

	*expires = 0;
	if (one_time) {
		int64_t until = now + (int64_t)cfg->cards.one_time_ttl_ms;

		if (eng_policy()->card_per_conn && until > now + ttl)
			until = now + ttl;
		new_card_topic(topic);
		if (card_add(topic, 1, until) != 0)
			return -1;
		if (veil_id_from_text(cid, topic) != 0)
			return -1;
		if (eng_policy()->card_per_conn)
			*expires = (uint64_t)(until / 1000);
		return 0;
	}
	if (!eng_policy()->card_per_conn) {
		for (size_t i = 0; i < I.ncards; i++)
			if (strcmp(I.cards[i].topic, I.main_card) == 0) {
				*cid = I.cards[i].cid;
				return 0;
			}
		return -1;
	}
	for (size_t i = 0; i < I.ncards; i++)
		if (!I.cards[i].one_time && I.cards[i].expires - now > ttl / 2 &&
		    (best == NULL || I.cards[i].expires > best->expires))
			best = &I.cards[i];
	if (best == NULL) {
		new_card_topic(topic);
		if (card_add(topic, 0, now + ttl) != 0 ||
		    store_meta_set_text(eng_store(), STORE_META_CARD_CID, topic) != 0)
			return -1;
		copystr(I.main_card, topic, sizeof I.main_card);
		return inbox_card(0, cid, expires);
	}
	*cid = best->cid;
	*expires = (uint64_t)(best->expires / 1000);
	return 0;
}

int
inbox_card_live(const char *topic, struct veil_id *cid, int *one_time)
{
	int64_t now = now_ms();

	for (size_t i = 0; i < I.ncards; i++)
		if (strcmp(I.cards[i].topic, topic) == 0 &&
		    (I.cards[i].expires == 0 || I.cards[i].expires > now)) {
			*cid = I.cards[i].cid;
			*one_time = I.cards[i].one_time;
			return 1;
		}
	return 0;
}

/* A one-time card's first valid REQUEST came: it goes now. */
void
inbox_card_consume(const char *topic)
{
	struct store_inbox in;

	if (store_inbox_get(eng_store(), topic, &in) != 1 ||
	    store_inbox_retire(eng_store(), in.id, now_ms()) != 1)
		log_warnx("store: %s", store_errmsg(eng_store()));
	cards_load();
}

void
inbox_foreach_card(void (*cb)(const char *, int64_t, void *), void *arg)
{
	for (size_t i = 0; i < I.ncards; i++)
		cb(I.cards[i].topic, I.cards[i].expires, arg);
}

const char *
inbox_card_topic(void)
{
	return I.main_card;
}

void
inbox_housekeeping(void)
{
	int n = store_inbox_expire(eng_store(), now_ms(), NULL, NULL);

	if (n < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
	else if (n > 0)
		cards_load();
}

/*
 * The shared seed (levels 1 and 3) and the fixed card (levels 1 and 2),
 * made at the first start.
 */
int
inbox_init(char *err, size_t errlen)
{
	struct store *st = eng_store();
	struct store_meta m;

	memset(&I, 0, sizeof I);
	crypto_shorthash_keygen(I.hkey);
	if (store_meta_get(st, &m) != 1)
		goto storefail;
	if (!m.has_shared_seed) {
		veil_seed_new(m.shared_seed);
		if (store_meta_set_blob(st, STORE_META_SHARED_SEED, m.shared_seed,
		    VEIL_SEED_BYTES) != 0)
			goto storefail;
	}
	memcpy(I.shared.seed, m.shared_seed, VEIL_SEED_BYTES);
	I.shared.epoch = eng_epoch_len();
	I.shared.period = eng_key_period();
	sodium_memzero(&m.shared_seed, sizeof m.shared_seed);
	if (!eng_policy()->card_per_conn && m.card_cid[0] == '\0') {
		new_card_topic(m.card_cid);
		if (store_meta_set_text(st, STORE_META_CARD_CID, m.card_cid) != 0 ||
		    store_inbox_add(st, m.card_cid, 0, STORE_INBOX_CARD, 0,
		    now_ms()) < 0)
			goto storefail;
	}
	copystr(I.main_card, m.card_cid, sizeof I.main_card);
	if (store_inbox_expire(st, now_ms(), NULL, NULL) < 0 || cards_load() != 0)
		goto storefail;
	shared_ref(1);
	return 0;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(st));
	return -1;
}

void
inbox_shutdown(void)
{
	while (I.nseeds > 0)
		seed_drop(I.seeds[I.nseeds - 1]);
	free(I.seeds);
	htab_free(&I.byseed);
	free(I.cards);
	sodium_memzero(&I, sizeof I);
}
