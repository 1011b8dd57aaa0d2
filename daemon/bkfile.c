/* bkfile.c: the backup file format — header, file key, and the secretstream of records (no I/O: bytes in and out through the caller). */
#include <stdlib.h>
#include <string.h>

#include "bkfile.h"

#define ABYTES		crypto_secretstream_xchacha20poly1305_ABYTES
#define TAG_MESSAGE	crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define TAG_FINAL	crypto_secretstream_xchacha20poly1305_TAG_FINAL
#define FIXED		12	/* magic, version, kind, flags */
#define DATA		(BK_CHUNK - 4)	/* stream bytes a chunk carries */
#define CT_CHUNK	(BK_CHUNK + ABYTES)	/* every chunk on disk */
#define PASS_PART	(8 + 8 + 16 + 24 + 48)
#define SEALED_PART	(8 + 80)
#define SS_BYTES	crypto_secretstream_xchacha20poly1305_HEADERBYTES
/* Limits a header may ask Argon2id for: a hostile file must not make a
 * restore allocate without bound. */
#define OPS_MAX		(4 * crypto_pwhash_OPSLIMIT_SENSITIVE)
#define MEM_MAX		crypto_pwhash_MEMLIMIT_SENSITIVE

_Static_assert(FIXED + PASS_PART + SS_BYTES <= BK_HEADER_MAX, "header size");
_Static_assert(sizeof(BK_MAGIC) - 1 == 8, "magic");

static const char *const errs[] = {
	[0] = "ok",
	[1] = "the header is cut short",
	[2] = "not a veil backup file",
	[3] = "written by a newer veil (its format version is not one this "
	    "veild reads): upgrade veil to restore it",
	[4] = "an unknown way of keeping the file key (damaged, or newer)",
	[5] = "the key derivation limits in the header are out of range "
	    "(damaged or hostile file)",
	[6] = "wrong passphrase or recovery key (or a damaged header)",
	[7] = "sealed to another backup key than this recovery key's",
	[8] = "truncated: the end of the backup is missing",
	[9] = "damaged or tampered: a part of the backup does not "
	    "authenticate",
	[10] = "data after the end of the backup",
	[11] = "a record of the backup is malformed",
	[12] = "out of memory",
	[13] = "cannot write the backup",
};

