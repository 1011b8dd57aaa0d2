/* fuzz_backup.h: what fuzz_backup and mkseeds share: the recipient key of the seed backups (every byte of its secret key is this). */
#ifndef FUZZ_BACKUP_H
#define FUZZ_BACKUP_H

#define FUZZ_BACKUP_SK	0x42

#endif
