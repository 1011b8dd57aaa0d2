/* libveil frame: fixed-size frames, direction keys, nonces, multi-frame messages. */
#ifndef VEIL_FRAME_H
#define VEIL_FRAME_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VEIL_FRAME_MIN 512	/* a REQUEST (at most 275 bytes) fits one sealed frame */
#define VEIL_FRAME_MAX 65536
#define VEIL_FRAME_DEFAULT 1024
#define VEIL_FRAME_HDR 32	/* inner header, inside the encryption */
#define VEIL_AEAD_OVERHEAD 40	/* 24-byte nonce (tag || random) + 16-byte Poly1305 tag */
#define VEIL_SEAL_OVERHEAD 48	/* crypto_box_SEALBYTES */
#define VEIL_NONCE_BYTES 24
#define VEIL_TAG_BYTES 8	/* leading nonce bytes used to find the sender */
#define VEIL_NONCE_RANDOM 16	/* the fresh random rest of every nonce */
#define VEIL_MESSAGE_MAX (4u << 20) /* largest body of one message */

enum veil_type {
	VEIL_T_TEXT = 0x01,
	VEIL_T_FILE = 0x02,
	VEIL_T_ACK = 0x03,	  /* end-to-end delivery ACK: body = n * msgid */
	VEIL_T_REQUEST = 0x10,	  /* agreement step 1 (sealed box) */
	VEIL_T_ACCEPT = 0x11,	  /* agreement step 2 */
	VEIL_T_CONFIRM = 0x12,	  /* agreement step 3 */
	VEIL_T_FAIL = 0x13,	  /* agreement step 3, mismatch */
	VEIL_T_UPDATE = 0x20,	  /* contact update (CCM) */
	VEIL_T_UPDATE_ACK = 0x21,
	VEIL_T_UPDATE_DONE = 0x22, /* contact update step 3: switch to the new key */
	VEIL_T_RESET = 0x24,	  /* contact reset after a restore (sealed box) */
	VEIL_T_RESET_ACK = 0x25,  /* its answer (sealed box) */
	VEIL_T_COVER = 0x30	  /* dummy, dropped after authentication */
};
int veil_type_valid(uint8_t type);
/* The types a sealed frame may carry: REQUEST, RESET, RESET-ACK. */
int veil_type_sealed(uint8_t type);
const char *veil_type_name(uint8_t type);

struct veil_frame_hdr {
	uint8_t type;
	uint8_t flags;		/* reserved, 0 */
	uint16_t len;		/* body bytes in this frame */
	uint64_t seq;		/* per-direction sequence number; 0 in sealed frames */
	uint8_t msgid[VEIL_MSGID_BYTES];
	uint16_t frag_idx;	/* 0 .. frag_cnt-1 */
	uint16_t frag_cnt;	/* >= 1 */
};

/*
 * Directions of a pair (protocol.md 2): 1 for frames from the initiator of
 * the agreement to the responder, 2 for the other way.  Every key knows
 * its direction, and every frame binds it into its associated data.
 */
enum veil_dir { VEIL_DIR_I2R = 1, VEIL_DIR_R2I = 2 };
int veil_dir_valid(uint8_t dir);

/* The keys of one key period of one direction, derived from its root D_p. */
struct veil_dirkey {
	uint8_t root[VEIL_KEY_BYTES];	/* D_p */
	uint8_t key[VEIL_KEY_BYTES];	/* KDF(D_p, 1, "veildir2"): XChaCha20-Poly1305 */
	uint8_t nkey[VEIL_KEY_BYTES];	/* KDF(D_p, 2, "veildir2"): the lookup tags */
	uint8_t dir;			/* enum veil_dir */
};
/* key and nkey from root (which may be k->root).  INVAL (k zeroed) unless
 * dir is valid. */
