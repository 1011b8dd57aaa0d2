/* vault.c: the state directory — its lock, its database, the data key and its unlock sources (systemd credential, key file, passphrase), and whether the engine runs. */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "methods.h"
#include "rpc.h"
#include "store.h"
#include "vault.h"
#include "vault_key.h"

#define RETRY_MS		1000	/* after a wrong passphrase */

static struct {
	struct event_base		*base;
	const struct veild_config	*cfg;
	int				 lockfd;
	struct store			*st;
	char				 dbpath[4096];
	int				 open;
	int64_t				 not_before;	/* ms, next attempt */
	char				 why[200];	/* why locked */
} V = { .lockfd = -1 };

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void __attribute__((format(printf, 3, 4)))
say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

struct store *
vault_store(void)
{
	return V.st;
}

const char *
vault_state_dir(void)
{
	return V.cfg->state_dir;
}

int
vault_is_open(void)
{
	return V.open;
}

void
vault_kdf_limits(uint64_t *ops, uint64_t *mem)
{
	switch (V.cfg != NULL ? V.cfg->unlock.kdf : VEILD_KDF_MODERATE) {
	case VEILD_KDF_INTERACTIVE:
		*ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
		*mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
		break;
	case VEILD_KDF_SENSITIVE:
		*ops = crypto_pwhash_OPSLIMIT_SENSITIVE;
		*mem = crypto_pwhash_MEMLIMIT_SENSITIVE;
		break;
	default:
		*ops = crypto_pwhash_OPSLIMIT_MODERATE;
		*mem = crypto_pwhash_MEMLIMIT_MODERATE;
		break;
	}
}

/* --- the lock ------------------------------------------------------------ */

/*
 * One veild per state directory: two would seal under the same keys and
 * counters.  The lock is an flock on state_dir/veil.lock, held for the
 * daemon's life and released by the kernel however it ends; the file
 * names the holder's pid for the error message.
 */
static int
lock_state(const char *dir, char *err, size_t errlen)
{
	char path[4096], pid[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "%s/veil.lock", dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) == -1) {
		if (errno == EROFS)
			say(err, errlen, "state_dir %s is on a read-only file "
			    "system: veild keeps its database there and must write "
			    "it; remount it read-write (%s: %s)", dir, path,
			    strerror(errno));
		else if (errno == EACCES || errno == EPERM)
			say(err, errlen, "state_dir %s cannot be written by uid "
			    "%ld: veild keeps its database there and must write it "
			    "(%s: %s)", dir, (long)geteuid(), path, strerror(errno));
		else
			say(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		int e = errno;

		n = pread(fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		if (e == EWOULDBLOCK)
			say(err, errlen, "state_dir %s is in use by another veild "
			    "(pid %s): one daemon per state directory", dir,
			    pid[0] != '\0' ? pid : "unknown");
		else
			say(err, errlen, "%s: lock: %s", path, strerror(e));
		return -1;
	}
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("%s", path);	/* the lock holds anyway */
	V.lockfd = fd;
	return 0;
}

/* The sources configured and present now: [0] credential, [1] key file.
 * A source that is configured but unreadable makes why non-empty. */
static void
sources(struct vk_source k[2], char *why, size_t whylen)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];

	memset(k, 0, 2 * sizeof(*k));
	k[0].what = "systemd credential";
	k[1].what = "key file";
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (V.cfg->unlock.credential != NULL && dir != NULL && *dir != '\0') {
		snprintf(path, sizeof path, "%s/%s", dir, V.cfg->unlock.credential);
		if (vk_read(path, 0, &k[0], why, whylen) == 1)
			log_debug("no credential %s", V.cfg->unlock.credential);
	}
	if (V.cfg->unlock.key_file != NULL &&
	    vk_read(V.cfg->unlock.key_file, 1, &k[1], why, whylen) == 1)
		say(why, whylen, "%s: no such key file", V.cfg->unlock.key_file);
}

static void
sources_wipe(struct vk_source k[2])
{
	sodium_memzero(k, 2 * sizeof(*k));
}

/* A passphrase row for key with this config's Argon2id limits. */
static int
passphrase_wrap(struct store_wrap *w, const char *pass, size_t len,
    const uint8_t key[32])
{
	uint64_t ops, mem;

	vault_kdf_limits(&ops, &mem);
	return vk_passphrase_wrap(w, pass, len, ops, mem, key);
}

/* --- the vault rows -------------------------------------------------------- */

struct wraps {
	struct store_wrap	 w[8];
	int			 n;
};

