/* veild JSON-RPC 2.0: framing, validation, method dispatch, deferred replies, notifications. */
#ifndef VEILD_RPC_H
#define VEILD_RPC_H

#include <sys/types.h>

#include <jansson.h>

/*
 * Wire format: one JSON-RPC 2.0 request per line (LF-terminated, at most
 * CONTROL_LINE_MAX bytes), one reply per line.  Batches (JSON arrays) are
 * not supported: they get a single -32600 error.  Requests without "id" are
 * notifications: the handler runs, nothing is sent back.  Unknown request
 * members are rejected (-32600) so that typos such as "param" are not
 * silently ignored.
 */

/* Standard JSON-RPC 2.0 codes. */
#define RPC_PARSE_ERROR		-32700	/* invalid JSON, NUL bytes, bad UTF-8 */
#define RPC_INVALID_REQUEST	-32600	/* not a request object, or too large */
#define RPC_METHOD_NOT_FOUND	-32601
#define RPC_INVALID_PARAMS	-32602
#define RPC_INTERNAL_ERROR	-32603
/* Application codes (the JSON-RPC server range). */
#define RPC_ERR_NOT_FOUND	-32000	/* no such contact / message */
#define RPC_ERR_EXISTS		-32001	/* contact name already taken */
#define RPC_ERR_STATE		-32002	/* not allowed in the current state */
#define RPC_ERR_TRANSPORT	-32003	/* transport down, try later */
#define RPC_ERR_TOO_LARGE	-32004	/* message or field too large */
#define RPC_ERR_BUSY		-32005	/* too many clients / calls */
#define RPC_ERR_STORAGE		-32006	/* the disk takes no changes: full, read-only, damaged */
#define RPC_ERR_LOCKED		-32007	/* veild is locked: veilctl unlock */
#define RPC_ERR_DENIED		-32008	/* wrong passphrase or recovery key */
#define RPC_ERR_BAD_BACKUP	-32009	/* not a backup, truncated, tampered, newer */

struct rpc_call;		/* one request being handled; opaque */
struct rpc_conn;		/* rpc state of one control connection; opaque */
struct ctl_conn;		/* see control.h */

/*
 * A handler answers exactly once: rpc_reply() or rpc_error(), now or later.
 *  - Synchronous: call rpc_reply/rpc_error before returning.
 *  - Deferred: call rpc_defer() and return; keep the call pointer and answer
 *    later (e.g. message.receive {wait}).  If the client disconnects first,
 *    the cancel callback runs (on the loop thread, never from inside
 *    rpc_reply/rpc_notify/a handler) and the call is freed right after it:
 *    the owner must forget the pointer there.
 * The return value is only checked for "< 0 without a reply", which becomes
 * -32603; a handler that returns without answering and without deferring
 * also gets -32603.  Typical: `return rpc_error(call, ...);`.
 */
/*
 * A method and the names of the params it accepts, comma-separated ("" for
 * none): rpc.c answers any other param with -32602 before the handler
 * runs, so a typo such as {"wiat": 30} never passes as "no wait".
 */
struct rpc_method {
	const char	*name;
	int		(*fn)(struct rpc_call *);
	const char	*params;
};

/* table: the methods served besides the built-in subscribe/unsubscribe
 * (which take precedence); terminated by a NULL name, not copied. */
void	rpc_init(const struct rpc_method *table);
/* Cancels nothing by itself: call control_shutdown() first, which closes
 * every connection and with it cancels every deferred call. */
void	rpc_shutdown(void);

/* Sends {"result": result} (NULL means {}) and steals result's reference.
 * Returns 0, or -1 if the call was already answered or its client is gone
 * (result is released either way).  Frees a deferred call. */
int	rpc_reply(struct rpc_call *call, json_t *result);
/*
 * Answers with a result that fn writes as JSON text, in pieces, straight
 * into the client's output: a reply of several MiB (message.receive) is
 * never also held as a JSON tree or one string.  fn writes through
 * rpc_out_write() and returns 0, or -1 to give up; a reply cut short
 * cannot be taken back from the stream, so the client is then dropped.
 * Returns like rpc_reply().
 */
struct rpc_out;
int	rpc_reply_stream(struct rpc_call *call,
	    int (*fn)(void *arg, struct rpc_out *out), void *arg);
/* 0, or -1 once the client is gone (the rest is then not written). */
int	rpc_out_write(struct rpc_out *out, const void *buf, size_t len);

/* Sends {"error": {code, message}}; message is printf-formatted and cut at
 * 512 bytes.  It goes to the (authorised, local) client only, never to the
 * log.  Returns -1 so that handlers can `return rpc_error(...)`. */
int	rpc_error(struct rpc_call *call, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

typedef void (*rpc_cancel_cb)(struct rpc_call *call, void *arg);
/* Marks the call as answered later.  cancel (may be NULL) runs if the
 * client disconnects or the daemon shuts down before the answer. */
void	rpc_defer(struct rpc_call *call, rpc_cancel_cb cancel, void *arg);

/* The request's params: an object, never NULL ({} when absent); borrowed,
 * valid until the call is answered. */
json_t	*rpc_call_params(const struct rpc_call *call);
/* A descriptor the client passed with its request (SCM_RIGHTS), now the
 * caller's to close; -1 if none came or the client is gone. */
int	rpc_call_take_fd(struct rpc_call *call);
/* The client's uid and gid at connect; -1 if the client is gone. */
int	rpc_call_peer(const struct rpc_call *call, uid_t *uid, gid_t *gid);

/*
 * Params helpers.  Return 1 when the parameter is present and valid (*out
 * set), 0 when it is absent and not required (*out untouched), -1 after
 * answering -32602 naming the parameter (missing, wrong type, NUL inside a
 * string).  JSON null counts as absent.  Strings are borrowed from params.
 */
int	rpc_param_string(struct rpc_call *call, const char *name, int required,
	    const char **out);
int	rpc_param_bool(struct rpc_call *call, const char *name, int required,
	    int *out);
int	rpc_param_int(struct rpc_call *call, const char *name, int required,
	    json_int_t *out);

/*
 * Sends {"jsonrpc":"2.0","method":method,"params":params} to every
 * connection that subscribed to this event (subscribe {events?: [...]},
 * no list = all events).  Steals params' reference (NULL means {}).  Never
 * blocks: a client whose output backlog is over CONTROL_OUTPUT_MAX is
 * dropped instead.  Returns the number of clients it was queued for.
 * Events: message, contact.request, contact.state, delivery (rpc.c keeps
 * the list; subscribe rejects unknown names).
 */
int	rpc_notify(const char *method, json_t *params);

/* --- for control.c ------------------------------------------------------ */
struct rpc_conn *rpc_conn_new(struct ctl_conn *cc);
/* Cancels the connection's deferred calls, then frees it. */
void	rpc_conn_free(struct rpc_conn *rc);
/* One line without its LF (may hold NULs); handles it completely. */
void	rpc_conn_input(struct rpc_conn *rc, const char *line, size_t len);
/* Non-zero while the connection is subscribed or has a deferred call:
 * such a client may legitimately stay silent. */
int	rpc_conn_busy(const struct rpc_conn *rc);
/* Sends an error with "id": null (request too large, too many clients). */
void	rpc_conn_error(struct ctl_conn *cc, int code, const char *msg);

#endif
