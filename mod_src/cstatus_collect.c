/* cstatus_collect.c: one snapshot of every child, as a plain model.
 *
 * Owns: reading the scoreboard, our records and mpm_hybrid's statistics
 * (validated, identity under its seqlock), deriving states, totals and
 * fairness.  Does not own: any output; nothing here writes shared memory
 * or takes a lock.  Called from: the handler and the mod_status hook.
 */
#include <string.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_main.h"
#include "ap_mpm.h"
#include "scoreboard.h"

#include "mod_mpm_hybrid.h"
#include "cstatus_model.h"
#include "cstatus_record.h"

const int cstatus_windows[CSTATUS_NWINDOWS] = { 1, 10, 60 };

/* Identity reads give up after this many torn copies (the parent writes a
 * few words per spawn or reap, so a retry almost always succeeds). */
#define IDENTITY_TRIES 64

static const char *const strategy_names[] = {
    NULL, "mutex", "preemptive", "reuseport", "exclusive"
};

typedef struct slot_view {
    const hybrid_stats_header *hyb;  /* validated, or NULL */
    cstatus_record *records;
    int nrecords;
    int since_generation;
    int running_generation;
    int thread_limit;
} slot_view;

const char *cstatus_state_name(cstatus_state_e state)
{
    switch (state) {
    case CSTATUS_STARTING: return "starting";
    case CSTATUS_READY:    return "ready";
    case CSTATUS_GRACEFUL: return "graceful";
    default:               return "dead";
    }
}

/* The MPM's segment if it is one we understand; a layout we do not know
 * is ignored rather than guessed at. */
static const hybrid_stats_header *valid_hybrid(cstatus_hybrid_fn fn)
{
    const hybrid_stats_header *h = fn ? fn() : NULL;

    if (h == NULL || h->magic != HYBRID_STATS_MAGIC
        || h->version != HYBRID_STATS_VERSION
        || h->header_size < sizeof(hybrid_stats_header)
        || h->record_size < sizeof(hybrid_child_record)
        || h->slots == 0 || h->slots > (1u << 20)) {
        return NULL;
    }
    return h;
}

/* Copy the parent-written identity of a slot; 0 if it kept changing. */
static int read_identity(const hybrid_child_record *rec,
                         hybrid_child_identity *out)
{
    int i;

    for (i = 0; i < IDENTITY_TRIES; i++) {
        apr_uint32_t s1 = __atomic_load_n(&rec->who.id.seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            continue;
        }
        memcpy(out, (const void *)&rec->who.id, sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&rec->who.id.seq, __ATOMIC_RELAXED) == s1) {
            return 1;
        }
    }
    return 0;
}

static const char *strategy_name(apr_int32_t id)
{
    if (id < 0 || id >= (apr_int32_t)(sizeof(strategy_names)
                                      / sizeof(strategy_names[0]))) {
        return NULL;
    }
    return strategy_names[id];
}

/* A bounded copy of a fixed-size name field the MPM filled. */
static const char *fixed_name(apr_pool_t *p, const char *field, apr_size_t n)
{
    return apr_pstrndup(p, field, n);
}

static void count_threads(cstatus_child *ch, int slot, int thread_limit,
                          int *starting)
{
    int j;

    *starting = 0;
    for (j = 0; j < thread_limit; j++) {
        worker_score *ws = ap_get_scoreboard_worker_from_indexes(slot, j);
        int st = ws->status;

        /* worker/event: a thread of an older process in a reused slot. */
        if (ws->pid != 0 && ws->pid != ch->pid) {
            continue;
        }
        if (st == SERVER_READY) {
            ch->threads_idle++;
        }
        else if (st == SERVER_STARTING) {
            (*starting)++;
        }
        else if ((st >= SERVER_BUSY_READ && st <= SERVER_CLOSING)
                 || st == SERVER_GRACEFUL) {
            ch->threads_busy++;
        }
    }
}

static cstatus_state_e scoreboard_state(const process_score *ps,
                                        const cstatus_child *ch,
                                        int starting, int running_generation)
{
    if (ps->quiescing || ps->generation != running_generation) {
        return CSTATUS_GRACEFUL;
    }
    if (ch->threads_busy + ch->threads_idle == 0 && starting > 0) {
        return CSTATUS_STARTING;
    }
    return CSTATUS_READY;
}

static void set_mean(int *has, double *mean_ms, apr_uint64_t requests,
                     apr_uint64_t duration_us)
{
    *has = requests > 0;
    *mean_ms = *has ? (double)duration_us / (double)requests / 1000.0 : 0.0;
}