static int
collect(const struct store_wrap *w, void *arg)
{
	struct wraps *ws = arg;

	if (ws->n < 8)
		ws->w[ws->n++] = *w;
	return 0;
}

static int
wraps_load(struct store *st, struct wraps *ws)
{
	memset(ws, 0, sizeof(*ws));
	return store_wrap_list(st, collect, ws) < 0 ? -1 : 0;
}

static const struct store_wrap *
wraps_find(const struct wraps *ws, int kind, const uint8_t *id)
{
	for (int i = 0; i < ws->n; i++)
		if (ws->w[i].kind == kind && (id == NULL ||
		    sodium_memcmp(ws->w[i].key_id, id, STORE_KEY_ID_BYTES) == 0))
			return &ws->w[i];
	return NULL;
}

/* --- the engine ------------------------------------------------------------ */

static void
notify_status(void)
{
	char line[320], s[256];

	vault_status_line(s, sizeof s);
	snprintf(line, sizeof line, "STATUS=%s", s);
	sd_notify(0, line);
}

static int
engine_up(char *err, size_t errlen)
{
	if (engine_init(V.base, V.cfg, V.st, err, errlen) != 0 ||
	    engine_start() != 0) {
		if (err[0] == '\0')
			say(err, errlen, "cannot start the transport");
		engine_shutdown();
		return -1;
	}
	V.open = 1;
	V.why[0] = '\0';
	rpc_init(methods_table);
	notify_status();
	return 0;
}

static void
engine_down(void)
{
	if (!V.open)
		return;
	engine_shutdown();
	V.open = 0;
	rpc_init(methods_locked_table());
}

/*
 * The key in hand (unwrapped, or new for a database being sealed): keyed
 * store, the sources present now enrolled (a credential configured since,
 * a key file added), then the engine.
 */
static int
open_with(const uint8_t key[32], char *err, size_t errlen)
{
	struct vk_source k[2];
	struct store_wrap w;
	struct wraps ws;
	int rc = -1;

	if (store_set_key(V.st, key) != 0) {
		say(err, errlen, "%s", store_errmsg(V.st));
		return -1;
	}
	sources(k, NULL, 0);
	if (wraps_load(V.st, &ws) != 0)
		goto fail;
	for (int i = 0; i < 2; i++) {
		if (!k[i].present || wraps_find(&ws, STORE_WRAP_KEY, k[i].id))
			continue;
		vk_source_wrap(&w, &k[i], key);
		if (store_wrap_put(V.st, &w) != 0)
			goto fail;
		log_info("unlock: the %s now unlocks the state directory too",
		    k[i].what);
	}
	rc = 0;
fail:
	if (rc != 0)
		say(err, errlen, "store: %s", store_errmsg(V.st));
	sources_wipe(k);
	sodium_memzero(&ws, sizeof ws);
	sodium_memzero(&w, sizeof w);
	if (rc == 0)
		rc = engine_up(err, errlen);
	return rc;
}

/*
 * The first unlock of a database not sealed yet: a new data key, wrapped
 * for the passphrase (if given) and every source present; every secret
 * sealed in the same transaction; then VACUUM, so no page of the
 * plaintext era remains in the file, its free list or the WAL.
 */
static int
seal_new(const char *pass, size_t passlen, char *err, size_t errlen)
{
	uint8_t *key;
	int64_t n;
	int rc = -1;

	if ((key = sodium_malloc(32)) == NULL) {
		say(err, errlen, "out of memory");
		return -1;
	}
	randombytes_buf(key, 32);
	if (store_set_key(V.st, key) != 0 || store_begin(V.st) != 0)
		goto fail;
	if (vault_wrap_new(V.st, key, pass, passlen, err, errlen) != 0) {
		store_rollback(V.st);
		goto out;
	}
	if ((n = store_seal_all(V.st)) < 0 || store_commit(V.st) != 0) {
		store_rollback(V.st);
		goto fail;
	}
	if (store_vacuum(V.st) != 0)
		log_warnx("unlock: %s", store_errmsg(V.st));
	log_info("unlock: the state directory is encrypted now (%" PRId64
	    " values sealed)", n);
	rc = open_with(key, err, errlen);
	goto out;
fail:
	say(err, errlen, "store: %s", store_errmsg(V.st));
out:
	sodium_free(key);
	return rc;
}

