/* stub_engine.h: what fuzz_methods sets for, and runs of, its engine stub (fuzz/stub_engine.c). */
#ifndef FUZZ_STUB_ENGINE_H
#define FUZZ_STUB_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#define STUB_AFTER_MAX	64

struct stub_engine {
	int	 rv;		/* what engine operations return (enum engine_err) */
	int	 flags;		/* bits 0-1: contacts listed, bit 3: receive fails */
	int	 store_problem;	/* engine_store_problem() has something to say */
	int	 pending;	/* messages engine_receive hands out */
	uint8_t	 sink;		/* bytes read, so the reads are not optimised away */
	struct {
		void	(*fn)(void *, int);
		void	*arg;
	} after[STUB_AFTER_MAX];
	size_t	 nafter;
};

extern struct stub_engine stub;

/* Runs the after-commit callbacks queued so far, as committed or failed. */
void	stub_commit(int committed);
/* The engine's events (message, contact state, request, delivery). */
void	stub_events(void);

#endif
