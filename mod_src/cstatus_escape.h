/* cstatus_escape.h: making outside strings safe for each output format.
 *
 * Owns: the escaping rules of HTML, JSON, Prometheus label values and the
 * ?auto word alphabet.  Pure: depends on APR pools only, no httpd, so the
 * rules are unit-tested (test/unit/test_escape.c).  Every string that
 * comes from outside the module (server name, MPM names, anything read
 * from shared memory) goes through one of these before it is printed.
 */
#ifndef CSTATUS_ESCAPE_H
#define CSTATUS_ESCAPE_H

#include "apr_pools.h"

/* HTML text or a quoted attribute value: & < > " ' become entities.
 * NULL gives "". */
const char *cstatus_escape_html(apr_pool_t *p, const char *s);

/* A JSON string literal, quotes included: " and \ are escaped, control
 * and non-ASCII bytes become \u00XX (bytes of unknown encoding are kept
 * as code points, so the document stays valid whatever the MPM wrote).
 * NULL gives null. */
const char *cstatus_escape_json(apr_pool_t *p, const char *s);

/* A Prometheus label value, without its quotes: \ " and newline are
 * escaped as the text format 0.0.4 asks.  NULL gives "". */
const char *cstatus_escape_prom_label(apr_pool_t *p, const char *s);

/* A value that cannot break a ?auto "Key: value" line: letters, digits
 * and ._-:/ are kept, any other byte becomes '_'.  NULL gives "". */
const char *cstatus_escape_auto_word(apr_pool_t *p, const char *s);

#endif /* CSTATUS_ESCAPE_H */
