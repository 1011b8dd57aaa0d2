/* hostile: frames a hostile sender would publish, built with the real libveil, for tests/test_hostile.py. */

/*
 * hostile requests URI COUNT FRAME_SIZE NAME_HEX
 *	COUNT valid REQUESTs to the card URI, each sealed to its owner in
 *	one frame of FRAME_SIZE bytes, written back to back to standard
 *	output.  Each claims a fresh identity key and a fresh inbox; the
 *	name is the bytes NAME_HEX stands for, copied into the body after
 *	libveil built it around a placeholder of the same length, so that a
 *	name libveil would refuse to build (bidi controls, bad UTF-8) goes
 *	out as a hostile requester would send it.
 *
 * hostile bomb PAIR_HEX FRAME_SIZE MESSAGES FRAGMENTS OUT
 *	What a malicious contact can send: MESSAGES multi-frame TEXT
 *	messages of FRAGMENTS fragments each, every fragment but the last
 *	(so none ever completes and each holds reassembly memory), sealed
 *	under the transmit chain of the stored pair PAIR_HEX (the contact's
 *	own veil.db row, as veild packs it) at the current key period, with
 *	its next sequence numbers, into the file OUT.  Prints the topic they
 *	go to (the victim's inbox for this contact, now) and the pair after
 *	them (hex), one a line.
 *
 * hostile message PAIR_HEX FRAME_SIZE LENGTH OUT
 *	One whole TEXT message of LENGTH random letters from the same kind
 *	of contact, every fragment, into OUT (its text into OUT.txt), so
 *	that a test can deliver a legitimate message's frames in parts,
 *	around an attack.  Prints the topic and the message ID (hex).
 *
 * Exit 0, or 1 with a reason on standard error.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "veil.h"

static int
fail(const char *what)
{
	fprintf(stderr, "hostile: %s\n", what);
	return 1;
}

static int
requests(const char *uri, long count, size_t fs, const char *name_hex)
{
	static uint8_t name[VEIL_NAME_MAX + 1];
	struct veil_card card;
	struct veil_identity id;
	struct veil_inbox mine;
	struct veil_agree a;
	uint8_t body[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES], *frame;
	char placeholder[VEIL_NAME_MAX + 1];
	size_t nlen = 0, blen;

	if (veil_card_decode(&card, uri, (uint64_t)time(NULL)) != 0)
		return fail("not a card");
	if (sodium_hex2bin(name, VEIL_NAME_MAX, name_hex, strlen(name_hex), NULL,
	    &nlen, NULL) != 0 || nlen == 0 || nlen > VEIL_NAME_MAX)
		return fail("the name: 1 to 64 bytes in hex");
	memset(placeholder, 'x', nlen);
	placeholder[nlen] = '\0';
	if ((frame = malloc(fs)) == NULL)
		return fail("out of memory");
	for (long i = 0; i < count; i++) {
		veil_identity_new(&id);
		veil_seed_new(mine.seed);
		mine.epoch = 0;
		mine.period = 3600;
		blen = sizeof body;
		memset(&a, 0, sizeof a);
		if (veil_agree_request(&a, &card, id.pk, placeholder, &mine,
		    (uint64_t)time(NULL), body, &blen) != 0)
			return fail("cannot build a request");
		/* The name is the body's last field. */
		if (blen < nlen || memcmp(body + blen - nlen, placeholder, nlen) != 0)
			return fail("the name is not where it was expected");
		memcpy(body + blen - nlen, name, nlen);
		veil_msgid_new(msgid);
		if (veil_message_seal_box(frame, fs, fs, card.pk, VEIL_T_REQUEST,
		    msgid, body, blen) != 1)
			return fail("cannot seal a request");
		if (fwrite(frame, 1, fs, stdout) != fs)
			return fail("standard output");
		veil_agree_wipe(&a);
		veil_identity_wipe(&id);
	}
	free(frame);
	return fflush(stdout) == 0 ? 0 : fail("standard output");
}

/* The stored pair, its chains moved to now, and the topic it sends to. */
static int
load_pair(struct veil_pair *p, const char *pair_hex, char topic[VEIL_TOPIC_TEXT])
{
	static uint8_t blob[VEIL_PAIR_PACKED_MAX];
	struct veil_clock clk;
	size_t len = 0;
	int r;

	if (sodium_hex2bin(blob, sizeof blob, pair_hex, strlen(pair_hex), NULL,
	    &len, NULL) != 0 || veil_pair_unpack(p, blob, len) != 0)
		return fail("not a stored pair");
	clk.now = (uint64_t)time(NULL);
	clk.grace = clk.lead = 120;
	do
		r = veil_pair_advance(p, &clk, NULL, 0, 0);
	while (r == VEIL_ERR_RATCHET);
	if (r < 0 || !p->tx.live)
		return fail("the pair's transmit chain cannot move to now");
	if (veil_topic_text(p->peer_inbox.seed, veil_epoch_number(clk.now,
	    p->peer_inbox.epoch), topic, VEIL_TOPIC_TEXT) != 0)
		return fail("no topic");
	return 0;
}

