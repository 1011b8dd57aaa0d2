/* veild engine: identity, contacts, agreement, outbox and inbox, glued to the store and a transport. */
#ifndef VEILD_ENGINE_H
#define VEILD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct veild_config;

/* Contact states as stored (engine-defined). */
enum contact_state {
	CONTACT_REQUESTED = 1,	/* we sent a REQUEST, awaiting ACCEPT */
	CONTACT_PENDING = 2,	/* they asked, awaiting our owner's consent */
	CONTACT_ACCEPTED = 3,	/* we accepted, awaiting CONFIRM */
	CONTACT_ESTABLISHED = 4,
	CONTACT_FAILED = 5	/* hash mismatch: add the card again */
};
const char *contact_state_name(int state);

/* Opens the store, loads identity and contacts, creates the transport.
 * cfg must outlive the engine.  Returns 0 or -1 with err filled. */
int	engine_init(struct event_base *base, const struct veild_config *cfg,
	    char *err, size_t errlen);
/* Starts connecting and the timers. */
int	engine_start(void);
/* Applies what can change without a restart (log level, retransmit). */
void	engine_reload(const struct veild_config *cfg);
/* Saves state, stops the transport, closes the store. */
void	engine_shutdown(void);

struct event_base *engine_event_base(void);

/* A line for sd_notify STATUS=. */
void	engine_status_line(char *buf, size_t len);

/* Operations behind the JSON-RPC methods (daemon/methods.c).  Each returns
 * 0 or a negative RPC_* / RPC_ERR_* code with a message in err. */
json_t	*engine_status(int verbose);
int	engine_card(int one_time, json_t **out, char *err, size_t errlen);
int	engine_contact_add(const char *uri, const char *name, json_t **out,
	    char *err, size_t errlen);
json_t	*engine_contact_list(void);
int	engine_contact_accept(const char *name, char *err, size_t errlen);
int	engine_contact_reject(const char *name, char *err, size_t errlen);
int	engine_contact_remove(const char *name, char *err, size_t errlen);
int	engine_contact_verify(const char *name, int mark, json_t **out,
	    char *err, size_t errlen);
int	engine_send(const char *to, const char *text, size_t len, json_t **out,
	    char *err, size_t errlen);
/* Pending messages (marked taken), at most limit; NULL on error. */
json_t	*engine_receive(int limit);
int64_t	engine_pending_count(void);
int	engine_rotate(json_t **out, char *err, size_t errlen);

/* Runs fn(arg, committed) once everything written so far is durable
 * (group commit): replies to the socket wait for it. */
void	engine_after_commit(void (*fn)(void *, int), void *arg);

/* Called by the engine when a new message is stored (methods.c answers
 * waiting message.receive calls). */
void	methods_message_arrived(void);

#endif
