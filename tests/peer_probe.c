/* peer_probe: connects to a control socket as a user other than the caller and says what happened. */
#define _GNU_SOURCE		/* unshare, setresuid, strerrorname_np */

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * usage: peer_probe [-g GID] [-G GID] [-r REQUEST] SOCKET
 *        peer_probe -n        (exit 0 if another uid is available here)
 *
 * The socket checks of veild (file mode 0660, then SO_PEERCRED and
 * SO_PEERGROUPS) can only be tested from a process whose uid is not the
 * daemon's.  As root that is plain setuid (uid 65534).  As anyone else it
 * is the uid a rootless container gets: a new user namespace whose uid 0
 * is our first subordinate uid from /etc/subuid, mapped by the setuid
 * helpers newuidmap/newgidmap (Debian: uidmap).  The kernel, and so the
 * daemon, sees that subordinate uid: a real other user, not a pretence.
 *
 * -g GID  primary group: GID, or "other" (default) for a group nobody
 *         here uses (root: 65533; otherwise our first subordinate gid).
 * -G GID  one supplementary group.  Without root only our own primary gid
 *         can be given (newgidmap maps nothing else of ours).
 * -r REQ  the request line to send instead of a status request.
 *
 * Prints one line and exits 0: "connect ENAME" (connect failed),
 * "closed EOF|ENAME" (the peer closed on us), "reply TEXT" (the first
 * line of an answer to a status request), "timeout".  Exits 77 when no
 * other uid can be had here (the reason on stderr), 1 on other errors.
 */

#define PROBE_UID_ROOT		65534	/* nobody */
#define PROBE_GID_OTHER_ROOT	65533
#define PROBE_WAIT_MS		3000

static const char *
ename(int e)
{
	const char *n = strerrorname_np(e);

	return n != NULL ? n : "E?";
}

static void __attribute__((noreturn))
cannot(const char *why)
{
	fprintf(stderr, "peer_probe: no other uid here: %s\n", why);
	exit(77);
}

/* Our first subordinate id from /etc/subuid or /etc/subgid, or -1. */
static long
subid_first(const char *file)
{
	struct passwd *pw = getpwuid(getuid());
	char line[256], uidtext[32];
	FILE *fp;
	long first = -1;

	if (pw == NULL || (fp = fopen(file, "r")) == NULL)
		return -1;
	snprintf(uidtext, sizeof uidtext, "%u", (unsigned)getuid());
	while (fgets(line, sizeof line, fp) != NULL) {
		char *name = strtok(line, ":\n"), *start = strtok(NULL, ":\n"),
		    *count = strtok(NULL, ":\n");

		if (name == NULL || start == NULL || count == NULL ||
		    atol(count) < 1)
			continue;
		if (strcmp(name, pw->pw_name) == 0 || strcmp(name, uidtext) == 0) {
			first = atol(start);
			break;
		}
	}
	fclose(fp);
	return first;
}

