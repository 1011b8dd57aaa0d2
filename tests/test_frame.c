/* Tests for libproto frame: direction keys and tags, frame seal/open (AEAD and sealed box), fragmentation, the transmit ratchet. */
#define _GNU_SOURCE	/* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "veil.h"
#include "testutil.h"

static const uint8_t all_types[] = {
	VEIL_T_TEXT, VEIL_T_FILE, VEIL_T_ACK, VEIL_T_REQUEST, VEIL_T_ACCEPT,
	VEIL_T_CONFIRM, VEIL_T_FAIL, VEIL_T_UPDATE, VEIL_T_UPDATE_ACK,
	VEIL_T_UPDATE_DONE, VEIL_T_RESET, VEIL_T_RESET_ACK,
	VEIL_T_COVER
};
#define NTYPES (sizeof(all_types) / sizeof(all_types[0]))

static const size_t sizes[] = { 512, 1024, 4096 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

#define GUARD 32

static void
mkkey(struct veil_dirkey *k)
{
	uint8_t root[VEIL_KEY_BYTES];

	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_dirkey_from_root(k, root, VEIL_DIR_I2R), VEIL_OK);
}

/* protocol.md 2.1: first 8 bytes of BLAKE2b-128(key = nkey, u64(seq)). */
static void
spec_tag(uint8_t tag[8], const uint8_t nkey[32], uint64_t seq)
{
	uint8_t be[8], h[16];
	int i;

	for (i = 7; i >= 0; i--, seq >>= 8)
		be[i] = (uint8_t)seq;
	crypto_generichash(h, sizeof(h), be, sizeof(be), nkey, 32);
	memcpy(tag, h, 8);
}

/* ad = "veil-frame-v2" || u8 dir || u32 frame_size. */
static size_t
spec_ad(uint8_t ad[18], uint8_t dir, uint32_t fs)
{
	memcpy(ad, "veil-frame-v2", 13);
	ad[13] = dir;
	ad[14] = (uint8_t)(fs >> 24);
	ad[15] = (uint8_t)(fs >> 16);
	ad[16] = (uint8_t)(fs >> 8);
	ad[17] = (uint8_t)fs;
	return 18;
}

static void
mkhdr(struct veil_frame_hdr *h, uint8_t type, uint16_t len, uint64_t seq)
{
	memset(h, 0, sizeof(*h));
	h->type = type;
	h->len = len;
	h->seq = seq;
	randombytes_buf(h->msgid, sizeof(h->msgid));
	h->frag_idx = 0;
	h->frag_cnt = 1;
}

/* The plaintext layout of protocol.md §2, written independently of frame.c. */
static void
craft_pt(uint8_t *pt, size_t plen, uint8_t type, uint8_t flags, uint16_t len,
    uint64_t seq, const uint8_t *msgid, uint16_t idx, uint16_t cnt,
    const uint8_t *body, size_t bodylen)
{
	int i;

	memset(pt, 0, plen);
	pt[0] = type;
	pt[1] = flags;
	pt[2] = (uint8_t)(len >> 8);
	pt[3] = (uint8_t)len;
	for (i = 0; i < 8; i++)
		pt[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
	memcpy(pt + 12, msgid, 16);
	pt[28] = (uint8_t)(idx >> 8);
	pt[29] = (uint8_t)idx;
	pt[30] = (uint8_t)(cnt >> 8);
	pt[31] = (uint8_t)cnt;
	memcpy(pt + 32, body, bodylen);
}

/* Encrypts a crafted plaintext the way protocol.md says, with libsodium
 * only; dir and the AD's frame size may differ from the key's and the
 * frame's, to check that the receiver binds them. */
static void
craft_aead_ad(uint8_t *out, size_t fs, const struct veil_dirkey *k, uint64_t seq,
    const uint8_t *pt, uint8_t dir, uint32_t ad_fs)
{
	unsigned long long clen;
	uint8_t ad[18];

	spec_tag(out, k->nkey, seq);
	randombytes_buf(out + 8, 16);
	assert_int_equal(crypto_aead_xchacha20poly1305_ietf_encrypt(out + 24,
	    &clen, pt, fs - 40, ad, spec_ad(ad, dir, ad_fs), NULL, out,
	    k->key), 0);
	assert_int_equal(clen, fs - 24);
}

static void
craft_aead(uint8_t *out, size_t fs, const struct veil_dirkey *k, uint64_t seq,
    const uint8_t *pt)
{
	craft_aead_ad(out, fs, k, seq, pt, k->dir, (uint32_t)fs);
}

static int
hdr_is_zero(const struct veil_frame_hdr *h)
{
	static const struct veil_frame_hdr z;

	return memcmp(h, &z, sizeof(z)) == 0;
}

static void
test_capacity(void **state)
{
	(void)state;
	assert_int_equal(veil_frame_capacity(1024, 0), 952);
	assert_int_equal(veil_frame_capacity(1024, 1), 944);
	assert_int_equal(veil_frame_capacity(512, 0), 440);
	assert_int_equal(veil_frame_capacity(512, 1), 432);
	assert_int_equal(veil_frame_capacity(256, 0), 0);
	assert_int_equal(veil_frame_capacity(65536, 0), 65464);
	assert_int_equal(veil_frame_capacity(255, 0), 0);
	assert_true(veil_frame_size_valid(512));
	assert_false(veil_frame_size_valid(511));
	assert_false(veil_frame_size_valid(256));
	assert_true(veil_frame_size_valid(65536));
	assert_false(veil_frame_size_valid(255));
	assert_false(veil_frame_size_valid(65537));
	assert_false(veil_frame_size_valid(0));
}

/* key, nkey, the tags and the ratchet recomputed from protocol.md 2.1. */
static void
test_dirkey_derivation(void **state)
{
	struct veil_dirkey k;
	uint8_t root[32], key[32], nkey[32], next[32], want[32], tag[8], wtag[8];

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_dirkey_from_root(&k, root, VEIL_DIR_R2I), VEIL_OK);
	crypto_kdf_derive_from_key(key, 32, 1, "veildir2", root);
	crypto_kdf_derive_from_key(nkey, 32, 2, "veildir2", root);
	crypto_kdf_derive_from_key(next, 32, 3, "veildir2", root);
	assert_memory_equal(k.root, root, 32);
	assert_memory_equal(k.key, key, 32);
	assert_memory_equal(k.nkey, nkey, 32);
	assert_int_equal(k.dir, VEIL_DIR_R2I);
	assert_memory_not_equal(k.key, k.nkey, 32);

	spec_tag(wtag, nkey, 0x0102030405060708ull);
	veil_dirkey_tag(&k, 0x0102030405060708ull, tag);
	assert_memory_equal(tag, wtag, 8);
	veil_dirkey_tag(&k, 0x0807060504030201ull, tag);
	assert_memory_not_equal(tag, wtag, 8);
	/* Not the first bytes of a 24-byte hash (version 1's nonce). */
	crypto_generichash(want, 24, (const uint8_t *)"\1\2\3\4\5\6\7\10", 8,
	    nkey, 32);
	assert_memory_not_equal(want, wtag, 8);

	veil_root_next(want, root);
	assert_memory_equal(want, next, 32);
	veil_root_next(want, want);		/* in place */
	crypto_kdf_derive_from_key(key, 32, 3, "veildir2", next);
	assert_memory_equal(want, key, 32);

	/* root may be the struct's own field */
	assert_int_equal(veil_dirkey_from_root(&k, k.root, VEIL_DIR_R2I), VEIL_OK);
	assert_memory_equal(k.nkey, nkey, 32);

	/* only the two directions exist */
	assert_int_equal(veil_dirkey_from_root(&k, root, 0), VEIL_ERR_INVAL);
	assert_int_equal(veil_dirkey_from_root(&k, root, 3), VEIL_ERR_INVAL);
	assert_true(sodium_is_zero((const uint8_t *)&k, sizeof(k)));
	assert_true(veil_dir_valid(1) && veil_dir_valid(2) && !veil_dir_valid(0));

	assert_int_equal(veil_dirkey_from_root(&k, root, VEIL_DIR_I2R), VEIL_OK);
	veil_dirkey_wipe(&k);
	assert_true(sodium_is_zero((const uint8_t *)&k, sizeof(k)));
}

