/* libFuzzer harness: frame opening (AEAD and sealed box) and multi-frame reassembly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "veil.h"
#include "world.h"

/*
 * Input layout: byte 0 selects the mode (low 2 bits) and the frame size
 * (bit 2: 512 or 1024); bytes 1..8 are the sequence number (big-endian);
 * the rest is the mode's payload, cut or zero-padded to what it needs.
 *   0: the payload is a whole AEAD frame, opened with the fixed key.
 *   1: the payload is a whole sealed-box frame, opened with the fixed pair.
 *   2: the payload is a frame's plaintext (header, body, padding),
 *      encrypted here with the right tag, a nonce from the (reseeded)
 *      RNG and the right associated data (protocol.md 2), so that
 *      veil_frame_open's parser, not Poly1305, decides; same for 3 with a
 *      sealed box.
 * Mode 0 and 2 inputs whose first byte has bit 3 set go on to the
 * reassembly driver below with the rest of the input after the frame.
 */
#define FRAME_AD "veil-frame-v2"
#define FRAME_AD_LEN (sizeof(FRAME_AD) - 1)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct world w;
static volatile uint8_t sink;
static uint8_t pattern[VEIL_FRAME_MAX];	/* fragment bodies for reassembly */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (world_build(&w) != 0)
		abort();
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)i;
	return 0;
}

static void
fill(uint8_t *dst, size_t n, const uint8_t *src, size_t len)
{
	memset(dst, 0, n);
	memcpy(dst, src, len < n ? len : n);
}

/* Checks what a successful open promises (frame.h). */
static void
check_open(const struct veil_frame_hdr *h, size_t cap, uint64_t seq)
{
	if (h->len > cap || h->frag_cnt < 1 || h->frag_idx >= h->frag_cnt ||
	    h->flags != 0 || !veil_type_valid(h->type) || h->seq != seq)
		abort();
}

/* ... and a sealed one: a single frame of a sealed type (REQUEST, RESET
 * or RESET-ACK: frame.h). */
static void
check_open_box(const struct veil_frame_hdr *h, size_t cap)
{
	check_open(h, cap, 0);
	if ((h->type != VEIL_T_REQUEST && h->type != VEIL_T_RESET &&
	    h->type != VEIL_T_RESET_ACK) || h->frag_cnt != 1 ||
	    h->frag_idx != 0)
		abort();
}

/* ad = "veil-frame-v2" || u8 dir || u32 frame_size */
static size_t
frame_ad(uint8_t ad[FRAME_AD_LEN + 5], uint8_t dir, size_t fs)
{
	memcpy(ad, FRAME_AD, FRAME_AD_LEN);
	ad[FRAME_AD_LEN] = dir;
	ad[FRAME_AD_LEN + 1] = (uint8_t)(fs >> 24);
	ad[FRAME_AD_LEN + 2] = (uint8_t)(fs >> 16);
	ad[FRAME_AD_LEN + 3] = (uint8_t)(fs >> 8);
	ad[FRAME_AD_LEN + 4] = (uint8_t)fs;
	return FRAME_AD_LEN + 5;
}

/*
 * Reassembly: each record of 10 bytes is one fragment header
 * (peer, type, len16, idx16, cnt16, msgid byte, time step); the body is a
 * pattern buffer of VEIL_FRAME_MAX bytes, so a len beyond cap is readable
 * and only reasm's own checks stand between it and its buffers.
 */
