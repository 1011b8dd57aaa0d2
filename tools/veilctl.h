/* veilctl.h: what veilctl's command files share (the socket, output, option parsing). */
#ifndef VEILCTL_H
#define VEILCTL_H

#include <getopt.h>
#include <stdio.h>

#include <jansson.h>

struct subcommand {
	const char	*name;
	int		(*fn)(int argc, char **argv);
	const char	*usage;
	const char	*help;
};

extern int			 json_out;	/* --json */
extern const struct subcommand	*current;	/* for usage() */

void	die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void	usage(void) __attribute__((noreturn));
void	put_safe(FILE *f, const char *s, const char *nl);
void	print_json(json_t *j);
void	print_result(json_t *result);

/* One request and its result (params stolen); an error ends veilctl. */
json_t	*rpc(const char *method, json_t *params);
/* The same with fd passed along (-1: none); with code != NULL an error
 * is printed, *code set and NULL returned instead. */
json_t	*rpc_fd(const char *method, json_t *params, int fd, int *code);

/* getopt_long over a subcommand's argv (argv[0] is its name).  --json is
 * accepted everywhere, also after the command. */
#define COMMON_LONGOPTS	{ "json", no_argument, &json_out, 1 }, \
			{ "help", no_argument, NULL, 'h' }
int	next_opt(int argc, char **argv, const char *shortopts,
	    const struct option *longopts);
int	run_table(const struct subcommand *table, int argc, char **argv);

/* veilctl_vault.c */
extern const struct subcommand backup_cmds[];
int	cmd_unlock(int, char **);
int	cmd_passphrase(int, char **);

#endif
