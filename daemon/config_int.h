/* veild configuration: what config.c shares with config_print.c. */
#ifndef CONFIG_INT_H
#define CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#define KIB	1024ULL
#define MIB	(1024 * KIB)
#define GIB	(1024 * MIB)

#define SEC	1000ULL
#define MIN	(60 * SEC)
#define HOUR	(60 * MIN)
#define DAY	(24 * HOUR)

/* The enums' names, indexed by their values, NULL-terminated. */
extern const char *const config_transport_names[];
extern const char *const config_tls_names[];
extern const char *const config_accept_names[];
extern const char *const config_level_names[];
extern const char *const config_kdf_names[];

/* The largest unit that states the value exactly ("4MiB", "90s"): what
 * config_print and error messages show. */
void	config_format_size(char *buf, size_t len, uint64_t n);
void	config_format_duration(char *buf, size_t len, uint64_t ms);

/* Value checks (config_check.c): why s is bad, or NULL. */
const char	*config_check_abs_path(const char *s);
const char	*config_check_socket_path(const char *s);
const char	*config_check_group_name(const char *s);
const char	*config_check_host(const char *s);
const char	*config_check_host_or_ip(const char *s);
const char	*config_check_topic_prefix(const char *s);
const char	*config_check_proxy(const char *s);
const char	*config_check_uri(const char *s);
const char	*config_check_pins(const char *s);
const char	*config_check_credential(const char *s);
const char	*config_check_backup_key(const char *s);
const char	*config_check_name(const char *s);

/* "90s", "5m", "1h", "7d", "250ms" (a plain number: seconds) to
 * milliseconds; "4MiB", "64KiB", "512B" (a plain number: bytes) to bytes.
 * 0, or -1 on junk, a bad unit or overflow (config_units.c). */
int	config_parse_size(const char *s, uint64_t *bytes);

#endif
