/* backup.c: placeholder while the format is written. */
#include "backup.h"
#include <stdio.h>
int backup_create(int fd, const struct backup_key *k, struct backup_result *r, char *err, size_t errlen) { (void)fd; (void)k; (void)r; snprintf(err, errlen, "not yet"); return BACKUP_EINTERNAL; }
int backup_restore(int fd, const struct backup_key *k, const char *p, size_t l, struct backup_result *r, char *err, size_t errlen) { (void)fd; (void)k; (void)p; (void)l; (void)r; snprintf(err, errlen, "not yet"); return BACKUP_EINTERNAL; }
int backup_now(struct backup_result *r, char *err, size_t errlen) { (void)r; snprintf(err, errlen, "not yet"); return BACKUP_EINTERNAL; }
int backup_init(void) { return 0; }
void backup_shutdown(void) {}
