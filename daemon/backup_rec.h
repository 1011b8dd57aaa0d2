/* backup_rec.h: the records of a backup — one JSON object each, to and from the store's typed rows, every field checked on the way in. */
#ifndef VEILD_BACKUP_REC_H
#define VEILD_BACKUP_REC_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The record format (docs/protocol.md 9.2, "Records"); a reader refuses a
 * header with a larger one. */
#define BREC_FORMAT		1
#define BREC_CONFIG_MAX		(1u << 20)	/* veild.conf text */
#define BREC_ACCEPT_MAX		(4u << 20)	/* a responder's ACCEPT frames */
#define BREC_BODY_MAX		(4u << 20)	/* = VEIL_MESSAGE_MAX */

enum brec_type {
	BREC_HEADER, BREC_CONFIG, BREC_IDENTITY, BREC_META, BREC_CONTACT,
	BREC_CARD, BREC_OUTBOX, BREC_RX, BREC_SEEN, BREC_END, BREC_COUNT
};

struct brec {
	enum brec_type	 type;
	union {
		struct {
			int	 format;
			int	 wire;
			int64_t	 created;	/* ms */
		} header;
		struct {
			char	*text;		/* malloc'd */
		} config;
		struct {
			uint8_t	 pk[STORE_PK_BYTES];
			uint8_t	 sk[STORE_PK_BYTES];
		} identity;
		struct store_meta meta;
		struct {
			struct store_contact	 c;
			struct store_reset	 reset;	/* the peer's side only */
			uint8_t			*af;	/* malloc'd, or NULL */
			size_t			 aflen;
		} contact;
		struct store_inbox card;
		struct {
			struct store_outbox	 o;	/* body malloc'd */
		} outbox;
		struct {
			struct store_rx_row	 r;	/* body malloc'd */
		} rx;
		struct {
			uint8_t	 t1[STORE_PK_BYTES];
			int64_t	 contact_id;
			int64_t	 seen_at;
		} seen;
		struct {
			int64_t	 records;	/* before this one */
		} end;
	} u;
};

/* JSON text of r (malloc'd, *len set), or NULL when out of memory. */
char	*brec_encode(const struct brec *r, size_t *len);
/* Parses one record; every field is checked (types, lengths, ranges, no
 * unknown member).  0, or -1 with a reason in err (which names the
 * record type and field, never a value). */
int	brec_decode(const uint8_t *json, size_t len, struct brec *out,
	    char *err, size_t errlen);
/* Wipes secrets and frees what decode allocated. */
void	brec_free(struct brec *r);

#endif
