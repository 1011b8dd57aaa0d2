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

/* The peer answered our REQUEST (ACCEPT or FAIL): stop resending it. */
static void
request_answered(struct contact *c)
{
	if (c->has_req_msgid &&
	    store_outbox_ack(eng_store(), c->id, c->req_msgid, NULL) < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
	c->has_req_msgid = 0;
}

void
finish_agreement(struct contact *c)
{
	if (store_contact_accept_frames_set(eng_store(), c->id, NULL, 0) < 0)
		log_warnx("store: %s", store_errmsg(eng_store()));
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

void
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
			txn_publish(c->peer_inbox, frames, n);
			free(frames);
		}
		log_warnx("contact %" PRId64 ": agreement failed (hash mismatch)", c->id);
	} else {
		log_debug("contact %" PRId64 ": bad ACCEPT: %s", c->id, veil_strerror(r));
		return;
	}
	sodium_memzero(out, sizeof out);
	eng_event_state(c, NULL);
}

void
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
	eng_event_state(c, NULL);
	log_info("contact %" PRId64 " %s", c->id, veil_agree_state_name(c->state));
}

void
handle_fail(struct contact *c, const uint8_t *body, size_t len)
{
	if (c->agree == NULL || veil_agree_on_fail(c->agree, body, len) != 0)
		return;
	c->state = CONTACT_FAILED;
	contact_arm(c, SLOT_RX, 0);
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

/* Finds a free local name: name, name-2, name-3, ... */
static int
unique_name(const char *want, char out[VEIL_NAME_MAX + 1])
{
	size_t keep = utf8_prefix(want, VEIL_NAME_MAX - 5);
	int64_t id;
	int found = 1;

	copystr(out, want, VEIL_NAME_MAX + 1);
	for (int i = 2; i < 1000; i++) {
		if ((found = store_contact_id_by_name(eng_store(), out, &id)) != 1)
			break;
		snprintf(out, VEIL_NAME_MAX + 1, "%.*s-%d", (int)keep, want, i);
	}
	return found == 0 && veil_name_valid(out) == 0 ? 0 : -1;
}

static int accept_contact(struct contact *c, char *err, size_t errlen);

static void
replay_accept(struct contact *c)
{
	size_t fs = eng_cfg()->frames.size, n = 0;
	uint8_t *frames;

	if ((frames = malloc(ACCEPT_FRAMES_MAX(fs))) == NULL)
		return;
	if (store_contact_accept_frames_get(eng_store(), c->id, frames,
	    ACCEPT_FRAMES_MAX(fs), &n) == 1 && n > 0 && n % fs == 0)
		txn_publish(c->peer_inbox, frames, (int)(n / fs));
	free(frames);
}

struct card_try {
	struct veil_agree	*a;
	const uint8_t		*body;
	size_t			 len;
	int			 result;
	char			 consume[INBOX_MAX];	/* one-time inbox to retire */
};

static int
card_try_cb(const struct store_inbox *in, void *arg)
{
	struct card_try *t = arg;
	struct veil_id cid;

	if (in->kind != STORE_INBOX_CARD || veil_id_from_text(&cid, in->topic) != 0)
		return 0;
	if (veil_agree_on_request(t->a, &cid, eng_identity()->pk, t->body, t->len) != 0)
		return 0;
	t->result = 0;
	if (in->one_time)
		copystr(t->consume, in->topic, sizeof t->consume);
	return 1;
}

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
	struct contact *c;

	if (veil_agree_request_key(body, len, pk) != 0)
		return 0;
	c = contact_by_peer_pk(pk);
	if (c == NULL || c->state != CONTACT_ACCEPTED)
		return 0;
	log_debug("contact %" PRId64 ": REQUEST copy to a replaced card, ACCEPT again", c->id);
	replay_accept(c);
	return 1;
}

