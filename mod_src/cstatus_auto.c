/* cstatus_auto.c: the model as mod_status-style "Key: value" lines.
 *
 * Owns: the ChildStatus* keys appended to /server-status?auto and served
 * by ?auto on our own handler.  Every key starts with "ChildStatus", so
 * no existing key of mod_status (or of parsers such as the Prometheus
 * apache exporter) is shadowed.  Fields the server cannot provide are
 * left out.  Strings are reduced to a safe word alphabet
 * (cstatus_escape_auto_word).
 */
#include <math.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_protocol.h"

#include "cstatus_escape.h"
#include "cstatus_model.h"

static const char *word(apr_pool_t *p, const char *s)
{
    return cstatus_escape_auto_word(p, s);
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
}

/* accepting_s, rate_per_thread, and share or not_judged=REASON. */
static void put_fair(request_rec *r, const cstatus_child *ch)
{
    const cstatus_fair_child *f = &ch->fair;

    if (f->status == CSTATUS_FAIR_OTHER) {
        return;
    }
    if (f->status != CSTATUS_FAIR_STOP_UNKNOWN) {
        put_double(r, " accepting_s=%.1f", f->accepting_s);
    }
    if (f->has_rate) {
        put_double(r, " rate_per_thread=%.3f", f->rate);
    }
    if (ch->has_share) {
        put_double(r, " share=%.4f", f->share);
    }
    else if (f->status != CSTATUS_FAIR_JUDGED) {
        ap_rprintf(r, " not_judged=%s",
                   word(r->pool, cstatus_fair_why_not(f->status)));
    }
}

static void put_async(request_rec *r, const cstatus_async *a)
{
    ap_rprintf(r, " async_conns=%" APR_UINT64_T_FMT " keep_alive=%"
               APR_UINT64_T_FMT " write_completion=%" APR_UINT64_T_FMT
               " lingering_close=%" APR_UINT64_T_FMT " suspended=%"
               APR_UINT64_T_FMT, a->connections, a->keep_alive,
               a->write_completion, a->lingering_close, a->suspended);
    if (a->has_wait_io) {
        ap_rprintf(r, " wait_io=%" APR_UINT64_T_FMT, a->wait_io);
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
                   " accept_wait_us=%" APR_UINT64_T_FMT
                   " lost_wakeups=%" APR_UINT64_T_FMT
                   " accept_errors=%" APR_UINT64_T_FMT, ch->group,
                   ch->accepts, ch->accept_waits, ch->accept_wait_us,
                   ch->lost_wakeups, ch->accept_errors);
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
    put_fair(r, ch);
    put_hybrid(r, ch);
    if (ch->has_async) {
        put_async(r, &ch->async);
    }
    ap_rputc('\n', r);
}

/* Fairness lines of one population: Prefix + Jain, MaxShare, ... */
static void put_fairness(request_rec *r, const char *prefix,
                         const cstatus_fairness *f)
{
    ap_rprintf(r, "%sJudgedChildren: %d\n", prefix, f->judged);
    ap_rprintf(r, "%sYoungChildren: %d\n", prefix, f->young);
    if (f->has_jain) {
        ap_rprintf(r, "%sFairnessJain: ", prefix);
        put_double(r, "%.4f\n", f->jain);
        ap_rprintf(r, "%sMaxShare: ", prefix);
        put_double(r, "%.4f\n", f->max_share);
        ap_rprintf(r, "%sMinShare: ", prefix);
        put_double(r, "%.4f\n", f->min_share);
    }
    ap_rprintf(r, "%sVerdict: %s\n", prefix, f->verdict);
}

/* Counters that outlive children; unknown ones are left out. */
static void put_server_counts(request_rec *r, const cstatus_counts *c)
{
    if (c->has_scoreboard) {
        ap_rprintf(r, "ChildStatusServerRequests: %" APR_UINT64_T_FMT "\n",
                   c->requests);
        ap_rprintf(r, "ChildStatusServerBytes: %" APR_UINT64_T_FMT "\n",
                   c->bytes);
    }
    if (c->has_hybrid) {
        ap_rprintf(r, "ChildStatusServerConnections: %" APR_UINT64_T_FMT
                   "\n", c->connections);
        ap_rprintf(r, "ChildStatusServerLostWakeups: %" APR_UINT64_T_FMT
                   "\n", c->lost_wakeups);
        ap_rprintf(r, "ChildStatusServerAcceptErrors: %" APR_UINT64_T_FMT
                   "\n", c->accept_errors);
        ap_rprintf(r, "ChildStatusServerChildRestarts: %" APR_UINT64_T_FMT
                   "\n", c->child_restarts);
    }
}

static void put_server(request_rec *r, const cstatus_model *m)
{
    const cstatus_totals *t = &m->totals;

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
    if (m->has_hybrid) {
        ap_rprintf(r, "ChildStatusLostWakeups: %" APR_UINT64_T_FMT "\n",
                   t->lost_wakeups);
        ap_rprintf(r, "ChildStatusAcceptErrors: %" APR_UINT64_T_FMT "\n",
                   t->accept_errors);
    }
    if (t->has_async) {
        ap_rputs("ChildStatusAsync:", r);
        put_async(r, &t->async);
        ap_rputc('\n', r);
    }
    put_server_counts(r, &m->server);
    put_fairness(r, "ChildStatus", &m->fairness);
    if (m->has_previous) {
        put_fairness(r, "ChildStatusPrevious", &m->previous);
    }
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
