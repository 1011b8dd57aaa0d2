/* veild configuration: libconfig file → struct veild_config, checked, and back to text. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <libconfig.h>
#include <sodium.h>

#include "common.h"
#include "frame.h"
#include "ids.h"

#include "bkkey.h"
#include "config.h"
#include "config_int.h"

#define DEFAULT_STATE_DIR	"/var/lib/veil"
#define DEFAULT_SOCKET		"/run/veil/veild.sock"
#define DEFAULT_MQTT_URI	"tcp://127.0.0.1:1883"
#define DEFAULT_CREDENTIAL	"veil.key"

#define STR_MAX		1024	/* any string value, in bytes */

enum kind {
	K_STR,		/* char *, validated by check() */
	K_INT,		/* int, unsigned int or size_t */
	K_FLOAT,	/* double; an integer is accepted too */
	K_DUR,		/* uint64_t milliseconds */
	K_SIZE,		/* size_t bytes, from "64KiB" or a plain number */
	K_BOOL,		/* int, 0 or 1, from true or false */
	K_ENUM,		/* enum, from a string among names[] */
	K_URIS,		/* mqtt.uris: list of strings */
	K_GROUP
};

#define KF_EMPTY_NULL	0x01	/* "" means unset: store NULL */
#define KF_SECRET	0x02	/* wipe libconfig's copy after taking ours */
#define KF_WHOLE_SEC	0x04	/* duration must be whole seconds */
#define KF_MULT8	0x08	/* integer must be a multiple of 8 */

struct key {
	const char		*name;
	enum kind		 kind;
	size_t			 off;
	size_t			 width;
	long long		 min, max;	/* K_INT, K_DUR (ms), K_SIZE */
	const char *const	*names;		/* K_ENUM, NULL-terminated */
	const struct key	*sub;		/* K_GROUP, name NULL ends it */
	const char		*(*check)(const char *);	/* K_STR */
	const char		*range;		/* K_INT: error text */
	unsigned int		 flags;
};

#define FIELD(m) offsetof(struct veild_config, m), \
	sizeof(((struct veild_config *)0)->m)

struct ctx {
	const char		*path;
	config_t		*cf;
	struct veild_config	*cfg;
	char			*err;
	size_t			 errlen;
};

const char *const config_transport_names[] = { "mqtt", "xmpp", NULL };
const char *const config_tls_names[] = { "starttls", "required", "off",
    "direct", NULL };
const char *const config_accept_names[] = { "ask", "auto", NULL };
const char *const config_level_names[] = { "info", "debug", NULL };
const char *const config_kdf_names[] = { "interactive", "moderate",
    "sensitive", NULL };

_Static_assert(sizeof(enum veild_transport) == sizeof(int), "enum width");
_Static_assert(sizeof(enum veild_xmpp_tls) == sizeof(int), "enum width");
_Static_assert(sizeof(enum veild_accept) == sizeof(int), "enum width");
_Static_assert(sizeof(enum veild_log_level) == sizeof(int), "enum width");
_Static_assert(sizeof(enum veild_kdf) == sizeof(int), "enum width");

/* --- the schema ---------------------------------------------------------- */