int
vault_wrap_new(struct store *st, const uint8_t key[32], const char *pass,
    size_t passlen, char *err, size_t errlen)
{
	struct vk_source k[2];
	struct store_wrap w;
	int n = 0, rc = -1;

	sources(k, NULL, 0);
	if (pass != NULL && passlen > 0) {
		if (passphrase_wrap(&w, pass, passlen, key) != 0) {
			say(err, errlen, "out of memory for Argon2id");
			goto out;
		}
		if (store_wrap_put(st, &w) != 0)
			goto dberr;
		n++;
	}
	for (int i = 0; i < 2; i++) {
		if (!k[i].present)
			continue;
		vk_source_wrap(&w, &k[i], key);
		if (store_wrap_put(st, &w) != 0)
			goto dberr;
		n++;
	}
	if (n == 0) {
		say(err, errlen, "nothing would unlock it: give a passphrase, "
		    "or configure unlock.credential or unlock.key_file");
		goto out;
	}
	rc = 0;
	goto out;
dberr:
	say(err, errlen, "store: %s", store_errmsg(st));
out:
	sources_wipe(k);
	sodium_memzero(&w, sizeof w);
	return rc;
}

/* --- the public side -------------------------------------------------------- */

int
vault_init(struct event_base *base, const struct veild_config *cfg, char *err,
    size_t errlen)
{
	V.base = base;
	V.cfg = cfg;
	V.open = 0;
	if (lock_state(cfg->state_dir, err, errlen) != 0)
		return -1;
	snprintf(V.dbpath, sizeof V.dbpath, "%s/veil.db", cfg->state_dir);
	if ((V.st = store_open(V.dbpath, err, errlen)) == NULL)
		return -1;
	/* A schema migration may have copied plaintext columns: none of
	 * that stays in the WAL while we wait for a passphrase. */
	if (store_checkpoint(V.st) < 0)
		log_warnx("store: checkpoint: %s", store_errmsg(V.st));
	rpc_init(methods_locked_table());
	return 0;
}

int
vault_auto_unlock(char *err, size_t errlen)
{
	uint8_t *key = NULL;
	struct vk_source k[2];
	struct wraps ws;
	const struct store_wrap *w;
	int sealed, rc = 0, any;

	err[0] = '\0';
	sources(k, V.why, sizeof V.why);
	any = k[0].present || k[1].present;
	if ((sealed = store_sealed(V.st)) < 0) {
		say(err, errlen, "store: %s", store_errmsg(V.st));
		rc = -1;
		goto out;
	}
	if (!any) {
		if (V.why[0] == '\0')
			say(V.why, sizeof V.why, sealed ? "waiting for the "
			    "passphrase (veilctl unlock)" : "no key yet: set a "
			    "passphrase with veilctl unlock, or configure "
			    "unlock.credential or unlock.key_file");
		goto out;
	}
	if (!sealed) {
		rc = seal_new(NULL, 0, err, errlen) == 0 ? 1 : -1;
		goto out;
	}
	if (wraps_load(V.st, &ws) != 0 || (key = sodium_malloc(32)) == NULL) {
		say(err, errlen, "store: %s", store_errmsg(V.st));
		rc = -1;
		goto out;
	}
	for (int i = 0; i < 2 && rc == 0; i++) {
		if (!k[i].present)
			continue;
		if ((w = wraps_find(&ws, STORE_WRAP_KEY, k[i].id)) == NULL) {
			say(V.why, sizeof V.why, "the %s is not one this state "
			    "directory knows: unlock once with the passphrase "
			    "(veilctl unlock) to enrol it", k[i].what);
			continue;
		}
		if (vk_unwrap(w, k[i].kek, key) != 0) {
			say(V.why, sizeof V.why, "the %s's wrap of the key is "
			    "damaged", k[i].what);
			continue;
		}
		log_info("unlock: by the %s", k[i].what);
		rc = open_with(key, err, errlen) == 0 ? 1 : -1;
	}
	sodium_memzero(&ws, sizeof ws);
out:
	if (key != NULL)
		sodium_free(key);
	sources_wipe(k);
	if (rc == 0) {
		log_info("locked: %s", V.why);
		notify_status();
	}
	return rc;
}

int
vault_attempt_allowed(char *err, size_t errlen)
{
	int64_t now = mono_ms();

	if (now < V.not_before) {
		say(err, errlen, "too soon after a wrong passphrase: wait a second");
		return VAULT_EBUSY;
	}
	return VAULT_OK;
}

void
vault_attempt_failed(void)
{
	V.not_before = mono_ms() + RETRY_MS;
}

