/* pairing.c: the contact agreement (REQUEST, ACCEPT, CONFIRM, FAIL), cards, and the contact operations behind the socket. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core.h"
#include "log.h"

/* The largest ACCEPT we keep to say again: one body, a few frames. */
#define ACCEPT_FRAMES_MAX(fs)	(VEIL_AGREE_BODY_MAX + 4 * (fs))
/*
 * A REQUEST older than this is refused, and the transcripts of processed
 * ones are remembered this long: a replay is dropped for as long as it
 * could be taken (protocol.md 4).  Longer than any request's lifetime.
 */
#define REQUEST_MAX_AGE_S	(31 * 24 * 3600)
/* A name taken: "name-2" .. "name-9", then random suffixes. */
#define NAME_NUMBERED	9
#define NAME_RANDOM_TRIES	8
#define NAME_RANDOM_LEN	6	/* [a-z0-9]: 36^6, about 2^31 */
/* Seconds between "request dropped" lines in the log. */
#define DROP_LOG_S	60

/*
 * Requests made to us are bounded (docs/security.md): token buckets for
 * requests.per_hour and requests.auto_accept_per_hour (full at start:
 * a restart gives at most one more hour's worth), and a count of the
 * unproven ones against requests.pending_max.
 */
struct bucket {
	double	 tokens;
	int64_t	 at;		/* ms of the last refill */
	int	 primed;
};

static struct {
	struct bucket	 requests, auto_accept;
	int64_t		 logged;	/* ms of the last "dropped" line, 0: none yet */
	unsigned	 unlogged;	/* dropped since */
} P;

/* Refills b for per_hour at now; 1 and one token taken if one is there. */
static int
bucket_take(struct bucket *b, unsigned per_hour, int64_t now, int take)
{
	if (!b->primed || now < b->at) {
		b->tokens = per_hour;
		b->at = now;
		b->primed = 1;
	}
	b->tokens += (double)(now - b->at) * per_hour / (3600.0 * 1000);
	if (b->tokens > per_hour)
		b->tokens = per_hour;
	b->at = now;
	if (b->tokens < 1)
		return 0;
	if (take)
		b->tokens -= 1;
	return 1;
}

/* A request we did not take: said once a minute at most, with a count. */
static void
request_dropped(const char *why)
{
	int64_t now = now_ms();

	P.unlogged++;
	if (P.logged != 0 && now - P.logged < DROP_LOG_S * 1000)
		return;
	log_info("%u contact request%s dropped: %s", P.unlogged,
	    P.unlogged == 1 ? "" : "s", why);
	P.logged = now;
	P.unlogged = 0;
}

/* Requests of others not yet established: pending, or accepted and
 * waiting for the requester's proof. */
static size_t
unproven_count(void)
{
	size_t n = 0;

	for (size_t i = 0; i < contact_count(); i++) {
		int st = contact_at(i)->state;

		n += st == CONTACT_PENDING || st == CONTACT_ACCEPTED;
	}
	return n;
}

