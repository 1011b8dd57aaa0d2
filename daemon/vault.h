/* vault.h: the state directory — its lock and database, the data key and how it is unlocked, and whether the engine runs. */
#ifndef VEILD_VAULT_H
#define VEILD_VAULT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct veild_config;

/*
 * veild starts locked: the state directory is locked (one daemon per
 * directory) and its database opened, but nothing secret can be read and
 * the engine (transports, timers) does not run.  Unlocking gets the data
 * key from one of (docs/protocol.md 9.1):
 *   - a systemd credential, $CREDENTIALS_DIRECTORY/<unlock.credential>;
 *   - a key file, unlock.key_file;
 *   - a passphrase, given with veilctl unlock (Argon2id).
 * The first two are tried at start (vault_auto_unlock); a passphrase comes
 * over the socket.  Each wraps the same data key (the vault rows of the
 * store), so changing the passphrase re-encrypts nothing but the wrap.  A
 * database not sealed yet (new, or from before encryption at rest) is
 * sealed in place by its first unlock.
 */
enum vault_err {
	VAULT_OK = 0,
	VAULT_EWRONG = -1,	/* wrong passphrase */
	VAULT_EBUSY = -2,	/* too soon after a wrong one */
	VAULT_ESTATE = -3,	/* not now (already unlocked, nothing set, ...) */
	VAULT_EINVAL = -4,	/* bad argument (an empty passphrase, ...) */
	VAULT_EINTERNAL = -5	/* store, memory, engine */
};

/* What status shows while locked (and the unlock sources when open). */
struct vault_status {
	int		 open;		/* the engine runs */
	const char	*state;		/* "open", "locked", "new", "plaintext" */
	int		 passphrase;	/* a passphrase wraps the key */
	int		 credential;	/* the credential is there */
	int		 key_file;	/* the key file is configured */
	int		 key_wraps;	/* keys (credentials, key files) enrolled */
	char		 why[256];	/* why still locked ("" when open) */
};

/* Locks the state directory and opens its database (migrating the schema).
 * cfg and base must outlive the vault.  0, or -1 with err. */
int	vault_init(struct event_base *base, const struct veild_config *cfg,
	    char *err, size_t errlen);
/* Unlocks with the credential or the key file when there is one and it
 * fits, and starts the engine: 1 open, 0 still locked (vault_status says
 * why), -1 on an error that must stop the daemon (err). */
int	vault_auto_unlock(char *err, size_t errlen);
/* A passphrase from veilctl unlock: for a sealed store, the one that
 * unwraps its key; for one not sealed yet, the new passphrase that seals
 * it.  Starts the engine.  VAULT_OK or an error with a sentence in err.
 * A wrong passphrase costs its Argon2id and makes the next attempt wait
 * a second; neither it nor its length is logged. */
int	vault_unlock(const char *pass, size_t len, char *err, size_t errlen);
/* Sets (old NULL when none is set) or changes the passphrase; the daemon
 * must be open.  forget_keys: drop every key wrap but those of the
 * sources present now. */
int	vault_passphrase(const char *old, size_t oldlen, const char *new,
	    size_t newlen, int forget_keys, char *err, size_t errlen);
void	vault_status(struct vault_status *out);
void	vault_status_line(char *buf, size_t len);
int	vault_is_open(void);
/* Stops the engine, closes the database, releases the lock. */
void	vault_shutdown(void);

/* --- for backup.c (restore) --------------------------------------------- */
struct store	*vault_store(void);
const char	*vault_state_dir(void);
/* Wraps a new data key for a restored database at path with what this
 * daemon unlocks by (the passphrase given, else the credential or key
 * file): the vault rows go into st (open, keyed with key, in a
 * transaction).  0, or -1 with err. */
int	vault_wrap_new(struct store *st, const uint8_t key[32],
	    const char *pass, size_t passlen, char *err, size_t errlen);
/* Whether a restore may replace the state: nothing of a user in it.
 * 1 yes, 0 no (err says why), -1. */
int	vault_replaceable(char *err, size_t errlen);
/* Stops the engine and closes the database (a restore will replace it);
 * then vault_reopen opens path's database (renamed into place by the
 * caller), unlocks it with key and starts the engine. */
void	vault_close_for_restore(void);
int	vault_reopen(const uint8_t key[32], char *err, size_t errlen);
/* The unlock rate limit, shared with a restore's passphrase: VAULT_OK or
 * VAULT_EBUSY; vault_attempt_failed() after a wrong one. */
int	vault_attempt_allowed(char *err, size_t errlen);
void	vault_attempt_failed(void);
/* Argon2id limits of a new passphrase (unlock.kdf). */
void	vault_kdf_limits(uint64_t *ops, uint64_t *mem);

#endif
