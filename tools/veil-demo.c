/* veil-demo: the protocol walk-through (card, agreement, messages, rotation) with real libveil calls and a simulated broker. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "veil.h"

#define FRAME_SIZE VEIL_FRAME_DEFAULT
#define MAX_WIRE 16
#define SLOT_PAIR 1		/* tag-table owner: the contact's current receive key */
#define SLOT_PREV 2		/* its previous key, during a rotation's grace period */
#define SLOT_EPOCH0 3		/* the agreement's first key (ACCEPT) */

/* One user's device: identity, the tag table that finds senders, receive keys. */
struct device {
	const char *name;
	struct veil_identity id;
	struct veil_tagtab *tags;
	struct veil_rxdir *slot[4];
};

/* One frame as the broker handles it: a topic and bytes. */
struct wire {
	char topic[VEIL_ID_TEXT_MAX + 1];
	uint8_t frame[FRAME_SIZE];
	const char *what;	/* for the summary only: the broker never knows this */
};

static struct wire wirelog[MAX_WIRE];
static size_t nwire;
static int step;

static void
fail(const char *what, int err)
{
	fprintf(stderr, "\nveil-demo: step %d failed: %s: %s\n", step, what,
	    err < 0 ? veil_strerror(err) : "unexpected result");
	exit(1);
}

static void
check(int rc, const char *what)
{
	if (rc < 0)
		fail(what, rc);
}

static void
expect(int cond, const char *what)
{
	if (!cond)
		fail(what, 0);
}

static void
heading(const char *title)
{
	printf("\n[%d] %s\n", ++step, title);
}

static void
say(const char *who, const char *fmt, ...)
{
	va_list ap;

	printf("    %-9s ", who);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void
id_text(const struct veil_id *id, char out[VEIL_ID_TEXT_MAX + 1])
{
	check(veil_id_to_text(id, out, VEIL_ID_TEXT_MAX + 1), "inbox to text");
}

/* Publishes one frame: the only thing an observer of the broker sees. */
static struct wire *
publish(const struct veil_id *topic, const uint8_t *frame, const char *what)
{
	struct wire *w;

	expect(nwire < MAX_WIRE, "wire log full");
	w = &wirelog[nwire++];
	id_text(topic, w->topic);
	memcpy(w->frame, frame, FRAME_SIZE);
	w->what = what;
	say("Wire:", "topic %s, %d bytes of ciphertext", w->topic, FRAME_SIZE);
	return w;
}

static void
device_init(struct device *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	check(veil_identity_new(&d->id), "new identity");
	d->tags = veil_tagtab_new(64);
	expect(d->tags != NULL, "tag table");
}

static void
device_arm(struct device *d, int slot, struct veil_rxdir *rx)
{
	d->slot[slot] = rx;
	check(veil_rx_arm(d->tags, rx, (uint64_t)slot, VEIL_LOOKAHEAD), "arm receive tags");
}

static void
device_disarm(struct device *d, int slot)
{
	veil_rx_disarm(d->tags, d->slot[slot], VEIL_LOOKAHEAD);
	d->slot[slot] = NULL;
}

/*
 * What a device does with a frame from its subscription: look the 8-byte
 * tag up, open under the key it names; unknown tags are tried as a sealed
 * frame to the identity key.  Returns the slot (0 for sealed).
 */
static int
receive(struct device *d, const struct wire *w, struct veil_frame_hdr *h, uint8_t *body)
{
	uint8_t tag[VEIL_TAG_BYTES];
	uint64_t owner, seq;
	struct veil_rxdir *rx;

	veil_frame_tag(w->frame, tag);
	if (veil_tagtab_get(d->tags, tag, &owner, &seq) != 0) {
		check(veil_frame_open_box(w->frame, FRAME_SIZE, d->id.pk, d->id.sk, h, body),
		    "open sealed frame");
		return 0;
	}
	expect(owner < 4 && d->slot[owner] != NULL, "tag names a known key");
	rx = d->slot[owner];
	check(veil_window_check(&rx->w, seq), "replay window");
	check(veil_frame_open(w->frame, FRAME_SIZE, &rx->k, seq, h, body), "open frame");
	check(veil_rx_commit(d->tags, rx, owner, seq, VEIL_LOOKAHEAD), "commit sequence number");
	expect(h->frag_cnt == 1, "single-frame message");
	return (int)owner;
}

static void
send_text(struct veil_txdir *tx, const struct veil_id *to, const char *text,
    struct wire **w)
{
	uint8_t frame[FRAME_SIZE], msgid[VEIL_MSGID_BYTES];

	veil_msgid_new(msgid);
	check(veil_message_seal(frame, sizeof(frame), FRAME_SIZE, &tx->k, &tx->seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)text, strlen(text)), "seal message");
	*w = publish(to, frame, "TEXT");
}

