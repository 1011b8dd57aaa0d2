/* libveil frame: direction keys, tags and nonces, fixed-size frames and their fragmentation into messages. */
#include <string.h>

#include <sodium.h>

#include "frame.h"
#include "wire.h"

#define DIRKEY_CTX "veildir2"
#define DIRKEY_ID_KEY 1
#define DIRKEY_ID_NKEY 2
#define DIRKEY_ID_NEXT 3
#define TAG_HASH_BYTES 16	/* BLAKE2b-128, of which the tag is the first 8 */
#define FRAME_AD "veil-frame-v2"
#define FRAME_AD_LEN (sizeof(FRAME_AD) - 1)
#define FRAME_AD_MAX (FRAME_AD_LEN + 1 + 4)

/* Plaintext sizes: frame minus the AEAD or sealed-box overhead. */
#define PT_AEAD(fs) ((fs) - VEIL_AEAD_OVERHEAD)
#define PT_SEAL(fs) ((fs) - VEIL_SEAL_OVERHEAD)

_Static_assert(VEIL_TAG_BYTES + VEIL_NONCE_RANDOM == VEIL_NONCE_BYTES,
    "nonce = tag || random");

int
veil_dir_valid(uint8_t dir)
{
	return dir == VEIL_DIR_I2R || dir == VEIL_DIR_R2I;
}

int
veil_dirkey_from_root(struct veil_dirkey *k, const uint8_t root[VEIL_KEY_BYTES], uint8_t dir)
{
	uint8_t tmp[VEIL_KEY_BYTES];

	if (k == NULL)
		return VEIL_ERR_INVAL;
	if (root == NULL || !veil_dir_valid(dir)) {
		sodium_memzero(k, sizeof(*k));
		return VEIL_ERR_INVAL;
	}
	/* root may alias k->root: copy it first. */
	memcpy(tmp, root, sizeof(tmp));
	memcpy(k->root, tmp, sizeof(k->root));
	crypto_kdf_derive_from_key(k->key, sizeof(k->key), DIRKEY_ID_KEY,
	    DIRKEY_CTX, tmp);
	crypto_kdf_derive_from_key(k->nkey, sizeof(k->nkey), DIRKEY_ID_NKEY,
	    DIRKEY_CTX, tmp);
	k->dir = dir;
	sodium_memzero(tmp, sizeof(tmp));
	return VEIL_OK;
}

void
veil_dirkey_wipe(struct veil_dirkey *k)
{
	if (k != NULL)
		sodium_memzero(k, sizeof(*k));
}

void
veil_root_next(uint8_t next[VEIL_KEY_BYTES], const uint8_t root[VEIL_KEY_BYTES])
{
	uint8_t tmp[VEIL_KEY_BYTES];

	crypto_kdf_derive_from_key(tmp, sizeof(tmp), DIRKEY_ID_NEXT, DIRKEY_CTX,
	    root);
	memcpy(next, tmp, VEIL_KEY_BYTES);
	sodium_memzero(tmp, sizeof(tmp));
}

void
veil_dirkey_tag(const struct veil_dirkey *k, uint64_t seq, uint8_t tag[VEIL_TAG_BYTES])
{
	uint8_t m[8], h[TAG_HASH_BYTES];

	wire_put64(m, seq);
	crypto_generichash(h, sizeof(h), m, sizeof(m), k->nkey, sizeof(k->nkey));
	memcpy(tag, h, VEIL_TAG_BYTES);
	sodium_memzero(h, sizeof(h));
}

/* ad = "veil-frame-v2" || u8 dir || u32 frame_size; returns its length. */
static size_t
frame_ad(uint8_t ad[FRAME_AD_MAX], uint8_t dir, size_t frame_size)
{
	memcpy(ad, FRAME_AD, FRAME_AD_LEN);
	ad[FRAME_AD_LEN] = dir;
	ad[FRAME_AD_LEN + 1] = (uint8_t)(frame_size >> 24);
	ad[FRAME_AD_LEN + 2] = (uint8_t)(frame_size >> 16);
	ad[FRAME_AD_LEN + 3] = (uint8_t)(frame_size >> 8);
	ad[FRAME_AD_LEN + 4] = (uint8_t)frame_size;
	return FRAME_AD_MAX;
}

int
veil_frame_size_valid(size_t frame_size)
{
	return frame_size >= VEIL_FRAME_MIN && frame_size <= VEIL_FRAME_MAX;
}

size_t
veil_frame_capacity(size_t frame_size, int sealed)
{
	if (!veil_frame_size_valid(frame_size))
		return 0;
	return frame_size - (sealed ? VEIL_SEAL_OVERHEAD : VEIL_AEAD_OVERHEAD) -
	    VEIL_FRAME_HDR;
}

