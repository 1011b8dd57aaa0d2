/* bkfile.h: the backup file format — a versioned header that keeps the file key (Argon2id passphrase, or sealed to a public key), then a libsodium secretstream of length-prefixed records. */
#ifndef VEILD_BKFILE_H
#define VEILD_BKFILE_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

/*
 * File layout (docs/protocol.md 9.2; all integers big endian):
 *
 *   magic "VEILBKUP" (8) || u16 version (1) || u8 kind || u8 flags (0)
 *   kind 1, passphrase:  u64 opslimit || u64 memlimit || salt (16)
 *                        || nonce (24) || AEAD(KEK, file key) (48)
 *   kind 2, public key:  key id (8) || crypto_box_seal(file key, pk) (80)
 *   secretstream header (24)
 *   chunks: crypto_secretstream_xchacha20poly1305, each 65536 bytes of
 *   plaintext (65553 on disk): u32 n || n bytes of the stream || zeros;
 *   n is 65532 in every chunk but the last, which is tagged FINAL; the
 *   first carries the whole header as associated data.  Equal sizes make
 *   a cut file show by its length, before any decryption.
 *
 * KEK = Argon2id13(passphrase, salt, opslimit, memlimit); the wrap's AEAD
 * (XChaCha20-Poly1305) has the header up to the nonce as associated data.
 * key id = first 8 bytes of BLAKE2b-256(pk).  The stream is a sequence
 * of records, each u32 length (1 .. BK_RECORD_MAX) || bytes.  A stream
 * without its FINAL chunk is truncated; bytes after it are an error too.
 */
#define BK_MAGIC	"VEILBKUP"
#define BK_VERSION	1
#define BK_KEY_BYTES	32
#define BK_CHUNK	65536
#define BK_RECORD_MAX	(8u << 20)
#define BK_HEADER_MAX	160

enum bk_kind { BK_PASSPHRASE = 1, BK_SEALED = 2 };

enum bk_err {
	BK_OK = 0,
	BK_EMORE = -1,		/* the header is longer than what was given */
	BK_ENOTBACKUP = -2,	/* no magic: not a veil backup file */
	BK_ENEWER = -3,		/* a format version this code does not read */
	BK_EKIND = -4,		/* an unknown way of keeping the key */
	BK_EPARAMS = -5,	/* Argon2id limits out of range */
	BK_EKEY = -6,		/* wrong passphrase / recovery key */
	BK_EOTHERKEY = -7,	/* sealed to another public key */
	BK_ETRUNC = -8,		/* the end of the stream is missing */
	BK_ETAMPER = -9,	/* a chunk does not authenticate */
	BK_ETRAIL = -10,	/* bytes after the end */
	BK_ERECORD = -11,	/* a record's length or content is wrong */
	BK_ENOMEM = -12,
	BK_EIO = -13		/* the writer's output failed */
};
const char *bk_strerror(int err);

struct bk_header {
	uint16_t	 version;
	uint8_t		 kind;
	uint64_t	 opslimit, memlimit;
	uint8_t		 salt[crypto_pwhash_SALTBYTES];
	uint8_t		 nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
	uint8_t		 wrapped[BK_KEY_BYTES +
			    crypto_aead_xchacha20poly1305_ietf_ABYTES];
	uint8_t		 key_id[8];
	uint8_t		 sealed[BK_KEY_BYTES + crypto_box_SEALBYTES];
	uint8_t		 ss[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	uint8_t		 raw[BK_HEADER_MAX];	/* as on disk */
	size_t		 rawlen;
};

/* What opens (or makes) the file key. */
struct bk_secret {
	const char	*pass;		/* kind 1 */
	size_t		 passlen;
	uint64_t	 opslimit, memlimit;	/* kind 1, writing */
	const uint8_t	*pk;		/* kind 2, writing */
	const uint8_t	*sk;		/* kind 2, reading */
};

/* The header at the start of buf: its length (> 0), or BK_EMORE when
 * more bytes are needed, or an error.  Checks the magic, the version,
 * the kind and the Argon2id limits; never allocates. */
int	bk_header_parse(const uint8_t *buf, size_t len, struct bk_header *h);
/* The file key: Argon2id and unwrap (kind 1), or open the sealed key
 * (kind 2).  BK_OK, BK_EKEY, BK_EOTHERKEY, BK_ENOMEM. */
int	bk_header_key(const struct bk_header *h, const struct bk_secret *s,
	    uint8_t key[BK_KEY_BYTES]);

typedef int (*bk_out_fn)(void *arg, const uint8_t *buf, size_t len);
typedef int (*bk_record_fn)(void *arg, const uint8_t *rec, size_t len);

struct bk_writer {
	crypto_secretstream_xchacha20poly1305_state st;
	bk_out_fn	 out;
	void		*arg;
	uint8_t		*pt, *ct;	/* BK_CHUNK, BK_CHUNK + ABYTES */
	size_t		 ptlen;
	uint8_t		 hdr[BK_HEADER_MAX];
	size_t		 hdrlen;
	int		 first;
	uint64_t	 bytes;		/* written so far */
	int		 err;
};

/* Makes a file key, writes the header through out.  Kind 1 when s->pass
 * is set (Argon2id with s's limits), kind 2 with s->pk. */
int	bk_writer_start(struct bk_writer *w, const struct bk_secret *s,
	    bk_out_fn out, void *arg);
int	bk_writer_record(struct bk_writer *w, const uint8_t *rec, size_t len);
int	bk_writer_finish(struct bk_writer *w);
void	bk_writer_free(struct bk_writer *w);

struct bk_reader {
	crypto_secretstream_xchacha20poly1305_state st;
	bk_record_fn	 record;
	void		*arg;
	uint8_t		*ct, *pt;	/* one chunk each */
	size_t		 ctlen;
	uint8_t		 hdr[BK_HEADER_MAX];
	size_t		 hdrlen;
	int		 first, final;
	/* the record being assembled */
	uint8_t		 lenbuf[4];
	size_t		 lenhave;
	uint8_t		*rec;
	size_t		 reclen, rechave;
	uint64_t	 offset;	/* of the next chunk, in the file */
	uint64_t	 records;
	int		 err;
};

/* Stream after the header of h, under key: record() gets each record (a
 * non-zero return stops with BK_ERECORD). */
int	bk_reader_init(struct bk_reader *r, const struct bk_header *h,
	    const uint8_t key[BK_KEY_BYTES], bk_record_fn record, void *arg);
/* The bytes that follow the header, in any pieces. */
int	bk_reader_feed(struct bk_reader *r, const uint8_t *buf, size_t len);
/* At the end of the file: BK_OK only if the FINAL chunk came and no
 * record is cut short. */
int	bk_reader_finish(struct bk_reader *r);
void	bk_reader_free(struct bk_reader *r);

#endif
