/* cstatus_collect.c: one snapshot of every child, as a plain model.
 *
 * Owns: reading the scoreboard, our records and mpm_hybrid's statistics
 * (validated, identity under its seqlock), deriving states, totals,
 * server-wide counters, and placing each child in time for the fairness
 * rule.  Does not own: the rule itself (cstatus_fair.c), any output;
 * nothing here writes shared memory or takes a lock.  Called from: the
 * handler and the mod_status hook.
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
#include "cstatus_proc.h"
#include "cstatus_record.h"

const int cstatus_windows[CSTATUS_NWINDOWS] = { 1, CSTATUS_FAIR_WINDOW_S, 60 };

const char cstatus_fair_rule[] =
    "Each child is judged on its requests of the last 10 s against its fair "
    "share, which in every whole second it was accepting is the requests "
    "of the children accepting throughout that second, divided among them "
    "by threads; a child accepting for less than a quarter as long as the "
    "longest-accepting child of its generation (2.5 s once one has been "
    "accepting throughout) is shown but not counted, and older generations "
    "are judged apart.";

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
    int threads_per_child;      /* AP_MPMQ_MAX_THREADS, at least 1 */
    int is_async;
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

/* SERVER_GRACEFUL means two things: worker and mpm_hybrid set it on a
 * thread that has exited after a graceful stop, event sets it on every
 * thread of a child that closed its listeners, still serving or not.
 * Such a thread is busy only in the middle of a request: it started one
 * after it stopped the last (the times are kept with ExtendedStatus,
 * which mod_status turns on; without them it counts as finished). */
static int graceful_in_request(const worker_score *ws)
{
    return ap_extended_status && ws->start_time > ws->stop_time;
}

/* Busy: serving a connection (reading, writing, keep-alive, logging,
 * closing).  Idle: waiting for one, and only in a child that still
 * accepts; a stopping child's waiting threads are on their way out. */
static void count_threads(cstatus_child *ch, int slot, int thread_limit,
                          int accepting, int *starting)
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
            ch->threads_idle += accepting;
        }
        else if (st == SERVER_STARTING) {
            (*starting)++;
        }
        else if ((st >= SERVER_BUSY_READ && st <= SERVER_CLOSING)
                 || (st == SERVER_GRACEFUL && graceful_in_request(ws))) {
            ch->threads_busy++;
        }
    }
}

static int is_accepting(const process_score *ps, int running_generation)
{
    return !ps->quiescing && ps->generation == running_generation;
}

