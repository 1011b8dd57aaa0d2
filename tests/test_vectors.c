/* Known-answer vectors: libveil reproduces tests/vectors/v2.txt, and the file agrees with docs/protocol.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "veil.h"
#include "testutil.h"
#include "vectors.h"

#ifndef VECTORS_DIR
#define VECTORS_DIR "tests/vectors"
#endif
#define VECTORS_FILE VECTORS_DIR "/v2.txt"
#define MAX_LINES 256

struct kv {
	char *name;
	char *value;
};

struct vset {
	char *text;		/* owns the strings kv points into */
	struct kv kv[MAX_LINES];
	size_t n;
};

static struct vset gen, file;
static char genbuf[VECTORS_BUF_MAX];
static const char *gen_why;
static int gen_len = -1;

/* Splits "name = value" lines in place; '#' lines and blank lines are skipped. */
static int
vset_parse(struct vset *v, char *text)
{
	char *line, *next, *eq;

	v->text = text;
	v->n = 0;
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (*line == '#' || *line == '\0')
			continue;
		if ((eq = strstr(line, " = ")) == NULL || v->n == MAX_LINES)
			return -1;
		*eq = '\0';
		v->kv[v->n].name = line;
		v->kv[v->n].value = eq + 3;
		v->n++;
	}
	return 0;
}

