/* cstatus_prom.c: the model in Prometheus text exposition format 0.0.4.
 *
 * Owns: metric names, HELP/TYPE lines and labels.  Series are keyed by
 * slot only, so their number is bounded by ServerLimit however often
 * children are recycled; which child runs in a slot (pid, generation,
 * state, strategy, group) is in one child_status_slot_info series per
 * slot.  Counters are the slot's or the server's, which only grow across
 * child exits and graceful restarts, so rate() over them is right even for
 * children that live between two scrapes.  A value the server cannot
 * provide has no sample; a family without samples is left out.
 */
#include <math.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_protocol.h"

#include "cstatus_escape.h"
#include "cstatus_model.h"

typedef enum { PROM_GAUGE, PROM_COUNTER } prom_type_e;

/* Which slots a family has samples for, and their value. */
typedef int (*child_has_fn)(const cstatus_child *ch);
typedef double (*child_value_fn)(const cstatus_child *ch);

static const char *label(request_rec *r, const char *s)
{
    return cstatus_escape_prom_label(r->pool, s);
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

static void u64_value(request_rec *r, apr_uint64_t v)
{
    ap_rprintf(r, " %" APR_UINT64_T_FMT "\n", v);
}

/* A family with one unlabelled sample. */
static void single(request_rec *r, const char *name, prom_type_e type,
                   const char *help, apr_uint64_t v)
{
    family(r, name, type, help);
    ap_rputs(name, r);
    u64_value(r, v);
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

/* One per-slot family: HELP/TYPE, then a sample per slot that has it. */
static void per_slot(request_rec *r, const cstatus_model *m,
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
            ap_rprintf(r, "%s{slot=\"%d\"}", name, ch->slot);
            value(r, get(ch));
        }
    }
}

static int has_always(const cstatus_child *ch)  { return 1; }
static int has_counts(const cstatus_child *ch)  { return ch->has_counts; }
static int has_share(const cstatus_child *ch)   { return ch->has_share; }
static int has_rate(const cstatus_child *ch)    { return ch->fair.has_rate; }
static int has_sb(const cstatus_child *ch)
{
    return ch->slot_counts.has_scoreboard;
}
static int has_hyb(const cstatus_child *ch)
{
    return ch->slot_counts.has_hybrid;
}
static int has_history(const cstatus_child *ch)
{
    return ch->has_slot_history;
}
static int has_accepting(const cstatus_child *ch)
{
    return ch->fair.status != CSTATUS_FAIR_OTHER
           && ch->fair.status != CSTATUS_FAIR_STOP_UNKNOWN;
}

static double get_busy(const cstatus_child *ch)  { return ch->threads_busy; }
static double get_idle(const cstatus_child *ch)  { return ch->threads_idle; }
static double get_share(const cstatus_child *ch) { return ch->fair.share; }
static double get_rate(const cstatus_child *ch)  { return ch->fair.rate; }
static double get_expected(const cstatus_child *ch)
{
    return ch->fair.expected;
}
static double get_accepting(const cstatus_child *ch)
{
    return ch->fair.accepting_s;
}
static double get_reqs(const cstatus_child *ch)
{
    return (double)ch->slot_counts.requests;
}
static double get_bytes(const cstatus_child *ch)
{
    return (double)ch->slot_counts.bytes;
}
static double get_duration(const cstatus_child *ch)
{
    return (double)ch->slot_counts.duration_us / 1e6;
}
static double get_conns(const cstatus_child *ch)
{
    return (double)ch->slot_counts.connections;
}
static double get_lost(const cstatus_child *ch)
{
    return (double)ch->slot_counts.lost_wakeups;
}
static double get_errors(const cstatus_child *ch)
{
    return (double)ch->slot_counts.accept_errors;
}
static double get_waits(const cstatus_child *ch)
{
    return (double)ch->slot_counts.accept_waits;
}
static double get_wait_time(const cstatus_child *ch)
{
    return (double)ch->slot_counts.accept_wait_us / 1e6;
}
static double get_restarts(const cstatus_child *ch)
{
    return ch->restarts;
}

/* The one series per slot whose labels say which child runs there. */
static void slot_info(request_rec *r, const cstatus_model *m)
{
    int i;

    if (m->nchildren == 0) {
        return;
    }
    family(r, "child_status_slot_info", PROM_GAUGE,
           "The child in the slot: pid, generation, state, and the accept "
           "strategy and group when the MPM tells; always 1.");
    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        ap_rprintf(r, "child_status_slot_info{slot=\"%d\",pid=\"%ld\","
                   "generation=\"%d\",state=\"%s\"", ch->slot, (long)ch->pid,
                   ch->generation, cstatus_state_name(ch->state));
        if (ch->has_hybrid && ch->strategy) {
            ap_rprintf(r, ",strategy=\"%s\",group=\"%d\"",
                       label(r, ch->strategy), ch->group);
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
    family(r, "child_status_slot_request_rate", PROM_GAUGE,
           "Requests per second of the slot's child over the trailing "
           "window.");
    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        if (!ch->has_counts) {
            continue;
        }
        for (w = 0; w < CSTATUS_NWINDOWS; w++) {
            ap_rprintf(r, "child_status_slot_request_rate{slot=\"%d\","
                       "window=\"%ds\"}", ch->slot, cstatus_windows[w]);
            value(r, ch->rate[w]);
        }
    }
}

