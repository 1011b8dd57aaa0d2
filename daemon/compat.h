/* compat.h: what the daemon needs from BSD headers that glibc lacks. */
#ifndef VEILD_COMPAT_H
#define VEILD_COMPAT_H

#include <sys/queue.h>

#ifndef TAILQ_FOREACH_SAFE	/* glibc's sys/queue.h lacks it */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

#endif /* VEILD_COMPAT_H */
