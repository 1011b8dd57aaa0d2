/* txn.c: group commit — one store transaction per loop pass; frames, replies and notifications only after it. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core.h"
#include "log.h"

/*
 * Every write path brackets its work in txn_begin() / txn_commit(); the
 * first txn_begin() of a loop iteration opens one store transaction and
 * each bracket becomes a savepoint inside it, so a failing path undoes
 * only its own part.  The transaction commits (one fsync) on a zero
 * timer, after the iteration's other events: a burst of sends or received
 * frames costs one fsync, not one each.  Until then:
 *  - frames sealed inside wait in txq: a frame must never leave before the
 *    sequence counter it used is on disk, or a crash could reuse a nonce;
 *  - replies and notifications wait in the after-commit list: nothing is
 *    acknowledged before it is durable.
 */
struct queued {
	struct queued	*next;
	int64_t		 epoch;
	char		 topic[INBOX_MAX];
	int		 n;
	uint8_t		 frames[];
};

struct after {
	struct after	*next;
	void		(*fn)(void *, int);
	void		*arg;
};

#define GROUP_DEPTH	8
#define GROUP_OPS	512	/* commit early past this many brackets */

static struct {
	int		 open, depth, ops;
	int		 changes;	/* the store's count when the group opened */
	struct queued	*txq, **txq_tail;
	struct queued	**mark[GROUP_DEPTH];	/* txq_tail at each bracket */
	struct after	*after, **after_tail;
	struct event	*ev;
} G = { .txq_tail = &G.txq, .after_tail = &G.after };

void
txn_publish(int64_t epoch, const char *topic, const uint8_t *frames, int n)
{
	size_t sz = (size_t)n * eng_cfg()->frames.size;
	struct queued *q;

	if (!store_in_transaction(eng_store())) {
		publish_direct(epoch, topic, frames, n);
		return;
	}
	if ((q = malloc(sizeof *q + sz)) == NULL) {
		log_warnx("out of memory: frame dropped, the outbox will resend");
		return;
	}
	q->epoch = epoch;
	copystr(q->topic, topic, sizeof q->topic);
	q->n = n;
	memcpy(q->frames, frames, sz);
	q->next = NULL;
	*G.txq_tail = q;
	G.txq_tail = &q->next;
}

/* Frees (send = 0) or publishes (send = 1) the frames queued from *from on. */
static void
txq_drop(struct queued **from, int send)
{
	struct queued *q, *next;

	for (q = *from; q != NULL; q = next) {
		next = q->next;
		if (send)
			publish_direct(q->epoch, q->topic, q->frames, q->n);
		free(q);
	}
	*from = NULL;
	G.txq_tail = from;
}

void
after_commit(void (*fn)(void *, int), void *arg)
{
	struct after *a;

	if (!G.open) {
		fn(arg, 1);
		return;
	}
	if ((a = malloc(sizeof *a)) == NULL) {
		fn(arg, 0);
		return;
	}
	a->fn = fn;
	a->arg = arg;
	a->next = NULL;
	*G.after_tail = a;
	G.after_tail = &a->next;
}

int
txn_flush(void)
{
	struct after *a, *next;
	int ok;

	if (!G.open || G.depth > 0)
		return 0;
	ok = store_commit(eng_store()) == 0;
	if (!ok) {
		/* Once the disk's trouble is known and logged, each further
		 * failed commit is no news. */
		if (engine_store_problem() == NULL)
			log_warnx("store: commit failed: %s", store_errmsg(eng_store()));
		else
			log_debug("store: commit failed: %s", store_errmsg(eng_store()));
		eng_store_result(0);
		store_rollback(eng_store());
	} else if (store_changes(eng_store()) != G.changes)
		eng_store_result(1);	/* written, so the disk takes it */
	G.open = 0;
	G.ops = 0;
	if (G.ev != NULL)
		evtimer_del(G.ev);
	txq_drop(&G.txq, ok);
	a = G.after;
	G.after = NULL;
	G.after_tail = &G.after;
	for (; a != NULL; a = next) {
		next = a->next;
		a->fn(a->arg, ok);
		free(a);
	}
	return ok ? 0 : -1;
}

static void
group_fire(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	txn_flush();
}

int
txn_begin(void)
{
	if (G.depth >= GROUP_DEPTH) {
		log_warnx("store: transactions nested too deep");
		return -1;
	}
	if (!G.open) {
		if (store_begin(eng_store()) != 0) {
			eng_store_result(0);
			return -1;
		}
		G.open = 1;
		G.changes = store_changes(eng_store());
		if (G.ev != NULL)
			timer_add_ms(G.ev, 0);
	}
	if (store_savepoint(eng_store()) != 0)
		return -1;
	G.mark[G.depth++] = G.txq_tail;
	return 0;
}

/* Ends a bracket; durability comes with the group (txn_flush). */
int
txn_commit(void)
{
	if (G.depth == 0)
		return -1;
	if (store_release(eng_store()) != 0) {
		log_warnx("store: %s", store_errmsg(eng_store()));
		return -1;
	}
	G.depth--;
	if (G.depth == 0 && (++G.ops >= GROUP_OPS || G.ev == NULL))
		return txn_flush();
	return 0;
}

/* Undoes this bracket only: its writes and the frames it queued. */
int
txn_rollback(void)
{
	if (G.depth == 0)
		return 0;
	G.depth--;
	txq_drop(G.mark[G.depth], 0);
	return store_rollback_to(eng_store());
}

/* Until the loop runs (init), every bracket commits at once. */
int
txn_init(void)
{
	if ((G.ev = evtimer_new(eng_base(), group_fire, NULL)) == NULL)
		return -1;
	return 0;
}

void
txn_shutdown(void)
{
	txn_flush();
	if (G.ev != NULL) {
		event_free(G.ev);
		G.ev = NULL;
	}
}