static void take_counts(cstatus_child *ch, const cstatus_record_copy *rc,
                        apr_time_t now)
{
    int w;

    ch->has_counts = 1;
    ch->connections = rc->connections;
    ch->requests = rc->requests;
    ch->bytes = rc->bytes;
    ch->duration_us = rc->duration_us;
    set_mean(&ch->has_mean, &ch->mean_ms, ch->requests, ch->duration_us);
    for (w = 0; w < CSTATUS_NWINDOWS; w++) {
        ch->rate[w] = cstatus_record_window(rc, now, cstatus_windows[w])
                      / cstatus_windows[w];
    }
    ch->recent = cstatus_record_window(rc, now,
                                       cstatus_windows[CSTATUS_FAIR_WINDOW]);
}

static void take_hybrid(cstatus_child *ch, const hybrid_child_record *hr,
                        const hybrid_child_identity *id)
{
    const hybrid_child_counters *hc = &hr->load.c;

    ch->has_slot_history = 1;
    ch->restarts = id->restarts;
    if (id->last_exit_why == HYBRID_EXIT_CODE
        || id->last_exit_why == HYBRID_EXIT_SIGNAL) {
        ch->has_exit = 1;
        ch->exit_why = id->last_exit_why == HYBRID_EXIT_CODE ? "code"
                                                             : "signal";
        ch->exit_status = id->last_exit_status;
    }
    if (id->pid != ch->pid || ch->pid == 0) {
        return;     /* the counters belong to another child */
    }
    ch->has_hybrid = 1;
    ch->strategy = strategy_name(id->strategy);
    ch->group = id->group;
    /* The slot's counters grow across children; this child's share is
     * what they gained since it started. */
    ch->accepts = __atomic_load_n(&hc->accepts, __ATOMIC_RELAXED)
                  - id->base.accepts;
    ch->accept_waits = __atomic_load_n(&hc->accept_waits, __ATOMIC_RELAXED)
                       - id->base.accept_waits;
    ch->accept_wait_us = __atomic_load_n(&hc->accept_wait_us,
                                         __ATOMIC_RELAXED)
                         - id->base.accept_wait_us;
    /* The parent writes the identity only at spawn, reap and when it asks
     * a child to stop, so "starting" there may be stale while the
     * scoreboard already shows the threads serving; the scoreboard decides
     * between starting and ready, the MPM's word adds graceful. */
    if (id->state == HYBRID_SLOT_GRACEFUL) {
        ch->state = CSTATUS_GRACEFUL;
    }
    else if (id->state == HYBRID_SLOT_READY && ch->state == CSTATUS_STARTING) {
        ch->state = CSTATUS_READY;
    }
}

/* Fill `ch` for one slot; returns 0 when the slot has nothing to show
 * (no child, and none that died in the current generation). */
static int collect_slot(const slot_view *sv, int slot, apr_time_t now,
                        cstatus_child *ch)
{
    process_score *ps = ap_get_scoreboard_process(slot);
    cstatus_record_copy rc;
    int starting;

    memset(&rc, 0, sizeof(rc));
    if (slot < sv->nrecords) {
        cstatus_record_read(&sv->records[slot], &rc);
    }
    ch->slot = slot;
    ch->pid = ps->pid;
    if (ch->pid != 0) {
        ch->generation = ps->generation;
        count_threads(ch, slot, sv->thread_limit, &starting);
        ch->state = scoreboard_state(ps, ch, starting, sv->running_generation);
        if (rc.pid == ch->pid) {
            take_counts(ch, &rc, now);
        }
        else if (ch->generation >= sv->since_generation && slot < sv->nrecords) {
            /* Has the module but has not finished a connection yet. */
            ch->has_counts = 1;
        }
    }
    else if (rc.pid != 0 && rc.generation == sv->running_generation) {
        /* Its final figures stay until the slot is used again. */
        ch->pid = rc.pid;
        ch->generation = rc.generation;
        ch->state = CSTATUS_DEAD;
        take_counts(ch, &rc, now);
    }
    else {
        return 0;
    }
    if (sv->hyb && (apr_uint32_t)slot < sv->hyb->slots) {
        const hybrid_child_record *hr = hybrid_stats_record(sv->hyb, slot);
        hybrid_child_identity id;
        if (read_identity(hr, &id)) {
            take_hybrid(ch, hr, &id);
        }
    }
    ch->fair = ch->state != CSTATUS_DEAD && ch->state != CSTATUS_GRACEFUL
               && ch->generation == sv->running_generation;
    return 1;
}

