/* vault_key.c: the vault's cryptography without state — key material, the passphrase's Argon2id, wrapping and unwrapping the data key. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "vault_key.h"

#define WRAP_AD_PREFIX	"veil-vault-v1"
#define WRAP_NONCE	crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define WRAP_AD_MAX	(sizeof(WRAP_AD_PREFIX) + 1 + 16 + 16 + 16)
/* A stored Argon2id cost beyond these is a damaged (or hostile) row: an
 * unlock must not be made to allocate without bound. */
#define OPS_MAX		(4 * crypto_pwhash_OPSLIMIT_SENSITIVE)
#define MEM_MAX		crypto_pwhash_MEMLIMIT_SENSITIVE

_Static_assert(STORE_WRAP_BYTES == WRAP_NONCE + STORE_KEY_BYTES +
    crypto_aead_xchacha20poly1305_ietf_ABYTES, "wrap size");

static void __attribute__((format(printf, 3, 4)))
say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static size_t
wrap_ad(uint8_t *ad, const struct store_wrap *w)
{
	size_t n = sizeof(WRAP_AD_PREFIX) - 1;

	memcpy(ad, WRAP_AD_PREFIX, n);
	ad[n++] = (uint8_t)w->kind;
	memcpy(ad + n, w->key_id, sizeof(w->key_id));
	n += sizeof(w->key_id);
	memcpy(ad + n, w->salt, sizeof(w->salt));
	n += sizeof(w->salt);
	for (int i = 7; i >= 0; i--)
		ad[n++] = (uint8_t)(w->opslimit >> (8 * i));
	for (int i = 7; i >= 0; i--)
		ad[n++] = (uint8_t)(w->memlimit >> (8 * i));
	return n;
}

void
vk_wrap(struct store_wrap *w, const uint8_t kek[32],
    const uint8_t key[STORE_KEY_BYTES])
{
	uint8_t ad[WRAP_AD_MAX];
	size_t adlen = wrap_ad(ad, w);

	randombytes_buf(w->wrapped, WRAP_NONCE);
	crypto_aead_xchacha20poly1305_ietf_encrypt(w->wrapped + WRAP_NONCE,
	    NULL, key, STORE_KEY_BYTES, ad, adlen, NULL, w->wrapped, kek);
}

int
vk_unwrap(const struct store_wrap *w, const uint8_t kek[32],
    uint8_t key[STORE_KEY_BYTES])
{
	uint8_t ad[WRAP_AD_MAX];
	size_t adlen = wrap_ad(ad, w);

	return crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL,
	    w->wrapped + WRAP_NONCE, STORE_WRAP_BYTES - WRAP_NONCE, ad, adlen,
	    w->wrapped, kek) == 0 ? 0 : -1;
}

void
vk_derive(struct vk_source *k, const uint8_t *m, size_t len)
{
	uint8_t h[32];

	crypto_generichash(k->kek, sizeof(k->kek), m, len,
	    (const uint8_t *)"veil-wrapping-v1", 16);
	crypto_generichash(h, sizeof(h), (const uint8_t *)"veil-key-id-v1", 14,
	    k->kek, sizeof(k->kek));
	memcpy(k->id, h, sizeof(k->id));
	k->present = 1;
}

