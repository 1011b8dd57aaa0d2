/* mkseeds: writes valid seed inputs for the fuzz harnesses from the same deterministic world. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "veil.h"
#include "world.h"

#include "backup_rec.h"
#include "bkfile.h"
#include "fuzz_backup.h"

static const char *outdir;
static int failed;

static void
put(const char *harness, const char *name, const void *a, size_t alen,
    const void *b, size_t blen)
{
	char path[4096];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", outdir, harness);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		failed = 1;
		return;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, harness, name);
	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		failed = 1;
		return;
	}
	if ((alen > 0 && fwrite(a, 1, alen, fp) != alen) ||
	    (blen > 0 && fwrite(b, 1, blen, fp) != blen))
		failed = 1;
	if (fclose(fp) != 0)
		failed = 1;
}

/* Frame harness prefix: mode/size byte and the sequence number. */
static void
frame_prefix(uint8_t p[9], uint8_t sel, uint64_t seq)
{
	p[0] = sel;
	for (int i = 8; i >= 1; i--) {
		p[i] = (uint8_t)seq;
		seq >>= 8;
	}
}

static void
frame_seeds(struct world *w)
{
	static const char text[] = "hello, fuzzer";
	uint8_t in[9 + 1024 + 64], frame[1024], pt[1024];
	struct veil_frame_hdr h;
	size_t fs;

	memset(&h, 0, sizeof(h));
	h.type = VEIL_T_TEXT;
	h.len = sizeof(text) - 1;
	h.seq = 5;
	memset(h.msgid, 0x11, sizeof(h.msgid));
	h.frag_cnt = 1;
	for (int big = 0; big <= 1; big++) {
		fs = big ? 1024 : 512;
		char name[64];

		/* 0: a real AEAD frame. */
		if (veil_frame_seal(frame, fs, &w->dk, &h, (const uint8_t *)text) != 0)
			failed = 1;
		frame_prefix(in, (uint8_t)(0 | (big << 2)), h.seq);
		memcpy(in + 9, frame, fs);
		snprintf(name, sizeof(name), "aead-%zu", fs);
		put("frame", name, in, 9 + fs, NULL, 0);

		/* 1: a real sealed frame. */
		h.type = VEIL_T_REQUEST;
		h.seq = 0;
		if (veil_frame_seal_box(frame, fs, w->box_pk, &h, (const uint8_t *)text) != 0)
			failed = 1;
		frame_prefix(in, (uint8_t)(1 | (big << 2)), 0);
		memcpy(in + 9, frame, fs);
		snprintf(name, sizeof(name), "box-%zu", fs);
		put("frame", name, in, 9 + fs, NULL, 0);

		/* 2 and 3: valid plaintexts (header, body; padding implied). */
		h.type = VEIL_T_TEXT;
		h.seq = 5;
		memset(pt, 0, sizeof(pt));
		pt[0] = h.type;
		pt[3] = (uint8_t)h.len;
		pt[11] = 5;
		memset(pt + 12, 0x11, 16);
		pt[31] = 1;
		memcpy(pt + 32, text, h.len);
		frame_prefix(in, (uint8_t)(2 | (big << 2)), 5);
		memcpy(in + 9, pt, 32 + h.len);
		snprintf(name, sizeof(name), "pt-aead-%zu", fs);
		put("frame", name, in, 9 + 32 + h.len, NULL, 0);
		pt[11] = 0;
		pt[0] = VEIL_T_REQUEST;
		frame_prefix(in, (uint8_t)(3 | (big << 2)), 0);
		memcpy(in + 9, pt, 32 + h.len);
		snprintf(name, sizeof(name), "pt-box-%zu", fs);
		put("frame", name, in, 9 + 32 + h.len, NULL, 0);
	}

	/* A frame followed by reassembly records: a 3-fragment message
	 * (the middle one twice), then expiry and forget. */
	{
		static const uint8_t recs[][10] = {
			{ 1, VEIL_T_TEXT, 0x01, 0xb8, 0, 0, 0, 3, 0x42, 1 },
			{ 1, VEIL_T_TEXT, 0x01, 0xb8, 0, 1, 0, 3, 0x42, 1 },
			{ 1, VEIL_T_TEXT, 0x01, 0xb8, 0, 1, 0, 3, 0x42, 1 },
			{ 1, VEIL_T_TEXT, 0x00, 0x10, 0, 2, 0, 3, 0x42, 1 },
			{ 2, VEIL_T_FILE, 0x01, 0xb8, 0, 0, 0, 2, 0x43, 1 },
			{ 0, VEIL_T_TEXT, 0x00, 0x05, 0, 0, 0, 1, 0x44, 1 },
			{ 3, VEIL_T_TEXT, 0x01, 0xb8, 0, 0, 0, 9, 0x45, 0xe9 },
			{ 2, VEIL_T_FILE, 0x01, 0xb8, 0, 1, 0, 2, 0x43, 0xf1 },
		};
		size_t n = 9 + 32 + h.len;

		/* Mode 2, 512 bytes: the plaintext is 472 bytes, cap 440. */
		pt[0] = VEIL_T_TEXT;
		pt[11] = 5;
		frame_prefix(in, 2 | 8, 5);
		memcpy(in + 9, pt, 472);
		n = 9 + 472;
		memcpy(in + n, recs, sizeof(recs));
		put("frame", "reasm", in, n + sizeof(recs), NULL, 0);
	}
}