int veil_dirkey_from_root(struct veil_dirkey *k, const uint8_t root[VEIL_KEY_BYTES], uint8_t dir);
void veil_dirkey_wipe(struct veil_dirkey *k);
/* tag(seq) = first 8 bytes of BLAKE2b-128(key = nkey, msg = u64(seq)). */
void veil_dirkey_tag(const struct veil_dirkey *k, uint64_t seq, uint8_t tag[VEIL_TAG_BYTES]);
/* The ratchet: next = D_(p+1) = KDF(D_p, 3, "veildir2"); next may be root. */
void veil_root_next(uint8_t next[VEIL_KEY_BYTES], const uint8_t root[VEIL_KEY_BYTES]);

/* Body bytes one frame carries: frame_size - overhead - VEIL_FRAME_HDR. */
size_t veil_frame_capacity(size_t frame_size, int sealed);
int veil_frame_size_valid(size_t frame_size);

/*
 * One AEAD frame: tag(h->seq) || 16 fresh random bytes || ciphertext, with
 * ad = "veil-frame-v2" || u8 k->dir || u32 frame_size.  The random part
 * keeps nonces unique even when the caller's seq went back (a restored
 * database).  body holds h->len bytes.  Errors: INVAL, TOOBIG.
 */
int veil_frame_seal(uint8_t *out, size_t frame_size, const struct veil_dirkey *k,
    const struct veil_frame_hdr *h, const uint8_t *body);
/* Opens a frame expected to carry sequence number seq under k (the caller
 * found seq through the tag table): the frame's tag is compared with
 * tag(seq) in constant time, then the frame's own nonce opens it.  body
 * must hold veil_frame_capacity(frame_size, 0) bytes.  Errors: DECRYPT,
 * FORMAT, PADDING, TYPE, INVAL. */
int veil_frame_open(const uint8_t *in, size_t frame_size, const struct veil_dirkey *k,
    uint64_t seq, struct veil_frame_hdr *h, uint8_t *body);
/* Sealed frames carry exactly one frame of a sealed type (a REQUEST, a
 * RESET or a RESET-ACK: veil_type_sealed), count 1, seq 0: seal refuses
 * anything else (INVAL); open refuses another type (TYPE) or another
 * count (FORMAT) after decryption. */
int veil_frame_seal_box(uint8_t *out, size_t frame_size, const uint8_t pk[VEIL_KEY_BYTES],
    const struct veil_frame_hdr *h, const uint8_t *body);
int veil_frame_open_box(const uint8_t *in, size_t frame_size, const uint8_t pk[VEIL_KEY_BYTES],
    const uint8_t sk[VEIL_KEY_BYTES], struct veil_frame_hdr *h, uint8_t *body);
/* The lookup tag of a received frame: its first VEIL_TAG_BYTES bytes. */
void veil_frame_tag(const uint8_t *frame, uint8_t tag[VEIL_TAG_BYTES]);

/* Multi-frame messages.  Number of frames a body of len bytes needs
 * (>= 1; an empty body still takes one frame), or < 0 if too big. */
int veil_message_frames(size_t len, size_t frame_size, int sealed);
/* Splits body into veil_message_frames() frames written back to back into
 * out, sealed under k with sequence numbers *seq, *seq+1, ...; *seq is
 * advanced.  Returns the number of frames or < 0. */
int veil_message_seal(uint8_t *out, size_t outlen, size_t frame_size,
    const struct veil_dirkey *k, uint64_t *seq, uint8_t type,
    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body, size_t len);
/* A body of a sealed type in one sealed frame: INVAL for another type,
 * TOOBIG if it does not fit one frame.  Returns 1 or < 0. */
int veil_message_seal_box(uint8_t *out, size_t outlen, size_t frame_size,
    const uint8_t pk[VEIL_KEY_BYTES], uint8_t type,
    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body, size_t len);

/* A new random message ID. */
void veil_msgid_new(uint8_t msgid[VEIL_MSGID_BYTES]);

#ifdef __cplusplus
}
#endif
#endif