static void
read_text(struct device *d, const struct wire *w, const char *from, int want_slot)
{
	struct veil_frame_hdr h;
	uint8_t body[FRAME_SIZE];

	expect(receive(d, w, &h, body) == want_slot, "frame found under the contact's key");
	expect(h.type == VEIL_T_TEXT, "a TEXT frame");
	say(d->name, "sees: %s: \"%.*s\"   (seq %llu, found by its tag in one lookup)",
	    from, (int)h.len, (const char *)body, (unsigned long long)h.seq);
}

static void
summary(void)
{
	size_t topics = 0;

	printf("\n[%d] What the broker saw\n", ++step);
	for (size_t i = 0; i < nwire; i++) {
		int seen = 0;

		for (size_t j = 0; j < i; j++)
			seen |= strcmp(wirelog[i].topic, wirelog[j].topic) == 0;
		topics += !seen;
		printf("    %2zu  topic %-24s %d bytes    (really: %s)\n", i + 1,
		    wirelog[i].topic, FRAME_SIZE, wirelog[i].what);
	}
	printf("    %zu frames on %zu random topics, every one %d bytes of random-looking\n"
	    "    bytes: no names, no keys, no types, no sizes. The last column is what\n"
	    "    only Alice and Bob know.\n", nwire, topics, FRAME_SIZE);
}

