/* cstatus_prom.c: the model in Prometheus text exposition format 0.0.4.
 *
 * Owns: metric names, HELP/TYPE lines and label escaping.  Per-child
 * series carry slot, pid and generation labels, so a restarted child
 * starts a new series instead of making a counter go down.  A value the
 * server cannot provide has no sample (a whole family may be absent).
 */
#include <math.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_protocol.h"

#include "cstatus_model.h"

typedef enum { PROM_GAUGE, PROM_COUNTER } prom_type_e;

/* Which children a family has samples for, and their value. */
typedef int (*child_has_fn)(const cstatus_child *ch);
typedef double (*child_value_fn)(const cstatus_child *ch);

/* Label values: backslash, double quote and newline are escaped. */
static const char *label(apr_pool_t *p, const char *s)
{
    apr_size_t n = 0;
    const char *q;
    char *out, *o;

    for (q = s; *q; q++) {
        n += (*q == '\\' || *q == '"' || *q == '\n') ? 2 : 1;
    }
    out = o = apr_palloc(p, n + 1);
    for (q = s; *q; q++) {
        if (*q == '\\' || *q == '"') {
            *o++ = '\\';
            *o++ = *q;
        }
        else if (*q == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        }
        else {
            *o++ = *q;
        }
    }
    *o = '\0';
    return out;
}

static void family(request_rec *r, const char *name, prom_type_e type,
                   const char *help)
{
    ap_rprintf(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
               type == PROM_COUNTER ? "counter" : "gauge");
}

static void value(request_rec *r, double v)
{
    /* Whole numbers (all counters) print exactly; apr's %g would drop
     * the leading zero, so fractions use %f. */
    if (isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0) {
        ap_rprintf(r, " %.0f\n", v);
    }
    else if (isfinite(v)) {
        ap_rprintf(r, " %.6f\n", v);
    }
    else {
        ap_rputs(v > 0 ? " +Inf\n" : (v < 0 ? " -Inf\n" : " NaN\n"), r);
    }
}

static void child_labels(request_rec *r, const cstatus_child *ch)
{
    ap_rprintf(r, "{slot=\"%d\",pid=\"%ld\",generation=\"%d\"", ch->slot,
               (long)ch->pid, ch->generation);
}

static int any_child(const cstatus_model *m, child_has_fn has)
{
    int i;

    for (i = 0; i < m->nchildren; i++) {
        if (has(&m->children[i])) {
            return 1;
        }
    }
    return 0;
}

/* One per-child family: HELP/TYPE, then a sample per child that has it. */
static void per_child(request_rec *r, const cstatus_model *m,
                      const char *name, prom_type_e type, const char *help,
                      child_has_fn has, child_value_fn get)
{
    int i;

    if (!any_child(m, has)) {
        return;
    }
    family(r, name, type, help);
    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        if (has(ch)) {
            ap_rputs(name, r);
            child_labels(r, ch);
            ap_rputc('}', r);
            value(r, get(ch));
        }
    }
}

static int has_always(const cstatus_child *ch)  { return 1; }
static int has_counts(const cstatus_child *ch)  { return ch->has_counts; }
static int has_hybrid(const cstatus_child *ch)  { return ch->has_hybrid; }
static int has_share(const cstatus_child *ch)   { return ch->has_share; }

static double get_busy(const cstatus_child *ch)  { return ch->threads_busy; }
static double get_idle(const cstatus_child *ch)  { return ch->threads_idle; }
static double get_conns(const cstatus_child *ch) { return ch->connections; }
static double get_reqs(const cstatus_child *ch)  { return ch->requests; }
static double get_bytes(const cstatus_child *ch) { return ch->bytes; }
static double get_share(const cstatus_child *ch) { return ch->share; }
static double get_accepts(const cstatus_child *ch) { return ch->accepts; }
static double get_waits(const cstatus_child *ch) { return ch->accept_waits; }

static double get_duration(const cstatus_child *ch)
{
    return (double)ch->duration_us / 1e6;
}

static double get_wait_time(const cstatus_child *ch)
{
    return (double)ch->accept_wait_us / 1e6;
}

static void child_info(request_rec *r, const cstatus_model *m)
{
    int i;

    family(r, "child_status_child_info", PROM_GAUGE,
           "One series per child: its state, and the accept strategy and "
           "group when the MPM tells.");
    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        ap_rputs("child_status_child_info", r);
        child_labels(r, ch);
        ap_rprintf(r, ",state=\"%s\"", cstatus_state_name(ch->state));
        if (ch->has_hybrid && ch->strategy) {
            ap_rprintf(r, ",strategy=\"%s\",group=\"%d\"",
                       label(r->pool, ch->strategy), ch->group);
        }
        ap_rputs("} 1\n", r);
    }
}

