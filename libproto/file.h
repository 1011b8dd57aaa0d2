/* libveil: the bodies of FILE messages (offer, chunk, end) and the rule for a file name a receiver may use. */
#ifndef VEIL_FILE_H
#define VEIL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A file travels as ordinary pair messages of type VEIL_T_FILE
 * (docs/protocol.md section 7.1): an OFFER naming it, CHUNKs carrying its
 * bytes, and an END from either side (the receiver's verdict, or the
 * sender's cancellation).  Each is acknowledged end to end like a text,
 * so each is kept and resent by the sender's outbox until it arrives.
 */
#define VEIL_FILE_ID_BYTES	16
#define VEIL_FILE_HASH_BYTES	32	/* BLAKE2b-256 of the whole file */
#define VEIL_FILE_NAME_MAX	255	/* bytes, as NAME_MAX */
#define VEIL_FILE_OFFER_MAX	(1 + VEIL_FILE_ID_BYTES + 8 + 4 + \
				 VEIL_FILE_HASH_BYTES + 1 + VEIL_FILE_NAME_MAX)
#define VEIL_FILE_CHUNK_HDR	(1 + VEIL_FILE_ID_BYTES + 4)
#define VEIL_FILE_END_BYTES	(1 + VEIL_FILE_ID_BYTES + 1)
/* The largest chunk: a CHUNK is one message of at most VEIL_MESSAGE_MAX. */
#define VEIL_FILE_CHUNK_MAX	((4u << 20) - VEIL_FILE_CHUNK_HDR)

enum veil_file_kind {
	VEIL_FILE_OFFER = 1,
	VEIL_FILE_CHUNK = 2,
	VEIL_FILE_END = 3
};

/* An END's status.  A receiver treats a value it does not know as a
 * failure without a reason. */
enum veil_file_status {
	VEIL_FILE_OK = 0,		/* received, the hash matched, stored */
	VEIL_FILE_TOOBIG = 1,		/* larger than the receiver takes */
	VEIL_FILE_QUOTA = 2,		/* over the receiver's quota for us */
	VEIL_FILE_BADNAME = 3,		/* a name the receiver will not use */
	VEIL_FILE_BADHASH = 4,		/* the bytes did not match the hash */
	VEIL_FILE_CANCELLED = 5,	/* either side gave up */
	VEIL_FILE_IOERR = 6,		/* the receiver could not store it */
	VEIL_FILE_BUSY = 7		/* too many transfers from us at once */
};

struct veil_file_msg {
	int		 kind;			/* enum veil_file_kind */
	uint8_t		 id[VEIL_FILE_ID_BYTES];	/* the sender's transfer ID */
	/* OFFER */
	uint64_t	 size;
	uint32_t	 chunk;			/* every chunk but the last */
	uint8_t		 hash[VEIL_FILE_HASH_BYTES];
	char		 name[VEIL_FILE_NAME_MAX + 1];	/* NUL-terminated */
	/* CHUNK: data points into the decoded body */
	uint32_t	 index;
	const uint8_t	*data;
	size_t		 len;
	/* END */
	uint8_t		 status;
};

/*
 * Decodes a FILE body.  Errors: FORMAT (unknown kind, a wrong length,
 * trailing bytes, a NUL in the name, chunk size 0 or over
 * VEIL_FILE_CHUNK_MAX, a size that needs more than 2^32 - 1 chunks, an
 * empty CHUNK), TRUNCATED.  The name is only checked for its length and
 * for NUL: whether it is a name the receiver may use is
 * veil_file_name_check's question.
 */
int	veil_file_decode(const uint8_t *body, size_t len, struct veil_file_msg *out);

/* Encoders: the body's length, or a negative error (INVAL: a bad field,
 * TOOBIG: outlen too small).  A CHUNK is its header followed by the data:
 * veil_file_chunk_header writes the VEIL_FILE_CHUNK_HDR bytes before it. */
int	veil_file_offer_encode(uint8_t *out, size_t outlen,
	    const uint8_t id[VEIL_FILE_ID_BYTES], uint64_t size, uint32_t chunk,
	    const uint8_t hash[VEIL_FILE_HASH_BYTES], const char *name);
int	veil_file_chunk_header(uint8_t out[VEIL_FILE_CHUNK_HDR],
	    const uint8_t id[VEIL_FILE_ID_BYTES], uint32_t index);
int	veil_file_end_encode(uint8_t out[VEIL_FILE_END_BYTES],
	    const uint8_t id[VEIL_FILE_ID_BYTES], uint8_t status);

/* How many chunks a file of size bytes takes (0 for an empty file). */
uint64_t veil_file_chunks(uint64_t size, uint32_t chunk);

/*
 * The chunk size that fills whole frames: the body of a CHUNK message
 * (header and data) is as many frames' capacity as make about 64 KiB, at
 * least one.
 */
uint32_t veil_file_chunk_size(size_t frame_size);

/*
 * Whether a receiver may create a file under this name in a directory of
 * its choice: 1 to VEIL_FILE_NAME_MAX bytes of strict UTF-8; no '/' or
 * '\\'; not "." or ".."; no C0 or C1 control character or DEL; none of the
 * invisible code points that make a name read as another (bidi controls
 * U+202A..U+202E and U+2066..U+2069, U+200B..U+200F, U+2028, U+2029,
 * U+FEFF).  VEIL_OK or VEIL_ERR_INVAL.  A leading '.' is allowed here; a
 * receiver that does not want hidden files replaces it.
 */
int	veil_file_name_check(const char *name);

#ifdef __cplusplus
}
#endif
#endif
