/* cstatus_json.c: the model as JSON (?json).
 *
 * Owns: the JSON shape and its escaping.  Every field is always present;
 * what the server cannot provide is null, so a consumer can rely on the
 * keys.  Output is valid JSON whatever the strings hold: strings go
 * through cstatus_escape_json, non-finite numbers become null.
 */
#include <math.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_protocol.h"

#include "cstatus_escape.h"
#include "cstatus_model.h"

static void put_str(request_rec *r, const char *s)
{
    ap_rputs(cstatus_escape_json(r->pool, s), r);
}

static void put_num(request_rec *r, int valid, double v)
{
    if (!valid || !isfinite(v)) {
        ap_rputs("null", r);
    }
    else {
        /* apr's %g drops the leading zero (".5"), which JSON forbids;
         * its %f is locale-independent and always has one. */
        ap_rprintf(r, "%.6f", v);
    }
}

static void put_u64(request_rec *r, int valid, apr_uint64_t v)
{
    if (valid) {
        ap_rprintf(r, "%" APR_UINT64_T_FMT, v);
    }
    else {
        ap_rputs("null", r);
    }
}

static void put_int(request_rec *r, int valid, long v)
{
    if (valid) {
        ap_rprintf(r, "%ld", v);
    }
    else {
        ap_rputs("null", r);
    }
}

/* "key": with the separator the previous member needs. */
static void put_key(request_rec *r, int *first, const char *key)
{
    ap_rputs(*first ? "" : ",", r);
    *first = 0;
    ap_rprintf(r, "\"%s\":", key);
}

static void put_rates(request_rec *r, int valid, const double *rate)
{
    int w, first = 1;

    if (!valid) {
        ap_rputs("null", r);
        return;
    }
    ap_rputc('{', r);
    for (w = 0; w < CSTATUS_NWINDOWS; w++) {
        put_key(r, &first, apr_psprintf(r->pool, "%ds", cstatus_windows[w]));
        put_num(r, 1, rate[w]);
    }
    ap_rputc('}', r);
}

static void put_counts(request_rec *r, int *f, int valid,
                       apr_uint64_t conns, apr_uint64_t reqs,
                       apr_uint64_t bytes, const double *rate,
                       int has_mean, double mean_ms)
{
    put_key(r, f, "connections");  put_u64(r, valid, conns);
    put_key(r, f, "requests");     put_u64(r, valid, reqs);
    put_key(r, f, "bytes");        put_u64(r, valid, bytes);
    put_key(r, f, "requests_per_second"); put_rates(r, valid, rate);
    put_key(r, f, "mean_request_ms"); put_num(r, valid && has_mean, mean_ms);
}

static void put_bool(request_rec *r, int v)
{
    ap_rputs(v ? "true" : "false", r);
}

/* An async MPM's connection counts, or null. */
static void put_async(request_rec *r, int valid, const cstatus_async *a)
{
    int f = 1;

    if (!valid) {
        ap_rputs("null", r);
        return;
    }
    ap_rputc('{', r);
    put_key(r, &f, "connections");      put_u64(r, 1, a->connections);
    put_key(r, &f, "keep_alive");       put_u64(r, 1, a->keep_alive);
    put_key(r, &f, "lingering_close");  put_u64(r, 1, a->lingering_close);
    put_key(r, &f, "write_completion"); put_u64(r, 1, a->write_completion);
    put_key(r, &f, "suspended");        put_u64(r, 1, a->suspended);
    put_key(r, &f, "wait_io");          put_u64(r, a->has_wait_io, a->wait_io);
    ap_rputc('}', r);
}