int
vk_read(const char *path, int private, struct vk_source *k, char *why,
    size_t whylen)
{
	uint8_t buf[VK_MATERIAL_MAX + 1];
	struct stat st;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		if (errno == ENOENT)
			return 1;
		say(why, whylen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		say(why, whylen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (private && (st.st_mode & 077) != 0) {
		say(why, whylen, "%s: the key file may be read by others "
		    "(mode %03o): chmod 600 it", path,
		    (unsigned)(st.st_mode & 0777));
		close(fd);
		return -1;
	}
	while (len < sizeof(buf) &&
	    (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			say(why, whylen, "%s: %s", path, strerror(errno));
			close(fd);
			sodium_memzero(buf, sizeof(buf));
			return -1;
		}
		len += (size_t)n;
	}
	close(fd);
	if (len < VK_MATERIAL_MIN || len > VK_MATERIAL_MAX) {
		say(why, whylen, "%s: must hold %d to %d bytes of key (it holds "
		    "%s%zu)", path, VK_MATERIAL_MIN, VK_MATERIAL_MAX,
		    len > VK_MATERIAL_MAX ? "more than " : "",
		    len > VK_MATERIAL_MAX ? (size_t)VK_MATERIAL_MAX : len);
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	vk_derive(k, buf, len);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int
vk_kdf(uint8_t kek[32], const char *pass, size_t len, const struct store_wrap *w)
{
	if (w->opslimit < crypto_pwhash_OPSLIMIT_MIN || w->opslimit > OPS_MAX ||
	    w->memlimit < crypto_pwhash_MEMLIMIT_MIN || w->memlimit > MEM_MAX)
		return -2;
	return crypto_pwhash(kek, 32, pass, len, w->salt, w->opslimit,
	    (size_t)w->memlimit, crypto_pwhash_ALG_ARGON2ID13) == 0 ? 0 : -1;
}

int
vk_passphrase_wrap(struct store_wrap *w, const char *pass, size_t len,
    uint64_t ops, uint64_t mem, const uint8_t key[STORE_KEY_BYTES])
{
	uint8_t kek[32];
	int rc;

	memset(w, 0, sizeof(*w));
	w->kind = STORE_WRAP_PASSPHRASE;
	randombytes_buf(w->salt, sizeof(w->salt));
	w->opslimit = ops;
	w->memlimit = mem;
	w->created = (int64_t)time(NULL) * 1000;
	if ((rc = vk_kdf(kek, pass, len, w)) == 0)
		vk_wrap(w, kek, key);
	sodium_memzero(kek, sizeof(kek));
	return rc == 0 ? 0 : -1;
}

void
vk_source_wrap(struct store_wrap *w, const struct vk_source *k,
    const uint8_t key[STORE_KEY_BYTES])
{
	memset(w, 0, sizeof(*w));
	w->kind = STORE_WRAP_KEY;
	memcpy(w->key_id, k->id, sizeof(w->key_id));
	w->created = (int64_t)time(NULL) * 1000;
	vk_wrap(w, k->kek, key);
}

struct find {
	const struct vk_source	*k;
	uint8_t			*key;
	int			 found;
};

static int
find_cb(const struct store_wrap *w, void *arg)
{
	struct find *f = arg;

	if (w->kind != STORE_WRAP_KEY ||
	    sodium_memcmp(w->key_id, f->k->id, STORE_KEY_ID_BYTES) != 0)
		return 0;
	f->found = vk_unwrap(w, f->k->kek, f->key) == 0 ? 1 : -1;
	return 1;
}

int
vk_unlock_with_file(struct store *st, const char *path, char *err,
    size_t errlen)
{
	struct vk_source k;
	struct find f;
	uint8_t key[STORE_KEY_BYTES];
	int rc = -1, r;

	memset(&k, 0, sizeof(k));
	if ((r = vk_read(path, 1, &k, err, errlen)) != 0) {
		if (r == 1)
			say(err, errlen, "%s: no such key file", path);
		return -1;
	}
	f.k = &k;
	f.key = key;
	f.found = 0;
	if (store_wrap_list(st, find_cb, &f) < 0)
		say(err, errlen, "store: %s", store_errmsg(st));
	else if (f.found != 1)
		say(err, errlen, "%s does not unlock this database", path);
	else if (store_set_key(st, key) != 0)
		say(err, errlen, "store: %s", store_errmsg(st));
	else
		rc = 0;
	sodium_memzero(key, sizeof(key));
	sodium_memzero(&k, sizeof(k));
	return rc;
}