/* Every type, three sizes: exactly frame_size bytes, round trip, layout. */
static void
test_seal_sizes_roundtrip(void **state)
{
	struct veil_dirkey k;
	struct veil_frame_hdr h, g;
	uint8_t *out, *body, *got, *pt, tag[8], ad[18];
	unsigned long long mlen;
	size_t si, ti, fs, cap, len;

	(void)state;
	mkkey(&k);
	out = malloc(4096 + GUARD);
	body = malloc(4096);
	got = malloc(4096);
	pt = malloc(4096);
	for (si = 0; si < NSIZES; si++) {
		fs = sizes[si];
		cap = veil_frame_capacity(fs, 0);
		for (ti = 0; ti < NTYPES; ti++) {
			len = (ti * 97) % (cap + 1);
			if (ti == 0)
				len = cap;
			randombytes_buf(body, len);
			mkhdr(&h, all_types[ti], (uint16_t)len, 1000 + ti);
			memset(out, 0xa5, fs + GUARD);
			assert_int_equal(veil_frame_seal(out, fs, &k, &h, body),
			    VEIL_OK);
			for (size_t i = fs; i < fs + GUARD; i++)
				assert_int_equal(out[i], 0xa5);
			spec_tag(tag, k.nkey, h.seq);
			assert_memory_equal(out, tag, 8);
			veil_frame_tag(out, tag);
			assert_memory_equal(tag, out, 8);

			memset(got, 0xee, cap);
			assert_int_equal(veil_frame_open(out, fs, &k, h.seq, &g,
			    got), VEIL_OK);
			assert_memory_equal(&g, &h, sizeof(h));
			if (len > 0)
				assert_memory_equal(got, body, len);
			for (size_t i = len; i < cap; i++)
				assert_int_equal(got[i], 0);

			/* Independent decryption: the plaintext layout. */
			assert_int_equal(
			    crypto_aead_xchacha20poly1305_ietf_decrypt(pt,
			    &mlen, NULL, out + 24, fs - 24, ad,
			    spec_ad(ad, VEIL_DIR_I2R, (uint32_t)fs), out, k.key), 0);
			assert_int_equal(mlen, fs - 40);
			assert_int_equal(pt[0], all_types[ti]);
			assert_int_equal(pt[1], 0);
			assert_int_equal((pt[2] << 8) | pt[3], len);
			assert_int_equal(pt[10], (uint8_t)(h.seq >> 8));
			assert_int_equal(pt[11], (uint8_t)h.seq);
			assert_memory_equal(pt + 12, h.msgid, 16);
			assert_int_equal((pt[28] << 8) | pt[29], 0);
			assert_int_equal((pt[30] << 8) | pt[31], 1);
			if (len > 0)
				assert_memory_equal(pt + 32, body, len);
		}
	}
	free(out);
	free(body);
	free(got);
	free(pt);
}

