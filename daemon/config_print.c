/* veild configuration printed back as libconfig text (veild -n): every key, defaults included, secrets masked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_int.h"

/* Part of a libconfig string.  Values were checked free of control
 * characters, so only " and \ need escaping. */
static void
print_escaped(FILE *fp, const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; s != NULL && i < n && s[i] != '\0'; i++) {
		if (s[i] == '"' || s[i] == '\\')
			fputc('\\', fp);
		fputc(s[i], fp);
	}
}

static void
print_string(FILE *fp, const char *s)
{
	fputc('"', fp);
	print_escaped(fp, s, SIZE_MAX);
	fputc('"', fp);
}

static void
print_str(FILE *fp, const char *indent, const char *key, const char *v)
{
	fprintf(fp, "%s%s = ", indent, key);
	print_string(fp, v);
	fputs(";\n", fp);
}

static void
print_size(FILE *fp, const char *indent, const char *key, uint64_t n)
{
	char	 buf[32];

	config_format_size(buf, sizeof(buf), n);
	fprintf(fp, "%s%s = \"%s\";\n", indent, key, buf);
}

static void
print_dur(FILE *fp, const char *indent, const char *key, uint64_t ms)
{
	char	 buf[32];

	config_format_duration(buf, sizeof(buf), ms);
	fprintf(fp, "%s%s = \"%s\";\n", indent, key, buf);
}

/* The shortest text that reads back as the same double, always with a
 * '.' or an exponent so that libconfig parses a float, not an integer. */