/* The peer answered our REQUEST (ACCEPT or FAIL): stop resending it. */
static void
request_answered(struct contact *c)
{
	if (c->has_req_msgid &&
	    store_outbox_ack(eng_store(), c->id, c->req_msgid, NULL) < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
	c->has_req_msgid = 0;
	c->req_deadline = 0;
}

void
finish_agreement(struct contact *c)
{
	if (store_contact_accept_frames_set(eng_store(), c->id, NULL, 0) < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
	if (c->armed && c->ep0 != NULL && c->ep0->live) {
		contact_arm(c, 0);	/* the epoch-0 key goes */
		sodium_memzero(c->ep0, sizeof *c->ep0);
		free(c->ep0);
		c->ep0 = NULL;
		contact_arm(c, 1);
	} else if (c->ep0 != NULL) {
		sodium_memzero(c->ep0, sizeof *c->ep0);
		free(c->ep0);
		c->ep0 = NULL;
	}
	if (c->agree != NULL) {
		veil_agree_wipe(c->agree);
		free(c->agree);
		c->agree = NULL;
	}
	if (c->state == CONTACT_ESTABLISHED && c->heal_at == 0)
		c->heal_at = rotation_heal_time();
}

void
handle_accept(struct contact *c, const uint8_t *body, size_t len)
{
	uint8_t out[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES];
	struct veil_clock clk;
	size_t outlen = sizeof out;
	uint8_t type = 0;
	int r;

	if (c->state != CONTACT_REQUESTED || c->agree == NULL)
		return;
	eng_clock(&clk);
	contact_arm(c, 0);
	r = veil_agree_on_accept(c->agree, eng_identity()->sk, &clk, body, len,
	    &c->pair, out, &outlen, &type);
	veil_msgid_new(msgid);
	if (r == 0 || r == VEIL_ERR_SECRET)
		request_answered(c);
	if (r == 0) {
		c->state = CONTACT_ESTABLISHED;
		c->card_topic[0] = '\0';
		finish_agreement(c);
		/*
		 * The CONFIRM is said once and has no acknowledgement; a
		 * frame can be lost.  Any frame under the chains proves the
		 * pairing to the responder, so a few COVER frames follow it
		 * (rotation_check(); protocol.md 4).
		 */
		c->proof_left = PROOF_FRAMES;
		c->proof_at = now_ms() + (int64_t)eng_cfg()->retransmit.initial_ms;
		contact_arm(c, 1);
		if (send_to(c, type, msgid, out, outlen, 0) != 0)
			log_warnx("contact %" PRId64 ": cannot send CONFIRM", c->id);
		log_info("contact %" PRId64 " established", c->id);
	} else if (r == VEIL_ERR_SECRET) {
		struct veil_dirkey r2i, i2r;
		uint64_t seq = 0;
		int64_t epoch = 0;
		char topic[INBOX_MAX];
		int n;
		uint8_t *frames;

		/* The FAIL goes where Alice would have us send: her seed
		 * was in the ACCEPT, which failed, so to nobody we trust;
		 * it goes under K to the inbox the ACCEPT claimed. */
		veil_agree_epoch0(c->agree, &r2i, &i2r);
		c->state = CONTACT_FAILED;
		frames = seal_msg(&i2r, &seq, type, msgid, out, outlen, &n);
		veil_dirkey_wipe(&r2i);
		veil_dirkey_wipe(&i2r);
		topic[0] = '\0';
		if (veil_inbox_valid(&c->agree->peer_inbox))
			epoch = inbox_topic_now(&c->agree->peer_inbox, topic);
		finish_agreement(c);
		contact_save(c);
		contact_arm(c, 1);
		if (frames != NULL && topic[0] != '\0')
			txn_publish(epoch, topic, frames, n);
		free(frames);
		log_warnx("contact %" PRId64 ": agreement failed (hash mismatch)", c->id);
	} else {
		contact_arm(c, 1);
		log_debug("contact %" PRId64 ": bad ACCEPT: %s", c->id, veil_strerror(r));
		return;
	}
	sodium_memzero(out, sizeof out);
	eng_event_state(c, NULL);
}

int
pairing_proven(struct contact *c, uint8_t type, const uint8_t *body, size_t len)
{
	int r;

	if (c->state != CONTACT_ACCEPTED || c->agree == NULL)
		return 0;
	if (type == VEIL_T_CONFIRM)
		r = veil_agree_on_confirm(c->agree, body, len);
	else
		r = veil_agree_on_chain_frame(c->agree);
	if (r == 0)
		c->state = CONTACT_ESTABLISHED;
	else if (r == VEIL_ERR_SECRET)
		c->state = CONTACT_FAILED;
	else
		return 0;
	finish_agreement(c);
	contact_save(c);
	eng_event_state(c, NULL);
	log_info("contact %" PRId64 " %s", c->id, veil_agree_state_name(c->state));
	return 1;
}

void
handle_fail(struct contact *c, const uint8_t *body, size_t len)
{
	if (c->agree == NULL || veil_agree_on_fail(c->agree, body, len) != 0)
		return;
	c->state = CONTACT_FAILED;
	contact_arm(c, 0);
	finish_agreement(c);
	contact_save(c);
	eng_event_state(c, NULL);
	log_warnx("contact %" PRId64 ": agreement failed (peer reported a mismatch)", c->id);
}

/* Bytes of s that fit in max without cutting a UTF-8 sequence. */
static size_t
utf8_prefix(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/*
 * Finds a free local name: name, name-2 .. name-9, then name-xxxxxx with
 * a random suffix: a few indexed lookups, and no number of requests can
 * use up the names (the first 1000 numbered ones could be).  The name is
 * cut at a character boundary to make room for the suffix.
 */
static int
unique_name(const char *want, char out[VEIL_NAME_MAX + 1])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	size_t keep = utf8_prefix(want, VEIL_NAME_MAX - 1 - NAME_RANDOM_LEN);
	char suffix[NAME_RANDOM_LEN + 1];
	int64_t id;
	int found = 1;

	copystr(out, want, VEIL_NAME_MAX + 1);
	for (int i = 2; i <= NAME_NUMBERED + NAME_RANDOM_TRIES + 1; i++) {
		if ((found = store_contact_id_by_name(eng_store(), out, &id)) != 1)
			break;
		if (i <= NAME_NUMBERED) {
			snprintf(out, VEIL_NAME_MAX + 1, "%.*s-%d", (int)keep, want, i);
			continue;
		}
		for (int k = 0; k < NAME_RANDOM_LEN; k++)
			suffix[k] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
		suffix[NAME_RANDOM_LEN] = '\0';
		snprintf(out, VEIL_NAME_MAX + 1, "%.*s-%s", (int)keep, want, suffix);
	}
	return found == 0 && veil_name_valid(out) == 0 ? 0 : -1;
}

static int accept_contact(struct contact *c, char *err, size_t errlen);

/* Our ACCEPT again, byte for byte, to the requester's topic of now. */
static void
replay_accept(struct contact *c)
{
	size_t fs = eng_cfg()->frames.size, n = 0;
	char topic[INBOX_MAX];
	uint8_t *frames;
	int64_t epoch;

	if (c->pair.role == 0 || (frames = malloc(ACCEPT_FRAMES_MAX(fs))) == NULL)
		return;
	epoch = peer_topic(c, topic);
	if (topic[0] != '\0' && store_contact_accept_frames_get(eng_store(), c->id,
	    frames, ACCEPT_FRAMES_MAX(fs), &n) == 1 && n > 0 && n % fs == 0)
		txn_publish(epoch, topic, frames, (int)(n / fs));
	free(frames);
}

/*
 * A REQUEST arrived on topic, which recv.c found to be a live card of
 * ours (no other topic gets this far).  Its transcript decides first:
 * one we processed is a replay (dropped) or a copy from a requester that
 * did not hear our ACCEPT (it resends until it does; we say it again).
 * A new one must fit the bounds on requests (pending_max, per_hour; a
 * one-time card admits one request and is not counted per hour) before
 * its body is taken apart, and one that does not is dropped unseen and
 * not remembered: a real requester resends and gets in once there is
 * room.  Its claimed key is a claim: two pending requests may claim one
 * key; only the agreement proves it.
 */
void
handle_request(const char *topic, const uint8_t *body, size_t len)
{
	struct store *st = eng_store();
	const struct veild_config *cfg = eng_cfg();
	const struct veil_identity *me = eng_identity();
	struct veil_agree *a = NULL;
	struct store_contact *row = NULL;
	struct contact *c;
	struct engine_event ev;
	struct veil_id cid;
	uint8_t t1[VEIL_KEY_BYTES];
	char name[VEIL_NAME_MAX + 1], fp[VEIL_FP_TEXT], err[256];
	int64_t seen_id;
	int r, one_time = 0;

	if (veil_agree_request_t1(body, len, me->pk, t1) != 0)
		return;
	if ((r = store_request_seen_get(st, t1, &seen_id)) != 0) {
		if (r == 1 && (c = contact_find(seen_id)) != NULL &&
		    c->state == CONTACT_ACCEPTED) {
			log_debug("contact %" PRId64 ": REQUEST again, ACCEPT again", c->id);
			replay_accept(c);
		} else
			log_debug("REQUEST seen before: dropped");
		return;
	}
	if (!inbox_card_live(topic, &cid, &one_time)) {
		log_debug("REQUEST for a card that is not ours or gone: dropped");
		return;
	}
	if (!one_time && !bucket_take(&P.requests, cfg->requests.per_hour,
	    now_ms(), 0)) {
		request_dropped("more than requests.per_hour");
		return;
	}
	if ((a = calloc(1, sizeof *a)) == NULL)
		return;
	r = veil_agree_on_request(a, &cid, me->pk, now_s(), REQUEST_MAX_AGE_S,
	    body, len);
	if (r != 0) {
		log_debug("REQUEST rejected: %s", veil_strerror(r));
		goto out;
	}
	if (!one_time && unproven_count() >= cfg->requests.pending_max) {
		request_dropped("requests.pending_max are waiting for an answer");
		goto out;
	}
	if (unique_name(a->peer_name, name) != 0) {
		log_warnx("contact request dropped: no free local name");
		goto out;
	}
	if ((row = calloc(1, sizeof *row)) == NULL)
		goto out;
	copystr(row->name, name, sizeof row->name);
	row->state = CONTACT_PENDING;
	copystr(row->peer_name, a->peer_name, sizeof row->peer_name);
	memcpy(row->peer_pk, a->peer_pk, sizeof row->peer_pk);
	row->created = row->updated = now_ms();
	if ((r = veil_agree_pack(a, row->agree, sizeof row->agree)) < 0)
		goto out;
	row->agree_len = (size_t)r;
	if ((row->id = store_contact_add(st, row)) < 0 ||
	    store_request_seen_add(st, t1, row->id, now_ms()) != 0) {
		log_warnx("store: %s", store_errmsg(st));
		goto out;
	}
	if ((c = contact_from_row(row)) == NULL || contact_insert(c) != 0) {
		contact_free(c);
		goto out;
	}
	if (one_time)
		inbox_card_consume(topic);	/* one use only */
	else
		bucket_take(&P.requests, cfg->requests.per_hour, now_ms(), 1);
	veil_fingerprint(me->pk, c->peer_pk, fp);
	log_info("contact request %" PRId64 " pending", c->id);
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_CONTACT_REQUEST;
	ev.name = c->name;
	ev.peer_name = c->peer_name;
	ev.fingerprint = fp;
	eng_event(&ev);
	/* Each accept gives the requester an inbox (at level 2 a topic of
	 * its own, subscribed) and publishes an ACCEPT to a topic it chose:
	 * bounded too. */
	if (cfg->accept == VEILD_ACCEPT_AUTO) {
		if (!bucket_take(&P.auto_accept, cfg->requests.auto_accept_per_hour,
		    now_ms(), 1))
			log_info("contact request %" PRId64 " waits for veilctl "
			    "contact accept: requests.auto_accept_per_hour reached",
			    c->id);
		else if (accept_contact(c, err, sizeof err) != 0)
			log_warnx("auto-accept failed: %s", err);
	}
out:
	if (row != NULL) {
		sodium_memzero(row, sizeof *row);
		free(row);
	}
	if (a != NULL) {
		veil_agree_wipe(a);
		free(a);
	}
}

/*
 * The REQUEST again, in a fresh sealed box, from a one-shot connection:
 * the card topic must never link two of our pseudonyms.  Until the
 * request's lifetime (the card's expiry, else requests.ttl); then we give
 * up and say so.
 */
int
resend_request(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	size_t fs = eng_cfg()->frames.size;
	uint8_t *frame;

	if (c->req_deadline != 0 && now_ms() > c->req_deadline) {
		request_answered(c);
		c->state = CONTACT_FAILED;
		contact_arm(c, 0);
		finish_agreement(c);
		contact_save(c);
		eng_event_state(c, "the request expired unanswered");
		log_info("contact %" PRId64 ": request expired", c->id);
		return 1;
	}
	if ((frame = malloc(fs)) == NULL)
		return 0;
	if (veil_message_seal_box(frame, fs, fs, c->peer_pk, VEIL_T_REQUEST,
	    msgid, body, len) == 1 && conn_oneshot(c->card_topic, frame, 1) != 0)
		log_warnx("contact %" PRId64 ": cannot send the request", c->id);
	free(frame);
	return 0;
}

/*
 * Requests made to us that stayed unanswered (pending) or unproven
 * (accepted, the requester never proved its key) for requests.pending_ttl
 * are forgotten, with their rows.  At level 3 an accepted one knew our
 * shared seed: one re-seed for the batch.
 */
void
pairing_expire(void)
{
	int64_t limit = now_ms() - (int64_t)eng_cfg()->requests.pending_ttl_ms;
	struct engine_event ev;
	int reseed = 0;

	for (size_t i = contact_count(); i-- > 0;) {
		struct contact *c = contact_at(i);

		if ((c->state != CONTACT_PENDING && c->state != CONTACT_ACCEPTED) ||
		    c->created >= limit)
			continue;
		if (store_contact_delete(eng_store(), c->id, now_ms()) != 1) {
			log_warnx("store: %s", store_errmsg(eng_store()));
			continue;
		}
		memset(&ev, 0, sizeof ev);
		ev.type = ENGINE_EV_CONTACT_STATE;
		ev.name = c->name;
		ev.state = "removed";
		ev.warning = "the request expired unanswered (requests.pending_ttl)";
		eng_event(&ev);
		reseed |= c->state == CONTACT_ACCEPTED;
		log_info("contact request %" PRId64 " expired", c->id);
		contact_drop(c);
	}
	if (reseed && !eng_policy()->pair_inboxes && eng_policy()->rotates &&
	    rotation_reseed_all(NULL) != 0)
		log_warnx("the shared inbox could not be renewed");
}

void
pairing_prune(void)
{
	if (store_request_seen_prune(eng_store(),
	    now_ms() - (int64_t)REQUEST_MAX_AGE_S * 1000) < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
}

int
engine_card(int one_time, struct engine_card *out, char *err, size_t errlen)
{
	struct veil_card card;
	int r;

	memset(&card, 0, sizeof card);
	memset(out, 0, sizeof *out);
	if (inbox_card(one_time, &card.cid, &card.expires) != 0) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return ENGINE_EINTERNAL;
	}
	if (one_time)
		card.flags = VEIL_CARD_ONE_TIME;
	memcpy(card.pk, eng_identity()->pk, sizeof card.pk);
	copystr(card.name, eng_cfg()->identity.name, sizeof card.name);
	if ((r = veil_card_encode(&card, out->uri, sizeof out->uri)) < 0) {
		seterr(err, errlen, "cannot encode the card: %s", veil_strerror(r));
		return ENGINE_EINTERNAL;
	}
	copystr(out->name, card.name, sizeof out->name);
	out->one_time = one_time;
	/* A card handed out makes the identity used: a restore may no
	 * longer replace it (backup.c, store_unused). */
	if (store_meta_set_int(eng_store(), STORE_META_CARD_SHOWN, 1) != 0) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return ENGINE_EINTERNAL;
	}
	return ENGINE_OK;
}

static void
contact_info(const struct contact *c, struct engine_contact *out)
{
	memset(out, 0, sizeof *out);
	copystr(out->name, c->name, sizeof out->name);
	copystr(out->peer_name, c->peer_name, sizeof out->peer_name);
	out->state = veil_agree_state_name(c->state);
	out->verified = c->verified;
	/* A requester's key is proven by the agreement, not before. */
	out->key_proven = c->state == CONTACT_ESTABLISHED;
	out->resetting = contact_resetting(c);
	veil_fingerprint(eng_identity()->pk, c->peer_pk, out->fingerprint);
	out->queued = store_outbox_count(eng_store(), c->id);
}

int
engine_contact_foreach(int (*cb)(const struct engine_contact *, void *), void *arg)
{
	struct engine_contact info;

	for (size_t i = 0; i < contact_count(); i++) {
		contact_info(contact_at(i), &info);
		if (cb(&info, arg) != 0)
			break;
	}
	return 0;
}

int
engine_contact_add(const char *uri, const char *name, struct engine_contact *out,
    char *err, size_t errlen)
{
	const struct veild_config *cfg = eng_cfg();
	struct store *st = eng_store();
	struct veil_card card;
	struct veil_agree *a = NULL;
	struct store_contact *row = NULL;
	struct contact *c = NULL;
	struct veil_inbox mine;
	uint8_t body[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES], *frame = NULL;
	size_t blen = sizeof body, fs = cfg->frames.size;
	char local[VEIL_NAME_MAX + 1];
	int64_t id, now = now_ms();
	int r, rv = ENGINE_EINTERNAL;

	if ((r = veil_card_decode(&card, uri, (uint64_t)time(NULL))) != 0) {
		seterr(err, errlen, "bad card: %s%s", veil_strerror(r),
		    r == VEIL_ERR_VERSION ? " (a card of another veil wire "
		    "protocol: ask for a new one)" : "");
		return ENGINE_EINVAL;
	}
	if (sodium_memcmp(card.pk, eng_identity()->pk, sizeof card.pk) == 0) {
		seterr(err, errlen, "that is your own card");
		return ENGINE_EINVAL;
	}
	if (name != NULL && veil_name_valid(name) != 0) {
		seterr(err, errlen, "bad name: 1 to %d bytes of UTF-8, no control characters",
		    VEIL_NAME_MAX);
		return ENGINE_EINVAL;
	}
	/* A card of someone we are paired with (a proven key); a request
	 * that merely claims this key does not count. */
	if ((c = contact_established_by_pk(card.pk)) != NULL) {
		seterr(err, errlen, "already a contact: %s", c->name);
		return ENGINE_EEXIST;
	}
	if (name != NULL) {
		if (store_contact_id_by_name(st, name, &id) == 1) {
			seterr(err, errlen, "the name %s is taken", name);
			return ENGINE_EEXIST;
		}
		copystr(local, name, sizeof local);
	} else if (unique_name(card.name, local) != 0) {
		seterr(err, errlen, "no free name for this contact; give one with name");
		return ENGINE_EEXIST;
	}
	row = calloc(1, sizeof *row);
	a = calloc(1, sizeof *a);
	frame = malloc(fs);
	if (row == NULL || a == NULL || frame == NULL)
		goto out;
	inbox_for_contact(&mine);
	if (veil_agree_request(a, &card, eng_identity()->pk, cfg->identity.name, &mine,
	    now_s(), body, &blen) != 0) {
		seterr(err, errlen, "cannot build the request");
		goto out;
	}
	veil_msgid_new(msgid);
	if (veil_message_seal_box(frame, fs, fs, card.pk, VEIL_T_REQUEST, msgid, body,
	    blen) != 1) {
		seterr(err, errlen, "cannot seal the request");
		goto out;
	}
	copystr(row->name, local, sizeof row->name);
	row->state = CONTACT_REQUESTED;
	copystr(row->peer_name, card.name, sizeof row->peer_name);
	memcpy(row->peer_pk, card.pk, sizeof row->peer_pk);
	veil_id_to_text(&card.cid, row->peer_inbox, sizeof row->peer_inbox);
	row->created = row->updated = now;
	/* The REQUEST stays in the outbox until the ACCEPT (or FAIL), or
	 * until its lifetime ends: the card's expiry, else requests.ttl. */
	memcpy(row->req_msgid, msgid, sizeof row->req_msgid);
	row->has_req_msgid = 1;
	row->req_deadline = card.expires != 0 ? (int64_t)card.expires * 1000 :
	    now + (int64_t)cfg->requests.ttl_ms;
	if ((r = veil_agree_pack(a, row->agree, sizeof row->agree)) < 0)
		goto out;
	row->agree_len = (size_t)r;
	if (txn_begin() != 0)
		goto storefail;
	if ((row->id = store_contact_add(st, row)) < 0 ||
	    store_outbox_add(st, row->id, msgid, VEIL_T_REQUEST, body, blen, now,
	    now + backoff(0)) < 0)
		goto storefail;
	if (txn_commit() != 0)
		goto storefail;
	if ((c = contact_from_row(row)) == NULL || contact_insert(c) != 0) {
		contact_free(c);
		goto out;
	}
	contact_arm(c, 1);
	if (conn_oneshot(c->card_topic, frame, 1) != 0)
		log_warnx("contact %" PRId64 ": the request waits for a retry", c->id);
	contact_info(c, out);
	log_info("contact %" PRId64 " requested", c->id);
	rv = ENGINE_OK;
	goto out;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(st));
	txn_rollback();
out:
	sodium_memzero(body, sizeof body);
	sodium_memzero(&mine, sizeof mine);
	free(frame);
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
	struct store *st = eng_store();
	struct veil_inbox mine;
	struct veil_clock clk;
	uint8_t body[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES], *frames;
	struct veil_dirkey r2i, i2r;
	char topic[INBOX_MAX];
	size_t blen = sizeof body;
	uint64_t seq = 0;
	int64_t epoch;
	int n, r;

	if (c->state != CONTACT_PENDING || c->agree == NULL) {
		seterr(err, errlen, "%s is %s, not pending", c->name,
		    veil_agree_state_name(c->state));
		return ENGINE_ESTATE;
	}
	inbox_for_contact(&mine);
	eng_clock(&clk);
	contact_arm(c, 0);
	r = veil_agree_accept(c->agree, eng_identity()->sk, &mine, &clk, body, &blen,
	    &c->pair);
	sodium_memzero(&mine, sizeof mine);
	if (r != 0) {
		contact_arm(c, 1);
		seterr(err, errlen, "cannot accept: %s", veil_strerror(r));
		return ENGINE_EINTERNAL;
	}
	veil_agree_epoch0(c->agree, &r2i, &i2r);
	veil_msgid_new(msgid);
	frames = seal_msg(&r2i, &seq, VEIL_T_ACCEPT, msgid, body, blen, &n);
	veil_dirkey_wipe(&r2i);
	veil_dirkey_wipe(&i2r);
	sodium_memzero(body, sizeof body);
	if (frames == NULL) {
		seterr(err, errlen, "cannot seal");
		return ENGINE_EINTERNAL;
	}
	c->state = CONTACT_ACCEPTED;
	contact_set_ep0(c);
	if (txn_begin() != 0 ||
	    store_contact_accept_frames_set(st, c->id, frames,
	    (size_t)n * eng_cfg()->frames.size) != 1 ||
	    contact_save(c) != 0 || txn_commit() != 0) {
		txn_rollback();
		free(frames);
		seterr(err, errlen, "store: %s", store_errmsg(st));
		return ENGINE_EINTERNAL;
	}
	contact_arm(c, 1);
	epoch = peer_topic(c, topic);
	txn_publish(epoch, topic, frames, n);
	free(frames);
	eng_event_state(c, NULL);
	return ENGINE_OK;
}

