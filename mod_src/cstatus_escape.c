/* cstatus_escape.c: the escaping rules of every output format.
 *
 * Owns: turning one byte into what a format needs instead of it, and the
 * two passes (measure, then copy) that build the escaped string.
 * Called from: every renderer.  Pure (APR pools only).
 */
#include <stdio.h>
#include <string.h>

#include "apr_lib.h"
#include "apr_strings.h"

#include "cstatus_escape.h"

/* What to print for byte c: its replacement in buf (NUL-terminated, at
 * most 7 bytes), or NULL to print c itself. */
typedef const char *(*escape_byte_fn)(unsigned char c, char *buf);

static const char *html_byte(unsigned char c, char *buf)
{
    switch (c) {
    case '&':  return "&amp;";
    case '<':  return "&lt;";
    case '>':  return "&gt;";
    case '"':  return "&quot;";
    case '\'': return "&#39;";
    default:   return NULL;
    }
}

static const char *json_byte(unsigned char c, char *buf)
{
    if (c == '"') {
        return "\\\"";
    }
    if (c == '\\') {
        return "\\\\";
    }
    if (c < 0x20 || c >= 0x7f) {
        snprintf(buf, 8, "\\u%04x", c);
        return buf;
    }
    return NULL;
}

static const char *prom_byte(unsigned char c, char *buf)
{
    switch (c) {
    case '\\': return "\\\\";
    case '"':  return "\\\"";
    case '\n': return "\\n";
    default:   return NULL;
    }
}

static const char *auto_byte(unsigned char c, char *buf)
{
    if (apr_isalnum(c) || c == '.' || c == '_' || c == '-' || c == ':'
        || c == '/') {
        return NULL;
    }
    return "_";
}

/* `s` with every byte replaced as `fn` says, between `quote`s. */
static const char *escape_with(apr_pool_t *p, const char *s,
                               escape_byte_fn fn, const char *quote)
{
    apr_size_t n = 2 * strlen(quote), q = strlen(quote);
    const unsigned char *in;
    char buf[8], *out, *o;

    for (in = (const unsigned char *)s; *in; in++) {
        const char *rep = fn(*in, buf);
        n += rep ? strlen(rep) : 1;
    }
    out = o = apr_palloc(p, n + 1);
    memcpy(o, quote, q);
    o += q;
    for (in = (const unsigned char *)s; *in; in++) {
        const char *rep = fn(*in, buf);
        if (rep) {
            apr_size_t len = strlen(rep);
            memcpy(o, rep, len);
            o += len;
        }
        else {
            *o++ = (char)*in;
        }
    }
    memcpy(o, quote, q);
    o[q] = '\0';
    return out;
}

const char *cstatus_escape_html(apr_pool_t *p, const char *s)
{
    return escape_with(p, s ? s : "", html_byte, "");
}

const char *cstatus_escape_json(apr_pool_t *p, const char *s)
{
    return s ? escape_with(p, s, json_byte, "\"") : "null";
}

const char *cstatus_escape_prom_label(apr_pool_t *p, const char *s)
{
    return escape_with(p, s ? s : "", prom_byte, "");
}

const char *cstatus_escape_auto_word(apr_pool_t *p, const char *s)
{
    return escape_with(p, s ? s : "", auto_byte, "");
}