void
handle_request(const uint8_t *body, size_t len)
{
	struct store *st = eng_store();
	struct veil_agree *a;
	struct store_contact *row = NULL;
	struct contact *c;
	struct engine_event ev;
	char name[VEIL_NAME_MAX + 1], fp[VEIL_FP_TEXT], err[256];
	int r;

	if ((a = calloc(1, sizeof *a)) == NULL)
		return;
	r = veil_agree_on_request(a, inbox_card_cid(), eng_identity()->pk, body, len);
	if (r == VEIL_ERR_STATE) {
		/* Not the current card: a one-time card, or the previous
		 * card of a level 3 rotation still in its grace period. */
		struct card_try t = { .a = a, .body = body, .len = len, .result = VEIL_ERR_STATE };

		store_inbox_list(st, now_ms(), card_try_cb, &t);
		r = t.result;
		if (r == 0 && t.consume[0] != '\0')
			inbox_retire(t.consume, now_ms());	/* one use only */
	}
	if (r == VEIL_ERR_STATE && request_copy(body, len))
		goto out;
	if (r != 0) {
		log_debug("REQUEST rejected: %s", veil_strerror(r));
		goto out;
	}
	if (store_refused_has(st, a->peer_pk) == 1) {
		log_debug("REQUEST from a refused key dropped");
		goto out;
	}
	/* The broker may deliver a REQUEST twice; one pending contact is enough. */
	if ((c = contact_by_peer_pk(a->peer_pk)) != NULL) {
		if (c->state != CONTACT_FAILED) {
			/* The requester resends until it hears back: if we
			 * accepted already, our ACCEPT was lost, say it again. */
			if (c->state == CONTACT_ACCEPTED)
				replay_accept(c);
			else
				log_debug("REQUEST from a known key ignored");
			goto out;
		}
		/* A new attempt after a failure. */
		if (store_contact_delete(st, c->id, now_ms()) < 0) {
			log_warnx("store: %s", store_errmsg(st));
			goto out;
		}
		contact_drop(c);
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
	veil_id_to_text(&a->peer_inbox, row->peer_inbox, sizeof row->peer_inbox);
	row->created = row->updated = now_ms();
	if ((r = veil_agree_pack(a, row->agree, sizeof row->agree)) < 0)
		goto out;
	row->agree_len = (size_t)r;
	if ((row->id = store_contact_add(st, row)) < 0) {
		log_warnx("store: %s", store_errmsg(st));
		goto out;
	}
	if ((c = contact_from_row(row)) == NULL || contact_insert(c) != 0) {
		contact_free(c);
		goto out;
	}
	veil_fingerprint(eng_identity()->pk, c->peer_pk, fp);
	log_info("contact request %" PRId64 " pending", c->id);
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_CONTACT_REQUEST;
	ev.name = c->name;
	ev.peer_name = c->peer_name;
	ev.fingerprint = fp;
	eng_event(&ev);
	if (eng_cfg()->accept == VEILD_ACCEPT_AUTO && accept_contact(c, err, sizeof err) != 0)
		log_warnx("auto-accept failed: %s", err);
out:
	if (row != NULL) {
		sodium_memzero(row, sizeof *row);
		free(row);
	}
	veil_agree_wipe(a);
	free(a);
}

/* A REQUEST again, in a fresh sealed box (the card owner ignores copies
 * from a key it already knows, or answers them with its ACCEPT again). */
void
resend_request(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	size_t fs = eng_cfg()->frames.size;
	int n = veil_message_frames(len, fs, 1);
	uint8_t *frames;

	if (n < 0 || (frames = malloc((size_t)n * fs)) == NULL)
		return;
	if (veil_message_seal_box(frames, (size_t)n * fs, fs, c->peer_pk, VEIL_T_REQUEST,
	    msgid, body, len) == n)
		txn_publish(c->peer_inbox, frames, n);
	free(frames);
}

int
engine_card(int one_time, struct engine_card *out, char *err, size_t errlen)
{
	struct veil_card card;
	char text[INBOX_MAX];
	int64_t next;
	int r;

	memset(&card, 0, sizeof card);
	memset(out, 0, sizeof *out);
	card.cid = *inbox_card_cid();
	if (one_time) {
		/* A one-time card has its own contact ID, dropped after one use. */
		inbox_new_id(text);
		if (inbox_add(text, 0, STORE_INBOX_CARD, 1) != 0) {
			seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
			return ENGINE_EINTERNAL;
		}
		veil_id_from_text(&card.cid, text);
		card.flags = VEIL_CARD_ONE_TIME;
	}
	if (eng_policy()->card_rotates && (next = rotation_next()) > 0)
		/* Level 3 cards die with the epoch (plus its grace). */
		card.expires = (uint64_t)((next + (int64_t)eng_cfg()->rotation.grace_ms) / 1000);
	memcpy(card.pk, eng_identity()->pk, sizeof card.pk);
	copystr(card.name, eng_cfg()->identity.name, sizeof card.name);
	if ((r = veil_card_encode(&card, out->uri, sizeof out->uri)) < 0) {
		seterr(err, errlen, "cannot encode the card: %s", veil_strerror(r));
		return ENGINE_EINTERNAL;
	}
	copystr(out->name, card.name, sizeof out->name);
	out->one_time = one_time;
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
	struct veil_id inbox;
	uint8_t body[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES], *frames = NULL;
	size_t blen = sizeof body, fs = cfg->frames.size;
	char local[VEIL_NAME_MAX + 1];
	int64_t id;
	int r, n, rv = ENGINE_EINTERNAL;

	if ((r = veil_card_decode(&card, uri, (uint64_t)time(NULL))) != 0) {
		seterr(err, errlen, "bad card: %s", veil_strerror(r));
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
	if ((c = contact_by_peer_pk(card.pk)) != NULL && c->state != CONTACT_FAILED) {
		seterr(err, errlen, "already a contact: %s", c->name);
		return ENGINE_EEXIST;
	}
	c = NULL;
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
	if (row == NULL || a == NULL)
		goto out;
	if (eng_policy()->pair_inboxes)
		veil_id_new(&inbox, cfg->identity.id_bits);
	else
		veil_id_from_text(&inbox, inbox_shared());
	if (veil_agree_request(a, &card, eng_identity()->pk, cfg->identity.name, &inbox,
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
	copystr(row->name, local, sizeof row->name);
	row->state = CONTACT_REQUESTED;
	copystr(row->peer_name, card.name, sizeof row->peer_name);
	memcpy(row->peer_pk, card.pk, sizeof row->peer_pk);
	veil_id_to_text(&card.cid, row->peer_inbox, sizeof row->peer_inbox);
	veil_id_to_text(&inbox, row->my_inbox, sizeof row->my_inbox);
	row->created = row->updated = now_ms();
	/* The REQUEST stays in the outbox until the ACCEPT (or FAIL): the
	 * card's owner may be offline, or not yet subscribed. */
	memcpy(row->req_msgid, msgid, sizeof row->req_msgid);
	row->has_req_msgid = 1;
	if ((r = veil_agree_pack(a, row->agree, sizeof row->agree)) < 0)
		goto out;
	row->agree_len = (size_t)r;
	if (txn_begin() != 0)
		goto storefail;
	if ((row->id = store_contact_add(st, row)) < 0)
		goto storefail;
	if (eng_policy()->pair_inboxes &&
	    store_inbox_add(st, row->my_inbox, row->id, STORE_INBOX_PAIR, 0, now_ms()) < 0)
		goto storefail;
	if (store_outbox_add(st, row->id, msgid, VEIL_T_REQUEST, body, blen, now_ms(),
	    now_ms() + backoff(0)) < 0)
		goto storefail;
	if (txn_commit() != 0)
		goto storefail;
	if ((c = contact_from_row(row)) == NULL || contact_insert(c) != 0) {
		contact_free(c);
		goto out;
	}
	conn_subscribe(CONN_CUR, c->my_inbox);
	contact_arm(c, SLOT_EPOCH0, 1);
	txn_publish(c->peer_inbox, frames, n);
	contact_info(c, out);
	log_info("contact %" PRId64 " requested", c->id);
	rv = ENGINE_OK;
	goto out;
storefail:
	seterr(err, errlen, "store: %s", store_errmsg(st));
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
	struct veil_id inbox;
	uint8_t body[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES], *frames;
	struct veil_dirkey r2i, i2r;
	size_t blen = sizeof body;
	uint64_t seq = 0;
	int n;

	if (c->state != CONTACT_PENDING || c->agree == NULL) {
		seterr(err, errlen, "%s is %s, not pending", c->name,
		    veil_agree_state_name(c->state));
		return ENGINE_ESTATE;
	}
	if (eng_policy()->pair_inboxes)
		veil_id_new(&inbox, eng_cfg()->identity.id_bits);
	else
		veil_id_from_text(&inbox, inbox_shared());
	if (veil_agree_accept(c->agree, &inbox, body, &blen, &c->pair) != 0) {
		seterr(err, errlen, "cannot accept");
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
	veil_id_to_text(&inbox, c->my_inbox, sizeof c->my_inbox);
	if (txn_begin() != 0 ||
	    (eng_policy()->pair_inboxes &&
	    store_inbox_add(st, c->my_inbox, c->id, STORE_INBOX_PAIR, 0, now_ms()) < 0) ||
	    store_contact_accept_frames_set(st, c->id, frames,
	    (size_t)n * eng_cfg()->frames.size) != 1 ||
	    contact_save(c) != 0 || txn_commit() != 0) {
		txn_rollback();
		free(frames);
		seterr(err, errlen, "store: %s", store_errmsg(st));
		return ENGINE_EINTERNAL;
	}
	conn_subscribe(CONN_CUR, c->my_inbox);
	contact_set_ep0(c);
	contact_arm(c, SLOT_RX, 1);
	contact_arm(c, SLOT_EPOCH0, 1);
	txn_publish(c->peer_inbox, frames, n);
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

static int
remove_contact(struct contact *c, char *err, size_t errlen)
{
	if (store_contact_delete(eng_store(), c->id, now_ms()) != 1) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return ENGINE_EINTERNAL;
	}
	if (eng_policy()->pair_inboxes && c->my_inbox[0] != '\0')
		conn_unsubscribe(c->my_inbox);
	contact_drop(c);
	return ENGINE_OK;
}

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
	/* Silence: a forwarded card's holder learns nothing.  Its key is
	 * remembered, so the copies it keeps sending are dropped unseen. */
	if (store_refused_add(eng_store(), c->peer_pk) != 0) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return ENGINE_EINTERNAL;
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
