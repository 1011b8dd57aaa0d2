/* methods_vault.c: the JSON-RPC methods of encryption at rest and backups (unlock, passphrase, backup.*), and the table served while veild is locked. */
#include <unistd.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include <config.h>	/* autoconf's */

#include "backup.h"
#include "bkkey.h"
#include "methods.h"
#include "vault.h"

#define LOCKED_MAX	64

/* A secret param's text is wiped in the parsed request once used (the
 * request line itself is freed by control.c without being wiped). */
static void
wipe_param(struct rpc_call *call, const char *name)
{
	json_t *v = json_object_get(rpc_call_params(call), name);

	if (json_is_string(v))
		sodium_memzero((char *)(uintptr_t)json_string_value(v),
		    json_string_length(v));
}

static int
vault_code(int err)
{
	switch (err) {
	case VAULT_EWRONG:	return RPC_ERR_DENIED;
	case VAULT_EBUSY:	return RPC_ERR_BUSY;
	case VAULT_ESTATE:	return RPC_ERR_STATE;
	case VAULT_EINVAL:	return RPC_INVALID_PARAMS;
	default:		return RPC_INTERNAL_ERROR;
	}
}

static int
backup_code(int err)
{
	switch (err) {
	case BACKUP_EINVAL:	return RPC_INVALID_PARAMS;
	case BACKUP_EWRONG:	return RPC_ERR_DENIED;
	case BACKUP_EFORMAT:	return RPC_ERR_BAD_BACKUP;
	case BACKUP_ESTATE:	return RPC_ERR_STATE;
	case BACKUP_EBUSY:	return RPC_ERR_BUSY;
	default:		return RPC_INTERNAL_ERROR;
	}
}

void
methods_vault_status(json_t *o)
{
	struct vault_status v;

	vault_status(&v);
	json_object_set_new(o, "locked", json_boolean(!v.open));
	json_object_set_new(o, "unlock", json_pack("{s:b, s:b, s:b, s:i}",
	    "passphrase", v.passphrase, "credential", v.credential,
	    "key_file", v.key_file, "keys", v.key_wraps));
}

static int
m_status_locked(struct rpc_call *call)
{
	struct vault_status v;
	int verbose = 0;
	json_t *o;

	/* Nothing more to show with verbose: no identifier is in use. */
	if (rpc_param_bool(call, "verbose", 0, &verbose) < 0)
		return -1;
	vault_status(&v);
	o = json_pack("{s:s, s:b, s:s, s:s}", "version", PACKAGE_VERSION,
	    "locked", 1, "state", v.state, "why", v.why);
	if (o == NULL)
		return rpc_error(call, RPC_INTERNAL_ERROR, "out of memory");
	methods_vault_status(o);
	return rpc_reply(call, o);
}

static int
m_locked(struct rpc_call *call)
{
	struct vault_status v;

	vault_status(&v);
	return rpc_error(call, RPC_ERR_LOCKED, "veild is locked (%s): %s",
	    v.state, v.why);
}

int
m_unlock(struct rpc_call *call)
{
	const char *pass = NULL;
	char err[256];
	int rv;

	if (rpc_param_string(call, "passphrase", 1, &pass) < 0)
		return -1;
	rv = vault_unlock(pass, strlen(pass), err, sizeof err);
	wipe_param(call, "passphrase");
	if (rv != VAULT_OK)
		return rpc_error(call, vault_code(rv), "%s", err);
	return rpc_reply(call, json_pack("{s:b}", "locked", 0));
}

int
m_passphrase(struct rpc_call *call)
{
	const char *old = NULL, *new = NULL;
	int forget = 0, rv;
	char err[256];

	if (rpc_param_string(call, "old", 0, &old) < 0 ||
	    rpc_param_string(call, "new", 1, &new) < 0 ||
	    rpc_param_bool(call, "forget_keys", 0, &forget) < 0) {
		wipe_param(call, "old");
		wipe_param(call, "new");
		return -1;
	}
	rv = vault_passphrase(old, old != NULL ? strlen(old) : 0, new,
	    strlen(new), forget, err, sizeof err);
	wipe_param(call, "old");
	wipe_param(call, "new");
	if (rv != VAULT_OK)
		return rpc_error(call, vault_code(rv), "%s", err);
	return rpc_reply(call, NULL);
}

static json_t *
result_json(const struct backup_result *r)
{
	json_t *o = json_pack("{s:I, s:I, s:I, s:I}", "contacts",
	    (json_int_t)r->contacts, "outbox", (json_int_t)r->outbox,
	    "unread", (json_int_t)r->unread, "bytes", (json_int_t)r->bytes);

	if (o != NULL && r->path[0] != '\0')
		json_object_set_new(o, "path", json_string(r->path));
	return o;
}