int
vault_unlock(const char *pass, size_t len, char *err, size_t errlen)
{
	const struct store_wrap *w;
	struct wraps ws;
	uint8_t *key = NULL, kek[32];
	int sealed, rc, r;

	err[0] = '\0';
	if (V.open) {
		say(err, errlen, "already unlocked");
		return VAULT_ESTATE;
	}
	if (pass == NULL || len == 0) {
		say(err, errlen, "the passphrase is empty");
		return VAULT_EINVAL;
	}
	if ((rc = vault_attempt_allowed(err, errlen)) != VAULT_OK)
		return rc;
	if ((sealed = store_sealed(V.st)) < 0) {
		say(err, errlen, "store: %s", store_errmsg(V.st));
		return VAULT_EINTERNAL;
	}
	if (!sealed)
		return seal_new(pass, len, err, errlen) == 0 ? VAULT_OK :
		    VAULT_EINTERNAL;
	if (wraps_load(V.st, &ws) != 0) {
		say(err, errlen, "store: %s", store_errmsg(V.st));
		return VAULT_EINTERNAL;
	}
	if ((w = wraps_find(&ws, STORE_WRAP_PASSPHRASE, NULL)) == NULL) {
		say(err, errlen, "no passphrase is set for this state directory: "
		    "it is unlocked by its %s", V.cfg->unlock.key_file != NULL ?
		    "key file" : "systemd credential");
		rc = VAULT_ESTATE;
		goto out;
	}
	if ((key = sodium_malloc(32)) == NULL) {
		say(err, errlen, "out of memory");
		rc = VAULT_EINTERNAL;
		goto out;
	}
	if ((r = vk_kdf(kek, pass, len, w)) != 0) {
		say(err, errlen, r == -2 ? "the passphrase's stored Argon2id "
		    "limits are out of range: damaged vault" :
		    "out of memory for Argon2id");
		rc = VAULT_EINTERNAL;
		goto out;
	}
	if (vk_unwrap(w, kek, key) != 0) {
		/* Never logged with the passphrase or its length. */
		log_warnx("unlock: wrong passphrase");
		vault_attempt_failed();
		say(err, errlen, "wrong passphrase");
		rc = VAULT_EWRONG;
		goto out;
	}
	log_info("unlock: by passphrase");
	rc = open_with(key, err, errlen) == 0 ? VAULT_OK : VAULT_EINTERNAL;
out:
	sodium_memzero(kek, sizeof kek);
	sodium_memzero(&ws, sizeof ws);
	if (key != NULL)
		sodium_free(key);
	return rc;
}

struct keep_ctx {
	const struct vk_source *k;
};

static int
keep_present(const struct store_wrap *w, void *arg)
{
	const struct vk_source *k = ((struct keep_ctx *)arg)->k;

	if (w->kind != STORE_WRAP_KEY)
		return 1;
	for (int i = 0; i < 2; i++)
		if (k[i].present &&
		    sodium_memcmp(k[i].id, w->key_id, STORE_KEY_ID_BYTES) == 0)
			return 1;
	return 0;
}