static void
test_seal_box_sizes_roundtrip(void **state)
{
	struct veil_frame_hdr h, g;
	uint8_t pk[32], sk[32], pk2[32], sk2[32];
	uint8_t *out, *body, *got;
	size_t si, ti, fs, cap, len;

	(void)state;
	crypto_box_keypair(pk, sk);
	crypto_box_keypair(pk2, sk2);
	out = malloc(4096 + GUARD);
	body = malloc(4096);
	got = malloc(4096);
	for (si = 0; si < NSIZES; si++) {
		fs = sizes[si];
		cap = veil_frame_capacity(fs, 1);
		for (ti = 0; ti < 8; ti++) {
			len = ti == 0 ? cap : (ti * 53) % (cap + 1);
			randombytes_buf(body, len);
			mkhdr(&h, VEIL_T_REQUEST, (uint16_t)len, 0);
			memset(out, 0x5a, fs + GUARD);
			assert_int_equal(veil_frame_seal_box(out, fs, pk, &h,
			    body), VEIL_OK);
			for (size_t i = fs; i < fs + GUARD; i++)
				assert_int_equal(out[i], 0x5a);
			assert_int_equal(veil_frame_open_box(out, fs, pk, sk,
			    &g, got), VEIL_OK);
			assert_memory_equal(&g, &h, sizeof(h));
			if (len > 0)
				assert_memory_equal(got, body, len);
			for (size_t i = len; i < cap; i++)
				assert_int_equal(got[i], 0);
			/* wrong recipient */
			assert_int_equal(veil_frame_open_box(out, fs, pk2, sk2,
			    &g, got), VEIL_ERR_DECRYPT);
			assert_true(hdr_is_zero(&g));
		}
		/* Only a REQUEST, a RESET or a RESET-ACK travels sealed, and
		 * only as one frame. */
		for (ti = 0; ti < NTYPES; ti++) {
			if (veil_type_sealed(all_types[ti]))
				continue;
			mkhdr(&h, all_types[ti], 1, 0);
			assert_int_equal(veil_frame_seal_box(out, fs, pk, &h,
			    body), VEIL_ERR_INVAL);
		}
		mkhdr(&h, VEIL_T_REQUEST, 1, 0);
		h.frag_cnt = 2;
		assert_int_equal(veil_frame_seal_box(out, fs, pk, &h, body),
		    VEIL_ERR_INVAL);
	}
	/* seq must be 0 in sealed frames */
	mkhdr(&h, VEIL_T_REQUEST, 1, 1);
	assert_int_equal(veil_frame_seal_box(out, 1024, pk, &h, body),
	    VEIL_ERR_INVAL);
	/* tampering */
	mkhdr(&h, VEIL_T_REQUEST, 10, 0);
	assert_int_equal(veil_frame_seal_box(out, 512, pk, &h, body), VEIL_OK);
	for (size_t i = 0; i < 512; i++) {
		out[i] ^= 0x01;
		assert_int_equal(veil_frame_open_box(out, 512, pk, sk, &g, got),
		    VEIL_ERR_DECRYPT);
		out[i] ^= 0x01;
	}
	assert_int_equal(veil_frame_open_box(out, 512, pk, sk, &g, got),
	    VEIL_OK);
	assert_int_equal(veil_frame_open_box(out, 511, pk, sk, &g, got),
	    VEIL_ERR_INVAL);
	free(out);
	free(body);
	free(got);
}

/* Any flipped bit (nonce, ciphertext, tag) fails authentication. */
static void
test_tamper(void **state)
{
	struct veil_dirkey k;
	struct veil_frame_hdr h, g;
	uint8_t out[1024], body[1024], got[1024];
	size_t fs, i;

	(void)state;
	mkkey(&k);
	randombytes_buf(body, sizeof(body));
	for (fs = 512; fs <= 1024; fs += 512) {
		mkhdr(&h, VEIL_T_TEXT, 100, 42);
		assert_int_equal(veil_frame_seal(out, fs, &k, &h, body), VEIL_OK);
		for (i = 0; i < fs; i++) {
			uint8_t bit = (uint8_t)(1u << (i % 8));

			out[i] ^= bit;
			assert_int_equal(veil_frame_open(out, fs, &k, 42, &g,
			    got), VEIL_ERR_DECRYPT);
			assert_true(hdr_is_zero(&g));
			out[i] ^= bit;
		}
		assert_int_equal(veil_frame_open(out, fs, &k, 42, &g, got),
		    VEIL_OK);
	}
}

static void
test_wrong_size_key_seq(void **state)
{
	struct veil_dirkey k, k2;
	struct veil_frame_hdr h, g;
	uint8_t out[1024], body[1024], got[1024];

	(void)state;
	mkkey(&k);
	mkkey(&k2);
	randombytes_buf(body, sizeof(body));

	mkhdr(&h, VEIL_T_TEXT, 50, 7);
	assert_int_equal(veil_frame_seal(out, 511, &k, &h, body),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_frame_seal(out, 65537, &k, &h, body),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, body), VEIL_OK);
	/* truncated below the minimum: refused before any crypto */
	assert_int_equal(veil_frame_open(out, 511, &k, 7, &g, got),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_frame_open(out, 0, &k, 7, &g, got),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_frame_open(out, 512, &k, 7, &g, got), VEIL_OK);

	assert_int_equal(veil_frame_seal(out, 1024, &k, &h, body), VEIL_OK);
	/* a valid size that is not the frame's: authentication fails */
	assert_int_equal(veil_frame_open(out, 1023, &k, 7, &g, got),
	    VEIL_ERR_DECRYPT);
	assert_int_equal(veil_frame_open(out, 1024, &k2, 7, &g, got),
	    VEIL_ERR_DECRYPT);
	assert_int_equal(veil_frame_open(out, 1024, &k, 6, &g, got),
	    VEIL_ERR_DECRYPT);
	assert_int_equal(veil_frame_open(out, 1024, &k, 8, &g, got),
	    VEIL_ERR_DECRYPT);
	assert_true(hdr_is_zero(&g));
	/* the same key material read as the other direction */
	k2 = k;
	k2.dir = VEIL_DIR_R2I;
	assert_int_equal(veil_frame_open(out, 1024, &k2, 7, &g, got),
	    VEIL_ERR_DECRYPT);
	k2.dir = 0;
	assert_int_equal(veil_frame_open(out, 1024, &k2, 7, &g, got),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_frame_seal(out, 1024, &k2, &h, body),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_frame_open(out, 1024, &k, 7, &g, got), VEIL_OK);
}

