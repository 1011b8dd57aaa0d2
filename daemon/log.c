/* veild logging: where lines go, their priority, and how they stay one line. */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"

/*
 * Never log a message body, a key, a password or a display name; broker-
 * visible identifiers only through log_debug.  See log.h.
 */

enum log_dest {
	LOG_DEST_STDERR,	/* -d: plain lines for a human */
	LOG_DEST_JOURNAL,	/* stderr is systemd's journal stream */
	LOG_DEST_SYSLOG
};

/* Written once by log_init before any thread starts; read-only afterwards
 * apart from log_verbose, whose races are harmless (a line more or less). */
static enum log_dest	 log_dest = LOG_DEST_STDERR;
static volatile int	 log_verbose;

static int
log_stderr_is_journal(void)
{
	const char		*env;
	char			*end;
	unsigned long long	 dev, ino;
	struct stat		 st;

	/* systemd documents JOURNAL_STREAM=dev:ino; compare it with our stderr
	 * because the variable is inherited by children that redirect it. */
	if ((env = getenv("JOURNAL_STREAM")) == NULL || *env == '\0')
		return 0;
	errno = 0;
	dev = strtoull(env, &end, 10);
	if (errno != 0 || end == env || *end != ':')
		return 0;
	env = end + 1;
	ino = strtoull(env, &end, 10);
	if (errno != 0 || end == env || *end != '\0')
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(int debug, int verbose, const char *ident)
{
	log_verbose = verbose;
	if (debug)
		log_dest = LOG_DEST_STDERR;
	else if (log_stderr_is_journal())
		log_dest = LOG_DEST_JOURNAL;
	else {
		log_dest = LOG_DEST_SYSLOG;
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	}
}

void
log_setverbose(int verbose)
{
	log_verbose = verbose;
}

static const char *
log_journal_prefix(int pri)
{
	switch (pri) {
	case LOG_EMERG:
		return SD_EMERG;
	case LOG_ALERT:
		return SD_ALERT;
	case LOG_CRIT:
		return SD_CRIT;
	case LOG_ERR:
		return SD_ERR;
	case LOG_WARNING:
		return SD_WARNING;
	case LOG_NOTICE:
		return SD_NOTICE;
	case LOG_INFO:
		return SD_INFO;
	default:
		return SD_DEBUG;
	}
}

static void
log_emit(int pri, char *buf, size_t len)
{
	size_t		 i, off = 0;
	ssize_t		 n;

	/* A newline in an error text from a library or a peer must not forge
	 * a second log line. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < 0x20 || c == 0x7f)
			buf[i] = '?';
	}

	if (log_dest == LOG_DEST_SYSLOG) {
		buf[len] = '\0';
		syslog(pri, "%s", buf);
		return;
	}

	buf[len++] = '\n';
	while (off < len) {
		n = write(STDERR_FILENO, buf + off, len - off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return;
		}
		off += (size_t)n;
	}
}

/* Formats one line, with ": <errno text>" when errnum >= 0, and emits it.  errno
 * is preserved so that callers may log and then still inspect it. */
static void
__attribute__((format(printf, 3, 0)))
log_vline(int pri, int errnum, const char *fmt, va_list ap)
{
	/* Prefix, text, '\n' and '\0' in one buffer: one write per line. */
	char		 buf[4 + LOG_LINE_MAX + 2];
	const char	*prefix = "";
	size_t		 plen, len;
	int		 n, saved_errno = errno;

	if (log_dest == LOG_DEST_JOURNAL)
		prefix = log_journal_prefix(pri);
	plen = strlen(prefix);
	memcpy(buf, prefix, plen);
	len = plen;

	if (fmt != NULL) {
		n = vsnprintf(buf + len, LOG_LINE_MAX + 1, fmt, ap);
		if (n > 0)
			len += (size_t)n > LOG_LINE_MAX ? LOG_LINE_MAX :
			    (size_t)n;
	}
	if (errnum >= 0 && len - plen < LOG_LINE_MAX) {
		/* %m is strerror(errno) without strerror's shared buffer. */
		errno = errnum;
		n = snprintf(buf + len, LOG_LINE_MAX - (len - plen) + 1,
		    "%s%m", fmt != NULL ? ": " : "");
		if (n > 0)
			len += (size_t)n > LOG_LINE_MAX - (len - plen) ?
			    LOG_LINE_MAX - (len - plen) : (size_t)n;
	}
	log_emit(pri, buf + (log_dest == LOG_DEST_SYSLOG ? plen : 0),
	    len - (log_dest == LOG_DEST_SYSLOG ? plen : 0));
	errno = saved_errno;
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	int	 errnum = errno;

	va_start(ap, fmt);
	log_vline(LOG_ERR, errnum, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vline(LOG_ERR, -1, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vline(LOG_INFO, -1, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_vline(LOG_DEBUG, -1, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	int	 errnum = errno;

	va_start(ap, fmt);
	log_vline(LOG_CRIT, errnum, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vline(LOG_CRIT, -1, fmt, ap);
	va_end(ap);
	exit(1);
}