int
engine_contact_accept(const char *name, char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);

	return c == NULL ? ENGINE_ENOENT : accept_contact(c, err, errlen);
}

/* Can c be called to?  ENGINE_OK, or why not. */
static int
rename_check(const struct contact *c, const char *to, char *err, size_t errlen)
{
	struct contact *other;

	if (veil_name_valid(to) != 0) {
		seterr(err, errlen, "bad name: 1 to %d bytes of UTF-8, no control "
		    "characters", VEIL_NAME_MAX);
		return ENGINE_EINVAL;
	}
	if ((other = contact_by_name(to)) != NULL && other != c) {
		seterr(err, errlen, "the name %s is taken", to);
		return ENGINE_EEXIST;
	}
	return ENGINE_OK;
}

/*
 * A local name is ours alone: it is in no frame, card or UPDATE, so a
 * rename sends nothing and the peer and the broker never learn of it.
 */
static int
rename_contact(struct contact *c, const char *to, char *err, size_t errlen)
{
	char old[VEIL_NAME_MAX + 1];
	int rv;

	if ((rv = rename_check(c, to, err, errlen)) != ENGINE_OK)
		return rv;
	if (strcmp(c->name, to) == 0)
		return ENGINE_OK;
	copystr(old, c->name, sizeof old);
	copystr(c->name, to, sizeof c->name);
	if (contact_save(c) != 0) {
		copystr(c->name, old, sizeof c->name);
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return ENGINE_EINTERNAL;
	}
	log_info("contact %" PRId64 " renamed", c->id);
	return ENGINE_OK;
}