/*
 * The associated data binds the direction and the frame size: a frame
 * whose AD names the other direction, or another size, does not open
 * under the right key and tag, though everything else is right.
 */
static void
test_ad_binding(void **state)
{
	struct veil_dirkey k;
	struct veil_frame_hdr g;
	uint8_t pt[1024], out[1024], got[1024], msgid[16], body[32];
	const size_t fs = 1024;

	(void)state;
	mkkey(&k);
	randombytes_buf(msgid, sizeof(msgid));
	randombytes_buf(body, sizeof(body));
	craft_pt(pt, fs - 40, VEIL_T_TEXT, 0, 32, 5, msgid, 0, 1, body, 32);

	craft_aead_ad(out, fs, &k, 5, pt, VEIL_DIR_I2R, (uint32_t)fs);
	assert_int_equal(veil_frame_open(out, fs, &k, 5, &g, got), VEIL_OK);
	craft_aead_ad(out, fs, &k, 5, pt, VEIL_DIR_R2I, (uint32_t)fs);
	assert_int_equal(veil_frame_open(out, fs, &k, 5, &g, got),
	    VEIL_ERR_DECRYPT);
	craft_aead_ad(out, fs, &k, 5, pt, VEIL_DIR_I2R, (uint32_t)fs + 1);
	assert_int_equal(veil_frame_open(out, fs, &k, 5, &g, got),
	    VEIL_ERR_DECRYPT);
	craft_aead_ad(out, fs, &k, 5, pt, VEIL_DIR_I2R, 512);
	assert_int_equal(veil_frame_open(out, fs, &k, 5, &g, got),
	    VEIL_ERR_DECRYPT);
	assert_true(hdr_is_zero(&g));
	/* the version 1 AD (a constant) is not accepted either */
	{
		unsigned long long clen;

		spec_tag(out, k.nkey, 5);
		randombytes_buf(out + 8, 16);
		assert_int_equal(crypto_aead_xchacha20poly1305_ietf_encrypt(out +
		    24, &clen, pt, fs - 40, (const uint8_t *)"veil-frame-v1", 13,
		    NULL, out, k.key), 0);
		assert_int_equal(veil_frame_open(out, fs, &k, 5, &g, got),
		    VEIL_ERR_DECRYPT);
	}
}

/*
 * Rollback (reviews/security.md H2): a restored copy of the transmit state
 * seals again with the same key and seq.  The nonces must still differ, so
 * no keystream or Poly1305 key is reused.  Both frames open (the receiver's
 * window, not the nonce, stops the second).
 */
static void
test_rollback_nonces(void **state)
{
	struct veil_txchain tx, saved;
	struct veil_frame_hdr g;
	uint8_t root[32], f1[512], f2[512], got[512], msgid[16];
	static const char m1[] = "attack at dawn", m2[] = "retreat at noon";

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_txchain_init(&tx, root, VEIL_DIR_I2R, 3600, 10),
	    VEIL_OK);
	tx.seq = 41;
	saved = tx;				/* the backup */
	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(f1, sizeof(f1), 512, &tx.k, &tx.seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)m1, sizeof(m1)), 1);
	assert_int_equal(tx.seq, 42);
	tx = saved;				/* restored */
	assert_int_equal(veil_message_seal(f2, sizeof(f2), 512, &tx.k, &tx.seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)m2, sizeof(m2)), 1);
	/* Same tag (same key and seq), different nonce. */
	assert_memory_equal(f1, f2, 8);
	assert_memory_not_equal(f1, f2, 24);
	assert_memory_not_equal(f1 + 8, f2 + 8, 16);
	assert_int_equal(veil_frame_open(f1, 512, &tx.k, 41, &g, got), VEIL_OK);
	assert_memory_equal(got, m1, sizeof(m1));
	assert_int_equal(veil_frame_open(f2, 512, &tx.k, 41, &g, got), VEIL_OK);
	assert_memory_equal(got, m2, sizeof(m2));
	/* And the same plaintext twice is two different ciphertexts. */
	tx = saved;
	assert_int_equal(veil_message_seal(f2, sizeof(f2), 512, &tx.k, &tx.seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)m1, sizeof(m1)), 1);
	assert_memory_not_equal(f1 + 8, f2 + 8, 512 - 8);
	veil_txchain_wipe(&tx);
	veil_txchain_wipe(&saved);
}

