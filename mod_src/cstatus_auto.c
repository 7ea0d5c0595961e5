/* cstatus_auto.c: the model as mod_status-style "Key: value" lines.
 *
 * Owns: the ChildStatus* keys appended to /server-status?auto and served
 * by ?auto on our own handler.  Every key starts with "ChildStatus", so
 * no existing key of mod_status (or of parsers such as the Prometheus
 * apache exporter) is shadowed.  Fields the server cannot provide are
 * left out.  Strings are reduced to a safe word alphabet.
 */
#include <math.h>

#include "apr_lib.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_protocol.h"

#include "cstatus_model.h"

/* A value that cannot break the line format: letters, digits and ._-:/
 * kept, anything else (spaces, '=', newlines) replaced by '_'. */
static const char *word(apr_pool_t *p, const char *s)
{
    char *out = apr_pstrdup(p, s), *q;

    for (q = out; *q; q++) {
        if (!apr_isalnum(*q) && *q != '.' && *q != '_' && *q != '-'
            && *q != ':' && *q != '/') {
            *q = '_';
        }
    }
    return out;
}

static void put_double(request_rec *r, const char *fmt, double v)
{
    ap_rprintf(r, fmt, isfinite(v) ? v : 0.0);
}

static void put_counts(request_rec *r, const cstatus_child *ch)
{
    int w;

    ap_rprintf(r, " conns=%" APR_UINT64_T_FMT " requests=%" APR_UINT64_T_FMT
               " bytes=%" APR_UINT64_T_FMT, ch->connections, ch->requests,
               ch->bytes);
    for (w = 0; w < CSTATUS_NWINDOWS; w++) {
        ap_rprintf(r, " rate%ds=", cstatus_windows[w]);
        put_double(r, "%.3f", ch->rate[w]);
    }
    if (ch->has_mean) {
        put_double(r, " mean_ms=%.3f", ch->mean_ms);
    }
    if (ch->has_share) {
        put_double(r, " share=%.4f", ch->share);
    }
}

static void put_hybrid(request_rec *r, const cstatus_child *ch)
{
    if (ch->has_hybrid) {
        if (ch->strategy) {
            ap_rprintf(r, " strategy=%s", ch->strategy);
        }
        ap_rprintf(r, " group=%d accepts=%" APR_UINT64_T_FMT
                   " accept_waits=%" APR_UINT64_T_FMT
                   " accept_wait_us=%" APR_UINT64_T_FMT, ch->group,
                   ch->accepts, ch->accept_waits, ch->accept_wait_us);
    }
    if (ch->has_slot_history) {
        ap_rprintf(r, " restarts=%u", ch->restarts);
    }
    if (ch->has_exit) {
        ap_rprintf(r, " last_exit=%s:%d", ch->exit_why, ch->exit_status);
    }
}

static void put_child(request_rec *r, const cstatus_child *ch)
{
    ap_rprintf(r, "ChildStatusSlot%d: pid=%ld gen=%d state=%s busy=%d idle=%d",
               ch->slot, (long)ch->pid, ch->generation,
               cstatus_state_name(ch->state), ch->threads_busy,
               ch->threads_idle);
    if (ch->has_counts) {
        put_counts(r, ch);
    }
    put_hybrid(r, ch);
    ap_rputc('\n', r);
}

static void put_server(request_rec *r, const cstatus_model *m)
{
    const cstatus_totals *t = &m->totals;
    const cstatus_fairness *f = &m->fairness;

    ap_rprintf(r, "ChildStatusMPM: %s\n", word(r->pool, m->mpm));
    if (m->accept_strategy) {
        ap_rprintf(r, "ChildStatusAcceptStrategy: %s\n",
                   word(r->pool, m->accept_strategy));
    }
    if (m->accept_mutex) {
        ap_rprintf(r, "ChildStatusAcceptMutex: %s\n",
                   word(r->pool, m->accept_mutex));
    }
    ap_rprintf(r, "ChildStatusChildren: %d\n", t->children);
    ap_rprintf(r, "ChildStatusBusyThreads: %d\n", t->threads_busy);
    ap_rprintf(r, "ChildStatusIdleThreads: %d\n", t->threads_idle);
    ap_rprintf(r, "ChildStatusConnections: %" APR_UINT64_T_FMT "\n",
               t->connections);
    ap_rprintf(r, "ChildStatusRequests: %" APR_UINT64_T_FMT "\n", t->requests);
    ap_rprintf(r, "ChildStatusBytes: %" APR_UINT64_T_FMT "\n", t->bytes);
    put_double(r, "ChildStatusReqPerSec10s: %.3f\n",
               t->rate[CSTATUS_FAIR_WINDOW]);
    if (f->has_jain) {
        put_double(r, "ChildStatusFairnessJain: %.4f\n", f->jain);
        put_double(r, "ChildStatusMaxShare: %.4f\n", f->max_share);
        put_double(r, "ChildStatusMinShare: %.4f\n", f->min_share);
    }
    ap_rprintf(r, "ChildStatusVerdict: %s\n", f->verdict);
}

void cstatus_auto_lines(request_rec *r, const cstatus_model *m)
{
    int i;

    put_server(r, m);
    for (i = 0; i < m->nchildren; i++) {
        put_child(r, &m->children[i]);
    }
}

static void render_auto(request_rec *r, const cstatus_model *m,
                        const cstatus_view *v)
{
    cstatus_auto_lines(r, m);
}

const cstatus_renderer cstatus_auto = {
    "auto", "text/plain; charset=ISO-8859-1", render_auto
};