int
engine_contact_rename(const char *name, const char *to, struct engine_contact *out,
    char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);
	int rv;

	if (c == NULL)
		return ENGINE_ENOENT;
	if ((rv = rename_contact(c, to, err, errlen)) == ENGINE_OK)
		contact_info(c, out);
	return rv;
}

/* accept NAME and call it as from now on: the new name is checked before
 * anything is sent, so a taken one refuses the whole step. */
int
engine_contact_accept_as(const char *name, const char *as, char *err,
    size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);
	int rv;

	if (c == NULL)
		return ENGINE_ENOENT;
	if ((rv = rename_check(c, as, err, errlen)) != ENGINE_OK)
		return rv;
	if ((rv = accept_contact(c, err, errlen)) != ENGINE_OK)
		return rv;
	return rename_contact(c, as, err, errlen);
}

/*
 * At level 3 every contact knows our shared seed, so one that is gone
 * could find our inbox in every epoch: a new seed goes to those who stay.
 */
static int
remove_contact(struct contact *c, char *err, size_t errlen)
{
	int was = c->state;

	if (store_contact_delete(eng_store(), c->id, now_ms()) != 1) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return ENGINE_EINTERNAL;
	}
	contact_drop(c);
	file_sweep();	/* its transfers' files */
	if (!eng_policy()->pair_inboxes && eng_policy()->rotates &&
	    (was == CONTACT_ESTABLISHED || was == CONTACT_ACCEPTED) &&
	    rotation_reseed_all(NULL) != 0)
		log_warnx("the shared inbox could not be renewed");
	return ENGINE_OK;
}

