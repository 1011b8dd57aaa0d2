/* Fuzz stub of the vault and the backups (daemon/vault.h, backup.h) for fuzz_methods: the outcome comes from the input, every argument is checked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "engine.h"
#include "stub_engine.h"
#include "vault.h"

static void
check_bytes(const char *s, size_t len)
{
	/* Reads every byte methods_vault.c claims is there. */
	volatile char sink = 0;

	if (s == NULL)
		abort();
	for (size_t i = 0; i < len; i++)
		sink ^= s[i];
	(void)sink;
}

static int
vault_outcome(char *err, size_t errlen)
{
	if (err == NULL || errlen == 0)
		abort();
	if (stub.rv == ENGINE_OK)
		return 0;
	snprintf(err, errlen, "stub error %d", stub.rv);
	return stub.rv == ENGINE_EINVAL ? VAULT_EINVAL : VAULT_EWRONG;
}

int
vault_unlock(const char *pass, size_t len, char *err, size_t errlen)
{
	check_bytes(pass, len);
	return vault_outcome(err, errlen);
}

int
vault_passphrase(const char *old, size_t oldlen, const char *new,
    size_t newlen, int forget_keys, char *err, size_t errlen)
{
	(void)forget_keys;
	if (old != NULL)
		check_bytes(old, oldlen);
	check_bytes(new, newlen);
	return vault_outcome(err, errlen);
}

void
vault_status(struct vault_status *out)
{
	memset(out, 0, sizeof *out);
	out->open = stub.rv == ENGINE_OK;
	out->state = out->open ? "open" : "locked";
}

static int
backup_outcome(struct backup_result *r, char *err, size_t errlen)
{
	if (r == NULL || err == NULL || errlen == 0)
		abort();
	if (stub.rv == ENGINE_OK) {
		r->contacts = 3;
		r->bytes = 4096;
		snprintf(r->path, sizeof r->path, "/var/lib/veil/backups/x.vbk");
		return BACKUP_OK;
	}
	snprintf(err, errlen, "stub error %d", stub.rv);
	return stub.rv == ENGINE_EINVAL ? BACKUP_EINVAL : BACKUP_EFORMAT;
}

int
backup_create(int fd, const struct backup_key *k, struct backup_result *r,
    char *err, size_t errlen)
{
	if (fd < 0 || k == NULL)
		abort();
	return backup_outcome(r, err, errlen);
}

int
backup_restore(int fd, const struct backup_key *k, const char *new_pass,
    size_t new_passlen, struct backup_result *r, char *err, size_t errlen)
{
	if (fd < 0 || k == NULL)
		abort();
	if (new_pass != NULL)
		check_bytes(new_pass, new_passlen);
	return backup_outcome(r, err, errlen);
}

int
backup_now(struct backup_result *r, char *err, size_t errlen)
{
	return backup_outcome(r, err, errlen);
}
