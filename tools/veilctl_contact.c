/* veilctl_contact.c: veilctl contact add, list, accept, reject, remove, verify, rename. */
#define _GNU_SOURCE

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veilctl.h"

/* --- names that look alike --------------------------------------------- */

/*
 * A name's skeleton: what it looks like rather than what it is, so that
 * "bob", "Bob", "bоb" (Cyrillic o), "ｂｏｂ" (fullwidth) and "b0b" compare
 * equal.  Deliberately simple, not Unicode's full confusables table: case
 * folded; fullwidth forms to ASCII; Latin-1 letters without their accents;
 * combining marks dropped; the Cyrillic and Greek letters that look like
 * Latin ones mapped to them; 0 to o; i, I, 1 and | to l; "rn" to m;
 * spaces, '-', '_' and '.' dropped.  veilctl warns when a new name's
 * skeleton is another contact's: a request can pose as someone you know.
 */
static const struct {
	unsigned	cp;
	char		to;
} lookalike[] = {
	/* Greek capitals, then small */
	{ 0x391, 'a' }, { 0x392, 'b' }, { 0x395, 'e' }, { 0x396, 'z' },
	{ 0x397, 'h' }, { 0x399, 'l' }, { 0x39a, 'k' }, { 0x39c, 'm' },
	{ 0x39d, 'n' }, { 0x39f, 'o' }, { 0x3a1, 'p' }, { 0x3a4, 't' },
	{ 0x3a5, 'y' }, { 0x3a7, 'x' }, { 0x3b1, 'a' }, { 0x3b5, 'e' },
	{ 0x3b9, 'i' }, { 0x3ba, 'k' }, { 0x3bd, 'v' }, { 0x3bf, 'o' },
	{ 0x3c1, 'p' }, { 0x3c4, 't' }, { 0x3c5, 'u' }, { 0x3c7, 'x' },
	/* Cyrillic */
	{ 0x405, 's' }, { 0x406, 'l' }, { 0x408, 'j' }, { 0x410, 'a' },
	{ 0x412, 'b' }, { 0x415, 'e' }, { 0x41a, 'k' }, { 0x41c, 'm' },
	{ 0x41d, 'h' }, { 0x41e, 'o' }, { 0x420, 'p' }, { 0x421, 'c' },
	{ 0x422, 't' }, { 0x423, 'y' }, { 0x425, 'x' }, { 0x430, 'a' },
	{ 0x435, 'e' }, { 0x43a, 'k' }, { 0x43e, 'o' }, { 0x440, 'p' },
	{ 0x441, 'c' }, { 0x443, 'y' }, { 0x445, 'x' }, { 0x450, 'e' },
	{ 0x451, 'e' }, { 0x455, 's' }, { 0x456, 'i' }, { 0x457, 'i' },
	{ 0x458, 'j' }, { 0x4bb, 'h' }, { 0x501, 'd' }, { 0x51b, 'q' },
	{ 0x51d, 'w' },
	/* Latin */
	{ 0x131, 'i' }, { 0x237, 'j' }, { 0x2113, 'l' },
};

/* Latin-1 letters U+00C0..U+00FF without their accents ('*': not a letter). */
static const char latin1_base[] =
    "aaaaaaaceeeeiiii" "dnooooo*ouuuuyts"
    "aaaaaaaceeeeiiii" "dnooooo*ouuuuyty";

