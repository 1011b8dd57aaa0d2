/* backup.h: encrypted backups of the state — written on request or on a schedule, restored into an empty state directory. */
#ifndef VEILD_BACKUP_H
#define VEILD_BACKUP_H

#include <stddef.h>
#include <stdint.h>

/* How a backup file's key is kept (one of the two). */
struct backup_key {
	const char	*passphrase;	/* Argon2id (unlock.kdf's cost) */
	size_t		 passlen;
	const uint8_t	*public_key;	/* create: sealed to it */
	const uint8_t	*secret_key;	/* restore: its recovery key */
};

enum backup_err {
	BACKUP_OK = 0,
	BACKUP_EINVAL = -1,	/* bad argument, not a regular file */
	BACKUP_EWRONG = -2,	/* wrong passphrase or recovery key */
	BACKUP_EFORMAT = -3,	/* not a backup, truncated, tampered, newer */
	BACKUP_ESTATE = -4,	/* locked, or the state directory is not empty */
	BACKUP_EBUSY = -5,	/* too soon after a wrong passphrase */
	BACKUP_EINTERNAL = -6	/* store, memory, I/O */
};

struct backup_result {
	int64_t		 contacts, outbox, unread;
	uint64_t	 bytes;
	char		 path[4096];	/* backup_now: the file written */
};

/*
 * Writes a backup of the running daemon's state to fd (a regular file,
 * written from its current offset; the caller renames it into place):
 * the identity, every contact with its keys, the outbox, unread messages
 * and the dedupe record of read ones, processed requests, cards, and the
 * configuration file's text.  BACKUP_OK or an error with err.
 */
int	backup_create(int fd, const struct backup_key *k,
	    struct backup_result *r, char *err, size_t errlen);
/*
 * Restores the backup read from fd into this daemon's state directory,
 * which must be unused (vault_replaceable): the file is decrypted and
 * checked to its end into a new database beside the old one, and only
 * then renamed over it, so any error leaves everything as it was.  The
 * restored state is unlocked by new_pass (if given) and by the credential
 * or key file present; every established contact gets a reset
 * (protocol.md 6.1) once the engine runs.
 */
int	backup_restore(int fd, const struct backup_key *k, const char *new_pass,
	    size_t new_passlen, struct backup_result *r, char *err,
	    size_t errlen);
/* A scheduled backup now (backup.dir, sealed to backup.public_key). */
int	backup_now(struct backup_result *r, char *err, size_t errlen);

/* The configuration file whose text a backup carries (veild -c). */
void	backup_set_config_path(const char *path);

/* The schedule (an engine module: runs while unlocked). */
int	backup_init(void);
void	backup_shutdown(void);

#endif