/* Frames the library would never build, encrypted by the test itself. */
static void
test_crafted_headers(void **state)
{
	struct veil_dirkey k;
	struct veil_frame_hdr g;
	uint8_t pt[1024], out[1024], got[1024], msgid[16], body[64];
	const size_t fs = 1024, plen = 1024 - 40, cap = 952;
	static const uint8_t bad_types[] = { 0x00, 0x04, 0x0f, 0x14, 0x23,
	    0x31, 0xff };
	size_t i;

	(void)state;
	mkkey(&k);
	randombytes_buf(msgid, sizeof(msgid));
	randombytes_buf(body, sizeof(body));

	/* control: the crafted layout is accepted as is */
	craft_pt(pt, plen, VEIL_T_FILE, 0, 64, 9, msgid, 2, 3, body, 64);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got), VEIL_OK);
	assert_int_equal(g.type, VEIL_T_FILE);
	assert_int_equal(g.len, 64);
	assert_int_equal(g.seq, 9);
	assert_int_equal(g.frag_idx, 2);
	assert_int_equal(g.frag_cnt, 3);
	assert_memory_equal(g.msgid, msgid, 16);
	assert_memory_equal(got, body, 64);

	/* header seq differs from the nonce's seq */
	craft_pt(pt, plen, VEIL_T_TEXT, 0, 64, 10, msgid, 0, 1, body, 64);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
	    VEIL_ERR_FORMAT);
	assert_true(hdr_is_zero(&g));

	for (i = 1; i < 256; i <<= 1) {
		craft_pt(pt, plen, VEIL_T_TEXT, (uint8_t)i, 64, 9, msgid, 0, 1,
		    body, 64);
		craft_aead(out, fs, &k, 9, pt);
		assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
		    VEIL_ERR_FORMAT);
	}
	for (i = 0; i < sizeof(bad_types); i++) {
		craft_pt(pt, plen, bad_types[i], 0, 64, 9, msgid, 0, 1, body,
		    64);
		craft_aead(out, fs, &k, 9, pt);
		assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
		    VEIL_ERR_TYPE);
	}
	/* len: cap is fine, cap + 1 and 0xffff are not */
	craft_pt(pt, plen, VEIL_T_TEXT, 0, (uint16_t)cap, 9, msgid, 0, 1, body,
	    0);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got), VEIL_OK);
	craft_pt(pt, plen, VEIL_T_TEXT, 0, (uint16_t)(cap + 1), 9, msgid, 0, 1,
	    body, 0);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
	    VEIL_ERR_FORMAT);
	craft_pt(pt, plen, VEIL_T_TEXT, 0, 0xffff, 9, msgid, 0, 1, body, 0);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
	    VEIL_ERR_FORMAT);
	/* fragment fields */
	craft_pt(pt, plen, VEIL_T_TEXT, 0, 64, 9, msgid, 0, 0, body, 64);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
	    VEIL_ERR_FORMAT);
	craft_pt(pt, plen, VEIL_T_TEXT, 0, 64, 9, msgid, 3, 3, body, 64);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
	    VEIL_ERR_FORMAT);
	craft_pt(pt, plen, VEIL_T_TEXT, 0, 64, 9, msgid, 0xffff, 0xffff, body,
	    64);
	craft_aead(out, fs, &k, 9, pt);
	assert_int_equal(veil_frame_open(out, fs, &k, 9, &g, got),
	    VEIL_ERR_FORMAT);

	/* non-zero padding: first byte after the body, middle, last */
	{
		const size_t pos[] = { 32 + 64, 500, plen - 1 };

		for (i = 0; i < 3; i++) {
			craft_pt(pt, plen, VEIL_T_TEXT, 0, 64, 9, msgid, 0, 1,
			    body, 64);
			pt[pos[i]] = 0x80;
			craft_aead(out, fs, &k, 9, pt);
			assert_int_equal(veil_frame_open(out, fs, &k, 9, &g,
			    got), VEIL_ERR_PADDING);
			assert_true(hdr_is_zero(&g));
		}
	}
}

/* Same for sealed frames: seq must be 0, padding checked. */
static void
test_crafted_box(void **state)
{
	struct veil_frame_hdr g;
	uint8_t pk[32], sk[32], pt[1024], out[1024], got[1024], msgid[16];
	uint8_t body[16];
	const size_t fs = 1024, plen = 1024 - 48;

	(void)state;
	crypto_box_keypair(pk, sk);
	randombytes_buf(msgid, sizeof(msgid));
	randombytes_buf(body, sizeof(body));

	craft_pt(pt, plen, VEIL_T_REQUEST, 0, 16, 0, msgid, 0, 1, body, 16);
	assert_int_equal(crypto_box_seal(out, pt, plen, pk), 0);
	assert_int_equal(veil_frame_open_box(out, fs, pk, sk, &g, got), VEIL_OK);
	assert_memory_equal(got, body, 16);

	craft_pt(pt, plen, VEIL_T_REQUEST, 0, 16, 1, msgid, 0, 1, body, 16);
	assert_int_equal(crypto_box_seal(out, pt, plen, pk), 0);
	assert_int_equal(veil_frame_open_box(out, fs, pk, sk, &g, got),
	    VEIL_ERR_FORMAT);

	craft_pt(pt, plen, VEIL_T_REQUEST, 0, 16, 0, msgid, 0, 1, body, 16);
	pt[plen - 1] = 1;
	assert_int_equal(crypto_box_seal(out, pt, plen, pk), 0);
	assert_int_equal(veil_frame_open_box(out, fs, pk, sk, &g, got),
	    VEIL_ERR_PADDING);

	craft_pt(pt, plen, 0x7f, 0, 16, 0, msgid, 0, 1, body, 16);
	assert_int_equal(crypto_box_seal(out, pt, plen, pk), 0);
	assert_int_equal(veil_frame_open_box(out, fs, pk, sk, &g, got),
	    VEIL_ERR_TYPE);

	/* A valid type that is not a REQUEST: refused after decryption. */
	craft_pt(pt, plen, VEIL_T_TEXT, 0, 16, 0, msgid, 0, 1, body, 16);
	assert_int_equal(crypto_box_seal(out, pt, plen, pk), 0);
	assert_int_equal(veil_frame_open_box(out, fs, pk, sk, &g, got),
	    VEIL_ERR_TYPE);
	assert_true(hdr_is_zero(&g));

	/* A REQUEST fragment of many (reviews/security.md M1): refused, so
	 * an anonymous sender reserves no reassembly memory. */
	craft_pt(pt, plen, VEIL_T_REQUEST, 0, 16, 0, msgid, 0, 4400, body, 16);
	assert_int_equal(crypto_box_seal(out, pt, plen, pk), 0);
	assert_int_equal(veil_frame_open_box(out, fs, pk, sk, &g, got),
	    VEIL_ERR_FORMAT);
	assert_true(hdr_is_zero(&g));
	assert_true(sodium_is_zero(got, plen - 32));
}

