/* veild configuration: the settings, their defaults, loading and printing. */
#ifndef VEILD_CONFIG_H
#define VEILD_CONFIG_H

/*
 * Note: this header shares its name with autoconf's config.h.  Files in
 * daemon/ that need autoconf's (PACKAGE_VERSION, ...) must not include it
 * as "config.h" from daemon/, where the quote form finds this one first.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum veild_transport {
	VEILD_TRANSPORT_MQTT,
	VEILD_TRANSPORT_XMPP
};

enum veild_xmpp_tls {
	VEILD_TLS_STARTTLS,	/* use it when the server offers it */
	VEILD_TLS_REQUIRED,	/* STARTTLS, and refuse a server without it */
	VEILD_TLS_OFF,
	VEILD_TLS_DIRECT	/* TLS from the first byte (XEP-0368) */
};

/* How a server's certificate is checked (mqtt.tls, xmpp.tls_*). */
struct veild_tls {
	char		*ca_file;	/* NULL: the system's trust store */
	char		*ca_path;	/* NULL: none */
	int		 verify;	/* chain and host name; default 1 */
	char		*pin_sha256;	/* NULL: none; "BASE64[,BASE64...]" of
					 * SubjectPublicKeyInfo SHA-256s */
	char		*cert_file;	/* client certificate (MQTT only) */
	char		*key_file;	/* its key; NULL: inside cert_file */
};

enum veild_accept {
	VEILD_ACCEPT_ASK,
	VEILD_ACCEPT_AUTO
};

enum veild_log_level {
	VEILD_LOG_INFO,
	VEILD_LOG_DEBUG
};

/* Argon2id cost of a new passphrase (libsodium's three levels). */
enum veild_kdf {
	VEILD_KDF_INTERACTIVE,	/* 64 MiB, 2 passes */
	VEILD_KDF_MODERATE,	/* 256 MiB, 3 passes */
	VEILD_KDF_SENSITIVE	/* 1 GiB, 4 passes */
};

#define CONFIG_MQTT_URIS_MAX	16
#define CONFIG_ERR_MAX		512	/* a good size for config_load's err */

/*
 * Every duration is in milliseconds.  Optional strings are NULL when unset
 * (an empty string in the file means unset too); required strings and
 * those with a default are never NULL after a successful config_load.
 */
struct veild_config {
	char			*state_dir;
	char			*socket;
	char			*socket_group;	/* NULL: owner's primary group */
	enum veild_transport	 transport;

	struct {
		char		*uris[CONFIG_MQTT_URIS_MAX];
		size_t		 nuris;		/* 1..CONFIG_MQTT_URIS_MAX */
		char		*username;	/* NULL: none */
		char		*password;	/* NULL: none; secret */
		int		 random_username; /* fresh random username and
						  * password per client ID */
		char		*topic_prefix;	/* "" by default, never NULL */
		uint64_t	 keepalive_ms;	/* whole seconds, 1s..65535s */
		uint64_t	 session_expiry_ms; /* whole seconds, 0s..2^32-2 s */
		unsigned int	 inflight;	/* 1..65535 */
		char		*proxy;		/* NULL: none; clear http(s)_proxy */
		int		 proxy_isolate;	/* fresh random proxy credentials
						 * per client ID */
		int		 plaintext_password; /* allow a password over
						 * tcp:// to a remote host */
		struct veild_tls tls;
	} mqtt;

	struct {
		char		*domain;	/* NULL unless set; required for xmpp */
		char		*host;		/* NULL: connect to domain */
		unsigned int	 port;		/* 1..65535 */
		char		*pubsub;	/* NULL only while domain is NULL */
		enum veild_xmpp_tls tls;
		struct veild_tls trust;		/* tls_ca_file, ... (no client
						 * certificate) */
		unsigned int	 inflight;	/* 1..65535 */
	} xmpp;

	struct {
		char		*name;		/* veil_name_valid() */
		int		 obscurity;	/* 1, 2 or 3 */
		unsigned int	 id_bits;	/* 80..256, multiple of 8 */
	} identity;

	struct {
		size_t		 size;		/* VEIL_FRAME_MIN..VEIL_FRAME_MAX */
		double		 cover_rate;	/* COVER frames/hour/contact, >= 0 */
		uint64_t	 jitter_ms;
	} frames;

