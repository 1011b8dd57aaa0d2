/* transport_tls.h: the TLS checks neither paho nor libstrophe can be asked for: key pins, the host name inside the handshake, why a handshake failed. */
#ifndef VEILD_TRANSPORT_TLS_H
#define VEILD_TRANSPORT_TLS_H

#include <stddef.h>

#define TRANSPORT_TLS_PINS_MAX	4
#define TRANSPORT_TLS_PIN_LEN	32	/* SHA-256 */

/*
 * What a handshake with a server named host (the name the client sends as
 * SNI) must satisfy beyond what the library itself checks.  verify: the
 * certificate must name host (checked inside the handshake, so that a
 * mismatch is reported as such); npins > 0: the SHA-256 of the
 * SubjectPublicKeyInfo of one certificate of the chain the server
 * presented must be one of pins.
 */
struct transport_tls_policy {
	int		 verify;
	int		 npins;
	unsigned char	 pins[TRANSPORT_TLS_PINS_MAX][TRANSPORT_TLS_PIN_LEN];
};

/* "BASE64[,BASE64...]" (standard base64 of 32 bytes each) into p->pins.
 * -1 with a reason in err. */
int	transport_tls_parse_pins(const char *, struct transport_tls_policy *,
	    char *err, size_t errlen);

/* The policy for host from now on (replacing an earlier one).  -1: out of
 * memory, or the check cannot run in this process (err says why). */
int	transport_tls_expect(const char *host,
	    const struct transport_tls_policy *, char *err, size_t errlen);

/* Why the last failed handshake with host failed, in buf ("" if nothing is
 * known), and forgets it. */
void	transport_tls_take_error(const char *host, char *buf, size_t len);

#endif /* VEILD_TRANSPORT_TLS_H */