static void
test_seal_rejects(void **state)
{
	struct veil_dirkey k;
	struct veil_frame_hdr h;
	uint8_t out[512], body[512];

	(void)state;
	mkkey(&k);
	memset(body, 1, sizeof(body));
	mkhdr(&h, VEIL_T_TEXT, 441, 0);		/* capacity at 512 is 440 */
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, body),
	    VEIL_ERR_TOOBIG);
	mkhdr(&h, 0x05, 1, 0);
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, body),
	    VEIL_ERR_INVAL);
	mkhdr(&h, VEIL_T_TEXT, 1, 0);
	h.flags = 1;
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, body),
	    VEIL_ERR_INVAL);
	mkhdr(&h, VEIL_T_TEXT, 1, 0);
	h.frag_idx = 1;
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, body),
	    VEIL_ERR_INVAL);
	h.frag_idx = 0;
	h.frag_cnt = 0;
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, body),
	    VEIL_ERR_INVAL);
	h.frag_cnt = 1;
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, NULL),
	    VEIL_ERR_INVAL);
	h.len = 0;
	assert_int_equal(veil_frame_seal(out, 512, &k, &h, NULL), VEIL_OK);
}

static void
test_types(void **state)
{
	size_t i, j;
	unsigned v, nvalid = 0;

	(void)state;
	for (i = 0; i < NTYPES; i++) {
		assert_true(veil_type_valid(all_types[i]));
		assert_string_not_equal(veil_type_name(all_types[i]),
		    "unknown");
		for (j = 0; j < i; j++)
			assert_string_not_equal(veil_type_name(all_types[i]),
			    veil_type_name(all_types[j]));
	}
	for (v = 0; v < 256; v++)
		nvalid += veil_type_valid((uint8_t)v) ? 1 : 0;
	assert_int_equal(nvalid, NTYPES);
	assert_false(veil_type_valid(0));
	assert_string_equal(veil_type_name(0), "unknown");
}

static void
test_message_frames(void **state)
{
	size_t cap = veil_frame_capacity(1024, 0);
	size_t scap = veil_frame_capacity(1024, 1);

	(void)state;
	assert_int_equal(veil_message_frames(0, 1024, 0), 1);
	assert_int_equal(veil_message_frames(1, 1024, 0), 1);
	assert_int_equal(veil_message_frames(cap, 1024, 0), 1);
	assert_int_equal(veil_message_frames(cap + 1, 1024, 0), 2);
	assert_int_equal(veil_message_frames(5 * cap, 1024, 0), 5);
	assert_int_equal(veil_message_frames(5 * cap + 1, 1024, 0), 6);
	assert_int_equal(veil_message_frames(scap, 1024, 1), 1);
	assert_int_equal(veil_message_frames(scap + 1, 1024, 1), 2);
	assert_int_equal(veil_message_frames(cap, 1024, 1), 2);
	assert_int_equal(veil_message_frames(VEIL_MESSAGE_MAX, 1024, 0),
	    (int)((VEIL_MESSAGE_MAX + cap - 1) / cap));
	assert_int_equal(veil_message_frames(VEIL_MESSAGE_MAX, 512, 1),
	    (int)((VEIL_MESSAGE_MAX + 431) / 432));
	assert_true(veil_message_frames(VEIL_MESSAGE_MAX + 1, 1024, 0) < 0);
	assert_true(veil_message_frames(10, 100, 0) < 0);
}

/*
 * Seals len bytes as a message, opens every frame and checks the split:
 * same type and msgid, consecutive seqs, full fragments but the last.
 */
static void
check_message(size_t fs, size_t len, int sealed, int want_frames)
{
	struct veil_dirkey k;
	struct veil_frame_hdr g;
	uint8_t pk[32], sk[32], msgid[16];
	uint8_t *body, *out, *got, *joined;
	size_t cap = veil_frame_capacity(fs, sealed), off = 0;
	uint64_t seq = 77;
	int n, i;

	mkkey(&k);
	crypto_box_keypair(pk, sk);
	veil_msgid_new(msgid);
	body = malloc(len + 1);
	joined = malloc(len + 1);
	out = malloc((size_t)want_frames * fs);
	got = malloc(cap);
	randombytes_buf(body, len);

	/* one frame short of room: refused, seq untouched */
	if (sealed)
		n = veil_message_seal_box(out, (size_t)want_frames * fs - 1,
		    fs, pk, VEIL_T_REQUEST, msgid, body, len);
	else
		n = veil_message_seal(out, (size_t)want_frames * fs - 1, fs,
		    &k, &seq, VEIL_T_FILE, msgid, body, len);
	assert_true(n < 0);
	assert_int_equal(seq, 77);

	if (sealed)
		n = veil_message_seal_box(out, (size_t)want_frames * fs, fs,
		    pk, VEIL_T_REQUEST, msgid, body, len);
	else
		n = veil_message_seal(out, (size_t)want_frames * fs, fs, &k,
		    &seq, VEIL_T_FILE, msgid, body, len);
	assert_int_equal(n, want_frames);
	assert_int_equal(veil_message_frames(len, fs, sealed), want_frames);
	if (!sealed)
		assert_int_equal(seq, 77 + (uint64_t)n);
	for (i = 0; i < n; i++) {
		if (sealed)
			assert_int_equal(veil_frame_open_box(out + i * fs, fs,
			    pk, sk, &g, got), VEIL_OK);
		else
			assert_int_equal(veil_frame_open(out + i * fs, fs, &k,
			    77 + (uint64_t)i, &g, got), VEIL_OK);
		assert_int_equal(g.type, sealed ? VEIL_T_REQUEST : VEIL_T_FILE);
		assert_memory_equal(g.msgid, msgid, 16);
		assert_int_equal(g.frag_idx, i);
		assert_int_equal(g.frag_cnt, n);
		if (i < n - 1)
			assert_int_equal(g.len, cap);
		else
			assert_int_equal(g.len, len - off);
		assert_true(off + g.len <= len);
		memcpy(joined + off, got, g.len);
		off += g.len;
	}
	assert_int_equal(off, len);
	if (len > 0)
		assert_memory_equal(joined, body, len);
	free(body);
	free(joined);
	free(out);
	free(got);
}

