/* libFuzzer harness: the params of every JSON-RPC method veild serves (daemon/methods.c over daemon/rpc.c), against a stub engine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "engine.h"
#include "log.h"
#include "methods.h"
#include "rpc.h"
#include "stub_engine.h"

/*
 * The input is records separated by LF, all on one connection (as
 * control.c would feed them), which is then closed.  A record is
 *   byte 0  the method: methods_table[i], subscribe, unsubscribe (mod);
 *           bit 7: a notification (no id)
 *   byte 1  the stub engine's behaviour for this call: bits 0-2 the
 *           engine's answer (0 OK, else an engine_err; 7 with bit 6 of
 *           byte 0: a quota), bit 3 receive
 *           fails, bit 4 the store reports trouble, bit 5 the commit
 *           fails, bit 6 the engine's events follow (they wake waiting
 *           receive calls), bit 7 the commit waits until the end
 *   rest    the params, as JSON text, put into the request as they are:
 *           text that is not JSON makes the whole line a parse error
 * so that each method's own checks of its params are reached with every
 * shape of value, and every reply is checked by fuzz/stub_control.c.
 */
#define RECORDS_MAX	32
#define LINE_MAX	(64 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static const char *names[64];
static size_t nnames;
static char line[LINE_MAX];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init(0, 1, "fuzz_methods");
	if ((base = event_base_new()) == NULL)
		abort();
	rpc_init(methods_table);
	methods_init(base);
	for (const struct rpc_method *m = methods_table; m->name != NULL &&
	    nnames < sizeof names / sizeof names[0] - 2; m++)
		names[nnames++] = m->name;
	names[nnames++] = "subscribe";
	names[nnames++] = "unsubscribe";
	return 0;
}

static const int answers[] = {
	ENGINE_OK, ENGINE_EINVAL, ENGINE_ENOENT, ENGINE_EEXIST, ENGINE_ESTATE,
	ENGINE_ETOOBIG, ENGINE_EINTERNAL, ENGINE_ESTORAGE, ENGINE_EQUOTA
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size, *nl;
	struct rpc_conn *rc;
	int n = 0, late = 0, dummy;
	size_t len, head;

	memset(&stub, 0, sizeof stub);
	if ((rc = rpc_conn_new((struct ctl_conn *)&dummy)) == NULL)
		return 0;
	while (p < end && n++ < RECORDS_MAX) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (len >= 2) {
			const char *m = names[(p[0] & 0x7f) % nnames];
			uint8_t f = p[1];
			char *copy;

			stub.rv = answers[(f & 7) == 7 && (p[0] & 0x40) ? 8 : f & 7];
			stub.flags = f;
			stub.store_problem = (f >> 4) & 1;
			if (p[0] & 0x80)
				head = (size_t)snprintf(line, sizeof line,
				    "{\"jsonrpc\":\"2.0\",\"method\":\"%s\"", m);
			else
				head = (size_t)snprintf(line, sizeof line,
				    "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\"", n, m);
			if (len > 2 && head + 11 + (len - 2) + 1 < sizeof line) {
				memcpy(line + head, ",\"params\":", 10);
				head += 10;
				memcpy(line + head, p + 2, len - 2);
				head += len - 2;
			}
			line[head++] = '}';
			/* An exact-size copy: ASan sees any read past the line. */
			if ((copy = malloc(head)) == NULL)
				break;
			memcpy(copy, line, head);
			rpc_conn_input(rc, copy, head);
			free(copy);
			if (f & 0x40)
				stub_events();
			if (f & 0x80)
				late = 1;
			else
				stub_commit(!(f & 0x20));
			event_base_loop(base, EVLOOP_NONBLOCK);
		}
		p += len + 1;
	}
	/* Replies still waiting for a commit: before the client goes, or
	 * after (their calls cancelled). */
	if (!late)
		stub_commit(1);
	rpc_conn_free(rc);
	stub_commit(1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