int
m_backup_create(struct rpc_call *call)
{
	const char *pass = NULL, *pk = NULL;
	struct backup_result r;
	struct backup_key k;
	uint8_t pkb[BKKEY_BYTES];
	char err[256];
	int fd, rv;

	if (rpc_param_string(call, "passphrase", 0, &pass) < 0 ||
	    rpc_param_string(call, "public_key", 0, &pk) < 0) {
		wipe_param(call, "passphrase");
		return -1;
	}
	memset(&k, 0, sizeof k);
	if ((pass == NULL) == (pk == NULL)) {
		wipe_param(call, "passphrase");
		return rpc_error(call, RPC_INVALID_PARAMS, "give a passphrase or "
		    "a public_key, one of them");
	}
	if (pk != NULL) {
		if (bkkey_pk_decode(pk, pkb) != 0)
			return rpc_error(call, RPC_INVALID_PARAMS, "public_key: "
			    "not a backup public key (veilbk:...)");
		k.public_key = pkb;
	} else {
		if (*pass == '\0')
			return rpc_error(call, RPC_INVALID_PARAMS,
			    "passphrase: empty");
		k.passphrase = pass;
		k.passlen = strlen(pass);
	}
	if ((fd = rpc_call_take_fd(call)) == -1) {
		wipe_param(call, "passphrase");
		return rpc_error(call, RPC_INVALID_PARAMS, "no file: pass the "
		    "open backup file along with the request (SCM_RIGHTS), as "
		    "veilctl backup create does");
	}
	memset(&r, 0, sizeof r);
	rv = backup_create(fd, &k, &r, err, sizeof err);
	close(fd);
	wipe_param(call, "passphrase");
	if (rv != BACKUP_OK)
		return rpc_error(call, backup_code(rv), "%s", err);
	return rpc_reply(call, result_json(&r));
}

int
m_backup_restore(struct rpc_call *call)
{
	const char *pass = NULL, *code = NULL, *newpass = NULL;
	struct backup_result r;
	struct backup_key k;
	uint8_t sk[BKKEY_BYTES];
	char err[256];
	int fd, rv;

	memset(&k, 0, sizeof k);
	if (rpc_param_string(call, "passphrase", 0, &pass) < 0 ||
	    rpc_param_string(call, "recovery_key", 0, &code) < 0 ||
	    rpc_param_string(call, "new_passphrase", 0, &newpass) < 0) {
		rv = -1;
		goto wipe;
	}
	if ((pass == NULL) == (code == NULL)) {
		rv = rpc_error(call, RPC_INVALID_PARAMS, "give the backup's "
		    "passphrase or its recovery_key, one of them");
		goto wipe;
	}
	if (code != NULL) {
		switch (bkkey_code_decode(code, sk)) {
		case 0:
			break;
		case -2:
			rv = rpc_error(call, RPC_ERR_DENIED, "recovery_key: a "
			    "typo (its checksum does not match)");
			goto wipe;
		default:
			rv = rpc_error(call, RPC_INVALID_PARAMS, "recovery_key: "
			    "not a recovery code (VRK1-...)");
			goto wipe;
		}
		k.secret_key = sk;
	} else {
		k.passphrase = pass;
		k.passlen = strlen(pass);
	}
	if ((fd = rpc_call_take_fd(call)) == -1) {
		rv = rpc_error(call, RPC_INVALID_PARAMS, "no file: pass the open "
		    "backup file along with the request (SCM_RIGHTS), as "
		    "veilctl backup restore does");
		goto wipe;
	}
	memset(&r, 0, sizeof r);
	rv = backup_restore(fd, &k, newpass, newpass != NULL ? strlen(newpass) :
	    0, &r, err, sizeof err);
	close(fd);
	if (rv != BACKUP_OK)
		rv = rpc_error(call, backup_code(rv), "%s", err);
	else
		rv = rpc_reply(call, result_json(&r));
wipe:
	sodium_memzero(sk, sizeof sk);
	wipe_param(call, "passphrase");
	wipe_param(call, "recovery_key");
	wipe_param(call, "new_passphrase");
	return rv;
}

int
m_backup_now(struct rpc_call *call)
{
	struct backup_result r;
	char err[256];
	int rv;

	memset(&r, 0, sizeof r);
	if ((rv = backup_now(&r, err, sizeof err)) != BACKUP_OK)
		return rpc_error(call, backup_code(rv), "%s", err);
	return rpc_reply(call, result_json(&r));
}

/* The locked table: methods_table's names and params, other handlers. */
const struct rpc_method *
methods_locked_table(void)
{
	static struct rpc_method t[LOCKED_MAX + 1];
	static const struct {
		const char	*name;
		int		(*fn)(struct rpc_call *);
	} allowed[] = {
		{ "status",		m_status_locked },
		{ "unlock",		m_unlock },
		{ "backup.restore",	m_backup_restore },
	};
	size_t i, j;

	if (t[0].name != NULL)
		return t;
	for (i = 0; i < LOCKED_MAX && methods_table[i].name != NULL; i++) {
		t[i] = methods_table[i];
		t[i].fn = m_locked;
		for (j = 0; j < sizeof allowed / sizeof allowed[0]; j++)
			if (strcmp(t[i].name, allowed[j].name) == 0)
				t[i].fn = allowed[j].fn;
	}
	return t;
}