int
main(int argc, char **argv)
{
	struct device alice, bob;
	struct veil_card card, scanned;
	struct veil_id alice_cid, alice_inbox, bob_inbox, alice_new;
	struct veil_id alice_at, bob_at;	/* where each sends to the other */
	struct veil_agree ag_a, ag_b;
	struct veil_pair pa, pb;
	struct veil_dirkey r2i, i2r;
	struct veil_rxdir bob_epoch0;
	struct veil_frame_hdr h;
	struct veil_ccm ccm;
	struct wire *w;
	uint8_t frame[FRAME_SIZE], body[FRAME_SIZE], out[VEIL_AGREE_BODY_MAX];
	uint8_t msgid[VEIL_MSGID_BYTES], type = 0;
	char uri[VEIL_CARD_URI_MAX], t1[VEIL_ID_TEXT_MAX + 1], t2[VEIL_ID_TEXT_MAX + 1];
	char fp_a[VEIL_FP_TEXT], fp_b[VEIL_FP_TEXT], *qr = NULL, *upd = NULL, *ack = NULL;
	size_t len, updlen, acklen;
	uint64_t now = (uint64_t)time(NULL);

	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("usage: %s\n  Walks through veil's protocol between two local users "
		    "with real keys and frames.\n", argv[0]);
		return 0;
	}
	if (veil_init() != 0) {
		fprintf(stderr, "veil-demo: libsodium failed to initialise\n");
		return 1;
	}
	memset(&ag_a, 0, sizeof(ag_a));
	memset(&ag_b, 0, sizeof(ag_b));
	memset(&pa, 0, sizeof(pa));
	memset(&pb, 0, sizeof(pb));
	memset(&bob_epoch0, 0, sizeof(bob_epoch0));

	printf("veil demo: Alice and Bob become contacts and talk through a broker that\n"
	    "learns nothing but random topic names and same-sized frames (%d bytes).\n"
	    "Everything below is real: real keys, real sealed frames, opened again.\n",
	    FRAME_SIZE);

	heading("Alice makes a contact card");
	device_init(&alice, "Alice");
	device_init(&bob, "Bob");
	memset(&card, 0, sizeof(card));
	check(veil_id_new(&alice_cid, 0), "new card inbox");
	card.cid = alice_cid;
	memcpy(card.pk, alice.id.pk, VEIL_KEY_BYTES);
	snprintf(card.name, sizeof(card.name), "Alice");
	card.expires = now + 7 * 86400;
	check(veil_card_encode(&card, uri, sizeof(uri)), "encode card");
	say("Alice", "sees her card (valid 7 days), to show on screen or send as a link:");
	printf("      %s\n", uri);
	check(veil_qr_utf8(uri, &qr), "QR code");
	fputs(qr, stdout);
	free(qr);
	say("Wire:", "nothing: the card travels out of band (scanned, or sent as a link).");

	heading("Bob scans the card");
	check(veil_card_decode(&scanned, uri, now), "decode card");
	id_text(&scanned.cid, t1);
	say("Bob", "sees: \"%s\" wants to be reachable; card checked (checksum, expiry).",
	    scanned.name);
	say("", "Her request inbox is %s, a random name.", t1);
	say("Wire:", "nothing yet.");

	heading("Agreement 1/3, REQUEST: Bob asks to connect");
	check(veil_id_new(&bob_inbox, 0), "new inbox");
	len = sizeof(out);
	check(veil_agree_request(&ag_b, &scanned, bob.id.pk, "Bob", &bob_inbox, out, &len),
	    "build REQUEST");
	veil_msgid_new(msgid);
	expect(veil_message_seal_box(frame, sizeof(frame), FRAME_SIZE, scanned.pk,
	    VEIL_T_REQUEST, msgid, out, len) == 1, "seal REQUEST");
	/* Bob will receive ACCEPT under the agreement's first key. */
	veil_agree_epoch0(&ag_b, &r2i, &i2r);
	bob_epoch0.k = r2i;
	veil_window_init(&bob_epoch0.w);
	bob_epoch0.live = 1;
	device_arm(&bob, SLOT_EPOCH0, &bob_epoch0);
	say("Bob", "sees: \"Request sent to Alice.\"");
	w = publish(&scanned.cid, frame, "REQUEST, sealed to Alice's key");
	expect(receive(&alice, w, &h, body) == 0 && h.type == VEIL_T_REQUEST,
	    "Alice opens the sealed REQUEST");
	check(veil_agree_on_request(&ag_a, &alice_cid, alice.id.pk, body, h.len),
	    "check REQUEST");
	say("Alice", "sees: \"%s wants to connect. Accept?\"  (nothing is sent until she says yes)",
	    ag_a.peer_name);

	heading("Agreement 2/3, ACCEPT: Alice says yes");
	check(veil_id_new(&alice_inbox, 0), "new inbox");
	len = sizeof(out);
	check(veil_agree_accept(&ag_a, &alice_inbox, out, &len, &pa), "build ACCEPT");
	veil_agree_epoch0(&ag_a, &r2i, &i2r);
	{
		uint64_t seq = 0;

		veil_msgid_new(msgid);
		expect(veil_message_seal(frame, sizeof(frame), FRAME_SIZE, &r2i, &seq,
		    VEIL_T_ACCEPT, msgid, out, len) == 1, "seal ACCEPT");
	}
	veil_dirkey_wipe(&r2i);
	veil_dirkey_wipe(&i2r);
	device_arm(&alice, SLOT_PAIR, &pa.rx);
	say("Alice", "sees: \"Accepted. Waiting for Bob to confirm.\"");
	w = publish(&ag_a.peer_inbox, frame, "ACCEPT");
	expect(receive(&bob, w, &h, body) == SLOT_EPOCH0 && h.type == VEIL_T_ACCEPT,
	    "Bob opens ACCEPT");
	device_disarm(&bob, SLOT_EPOCH0);
	veil_dirkey_wipe(&bob_epoch0.k);
	len = sizeof(out);
	check(veil_agree_on_accept(&ag_b, body, h.len, &pb, out, &len, &type), "check ACCEPT");
	expect(type == VEIL_T_CONFIRM && ag_b.state == VEIL_AG_ESTABLISHED,
	    "transcript hashes match");
	device_arm(&bob, SLOT_PAIR, &pb.rx);
	say("Bob", "sees: \"Alice accepted.\" His device checked her keyed transcript hash: match.");

	heading("Agreement 3/3, CONFIRM: Bob confirms");
	veil_msgid_new(msgid);
	expect(veil_message_seal(frame, sizeof(frame), FRAME_SIZE, &pb.tx.k, &pb.tx.seq,
	    type, msgid, out, len) == 1, "seal CONFIRM");
	w = publish(&ag_b.peer_inbox, frame, "CONFIRM");
	expect(receive(&alice, w, &h, body) == SLOT_PAIR && h.type == VEIL_T_CONFIRM,
	    "Alice opens CONFIRM");
	check(veil_agree_on_confirm(&ag_a, body, h.len), "check CONFIRM");
	check(veil_fingerprint(alice.id.pk, ag_a.peer_pk, fp_a), "fingerprint");
	check(veil_fingerprint(bob.id.pk, ag_b.peer_pk, fp_b), "fingerprint");
	expect(strcmp(fp_a, fp_b) == 0, "both see the same safety number");
	say("Alice", "sees: \"Bob is now a contact.\"");
	say("Both", "see the safety number %s", fp_a);
	say("", "(equal on both phones: nobody sat in the middle)");
	/* Each side keeps where to send to the other; the rest is wiped. */
	expect(veil_id_equal(&ag_b.peer_inbox, &alice_inbox) &&
	    veil_id_equal(&ag_a.peer_inbox, &bob_inbox), "inboxes exchanged");
	alice_at = ag_b.peer_inbox;
	bob_at = ag_a.peer_inbox;
	veil_agree_wipe(&ag_a);
	veil_agree_wipe(&ag_b);

	heading("Messages, one each way");
	send_text(&pb.tx, &alice_at, "Hi Alice, it's Bob!", &w);
	read_text(&alice, w, "Bob", SLOT_PAIR);
	send_text(&pa.tx, &bob_at, "Hello Bob. Nice and quiet here.", &w);
	read_text(&bob, w, "Alice", SLOT_PAIR);

	heading("Rotation: Alice moves to a new inbox (UPDATE, UPDATE-ACK)");
	check(veil_id_new(&alice_new, 0), "new inbox");
	id_text(&alice_inbox, t1);
	id_text(&alice_new, t2);
	check(veil_update_build(&pa, alice.id.pk, "Alice", &alice_inbox, &alice_new, 0,
	    &upd, &updlen), "build UPDATE");
	veil_msgid_new(msgid);
	expect(veil_message_seal(frame, sizeof(frame), FRAME_SIZE, &pa.tx.k, &pa.tx.seq,
	    VEIL_T_UPDATE, msgid, (const uint8_t *)upd, updlen) == 1, "seal UPDATE");
	say("Alice", "sees: nothing; her device rotates on its own schedule.");
	w = publish(&bob_at, frame, "UPDATE (new inbox, fresh ephemeral key)");
	expect(receive(&bob, w, &h, body) == SLOT_PAIR && h.type == VEIL_T_UPDATE,
	    "Bob opens UPDATE");
	check(veil_update_on_update(&pb, &alice_at, (const char *)body, h.len, &ccm,
	    &ack, &acklen), "apply UPDATE");
	expect(veil_id_equal(&ccm.new_cid, &alice_new), "UPDATE names the new inbox");
	alice_at = ccm.new_cid;
	say("Bob", "sees: nothing; his device now sends to %s", t2);
	say("", "(was %s) under a freshly mixed key.", t1);
	veil_msgid_new(msgid);
	/* The ACK goes under the key Alice reads; Bob's new one waits. */
	expect(veil_message_seal(frame, sizeof(frame), FRAME_SIZE, &pb.tx.k,
	    &pb.tx.seq, VEIL_T_UPDATE_ACK, msgid, (const uint8_t *)ack, acklen) == 1,
	    "seal UPDATE-ACK");
	w = publish(&ccm.new_cid, frame, "UPDATE-ACK (Bob's fresh ephemeral key)");
	expect(receive(&alice, w, &h, body) == SLOT_PAIR && h.type == VEIL_T_UPDATE_ACK,
	    "Alice opens UPDATE-ACK");
	/* Alice's receive key changes: re-index her tag table around it. */
	device_disarm(&alice, SLOT_PAIR);
	check(veil_update_on_ack(&pa, (const char *)body, h.len), "apply UPDATE-ACK");
	device_arm(&alice, SLOT_PAIR, &pa.rx);
	if (pa.rx_prev.live)
		device_arm(&alice, SLOT_PREV, &pa.rx_prev);
	expect(sodium_memcmp(pa.rx.k.root, pb.tx_next.k.root, VEIL_KEY_BYTES) == 0,
	    "both sides derived the same new key");
	say("Alice", "sees: nothing; the rotation is confirmed, the old inbox retires.");
	free(upd);
	free(ack);

	heading("Alice confirms she holds the new key (UPDATE-DONE)");
	check(veil_update_done_build(&pa, &upd, &updlen), "build UPDATE-DONE");
	veil_msgid_new(msgid);
	expect(veil_message_seal(frame, sizeof(frame), FRAME_SIZE, &pa.tx.k, &pa.tx.seq,
	    VEIL_T_UPDATE_DONE, msgid, (const uint8_t *)upd, updlen) == 1,
	    "seal UPDATE-DONE");
	w = publish(&bob_at, frame, "UPDATE-DONE");
	expect(receive(&bob, w, &h, body) == SLOT_PAIR && h.type == VEIL_T_UPDATE_DONE,
	    "Bob opens UPDATE-DONE");
	check(veil_update_on_done(&pb, (const char *)body, h.len), "switch to the new key");
	say("Bob", "sees: nothing; from now on he seals under the new key.");
	free(upd);

	heading("Bob writes to Alice's new inbox");
	send_text(&pb.tx, &alice_at, "Still there?", &w);
	read_text(&alice, w, "Bob", SLOT_PAIR);
	say("", "The old key is kept only for a grace period, then wiped.");
	if (alice.slot[SLOT_PREV] != NULL)
		device_disarm(&alice, SLOT_PREV);
	veil_pair_drop_prev(&pa);
	veil_pair_drop_prev(&pb);

	summary();
	printf("\nDemo finished: every step succeeded.\n");

	veil_tagtab_free(alice.tags);
	veil_tagtab_free(bob.tags);
	veil_pair_wipe(&pa);
	veil_pair_wipe(&pb);
	veil_identity_wipe(&alice.id);
	veil_identity_wipe(&bob.id);
	return 0;
}
