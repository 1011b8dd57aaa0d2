/* veild configuration: the checks of single values (paths, hosts, URIs, pins, keys, names); each says why a value is bad. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <sodium.h>

#include "common.h"
#include "frame.h"
#include "ids.h"

#include "bkkey.h"
#include "config.h"
#include "config_int.h"

#define HOST_MAX	253
#define TOPIC_PREFIX_MAX 128
#define GROUP_NAME_MAX	32

const char *
config_check_abs_path(const char *s)
{
	if (s[0] != '/')
		return "must be an absolute path";
	return NULL;
}

const char *
config_check_socket_path(const char *s)
{
	if (s[0] != '/')
		return "must be an absolute path";
	if (strlen(s) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return "must be shorter than 108 bytes (sun_path)";
	return NULL;
}

const char *
config_check_group_name(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len > GROUP_NAME_MAX)
		return "must be a group name of at most 32 bytes";
	for (i = 0; i < len; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789._-", s[i]) == NULL)
			return "must be a group name (A-Z a-z 0-9 . _ -)";
	return NULL;
}

const char *
config_check_host(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > HOST_MAX)
		return "must be a host name of 1 to 253 bytes";
	for (i = 0; i < len; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789.-", s[i]) == NULL)
			return "must be a host name (A-Z a-z 0-9 . -)";
	return NULL;
}

const char *
config_check_host_or_ip(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > HOST_MAX)
		return "must be a host name or address of 1 to 253 bytes";
	for (i = 0; i < len; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789.-:", s[i]) == NULL)
			return "must be a host name or address";
	return NULL;
}

const char *
config_check_topic_prefix(const char *s)
{
	size_t	 i, len = strlen(s);

	/* + and # are wildcards and $ starts broker-reserved topics. */
	if (len > TOPIC_PREFIX_MAX)
		return "must be at most 128 bytes";
	for (i = 0; i < len; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789/_-", s[i]) == NULL)
			return "may hold only A-Z a-z 0-9 / _ -";
	return NULL;
}

const char *
config_check_proxy(const char *s)
{
	const char	*auth, *at, *host, *colon, *p;
	size_t		 alen, hlen;
	unsigned long	 port;

	/* paho speaks only HTTP CONNECT to a proxy.  The URL is checked
	 * strictly so that config_print can tell credentials (masked) from
	 * the host (printed). */
	if (strncmp(s, "http://", 7) != 0)
		return "must be an http:// URL";
	auth = s + 7;
	alen = strcspn(auth, "/");
	if (auth[alen] != '\0' && strcmp(auth + alen, "/") != 0)
		return "must be http://[user:password@]host[:port] without a path";
	host = auth;
	for (at = auth; at < auth + alen; at++)
		if (*at == '@')
			host = at + 1;
	hlen = (size_t)(auth + alen - host);
	colon = memchr(host, ':', hlen);
	if (colon != NULL) {
		if (colon + 1 == auth + alen || colon + 6 < auth + alen)
			return "must have a port between 1 and 65535";
		port = 0;
		for (p = colon + 1; p < auth + alen; p++) {
			if (*p < '0' || *p > '9')
				return "must have a port between 1 and 65535";
			port = port * 10 + (unsigned long)(*p - '0');
		}
		if (port < 1 || port > 65535)
			return "must have a port between 1 and 65535";
		hlen = (size_t)(colon - host);
	}
	if (hlen == 0)
		return "must name a host";
	for (p = host; p < host + hlen; p++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789.-", *p) == NULL)
			return "must name a host (A-Z a-z 0-9 . -)";
	return NULL;
}

const char *
config_check_uri(const char *s)
{
	static const char *const schemes[] = {
		"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://",
		NULL
	};
	size_t		 i, n;

	for (i = 0; schemes[i] != NULL; i++) {
		n = strlen(schemes[i]);
		if (strncmp(s, schemes[i], n) == 0)
			break;
	}
	if (schemes[i] == NULL)
		return "must start with tcp://, ssl://, mqtt://, mqtts://, ws:// "
		    "or wss://";
	if (s[n] == '\0' || s[n] == '/' || s[n] == ':')
		return "must name a host";
	for (; s[n] != '\0'; n++)
		if (s[n] == ' ')
			return "must not contain spaces";
	return NULL;
}

/* SHA-256 pins, standard base64, comma-separated (transport_tls.h). */
const char *
config_check_pins(const char *s)
{
	unsigned char	 md[32];
	const char	*end;
	size_t		 n, len;
	int		 count = 0;

	while (*s != '\0') {
		n = strcspn(s, ",");
		if (++count > 4)
			return "must hold at most 4 pins";
		if (sodium_base642bin(md, sizeof(md), s, n, NULL, &len, &end,
		    sodium_base64_VARIANT_ORIGINAL) != 0 || end != s + n ||
		    len != sizeof(md))
			return "must be base64 SHA-256 digests (44 characters "
			    "each), separated by commas";
		s += n;
		if (*s == ',' && *++s == '\0')
			return "must not end with a comma";
	}
	return NULL;
}

/* A systemd credential name: one path component. */
const char *
config_check_credential(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len > 255 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return "must be a credential name (a file name)";
	for (i = 0; i < len; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789._-", s[i]) == NULL)
			return "must be a credential name (A-Z a-z 0-9 . _ -)";
	return NULL;
}

const char *
config_check_backup_key(const char *s)
{
	uint8_t	 pk[BKKEY_BYTES];

	if (bkkey_pk_decode(s, pk) != 0)
		return "must be a backup public key as `veilctl backup keygen` "
		    "prints it (veilbk:...)";
	return NULL;
}

const char *
config_check_name(const char *s)
{
	switch (veil_name_valid(s)) {
	case VEIL_OK:
		return NULL;
	case VEIL_ERR_TOOBIG:
		return "must be at most 64 bytes";
	default:
		return "must be 1 to 64 bytes of UTF-8 without control "
		    "characters or invisible ones (bidi controls, zero-width)";
	}
}