static void
format_float(char *buf, size_t len, double v)
{
	int	 prec;

	for (prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (strpbrk(buf, ".e") == NULL && strlen(buf) + 3 <= len)
		strcat(buf, ".0");
}

/* The proxy URL with any user:password@ replaced: it is a secret too. */
static void
print_proxy(FILE *fp, const char *indent, const char *proxy)
{
	const char	*auth, *at;
	size_t		 alen;

	fprintf(fp, "%sproxy = ", indent);
	if (proxy == NULL) {
		fputs("\"\";\n", fp);
		return;
	}
	auth = proxy + strlen("http://");
	alen = strcspn(auth, "/?#");
	for (at = NULL; alen > 0; alen--)
		if (auth[alen - 1] == '@') {
			at = auth + alen - 1;
			break;
		}
	fputc('"', fp);
	if (at == NULL)
		print_escaped(fp, proxy, SIZE_MAX);
	else {
		print_escaped(fp, proxy, (size_t)(auth - proxy));
		fputs("********", fp);
		print_escaped(fp, at, SIZE_MAX);
	}
	fputs("\";\n", fp);
}

int
config_print(FILE *fp, const struct veild_config *cfg)
{
	const char	*in = "  ";
	char		 buf[64];
	size_t		 i;

	print_str(fp, "", "state_dir", cfg->state_dir);
	print_str(fp, "", "socket", cfg->socket);
	print_str(fp, "", "socket_group", cfg->socket_group);
	print_str(fp, "", "transport", config_transport_names[cfg->transport]);

	fputs("mqtt = {\n", fp);
	fprintf(fp, "%suris = [ ", in);
	for (i = 0; i < cfg->mqtt.nuris; i++) {
		if (i > 0)
			fputs(", ", fp);
		print_string(fp, cfg->mqtt.uris[i]);
	}
	fputs(" ];\n", fp);
	print_str(fp, in, "username", cfg->mqtt.username);
	print_str(fp, in, "password",
	    cfg->mqtt.password != NULL ? "********" : "");
	fprintf(fp, "%srandom_username = %s;\n", in,
	    cfg->mqtt.random_username ? "true" : "false");
	print_str(fp, in, "topic_prefix", cfg->mqtt.topic_prefix);
	print_dur(fp, in, "keepalive", cfg->mqtt.keepalive_ms);
	print_dur(fp, in, "session_expiry", cfg->mqtt.session_expiry_ms);
	fprintf(fp, "%sinflight = %u;\n", in, cfg->mqtt.inflight);
	print_proxy(fp, in, cfg->mqtt.proxy);
	fprintf(fp, "%sproxy_isolate = %s;\n", in,
	    cfg->mqtt.proxy_isolate ? "true" : "false");
	fprintf(fp, "%splaintext_password = %s;\n", in,
	    cfg->mqtt.plaintext_password ? "true" : "false");
	fprintf(fp, "%stls = {\n", in);
	print_str(fp, "    ", "ca_file", cfg->mqtt.tls.ca_file);
	print_str(fp, "    ", "ca_path", cfg->mqtt.tls.ca_path);
	fprintf(fp, "    verify = %s;\n", cfg->mqtt.tls.verify ? "true" :
	    "false");
	print_str(fp, "    ", "pin_sha256", cfg->mqtt.tls.pin_sha256);
	print_str(fp, "    ", "cert_file", cfg->mqtt.tls.cert_file);
	print_str(fp, "    ", "key_file", cfg->mqtt.tls.key_file);
	fprintf(fp, "%s};\n", in);
	fputs("};\n", fp);

	fputs("xmpp = {\n", fp);
	print_str(fp, in, "domain", cfg->xmpp.domain);
	print_str(fp, in, "host", cfg->xmpp.host);
	fprintf(fp, "%sport = %u;\n", in, cfg->xmpp.port);
	print_str(fp, in, "pubsub", cfg->xmpp.pubsub);
	print_str(fp, in, "tls", config_tls_names[cfg->xmpp.tls]);
	print_str(fp, in, "tls_ca_file", cfg->xmpp.trust.ca_file);
	print_str(fp, in, "tls_ca_path", cfg->xmpp.trust.ca_path);
	fprintf(fp, "%stls_verify = %s;\n", in, cfg->xmpp.trust.verify ?
	    "true" : "false");
	print_str(fp, in, "tls_pin_sha256", cfg->xmpp.trust.pin_sha256);
	fprintf(fp, "%sinflight = %u;\n", in, cfg->xmpp.inflight);
	fputs("};\n", fp);

	fputs("identity = {\n", fp);
	print_str(fp, in, "name", cfg->identity.name);
	fprintf(fp, "%sobscurity = %d;\n", in, cfg->identity.obscurity);
	fprintf(fp, "%sid_bits = %u;\n", in, cfg->identity.id_bits);
	fputs("};\n", fp);

	fputs("frames = {\n", fp);
	fprintf(fp, "%ssize = %zu;\n", in, cfg->frames.size);
	format_float(buf, sizeof(buf), cfg->frames.cover_rate);
	fprintf(fp, "%scover_rate = %s;\n", in, buf);
	print_dur(fp, in, "jitter", cfg->frames.jitter_ms);
	fputs("};\n", fp);

	fputs("rotation = {\n", fp);
	print_dur(fp, in, "mean", cfg->rotation.mean_ms);
	print_dur(fp, in, "min", cfg->rotation.min_ms);
	print_dur(fp, in, "max", cfg->rotation.max_ms);
	print_dur(fp, in, "grace", cfg->rotation.grace_ms);
	fputs("};\n", fp);

	fputs("retransmit = {\n", fp);
	print_dur(fp, in, "initial", cfg->retransmit.initial_ms);
	print_dur(fp, in, "max", cfg->retransmit.max_ms);
	fputs("};\n", fp);

	fputs("keys = {\n", fp);
	print_dur(fp, in, "period", cfg->keys.period_ms);
	print_dur(fp, in, "heal", cfg->keys.heal_ms);
	fputs("};\n", fp);

	fputs("requests = {\n", fp);
	print_dur(fp, in, "ttl", cfg->requests.ttl_ms);
	fprintf(fp, "%spending_max = %u;\n", in, cfg->requests.pending_max);
	fprintf(fp, "%sper_hour = %u;\n", in, cfg->requests.per_hour);
	print_dur(fp, in, "pending_ttl", cfg->requests.pending_ttl_ms);
	fprintf(fp, "%sauto_accept_per_hour = %u;\n", in,
	    cfg->requests.auto_accept_per_hour);
	fputs("};\n", fp);

	fputs("limits = {\n", fp);
	print_size(fp, in, "message_max", cfg->limits.message_max);
	print_size(fp, in, "reassembly", cfg->limits.reassembly);
	fprintf(fp, "%sunread_messages = %u;\n", in, cfg->limits.unread_messages);
	print_size(fp, in, "unread_bytes", cfg->limits.unread_bytes);
	fprintf(fp, "%soutbox_messages = %u;\n", in, cfg->limits.outbox_messages);
	print_size(fp, in, "outbox_bytes", cfg->limits.outbox_bytes);
	print_size(fp, in, "receive_reply", cfg->limits.receive_reply);
	fputs("};\n", fp);

	fputs("cards = {\n", fp);
	print_dur(fp, in, "ttl", cfg->cards.ttl_ms);
	print_dur(fp, in, "one_time_ttl", cfg->cards.one_time_ttl_ms);
	fputs("};\n", fp);

	print_str(fp, "", "accept", config_accept_names[cfg->accept]);

	fputs("files = {\n", fp);
	print_str(fp, in, "dir", cfg->files.dir);
	print_size(fp, in, "max_size", cfg->files.max_size);
	print_size(fp, in, "quota", cfg->files.quota);
	fputs("};\n", fp);

	fputs("log = {\n", fp);
	print_str(fp, in, "level", config_level_names[cfg->log.level]);
	fputs("};\n", fp);

	fputs("unlock = {\n", fp);
	print_str(fp, in, "credential", cfg->unlock.credential);
	print_str(fp, in, "key_file", cfg->unlock.key_file);
	print_str(fp, in, "kdf", config_kdf_names[cfg->unlock.kdf]);
	fputs("};\n", fp);

	fputs("backup = {\n", fp);
	print_str(fp, in, "dir", cfg->backup.dir);
	print_dur(fp, in, "interval", cfg->backup.interval_ms);
	fprintf(fp, "%skeep = %u;\n", in, cfg->backup.keep);
	print_str(fp, in, "public_key", cfg->backup.public_key);
	fputs("};\n", fp);

	return ferror(fp) ? -1 : 0;
}