static cstatus_state_e scoreboard_state(const process_score *ps,
                                        const cstatus_child *ch,
                                        int starting, int running_generation)
{
    if (!is_accepting(ps, running_generation)) {
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
    cstatus_record_seconds(rc, now, CSTATUS_FAIR_WINDOW_S,
                           ch->fair.per_second);
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
    ch->lost_wakeups = __atomic_load_n(&hc->idle_wakeups, __ATOMIC_RELAXED)
                       - id->base.idle_wakeups;
    ch->accept_errors = __atomic_load_n(&hc->accept_errors, __ATOMIC_RELAXED)
                        - id->base.accept_errors;
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

/* The scoreboard's requests, bytes and time of one slot's threads.  It
 * keeps them per thread slot, across the children that use it and
 * graceful restarts, but counts only with ExtendedStatus (which
 * mod_status turns on). */
static void scoreboard_counts(int slot, int thread_limit, cstatus_counts *c)
{
    int j;

    if (!ap_extended_status) {
        return;
    }
    c->has_scoreboard = 1;
    for (j = 0; j < thread_limit; j++) {
        worker_score *ws = ap_get_scoreboard_worker_from_indexes(slot, j);

        c->requests += ws->access_count;
        c->bytes += (apr_uint64_t)ws->bytes_served;
        c->duration_us += (apr_uint64_t)ws->duration;
    }
}

/* mpm_hybrid's counters of one slot, which only grow (mod_mpm_hybrid.h),
 * and the children it started after its first. */
static void hybrid_counts(const hybrid_stats_header *hyb, int slot,
                          cstatus_counts *c)
{
    const hybrid_child_record *hr = hybrid_stats_record(hyb, slot);
    const hybrid_child_counters *l = &hr->load.c;
    hybrid_child_identity id;

    c->has_hybrid = 1;
    c->connections += __atomic_load_n(&l->accepts, __ATOMIC_RELAXED);
    c->lost_wakeups += __atomic_load_n(&l->idle_wakeups, __ATOMIC_RELAXED);
    c->accept_errors += __atomic_load_n(&l->accept_errors, __ATOMIC_RELAXED);
    c->accept_waits += __atomic_load_n(&l->accept_waits, __ATOMIC_RELAXED);
    c->accept_wait_us += __atomic_load_n(&l->accept_wait_us,
                                         __ATOMIC_RELAXED);
    if (read_identity(hr, &id)) {
        c->child_restarts += id.restarts;
    }
}

static void slot_counts(const slot_view *sv, int slot, int in_scoreboard,
                        cstatus_counts *c)
{
    if (in_scoreboard) {
        scoreboard_counts(slot, sv->thread_limit, c);
    }
    if (sv->hyb && (apr_uint32_t)slot < sv->hyb->slots) {
        hybrid_counts(sv->hyb, slot, c);
    }
}

/* Every slot's counters, whether or not a child is shown for it. */
static void count_server(const slot_view *sv, int server_limit,
                         cstatus_counts *all)
{
    int n = server_limit, i;

    if (sv->hyb && sv->hyb->slots > (apr_uint32_t)n) {
        n = (int)sv->hyb->slots;
    }
    all->has_scoreboard = ap_extended_status != 0;
    all->has_hybrid = sv->hyb != NULL;
    for (i = 0; i < n; i++) {
        slot_counts(sv, i, i < server_limit, all);
    }
}

/* The connections an async MPM's listener last counted for this child. */
static void take_async(cstatus_child *ch, const process_score *ps)
{
    cstatus_async *a = &ch->async;

    ch->has_async = 1;
    a->connections = ps->connections;
    a->keep_alive = ps->keep_alive;
    a->lingering_close = ps->lingering_close;
    a->write_completion = ps->write_completion;
    a->suspended = ps->suspended;
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 136)
    a->has_wait_io = 1;
    a->wait_io = ps->wait_io;
#endif
}

/* When the child began and stopped accepting, from the best source there
 * is: our record (its own child_init and child_stopping), mpm_hybrid's
 * identity (fork and the parent's stop request), the kernel's start
 * time, and for an older generation the load of the next one (a graceful
 * restart stops the old children just before); a stopping or dead child
 * whose stop no source dates is left "stopped at an unknown time"
 * (cstatus_fair.h). */
static void place_in_time(const slot_view *sv, cstatus_child *ch,
                          const cstatus_record_copy *rc,
                          const hybrid_child_identity *id, apr_time_t now)
{
    cstatus_fair_child *f = &ch->fair;
    int ours = ch->pid != 0 && rc->pid == ch->pid;
    int mpm = id != NULL && ch->has_hybrid;

    f->status = CSTATUS_FAIR_OTHER;
    f->population = ch->generation == sv->running_generation
                    ? CSTATUS_POP_CURRENT : CSTATUS_POP_PREVIOUS;
    f->threads = mpm && id->threads > 0 ? id->threads : sv->threads_per_child;
    if (ours && rc->started) {
        f->since = rc->started;
    }
    else if (mpm && id->start_time) {
        f->since = id->start_time;
    }
    else if (ch->state != CSTATUS_DEAD) {
        cstatus_proc_start_time(ch->pid, now, &f->since);
    }
    if (mpm && id->stop_time) {
        f->stopped = 1;
        f->until = id->stop_time;
    }
    else if (ours && rc->stopped) {
        f->stopped = 1;
        f->until = rc->stopped;
    }
    else if (ch->generation < sv->running_generation) {
        f->stopped = 1;     /* 0 if not known */
        f->until = cstatus_record_generation_loaded(ch->generation + 1);
    }
    else if (ch->state == CSTATUS_DEAD || ch->state == CSTATUS_GRACEFUL) {
        f->stopped = 1;     /* when is not known */
    }
}

/* Fill `ch` for one slot; returns 0 when the slot has nothing to show
 * (no child, and none that died in the current generation). */
static int collect_slot(const slot_view *sv, int slot, apr_time_t now,
                        cstatus_child *ch)
{
    process_score *ps = ap_get_scoreboard_process(slot);
    cstatus_record_copy rc;
    hybrid_child_identity id;
    int starting, has_id = 0;

    memset(&rc, 0, sizeof(rc));
    if (slot < sv->nrecords) {
        cstatus_record_read(&sv->records[slot], &rc);
    }
    ch->slot = slot;
    ch->pid = ps->pid;
    if (ch->pid != 0) {
        ch->generation = ps->generation;
        count_threads(ch, slot, sv->thread_limit,
                      is_accepting(ps, sv->running_generation), &starting);
        ch->state = scoreboard_state(ps, ch, starting, sv->running_generation);
        if (rc.pid == ch->pid) {
            take_counts(ch, &rc, now);
        }
        else if (ch->generation >= sv->since_generation && slot < sv->nrecords) {
            /* Has the module but has not finished a connection yet. */
            ch->has_counts = 1;
        }
        if (sv->is_async) {
            take_async(ch, ps);
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
        if ((has_id = read_identity(hr, &id))) {
            take_hybrid(ch, hr, &id);
        }
    }
    place_in_time(sv, ch, &rc, has_id ? &id : NULL, now);
    slot_counts(sv, slot, 1, &ch->slot_counts);
    return 1;
}

static void add_async(cstatus_async *t, const cstatus_async *a)
{
    t->connections += a->connections;
    t->keep_alive += a->keep_alive;
    t->lingering_close += a->lingering_close;
    t->write_completion += a->write_completion;
    t->suspended += a->suspended;
    t->has_wait_io |= a->has_wait_io;
    t->wait_io += a->wait_io;
}

static void add_totals(cstatus_totals *t, const cstatus_child *ch)
{
    int w;

    if (ch->state != CSTATUS_DEAD) {
        t->children++;
    }
    t->threads_busy += ch->threads_busy;
    t->threads_idle += ch->threads_idle;
    if (ch->has_hybrid) {
        t->lost_wakeups += ch->lost_wakeups;
        t->accept_errors += ch->accept_errors;
    }
    if (ch->has_async) {
        t->has_async = 1;
        add_async(&t->async, &ch->async);
    }
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

/* The fairness rule (cstatus_fair.c) for each population; a judged
 * child has a share unless its population did nothing (idle). */
static void judge(apr_pool_t *p, cstatus_model *m)
{
    cstatus_fair_child **fc = apr_palloc(p, sizeof(*fc)
                                            * (m->nchildren + 1));
    int i;

    for (i = 0; i < m->nchildren; i++) {
        fc[i] = &m->children[i].fair;
    }
    cstatus_fair_judge(fc, m->nchildren, CSTATUS_POP_CURRENT, m->now,
                       &m->fairness);
    cstatus_fair_judge(fc, m->nchildren, CSTATUS_POP_PREVIOUS, m->now,
                       &m->previous);
    m->has_previous = m->previous.judged + m->previous.young > 0;
    for (i = 0; i < m->nchildren; i++) {
        cstatus_child *ch = &m->children[i];
        const cstatus_fairness *f = ch->fair.population == CSTATUS_POP_CURRENT
                                    ? &m->fairness : &m->previous;

        ch->has_share = ch->fair.status == CSTATUS_FAIR_JUDGED && f->has_jain;
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
        m->fairness.verdict = m->previous.verdict = "idle";
        return m;
    }
    memset(&sv, 0, sizeof(sv));
    sv.hyb = valid_hybrid(hybrid);
    sv.records = cstatus_record_base(&sv.nrecords, &sv.since_generation);
    describe_server(p, m, sv.hyb);
    sv.running_generation = m->generation;
    sv.thread_limit = m->thread_limit;
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &sv.threads_per_child);
    if (sv.threads_per_child < 1) {
        sv.threads_per_child = 1;   /* prefork says 0 or 1 */
    }
    ap_mpm_query(AP_MPMQ_IS_ASYNC, &sv.is_async);
    m->is_async = sv.is_async;

    m->children = apr_pcalloc(p, sizeof(cstatus_child) * m->server_limit);
    for (i = 0; i < m->server_limit; i++) {
        if (collect_slot(&sv, i, m->now, &m->children[m->nchildren])) {
            add_totals(&m->totals, &m->children[m->nchildren]);
            m->nchildren++;
        }
    }
    set_mean(&m->totals.has_mean, &m->totals.mean_ms, m->totals.requests,
             m->totals.duration_us);
    count_server(&sv, m->server_limit, &m->server);
    judge(p, m);
    return m;
}