static void last_exit(request_rec *r, const cstatus_model *m)
{
    int i, seen = 0;

    for (i = 0; i < m->nchildren; i++) {
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

/* An async MPM's parked connections, by state, of the slot's child. */
static void slot_async(request_rec *r, const cstatus_model *m)
{
    int i, seen = 0;

    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        const cstatus_async *a = &ch->async;
        if (!ch->has_async) {
            continue;
        }
        if (!seen++) {
            family(r, "child_status_slot_async_connections", PROM_GAUGE,
                   "Connections the slot's child holds, as its listener "
                   "last counted them: all, and those in keep-alive, "
                   "write completion, lingering close, suspended, wait-io.");
        }
#define ASYNC_SAMPLE(state, v) \
        ap_rprintf(r, "child_status_slot_async_connections{slot=\"%d\"," \
                   "state=\"" state "\"} %" APR_UINT64_T_FMT "\n", \
                   ch->slot, (apr_uint64_t)(v))
        ASYNC_SAMPLE("all", a->connections);
        ASYNC_SAMPLE("keep_alive", a->keep_alive);
        ASYNC_SAMPLE("write_completion", a->write_completion);
        ASYNC_SAMPLE("lingering_close", a->lingering_close);
        ASYNC_SAMPLE("suspended", a->suspended);
        if (a->has_wait_io) {
            ASYNC_SAMPLE("wait_io", a->wait_io);
        }
#undef ASYNC_SAMPLE
    }
}

static void per_slot_families(request_rec *r, const cstatus_model *m)
{
    slot_info(r, m);
    per_slot(r, m, "child_status_slot_busy_threads", PROM_GAUGE,
             "Threads of the slot's child serving a connection.",
             has_always, get_busy);
    per_slot(r, m, "child_status_slot_idle_threads", PROM_GAUGE,
             "Threads of the slot's child waiting for a connection (0 "
             "once it stops accepting).", has_always, get_idle);
    per_slot(r, m, "child_status_slot_requests_total", PROM_COUNTER,
             "Requests served in the slot, by all its children.",
             has_sb, get_reqs);
    per_slot(r, m, "child_status_slot_sent_bytes_total", PROM_COUNTER,
             "Bytes sent in the slot, by all its children.", has_sb,
             get_bytes);
    per_slot(r, m, "child_status_slot_request_duration_seconds_total",
             PROM_COUNTER, "Time spent on requests in the slot, by all its "
             "children.", has_sb, get_duration);
    per_slot(r, m, "child_status_slot_connections_total", PROM_COUNTER,
             "Connections accepted in the slot, by all its children.",
             has_hyb, get_conns);
    per_slot(r, m, "child_status_slot_accept_lost_wakeups_total",
             PROM_COUNTER, "Wake-ups in the slot for a connection another "
             "waiter took.", has_hyb, get_lost);
    per_slot(r, m, "child_status_slot_accept_errors_total", PROM_COUNTER,
             "accept() failures in the slot.", has_hyb, get_errors);
    per_slot(r, m, "child_status_slot_accept_waits_total", PROM_COUNTER,
             "Times the slot's children took the accept mutex.", has_hyb,
             get_waits);
    per_slot(r, m, "child_status_slot_accept_wait_seconds_total",
             PROM_COUNTER, "Time the slot's children waited for the accept "
             "mutex.", has_hyb, get_wait_time);
    per_slot(r, m, "child_status_slot_restarts_total", PROM_COUNTER,
             "Children started in this slot after the first.", has_history,
             get_restarts);
    last_exit(r, m);
    rates(r, m);
    per_slot(r, m, "child_status_slot_accepting_seconds", PROM_GAUGE,
             "How long the slot's child was accepting in the last 10 s.",
             has_accepting, get_accepting);
    per_slot(r, m, "child_status_slot_thread_request_rate", PROM_GAUGE,
             "Requests per second per thread of the slot's child while it "
             "was accepting in the last 10 s.",
             has_rate, get_rate);
    per_slot(r, m, "child_status_slot_fair_share_requests", PROM_GAUGE,
             "The slot's child's fair share of the requests of the last "
             "10 s (judged children only).", has_share, get_expected);
    per_slot(r, m, "child_status_slot_share", PROM_GAUGE,
             "The slot's child's requests over its fair share, as a part of "
             "the sum over its generation's judged children.", has_share,
             get_share);
    slot_async(r, m);
}

/* Counters over every slot, that rate() can be taken over. */
static void server_counters(request_rec *r, const cstatus_model *m)
{
    const cstatus_counts *c = &m->server;

    if (c->has_scoreboard) {
        single(r, "child_status_requests_total", PROM_COUNTER,
               "Requests served by the server (the scoreboard's, as "
               "mod_status's Total Accesses).", c->requests);
        single(r, "child_status_sent_bytes_total", PROM_COUNTER,
               "Bytes the server sent (as mod_status's Total kBytes).",
               c->bytes);
        family(r, "child_status_request_duration_seconds_total",
               PROM_COUNTER, "Time the server spent on requests.");
        ap_rputs("child_status_request_duration_seconds_total", r);
        value(r, (double)c->duration_us / 1e6);
    }
    if (!c->has_hybrid) {
        return;     /* a stock MPM does not count these */
    }
    single(r, "child_status_connections_total", PROM_COUNTER,
           "Connections the MPM accepted.", c->connections);
    single(r, "child_status_accept_lost_wakeups_total", PROM_COUNTER,
           "Wake-ups for a connection another waiter took (the thundering "
           "herd).", c->lost_wakeups);
    single(r, "child_status_accept_errors_total", PROM_COUNTER,
           "accept() failures.", c->accept_errors);
    single(r, "child_status_accept_waits_total", PROM_COUNTER,
           "Times a child took the accept mutex.", c->accept_waits);
    family(r, "child_status_accept_wait_seconds_total", PROM_COUNTER,
           "Time children waited for the accept mutex.");
    ap_rputs("child_status_accept_wait_seconds_total", r);
    value(r, (double)c->accept_wait_us / 1e6);
    single(r, "child_status_child_restarts_total", PROM_COUNTER,
           "Children started in a slot after its first (recycled, "
           "replaced, or a new generation).", c->child_restarts);
}

static void fairness_sample(request_rec *r, const char *name,
                            const char *population, double v)
{
    ap_rprintf(r, "%s{population=\"%s\"}", name, population);
    value(r, v);
}

/* The fairness figures of each population (cstatus_fair.h). */
static void fairness(request_rec *r, const cstatus_model *m)
{
    const cstatus_fairness *f[2] = { &m->fairness, &m->previous };
    static const char *const pop[2] = { "current", "previous" };
    int n = m->has_previous ? 2 : 1, i, any = 0;

    family(r, "child_status_fairness_judged_children", PROM_GAUGE,
           "Children compared by the fairness rule.");
    for (i = 0; i < n; i++) {
        fairness_sample(r, "child_status_fairness_judged_children", pop[i],
                        f[i]->judged);
    }
    family(r, "child_status_fairness_young_children", PROM_GAUGE,
           "Children shown but not compared: accepting too briefly.");
    for (i = 0; i < n; i++) {
        fairness_sample(r, "child_status_fairness_young_children", pop[i],
                        f[i]->young);
        any |= f[i]->has_jain;
    }
    if (!any) {
        return;     /* idle: no requests, no index */
    }
    family(r, "child_status_fairness_jain", PROM_GAUGE,
           "Jain's index over the judged children's requests of the last "
           "10 s over their fair shares: 1 = even, 1/n = one child did all.");
    for (i = 0; i < n; i++) {
        if (f[i]->has_jain) {
            fairness_sample(r, "child_status_fairness_jain", pop[i],
                            f[i]->jain);
        }
    }
    family(r, "child_status_fairness_max_share", PROM_GAUGE,
           "Largest judged child's requests over its fair share, as a part "
           "of the sum.");
    for (i = 0; i < n; i++) {
        if (f[i]->has_jain) {
            fairness_sample(r, "child_status_fairness_max_share", pop[i],
                            f[i]->max_share);
        }
    }
    family(r, "child_status_fairness_min_share", PROM_GAUGE,
           "Smallest judged child's requests over its fair share, as a part "
           "of the sum.");
    for (i = 0; i < n; i++) {
        if (f[i]->has_jain) {
            fairness_sample(r, "child_status_fairness_min_share", pop[i],
                            f[i]->min_share);
        }
    }
}

static void server_info(request_rec *r, const cstatus_model *m)
{
    family(r, "child_status_server_info", PROM_GAUGE,
           "The MPM and, when it tells, its accept strategy and mutex; "
           "always 1.");
    ap_rprintf(r, "child_status_server_info{mpm=\"%s\"", label(r, m->mpm));
    if (m->accept_strategy) {
        ap_rprintf(r, ",accept_strategy=\"%s\"", label(r, m->accept_strategy));
    }
    if (m->accept_mutex) {
        ap_rprintf(r, ",accept_mutex=\"%s\"", label(r, m->accept_mutex));
    }
    ap_rputs("} 1\n", r);
    single(r, "child_status_generation", PROM_GAUGE,
           "The running MPM generation (one more at each restart).",
           (apr_uint64_t)(m->generation > 0 ? m->generation : 0));
    single(r, "child_status_children", PROM_GAUGE, "Live children.",
           (apr_uint64_t)m->totals.children);
}

static void render_prom(request_rec *r, const cstatus_model *m,
                        const cstatus_view *v)
{
    server_info(r, m);
    server_counters(r, m);
    fairness(r, m);
    per_slot_families(r, m);
}

const cstatus_renderer cstatus_prom = {
    "prometheus", "text/plain; version=0.0.4; charset=utf-8", render_prom
};