int
vault_passphrase(const char *old, size_t oldlen, const char *new, size_t newlen,
    int forget_keys, char *err, size_t errlen)
{
	const struct store_wrap *w;
	struct store_wrap nw;
	struct wraps ws;
	struct vk_source k[2];
	struct keep_ctx kc;
	uint8_t *key = NULL, kek[32];
	int rc = VAULT_EINTERNAL, r;

	err[0] = '\0';
	if (!V.open) {
		say(err, errlen, "unlock first");
		return VAULT_ESTATE;
	}
	if (new == NULL || newlen == 0) {
		say(err, errlen, "the new passphrase is empty");
		return VAULT_EINVAL;
	}
	if ((r = vault_attempt_allowed(err, errlen)) != VAULT_OK)
		return r;
	memset(k, 0, sizeof k);
	if (wraps_load(V.st, &ws) != 0 || (key = sodium_malloc(32)) == NULL) {
		say(err, errlen, "store: %s", store_errmsg(V.st));
		goto out;
	}
	/*
	 * The data key comes from the old passphrase when one is set (the
	 * caller must know it), else from a source present now.  The store
	 * holds it too, but re-deriving proves the caller's right to it.
	 */
	if ((w = wraps_find(&ws, STORE_WRAP_PASSPHRASE, NULL)) != NULL) {
		if (old == NULL || oldlen == 0) {
			say(err, errlen, "give the current passphrase");
			rc = VAULT_EINVAL;
			goto out;
		}
		if ((r = vk_kdf(kek, old, oldlen, w)) != 0) {
			say(err, errlen, "Argon2id failed");
			goto out;
		}
		if (vk_unwrap(w, kek, key) != 0) {
			log_warnx("passphrase: the current passphrase given is wrong");
			vault_attempt_failed();
			say(err, errlen, "wrong passphrase");
			rc = VAULT_EWRONG;
			goto out;
		}
	} else {
		const struct store_wrap *kw = NULL;

		sources(k, NULL, 0);
		for (int i = 0; i < 2 && kw == NULL; i++)
			if (k[i].present &&
			    (kw = wraps_find(&ws, STORE_WRAP_KEY, k[i].id)) != NULL &&
			    vk_unwrap(kw, k[i].kek, key) != 0)
				kw = NULL;
		if (kw == NULL) {
			say(err, errlen, "no passphrase is set and no key source "
			    "at hand unwraps the key");
			rc = VAULT_ESTATE;
			goto out;
		}
	}
	if (passphrase_wrap(&nw, new, newlen, key) != 0) {
		say(err, errlen, "out of memory for Argon2id");
		goto out;
	}
	if (store_begin(V.st) != 0 || store_wrap_put(V.st, &nw) != 0)
		goto dberr;
	if (forget_keys) {
		sources(k, NULL, 0);
		kc.k = k;
		if ((r = store_wrap_prune(V.st, keep_present, &kc)) < 0)
			goto dberr;
		log_info("passphrase: %d key wraps forgotten", r);
	}
	if (store_commit(V.st) != 0)
		goto dberr;
	/* The old wrap's page: gone from the file and the WAL. */
	if (store_checkpoint(V.st) < 0)
		log_warnx("store: checkpoint: %s", store_errmsg(V.st));
	log_info("passphrase: changed");
	rc = VAULT_OK;
	goto out;
dberr:
	say(err, errlen, "store: %s", store_errmsg(V.st));
	store_rollback(V.st);
out:
	sodium_memzero(kek, sizeof kek);
	sodium_memzero(&ws, sizeof ws);
	sodium_memzero(&nw, sizeof nw);
	sources_wipe(k);
	if (key != NULL)
		sodium_free(key);
	return rc;
}

/* Whether the credential file is there (not read: status is cheap). */
static int
credential_present(void)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];

	if (V.cfg->unlock.credential == NULL || dir == NULL || *dir == '\0')
		return 0;
	snprintf(path, sizeof path, "%s/%s", dir, V.cfg->unlock.credential);
	return access(path, R_OK) == 0;
}

void
vault_status(struct vault_status *s)
{
	struct wraps ws;
	int sealed;

	memset(s, 0, sizeof *s);
	s->open = V.open;
	s->credential = credential_present();
	s->key_file = V.cfg->unlock.key_file != NULL;
	if (wraps_load(V.st, &ws) == 0) {
		s->passphrase = wraps_find(&ws, STORE_WRAP_PASSPHRASE, NULL) != NULL;
		for (int i = 0; i < ws.n; i++)
			s->key_wraps += ws.w[i].kind == STORE_WRAP_KEY;
	}
	sodium_memzero(&ws, sizeof ws);
	if (V.open) {
		s->state = "open";
		return;
	}
	sealed = store_sealed(V.st);
	if (sealed == 1)
		s->state = "locked";
	else
		s->state = store_unused(V.st) == 1 ? "new" : "plaintext";
	snprintf(s->why, sizeof s->why, "%s", V.why);
}

void
vault_status_line(char *buf, size_t len)
{
	if (V.open)
		engine_status_line(buf, len);
	else
		snprintf(buf, len, "locked: %s", V.why);
}

int
vault_replaceable(char *err, size_t errlen)
{
	int r = store_unused(V.st);

	if (r == 1)
		return 1;
	if (r == 0)
		say(err, errlen, "the state directory %s is not empty (it has "
		    "contacts, messages or a card handed out): restore into an "
		    "empty one", V.cfg->state_dir);
	else
		say(err, errlen, "store: %s", store_errmsg(V.st));
	return r;
}

void
vault_close_for_restore(void)
{
	engine_down();
	store_close(V.st);
	V.st = NULL;
}

int
vault_reopen(const uint8_t key[32], char *err, size_t errlen)
{
	if ((V.st = store_open(V.dbpath, err, errlen)) == NULL)
		return -1;
	return open_with(key, err, errlen);
}

void
vault_shutdown(void)
{
	engine_down();
	if (V.st != NULL) {
		store_checkpoint(V.st);
		store_close(V.st);
	}
	V.st = NULL;
	if (V.lockfd != -1)
		close(V.lockfd);	/* the lock goes with it */
	V.lockfd = -1;
}
