/* veild: main, flags, signals, systemd notification; the rest lives in the engine. */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <systemd/sd-daemon.h>

#include <config.h>	/* autoconf's */
#include "config.h"	/* veild's */
#include "control.h"
#include "engine.h"
#include "log.h"
#include "methods.h"
#include "rpc.h"
#include "backup.h"
#include "vault.h"

/* The file make install puts there: $(sysconfdir)/veil/veild.conf. */
#ifndef VEIL_SYSCONFDIR
#define VEIL_SYSCONFDIR	"/etc"
#endif
#define DEFAULT_CONFIG	VEIL_SYSCONFDIR "/veil/veild.conf"

static struct veild_config cfg;
static const char *cfgpath = DEFAULT_CONFIG;
static struct event *ev_watchdog;

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: veild [-dnVv] [-c file]\n");
	exit(1);
}

static int opt_verbose;	/* -v */

/* Prefixes of the keys a reload applies (see on_signal); veild.8 lists them. */
static const char *const reload_applies[] = {
	"retransmit.", "accept", "rotation.", "log.", NULL
};

static int
reload_applied(const char *key)
{
	for (int i = 0; reload_applies[i] != NULL; i++)
		if (strncmp(key, reload_applies[i], strlen(reload_applies[i])) == 0)
			return 1;
	return 0;
}

/*
 * Logs each key that differs between the running configuration and the
 * file just read and that a reload does not apply.  config_print's fixed
 * layout (one key a line, "name = {" ... "};" around a group) names the
 * keys, so no second list of them has to be kept in step.  Only the key
 * is logged, never a value: it may be a name or a password.
 */
static void
reload_log_restart_keys(const struct veild_config *run, const struct veild_config *next)
{
	char *a = NULL, *b = NULL, *sa = NULL, *sb = NULL, *la, *lb;
	char group[64] = "", key[128];
	size_t alen = 0, blen = 0, n;
	FILE *fa = open_memstream(&a, &alen), *fb = open_memstream(&b, &blen);
	int ok = fa != NULL && fb != NULL && config_print(fa, run) == 0 &&
	    config_print(fb, next) == 0;

	if (fa != NULL)
		fclose(fa);
	if (fb != NULL)
		fclose(fb);
	if (!ok || a == NULL || b == NULL) {
		log_warnx("reload: cannot compare the configurations; changes other "
		    "than to retransmit, accept, rotation and log need a restart");
		goto out;
	}
	for (la = strtok_r(a, "\n", &sa), lb = strtok_r(b, "\n", &sb);
	    la != NULL && lb != NULL;
	    la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb)) {
		la += strspn(la, " ");
		lb += strspn(lb, " ");
		n = strcspn(la, " =");
		if (strcmp(la, "};") == 0) {
			group[0] = '\0';
			continue;
		}
		if (la[strlen(la) - 1] == '{') {
			snprintf(group, sizeof group, "%.*s.", (int)n, la);
			continue;
		}
		if (strcmp(la, lb) == 0)
			continue;
		snprintf(key, sizeof key, "%s%.*s", group, (int)n, la);
		if (!reload_applied(key))
			log_warnx("reload: %s changed: needs a restart, ignored until then",
			    key);
	}
	/* Set in both, it prints as "********" in both. */
	if (run->mqtt.password != NULL && next->mqtt.password != NULL &&
	    strcmp(run->mqtt.password, next->mqtt.password) != 0)
		log_warnx("reload: mqtt.password changed: needs a restart, ignored "
		    "until then");
out:
	free(a);
	free(b);
}

static void
on_signal(evutil_socket_t sig, short ev, void *arg)
{
	struct event_base *base = arg;
	struct veild_config next;
	char err[CONFIG_ERR_MAX];

	(void)ev;
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		log_info("shutting down");
		sd_notify(0, "STOPPING=1");
		event_base_loopexit(base, NULL);
		break;
	case SIGHUP:
		/* Only what can change safely at run time is applied. */
		sd_notify(0, "RELOADING=1");
		if (config_load(cfgpath, &next, err, sizeof err) != 0) {
			log_warnx("reload: %s; keeping the running configuration", err);
		} else {
			reload_log_restart_keys(&cfg, &next);
			/* -v on the command line outlives a reload. */
			log_setverbose(opt_verbose || next.log.level == VEILD_LOG_DEBUG);
			if (vault_is_open())
				engine_reload(&next);
			config_free(&next);
			log_info("configuration reloaded");
		}
		sd_notify(0, "READY=1");
		break;
	}
}