static void add_totals(cstatus_totals *t, const cstatus_child *ch)
{
    int w;

    if (ch->state != CSTATUS_DEAD) {
        t->children++;
    }
    t->threads_busy += ch->threads_busy;
    t->threads_idle += ch->threads_idle;
    if (!ch->has_counts) {
        return;
    }
    t->connections += ch->connections;
    t->requests += ch->requests;
    t->bytes += ch->bytes;
    t->duration_us += ch->duration_us;
    for (w = 0; w < CSTATUS_NWINDOWS; w++) {
        t->rate[w] += ch->rate[w];
    }
}

/* Jain's index J = (sum x)^2 / (n * sum x^2) over the live children of the
 * current generation, x = requests in the last 10 s; 1 means perfectly
 * even, 1/n means one child did everything. */
static void compute_fairness(cstatus_model *m)
{
    cstatus_fairness *f = &m->fairness;
    double sum = 0.0, sumsq = 0.0, max = 0.0, min = 0.0;
    int i, first = 1;

    for (i = 0; i < m->nchildren; i++) {
        const cstatus_child *ch = &m->children[i];
        if (!ch->fair) {
            continue;
        }
        f->children++;
        sum += ch->recent;
        sumsq += ch->recent * ch->recent;
        if (first || ch->recent > max) {
            max = ch->recent;
        }
        if (first || ch->recent < min) {
            min = ch->recent;
        }
        first = 0;
    }
    f->requests = sum;
    if (f->children == 0 || sum <= 0.0 || sumsq <= 0.0) {
        f->verdict = "idle";
        return;
    }
    f->has_jain = 1;
    f->jain = (sum * sum) / ((double)f->children * sumsq);
    f->max_share = max / sum;
    f->min_share = min / sum;
    f->verdict = f->jain >= CSTATUS_SPREAD_JAIN ? "spread" : "concentrated";
    for (i = 0; i < m->nchildren; i++) {
        cstatus_child *ch = &m->children[i];
        if (ch->fair) {
            ch->has_share = 1;
            ch->share = ch->recent / sum;
        }
    }
}

static void describe_server(apr_pool_t *p, cstatus_model *m,
                            const hybrid_stats_header *hyb)
{
    global_score *g = ap_scoreboard_image->global;

    m->server_version = ap_get_server_banner();
    m->mpm = ap_show_mpm();
    m->generation = g->running_generation;
    m->restart_time = g->restart_time;
    m->server_limit = g->server_limit;
    m->thread_limit = g->thread_limit;
    if (hyb) {
        const char *mutex = fixed_name(p, hyb->mutex_name,
                                       sizeof(hyb->mutex_name));
        m->has_hybrid = 1;
        m->accept_strategy = fixed_name(p, hyb->strategy_name,
                                        sizeof(hyb->strategy_name));
        if (m->accept_strategy[0] == '\0') {
            m->accept_strategy = strategy_name(hyb->strategy);
        }
        m->accept_mutex = mutex[0] ? mutex : "none";
    }
}

cstatus_model *cstatus_collect(apr_pool_t *p, cstatus_hybrid_fn hybrid)
{
    cstatus_model *m = apr_pcalloc(p, sizeof(*m));
    slot_view sv;
    int i;

    m->now = apr_time_now();
    if (ap_scoreboard_image == NULL) {
        m->mpm = ap_show_mpm();
        m->fairness.verdict = "idle";
        return m;
    }
    memset(&sv, 0, sizeof(sv));
    sv.hyb = valid_hybrid(hybrid);
    sv.records = cstatus_record_base(&sv.nrecords, &sv.since_generation);
    describe_server(p, m, sv.hyb);
    sv.running_generation = m->generation;
    sv.thread_limit = m->thread_limit;

    m->children = apr_pcalloc(p, sizeof(cstatus_child) * m->server_limit);
    for (i = 0; i < m->server_limit; i++) {
        if (collect_slot(&sv, i, m->now, &m->children[m->nchildren])) {
            add_totals(&m->totals, &m->children[m->nchildren]);
            m->nchildren++;
        }
    }
    set_mean(&m->totals.has_mean, &m->totals.mean_ms, m->totals.requests,
             m->totals.duration_us);
    compute_fairness(m);
    return m;
}