/* What the fairness rule made of the child (cstatus_fair.h). */
static void put_fair_child(request_rec *r, int *f, const cstatus_child *ch)
{
    const cstatus_fair_child *fc = &ch->fair;
    int placed = fc->status != CSTATUS_FAIR_OTHER;

    put_key(r, f, "judged");   put_bool(r, fc->status == CSTATUS_FAIR_JUDGED);
    put_key(r, f, "not_judged_because");
    put_str(r, cstatus_fair_why_not(fc->status));
    put_key(r, f, "accepting_seconds");
    put_num(r, placed && fc->status != CSTATUS_FAIR_STOP_UNKNOWN,
            fc->accepting_s);
    put_key(r, f, "requests_per_thread_second");
    put_num(r, placed && fc->has_rate, fc->rate);
    put_key(r, f, "fair_share_requests");
    put_num(r, ch->has_share, fc->expected);
    put_key(r, f, "threads");  put_int(r, placed, fc->threads);
}

static void put_hybrid(request_rec *r, int *f, const cstatus_child *ch)
{
    int h = ch->has_hybrid;

    put_key(r, f, "accept_strategy"); put_str(r, h ? ch->strategy : NULL);
    put_key(r, f, "accept_group");    put_int(r, h, ch->group);
    put_key(r, f, "accepts");         put_u64(r, h, ch->accepts);
    put_key(r, f, "accept_waits");    put_u64(r, h, ch->accept_waits);
    put_key(r, f, "accept_wait_us");  put_u64(r, h, ch->accept_wait_us);
    put_key(r, f, "accept_lost_wakeups"); put_u64(r, h, ch->lost_wakeups);
    put_key(r, f, "accept_errors");   put_u64(r, h, ch->accept_errors);
    put_key(r, f, "restarts");
    put_u64(r, ch->has_slot_history, ch->restarts);
    put_key(r, f, "last_exit");
    if (ch->has_exit) {
        ap_rputs("{\"why\":", r);
        put_str(r, ch->exit_why);
        ap_rprintf(r, ",\"status\":%d}", ch->exit_status);
    }
    else {
        ap_rputs("null", r);
    }
}

static void put_child(request_rec *r, const cstatus_child *ch)
{
    int f = 1;

    ap_rputc('{', r);
    put_key(r, &f, "slot");        put_int(r, 1, ch->slot);
    put_key(r, &f, "pid");         put_int(r, 1, (long)ch->pid);
    put_key(r, &f, "generation");  put_int(r, 1, ch->generation);
    put_key(r, &f, "state");       put_str(r, cstatus_state_name(ch->state));
    put_key(r, &f, "threads_busy"); put_int(r, 1, ch->threads_busy);
    put_key(r, &f, "threads_idle"); put_int(r, 1, ch->threads_idle);
    put_counts(r, &f, ch->has_counts, ch->connections, ch->requests,
               ch->bytes, ch->rate, ch->has_mean, ch->mean_ms);
    put_key(r, &f, "recent_requests"); put_num(r, ch->has_counts, ch->recent);
    put_key(r, &f, "share");       put_num(r, ch->has_share, ch->fair.share);
    put_fair_child(r, &f, ch);
    put_hybrid(r, &f, ch);
    put_key(r, &f, "async");       put_async(r, ch->has_async, &ch->async);
    ap_rputc('}', r);
}

static void put_fairness(request_rec *r, const cstatus_fairness *fa)
{
    int f = 1, j = fa->has_jain;

    ap_rputc('{', r);
    put_key(r, &f, "window_seconds");
    put_int(r, 1, cstatus_windows[CSTATUS_FAIR_WINDOW]);
    put_key(r, &f, "children");   put_int(r, 1, fa->judged);
    put_key(r, &f, "too_young");  put_int(r, 1, fa->young);
    put_key(r, &f, "min_accepting_seconds");
    put_num(r, 1, fa->min_accepting_s);
    put_key(r, &f, "requests");   put_num(r, 1, fa->requests);
    put_key(r, &f, "jain");       put_num(r, j, fa->jain);
    put_key(r, &f, "max_share");  put_num(r, j, fa->max_share);
    put_key(r, &f, "min_share");  put_num(r, j, fa->min_share);
    put_key(r, &f, "spread_threshold"); put_num(r, 1, CSTATUS_SPREAD_JAIN);
    put_key(r, &f, "chi_square"); put_num(r, j, fa->chi2);
    put_key(r, &f, "chi_square_limit"); put_num(r, j, fa->chi2_limit);
    put_key(r, &f, "verdict");    put_str(r, fa->verdict);
    put_key(r, &f, "rule");       put_str(r, cstatus_fair_rule);
    ap_rputc('}', r);
}