static void
on_watchdog(evutil_socket_t fd, short ev, void *arg)
{
	char status[256], line[300];

	(void)fd;
	(void)ev;
	(void)arg;
	vault_status_line(status, sizeof status);
	snprintf(line, sizeof line, "WATCHDOG=1\nSTATUS=%s", status);
	sd_notify(0, line);
}

static gid_t
socket_group(const char *name)
{
	struct group *gr;

	if (name == NULL)
		return (gid_t)-1;
	if ((gr = getgrnam(name)) == NULL)
		fatalx("socket_group: no group named %s", name);
	return gr->gr_gid;
}

int
main(int argc, char *argv[])
{
	struct event_base *base;
	struct event *sigs[4];
	const int signums[4] = { SIGTERM, SIGINT, SIGHUP, 0 };
	int ch, debug = 0, check = 0, verbose = 0;
	char err[CONFIG_ERR_MAX];
	uint64_t wd_usec = 0;
	struct timeval tv;

	while ((ch = getopt(argc, argv, "c:dnVv")) != -1) {
		switch (ch) {
		case 'c': cfgpath = optarg; break;
		case 'd': debug = 1; break;
		case 'n': check = 1; break;
		case 'v': verbose = opt_verbose = 1; break;
		case 'V': printf("veild %s\n", PACKAGE_VERSION); return 0;
		default: usage();
		}
	}
	if (optind != argc)
		usage();

	if (config_load(cfgpath, &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "veild: %s\n", err);
		return 1;
	}
	if (check) {
		int rv = config_print(stdout, &cfg) == 0 ? 0 : 1;
		config_free(&cfg);
		return rv;
	}
	log_init(debug, verbose || cfg.log.level == VEILD_LOG_DEBUG, "veild");
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	/* paho calls back on its own thread: libevent must be lock-aware. */
	if (evthread_use_pthreads() != 0)
		fatalx("libevent without pthreads support");
	if ((base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if (mkdir(cfg.state_dir, 0700) == -1 && errno != EEXIST)
		fatal("state_dir %s", cfg.state_dir);
	methods_init(base);
	backup_set_config_path(cfgpath);
	/* Locked until a credential or key file unlocks it here, or a
	 * passphrase over the socket: then the engine starts. */
	if (vault_init(base, &cfg, err, sizeof err) != 0 ||
	    vault_auto_unlock(err, sizeof err) < 0)
		fatalx("%s", err);
	if (control_init(base, cfg.socket, socket_group(cfg.socket_group)) != 0)
		fatalx("cannot listen on %s", cfg.socket);
	for (int i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(base, signums[i], on_signal, base);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) != 0)
			fatalx("cannot install signal handlers");
	}
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		tv.tv_sec = (time_t)(wd_usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(wd_usec / 2 % 1000000);
		ev_watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
		if (ev_watchdog == NULL || event_add(ev_watchdog, &tv) != 0)
			fatalx("cannot start the watchdog timer");
	}
	{
		char line[320], st[256];

		vault_status_line(st, sizeof st);
		snprintf(line, sizeof line, "READY=1\nSTATUS=%s", st);
		sd_notify(0, line);
	}
	log_info(vault_is_open() ? "ready" : "ready, locked");

	event_base_dispatch(base);

	control_shutdown();
	vault_shutdown();
	rpc_shutdown();
	methods_shutdown();
	for (int i = 0; signums[i] != 0; i++)
		event_free(sigs[i]);
	if (ev_watchdog != NULL)
		event_free(ev_watchdog);
	event_base_free(base);
	config_free(&cfg);
	return 0;
}