static char *
read_file(const char *path)
{
	FILE *f;
	char *buf;
	long n;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    (buf = malloc((size_t)n + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return NULL;
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int
group_setup(void **state)
{
	char *copy, *ftext;

	(void)state;
	/* The stream must be in place before libsodium initialises. */
	tu_deterministic_rng(VECTORS_SEED);
	if (veil_init() != 0)
		return -1;
	gen_len = vectors_generate(VECTORS_SEED, genbuf, sizeof(genbuf), &gen_why);
	if (gen_len >= 0) {
		if ((copy = strdup(genbuf)) == NULL || vset_parse(&gen, copy) != 0)
			return -1;
	}
	if ((ftext = read_file(VECTORS_FILE)) != NULL && vset_parse(&file, ftext) != 0) {
		fprintf(stderr, "# %s: malformed line\n", VECTORS_FILE);
		file.n = 0;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	free(gen.text);
	free(file.text);
	return 0;
}

/* A value from the committed file; the test fails if it is missing. */
static const char *
fget(const char *name)
{
	for (size_t i = 0; i < file.n; i++)
		if (strcmp(file.kv[i].name, name) == 0)
			return file.kv[i].value;
	fail_msg("%s: no value named %s", VECTORS_FILE, name);
	return NULL;
}

static size_t
fbytes(const char *name, uint8_t *out, size_t cap)
{
	int n = tu_unhex(out, cap, fget(name));

	if (n < 0)
		fail_msg("%s: %s is not hex of at most %zu bytes", VECTORS_FILE, name, cap);
	return (size_t)n;
}

static void
fkey(const char *name, uint8_t out[VEIL_KEY_BYTES])
{
	assert_int_equal(fbytes(name, out, VEIL_KEY_BYTES), VEIL_KEY_BYTES);
}

static uint64_t
fu64(const char *name)
{
	return strtoull(fget(name), NULL, 10);
}

static size_t
fid(const char *name, uint8_t out[VEIL_ID_MAX_BYTES])
{
	const char *t = fget(name), *end = NULL;
	size_t len = 0;

	assert_int_equal(sodium_base642bin(out, VEIL_ID_MAX_BYTES, t, strlen(t), NULL, &len,
	    &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	assert_ptr_equal(end, t + strlen(t));
	assert_true(len >= 10 && len <= 32);
	return len;
}

static void
file_present(void)
{
	if (file.n == 0)
		fail_msg("%s missing or empty: regenerate with tests/mkvectors", VECTORS_FILE);
}

/* ---- the spec's primitives, written out with libsodium ---------------- */

static void
kdf(uint8_t out[32], const uint8_t key[32], uint64_t id, const char ctx[8])
{
	assert_int_equal(crypto_kdf_derive_from_key(out, 32, id, ctx, key), 0);
}

/* H_k(a || b || c); k NULL for the unkeyed hash. */
static void
hash3(uint8_t out[32], const uint8_t *k, const void *a, size_t alen,
    const void *b, size_t blen, const void *c, size_t clen)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, k, k ? 32 : 0, 32);
	crypto_generichash_update(&st, a, alen);
	if (b != NULL)
		crypto_generichash_update(&st, b, blen);
	if (c != NULL)
		crypto_generichash_update(&st, c, clen);
	crypto_generichash_final(&st, out, 32);
}

static void
be_put(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* tag(seq) = first 8 bytes of BLAKE2b-128(key = nkey, u64(seq)). */
static void
spec_tag(uint8_t out[8], const uint8_t nkey[32], uint64_t seq)
{
	uint8_t be[8], h[16];

	be_put(be, seq, 8);
	crypto_generichash(h, 16, be, sizeof(be), nkey, 32);
	memcpy(out, h, 8);
}

/* D_(p+n) from D_p. */
static void
spec_ratchet(uint8_t out[32], const uint8_t root[32], uint64_t n)
{
	uint8_t t[32];

	memcpy(t, root, 32);
	while (n-- > 0)
		kdf(t, t, 3, "veildir2");
	memcpy(out, t, 32);
}

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

struct hdr {
	uint8_t type, flags;
	uint16_t len, idx, cnt;
	uint64_t seq;
	uint8_t msgid[16];
	const uint8_t *body;
};

/* Parses a decrypted plaintext per protocol.md 2, checking the padding. */
static void
spec_plain(struct hdr *h, const uint8_t *p, size_t plen)
{
	assert_true(plen >= 32);
	h->type = p[0];
	h->flags = p[1];
	h->len = be16(p + 2);
	h->seq = be64(p + 4);
	memcpy(h->msgid, p + 12, 16);
	h->idx = be16(p + 28);
	h->cnt = be16(p + 30);
	h->body = p + 32;
	assert_int_equal(h->flags, 0);
	assert_true(h->len <= plen - 32);
	assert_true(h->idx < h->cnt);
	for (size_t i = 32 + h->len; i < plen; i++)
		assert_int_equal(p[i], 0);
}

/*
 * Opens an AEAD frame from the file with the spec's rules: its first 8
 * bytes are tag(seq), its first 24 the nonce, the AD
 * "veil-frame-v2" || u8 dir || u32 frame_size; key and nkey from root.
 */
static void
spec_open(const char *frame_name, const uint8_t root[32], uint8_t dir, uint64_t seq,
    uint8_t *plain, struct hdr *h)
{
	uint8_t frame[VECTORS_FRAME], key[32], nkey[32], tag[8], ad[18];
	unsigned long long plen;

	assert_int_equal(fbytes(frame_name, frame, sizeof(frame)), VECTORS_FRAME);
	kdf(key, root, 1, "veildir2");
	kdf(nkey, root, 2, "veildir2");
	spec_tag(tag, nkey, seq);
	assert_memory_equal(frame, tag, 8);
	memcpy(ad, "veil-frame-v2", 13);
	ad[13] = dir;
	be_put(ad + 14, VECTORS_FRAME, 4);
	assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL,
	    frame + 24, VECTORS_FRAME - 24, ad, sizeof(ad), frame, key), 0);
	assert_int_equal(plen, VECTORS_FRAME - 40);
	spec_plain(h, plain, (size_t)plen);
	assert_int_equal(h->seq, seq);
	/* The other direction's AD does not open it. */
	ad[13] = (uint8_t)(3 - dir);
	assert_int_not_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen,
	    NULL, frame + 24, VECTORS_FRAME - 24, ad, sizeof(ad), frame, key), 0);
	ad[13] = dir;
	assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL,
	    frame + 24, VECTORS_FRAME - 24, ad, sizeof(ad), frame, key), 0);
}

static void
spec_open_box(const char *frame_name, const uint8_t pk[32], const uint8_t sk[32],
    uint8_t *plain, struct hdr *h)
{
	uint8_t frame[VECTORS_FRAME];

	assert_int_equal(fbytes(frame_name, frame, sizeof(frame)), VECTORS_FRAME);
	assert_int_equal(crypto_box_seal_open(plain, frame, VECTORS_FRAME, pk, sk), 0);
	spec_plain(h, plain, VECTORS_FRAME - 48);
	assert_int_equal(h->seq, 0);
	/* only a single REQUEST frame travels sealed */
	assert_int_equal(h->type, 0x10);
	assert_int_equal(h->cnt, 1);
}

