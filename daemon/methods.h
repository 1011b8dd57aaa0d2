/* methods.h: the JSON-RPC methods veild serves (methods.c does all the JSON; the engine speaks C). */
#ifndef VEILD_METHODS_H
#define VEILD_METHODS_H

#include "rpc.h"

struct event_base;

/* The table for rpc_init(), terminated by a NULL name. */
extern const struct rpc_method methods_table[];

/* Hooks the engine's events (notifications, waking receive calls). */
void	methods_init(struct event_base *base);
void	methods_shutdown(void);

#endif
