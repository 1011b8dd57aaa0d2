/* file_int.h: what file.c, file_out.c and file_in.c share — transfer states, paths, the messages and notes they all send. */
#ifndef VEILD_FILE_INT_H
#define VEILD_FILE_INT_H

#include "core.h"
#include "store_file.h"

/* A transfer's state as stored (store_file.state). */
enum file_state {
	FS_SENDING = 1,		/* out: chunks go, a window at a time */
	FS_SENT = 2,		/* out: every chunk arrived, the verdict has not */
	FS_RECEIVING = 3,	/* in: chunks come */
	FS_VERIFYING = 4,	/* in: every chunk is here, the hash is checked */
	FS_PLACING = 5,		/* in: verified; moving to path in files.dir */
	FS_DONE = 6,
	FS_FAILED = 7
};

/* What a file_wire row's idx says besides a chunk index. */
#define FILE_WIRE_OFFER	(-1)
#define FILE_WIRE_END	(-2)

/* Chunks of one transfer in the outbox at once: 16 of about 64 KiB. */
#define FILE_WINDOW	16
/* Bytes read per loop pass when copying or hashing a file. */
#define FILE_STEP	(1 << 20)
/* What a file counts against a quota at least: one block. */
#define FILE_MIN_COST	4096

/* file.c */
int	file_active(int state);
const char *file_status_text(int status);
/* outgoing/<id> (or its .tmp), incoming/<contact>-<id>.part */
void	file_spool_path(const uint8_t xfer[STORE_XFER_BYTES], int tmp, char *out,
	    size_t len);
void	file_part_path(int64_t contact_id, const uint8_t xfer[STORE_XFER_BYTES],
	    char *out, size_t len);
const char *file_dir(void);			/* files.dir as used */
uint64_t file_nchunks(const struct store_file *f);
/* Writes the row back (updated = now). */
int	file_save(struct store_file *f);
/* A transfer notification; progress at most every few hundred ms unless
 * force (a state change). */
void	file_note(const struct store_file *f, int force);
/* ACKs a FILE message (dup: a copy, so answer at a resync landmark). */
int	file_ack(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES], int dup);
/* Queues an END for transfer xfer to c; track: it belongs to one of our
 * outgoing transfers (a file_wire row). */
int	file_send_end(struct contact *c, const uint8_t xfer[STORE_XFER_BYTES],
	    uint8_t status, int track);
/* The body of the "a file came" message kept for message.receive. */
int	file_rx_body(const struct store_file *f, uint8_t **body, size_t *len);

/* file_out.c */
int	file_out_pump(struct contact *c, struct store_file *f);
void	file_out_acked(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES]);
void	file_out_end(struct contact *c, struct store_file *f, uint8_t status);
int	file_out_cancel(struct contact *c, struct store_file *f);
void	file_out_start(void);
void	file_out_shutdown(void);

/* file_in.c */
void	file_in_offer(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
	    const struct veil_file_msg *m);
void	file_in_chunk(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
	    const struct veil_file_msg *m);
/* The transfer ends here with status (and the sender is told if tell). */
int	file_in_fail(struct store_file *f, uint8_t status, int tell);
/* Verifies and places a transfer whose chunks are all here. */
void	file_in_resume(const struct store_file *f);
void	file_in_shutdown(void);

#endif