static void
b64u(char *out, size_t outlen, const uint8_t *in, size_t n)
{
	sodium_bin2base64(out, outlen, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void
unb64u(uint8_t out[32], const char *s)
{
	const char *end = NULL;
	size_t n = 0;

	assert_int_equal(sodium_base642bin(out, 32, s, strlen(s), NULL, &n, &end,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	assert_int_equal(n, 32);
}

/* ---- regeneration ------------------------------------------------------ */

static void
test_generate(void **state)
{
	(void)state;
	if (gen_len < 0)
		fail_msg("scenario failed at step: %s", gen_why ? gen_why : "?");
	assert_true(gen.n > 40);
}

static void
test_matches_file(void **state)
{
	size_t i;

	(void)state;
	file_present();
	if (gen_len < 0)
		fail_msg("scenario failed at step: %s", gen_why ? gen_why : "?");
	for (i = 0; i < gen.n && i < file.n; i++) {
		if (strcmp(gen.kv[i].name, file.kv[i].name) != 0)
			fail_msg("line %zu: name %s, file has %s", i + 1, gen.kv[i].name,
			    file.kv[i].name);
		if (strcmp(gen.kv[i].value, file.kv[i].value) != 0)
			fail_msg("first difference at %s:\n# got  %s\n# want %s",
			    gen.kv[i].name, gen.kv[i].value, file.kv[i].value);
	}
	if (gen.n != file.n)
		fail_msg("%zu values generated, file has %zu (first extra: %s)", gen.n, file.n,
		    i < gen.n ? gen.kv[i].name : file.kv[i].name);
}

/* The same seed must give the same bytes again inside one process. */
static void
test_reproducible(void **state)
{
	static char again[VECTORS_BUF_MAX];
	const char *why = NULL;
	int n;

	(void)state;
	/* Not a skip: with no first run there is nothing to reproduce, and
	 * that is the failure test_generate reports too. */
	if (gen_len < 0)
		fail_msg("the first generation failed at: %s", gen_why ? gen_why : "?");
	n = vectors_generate(VECTORS_SEED, again, sizeof(again), &why);
	assert_int_equal(n, gen_len);
	assert_string_equal(again, genbuf);
	n = vectors_generate("veil-vectors-other", again, sizeof(again), &why);
	assert_true(n > 0);
	assert_string_not_equal(again, genbuf);
}

/* ---- the file against docs/protocol.md -------------------------------- */

static void
test_spec_dirkey(void **state)
{
	static const uint64_t seqs[] = { 0, 1, UINT64_C(1) << 32 };
	uint8_t root[32], key[32], nkey[32], want[32], tag[8], ftag[8];
	char name[64];

	(void)state;
	file_present();
	fkey("dirkey.root", root);
	for (int i = 0; i < 32; i++)
		assert_int_equal(root[i], i);
	kdf(key, root, 1, "veildir2");
	kdf(nkey, root, 2, "veildir2");
	fkey("dirkey.key", want);
	assert_memory_equal(key, want, 32);
	fkey("dirkey.nkey", want);
	assert_memory_equal(nkey, want, 32);
	for (size_t i = 0; i < 3; i++) {
		spec_tag(tag, nkey, seqs[i]);
		snprintf(name, sizeof(name), "dirkey.tag.%llu", (unsigned long long)seqs[i]);
		assert_int_equal(fbytes(name, ftag, sizeof(ftag)), 8);
		assert_memory_equal(tag, ftag, 8);
	}
	kdf(key, root, 3, "veildir2");
	fkey("dirkey.next", want);
	assert_memory_equal(key, want, 32);
	kdf(key, root, 4, "veildir2");
	fkey("dirkey.bind", want);
	assert_memory_equal(key, want, 32);
}

static void
test_spec_aead_frame(void **state)
{
	uint8_t root[32], plain[VECTORS_FRAME], body[VECTORS_FRAME], msgid[16];
	struct hdr h;
	size_t blen;

	(void)state;
	file_present();
	fkey("dirkey.root", root);
	assert_int_equal(fu64("aead.size"), VECTORS_FRAME);
	assert_int_equal(fu64("aead.dir"), 1);
	spec_open("aead.frame", root, 1, fu64("aead.seq"), plain, &h);
	assert_int_equal(h.type, 0x01);
	assert_int_equal(h.idx, 0);
	assert_int_equal(h.cnt, 1);
	assert_int_equal(fbytes("aead.msgid", msgid, sizeof(msgid)), 16);
	assert_memory_equal(h.msgid, msgid, 16);
	blen = fbytes("aead.body", body, sizeof(body));
	assert_int_equal(h.len, blen);
	assert_memory_equal(h.body, body, blen);
}

static void
test_spec_sealed_frame(void **state)
{
	uint8_t seed[32], pk[32], sk[32], fpk[32], fsk[32], plain[VECTORS_FRAME];
	uint8_t body[VECTORS_FRAME], msgid[16];
	struct hdr h;
	size_t blen;

	(void)state;
	file_present();
	fkey("seal.seed", seed);
	assert_int_equal(crypto_box_seed_keypair(pk, sk, seed), 0);
	fkey("seal.pk", fpk);
	fkey("seal.sk", fsk);
	assert_memory_equal(pk, fpk, 32);
	assert_memory_equal(sk, fsk, 32);
	spec_open_box("seal.frame", pk, sk, plain, &h);
	assert_int_equal(fbytes("seal.msgid", msgid, sizeof(msgid)), 16);
	assert_memory_equal(h.msgid, msgid, 16);
	blen = fbytes("seal.body", body, sizeof(body));
	assert_int_equal(h.len, blen);
	assert_memory_equal(h.body, body, blen);
}

static void
test_spec_multi(void **state)
{
	uint8_t root[32], plain[VECTORS_FRAME], msgid[16], body[4 * VECTORS_FRAME];
	uint8_t joined[4 * VECTORS_FRAME];
	const size_t cap = VECTORS_FRAME - 72;
	size_t blen, at = 0;
	char name[32];
	struct hdr h;

	(void)state;
	file_present();
	fkey("dirkey.root", root);
	assert_int_equal(fbytes("multi.msgid", msgid, sizeof(msgid)), 16);
	blen = fbytes("multi.body", body, sizeof(body));
	assert_true(blen > 2 * cap && blen <= 3 * cap);
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "multi.frame.%d", i);
		spec_open(name, root, 1, fu64("multi.seq") + (uint64_t)i, plain, &h);
		assert_int_equal(h.type, 0x01);
		assert_int_equal(h.idx, i);
		assert_int_equal(h.cnt, 3);
		assert_memory_equal(h.msgid, msgid, 16);
		/* Every fragment but the last is full. */
		assert_int_equal(h.len, i < 2 ? cap : blen - 2 * cap);
		memcpy(joined + at, h.body, h.len);
		at += h.len;
	}
	assert_int_equal(at, blen);
	assert_memory_equal(joined, body, blen);
}

/* topic(J, n) = b64u(first 16 bytes of H_J("veil-inbox-v2" || u64(n))). */
static void
test_spec_topics(void **state)
{
	static const uint64_t ns[] = { 0, 1, 490896 };
	uint8_t seed[32], h[32], be[8];
	char want[32], name[32];

	(void)state;
	file_present();
	fkey("topic.seed", seed);
	for (size_t i = 0; i < 3; i++) {
		be_put(be, ns[i], 8);
		hash3(h, seed, "veil-inbox-v2", 13, be, 8, NULL, 0);
		b64u(want, sizeof(want), h, 16);
		snprintf(name, sizeof(name), "topic.%llu", (unsigned long long)ns[i]);
		assert_string_equal(fget(name), want);
	}
}

static void
test_spec_identities(void **state)
{
	static const char *who[] = { "alice", "bob" };
	uint8_t pk[32], sk[32], base[32];
	char name[32];

	(void)state;
	file_present();
	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "%s.pk", who[i]);
		fkey(name, pk);
		snprintf(name, sizeof(name), "%s.sk", who[i]);
		fkey(name, sk);
		assert_int_equal(crypto_scalarmult_base(base, sk), 0);
		assert_memory_equal(base, pk, 32);
	}
}

