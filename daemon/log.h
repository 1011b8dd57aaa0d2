/* veild logging: stderr in the foreground, journald or syslog otherwise. */
#ifndef VEILD_LOG_H
#define VEILD_LOG_H

#include <stdarg.h>

/*
 * The rule for every caller: never log a message body, a key (or anything
 * derived from one), a password or a display name.  Identifiers the broker
 * sees (client IDs, topics, contact IDs, message IDs) only at debug level.
 * A log line is something an administrator may paste into a bug report.
 */

/*
 * debug != 0: plain lines on stderr (veild -d).
 * Otherwise: "<N>line" on stderr when stderr is the journal stream systemd
 * announced in $JOURNAL_STREAM, else syslog(3) with ident and LOG_DAEMON.
 * verbose != 0 enables log_debug().  ident is kept, not copied.
 */
void	log_init(int debug, int verbose, const char *ident);
void	log_setverbose(int verbose);

/* Each writes one line with a single write(2) or syslog(3) call, so lines
 * from paho's thread do not interleave with the loop's.  Lines longer than
 * LOG_LINE_MAX bytes are truncated; control characters become '?'. */
#define LOG_LINE_MAX 1024

void	log_warn(const char *fmt, ...)		/* appends ": strerror(errno)" */
	    __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
void	log_debug(const char *fmt, ...)		/* only when verbose */
	    __attribute__((format(printf, 1, 2)));

/* Log at LOG_CRIT and exit(1).  fatal appends strerror(errno), fatalx does
 * not.  Meant for the loop thread; a NULL fmt logs only the errno text. */
void	fatal(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