const char *
bk_strerror(int err)
{
	if (err > 0 || -err >= (int)(sizeof(errs) / sizeof(errs[0])))
		return "unknown error";
	return errs[-err];
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void
key_id(const uint8_t pk[crypto_box_PUBLICKEYBYTES], uint8_t id[8])
{
	uint8_t h[32];

	crypto_generichash(h, sizeof(h), pk, crypto_box_PUBLICKEYBYTES, NULL, 0);
	memcpy(id, h, 8);
}

/* ---- header ------------------------------------------------------------ */

int
bk_header_parse(const uint8_t *b, size_t len, struct bk_header *h)
{
	size_t need, n;

	memset(h, 0, sizeof(*h));
	if (len < sizeof(BK_MAGIC) - 1)
		return memcmp(b, BK_MAGIC, len) == 0 ? BK_EMORE : BK_ENOTBACKUP;
	if (memcmp(b, BK_MAGIC, sizeof(BK_MAGIC) - 1) != 0)
		return BK_ENOTBACKUP;
	if (len < FIXED)
		return BK_EMORE;
	h->version = (uint16_t)(b[8] << 8 | b[9]);
	h->kind = b[10];
	if (h->version == 0)
		return BK_ENOTBACKUP;
	if (h->version > BK_VERSION)
		return BK_ENEWER;
	if (b[11] != 0)
		return BK_EKIND;
	switch (h->kind) {
	case BK_PASSPHRASE:
		need = FIXED + PASS_PART + SS_BYTES;
		break;
	case BK_SEALED:
		need = FIXED + SEALED_PART + SS_BYTES;
		break;
	default:
		return BK_EKIND;
	}
	if (len < need)
		return BK_EMORE;
	n = FIXED;
	if (h->kind == BK_PASSPHRASE) {
		h->opslimit = get64(b + n);
		h->memlimit = get64(b + n + 8);
		n += 16;
		memcpy(h->salt, b + n, sizeof(h->salt));
		n += sizeof(h->salt);
		memcpy(h->nonce, b + n, sizeof(h->nonce));
		n += sizeof(h->nonce);
		memcpy(h->wrapped, b + n, sizeof(h->wrapped));
		n += sizeof(h->wrapped);
		if (h->opslimit < crypto_pwhash_OPSLIMIT_MIN ||
		    h->opslimit > OPS_MAX ||
		    h->memlimit < crypto_pwhash_MEMLIMIT_MIN ||
		    h->memlimit > MEM_MAX)
			return BK_EPARAMS;
	} else {
		memcpy(h->key_id, b + n, sizeof(h->key_id));
		n += sizeof(h->key_id);
		memcpy(h->sealed, b + n, sizeof(h->sealed));
		n += sizeof(h->sealed);
	}
	memcpy(h->ss, b + n, sizeof(h->ss));
	n += sizeof(h->ss);
	memcpy(h->raw, b, n);
	h->rawlen = n;
	return (int)n;
}

/* The wrap's AD: the header up to (not including) the nonce. */
#define WRAP_AD_LEN	(FIXED + 8 + 8 + 16)

int
bk_header_key(const struct bk_header *h, const struct bk_secret *s,
    uint8_t key[BK_KEY_BYTES])
{
	uint8_t kek[32], pk[crypto_box_PUBLICKEYBYTES], id[8];
	int rc = BK_EKEY;

	if (h->kind == BK_PASSPHRASE) {
		if (s->pass == NULL)
			return BK_EKEY;
		if (crypto_pwhash(kek, sizeof(kek), s->pass, s->passlen, h->salt,
		    h->opslimit, (size_t)h->memlimit,
		    crypto_pwhash_ALG_ARGON2ID13) != 0)
			return BK_ENOMEM;
		if (crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL,
		    h->wrapped, sizeof(h->wrapped), h->raw, WRAP_AD_LEN, h->nonce,
		    kek) == 0)
			rc = BK_OK;
		sodium_memzero(kek, sizeof(kek));
		return rc;
	}
	if (s->sk == NULL)
		return BK_EKEY;
	crypto_scalarmult_base(pk, s->sk);
	key_id(pk, id);
	if (sodium_memcmp(id, h->key_id, sizeof(id)) != 0)
		return BK_EOTHERKEY;
	if (crypto_box_seal_open(key, h->sealed, sizeof(h->sealed), pk,
	    s->sk) != 0)
		return BK_EKEY;
	return BK_OK;
}

/* ---- writer ------------------------------------------------------------ */

static int
emit(struct bk_writer *w, const uint8_t *b, size_t n)
{
	if (w->err == 0 && w->out(w->arg, b, n) != 0)
		w->err = BK_EIO;
	w->bytes += n;
	return w->err;
}

int
bk_writer_start(struct bk_writer *w, const struct bk_secret *s, bk_out_fn out,
    void *arg)
{
	uint8_t key[BK_KEY_BYTES], kek[32], *b;
	size_t n = FIXED;

	memset(w, 0, sizeof(*w));
	w->out = out;
	w->arg = arg;
	w->first = 1;
	w->ptlen = 4;	/* room for the chunk's length */
	if ((w->pt = malloc(BK_CHUNK)) == NULL ||
	    (w->ct = malloc(CT_CHUNK)) == NULL) {
		bk_writer_free(w);
		return BK_ENOMEM;
	}
	b = w->hdr;
	memcpy(b, BK_MAGIC, 8);
	b[8] = 0;
	b[9] = BK_VERSION;
	b[11] = 0;
	crypto_secretstream_xchacha20poly1305_keygen(key);
	if (s->pass != NULL) {
		b[10] = BK_PASSPHRASE;
		put64(b + n, s->opslimit);
		put64(b + n + 8, s->memlimit);
		n += 16;
		randombytes_buf(b + n, crypto_pwhash_SALTBYTES);
		if (crypto_pwhash(kek, sizeof(kek), s->pass, s->passlen, b + n,
		    s->opslimit, (size_t)s->memlimit,
		    crypto_pwhash_ALG_ARGON2ID13) != 0) {
			sodium_memzero(key, sizeof(key));
			bk_writer_free(w);
			return BK_ENOMEM;
		}
		n += crypto_pwhash_SALTBYTES;
		randombytes_buf(b + n, 24);
		crypto_aead_xchacha20poly1305_ietf_encrypt(b + n + 24, NULL, key,
		    sizeof(key), b, WRAP_AD_LEN, NULL, b + n, kek);
		n += 24 + BK_KEY_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES;
		sodium_memzero(kek, sizeof(kek));
	} else {
		b[10] = BK_SEALED;
		key_id(s->pk, b + n);
		n += 8;
		if (crypto_box_seal(b + n, key, sizeof(key), s->pk) != 0) {
			sodium_memzero(key, sizeof(key));
			bk_writer_free(w);
			return BK_EKEY;
		}
		n += sizeof(key) + crypto_box_SEALBYTES;
	}
	crypto_secretstream_xchacha20poly1305_init_push(&w->st, b + n, key);
	n += SS_BYTES;
	w->hdrlen = n;
	sodium_memzero(key, sizeof(key));
	return emit(w, w->hdr, w->hdrlen);
}