static void
test_spec_card(void **state)
{
	const char *uri;
	uint8_t raw[VEIL_CARD_URI_MAX], h[32], cid[32], pk[32];
	const char *end = NULL;
	size_t len = 0, at = 0, cidlen, namelen, hintslen;
	const char *name, *hints;

	(void)state;
	file_present();
	uri = fget("card.uri");
	assert_int_equal(strncmp(uri, "veil:", 5), 0);
	assert_int_equal(sodium_base642bin(raw, sizeof(raw), uri + 5, strlen(uri + 5), NULL,
	    &len, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	assert_ptr_equal(end, uri + strlen(uri));
	assert_true(len > 4);
	crypto_generichash(h, 32, raw, len - 4, NULL, 0);
	assert_memory_equal(raw + len - 4, h, 4);
	len -= 4;

	assert_true(len >= 3);
	assert_int_equal(raw[at++], 2);			/* version */
	assert_int_equal(raw[at++], fu64("card.flags"));
	cidlen = raw[at++];
	assert_int_equal(fbytes("card.cid", cid, sizeof(cid)), cidlen);
	assert_true(at + cidlen + 32 + 8 + 1 <= len);
	assert_memory_equal(raw + at, cid, cidlen);
	at += cidlen;
	fkey("alice.pk", pk);
	assert_memory_equal(raw + at, pk, 32);
	at += 32;
	assert_int_equal(be64(raw + at), fu64("card.expires"));
	at += 8;
	namelen = raw[at++];
	name = fget("card.name");
	assert_int_equal(namelen, strlen(name));
	assert_true(at + namelen + 2 <= len);
	assert_memory_equal(raw + at, name, namelen);
	at += namelen;
	hintslen = be16(raw + at);
	at += 2;
	hints = fget("card.hints");
	assert_int_equal(hintslen, strlen(hints));
	assert_int_equal(at + hintslen, len);		/* no trailing bytes */
	assert_memory_equal(raw + at, hints, hintslen);
	assert_int_equal(fid("card.cid_text", cid), cidlen);
}

/* REQUEST body, T1 and the sealed frame Alice receives. */
static void
test_spec_request(void **state)
{
	uint8_t body[VEIL_AGREE_BODY_MAX], want[32], base[32], pka[32], ska[32], t1[32];
	uint8_t id[32], plain[VECTORS_FRAME];
	size_t blen, at = 0, n;
	struct hdr h;

	(void)state;
	file_present();
	blen = fbytes("agree.request_body", body, sizeof(body));
	assert_true(blen >= 1 + 4 * 32 + 16 + 1 + 10 + 32 + 2);
	assert_int_equal(body[at++], 2);			/* version */
	fkey("agree.s", want);
	assert_memory_equal(body + at, want, 32);
	at += 32;
	fkey("agree.k", want);
	assert_memory_equal(body + at, want, 32);
	at += 32;
	fkey("bob.pk", want);
	assert_memory_equal(body + at, want, 32);
	at += 32;
	fkey("agree.bob_eph_pk", want);
	assert_memory_equal(body + at, want, 32);
	fkey("agree.bob_eph_sk", base);
	assert_int_equal(crypto_scalarmult_base(base, base), 0);
	assert_memory_equal(base, want, 32);
	at += 32;
	assert_int_equal(be64(body + at), fu64("agree.t_b"));	/* t_B */
	at += 8;
	assert_int_equal(be32(body + at), fu64("agree.bob_inbox.epoch"));
	at += 4;
	assert_int_equal(be32(body + at), fu64("agree.bob_inbox.period"));
	at += 4;
	n = body[at++];					/* CID_A */
	assert_int_equal(fbytes("card.cid", id, sizeof(id)), n);
	assert_true(at + n < blen);
	assert_memory_equal(body + at, id, n);
	at += n;
	fkey("agree.bob_inbox.seed", want);		/* J_B */
	assert_memory_equal(body + at, want, 32);
	at += 32;
	n = body[at++];					/* name_B */
	assert_int_equal(at + n, blen);
	assert_memory_equal(body + at, "Bob", n);
	assert_int_equal(n, 3);

	fkey("alice.pk", pka);
	hash3(t1, NULL, "veil-agree-v2", 13, pka, 32, body, blen);
	fkey("agree.t1", want);
	assert_memory_equal(t1, want, 32);

	fkey("alice.sk", ska);
	spec_open_box("agree.request_frame", pka, ska, plain, &h);
	assert_int_equal(h.len, blen);
	assert_memory_equal(h.body, body, blen);
}

/* Epoch-0 keys, T2, HS and the ACCEPT frame. */
static void
test_spec_accept(void **state)
{
	uint8_t k[32], s[32], d0r[32], d0i[32], want[32], t1[32], t2[32], hs[32];
	uint8_t body[VEIL_AGREE_BODY_MAX], plain[VECTORS_FRAME];
	size_t blen;
	struct hdr h;

	(void)state;
	file_present();
	fkey("agree.k", k);
	kdf(d0r, k, 1, "veilag02");
	kdf(d0i, k, 2, "veilag02");
	fkey("agree.d0_r2i", want);
	assert_memory_equal(d0r, want, 32);
	fkey("agree.d0_i2r", want);
	assert_memory_equal(d0i, want, 32);
	kdf(want, d0r, 1, "veildir2");
	fkey("agree.d0_r2i.key", hs);
	assert_memory_equal(want, hs, 32);
	kdf(want, d0i, 1, "veildir2");
	fkey("agree.d0_i2r.key", hs);
	assert_memory_equal(want, hs, 32);

	/* E_A || HS || u32 L_A || u32 P_A || J_A */
	blen = fbytes("agree.accept_body", body, sizeof(body));
	assert_int_equal(blen, 104);
	assert_int_equal(be32(body + 64), fu64("agree.alice_inbox.epoch"));
	assert_int_equal(be32(body + 68), fu64("agree.alice_inbox.period"));
	fkey("agree.alice_inbox.seed", want);
	assert_memory_equal(body + 72, want, 32);

	/* T2 = H(T1 || E_A || u32 L_A || u32 P_A || J_A) */
	fkey("agree.t1", t1);
	hash3(t2, NULL, t1, 32, body, 32, body + 64, 40);
	fkey("agree.t2", want);
	assert_memory_equal(t2, want, 32);

	fkey("agree.s", s);
	hash3(hs, s, "veil-hs-v2", 10, t2, 32, NULL, 0);
	fkey("agree.hs", want);
	assert_memory_equal(hs, want, 32);
	assert_memory_equal(body + 32, hs, 32);

	/* under D0_r2i, direction 2, seq 0 */
	spec_open("agree.accept_frame", d0r, 2, 0, plain, &h);
	assert_int_equal(h.type, 0x11);
	assert_int_equal(h.cnt, 1);
	assert_int_equal(h.len, blen);
	assert_memory_equal(h.body, body, blen);
}

/* RK from Bob's side of the three DH terms, the chains, CONFIRM, SH. */
static void
test_spec_root(void **state)
{
	uint8_t k[32], s[32], esk[32], sk[32], pka[32], ea[32], dh[3][32], t2[32];
	uint8_t rk[32], di[32], dr[32], want[32], got[32], body[VEIL_AGREE_BODY_MAX];
	uint8_t plain[VECTORS_FRAME];
	crypto_generichash_state st;
	uint64_t tb = fu64("agree.t_b"), p;
	size_t blen;
	struct hdr h;

	(void)state;
	file_present();
	fkey("agree.k", k);
	fkey("agree.s", s);
	fkey("agree.bob_eph_sk", esk);
	fkey("bob.sk", sk);
	fkey("alice.pk", pka);
	fkey("agree.t2", t2);
	assert_int_equal(fbytes("agree.accept_body", body, sizeof(body)), 104);
	memcpy(ea, body, 32);
	/* ee = DH(e_B, E_A), es = DH(sk_B, E_A), se = DH(e_B, KP_A) */
	assert_int_equal(crypto_scalarmult(dh[0], esk, ea), 0);
	assert_int_equal(crypto_scalarmult(dh[1], sk, ea), 0);
	assert_int_equal(crypto_scalarmult(dh[2], esk, pka), 0);
	crypto_generichash_init(&st, k, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)"veil-root-v2", 12);
	for (int i = 0; i < 3; i++)
		crypto_generichash_update(&st, dh[i], 32);
	crypto_generichash_update(&st, t2, 32);
	crypto_generichash_final(&st, rk, 32);
	kdf(di, rk, 1, "veilpai2");
	kdf(dr, rk, 2, "veilpai2");

	/* i2r: Alice's key period (3600), anchored at floor(t_B / 3600), and
	 * not moved by the time of the CONFIRM. */
	p = fu64("agree.i2r.period");
	assert_int_equal(p, tb / fu64("agree.alice_inbox.period"));
	assert_int_equal(p, fu64("agree.confirm_time") / 3600);
	fkey("agree.i2r.root", want);
	assert_memory_equal(di, want, 32);
	kdf(got, di, 1, "veildir2");
	fkey("agree.i2r.key", want);
	assert_memory_equal(got, want, 32);
	kdf(got, di, 4, "veildir2");
	fkey("agree.i2r.bind", want);
	assert_memory_equal(got, want, 32);
	/* r2i: Bob's key period (600), anchored at floor(t_B / 600), one
	 * period on when Alice accepted. */
	p = fu64("agree.r2i.period");
	assert_int_equal(p, tb / fu64("agree.bob_inbox.period") + 1);
	assert_int_equal(p, fu64("agree.accept_time") / 600);
	spec_ratchet(got, dr, 1);
	fkey("agree.r2i.root", want);
	assert_memory_equal(got, want, 32);
	kdf(got, want, 1, "veildir2");
	fkey("agree.r2i.key", want);
	assert_memory_equal(got, want, 32);
	kdf(got, dr, 4, "veildir2");			/* B: of the first root */
	fkey("agree.r2i.bind", want);
	assert_memory_equal(got, want, 32);

	blen = fbytes("agree.confirm_body", body, sizeof(body));
	assert_int_equal(blen, 32);
	hash3(want, s, "veil-confirm-v2", 15, t2, 32, NULL, 0);
	assert_memory_equal(body, want, 32);
	assert_int_equal(fu64("agree.confirm_period"), fu64("agree.i2r.period"));
	spec_open("agree.confirm_frame", di, 1, 0, plain, &h);
	assert_int_equal(h.type, 0x12);
	assert_int_equal(h.len, 32);
	assert_memory_equal(h.body, want, 32);

	hash3(want, s, "veil-secret-v1", 14, NULL, 0, NULL, 0);
	fkey("agree.sh", got);
	assert_memory_equal(want, got, 32);
	sodium_memzero(dh, sizeof(dh));
}

static void
test_spec_fingerprint(void **state)
{
	uint8_t a[32], b[32], h[32];
	const uint8_t *lo, *hi;
	char fp[64], *p = fp;

	(void)state;
	file_present();
	fkey("alice.pk", a);
	fkey("bob.pk", b);
	lo = memcmp(a, b, 32) < 0 ? a : b;
	hi = lo == a ? b : a;
	hash3(h, NULL, "veil-fp-v1", 10, lo, 32, hi, 32);
	for (int i = 0; i < 6; i++) {
		uint64_t v = 0;

		for (int j = 0; j < 5; j++)
			v = v << 8 | h[5 * i + j];
		p += sprintf(p, "%s%05u", i ? " " : "", (unsigned)(v % 100000));
	}
	assert_string_equal(fp, fget("agree.fingerprint"));
}

static const char *
jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		fail_msg("field %s missing or not a string", key);
	return json_string_value(v);
}

