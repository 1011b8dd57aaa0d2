/* htab.c: intrusive chained hash tables keyed by 64 bits (htab.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "htab.h"

uint64_t
htab_str(const char *s)
{
	uint64_t	 h = 1469598103934665603ULL;	/* FNV-1a */

	while (*s != '\0')
		h = (h ^ (uint8_t)*s++) * 1099511628211ULL;
	return h;
}

/* Request numbers are sequential and names are FNV: mix before masking. */
static size_t
htab_slot(const struct htab *h, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 17) & (h->cap - 1);
}

static int
htab_grow(struct htab *h)
{
	struct hlink	**nb, **ob = h->b, *l, *next;
	size_t			 ocap = h->cap, i;

	h->cap = ocap == 0 ? 16 : ocap * 2;
	if ((nb = calloc(h->cap, sizeof(*nb))) == NULL) {
		h->cap = ocap;
		return -1;
	}
	h->b = nb;
	for (i = 0; i < ocap; i++)
		for (l = ob[i]; l != NULL; l = next) {
			size_t s = htab_slot(h, l->key);

			next = l->next;
			l->next = nb[s];
			nb[s] = l;
		}
	free(ob);
	return 0;
}

int
htab_add(struct htab *h, struct hlink *l,
    uint64_t key)
{
	size_t	 s;

	/* A table that cannot grow still works, with longer chains. */
	if (h->n + 1 > h->cap && htab_grow(h) == -1 && h->cap == 0)
		return -1;
	s = htab_slot(h, key);
	l->key = key;
	l->next = h->b[s];
	h->b[s] = l;
	h->n++;
	return 0;
}

void
htab_del(struct htab *h, struct hlink *l)
{
	struct hlink	**pp;

	if (h->cap == 0)
		return;
	for (pp = &h->b[htab_slot(h, l->key)]; *pp != NULL;
	    pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			l->next = NULL;
			h->n--;
			return;
		}
}

struct hlink *
htab_get(const struct htab *h, uint64_t key)
{
	struct hlink	*l;

	if (h->cap == 0)
		return NULL;
	for (l = h->b[htab_slot(h, key)]; l != NULL; l = l->next)
		if (l->key == key)
			return l;
	return NULL;
}

struct hlink *
htab_next(const struct hlink *l)
{
	struct hlink	*n;

	for (n = l->next; n != NULL; n = n->next)
		if (n->key == l->key)
			return n;
	return NULL;
}

void
htab_free(struct htab *h)
{
	free(h->b);
	memset(h, 0, sizeof(*h));
}