static const struct key mqtt_tls_keys[] = {
	{ "ca_file", K_STR, FIELD(mqtt.tls.ca_file), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, KF_EMPTY_NULL },
	{ "ca_path", K_STR, FIELD(mqtt.tls.ca_path), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, KF_EMPTY_NULL },
	{ "verify", K_BOOL, FIELD(mqtt.tls.verify), 0, 0, NULL, NULL, NULL,
	    NULL, 0 },
	{ "pin_sha256", K_STR, FIELD(mqtt.tls.pin_sha256), 0, 0, NULL, NULL,
	    config_check_pins, NULL, KF_EMPTY_NULL },
	{ "cert_file", K_STR, FIELD(mqtt.tls.cert_file), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, KF_EMPTY_NULL },
	{ "key_file", K_STR, FIELD(mqtt.tls.key_file), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, KF_EMPTY_NULL },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key mqtt_keys[] = {
	{ "uris", K_URIS, FIELD(mqtt.uris), 0, 0, NULL, NULL, config_check_uri,
	    NULL, 0 },
	{ "username", K_STR, FIELD(mqtt.username), 0, 0, NULL, NULL, NULL,
	    NULL, KF_EMPTY_NULL },
	{ "password", K_STR, FIELD(mqtt.password), 0, 0, NULL, NULL, NULL,
	    NULL, KF_EMPTY_NULL | KF_SECRET },
	{ "random_username", K_BOOL, FIELD(mqtt.random_username), 0, 0, NULL,
	    NULL, NULL, NULL, 0 },
	{ "topic_prefix", K_STR, FIELD(mqtt.topic_prefix), 0, 0, NULL, NULL,
	    config_check_topic_prefix, NULL, 0 },
	/* MQTT's keep-alive is a 16-bit count of seconds. */
	{ "keepalive", K_DUR, FIELD(mqtt.keepalive_ms), 1 * SEC, 65535 * SEC,
	    NULL, NULL, NULL, NULL, KF_WHOLE_SEC },
	/* MQTT 5's Session Expiry Interval is a 32-bit count of seconds whose
	 * largest value means "never". */
	{ "session_expiry", K_DUR, FIELD(mqtt.session_expiry_ms), 0,
	    0xfffffffeLL * SEC, NULL, NULL, NULL, NULL, KF_WHOLE_SEC },
	{ "inflight", K_INT, FIELD(mqtt.inflight), 1, 65535, NULL, NULL, NULL,
	    "must be between 1 and 65535", 0 },
	{ "proxy", K_STR, FIELD(mqtt.proxy), 0, 0, NULL, NULL, config_check_proxy,
	    NULL, KF_EMPTY_NULL | KF_SECRET },
	{ "proxy_isolate", K_BOOL, FIELD(mqtt.proxy_isolate), 0, 0, NULL,
	    NULL, NULL, NULL, 0 },
	{ "plaintext_password", K_BOOL, FIELD(mqtt.plaintext_password), 0, 0,
	    NULL, NULL, NULL, NULL, 0 },
	{ "tls", K_GROUP, 0, 0, 0, 0, NULL, mqtt_tls_keys, NULL, NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key xmpp_keys[] = {
	{ "domain", K_STR, FIELD(xmpp.domain), 0, 0, NULL, NULL, config_check_host,
	    NULL, KF_EMPTY_NULL },
	{ "host", K_STR, FIELD(xmpp.host), 0, 0, NULL, NULL, config_check_host_or_ip,
	    NULL, KF_EMPTY_NULL },
	{ "port", K_INT, FIELD(xmpp.port), 1, 65535, NULL, NULL, NULL,
	    "must be between 1 and 65535", 0 },
	{ "pubsub", K_STR, FIELD(xmpp.pubsub), 0, 0, NULL, NULL, config_check_host,
	    NULL, KF_EMPTY_NULL },
	{ "tls", K_ENUM, FIELD(xmpp.tls), 0, 0, config_tls_names, NULL, NULL, NULL,
	    0 },
	{ "tls_ca_file", K_STR, FIELD(xmpp.trust.ca_file), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, KF_EMPTY_NULL },
	{ "tls_ca_path", K_STR, FIELD(xmpp.trust.ca_path), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, KF_EMPTY_NULL },
	{ "tls_verify", K_BOOL, FIELD(xmpp.trust.verify), 0, 0, NULL, NULL,
	    NULL, NULL, 0 },
	{ "tls_pin_sha256", K_STR, FIELD(xmpp.trust.pin_sha256), 0, 0, NULL,
	    NULL, config_check_pins, NULL, KF_EMPTY_NULL },
	{ "inflight", K_INT, FIELD(xmpp.inflight), 1, 65535, NULL, NULL, NULL,
	    "must be between 1 and 65535", 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key identity_keys[] = {
	{ "name", K_STR, FIELD(identity.name), 0, 0, NULL, NULL, config_check_name,
	    NULL, 0 },
	{ "obscurity", K_INT, FIELD(identity.obscurity), 1, 3, NULL, NULL,
	    NULL, "must be 1, 2 or 3", 0 },
	{ "id_bits", K_INT, FIELD(identity.id_bits), VEIL_ID_MIN_BITS,
	    VEIL_ID_MAX_BITS, NULL, NULL, NULL,
	    "must be a multiple of 8 between 80 and 256", KF_MULT8 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key frames_keys[] = {
	{ "size", K_INT, FIELD(frames.size), VEIL_FRAME_MIN, VEIL_FRAME_MAX,
	    NULL, NULL, NULL, "must be between 512 and 65536", 0 },
	/* At most one COVER frame per second per contact. */
	{ "cover_rate", K_FLOAT, FIELD(frames.cover_rate), 0, 3600, NULL,
	    NULL, NULL, "must be a number between 0 and 3600", 0 },
	{ "jitter", K_DUR, FIELD(frames.jitter_ms), 0, HOUR, NULL, NULL, NULL,
	    NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key rotation_keys[] = {
	/* The epoch length: epochs are numbered from the Unix epoch in
	 * whole seconds (protocol.md 5). */
	{ "mean", K_DUR, FIELD(rotation.mean_ms), SEC, 30 * DAY, NULL, NULL,
	    NULL, NULL, KF_WHOLE_SEC },
	{ "min", K_DUR, FIELD(rotation.min_ms), SEC, 30 * DAY, NULL, NULL,
	    NULL, NULL, 0 },
	{ "max", K_DUR, FIELD(rotation.max_ms), SEC, 30 * DAY, NULL, NULL,
	    NULL, NULL, 0 },
	{ "grace", K_DUR, FIELD(rotation.grace_ms), SEC, 30 * DAY, NULL, NULL,
	    NULL, NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key retransmit_keys[] = {
	{ "initial", K_DUR, FIELD(retransmit.initial_ms), 100, HOUR, NULL,
	    NULL, NULL, NULL, 0 },
	{ "max", K_DUR, FIELD(retransmit.max_ms), 100, DAY, NULL, NULL, NULL,
	    NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key keys_keys[] = {
	/* A key period is a whole number of seconds (protocol.md 2.1). */
	{ "period", K_DUR, FIELD(keys.period_ms), SEC, 30 * DAY, NULL, NULL,
	    NULL, NULL, KF_WHOLE_SEC },
	{ "heal", K_DUR, FIELD(keys.heal_ms), 0, 365 * DAY, NULL, NULL, NULL,
	    NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key requests_keys[] = {
	{ "ttl", K_DUR, FIELD(requests.ttl_ms), MIN, 30 * DAY, NULL, NULL,
	    NULL, NULL, 0 },
	{ "pending_max", K_INT, FIELD(requests.pending_max), 1, 100000, NULL,
	    NULL, NULL, "must be between 1 and 100000", 0 },
	{ "per_hour", K_INT, FIELD(requests.per_hour), 1, 100000, NULL, NULL,
	    NULL, "must be between 1 and 100000", 0 },
	{ "pending_ttl", K_DUR, FIELD(requests.pending_ttl_ms), MIN, 365 * DAY,
	    NULL, NULL, NULL, NULL, 0 },
	{ "auto_accept_per_hour", K_INT, FIELD(requests.auto_accept_per_hour),
	    0, 100000, NULL, NULL, NULL, "must be between 0 and 100000", 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key limits_keys[] = {
	/* VEIL_MESSAGE_MAX is what the protocol carries at all. */
	{ "message_max", K_SIZE, FIELD(limits.message_max), 1 * KIB,
	    VEIL_MESSAGE_MAX, NULL, NULL, NULL, NULL, 0 },
	{ "reassembly", K_SIZE, FIELD(limits.reassembly), 2 * KIB, 1 * GIB,
	    NULL, NULL, NULL, NULL, 0 },
	{ "unread_messages", K_INT, FIELD(limits.unread_messages), 1, 10000000,
	    NULL, NULL, NULL, "must be between 1 and 10000000", 0 },
	{ "unread_bytes", K_SIZE, FIELD(limits.unread_bytes), 1 * KIB, 64 * GIB,
	    NULL, NULL, NULL, NULL, 0 },
	{ "outbox_messages", K_INT, FIELD(limits.outbox_messages), 1, 10000000,
	    NULL, NULL, NULL, "must be between 1 and 10000000", 0 },
	{ "outbox_bytes", K_SIZE, FIELD(limits.outbox_bytes), 1 * KIB, 64 * GIB,
	    NULL, NULL, NULL, NULL, 0 },
	{ "receive_reply", K_SIZE, FIELD(limits.receive_reply), 4 * KIB,
	    64 * MIB, NULL, NULL, NULL, NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key cards_keys[] = {
	{ "ttl", K_DUR, FIELD(cards.ttl_ms), MIN, 365 * DAY, NULL, NULL,
	    NULL, NULL, 0 },
	{ "one_time_ttl", K_DUR, FIELD(cards.one_time_ttl_ms), MIN, 365 * DAY,
	    NULL, NULL, NULL, NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key files_keys[] = {
	{ "dir", K_STR, FIELD(files.dir), 0, 0, NULL, NULL, config_check_abs_path,
	    NULL, KF_EMPTY_NULL },
	{ "max_size", K_SIZE, FIELD(files.max_size), 1 * KIB, 64 * GIB, NULL,
	    NULL, NULL, NULL, 0 },
	{ "quota", K_SIZE, FIELD(files.quota), 1 * KIB, 1024 * GIB, NULL, NULL,
	    NULL, NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key log_keys[] = {
	{ "level", K_ENUM, FIELD(log.level), 0, 0, config_level_names, NULL, NULL,
	    NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key unlock_keys[] = {
	{ "credential", K_STR, FIELD(unlock.credential), 0, 0, NULL, NULL,
	    config_check_credential, NULL, KF_EMPTY_NULL },
	{ "key_file", K_STR, FIELD(unlock.key_file), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, KF_EMPTY_NULL },
	{ "kdf", K_ENUM, FIELD(unlock.kdf), 0, 0, config_kdf_names, NULL, NULL, NULL,
	    0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key backup_keys[] = {
	{ "dir", K_STR, FIELD(backup.dir), 0, 0, NULL, NULL, config_check_abs_path,
	    NULL, KF_EMPTY_NULL },
	{ "interval", K_DUR, FIELD(backup.interval_ms), MIN, 365 * DAY, NULL,
	    NULL, NULL, NULL, KF_WHOLE_SEC },
	{ "keep", K_INT, FIELD(backup.keep), 1, 1000, NULL, NULL, NULL,
	    "must be between 1 and 1000", 0 },
	{ "public_key", K_STR, FIELD(backup.public_key), 0, 0, NULL, NULL,
	    config_check_backup_key, NULL, KF_EMPTY_NULL },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

static const struct key root_keys[] = {
	{ "state_dir", K_STR, FIELD(state_dir), 0, 0, NULL, NULL,
	    config_check_abs_path, NULL, 0 },
	{ "socket", K_STR, FIELD(socket), 0, 0, NULL, NULL, config_check_socket_path,
	    NULL, 0 },
	{ "socket_group", K_STR, FIELD(socket_group), 0, 0, NULL, NULL,
	    config_check_group_name, NULL, KF_EMPTY_NULL },
	{ "transport", K_ENUM, FIELD(transport), 0, 0, config_transport_names, NULL,
	    NULL, NULL, 0 },
	{ "mqtt", K_GROUP, 0, 0, 0, 0, NULL, mqtt_keys, NULL, NULL, 0 },
	{ "xmpp", K_GROUP, 0, 0, 0, 0, NULL, xmpp_keys, NULL, NULL, 0 },
	{ "identity", K_GROUP, 0, 0, 0, 0, NULL, identity_keys, NULL, NULL,
	    0 },
	{ "frames", K_GROUP, 0, 0, 0, 0, NULL, frames_keys, NULL, NULL, 0 },
	{ "rotation", K_GROUP, 0, 0, 0, 0, NULL, rotation_keys, NULL, NULL,
	    0 },
	{ "retransmit", K_GROUP, 0, 0, 0, 0, NULL, retransmit_keys, NULL,
	    NULL, 0 },
	{ "keys", K_GROUP, 0, 0, 0, 0, NULL, keys_keys, NULL, NULL, 0 },
	{ "requests", K_GROUP, 0, 0, 0, 0, NULL, requests_keys, NULL, NULL, 0 },
	{ "limits", K_GROUP, 0, 0, 0, 0, NULL, limits_keys, NULL, NULL, 0 },
	{ "cards", K_GROUP, 0, 0, 0, 0, NULL, cards_keys, NULL, NULL, 0 },
	{ "accept", K_ENUM, FIELD(accept), 0, 0, config_accept_names, NULL, NULL,
	    NULL, 0 },
	{ "files", K_GROUP, 0, 0, 0, 0, NULL, files_keys, NULL, NULL, 0 },
	{ "log", K_GROUP, 0, 0, 0, 0, NULL, log_keys, NULL, NULL, 0 },
	{ "unlock", K_GROUP, 0, 0, 0, 0, NULL, unlock_keys, NULL, NULL, 0 },
	{ "backup", K_GROUP, 0, 0, 0, 0, NULL, backup_keys, NULL, NULL, 0 },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }
};

/* --- errors -------------------------------------------------------------- */

/* "mqtt.uris[1]": the path a user searches the file for. */
static void
key_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t	*p;
	size_t			 n;

	buf[0] = '\0';
	if (s == NULL || config_setting_is_root(s))
		return;
	p = config_setting_parent(s);
	key_path(p, buf, len);
	n = strlen(buf);
	if (p != NULL && (config_setting_is_list(p) ||
	    config_setting_is_array(p)))
		snprintf(buf + n, len - n, "[%d]", config_setting_index(s));
	else
		snprintf(buf + n, len - n, "%s%s", n > 0 ? "." : "",
		    config_setting_name(s));
}

/* "FILE:LINE: where: why".  where is the setting's key path, or keyname
 * when given (for a key that is missing, so has no setting of its own). */
static int
__attribute__((format(printf, 4, 5)))
cfg_error(struct ctx *c, const config_setting_t *s, const char *keyname,
    const char *fmt, ...)
{
	char		 where[256], why[256];
	const char	*file = c->path;
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);

	if (keyname != NULL)
		snprintf(where, sizeof(where), "%s", keyname);
	else
		key_path(s, where, sizeof(where));
	if (s != NULL && config_setting_source_file(s) != NULL)
		file = config_setting_source_file(s);
	if (s != NULL && config_setting_source_line(s) > 0)
		snprintf(c->err, c->errlen, "%s:%u: %s: %s", file,
		    config_setting_source_line(s), where, why);
	else
		snprintf(c->err, c->errlen, "%s: %s: %s", file, where, why);
	return -1;
}

static int
nomem(struct ctx *c)
{
	snprintf(c->err, c->errlen, "%s: out of memory", c->path);
	return -1;
}

/* --- setting one key ----------------------------------------------------- */

static void
store_int(struct veild_config *cfg, const struct key *k, long long v)
{
	char	*p = (char *)cfg + k->off;

	if (k->width == sizeof(size_t) && k->width != sizeof(int))
		*(size_t *)(void *)p = (size_t)v;
	else
		*(int *)(void *)p = (int)v;
}

/* Takes a string value: type, control characters, length. */
static int
get_string(struct ctx *c, const config_setting_t *s, const char *what,
    const char **out)
{
	const char	*v;
	size_t		 i, len;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cfg_error(c, s, NULL, "must be %s", what);
	v = config_setting_get_string(s);
	len = strlen(v);
	if (len > STR_MAX)
		return cfg_error(c, s, NULL, "must be at most %d bytes",
		    STR_MAX);
	for (i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return cfg_error(c, s, NULL,
			    "must not contain control characters");
	*out = v;
	return 0;
}

static void
wipe_setting_string(const config_setting_t *s)
{
	const char	*v = config_setting_get_string(s);

	/* libconfig frees without wiping; the buffer is its own strdup. */
	if (v != NULL)
		sodium_memzero((char *)(uintptr_t)v, strlen(v));
}

static int
set_string(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	char		**dst = (char **)(void *)((char *)c->cfg + k->off);
	const char	 *v, *why;

	if (get_string(c, s, "a string", &v) == -1)
		return -1;
	/* An empty optional string is "unset", not a value to check. */
	if (k->check != NULL && (*v != '\0' || !(k->flags & KF_EMPTY_NULL)) &&
	    (why = k->check(v)) != NULL)
		return cfg_error(c, s, NULL, "%s", why);
	if (*dst != NULL) {
		if (k->flags & KF_SECRET)
			sodium_memzero(*dst, strlen(*dst));
		free(*dst);
		*dst = NULL;
	}
	if (*v == '\0' && (k->flags & KF_EMPTY_NULL))
		return 0;
	if ((*dst = strdup(v)) == NULL)
		return nomem(c);
	if (k->flags & KF_SECRET)
		wipe_setting_string(s);
	return 0;
}

static int
set_int(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	long long	 v;

	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return cfg_error(c, s, NULL, "must be an integer");
	v = config_setting_get_int64(s);
	if (v < k->min || v > k->max ||
	    ((k->flags & KF_MULT8) && v % 8 != 0))
		return cfg_error(c, s, NULL, "%s", k->range);
	store_int(c->cfg, k, v);
	return 0;
}

static int
set_float(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	double	 v;

	if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else if (config_setting_type(s) == CONFIG_TYPE_INT ||
	    config_setting_type(s) == CONFIG_TYPE_INT64)
		v = (double)config_setting_get_int64(s);
	else
		return cfg_error(c, s, NULL, "must be a number");
	if (!isfinite(v) || v < (double)k->min || v > (double)k->max)
		return cfg_error(c, s, NULL, "%s", k->range);
	*(double *)(void *)((char *)c->cfg + k->off) = v;
	return 0;
}

static int
set_duration(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	char		 lo[32], hi[32];
	const char	*v;
	uint64_t	 ms;
	long long	 secs;

	if (config_setting_type(s) == CONFIG_TYPE_INT ||
	    config_setting_type(s) == CONFIG_TYPE_INT64) {
		secs = config_setting_get_int64(s);
		if (secs < 0 || (unsigned long long)secs > UINT64_MAX / SEC)
			return cfg_error(c, s, NULL, "must not be negative");
		ms = (uint64_t)secs * SEC;
	} else {
		if (get_string(c, s, "a duration such as \"30s\"", &v) == -1)
			return -1;
		if (config_parse_duration(v, &ms) == -1)
			return cfg_error(c, s, NULL, "bad duration \"%s\" "
			    "(a number with ms, s, m, h or d)", v);
	}
	config_format_duration(lo, sizeof(lo), (uint64_t)k->min);
	config_format_duration(hi, sizeof(hi), (uint64_t)k->max);
	if (ms < (uint64_t)k->min || ms > (uint64_t)k->max)
		return cfg_error(c, s, NULL, "must be between %s and %s",
		    lo, hi);
	if ((k->flags & KF_WHOLE_SEC) && ms % SEC != 0)
		return cfg_error(c, s, NULL, "must be whole seconds");
	*(uint64_t *)(void *)((char *)c->cfg + k->off) = ms;
	return 0;
}

static int
set_size(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	char		 lo[32], hi[32];
	const char	*v;
	uint64_t	 n;
	long long	 i;

	if (config_setting_type(s) == CONFIG_TYPE_INT ||
	    config_setting_type(s) == CONFIG_TYPE_INT64) {
		if ((i = config_setting_get_int64(s)) < 0)
			return cfg_error(c, s, NULL, "must not be negative");
		n = (uint64_t)i;
	} else {
		if (get_string(c, s, "a size such as \"64KiB\"", &v) == -1)
			return -1;
		if (config_parse_size(v, &n) == -1)
			return cfg_error(c, s, NULL, "bad size \"%s\" "
			    "(a number with B, KiB, MiB or GiB)", v);
	}
	config_format_size(lo, sizeof(lo), (uint64_t)k->min);
	config_format_size(hi, sizeof(hi), (uint64_t)k->max);
	if (n < (uint64_t)k->min || n > (uint64_t)k->max)
		return cfg_error(c, s, NULL, "must be between %s and %s",
		    lo, hi);
	*(size_t *)(void *)((char *)c->cfg + k->off) = (size_t)n;
	return 0;
}

static int
set_bool(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cfg_error(c, s, NULL, "must be true or false");
	store_int(c->cfg, k, config_setting_get_bool(s) ? 1 : 0);
	return 0;
}

static int
set_enum(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	char		 list[128];
	const char	*v;
	size_t		 i, n, len;

	list[0] = '\0';
	for (n = 0; k->names[n] != NULL; n++)
		;
	for (i = 0; i < n; i++) {
		len = strlen(list);
		snprintf(list + len, sizeof(list) - len, "%s\"%s\"",
		    i == 0 ? "" : i == n - 1 ? " or " : ", ", k->names[i]);
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cfg_error(c, s, NULL, "must be %s", list);
	v = config_setting_get_string(s);
	for (i = 0; i < n; i++)
		if (strcmp(v, k->names[i]) == 0) {
			store_int(c->cfg, k, (long long)i);
			return 0;
		}
	return cfg_error(c, s, NULL, "must be %s", list);
}

static int
set_uris(struct ctx *c, const config_setting_t *s, const struct key *k)
{
	struct veild_config	*cfg = c->cfg;
	const config_setting_t	*e;
	const char		*v, *why;
	int			 i, n;

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return cfg_error(c, s, NULL, "must be a list of strings");
	n = config_setting_length(s);
	if (n < 1 || n > CONFIG_MQTT_URIS_MAX)
		return cfg_error(c, s, NULL, "must hold 1 to %d URIs",
		    CONFIG_MQTT_URIS_MAX);
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned int)i);
		if (get_string(c, e, "a string", &v) == -1)
			return -1;
		if ((why = k->check(v)) != NULL)
			return cfg_error(c, e, NULL, "%s", why);
	}
	while (cfg->mqtt.nuris > 0)
		free(cfg->mqtt.uris[--cfg->mqtt.nuris]);
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned int)i);
		if ((cfg->mqtt.uris[i] =
		    strdup(config_setting_get_string(e))) == NULL)
			return nomem(c);
		cfg->mqtt.nuris++;
	}
	return 0;
}

static int
set_group(struct ctx *c, const config_setting_t *g, const struct key *keys)
{
	const config_setting_t	*s;
	const struct key	*k;
	int			 i, n, rv;

	/* Walk the file's order so the first error reported is the first in
	 * the file. */
	n = config_setting_length(g);
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(g, (unsigned int)i);
		for (k = keys; k->name != NULL; k++)
			if (strcmp(k->name, config_setting_name(s)) == 0)
				break;
		if (k->name == NULL)
			return cfg_error(c, s, NULL, "unknown key");
		switch (k->kind) {
		case K_STR:
			rv = set_string(c, s, k);
			break;
		case K_INT:
			rv = set_int(c, s, k);
			break;
		case K_FLOAT:
			rv = set_float(c, s, k);
			break;
		case K_DUR:
			rv = set_duration(c, s, k);
			break;
		case K_SIZE:
			rv = set_size(c, s, k);
			break;
		case K_BOOL:
			rv = set_bool(c, s, k);
			break;
		case K_ENUM:
			rv = set_enum(c, s, k);
			break;
		case K_URIS:
			rv = set_uris(c, s, k);
			break;
		case K_GROUP:
			if (!config_setting_is_group(s))
				return cfg_error(c, s, NULL,
				    "must be a group { ... }");
			rv = set_group(c, s, k->sub);
			break;
		default:
			rv = cfg_error(c, s, NULL, "internal error");
			break;
		}
		if (rv == -1)
			return -1;
	}
	return 0;
}

/* --- checks across keys -------------------------------------------------- */

/*
 * A relation between two keys is broken: blame whichever the file sets (a
 * default cannot be wrong on its own), a first, with the message that reads
 * right for that key.
 */
static int
blame(struct ctx *c, const char *a, const char *why_a, const char *b,
    const char *why_b)
{
	config_setting_t	*s;

	if ((s = config_lookup(c->cf, a)) != NULL)
		return cfg_error(c, s, NULL, "%s", why_a);
	if ((s = config_lookup(c->cf, b)) != NULL)
		return cfg_error(c, s, NULL, "%s", why_b);
	return cfg_error(c, NULL, a, "%s", why_a);
}

/* An http:// proxy URL with user:password@ before the host. */
static int
proxy_has_auth(const char *proxy)
{
	const char	*auth = proxy + strlen("http://");

	return memchr(auth, '@', strcspn(auth, "/")) != NULL;
}

/* "localhost", 127.0.0.0/8 or ::1: what never leaves the machine. */
static int
host_is_loopback(const char *h, size_t n)
{
	if (n == 9 && strncmp(h, "localhost", 9) == 0)
		return 1;
	if (n >= 4 && strncmp(h, "127.", 4) == 0)
		return strspn(h, "0123456789.") >= n;
	return (n == 5 && strncmp(h, "[::1]", 5) == 0) ||
	    (n == 3 && strncmp(h, "::1", 3) == 0);
}

/*
 * The MQTT password travels in the CONNECT packet: over tcp:// or ws:// to
 * another machine anyone on the path (a Tor exit included) reads it.
 * Refused unless mqtt.plaintext_password says it is meant.
 */
static int
check_plaintext(struct ctx *c)
{
	struct veild_config	*cfg = c->cfg;
	const char		*u, *h;
	size_t			 i, n;
	char			 why[512];

	if (cfg->mqtt.password == NULL || cfg->mqtt.plaintext_password)
		return 0;
	for (i = 0; i < cfg->mqtt.nuris; i++) {
		u = cfg->mqtt.uris[i];
		if (strncmp(u, "ssl://", 6) == 0 ||
		    strncmp(u, "mqtts://", 8) == 0 ||
		    strncmp(u, "wss://", 6) == 0)
			continue;
		h = strstr(u, "://") + 3;
		if (*h == '[')
			n = strcspn(h, "]") + 1;
		else
			n = strcspn(h, ":/");
		if (host_is_loopback(h, n))
			continue;
		snprintf(why, sizeof(why), "would travel unencrypted to %.*s "
		    "(%s): use ssl:// (mqtt.tls), or set "
		    "mqtt.plaintext_password = true", (int)n, h, u);
		return cfg_error(c, config_lookup(c->cf, "mqtt.password"),
		    "mqtt.password", "%s", why);
	}
	return 0;
}

/* A required key that is missing: name it, at the line of its group (or of
 * the key that made it required) when there is one. */
static int
missing(struct ctx *c, const char *key, const char *near, const char *why)
{
	return cfg_error(c, config_lookup(c->cf, near), key, "%s", why);
}

static int
check_cross(struct ctx *c)
{
	struct veild_config	*cfg = c->cfg;
	char			 min[32], mean[32], max[32], wa[160], wb[160];

	if (cfg->identity.name == NULL)
		return missing(c, "identity.name", "identity", "is required");

	config_format_duration(min, sizeof(min), cfg->rotation.min_ms);
	config_format_duration(mean, sizeof(mean), cfg->rotation.mean_ms);
	config_format_duration(max, sizeof(max), cfg->rotation.max_ms);
	if (cfg->rotation.min_ms > cfg->rotation.max_ms) {
		snprintf(wa, sizeof(wa), "must not exceed rotation.max (%s)",
		    max);
		snprintf(wb, sizeof(wb), "must not be below rotation.min (%s)",
		    min);
		return blame(c, "rotation.min", wa, "rotation.max", wb);
	}
	snprintf(wa, sizeof(wa), "must lie between rotation.min (%s) and "
	    "rotation.max (%s)", min, max);
	if (cfg->rotation.mean_ms < cfg->rotation.min_ms) {
		snprintf(wb, sizeof(wb), "must not exceed rotation.mean (%s)",
		    mean);
		return blame(c, "rotation.mean", wa, "rotation.min", wb);
	}
	if (cfg->rotation.mean_ms > cfg->rotation.max_ms) {
		snprintf(wb, sizeof(wb), "must not be below rotation.mean "
		    "(%s)", mean);
		return blame(c, "rotation.mean", wa, "rotation.max", wb);
	}

	if (cfg->retransmit.initial_ms > cfg->retransmit.max_ms) {
		config_format_duration(min, sizeof(min), cfg->retransmit.initial_ms);
		config_format_duration(max, sizeof(max), cfg->retransmit.max_ms);
		snprintf(wa, sizeof(wa), "must not exceed retransmit.max (%s)",
		    max);
		snprintf(wb, sizeof(wb), "must not be below retransmit.initial "
		    "(%s)", min);
		return blame(c, "retransmit.initial", wa, "retransmit.max", wb);
	}

	/* One contact may hold two largest messages in reassembly (one
	 * completing while the next begins). */
	if (cfg->limits.reassembly < 2 * cfg->limits.message_max) {
		config_format_size(min, sizeof(min), cfg->limits.reassembly);
		config_format_size(max, sizeof(max), cfg->limits.message_max);
		snprintf(wa, sizeof(wa), "must be at least twice "
		    "limits.message_max (%s)", max);
		snprintf(wb, sizeof(wb), "must be at most half of "
		    "limits.reassembly (%s)", min);
		return blame(c, "limits.reassembly", wa, "limits.message_max",
		    wb);
	}

	/* One largest file must fit in a contact's quota. */
	if (cfg->files.quota < cfg->files.max_size) {
		config_format_size(min, sizeof(min), cfg->files.max_size);
		config_format_size(max, sizeof(max), cfg->files.quota);
		snprintf(wa, sizeof(wa), "must not be below files.max_size (%s)",
		    min);
		snprintf(wb, sizeof(wb), "must not exceed files.quota (%s)", max);
		return blame(c, "files.quota", wa, "files.max_size", wb);
	}

	switch (cfg->transport) {
	case VEILD_TRANSPORT_MQTT:
		/* uris has a default and set_uris refuses an empty list. */
		if (cfg->mqtt.nuris == 0)
			return missing(c, "mqtt.uris", "mqtt",
			    "is required with transport \"mqtt\"");
		if (check_plaintext(c) == -1)
			return -1;
		if (cfg->mqtt.proxy != NULL && cfg->mqtt.proxy_isolate &&
		    proxy_has_auth(cfg->mqtt.proxy))
			return blame(c, "mqtt.proxy_isolate", "must be false "
			    "when mqtt.proxy carries credentials (the same ones "
			    "on every connection would link every identity)",
			    "mqtt.proxy", "carries credentials: they would be "
			    "the same on every connection; set "
			    "mqtt.proxy_isolate = false to use them anyway");
		break;
	case VEILD_TRANSPORT_XMPP:
		if (cfg->xmpp.domain == NULL)
			return missing(c, "xmpp.domain",
			    config_lookup(c->cf, "xmpp") != NULL ? "xmpp" :
			    "transport", "is required with transport \"xmpp\"");
		/* libstrophe opens its own sockets and takes no tunnel. */
		if (cfg->mqtt.proxy != NULL)
			return cfg_error(c, config_lookup(c->cf, "mqtt.proxy"),
			    "mqtt.proxy", "the XMPP transport cannot connect "
			    "through a proxy (libstrophe cannot be given a "
			    "tunnel); see docs/tor.md");
		break;
	}

	if (cfg->backup.dir != NULL && cfg->backup.public_key == NULL)
		return missing(c, "backup.public_key", "backup.dir",
		    "is required with backup.dir (veilctl backup keygen "
		    "makes one)");
	if (cfg->backup.dir != NULL && cfg->state_dir != NULL &&
	    strcmp(cfg->backup.dir, cfg->state_dir) == 0)
		return cfg_error(c, config_lookup(c->cf, "backup.dir"),
		    "backup.dir", "must not be the state directory itself");

	if (cfg->xmpp.domain != NULL && cfg->xmpp.pubsub == NULL) {
		size_t	 len = strlen(cfg->xmpp.domain) + sizeof("pubsub.");

		if ((cfg->xmpp.pubsub = malloc(len)) == NULL)
			return nomem(c);
		snprintf(cfg->xmpp.pubsub, len, "pubsub.%s", cfg->xmpp.domain);
	}
	return 0;
}

/* --- public -------------------------------------------------------------- */

int
config_defaults(struct veild_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->transport = VEILD_TRANSPORT_MQTT;
	cfg->mqtt.keepalive_ms = 30 * SEC;
	cfg->mqtt.session_expiry_ms = 7 * DAY;
	cfg->mqtt.inflight = 64;
	cfg->mqtt.proxy_isolate = 1;
	cfg->mqtt.tls.verify = 1;
	cfg->xmpp.port = 5222;
	cfg->xmpp.tls = VEILD_TLS_REQUIRED;
	cfg->xmpp.trust.verify = 1;
	cfg->xmpp.inflight = 64;
	cfg->identity.obscurity = 2;
	cfg->identity.id_bits = VEIL_ID_DEFAULT_BITS;
	cfg->frames.size = VEIL_FRAME_DEFAULT;
	cfg->frames.cover_rate = 0.0;
	cfg->frames.jitter_ms = 0;
	cfg->rotation.mean_ms = HOUR;
	cfg->rotation.min_ms = 5 * MIN;
	cfg->rotation.max_ms = 6 * HOUR;
	cfg->rotation.grace_ms = 10 * MIN;
	cfg->retransmit.initial_ms = 2 * SEC;
	cfg->retransmit.max_ms = 5 * MIN;
	cfg->keys.period_ms = HOUR;
	cfg->keys.heal_ms = DAY;
	cfg->requests.ttl_ms = 3 * DAY;
	cfg->requests.pending_max = 100;
	cfg->requests.per_hour = 30;
	cfg->requests.pending_ttl_ms = 7 * DAY;
	cfg->requests.auto_accept_per_hour = 10;
	cfg->limits.message_max = VEIL_MESSAGE_MAX;
	cfg->limits.reassembly = 16 * MIB;
	cfg->limits.unread_messages = 10000;
	cfg->limits.unread_bytes = 64 * MIB;
	cfg->limits.outbox_messages = 10000;
	cfg->limits.outbox_bytes = 64 * MIB;
	cfg->limits.receive_reply = 1 * MIB;
	cfg->cards.ttl_ms = DAY;
	cfg->cards.one_time_ttl_ms = 7 * DAY;
	cfg->accept = VEILD_ACCEPT_ASK;
	cfg->files.max_size = 100 * MIB;
	cfg->files.quota = 1 * GIB;
	cfg->log.level = VEILD_LOG_INFO;
	cfg->unlock.kdf = VEILD_KDF_MODERATE;
	cfg->backup.interval_ms = DAY;
	cfg->backup.keep = 7;

	if ((cfg->state_dir = strdup(DEFAULT_STATE_DIR)) == NULL ||
	    (cfg->unlock.credential = strdup(DEFAULT_CREDENTIAL)) == NULL ||
	    (cfg->socket = strdup(DEFAULT_SOCKET)) == NULL ||
	    (cfg->mqtt.topic_prefix = strdup("")) == NULL ||
	    (cfg->mqtt.uris[0] = strdup(DEFAULT_MQTT_URI)) == NULL) {
		config_free(cfg);
		return -1;
	}
	cfg->mqtt.nuris = 1;
	return 0;
}

int
config_load(const char *path, struct veild_config *cfg, char *err,
    size_t errlen)
{
	config_t	 cf;
	struct ctx	 c;
	FILE		*fp;
	int		 rv = -1;

	if (errlen > 0)
		err[0] = '\0';
	c.path = path;
	c.cf = &cf;
	c.cfg = cfg;
	c.err = err;
	c.errlen = errlen;

	if (config_defaults(cfg) == -1) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}

	config_init(&cf);
	if (!config_read_file(&cf, path)) {
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO) {
			/* libconfig keeps no reason; ask once more for it. */
			if ((fp = fopen(path, "r")) == NULL)
				snprintf(err, errlen, "%s: %s", path,
				    strerror(errno));
			else {
				fclose(fp);
				snprintf(err, errlen, "%s: cannot read",
				    path);
			}
		} else
			snprintf(err, errlen, "%s:%d: %s",
			    config_error_file(&cf) != NULL ?
			    config_error_file(&cf) : path,
			    config_error_line(&cf), config_error_text(&cf));
		goto done;
	}
	if (set_group(&c, config_root_setting(&cf), root_keys) == -1)
		goto done;
	if (check_cross(&c) == -1)
		goto done;
	rv = 0;
done:
	/* A file that failed half-way may still hold the password in
	 * libconfig's tree; wipe it before libconfig frees it. */
	{
		config_setting_t *s = config_lookup(&cf, "mqtt.password");

		if (s != NULL && config_setting_type(s) == CONFIG_TYPE_STRING)
			wipe_setting_string(s);
	}
	config_destroy(&cf);
	if (rv == -1)
		config_free(cfg);
	return rv;
}

static void
config_tls_free(struct veild_tls *t)
{
	free(t->ca_file);
	free(t->ca_path);
	free(t->pin_sha256);
	free(t->cert_file);
	free(t->key_file);
}

void
config_free(struct veild_config *cfg)
{
	size_t	 i;

	if (cfg->mqtt.password != NULL)
		sodium_memzero(cfg->mqtt.password, strlen(cfg->mqtt.password));
	if (cfg->mqtt.proxy != NULL)
		sodium_memzero(cfg->mqtt.proxy, strlen(cfg->mqtt.proxy));
	free(cfg->state_dir);
	free(cfg->socket);
	free(cfg->socket_group);
	for (i = 0; i < cfg->mqtt.nuris && i < CONFIG_MQTT_URIS_MAX; i++)
		free(cfg->mqtt.uris[i]);
	free(cfg->mqtt.username);
	free(cfg->mqtt.password);
	free(cfg->mqtt.topic_prefix);
	free(cfg->mqtt.proxy);
	free(cfg->xmpp.domain);
	free(cfg->xmpp.host);
	free(cfg->xmpp.pubsub);
	config_tls_free(&cfg->mqtt.tls);
	config_tls_free(&cfg->xmpp.trust);
	free(cfg->identity.name);
	free(cfg->unlock.credential);
	free(cfg->unlock.key_file);
	free(cfg->backup.dir);
	free(cfg->backup.public_key);
	free(cfg->files.dir);
	sodium_memzero(cfg, sizeof(*cfg));
}