static void
rpc_seeds(void)
{
	static const char *const lines[][2] = {
		{ "echo", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"text\":\"hi\",\"flag\":true,\"n\":7}}\n" },
		{ "notif", "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"text\":\"x\"}}\n" },
		{ "subscribe", "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"subscribe\",\"params\":{\"events\":[\"message\",\"delivery\"]}}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"notify\",\"params\":{\"event\":\"message\",\"n\":1}}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"unsubscribe\"}\n" },
		{ "defer", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"wait\"}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"wait\"}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"wake\"}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"wait\"}\n" },
		{ "errors", "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"fail\",\"params\":{\"text\":\"\\u00e9\"}}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"twice\"}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"silent\"}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"nope\"}\n"
		    "[1,2]\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"echo\",\"param\":{}}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"wake\",\"params\":{\"a\":1}}\n"
		    "  \t\r\n"
		    "{bad json\n" },
	};

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		put("rpc", lines[i][0], lines[i][1], strlen(lines[i][1]), NULL, 0);
}

/* A backup file sealed to FUZZ_BACKUP_SK's public key, and its records
 * one by one (fuzz_backup modes 0 and 1). */
struct sink {
	uint8_t	*buf;
	size_t	 len, cap;
};

static int
sink_out(void *arg, const uint8_t *b, size_t n)
{
	struct sink *s = arg;

	if (s->len + n > s->cap) {
		size_t cap = (s->len + n) * 2;
		uint8_t *p = realloc(s->buf, cap);

		if (p == NULL)
			return -1;
		s->buf = p;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, b, n);
	s->len += n;
	return 0;
}

static void
backup_seeds(struct world *w)
{
	static const char *const names[BREC_COUNT] = {
		"rec-header", "rec-config", "rec-identity", "rec-meta",
		"rec-contact", "rec-card", "rec-outbox", "rec-rx", "rec-seen",
		"rec-end",
	};
	uint8_t sk[32], pk[32], sel[2] = { 0, 0 }, af[64];
	struct brec r[BREC_COUNT + 1];
	struct bk_writer wr;
	struct bk_secret sec;
	struct sink out = { NULL, 0, 0 };
	char *json;
	size_t len;
	int n = 0;

	memset(sk, FUZZ_BACKUP_SK, sizeof(sk));
	crypto_scalarmult_base(pk, sk);
	memset(r, 0, sizeof(r));
	r[n].type = BREC_HEADER;
	r[n].u.header.format = BREC_FORMAT;
	r[n].u.header.wire = 2;
	r[n++].u.header.created = 1767225600000LL;
	r[n].type = BREC_CONFIG;
	r[n++].u.config.text = (char *)"identity = { name = \"Fuzz\"; };\n";
	r[n].type = BREC_IDENTITY;
	memcpy(r[n].u.identity.pk, pk, 32);
	memcpy(r[n++].u.identity.sk, sk, 32);
	r[n].type = BREC_META;
	snprintf(r[n].u.meta.card_cid, sizeof(r[n].u.meta.card_cid), "cardtopic");
	r[n].u.meta.has_shared_seed = 1;
	memset(r[n].u.meta.shared_seed, 7, 32);
	r[n++].u.meta.wire = 2;
	r[n].type = BREC_CONTACT;
	r[n].u.contact.c.id = 1;
	snprintf(r[n].u.contact.c.name, sizeof(r[n].u.contact.c.name), "Bob");
	snprintf(r[n].u.contact.c.peer_name, sizeof(r[n].u.contact.c.peer_name),
	    "Bob");
	r[n].u.contact.c.state = 4;
	memcpy(r[n].u.contact.c.pair, w->pair_packed, w->pair_packed_len);
	r[n].u.contact.c.pair_len = w->pair_packed_len;
	r[n].u.contact.c.has_seed_prev = 1;
	memset(af, 3, sizeof(af));
	r[n].u.contact.af = af;
	r[n].u.contact.aflen = sizeof(af);
	r[n].u.contact.reset.has_seen = 1;
	r[n].u.contact.reset.seen_t = 5;
	r[n++].u.contact.reset.ack_len = 169;
	r[n].type = BREC_CARD;
	snprintf(r[n].u.card.topic, sizeof(r[n].u.card.topic), "cardtopic");
	r[n++].u.card.one_time = 1;
	r[n].type = BREC_OUTBOX;
	r[n].u.outbox.o.contact_id = 1;
	r[n].u.outbox.o.type = 1;
	r[n].u.outbox.o.body = (const uint8_t *)"queued text";
	r[n++].u.outbox.o.body_len = 11;
	r[n].type = BREC_RX;
	r[n].u.rx.r.contact_id = 1;
	r[n].u.rx.r.type = 1;
	r[n].u.rx.r.body = (const uint8_t *)"unread text";
	r[n++].u.rx.r.body_len = 11;
	r[n].type = BREC_SEEN;
	r[n++].u.seen.contact_id = 1;
	r[n].type = BREC_END;
	r[n].u.end.records = n;
	n++;

	memset(&sec, 0, sizeof(sec));
	sec.pk = pk;
	if (bk_writer_start(&wr, &sec, sink_out, &out) != BK_OK) {
		failed = 1;
		return;
	}
	for (int i = 0; i < n; i++) {
		if ((json = brec_encode(&r[i], &len)) == NULL) {
			failed = 1;
			continue;
		}
		if (bk_writer_record(&wr, (const uint8_t *)json, len) != BK_OK)
			failed = 1;
		sel[0] = 1;
		put("backup", names[r[i].type], sel, 1, json, len);
		free(json);
	}
	if (bk_writer_finish(&wr) != BK_OK)
		failed = 1;
	bk_writer_free(&wr);
	sel[0] = 0;
	sel[1] = 0xff;		/* pieces of 65536 bytes */
	put("backup", "file-sealed", sel, 2, out.buf, out.len);
	sel[1] = 3;		/* pieces of 772 bytes */
	put("backup", "file-sealed-pieces", sel, 2, out.buf, out.len);
	sel[0] = 2;
	put("backup", "header-sealed", sel, 1, out.buf, 160);
	free(out.buf);
}