static json_int_t
jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		fail_msg("field %s missing or not an integer", key);
	return json_integer_value(v);
}

/* The CCM fields, the ACK, and the re-keyed root from Alice's side. */
static void
test_spec_update(void **state)
{
	uint8_t pk[32], sh[32], esk[32], epk[32], ey[32], dh[32], bind[32], root[32];
	uint8_t want[32], ns[32], seed[32], seqbe[8];
	char b64[64], hex[65], text[64];
	json_error_t err;
	json_t *u, *a;
	uint64_t pa;

	(void)state;
	file_present();
	u = json_loads(fget("update.body"), JSON_REJECT_DUPLICATES, &err);
	if (u == NULL)
		fail_msg("update.body is not JSON: %s", err.text);
	assert_int_equal(json_object_size(u), 13);
	assert_string_equal(jstr(u, "Data"), "UpdateContact");
	fkey("agree.alice_inbox.seed", seed);
	b64u(b64, sizeof(b64), seed, 32);
	assert_string_equal(jstr(u, "OCID"), b64);
	fkey("update.new_inbox.seed", seed);
	b64u(b64, sizeof(b64), seed, 32);
	assert_string_equal(jstr(u, "NewCID"), b64);
	assert_int_equal(jint(u, "Epoch"), fu64("update.new_inbox.epoch"));
	assert_int_equal(jint(u, "Rekey"), fu64("update.new_inbox.period"));
	fkey("alice.pk", pk);
	b64u(b64, sizeof(b64), pk, 32);
	assert_string_equal(jstr(u, "PubKey"), b64);
	assert_string_equal(jstr(u, "CName"), "Alice");
	fkey("agree.sh", sh);
	tu_hex(hex, sh, 32);
	assert_string_equal(jstr(u, "Secret"), hex);
	assert_string_equal(jstr(u, "StegKey"), "0000");
	assert_string_equal(jstr(u, "Alg"), "X25519-XChaCha20Poly1305-BLAKE2b");
	assert_int_equal(jint(u, "Seq"), 1);
	fkey("update.eph_sk", esk);
	fkey("update.eph_pk", epk);
	assert_int_equal(crypto_scalarmult_base(want, esk), 0);
	assert_memory_equal(want, epk, 32);
	b64u(b64, sizeof(b64), epk, 32);
	assert_string_equal(jstr(u, "Eph"), b64);
	snprintf(text, sizeof(text), "%s", jstr(u, "NewSecret"));
	unb64u(ns, text);
	fkey("update.s", want);
	assert_memory_equal(ns, want, 32);
	json_decref(u);

	a = json_loads(fget("update.ack"), JSON_REJECT_DUPLICATES, &err);
	if (a == NULL)
		fail_msg("update.ack is not JSON: %s", err.text);
	assert_int_equal(json_object_size(a), 4);
	assert_string_equal(jstr(a, "Data"), "UpdateAck");
	assert_int_equal(jint(a, "Seq"), 1);
	/* Period p_a = floor(t_Y / Rekey) */
	pa = (uint64_t)jint(a, "Period");
	assert_int_equal(pa, fu64("update.time") / fu64("update.new_inbox.period"));
	assert_int_equal(pa, fu64("update.period"));
	snprintf(text, sizeof(text), "%s", jstr(a, "Eph"));
	json_decref(a);
	unb64u(ey, text);

	/* D' = H_B("veil-rekey-v2" || DH(e_X, E_Y) || u64(Seq)), B the binding
	 * key of Bob's transmit chain (i2r): the root of period p_a. */
	fkey("agree.i2r.bind", bind);
	assert_int_equal(crypto_scalarmult(dh, esk, ey), 0);
	be_put(seqbe, 1, 8);
	hash3(root, bind, "veil-rekey-v2", 13, dh, 32, seqbe, 8);
	fkey("update.root", want);
	assert_memory_equal(root, want, 32);
	kdf(want, root, 1, "veildir2");
	fkey("update.key", dh);
	assert_memory_equal(want, dh, 32);
	kdf(want, root, 4, "veildir2");
	fkey("update.bind", dh);
	assert_memory_equal(want, dh, 32);
	hash3(want, ns, "veil-secret-v1", 14, NULL, 0, NULL, 0);
	fkey("update.sh", dh);
	assert_memory_equal(want, dh, 32);
	/* Alice's own transmit chain is not touched by her UPDATE. */
	fkey("update.alice_tx_root", want);
	fkey("agree.r2i.root", dh);
	assert_memory_equal(want, dh, 32);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_matches_file),
		cmocka_unit_test(test_reproducible),
		cmocka_unit_test(test_spec_dirkey),
		cmocka_unit_test(test_spec_aead_frame),
		cmocka_unit_test(test_spec_sealed_frame),
		cmocka_unit_test(test_spec_multi),
		cmocka_unit_test(test_spec_topics),
		cmocka_unit_test(test_spec_identities),
		cmocka_unit_test(test_spec_card),
		cmocka_unit_test(test_spec_request),
		cmocka_unit_test(test_spec_accept),
		cmocka_unit_test(test_spec_root),
		cmocka_unit_test(test_spec_fingerprint),
		cmocka_unit_test(test_spec_update),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