/* Silence: a forwarded card's holder learns nothing.  Its REQUEST's
 * transcript is remembered, so the copies it sends are dropped unseen;
 * its claimed key is not refused (it may be someone else's). */
int
engine_contact_reject(const char *name, char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);

	if (c == NULL)
		return ENGINE_ENOENT;
	if (c->state != CONTACT_PENDING) {
		seterr(err, errlen, "%s is %s, not pending", c->name,
		    veil_agree_state_name(c->state));
		return ENGINE_ESTATE;
	}
	return remove_contact(c, err, errlen);
}

int
engine_contact_remove(const char *name, char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);

	return c == NULL ? ENGINE_ENOENT : remove_contact(c, err, errlen);
}

int
engine_contact_verify(const char *name, int mark, struct engine_contact *out,
    char *err, size_t errlen)
{
	struct contact *c = need_contact(name, err, errlen);

	if (c == NULL)
		return ENGINE_ENOENT;
	if (mark && c->state != CONTACT_ESTABLISHED) {
		seterr(err, errlen, "%s is %s: its key is not proven yet", c->name,
		    veil_agree_state_name(c->state));
		return ENGINE_ESTATE;
	}
	if (mark && !c->verified) {
		c->verified = 1;
		if (contact_save(c) != 0) {
			seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
			return ENGINE_EINTERNAL;
		}
	}
	contact_info(c, out);
	return ENGINE_OK;
}
