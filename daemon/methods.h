/* methods.h: the JSON-RPC methods veild serves (methods.c does all the JSON; the engine speaks C). */
#ifndef VEILD_METHODS_H
#define VEILD_METHODS_H

#include "rpc.h"

struct event_base;

/* The table for rpc_init(), terminated by a NULL name. */
extern const struct rpc_method methods_table[];
/* methods_vault.c: the same names while veild is locked: status, unlock
 * and backup.restore work, everything else answers RPC_ERR_LOCKED. */
const struct rpc_method *methods_locked_table(void);

/* methods_vault.c: unlock, passphrase, backup.* (in methods_table). */
int	m_unlock(struct rpc_call *);
int	m_passphrase(struct rpc_call *);
int	m_backup_create(struct rpc_call *);
int	m_backup_restore(struct rpc_call *);
int	m_backup_now(struct rpc_call *);
/* Adds "locked" and "unlock" (what unlocks the state directory) to a
 * status result. */
void	methods_vault_status(json_t *o);

/* Hooks the engine's events (notifications, waking receive calls). */
void	methods_init(struct event_base *base);
void	methods_shutdown(void);

#endif
