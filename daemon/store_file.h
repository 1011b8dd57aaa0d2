/* store_file.h: the rows of file transfers (daemon/file.c's state) in the store; conventions as in store.h. */
#ifndef VEILD_STORE_FILE_H
#define VEILD_STORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define STORE_XFER_BYTES	16
#define STORE_HASH_BYTES	32
#define STORE_FNAME_MAX		255	/* = VEIL_FILE_NAME_MAX */
#define STORE_PATH_MAX		4096

enum store_file_dir {
	STORE_FILE_OUT = 1,	/* we send it */
	STORE_FILE_IN = 2	/* a contact sends it */
};

/*
 * One transfer.  An outgoing one is known by its ID alone (we drew it);
 * an incoming one by (contact, ID), since the sender drew the ID.
 */
struct store_file {
	int		 dir;			/* enum store_file_dir */
	int64_t		 contact_id;
	uint8_t		 xfer[STORE_XFER_BYTES];
	char		 name[STORE_FNAME_MAX + 1];
	uint64_t	 size;
	uint8_t		 hash[STORE_HASH_BYTES];
	uint32_t	 chunk;			/* bytes of every chunk but the last */
	uint32_t	 next;			/* out: the next chunk to queue */
	uint32_t	 done;			/* out: chunks acknowledged; in: received */
	int		 state;			/* file.c's */
	int		 status;		/* enum veil_file_status, once ended */
	char		 path[STORE_PATH_MAX];	/* out: where it was sent from (shown
						 * only); in: where it landed */
	int64_t		 created, updated;
};
typedef int (*store_file_cb)(const struct store_file *, void *);

/* 1 added, 0 the transfer is there already, -1. */
int	store_file_add(struct store *, const struct store_file *f);
/* 1 found, 0, -1.  contact_id is ignored for STORE_FILE_OUT. */
int	store_file_get(struct store *, int dir, int64_t contact_id,
	    const uint8_t xfer[STORE_XFER_BYTES], struct store_file *out);
/* Writes next, done, state, status, path, updated.  1, 0 no such row, -1. */
int	store_file_update(struct store *, const struct store_file *f);
/* 1 deleted (with its chunks and wire rows), 0, -1. */
int	store_file_delete(struct store *, int dir, int64_t contact_id,
	    const uint8_t xfer[STORE_XFER_BYTES]);
/* Every transfer, outgoing first, each by creation; rows given, or -1. */
int	store_file_list(struct store *, store_file_cb cb, void *arg);

/* An incoming transfer's chunk idx is stored: 1 new, 0 seen before, -1. */
int	store_file_chunk_add(struct store *, int64_t contact_id,
	    const uint8_t xfer[STORE_XFER_BYTES], uint32_t idx);
/* Forgets the chunks of a transfer that ended. */
int	store_file_chunk_clear(struct store *, int64_t contact_id,
	    const uint8_t xfer[STORE_XFER_BYTES]);

/* An outbox message (msgid) carries part idx of outgoing transfer xfer
 * (a chunk index, or a negative file.c code for the OFFER and END). */
int	store_file_wire_add(struct store *, const uint8_t msgid[STORE_MSGID_BYTES],
	    const uint8_t xfer[STORE_XFER_BYTES], int64_t idx);
/* The row of msgid, removed: 1 (xfer and idx set), 0 none, -1. */
int	store_file_wire_take(struct store *, const uint8_t msgid[STORE_MSGID_BYTES],
	    uint8_t xfer[STORE_XFER_BYTES], int64_t *idx);
/* The outbox rows of xfer are not due before next_try: the transfer is
 * moving, so what is in flight is on its way, not lost.  Rows or -1. */
int	store_file_wire_delay(struct store *, const uint8_t xfer[STORE_XFER_BYTES],
	    int64_t next_try);
/* Calls cb with the msgid of every row of xfer (then drops them all):
 * the outbox rows of a transfer that ended before they arrived. */
int	store_file_wire_drain(struct store *, const uint8_t xfer[STORE_XFER_BYTES],
	    void (*cb)(const uint8_t msgid[STORE_MSGID_BYTES], void *), void *arg);

#endif