static int
message(const char *pair_hex, size_t fs, size_t len, const char *out)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyz";
	struct veil_pair p;
	char topic[VEIL_TOPIC_TEXT], path[4096], id[2 * VEIL_MSGID_BYTES + 1];
	uint8_t msgid[VEIL_MSGID_BYTES], *text, *frames;
	int n;
	FILE *f;

	if (load_pair(&p, pair_hex, topic) != 0)
		return 1;
	if ((n = veil_message_frames(len, fs, 0)) < 0)
		return fail("LENGTH: too large");
	if ((text = malloc(len + 1)) == NULL ||
	    (frames = malloc((size_t)n * fs)) == NULL)
		return fail("out of memory");
	for (size_t i = 0; i < len; i++)
		text[i] = (uint8_t)letters[randombytes_uniform(26)];
	veil_msgid_new(msgid);
	if (veil_message_seal(frames, (size_t)n * fs, fs, &p.tx.k, &p.tx.seq,
	    VEIL_T_TEXT, msgid, text, len) != n)
		return fail("cannot seal");
	if ((f = fopen(out, "wb")) == NULL ||
	    fwrite(frames, fs, (size_t)n, f) != (size_t)n || fclose(f) != 0)
		return fail("write");
	snprintf(path, sizeof path, "%s.txt", out);
	if ((f = fopen(path, "wb")) == NULL || fwrite(text, 1, len, f) != len ||
	    fclose(f) != 0)
		return fail("write");
	sodium_bin2hex(id, sizeof id, msgid, sizeof msgid);
	printf("%s\n%s\n", topic, id);
	veil_pair_wipe(&p);
	free(text);
	free(frames);
	return fflush(stdout) == 0 ? 0 : fail("standard output");
}

static int
bomb(const char *pair_hex, size_t fs, long nmsg, long frags, const char *out)
{
	static uint8_t blob[VEIL_PAIR_PACKED_MAX];
	static char hex[2 * VEIL_PAIR_PACKED_MAX + 1];
	struct veil_pair p;
	struct veil_frame_hdr h;
	char topic[VEIL_TOPIC_TEXT];
	size_t cap = veil_frame_capacity(fs, 0);
	uint8_t *frame, *body;
	FILE *f;
	int r;

	if (frags < 2 || frags > 65535)
		return fail("FRAGMENTS: 2 to 65535");
	if (load_pair(&p, pair_hex, topic) != 0)
		return 1;
	if ((frame = malloc(fs)) == NULL || (body = calloc(1, cap)) == NULL)
		return fail("out of memory");
	if ((f = fopen(out, "wb")) == NULL)
		return fail(strerror(errno));
	for (long m = 0; m < nmsg; m++) {
		memset(&h, 0, sizeof h);
		h.type = VEIL_T_TEXT;
		h.len = (uint16_t)cap;
		h.frag_cnt = (uint16_t)frags;
		veil_msgid_new(h.msgid);
		for (long i = 0; i + 1 < frags; i++) {
			randombytes_buf(body, cap);
			h.frag_idx = (uint16_t)i;
			h.seq = p.tx.seq++;
			if (veil_frame_seal(frame, fs, &p.tx.k, &h, body) != 0)
				return fail("cannot seal");
			if (fwrite(frame, 1, fs, f) != fs)
				return fail("write");
		}
	}
	if (fclose(f) != 0)
		return fail("write");
	if ((r = veil_pair_pack(&p, blob, sizeof blob)) < 0)
		return fail("cannot pack the pair");
	sodium_bin2hex(hex, sizeof hex, blob, (size_t)r);
	printf("%s\n%s\n", topic, hex);
	veil_pair_wipe(&p);
	free(frame);
	free(body);
	return fflush(stdout) == 0 ? 0 : fail("standard output");
}

int
main(int argc, char **argv)
{
	if (veil_init() != 0)
		return fail("libsodium");
	if (argc == 6 && strcmp(argv[1], "requests") == 0)
		return requests(argv[2], atol(argv[3]), (size_t)atol(argv[4]), argv[5]);
	if (argc == 7 && strcmp(argv[1], "bomb") == 0)
		return bomb(argv[2], (size_t)atol(argv[3]), atol(argv[4]),
		    atol(argv[5]), argv[6]);
	if (argc == 6 && strcmp(argv[1], "message") == 0)
		return message(argv[2], (size_t)atol(argv[3]), (size_t)atol(argv[4]),
		    argv[5]);
	fprintf(stderr, "usage: hostile requests URI COUNT FRAME_SIZE NAME_HEX\n"
	    "       hostile bomb PAIR_HEX FRAME_SIZE MESSAGES FRAGMENTS OUT\n"
	    "       hostile message PAIR_HEX FRAME_SIZE LENGTH OUT\n");
	return 2;
}