static void
reasm_drive(const uint8_t *p, size_t len, size_t cap)
{
	struct veil_reasm *r;
	struct veil_frame_hdr h;
	uint8_t *out;
	size_t outlen;
	uint64_t now = 1000;
	int rc;

	/* Small bounds so that eviction is reached. */
	if ((r = veil_reasm_new(4 * cap, 3)) == NULL)
		return;
	for (; len >= 10; p += 10, len -= 10) {
		memset(&h, 0, sizeof(h));
		h.type = p[1];
		h.len = (uint16_t)((p[2] << 8) | p[3]);
		h.frag_idx = (uint16_t)((p[4] << 8) | p[5]);
		h.frag_cnt = (uint16_t)((p[6] << 8) | p[7]);
		memset(h.msgid, p[8], sizeof(h.msgid));
		now += p[9] & 0x0f;
		switch (p[9] >> 4) {
		case 0xe:
			veil_reasm_expire(r, now, 4);
			continue;
		case 0xf:
			veil_reasm_forget(r, p[0] & 3);
			continue;
		}
		out = NULL;
		outlen = 0;
		rc = veil_reasm_add(r, p[0] & 3, &h, pattern, cap, now, &out,
		    &outlen);
		if (rc == 1) {
			if (out == NULL && outlen != 0)
				abort();
			/* Touch the last byte: ASan checks the length. */
			if (outlen > 0)
				sink ^= out[outlen - 1];
			free(out);
		} else if (out != NULL)
			abort();
		if (veil_reasm_bytes(r) > 4 * cap || veil_reasm_pending(r) > 3)
			abort();
	}
	veil_reasm_free(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[1024], pt[1024], body[1024];
	uint8_t ad[FRAME_AD_LEN + 5];
	struct veil_frame_hdr h;
	struct veil_dirkey other;
	unsigned long long clen;
	size_t fs, cap, plen, used;
	uint64_t seq = 0;
	int mode, rc;

	if (size < 9)
		return 0;
	world_reseed();
	mode = data[0] & 3;
	fs = (data[0] & 4) ? 1024 : 512;
	for (int i = 1; i <= 8; i++)
		seq = (seq << 8) | data[i];
	data += 9;
	size -= 9;

	switch (mode) {
	case 0:
		fill(frame, fs, data, size);
		used = fs;
		cap = veil_frame_capacity(fs, 0);
		if ((rc = veil_frame_open(frame, fs, &w.dk, seq, &h, body)) == 0)
			check_open(&h, cap, seq);
		break;
	case 1:
		fill(frame, fs, data, size);
		used = fs;
		cap = veil_frame_capacity(fs, 1);
		if ((rc = veil_frame_open_box(frame, fs, w.box_pk, w.box_sk,
		    &h, body)) == 0)
			check_open_box(&h, cap);
		break;
	case 2:
		plen = fs - VEIL_AEAD_OVERHEAD;
		fill(pt, plen, data, size);
		used = plen;
		cap = veil_frame_capacity(fs, 0);
		veil_dirkey_tag(&w.dk, seq, frame);
		randombytes_buf(frame + VEIL_TAG_BYTES, VEIL_NONCE_RANDOM);
		crypto_aead_xchacha20poly1305_ietf_encrypt(frame + VEIL_NONCE_BYTES,
		    &clen, pt, plen, ad, frame_ad(ad, w.dk.dir, fs), NULL, frame,
		    w.dk.key);
		if ((rc = veil_frame_open(frame, fs, &w.dk, seq, &h, body)) == 0)
			check_open(&h, cap, seq);
		/* The next sequence number must not open the same frame, nor
		 * the same key material read as the other direction. */
		if (veil_frame_open(frame, fs, &w.dk, seq + 1, &h, body) == 0)
			abort();
		other = w.dk;
		other.dir = (uint8_t)(3 - w.dk.dir);
		if (veil_frame_open(frame, fs, &other, seq, &h, body) == 0)
			abort();
		veil_dirkey_wipe(&other);
		break;
	default:
		plen = fs - VEIL_SEAL_OVERHEAD;
		fill(pt, plen, data, size);
		used = plen;
		cap = veil_frame_capacity(fs, 1);
		if (crypto_box_seal(frame, pt, plen, w.box_pk) != 0)
			abort();
		if ((rc = veil_frame_open_box(frame, fs, w.box_pk, w.box_sk,
		    &h, body)) == 0)
			check_open_box(&h, cap);
		break;
	}
	(void)rc;
	if ((data[-9] & 8) && size > used)
		reasm_drive(data + used, size - used, cap);
	return 0;
}
