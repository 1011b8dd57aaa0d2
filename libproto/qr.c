/* libveil qr: QR codes of cards and config URIs as terminal text and as SVG. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qrencode.h>

#include "card.h"

#define QR_TERM_QUIET 2	/* a dark terminal frames it; 2 modules scan fine */
#define QR_SVG_QUIET 4	/* what ISO/IEC 18004 asks for */

static int
qr_make(const char *text, QRcode **qr)
{
	*qr = NULL;
	if (text == NULL || text[0] == '\0')
		return VEIL_ERR_INVAL;
	errno = 0;
	/* Case-sensitive: base64 must never be folded to upper case. */
	*qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
	if (*qr != NULL)
		return VEIL_OK;
	if (errno == ERANGE)
		return VEIL_ERR_TOOBIG;
	if (errno == ENOMEM)
		return VEIL_ERR_NOMEM;
	return VEIL_ERR_INVAL;
}

/* Dark module at (x, y) of the code framed by a quiet zone of q modules. */
static int
qr_dark(const QRcode *qr, int q, int x, int y)
{
	x -= q;
	y -= q;
	if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
		return 0;
	return qr->data[y * qr->width + x] & 1;
}

/*
 * Terminals are usually light text on a dark background, so the glyphs
 * draw the LIGHT modules and the background shows through as the dark
 * ones: the code comes out the right way round (dark on light), which is
 * what phone scanners expect.  The quiet zone is drawn as light blocks.
 * Each text line carries two module rows (upper and lower half block); a
 * half row below the last module row is left as background.
 */
int
veil_qr_utf8(const char *text, char **out)
{
	static const char upper[] = "\xe2\x96\x80";	/* ▀ */
	static const char lower[] = "\xe2\x96\x84";	/* ▄ */
	static const char full[] = "\xe2\x96\x88";	/* █ */
	QRcode *qr;
	char *buf, *p;
	int rc, n, x, y, top, bot;
	size_t size;

	if (out == NULL)
		return VEIL_ERR_INVAL;
	*out = NULL;
	if ((rc = qr_make(text, &qr)) != VEIL_OK)
		return rc;
	n = qr->width + 2 * QR_TERM_QUIET;
	size = (size_t)((n + 1) / 2) * ((size_t)n * 3 + 1) + 1;
	if ((buf = malloc(size)) == NULL) {
		QRcode_free(qr);
		return VEIL_ERR_NOMEM;
	}
	p = buf;
	for (y = 0; y < n; y += 2) {
		for (x = 0; x < n; x++) {
			top = !qr_dark(qr, QR_TERM_QUIET, x, y);
			bot = y + 1 < n && !qr_dark(qr, QR_TERM_QUIET, x, y + 1);
			if (!top && !bot) {
				*p++ = ' ';
				continue;
			}
			memcpy(p, top && bot ? full : top ? upper : lower, 3);
			p += 3;
		}
		*p++ = '\n';
	}
	*p = '\0';
	QRcode_free(qr);
	*out = buf;
	return VEIL_OK;
}

/* One <path> with a subpath per horizontal run of dark modules. */
int
veil_qr_svg(const char *text, char **out)
{
	static const char head[] =
	    "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
	    "viewBox=\"0 0 %d %d\" shape-rendering=\"crispEdges\">\n"
	    "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n"
	    "<path fill=\"#000\" d=\"";
	static const char tail[] = "\"/>\n</svg>\n";
	QRcode *qr;
	char *buf;
	size_t size, len, runs = 0;
	int rc, n, w, x, y, run, k;

	if (out == NULL)
		return VEIL_ERR_INVAL;
	*out = NULL;
	if ((rc = qr_make(text, &qr)) != VEIL_OK)
		return rc;
	w = qr->width;
	n = w + 2 * QR_SVG_QUIET;
	for (y = 0; y < w; y++)
		for (x = 0; x < w; x++)
			if ((qr->data[y * w + x] & 1) &&
			    (x == 0 || !(qr->data[y * w + x - 1] & 1)))
				runs++;
	/* "M177 177h177v1h-177z" is 20 bytes; the header numbers fit in 32. */
	size = sizeof(head) + 32 + runs * 24 + sizeof(tail);
	if ((buf = malloc(size)) == NULL) {
		QRcode_free(qr);
		return VEIL_ERR_NOMEM;
	}
	len = (size_t)snprintf(buf, size, head, n, n, n, n);
	for (y = 0; y < w; y++) {
		for (x = 0; x < w; x = run) {
			if (!(qr->data[y * w + x] & 1)) {
				run = x + 1;
				continue;
			}
			for (run = x; run < w && (qr->data[y * w + run] & 1);
			    run++)
				;
			k = snprintf(buf + len, size - len, "M%d %dh%dv1h-%dz",
			    x + QR_SVG_QUIET, y + QR_SVG_QUIET, run - x, run - x);
			if (k < 0 || (size_t)k >= size - len)
				goto overflow;
			len += (size_t)k;
		}
	}
	if (sizeof(tail) > size - len)
		goto overflow;
	memcpy(buf + len, tail, sizeof(tail));
	QRcode_free(qr);
	*out = buf;
	return VEIL_OK;

overflow:
	/* The size bound above makes this unreachable; fail safely anyway. */
	free(buf);
	QRcode_free(qr);
	return VEIL_ERR_NOMEM;
}