static void rates(request_rec *r, const cstatus_model *m)
{
    int i, w;

    if (!any_child(m, has_counts)) {
        return;
    }
    family(r, "child_status_request_rate", PROM_GAUGE,
           "Requests per second over the trailing window.");
    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        if (!ch->has_counts) {
            continue;
        }
        for (w = 0; w < CSTATUS_NWINDOWS; w++) {
            ap_rputs("child_status_request_rate", r);
            child_labels(r, ch);
            ap_rprintf(r, ",window=\"%ds\"}", cstatus_windows[w]);
            value(r, ch->rate[w]);
        }
    }
}

/* Per slot rather than per child: they outlive the children. */
static void slot_history(request_rec *r, const cstatus_model *m)
{
    int i, seen = 0;

    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        if (!ch->has_slot_history) {
            continue;
        }
        if (!seen++) {
            family(r, "child_status_slot_restarts_total", PROM_COUNTER,
                   "Children started in this slot after the first.");
        }
        ap_rprintf(r, "child_status_slot_restarts_total{slot=\"%d\"} %u\n",
                   ch->slot, ch->restarts);
    }
    for (i = 0, seen = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        if (!ch->has_exit) {
            continue;
        }
        if (!seen++) {
            family(r, "child_status_slot_last_exit_status", PROM_GAUGE,
                   "How the previous child in this slot ended: exit code "
                   "or signal number.");
        }
        ap_rprintf(r, "child_status_slot_last_exit_status{slot=\"%d\","
                   "why=\"%s\"} %d\n", ch->slot, ch->exit_why,
                   ch->exit_status);
    }
}

static void server_wide(request_rec *r, const cstatus_model *m)
{
    const cstatus_fairness *f = &m->fairness;

    family(r, "child_status_server_info", PROM_GAUGE,
           "The MPM and, when it tells, its accept strategy and mutex.");
    ap_rprintf(r, "child_status_server_info{mpm=\"%s\"",
               label(r->pool, m->mpm ? m->mpm : ""));
    if (m->accept_strategy) {
        ap_rprintf(r, ",accept_strategy=\"%s\"",
                   label(r->pool, m->accept_strategy));
    }
    if (m->accept_mutex) {
        ap_rprintf(r, ",accept_mutex=\"%s\"", label(r->pool, m->accept_mutex));
    }
    ap_rputs("} 1\n", r);
    family(r, "child_status_children", PROM_GAUGE,
           "Live children of the current generation (fairness population).");
    ap_rprintf(r, "child_status_children %d\n", f->children);
    if (!f->has_jain) {
        return;     /* idle: no requests, no index */
    }
    family(r, "child_status_fairness_jain", PROM_GAUGE,
           "Jain's fairness index over the children's requests in the last "
           "10 s: 1 = even, 1/n = one child did all.");
    ap_rputs("child_status_fairness_jain", r);
    value(r, f->jain);
    family(r, "child_status_fairness_max_share", PROM_GAUGE,
           "Largest child's share of the last 10 s requests.");
    ap_rputs("child_status_fairness_max_share", r);
    value(r, f->max_share);
    family(r, "child_status_fairness_min_share", PROM_GAUGE,
           "Smallest child's share of the last 10 s requests.");
    ap_rputs("child_status_fairness_min_share", r);
    value(r, f->min_share);
}

static void render_prom(request_rec *r, const cstatus_model *m,
                        const cstatus_view *v)
{
    server_wide(r, m);
    child_info(r, m);
    per_child(r, m, "child_status_busy_threads", PROM_GAUGE,
              "Threads serving a request.", has_always, get_busy);
    per_child(r, m, "child_status_idle_threads", PROM_GAUGE,
              "Threads waiting for work.", has_always, get_idle);
    per_child(r, m, "child_status_connections_total", PROM_COUNTER,
              "Connections accepted by the child.", has_counts, get_conns);
    per_child(r, m, "child_status_requests_total", PROM_COUNTER,
              "Requests the child finished.", has_counts, get_reqs);
    per_child(r, m, "child_status_sent_bytes_total", PROM_COUNTER,
              "Response body bytes the child sent.", has_counts, get_bytes);
    per_child(r, m, "child_status_request_duration_seconds_total",
              PROM_COUNTER, "Time spent on the child's requests.",
              has_counts, get_duration);
    rates(r, m);
    per_child(r, m, "child_status_share", PROM_GAUGE,
              "The child's share of the last 10 s requests.", has_share,
              get_share);
    per_child(r, m, "child_status_accepts_total", PROM_COUNTER,
              "Connections the MPM accepted in the child.", has_hybrid,
              get_accepts);
    per_child(r, m, "child_status_accept_waits_total", PROM_COUNTER,
              "Times the child took the accept mutex.", has_hybrid,
              get_waits);
    per_child(r, m, "child_status_accept_wait_seconds_total", PROM_COUNTER,
              "Time the child spent waiting for the accept mutex.",
              has_hybrid, get_wait_time);
    slot_history(r, m);
}

const cstatus_renderer cstatus_prom = {
    "prometheus", "text/plain; version=0.0.4; charset=utf-8", render_prom
};