static void put_totals(request_rec *r, const cstatus_model *m)
{
    const cstatus_totals *t = &m->totals;
    int f = 1, h = m->has_hybrid;

    ap_rputc('{', r);
    put_key(r, &f, "children");     put_int(r, 1, t->children);
    put_key(r, &f, "threads_busy"); put_int(r, 1, t->threads_busy);
    put_key(r, &f, "threads_idle"); put_int(r, 1, t->threads_idle);
    put_counts(r, &f, 1, t->connections, t->requests, t->bytes, t->rate,
               t->has_mean, t->mean_ms);
    put_key(r, &f, "accept_lost_wakeups"); put_u64(r, h, t->lost_wakeups);
    put_key(r, &f, "accept_errors"); put_u64(r, h, t->accept_errors);
    put_key(r, &f, "async");        put_async(r, m->is_async, &t->async);
    ap_rputc('}', r);
}

/* Counters that only grow, across child exits and graceful restarts. */
static void put_server_counts(request_rec *r, const cstatus_counts *c)
{
    int f = 1, sb = c->has_scoreboard, h = c->has_hybrid;

    ap_rputc('{', r);
    put_key(r, &f, "requests");       put_u64(r, sb, c->requests);
    put_key(r, &f, "bytes");          put_u64(r, sb, c->bytes);
    put_key(r, &f, "connections");    put_u64(r, h, c->connections);
    put_key(r, &f, "accept_lost_wakeups"); put_u64(r, h, c->lost_wakeups);
    put_key(r, &f, "accept_errors");  put_u64(r, h, c->accept_errors);
    put_key(r, &f, "accept_waits");   put_u64(r, h, c->accept_waits);
    put_key(r, &f, "accept_wait_us"); put_u64(r, h, c->accept_wait_us);
    put_key(r, &f, "child_restarts"); put_u64(r, h, c->child_restarts);
    ap_rputc('}', r);
}

static void render_json(request_rec *r, const cstatus_model *m,
                        const cstatus_view *v)
{
    int f = 1, i;

    ap_rputc('{', r);
    put_key(r, &f, "server_version"); put_str(r, m->server_version);
    put_key(r, &f, "mpm");            put_str(r, m->mpm);
    put_key(r, &f, "time");
    put_num(r, 1, (double)apr_time_as_msec(m->now) / 1000.0);
    put_key(r, &f, "restart_time");
    put_num(r, m->restart_time != 0,
            (double)apr_time_as_msec(m->restart_time) / 1000.0);
    put_key(r, &f, "generation");     put_int(r, 1, m->generation);
    put_key(r, &f, "server_limit");   put_int(r, 1, m->server_limit);
    put_key(r, &f, "thread_limit");   put_int(r, 1, m->thread_limit);
    put_key(r, &f, "accept_strategy"); put_str(r, m->accept_strategy);
    put_key(r, &f, "accept_mutex");   put_str(r, m->accept_mutex);
    put_key(r, &f, "mpm_stats");      ap_rputs(m->has_hybrid ? "true"
                                                            : "false", r);
    put_key(r, &f, "totals");         put_totals(r, m);
    put_key(r, &f, "server_totals");  put_server_counts(r, &m->server);
    put_key(r, &f, "fairness");       put_fairness(r, &m->fairness);
    put_key(r, &f, "fairness_previous");
    if (m->has_previous) {
        put_fairness(r, &m->previous);
    }
    else {
        ap_rputs("null", r);
    }
    put_key(r, &f, "children");
    ap_rputc('[', r);
    for (i = 0; i < m->nchildren; i++) {
        ap_rputs(i ? ",\n" : "\n", r);
        put_child(r, &m->children[i]);
    }
    ap_rputs("]}\n", r);
}

const cstatus_renderer cstatus_json = {
    "json", "application/json", render_json
};
