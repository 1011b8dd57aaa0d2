/* htab.h: intrusive chained hash tables keyed by 64 bits. */
#ifndef VEIL_HTAB_H
#define VEIL_HTAB_H

#include <stddef.h>
#include <stdint.h>

/*
 * Several records may share a key (one request can cover many topics; two
 * names can hash alike): a lookup returns the first, htab_next() the
 * following ones, and the caller compares what the key stands for.  A
 * zeroed table is a valid empty one.  Keys are mixed before they are
 * masked, so sequential numbers spread.
 */
struct hlink {
	struct hlink	*next;
	uint64_t	 key;
};

struct htab {
	struct hlink	**b;
	size_t		 cap;		/* power of two, or 0 */
	size_t		 n;
};

/* The record that holds the link ptr in its field. */
#define HLINK_OF(ptr, type, field)					\
	((type *)(void *)((char *)(ptr) - offsetof(type, field)))

/* -1 only when the table has no buckets yet and none can be had. */
int		 htab_add(struct htab *, struct hlink *, uint64_t key);
void		 htab_del(struct htab *, struct hlink *);
struct hlink	*htab_get(const struct htab *, uint64_t key);
struct hlink	*htab_next(const struct hlink *);
void		 htab_free(struct htab *);
/* FNV-1a of a string: for names nobody chooses to collide (topics we
 * made, ids we sent). */
uint64_t	 htab_str(const char *);

#endif