static void
test_message_split(void **state)
{
	size_t cap = veil_frame_capacity(1024, 0);
	size_t scap = veil_frame_capacity(512, 1);

	(void)state;
	check_message(1024, 0, 0, 1);
	check_message(1024, 1, 0, 1);
	check_message(1024, cap, 0, 1);
	check_message(1024, cap + 1, 0, 2);
	check_message(1024, 3 * cap, 0, 3);
	check_message(1024, 3 * cap - 1, 0, 3);
	check_message(512, 0, 1, 1);
	check_message(512, scap, 1, 1);
	check_message(1024, veil_frame_capacity(1024, 1), 1, 1);
}

static void
test_message_rejects(void **state)
{
	struct veil_dirkey k;
	uint8_t msgid[16], out[2048], body[16] = { 0 };
	uint64_t seq = UINT64_MAX - 1;

	(void)state;
	mkkey(&k);
	veil_msgid_new(msgid);
	/* the seqs would wrap */
	assert_true(veil_message_seal(out, sizeof(out), 1024, &k, &seq,
	    VEIL_T_TEXT, msgid, body, 953) < 0);
	assert_int_equal(seq, UINT64_MAX - 1);
	seq = 0;
	assert_true(veil_message_seal(out, sizeof(out), 1024, &k, &seq, 0x55,
	    msgid, body, 1) < 0);
	assert_true(veil_message_seal(out, sizeof(out), 1024, &k, &seq,
	    VEIL_T_TEXT, msgid, NULL, 1) < 0);
	assert_true(veil_message_seal(out, sizeof(out), 1024, &k, &seq,
	    VEIL_T_TEXT, msgid, body, VEIL_MESSAGE_MAX + 1) ==
	    VEIL_ERR_TOOBIG);
	assert_int_equal(seq, 0);

	/* Sealed: a REQUEST in one frame, nothing else. */
	{
		uint8_t pk[32], sk[32], big[1024];

		crypto_box_keypair(pk, sk);
		memset(big, 7, sizeof(big));
		assert_int_equal(veil_message_seal_box(out, sizeof(out), 1024, pk,
		    VEIL_T_TEXT, msgid, body, 1), VEIL_ERR_INVAL);
		assert_int_equal(veil_message_seal_box(out, sizeof(out), 1024, pk,
		    VEIL_T_REQUEST, msgid, big, veil_frame_capacity(1024, 1) + 1),
		    VEIL_ERR_TOOBIG);
		assert_int_equal(veil_message_seal_box(out, sizeof(out), 512, pk,
		    VEIL_T_REQUEST, msgid, big, veil_frame_capacity(512, 1)), 1);
	}
}

/* ---- the transmit chain: ratchet with time (protocol.md 2.1) ---------- */