static int
run(char *const argv[])
{
	pid_t pid;
	int status;

	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", 0);

		if (null != -1) {
			dup2(null, STDOUT_FILENO);
			close(null);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The outer id that inner id 0 maps to, from /proc/self/{uid,gid}_map. */
static long
outer_of_zero(const char *file)
{
	long inner, outer, count, found = -1;
	FILE *fp = fopen(file, "r");

	if (fp == NULL)
		return -1;
	while (fscanf(fp, "%ld %ld %ld", &inner, &outer, &count) == 3)
		if (inner == 0)
			found = outer;
	fclose(fp);
	return found;
}

/*
 * Becomes another user, without root: the child enters a new user
 * namespace, the parent maps it (uid 0 -> our first subuid; gid 0 -> our
 * first subgid, gid 1 -> our own gid) and waits.  Returns in the child,
 * now the subordinate uid; the parent exits with the child's status.
 * own_primary: primary gid our own (else the subordinate one);
 * own_sup: our own gid as the one supplementary group (else none).
 */
static void
userns_become(int own_primary, int own_sup)
{
	long subuid = subid_first("/etc/subuid"), subgid = subid_first("/etc/subgid");
	int c2p[2], p2c[2], status, need_own = own_primary || own_sup;
	char ok = 'n', pidtext[32], su[32], sg[32], own[32];
	pid_t pid;

	if (subuid < 0 || subgid < 0)
		cannot("no /etc/subuid and /etc/subgid range for this user");
	if (pipe(c2p) == -1 || pipe(p2c) == -1)
		cannot("pipe");
	if ((pid = fork()) == -1)
		cannot("fork");
	if (pid == 0) {
		gid_t inner = own_primary ? 1 : 0, one = 1;

		close(c2p[0]);
		close(p2c[1]);
		if (unshare(CLONE_NEWUSER) == -1) {
			fprintf(stderr, "peer_probe: unshare(CLONE_NEWUSER): %s\n",
			    strerror(errno));
			_exit(77);
		}
		if (write(c2p[1], "u", 1) != 1 || read(p2c[0], &ok, 1) != 1 || ok != 'y')
			_exit(77);
		/* Supplementary groups first, while we may still set them:
		 * the ones inherited from the caller must not tag along. */
		if (setgroups(own_sup ? 1 : 0, &one) == -1 ||
		    setresgid(inner, inner, inner) == -1 || setresuid(0, 0, 0) == -1) {
			perror("peer_probe: in the user namespace");
			_exit(1);
		}
		return;
	}
	close(c2p[1]);
	close(p2c[0]);
	if (read(c2p[0], &ok, 1) != 1) {
		waitpid(pid, &status, 0);
		exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
	}
	snprintf(pidtext, sizeof pidtext, "%ld", (long)pid);
	snprintf(su, sizeof su, "%ld", subuid);
	snprintf(sg, sizeof sg, "%ld", subgid);
	snprintf(own, sizeof own, "%u", (unsigned)getgid());
	{
		char *uidmap[] = { "newuidmap", pidtext, "0", su, "1", NULL };
		char *gidmap[] = { "newgidmap", pidtext, "0", sg, "1", "1", own, "1", NULL };

		if (!need_own)
			gidmap[5] = NULL;
		ok = run(uidmap) == 0 && run(gidmap) == 0 ? 'y' : 'n';
	}
	if (write(p2c[1], &ok, 1) != 1)
		ok = 'n';
	waitpid(pid, &status, 0);
	if (ok != 'y')
		cannot("newuidmap/newgidmap failed (is uidmap installed, and a "
		    "range in /etc/subuid and /etc/subgid?)");
	exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static void
root_become(long gid, long sup)
{
	gid_t g = (gid_t)sup;

	if (gid < 0)
		gid = PROBE_GID_OTHER_ROOT;
	if (setgroups(sup >= 0 ? 1 : 0, &g) == -1 ||
	    setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) == -1 ||
	    setresuid(PROBE_UID_ROOT, PROBE_UID_ROOT, PROBE_UID_ROOT) == -1) {
		perror("peer_probe: setuid");
		exit(1);
	}
}

static const char *request = "{\"jsonrpc\":\"2.0\",\"method\":\"status\",\"id\":1}";

static int
probe(const char *path)
{
	struct sockaddr_un sun;
	struct pollfd pfd;
	char buf[512], req[1024], *nl;
	ssize_t n;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		fprintf(stderr, "peer_probe: path too long\n");
		return 1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1) {
		perror("peer_probe: socket");
		return 1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		printf("connect %s\n", ename(errno));
		return 0;
	}
	snprintf(req, sizeof req, "%s\n", request);
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) == -1) {
		printf("closed %s\n", ename(errno));
		return 0;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, PROBE_WAIT_MS) == 0) {
		printf("timeout\n");
		return 0;
	}
	if ((n = recv(fd, buf, sizeof buf - 1, 0)) == -1) {
		printf("closed %s\n", ename(errno));
		return 0;
	}
	if (n == 0) {
		printf("closed EOF\n");
		return 0;
	}
	buf[n] = '\0';
	if ((nl = strchr(buf, '\n')) != NULL)
		*nl = '\0';
	printf("reply %s\n", buf);
	return 0;
}

int
main(int argc, char *argv[])
{
	long gid = -1, sup = -1;
	int ch, check = 0;

	while ((ch = getopt(argc, argv, "g:G:nr:")) != -1) {
		switch (ch) {
		case 'r':
			request = optarg;
			break;
		case 'g':
			gid = strcmp(optarg, "other") == 0 ? -1 : atol(optarg);
			break;
		case 'G':
			sup = atol(optarg);
			break;
		case 'n':
			check = 1;
			break;
		default:
			goto usage;
		}
	}
	if (check ? optind != argc : optind != argc - 1)
		goto usage;
	if (geteuid() == 0)
		root_become(gid, sup);
	else {
		/* Only what newgidmap lets us map: our own primary gid. */
		if (gid >= 0 && (gid_t)gid != getgid())
			cannot("without root the primary group is our own or a "
			    "subordinate gid");
		if (sup >= 0 && (gid_t)sup != getgid())
			cannot("without root the only supplementary group possible is "
			    "our own primary gid");
		userns_become(gid >= 0, sup >= 0);
	}
	if (check) {
		long u = outer_of_zero("/proc/self/uid_map");

		/* In a user namespace, say who we are outside. */
		if (getuid() == 0 && u >= 0)
			printf("uid %ld\n", u);
		else
			printf("uid %u\n", (unsigned)getuid());
		return 0;
	}
	return probe(argv[optind]);
usage:
	fprintf(stderr, "usage: peer_probe [-g GID|other] [-G GID] SOCKET | -n\n");
	return 1;
}