int
main(int argc, char **argv)
{
	static struct world w;
	uint8_t sel;
	char uri[VEIL_CARD_URI_MAX + 8];

	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds OUTDIR\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
		perror(outdir);
		return 1;
	}
	if (world_build(&w) != 0)
		return 1;

	put("card", "card", w.card_uri, strlen(w.card_uri), NULL, 0);
	snprintf(uri, sizeof(uri), "  %s\r\n", w.card_uri);
	put("card", "card-ws", uri, strlen(uri), NULL, 0);
	{
		/* The binary form fuzz_card takes after a NUL byte: the
		 * card body without its checksum. */
		uint8_t bin[VEIL_CARD_URI_MAX];
		size_t blen = 0;

		if (sodium_base642bin(bin, sizeof(bin), w.card_uri + 5,
		    strlen(w.card_uri + 5), NULL, &blen, NULL,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || blen < 4)
			failed = 1;
		else
			put("card", "card-bin", "", 1, bin, blen - 4);
	}
	w.card.flags = VEIL_CARD_ONE_TIME;
	w.card.hints[0] = '\0';
	w.card.expires = 0;
	if (veil_card_encode(&w.card, uri, sizeof(uri)) <= 0)
		failed = 1;
	put("card", "card-onetime", uri, strlen(uri), NULL, 0);

	frame_seeds(&w);
	backup_seeds(&w);

	sel = 0;
	put("ccm", "parse", &sel, 1, w.update_body, w.update_len);
	sel = 1;
	put("ccm", "update", &sel, 1, w.update_body, w.update_len);
	sel = 2;
	put("ccm", "ack", &sel, 1, w.ack_body, w.ack_len);
	sel = 3;
	put("ccm", "done", &sel, 1, "{\"Data\":\"UpdateDone\",\"Seq\":1}", 29);

	sel = 0;
	put("agree", "request", &sel, 1, w.request_body, w.request_len);
	sel = 1;
	put("agree", "accept", &sel, 1, w.accept_body, w.accept_len);
	sel = 2;
	put("agree", "confirm", &sel, 1, w.confirm_body, w.confirm_len);
	sel = 3;
	put("agree", "fail", &sel, 1, "\x01", 1);
	sel = 0x83;
	put("agree", "fail-responder", &sel, 1, "\x01", 1);
	sel = 4;
	put("agree", "agree-packed", &sel, 1, w.agree_packed, w.agree_packed_len);
	sel = 5;
	put("agree", "pair-packed", &sel, 1, w.pair_packed, w.pair_packed_len);
	{
		/* Mode 6: two hours and a bit later, grace and lead 120 s. */
		uint8_t adv[13];
		uint64_t off = 7200 + 7;

		adv[0] = 6;
		for (int i = 8; i >= 1; i--, off >>= 8)
			adv[i] = (uint8_t)off;
		adv[9] = 0;
		adv[10] = 120;
		adv[11] = 0;
		adv[12] = 120;
		put("agree", "pair-advance", adv, 13, w.pair_packed, w.pair_packed_len);
	}

	rpc_seeds();
	return failed;
}
