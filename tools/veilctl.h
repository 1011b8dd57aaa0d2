/* veilctl.h: what veilctl's files share — the socket, the output helpers, the command tables. */
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
extern const struct subcommand	 contact_cmds[], transfer_cmds[];
/* Called for each notification that arrives while veilctl waits. */
extern void			(*on_notify)(json_t *msg);

void	die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void	usage(void) __attribute__((noreturn));
void	put_safe(FILE *f, const char *s, const char *nl);
size_t	cell_width(json_t *v);

/* The socket: one request and its answer (a JSON-RPC error ends veilctl
 * with status 1), params stolen. */
json_t	*rpc(const char *method, json_t *params);
/* The same, passing fd along with the request (SCM_RIGHTS), when fd >= 0;
 * an error is returned as NULL with *code and *msg (msg is a new
 * reference, NULL when code is 0) instead of ending veilctl. */
json_t	*rpc_try(const char *method, json_t *params, int fd, int *code, json_t **msg);
/* For a request that may be repeated (message.send under its key): NULL
 * with *why when the connection could not be made or broke before the
 * answer; a JSON-RPC error ends veilctl.  params is borrowed. */
json_t	*rpc_conn(const char *method, json_t *params, const char **why);
/* rpc with fd passed along (-1: none); with code != NULL an error is
 * printed, *code set and NULL returned instead. */
json_t	*rpc_fd(const char *method, json_t *params, int fd, int *code);
/* Closes the connection to veild (the next request opens another). */
void	rpc_close(void);
/* The next message from veild (a new reference), NULL at EOF. */
json_t	*sock_read(void);

void	print_json(json_t *j);
void	print_value(json_t *v);
void	print_result(json_t *result);
void	print_time(json_t *v);
void	print_message(json_t *m);
/* rows (an array of objects) as a table, column first first. */
void	print_rows(json_t *rows, const char *first);

/* getopt_long over a subcommand's argv; --json is taken everywhere. */
#define COMMON_LONGOPTS	{ "json", no_argument, &json_out, 1 }, \
			{ "help", no_argument, NULL, 'h' }
int	next_opt(int argc, char **argv, const char *shortopts,
	    const struct option *longopts);
int	run_table(const struct subcommand *table, int argc, char **argv);
/* Lists a table's usage lines ("usage:" first) and exits 2. */
void	table_usage(const struct subcommand *table) __attribute__((noreturn));

/* veilctl_contact.c */
int	cmd_contact(int, char **);
/* veilctl_msg.c */
int	cmd_send(int, char **);
int	cmd_recv(int, char **);
/* veilctl_file.c */
int	cmd_send_file(int, char **);
int	cmd_transfer(int, char **);

/* veilctl_vault.c */
extern const struct subcommand backup_cmds[];
int	cmd_unlock(int, char **);
int	cmd_passphrase(int, char **);

#endif