static void
test_tx_ratchet(void **state)
{
	struct veil_txchain c;
	uint8_t root[32], want[32], bind[32];
	const uint32_t plen = 600;

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_txchain_init(&c, root, VEIL_DIR_R2I, plen, 100),
	    VEIL_OK);
	crypto_kdf_derive_from_key(bind, 32, 4, "veildir2", root);
	assert_memory_equal(c.bind, bind, 32);
	assert_int_equal(c.period, 100);
	assert_int_equal(c.k.dir, VEIL_DIR_R2I);
	c.seq = 9;

	/* Within the period, or before it: nothing moves. */
	assert_int_equal(veil_txchain_advance(&c, 100 * plen), 0);
	assert_int_equal(veil_txchain_advance(&c, 101 * plen - 1), 0);
	assert_int_equal(veil_txchain_advance(&c, 0), 0);
	assert_int_equal(c.seq, 9);
	assert_memory_equal(c.k.root, root, 32);

	/* One period on: D_101 = KDF(D_100, 3), seq restarts at 0, and no
	 * byte of the chain holds period 100's root or keys any more. */
	{
		struct veil_dirkey k100 = c.k;

		assert_int_equal(veil_txchain_advance(&c, 101 * plen), 1);
		assert_null(memmem(&c, sizeof(c), k100.root, 32));
		assert_null(memmem(&c, sizeof(c), k100.key, 32));
		assert_null(memmem(&c, sizeof(c), k100.nkey, 32));
		veil_dirkey_wipe(&k100);
	}
	crypto_kdf_derive_from_key(want, 32, 3, "veildir2", root);
	assert_memory_equal(c.k.root, want, 32);
	assert_int_equal(c.period, 101);
	assert_int_equal(c.seq, 0);
	crypto_kdf_derive_from_key(root, 32, 1, "veildir2", want);
	assert_memory_equal(c.k.key, root, 32);
	/* the binding key stays for the chain's life */
	assert_memory_equal(c.bind, bind, 32);

	/* Five on at once: five ratchet steps. */
	c.seq = 3;
	assert_int_equal(veil_txchain_advance(&c, 106 * plen + 17), 1);
	for (int i = 0; i < 5; i++)
		crypto_kdf_derive_from_key(want, 32, 3, "veildir2", want);
	assert_memory_equal(c.k.root, want, 32);
	assert_int_equal(c.period, 106);
	assert_int_equal(c.seq, 0);

	/* Never backwards: a clock that went back keeps the later period. */
	c.seq = 5;
	assert_int_equal(veil_txchain_advance(&c, 101 * plen), 0);
	assert_int_equal(c.period, 106);
	assert_int_equal(c.seq, 5);
	assert_memory_equal(c.k.root, want, 32);

	/* Not live, bad parameters. */
	veil_txchain_wipe(&c);
	assert_true(sodium_is_zero((const uint8_t *)&c, sizeof(c)));
	assert_int_equal(veil_txchain_advance(&c, 1000000), VEIL_ERR_STATE);
	assert_int_equal(veil_txchain_init(&c, root, 0, plen, 1), VEIL_ERR_INVAL);
	assert_int_equal(veil_txchain_init(&c, root, 1, 0, 1), VEIL_ERR_INVAL);
	assert_int_equal(veil_txchain_init(&c, root, 1, VEIL_PERIOD_MAX + 1, 1),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_txchain_init(&c, root, 1, 7, UINT64_MAX / 7 + 1),
	    VEIL_ERR_INVAL);
	assert_int_equal(veil_txchain_init(&c, root, 1, 7, UINT64_MAX / 7),
	    VEIL_OK);
	assert_int_equal(veil_txchain_advance(&c, UINT64_MAX), 0);
}

/* A frame sealed in one period does not open under the next period's key. */
static void
test_tx_periods_differ(void **state)
{
	struct veil_txchain c;
	struct veil_dirkey old;
	struct veil_frame_hdr g;
	uint8_t root[32], f[512], got[512], msgid[16];

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_txchain_init(&c, root, VEIL_DIR_I2R, 60, 0), VEIL_OK);
	veil_msgid_new(msgid);
	assert_int_equal(veil_message_seal(f, sizeof(f), 512, &c.k, &c.seq,
	    VEIL_T_TEXT, msgid, (const uint8_t *)"x", 1), 1);
	old = c.k;
	assert_int_equal(veil_txchain_advance(&c, 60), 1);
	assert_int_equal(veil_frame_open(f, 512, &c.k, 0, &g, got),
	    VEIL_ERR_DECRYPT);
	assert_int_equal(veil_frame_open(f, 512, &old, 0, &g, got), VEIL_OK);
	veil_dirkey_wipe(&old);
	veil_txchain_wipe(&c);
}

/* At most VEIL_RATCHET_MAX_STEPS per call, with its own error. */
static void
test_tx_step_bound(void **state)
{
	struct veil_txchain c, d;
	uint8_t root[32];
	const uint64_t max = VEIL_RATCHET_MAX_STEPS;

	(void)state;
	randombytes_buf(root, sizeof(root));
	assert_int_equal(veil_txchain_init(&c, root, VEIL_DIR_I2R, 1, 0), VEIL_OK);
	d = c;
	/* Exactly the bound: one call. */
	assert_int_equal(veil_txchain_advance(&d, max), 1);
	assert_int_equal(d.period, max);
	/* One more: the bound, then the error; the chain is consistent
	 * (the same as d) and the next call finishes. */
	c.seq = 4;
	assert_int_equal(veil_txchain_advance(&c, max + 1), VEIL_ERR_RATCHET);
	assert_int_equal(c.period, max);
	assert_int_equal(c.seq, 0);
	assert_memory_equal(c.k.root, d.k.root, 32);
	assert_int_equal(veil_txchain_advance(&c, max + 1), 1);
	assert_int_equal(c.period, max + 1);
	/* A clock near the end of time: bounded work per call. */
	assert_int_equal(veil_txchain_advance(&c, UINT64_MAX), VEIL_ERR_RATCHET);
	assert_int_equal(c.period, 2 * max + 1);
	veil_txchain_wipe(&c);
	veil_txchain_wipe(&d);
}

static void
test_msgid_new(void **state)
{
	uint8_t a[16], b[16], z[16] = { 0 };

	(void)state;
	veil_msgid_new(a);
	veil_msgid_new(b);
	assert_memory_not_equal(a, b, 16);
	assert_memory_not_equal(a, z, 16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_dirkey_derivation),
		cmocka_unit_test(test_seal_sizes_roundtrip),
		cmocka_unit_test(test_seal_box_sizes_roundtrip),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_wrong_size_key_seq),
		cmocka_unit_test(test_ad_binding),
		cmocka_unit_test(test_rollback_nonces),
		cmocka_unit_test(test_crafted_headers),
		cmocka_unit_test(test_crafted_box),
		cmocka_unit_test(test_seal_rejects),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_message_frames),
		cmocka_unit_test(test_message_split),
		cmocka_unit_test(test_message_rejects),
		cmocka_unit_test(test_msgid_new),
		cmocka_unit_test(test_tx_ratchet),
		cmocka_unit_test(test_tx_periods_differ),
		cmocka_unit_test(test_tx_step_bound),
	};

	tu_deterministic_rng("test_frame");
	if (veil_init() != VEIL_OK)
		return 1;
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