	struct {
		/* mean: the epoch length, shared by the users of a broker
		 * (whole seconds); grace: the connections' overlap around a
		 * boundary; min and max are checked, no longer used. */
		uint64_t	 mean_ms;	/* min_ms <= mean_ms <= max_ms */
		uint64_t	 min_ms;	/* >= 1s */
		uint64_t	 max_ms;
		uint64_t	 grace_ms;
	} rotation;

	struct {
		uint64_t	 initial_ms;	/* <= max_ms */
		uint64_t	 max_ms;
	} retransmit;

	struct {
		uint64_t	 period_ms;	/* key period, whole seconds, 1s..30d */
		uint64_t	 heal_ms;	/* DH re-key per contact; 0: never */
	} keys;

	struct {
		uint64_t	 ttl_ms;	/* a REQUEST without a card expiry */
		/* Requests made to us (docs/security.md): */
		unsigned int	 pending_max;	/* unanswered and unproven, at once */
		unsigned int	 per_hour;	/* new ones taken per hour */
		uint64_t	 pending_ttl_ms; /* unanswered ones forgotten after */
		unsigned int	 auto_accept_per_hour; /* accept = "auto" */
	} requests;

	/* What others can make us hold (docs/security.md); bytes. */
	struct {
		size_t		 message_max;	/* one message, sent or received */
		size_t		 reassembly;	/* partial messages, all contacts */
		unsigned int	 unread_messages; /* per contact, not yet acked by an app */
		size_t		 unread_bytes;
		unsigned int	 outbox_messages; /* per contact, not yet acked by it */
		size_t		 outbox_bytes;
		size_t		 receive_reply;	/* one message.receive reply */
	} limits;

	struct {
		uint64_t	 ttl_ms;	/* level 3 cards */
		uint64_t	 one_time_ttl_ms; /* unused one-time cards */
	} cards;

	enum veild_accept	 accept;

	/* Files received (and sent): where they land, bytes. */
	struct {
		char		*dir;		/* NULL: state_dir/files */
		size_t		 max_size;	/* one file, sent or received */
		size_t		 quota;		/* received from one contact, on disk */
	} files;

	struct {
		enum veild_log_level level;
	} log;

	/* How the data key is unlocked (docs/protocol.md 9.1): a systemd
	 * credential, a key file, else a passphrase with veilctl unlock. */
	struct {
		char		*credential;	/* name under $CREDENTIALS_DIRECTORY;
						 * NULL: none */
		char		*key_file;	/* NULL: none */
		enum veild_kdf	 kdf;		/* for a new passphrase */
	} unlock;

	/* Scheduled backups, sealed to public_key (veilctl backup keygen). */
	struct {
		char		*dir;		/* NULL: none */
		uint64_t	 interval_ms;	/* 1m..365d */
		unsigned int	 keep;		/* 1..1000 */
		char		*public_key;	/* required with dir */
	} backup;
};

/* Fills cfg with the built-in defaults (identity.name stays NULL).  Returns
 * 0, or -1 when out of memory.  config_load calls it itself. */
int	config_defaults(struct veild_config *cfg);

/*
 * Reads path (libconfig syntax) into cfg: defaults first, then the file.
 * Returns 0, or -1 with cfg freed and a one-line reason in err, in the form
 * "FILE:LINE: key.path: what is wrong" (or "FILE: ..." when there is no
 * line, e.g. a missing required key).  cfg is untouched memory on entry.
 */
int	config_load(const char *path, struct veild_config *cfg, char *err,
	    size_t errlen);

/* Frees every string, wiping the password first.  Leaves cfg zeroed; safe
 * on a zeroed or already freed cfg. */
void	config_free(struct veild_config *cfg);

/*
 * Prints the effective configuration in libconfig syntax that config_load
 * accepts: every key, fixed order, durations in their largest exact unit,
 * unset optional strings as "".  The password (and any user:password in
 * the proxy URL) is printed as "********", never in clear.  Returns 0 or -1
 * on a write error.
 */
int	config_print(FILE *fp, const struct veild_config *cfg);

/*
 * "250ms", "30s", "10m", "1h", "2d" or a plain number of seconds ("30")
 * into milliseconds.  Returns 0, or -1 on a bad unit, junk, a sign, a
 * fraction or overflow.
 */
int	config_parse_duration(const char *s, uint64_t *ms);

#endif