int
veil_type_valid(uint8_t type)
{
	switch (type) {
	case VEIL_T_TEXT:
	case VEIL_T_FILE:
	case VEIL_T_ACK:
	case VEIL_T_REQUEST:
	case VEIL_T_ACCEPT:
	case VEIL_T_CONFIRM:
	case VEIL_T_FAIL:
	case VEIL_T_UPDATE:
	case VEIL_T_UPDATE_ACK:
	case VEIL_T_UPDATE_DONE:
	case VEIL_T_RESET:
	case VEIL_T_RESET_ACK:
	case VEIL_T_COVER:
		return 1;
	}
	return 0;
}

int
veil_type_sealed(uint8_t type)
{
	return type == VEIL_T_REQUEST || type == VEIL_T_RESET ||
	    type == VEIL_T_RESET_ACK;
}

const char *
veil_type_name(uint8_t type)
{
	switch (type) {
	case VEIL_T_TEXT:
		return "text";
	case VEIL_T_FILE:
		return "file";
	case VEIL_T_ACK:
		return "ack";
	case VEIL_T_REQUEST:
		return "request";
	case VEIL_T_ACCEPT:
		return "accept";
	case VEIL_T_CONFIRM:
		return "confirm";
	case VEIL_T_FAIL:
		return "fail";
	case VEIL_T_UPDATE:
		return "update";
	case VEIL_T_UPDATE_ACK:
		return "update-ack";
	case VEIL_T_UPDATE_DONE:
		return "update-done";
	case VEIL_T_RESET:
		return "reset";
	case VEIL_T_RESET_ACK:
		return "reset-ack";
	case VEIL_T_COVER:
		return "cover";
	}
	return "unknown";
}

void
veil_frame_tag(const uint8_t *frame, uint8_t tag[VEIL_TAG_BYTES])
{
	memcpy(tag, frame, VEIL_TAG_BYTES);
}

void
veil_msgid_new(uint8_t msgid[VEIL_MSGID_BYTES])
{
	randombytes_buf(msgid, VEIL_MSGID_BYTES);
}

/* Checks what a sender controls; cap is the frame's body capacity. */
static int
hdr_check_out(const struct veil_frame_hdr *h, const uint8_t *body, size_t cap)
{
	if (h->flags != 0 || !veil_type_valid(h->type) || h->frag_cnt < 1 ||
	    h->frag_idx >= h->frag_cnt)
		return VEIL_ERR_INVAL;
	if (h->len > cap)
		return VEIL_ERR_TOOBIG;
	if (h->len > 0 && body == NULL)
		return VEIL_ERR_INVAL;
	return VEIL_OK;
}

/* Lays out the plaintext P (header, body, zero padding) in pt[0..plen). */
static void
pt_build(uint8_t *pt, size_t plen, const struct veil_frame_hdr *h,
    const uint8_t *body)
{
	pt[0] = h->type;
	pt[1] = h->flags;
	wire_put16(pt + 2, h->len);
	wire_put64(pt + 4, h->seq);
	memcpy(pt + 12, h->msgid, VEIL_MSGID_BYTES);
	wire_put16(pt + 28, h->frag_idx);
	wire_put16(pt + 30, h->frag_cnt);
	if (h->len > 0)
		memmove(pt + VEIL_FRAME_HDR, body, h->len);
	memset(pt + VEIL_FRAME_HDR + h->len, 0, plen - VEIL_FRAME_HDR - h->len);
}

/*
 * Parses and validates an authenticated plaintext.  Copies the whole body
 * area (body and its zero padding, cap bytes) so that the caller's buffer
 * is fully defined.
 */
static int
pt_parse(const uint8_t *pt, size_t plen, uint64_t seq,
    struct veil_frame_hdr *h, uint8_t *body)
{
	size_t cap = plen - VEIL_FRAME_HDR, i;
	uint8_t acc = 0;

	h->type = pt[0];
	h->flags = pt[1];
	h->len = wire_get16(pt + 2);
	h->seq = wire_get64(pt + 4);
	memcpy(h->msgid, pt + 12, VEIL_MSGID_BYTES);
	h->frag_idx = wire_get16(pt + 28);
	h->frag_cnt = wire_get16(pt + 30);

	if (h->seq != seq || h->flags != 0)
		return VEIL_ERR_FORMAT;
	if (!veil_type_valid(h->type))
		return VEIL_ERR_TYPE;
	if (h->len > cap || h->frag_cnt < 1 || h->frag_idx >= h->frag_cnt)
		return VEIL_ERR_FORMAT;
	/* No early exit: the time taken does not depend on where a
	 * non-zero byte is. */
	for (i = VEIL_FRAME_HDR + h->len; i < plen; i++)
		acc |= pt[i];
	if (acc != 0)
		return VEIL_ERR_PADDING;
	memcpy(body, pt + VEIL_FRAME_HDR, cap);
	return VEIL_OK;
}