/* A chunk: u32 bytes used || the bytes || zeros, BK_CHUNK in all. */
static int
push(struct bk_writer *w, unsigned char tag)
{
	unsigned long long clen = 0;
	size_t used = w->ptlen - 4;

	w->pt[0] = (uint8_t)(used >> 24);
	w->pt[1] = (uint8_t)(used >> 16);
	w->pt[2] = (uint8_t)(used >> 8);
	w->pt[3] = (uint8_t)used;
	memset(w->pt + w->ptlen, 0, BK_CHUNK - w->ptlen);
	crypto_secretstream_xchacha20poly1305_push(&w->st, w->ct, &clen, w->pt,
	    BK_CHUNK, w->first ? w->hdr : NULL, w->first ? w->hdrlen : 0, tag);
	w->first = 0;
	sodium_memzero(w->pt, BK_CHUNK);
	w->ptlen = 4;
	return emit(w, w->ct, (size_t)clen);
}

/* A full chunk goes only once more data follows: the last one, full or
 * not, is the one finish() tags FINAL. */
static int
put(struct bk_writer *w, const uint8_t *b, size_t n)
{
	size_t k;

	while (n > 0 && w->err == 0) {
		if (w->ptlen == BK_CHUNK && push(w, TAG_MESSAGE) != 0)
			break;
		k = BK_CHUNK - w->ptlen < n ? BK_CHUNK - w->ptlen : n;	/* >= 1 */
		memcpy(w->pt + w->ptlen, b, k);
		w->ptlen += k;
		b += k;
		n -= k;
	}
	return w->err;
}

int
bk_writer_record(struct bk_writer *w, const uint8_t *rec, size_t len)
{
	uint8_t l[4];

	if (len == 0 || len > BK_RECORD_MAX)
		return BK_ERECORD;
	l[0] = (uint8_t)(len >> 24);
	l[1] = (uint8_t)(len >> 16);
	l[2] = (uint8_t)(len >> 8);
	l[3] = (uint8_t)len;
	if (put(w, l, 4) != 0)
		return w->err;
	return put(w, rec, len);
}

int
bk_writer_finish(struct bk_writer *w)
{
	if (w->err != 0)
		return w->err;
	return push(w, TAG_FINAL);
}

void
bk_writer_free(struct bk_writer *w)
{
	if (w->pt != NULL) {
		sodium_memzero(w->pt, BK_CHUNK);
		free(w->pt);
	}
	free(w->ct);
	sodium_memzero(&w->st, sizeof(w->st));
	w->pt = w->ct = NULL;
}

/* ---- reader ------------------------------------------------------------ */

int
bk_reader_init(struct bk_reader *r, const struct bk_header *h,
    const uint8_t key[BK_KEY_BYTES], bk_record_fn record, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->record = record;
	r->arg = arg;
	r->first = 1;
	memcpy(r->hdr, h->raw, h->rawlen);
	r->hdrlen = h->rawlen;
	r->offset = h->rawlen;
	if ((r->ct = malloc(CT_CHUNK)) == NULL ||
	    (r->pt = malloc(BK_CHUNK)) == NULL) {
		bk_reader_free(r);
		return BK_ENOMEM;
	}
	if (crypto_secretstream_xchacha20poly1305_init_pull(&r->st, h->ss,
	    key) != 0) {
		bk_reader_free(r);
		return BK_ETAMPER;
	}
	return BK_OK;
}