static void
skeleton(const char *name, char *out, size_t outlen)
{
	const unsigned char	*p = (const unsigned char *)name;
	size_t			 o = 0, k, n;
	unsigned		 cp;
	char			 ch;

	while (*p != '\0' && o + 1 < outlen) {
		n = *p < 0x80 ? 1 : *p < 0xe0 ? 2 : *p < 0xf0 ? 3 : 4;
		cp = n == 1 ? *p : n == 2 ? (*p & 0x1fu) : n == 3 ? (*p & 0x0fu) :
		    (*p & 0x07u);
		for (k = 1; k < n && p[k] != '\0'; k++)
			cp = (cp << 6) | (p[k] & 0x3fu);
		n = k;		/* bytes it took */
		p += n;
		if (cp >= 0xff01 && cp <= 0xff5e)	/* fullwidth */
			cp -= 0xfee0;
		ch = 0;
		if (cp == 'I' || cp == '|' || cp == '1')
			ch = 'l';
		else if (cp == '0')
			ch = 'o';
		else if (cp == ' ' || cp == '-' || cp == '_' || cp == '.' ||
		    cp == 0xa0 || (cp >= 0x300 && cp <= 0x36f))
			continue;
		else if (cp < 0x80)
			ch = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
		else if (cp >= 0xc0 && cp <= 0xff && latin1_base[cp - 0xc0] != '*')
			ch = latin1_base[cp - 0xc0];
		else
			for (k = 0; k < sizeof(lookalike) / sizeof(lookalike[0]); k++)
				if (lookalike[k].cp == cp)
					ch = lookalike[k].to;
		if (ch == 0) {	/* anything else stands for itself */
			if (o + n >= outlen)
				break;
			memcpy(out + o, p - n, n);
			o += n;
			continue;
		}
		if (ch == 'i')
			ch = 'l';	/* i, I, l, 1 and | are one stroke */
		out[o++] = ch;
		if (o >= 2 && out[o - 2] == 'r' && out[o - 1] == 'n') {
			out[o - 2] = 'm';	/* "rn" reads as "m" */
			o--;
		}
	}
	out[o] = '\0';
}

/*
 * Warns on standard error when contact `name` (peer name peer; self: its
 * name until now, if it had one) looks like another contact's name or
 * peer name.  Best effort: it never fails the
 * command it follows.
 */

static void
warn_lookalike(const char *self, const char *name, const char *peer)
{
	json_t		*result, *rows, *row;
	const char	*mine[2] = { name, peer }, *theirs[2];
	char		 a[4 * 64 + 1], b[4 * 64 + 1];
	size_t		 i;
	int		 j, k;

	result = rpc("contact.list", NULL);
	rows = json_object_get(result, "contacts");
	json_array_foreach(rows, i, row) {
		theirs[0] = json_string_value(json_object_get(row, "name"));
		theirs[1] = json_string_value(json_object_get(row, "peer_name"));
		/* Not the contact itself (self: its name until now). */
		if (theirs[0] == NULL || strcmp(theirs[0], name) == 0 ||
		    (self != NULL && strcmp(theirs[0], self) == 0))
			continue;
		for (j = 0; j < 2; j++)
			for (k = 0; k < 2; k++) {
				if (mine[j] == NULL || theirs[k] == NULL ||
				    *mine[j] == '\0' || *theirs[k] == '\0')
					continue;
				skeleton(mine[j], a, sizeof(a));
				skeleton(theirs[k], b, sizeof(b));
				if (strcmp(a, b) != 0)
					continue;
				fputs("veilctl: warning: \"", stderr);
				put_safe(stderr, mine[j], NULL);
				fputs("\" looks like \"", stderr);
				put_safe(stderr, theirs[k], NULL);
				fputs("\" of another contact, \"", stderr);
				put_safe(stderr, theirs[0], NULL);
				fputs("\": compare fingerprints (veilctl contact "
				    "verify) before you trust it\n", stderr);
				json_decref(result);
				return;
			}
	}
	json_decref(result);
}

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
	if (json_is_string(json_object_get(result, "name")))
		warn_lookalike(NULL, json_string_value(json_object_get(result, "name")),
		    json_string_value(json_object_get(result, "peer_name")));
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

/* warn_lookalike for contact name, to be called local (NULL: name). */
static void
peer_lookalike(const char *name, const char *local)
{
	json_t	*list = rpc("contact.list", NULL), *row;
	size_t	 i;

	json_array_foreach(json_object_get(list, "contacts"), i, row)
		if (json_is_string(json_object_get(row, "name")) &&
		    strcmp(json_string_value(json_object_get(row, "name")), name) == 0)
			warn_lookalike(name, local != NULL ? local : name,
			    json_string_value(json_object_get(row, "peer_name")));
	json_decref(list);
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
	/* Before accepting a request, the one moment it matters. */
	peer_lookalike(argv[optind], as);
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
	peer_lookalike(argv[optind], argv[optind + 1]);
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
