/* veilctl_contact.c: veilctl contact add, list, accept, reject, remove, verify, rename. */
#define _GNU_SOURCE

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veilctl.h"

static int	cmd_contact_add(int, char **);
static int	cmd_contact_list(int, char **);
static int	cmd_contact_name(int, char **);
static int	cmd_contact_verify(int, char **);
static int	cmd_contact_accept(int, char **);
static int	cmd_contact_rename(int, char **);

const struct subcommand contact_cmds[] = {
	{ "add",	cmd_contact_add,	"contact add URI [--name NAME]",
	    "ask a card's owner to become a contact" },
	{ "list",	cmd_contact_list,	"contact list",
	    "list contacts and pending requests" },
	{ "accept",	cmd_contact_accept,	"contact accept NAME [--as LOCAL]",
	    "accept a contact request (and call it LOCAL)" },
	{ "rename",	cmd_contact_rename,	"contact rename NAME NEW",
	    "give a contact another local name" },
	{ "reject",	cmd_contact_name,	"contact reject NAME",
	    "reject a contact request" },
	{ "remove",	cmd_contact_name,	"contact remove NAME",
	    "forget a contact" },
	{ "verify",	cmd_contact_verify,	"contact verify NAME [--mark]",
	    "show the fingerprint; --mark: it matched" },
	{ NULL, NULL, NULL, NULL }
};

int
cmd_contact(int argc, char **argv)
{
	if (argc < 2)
		table_usage(contact_cmds);
	return run_table(contact_cmds, argc - 1, argv + 1);
}

static int
cmd_contact_add(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t		*params, *result;
	const char	*name = NULL;
	int		 c;

	while ((c = next_opt(argc, argv, "n:h", longopts)) != -1)
		if (c == 'n')
			name = optarg;
	if (argc - optind != 1)
		usage();
	params = json_pack("{s:s, s:s*}", "card", argv[optind], "name", name);
	if (params == NULL)
		die("the card and name must be UTF-8 text");
	result = rpc("contact.add", params);
	print_result(result);
	json_decref(result);
	return 0;
}

static int
cmd_contact_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t		*result, *rows;

	while (next_opt(argc, argv, "+h", longopts) != -1)
		;
	if (optind != argc)
		usage();
	result = rpc("contact.list", NULL);
	if (json_out) {
		print_json(result);
		json_decref(result);
		return 0;
	}
	rows = json_is_array(result) ? result :
	    json_object_get(result, "contacts");
	if (!json_is_array(rows))
		die("invalid reply from veild: no contact list");
	if (json_array_size(rows) == 0) {
		puts("no contacts");
		json_decref(result);
		return 0;
	}
	print_rows(rows, "name");
	json_decref(result);
	return 0;
}

/* reject, remove: contact.<verb> {name}. */
static int
cmd_contact_name(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t	*params, *result;
	char	 method[32];

	while (next_opt(argc, argv, "h", longopts) != -1)
		;
	if (argc - optind != 1)
		usage();
	snprintf(method, sizeof(method), "contact.%s", current->name);
	if ((params = json_pack("{s:s}", "name", argv[optind])) == NULL)
		die("the name must be UTF-8 text");
	result = rpc(method, params);
	print_result(result);
	json_decref(result);
	return 0;
}

static int
cmd_contact_accept(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "as", required_argument, NULL, 'a' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t		*params, *result;
	const char	*as = NULL;
	int		 c;

	while ((c = next_opt(argc, argv, "h", longopts)) != -1)
		if (c == 'a')
			as = optarg;
	if (argc - optind != 1)
		usage();
	params = json_pack("{s:s, s:s*}", "name", argv[optind], "as", as);
	if (params == NULL)
		die("the names must be UTF-8 text");
	result = rpc("contact.accept", params);
	print_result(result);
	json_decref(result);
	return 0;
}

/* Local only: veild sends nothing, the peer keeps its own name for us. */
static int
cmd_contact_rename(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t	*params, *result;

	while (next_opt(argc, argv, "h", longopts) != -1)
		;
	if (argc - optind != 2)
		usage();
	params = json_pack("{s:s, s:s}", "name", argv[optind], "new_name",
	    argv[optind + 1]);
	if (params == NULL)
		die("the names must be UTF-8 text");
	result = rpc("contact.rename", params);
	print_result(result);
	json_decref(result);
	return 0;
}

static int
cmd_contact_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mark", no_argument, NULL, 'm' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t	*params, *result;
	int	 c, mark = 0;

	while ((c = next_opt(argc, argv, "h", longopts)) != -1)
		if (c == 'm')
			mark = 1;
	if (argc - optind != 1)
		usage();
	if ((params = json_pack("{s:s}", "name", argv[optind])) == NULL)
		die("the name must be UTF-8 text");
	if (mark)
		json_object_set_new(params, "mark", json_true());
	result = rpc("contact.verify", params);
	print_result(result);
	json_decref(result);
	return 0;
}