/* Plaintext into records: u32 length, then that many bytes. */
static int
take(struct bk_reader *r, const uint8_t *b, size_t n)
{
	size_t k;

	while (n > 0) {
		if (r->lenhave < 4) {
			r->lenbuf[r->lenhave++] = *b++;
			n--;
			if (r->lenhave < 4)
				continue;
			r->reclen = (size_t)r->lenbuf[0] << 24 |
			    (size_t)r->lenbuf[1] << 16 |
			    (size_t)r->lenbuf[2] << 8 | r->lenbuf[3];
			if (r->reclen == 0 || r->reclen > BK_RECORD_MAX)
				return BK_ERECORD;
			if ((r->rec = malloc(r->reclen)) == NULL)
				return BK_ENOMEM;
			r->rechave = 0;
			continue;
		}
		k = r->reclen - r->rechave < n ? r->reclen - r->rechave : n;
		memcpy(r->rec + r->rechave, b, k);
		r->rechave += k;
		b += k;
		n -= k;
		if (r->rechave == r->reclen) {
			int rc = r->record(r->arg, r->rec, r->reclen);

			sodium_memzero(r->rec, r->reclen);
			free(r->rec);
			r->rec = NULL;
			r->lenhave = 0;
			r->records++;
			if (rc != 0)
				return BK_ERECORD;
		}
	}
	return BK_OK;
}

static int
pull(struct bk_reader *r)
{
	unsigned long long mlen = 0;
	unsigned char tag = 0;
	size_t used;
	int rc;

	if (crypto_secretstream_xchacha20poly1305_pull(&r->st, r->pt, &mlen,
	    &tag, r->ct, r->ctlen, r->first ? r->hdr : NULL,
	    r->first ? r->hdrlen : 0) != 0 || mlen != BK_CHUNK)
		return BK_ETAMPER;
	r->first = 0;
	r->offset += r->ctlen;
	r->ctlen = 0;
	if (tag == TAG_FINAL)
		r->final = 1;
	else if (tag != TAG_MESSAGE)
		return BK_ETAMPER;	/* we never write another tag */
	used = (size_t)r->pt[0] << 24 | (size_t)r->pt[1] << 16 |
	    (size_t)r->pt[2] << 8 | r->pt[3];
	/* Authenticated, so only our own writer's bug could break these. */
	if (used > DATA || (!r->final && used != DATA))
		return BK_ERECORD;
	rc = take(r, r->pt + 4, used);
	sodium_memzero(r->pt, BK_CHUNK);
	return rc;
}

int
bk_reader_feed(struct bk_reader *r, const uint8_t *b, size_t n)
{
	size_t k;

	while (n > 0 && r->err == 0) {
		if (r->final) {
			r->err = BK_ETRAIL;
			break;
		}
		k = CT_CHUNK - r->ctlen < n ? CT_CHUNK - r->ctlen : n;
		memcpy(r->ct + r->ctlen, b, k);
		r->ctlen += k;
		b += k;
		n -= k;
		if (r->ctlen == CT_CHUNK)
			r->err = pull(r);
	}
	return r->err;
}

/* Every chunk has the same size on disk, so a file cut anywhere shows by
 * its length alone: a part of a chunk left over, or no FINAL chunk. */
int
bk_reader_finish(struct bk_reader *r)
{
	if (r->err != 0)
		return r->err;
	if (r->ctlen > 0 || !r->final)
		return r->err = BK_ETRUNC;
	if (r->lenhave != 0)
		return r->err = BK_ERECORD;
	return BK_OK;
}

void
bk_reader_free(struct bk_reader *r)
{
	if (r->rec != NULL) {
		sodium_memzero(r->rec, r->reclen);
		free(r->rec);
	}
	if (r->pt != NULL) {
		sodium_memzero(r->pt, BK_CHUNK);
		free(r->pt);
	}
	free(r->ct);
	sodium_memzero(&r->st, sizeof(r->st));
	r->rec = r->pt = r->ct = NULL;
}