int
veil_frame_seal(uint8_t *out, size_t frame_size, const struct veil_dirkey *k,
    const struct veil_frame_hdr *h, const uint8_t *body)
{
	uint8_t ad[FRAME_AD_MAX];
	unsigned long long clen;
	size_t plen, adlen;
	int rc;

	if (out == NULL || k == NULL || h == NULL ||
	    !veil_frame_size_valid(frame_size) || !veil_dir_valid(k->dir))
		return VEIL_ERR_INVAL;
	if ((rc = hdr_check_out(h, body, veil_frame_capacity(frame_size, 0))) < 0)
		return rc;
	plen = PT_AEAD(frame_size);
	adlen = frame_ad(ad, k->dir, frame_size);

	/* Sealed in place: P is built where its ciphertext goes (libsodium
	 * allows m == c), so no plaintext copy is left behind.  The nonce is
	 * the lookup tag and 16 fresh random bytes: unique even if this
	 * (key, seq) was used before by a restored copy of the state. */
	pt_build(out + VEIL_NONCE_BYTES, plen, h, body);
	veil_dirkey_tag(k, h->seq, out);
	randombytes_buf(out + VEIL_TAG_BYTES, VEIL_NONCE_RANDOM);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + VEIL_NONCE_BYTES,
	    &clen, out + VEIL_NONCE_BYTES, plen, ad, adlen, NULL, out, k->key);
	return VEIL_OK;
}

int
veil_frame_open(const uint8_t *in, size_t frame_size, const struct veil_dirkey *k,
    uint64_t seq, struct veil_frame_hdr *h, uint8_t *body)
{
	/* One frame's plaintext; at most 64 KiB, only plen bytes are used
	 * and wiped. */
	uint8_t pt[PT_AEAD(VEIL_FRAME_MAX)];
	uint8_t tag[VEIL_TAG_BYTES], ad[FRAME_AD_MAX];
	unsigned long long mlen;
	size_t plen, adlen;
	int rc;

	if (h != NULL)
		memset(h, 0, sizeof(*h));
	if (in == NULL || k == NULL || h == NULL || body == NULL ||
	    !veil_frame_size_valid(frame_size) || !veil_dir_valid(k->dir))
		return VEIL_ERR_INVAL;
	plen = PT_AEAD(frame_size);
	memset(body, 0, plen - VEIL_FRAME_HDR);

	veil_dirkey_tag(k, seq, tag);
	rc = sodium_memcmp(tag, in, VEIL_TAG_BYTES);
	sodium_memzero(tag, sizeof(tag));
	if (rc != 0)
		return VEIL_ERR_DECRYPT;
	adlen = frame_ad(ad, k->dir, frame_size);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &mlen, NULL,
	    in + VEIL_NONCE_BYTES, frame_size - VEIL_NONCE_BYTES, ad, adlen,
	    in, k->key) != 0 || mlen != plen) {
		sodium_memzero(pt, plen);
		return VEIL_ERR_DECRYPT;
	}
	rc = pt_parse(pt, plen, seq, h, body);
	sodium_memzero(pt, plen);
	if (rc < 0) {
		memset(h, 0, sizeof(*h));
		memset(body, 0, plen - VEIL_FRAME_HDR);
	}
	return rc;
}

int
veil_frame_seal_box(uint8_t *out, size_t frame_size, const uint8_t pk[VEIL_KEY_BYTES],
    const struct veil_frame_hdr *h, const uint8_t *body)
{
	size_t plen;
	int rc;

	/* One frame of a sealed type, nothing else: a sealed frame comes
	 * from an anonymous sender, who must not make the receiver reserve
	 * reassembly memory for many fragments. */
	if (out == NULL || pk == NULL || h == NULL ||
	    !veil_frame_size_valid(frame_size) || h->seq != 0 ||
	    !veil_type_sealed(h->type) || h->frag_cnt != 1)
		return VEIL_ERR_INVAL;
	if ((rc = hdr_check_out(h, body, veil_frame_capacity(frame_size, 1))) < 0)
		return rc;
	plen = PT_SEAL(frame_size);

	/* In place as well: the box's ciphertext starts SEALBYTES after
	 * the output, exactly where P is built. */
	pt_build(out + VEIL_SEAL_OVERHEAD, plen, h, body);
	if (crypto_box_seal(out, out + VEIL_SEAL_OVERHEAD, plen, pk) != 0) {
		sodium_memzero(out, frame_size);
		return VEIL_ERR_CRYPTO;
	}
	return VEIL_OK;
}

