/* libFuzzer harness: the daemon's JSON-RPC input path (daemon/rpc.c) with a dummy method table. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "rpc.h"

/*
 * The input is split at LF into request lines, all fed to one connection
 * (as control.c would), so that subscribe, deferred calls and
 * notifications interact; the connection is then closed, which cancels
 * what is still deferred.  stub_control.c checks every line sent back.
 */
#define LINES_MAX 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rpc_call *pending;	/* the one deferred call, if any */

static int
m_echo(struct rpc_call *call)
{
	const char	*text = NULL;
	int		 flag = 0;
	json_int_t	 n = 0;

	if (rpc_param_string(call, "text", 1, &text) == -1 ||
	    rpc_param_bool(call, "flag", 0, &flag) == -1 ||
	    rpc_param_int(call, "n", 0, &n) == -1)
		return -1;
	return rpc_reply(call, json_pack("{s:s, s:b, s:I}", "text", text,
	    "flag", flag, "n", n));
}

static int
m_fail(struct rpc_call *call)
{
	const char	*text = "x";

	if (rpc_param_string(call, "text", 0, &text) == -1)
		return -1;
	/* The message quotes client bytes: it must stay valid UTF-8. */
	return rpc_error(call, RPC_ERR_STATE, "refused: %s", text);
}

static int
m_notify(struct rpc_call *call)
{
	const char	*event = "message";

	if (rpc_param_string(call, "event", 0, &event) == -1)
		return -1;
	rpc_notify(event, json_deep_copy(rpc_call_params(call)));
	return rpc_reply(call, NULL);
}

static void
cancel_cb(struct rpc_call *call, void *arg)
{
	(void)arg;
	if (call != pending)
		abort();
	pending = NULL;
}

static int
m_wait(struct rpc_call *call)
{
	if (pending != NULL)
		return rpc_error(call, RPC_ERR_BUSY, "already waiting");
	pending = call;
	rpc_defer(call, cancel_cb, NULL);
	return 0;
}

static int
m_wake(struct rpc_call *call)
{
	struct rpc_call	*p = pending;

	if (p != NULL) {
		pending = NULL;
		rpc_reply(p, json_pack("{s:b}", "woken", 1));
	}
	return rpc_reply(call, NULL);
}

static int
m_twice(struct rpc_call *call)
{
	/* The second answer must be refused, not sent or freed twice. */
	rpc_reply(call, NULL);
	return rpc_error(call, RPC_INTERNAL_ERROR, "second answer");
}

static int
m_silent(struct rpc_call *call)
{
	(void)call;
	return 0;
}

static const struct rpc_method methods[] = {
	{ "echo", m_echo, "a,b,k,s,x,name" },
	{ "fail", m_fail, "a" },
	{ "notify", m_notify, "a" },
	{ "wait", m_wait, "a" },
	{ "wake", m_wake, "" },
	{ "twice", m_twice, "a" },
	{ "silent", m_silent, "a" },
	{ NULL, NULL, NULL }
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* syslog without a /dev/log: lines are formatted, then dropped. */
	log_init(0, 1, "fuzz_rpc");
	rpc_init(methods);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rpc_conn	*rc;
	const uint8_t	*p = data, *end = data + size, *nl;
	char		*line;
	size_t		 len;
	int		 n = 0;

	/* Any non-NULL pointer: the stub never dereferences it. */
	if ((rc = rpc_conn_new((struct ctl_conn *)&pending)) == NULL)
		return 0;
	while (p < end && n++ < LINES_MAX) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		/* An exact-size copy: ASan sees any read past the line. */
		if ((line = malloc(len > 0 ? len : 1)) == NULL)
			break;
		memcpy(line, p, len);
		rpc_conn_input(rc, line, len);
		free(line);
		p += len + 1;
	}
	rpc_conn_free(rc);
	if (pending != NULL)
		abort();
	return 0;
}
