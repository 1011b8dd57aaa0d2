/* mqtt_nudge.c: while a connection is being made, paho's receive thread looks every millisecond, so the CONNECT follows its TCP handshake, not another connection's packet. */
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqtt_int.h"

/*
 * Why (docs/metadata.md, "the MQTT client library"): paho.mqtt.c runs every
 * client of a process on one receive thread.  That thread polls a copy of
 * its socket list for reading with a one-second timeout, takes a new
 * socket into the copy only when that poll returns, sends the new
 * connection's CONNECT only after a later poll returns, and sleeps 100 ms
 * after a poll that found nothing.  The TCP handshake happens when veild
 * asks (paho's send thread connects at once), but the CONNECT waits for a
 * packet of another of our connections to end the poll, and reaches the
 * broker within a few milliseconds after it: the old chat connection's
 * DISCONNECT, a PUBACK on the card's.  The operator links the two by that.
 *
 * So at each MQTTAsync_connect() veild ends that thread's wait at once, and
 * for NUDGE_MS after it keeps the thread's waits short: a signal whose
 * handler does nothing interrupts the poll(2) or usleep(3) it is in (they
 * return EINTR whatever SA_RESTART says; its other system calls are
 * restarted), and the definitions of poll() and usleep() below, which the
 * executable puts in front of libc's for paho, hold that thread's polls to
 * NUDGE_POLL_MS and its sleeps to NUDGE_SLEEP_US meanwhile, and give paho
 * an interrupted poll as one that found nothing (paho would take EINTR for
 * an error and skip its look at what became writable).  The thread then
 * goes round its loop about every 1.5 ms, takes the new socket in, and the
 * CONNECT leaves within a few milliseconds of the TCP handshake, whatever
 * the other connections do.  Every other caller gets libc's functions
 * unchanged.  The thread is the one paho 1.3 names "MQTTAsync_rcv"
 * (pthread_setname_np), which poll() notes when it sees it: if a future
 * paho names it otherwise, nothing changes and the timing is what it was;
 * tests/test_connect_timing.py measures it.  The signal is SIGURG, which
 * no part of veild uses and whose default is to ignore it.
 */
#define NUDGE_MS	300	/* the send thread has connected by then */
#define NUDGE_POLL_MS	1
#define NUDGE_SLEEP_US	500
#define NUDGE_THREAD	"MQTTAsync_rcv"
#define NUDGE_SIGNAL	SIGURG

typedef int (*poll_fn)(struct pollfd *, nfds_t, int);
typedef int (*usleep_fn)(useconds_t);

/* CLOCK_MONOTONIC ms until which the thread is nudged; 0: never was. */
static int64_t	nudge_until;
/* paho's receive thread as poll() last saw it; 0: not yet. */
static pid_t	nudge_tid;

static int64_t
nudge_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Is the caller paho's receive thread? */
static int
is_rcv(void)
{
	char	name[16];

	if (prctl(PR_GET_NAME, name, 0, 0, 0) == -1)
		return 0;
	name[sizeof(name) - 1] = '\0';
	return strcmp(name, NUDGE_THREAD) == 0;
}

/* Is it a moment to keep that thread's waits short? */
static int
nudging(void)
{
	int64_t	until = __atomic_load_n(&nudge_until, __ATOMIC_RELAXED);

	return until != 0 && nudge_now() < until;
}

static void
nudge_handler(int sig)
{
	(void)sig;
}

/* libc's function, looked up once (a race only stores it twice). */
static void *
next_fn(void **slot, const char *sym)
{
	void	*f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (f == NULL && (f = dlsym(RTLD_NEXT, sym)) != NULL)
		__atomic_store_n(slot, f, __ATOMIC_RELEASE);
	return f;
}

int
poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	static void	*next;
	poll_fn		 f;
	int		 r;

	if ((f = (poll_fn)next_fn(&next, "poll")) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (!is_rcv())
		return f(fds, nfds, timeout);
	__atomic_store_n(&nudge_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
	if ((timeout < 0 || timeout > NUDGE_POLL_MS) && nudging())
		timeout = NUDGE_POLL_MS;
	if ((r = f(fds, nfds, timeout)) == -1 && errno == EINTR) {
		for (nfds_t i = 0; i < nfds; i++)
			fds[i].revents = 0;
		r = 0;
	}
	return r;
}

int
usleep(useconds_t usec)
{
	static void	*next;
	usleep_fn	 f;

	if ((f = (usleep_fn)next_fn(&next, "usleep")) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (usec > NUDGE_SLEEP_US && nudging() && is_rcv())
		usec = NUDGE_SLEEP_US;
	return f(usec);
}

void
mqtt_nudge_start(void)
{
	static int		 installed;
	struct sigaction	 sa;
	pid_t			 tid;

	if (!installed) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = nudge_handler;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(NUDGE_SIGNAL, &sa, NULL) == -1)
			return;
		installed = 1;
	}
	__atomic_store_n(&nudge_until, nudge_now() + NUDGE_MS, __ATOMIC_RELAXED);
	/* No thread yet (the first connection): it starts with a short wait. */
	if ((tid = __atomic_load_n(&nudge_tid, __ATOMIC_RELAXED)) != 0)
		(void)syscall(SYS_tgkill, (long)getpid(), (long)tid, NUDGE_SIGNAL);
}