int
veil_frame_open_box(const uint8_t *in, size_t frame_size, const uint8_t pk[VEIL_KEY_BYTES],
    const uint8_t sk[VEIL_KEY_BYTES], struct veil_frame_hdr *h, uint8_t *body)
{
	uint8_t pt[PT_SEAL(VEIL_FRAME_MAX)];
	size_t plen;
	int rc;

	if (h != NULL)
		memset(h, 0, sizeof(*h));
	if (in == NULL || pk == NULL || sk == NULL || h == NULL ||
	    body == NULL || !veil_frame_size_valid(frame_size))
		return VEIL_ERR_INVAL;
	plen = PT_SEAL(frame_size);
	memset(body, 0, plen - VEIL_FRAME_HDR);

	if (crypto_box_seal_open(pt, in, frame_size, pk, sk) != 0) {
		sodium_memzero(pt, plen);
		return VEIL_ERR_DECRYPT;
	}
	rc = pt_parse(pt, plen, 0, h, body);
	sodium_memzero(pt, plen);
	if (rc == VEIL_OK && !veil_type_sealed(h->type))
		rc = VEIL_ERR_TYPE;
	else if (rc == VEIL_OK && h->frag_cnt != 1)
		rc = VEIL_ERR_FORMAT;
	if (rc < 0) {
		memset(h, 0, sizeof(*h));
		memset(body, 0, plen - VEIL_FRAME_HDR);
	}
	return rc;
}

int
veil_message_frames(size_t len, size_t frame_size, int sealed)
{
	size_t cap, n;

	if (!veil_frame_size_valid(frame_size))
		return VEIL_ERR_INVAL;
	if (len > VEIL_MESSAGE_MAX)
		return VEIL_ERR_TOOBIG;
	cap = veil_frame_capacity(frame_size, sealed);
	n = len == 0 ? 1 : (len + cap - 1) / cap;
	/* Cannot trigger with the current limits (4 MiB / 176 < 65536),
	 * but frag_cnt is a u16 on the wire. */
	if (n > UINT16_MAX)
		return VEIL_ERR_TOOBIG;
	return (int)n;
}

/* Shared by both message sealers: validates, then seals frame by frame. */
static int
message_seal(uint8_t *out, size_t outlen, size_t frame_size,
    const struct veil_dirkey *k, uint64_t *seq, const uint8_t *pk,
    uint8_t type, const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body,
    size_t len)
{
	struct veil_frame_hdr h;
	size_t cap, off, i;
	int n, rc;

	if (out == NULL || msgid == NULL || (len > 0 && body == NULL))
		return VEIL_ERR_INVAL;
	if (!veil_type_valid(type))
		return VEIL_ERR_INVAL;
	if ((n = veil_message_frames(len, frame_size, pk != NULL)) < 0)
		return n;
	if (outlen / frame_size < (size_t)n)
		return VEIL_ERR_INVAL;
	if (k != NULL && *seq > UINT64_MAX - (uint64_t)n)
		return VEIL_ERR_INVAL;
	cap = veil_frame_capacity(frame_size, pk != NULL);

	memset(&h, 0, sizeof(h));
	h.type = type;
	memcpy(h.msgid, msgid, VEIL_MSGID_BYTES);
	h.frag_cnt = (uint16_t)n;
	for (i = 0, off = 0; i < (size_t)n; i++, off += cap) {
		h.frag_idx = (uint16_t)i;
		h.len = (uint16_t)(len - off < cap ? len - off : cap);
		if (pk != NULL)
			rc = veil_frame_seal_box(out + i * frame_size,
			    frame_size, pk, &h, len ? body + off : NULL);
		else {
			h.seq = *seq + i;
			rc = veil_frame_seal(out + i * frame_size, frame_size,
			    k, &h, len ? body + off : NULL);
		}
		if (rc < 0) {
			sodium_memzero(out, (size_t)n * frame_size);
			return rc;
		}
	}
	if (k != NULL)
		*seq += (uint64_t)n;
	return n;
}

int
veil_message_seal(uint8_t *out, size_t outlen, size_t frame_size,
    const struct veil_dirkey *k, uint64_t *seq, uint8_t type,
    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body, size_t len)
{
	if (k == NULL || seq == NULL)
		return VEIL_ERR_INVAL;
	return message_seal(out, outlen, frame_size, k, seq, NULL, type, msgid,
	    body, len);
}

int
veil_message_seal_box(uint8_t *out, size_t outlen, size_t frame_size,
    const uint8_t pk[VEIL_KEY_BYTES], uint8_t type,
    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body, size_t len)
{
	int n;

	if (pk == NULL || !veil_type_sealed(type))
		return VEIL_ERR_INVAL;
	if ((n = veil_message_frames(len, frame_size, 1)) < 0)
		return n;
	if (n != 1)
		return VEIL_ERR_TOOBIG;
	return message_seal(out, outlen, frame_size, NULL, NULL, pk, type,
	    msgid, body, len);
}
