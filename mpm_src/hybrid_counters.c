/* hybrid_counters.c: the per-child statistics segment.
 *
 * Owns: creating the segment (parent, once, kept in retained data like
 * the scoreboard), the parent's seqlocked writes of each slot's identity,
 * and handing a child its slot's counters.  The parent only ever writes
 * here; nothing it decides depends on what children write (the
 * CVE-2019-0211 lesson).  Layout: mod_mpm_hybrid.h.
 */

#include <string.h>

#include "apr_optional.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"

#include "hybrid_accept.h"
#include "hybrid_config.h"
#include "hybrid_counters.h"
#include "hybrid_server.h"

typedef struct {
    apr_shm_t *shm;
    hybrid_stats_header *header;
} stats_retained;

/* This generation's view (the parent sets it in open_logs; children
 * inherit it). */
static hybrid_stats_header *stats;

static apr_size_t stats_size(int slots)
{
    return APR_ALIGN(sizeof(hybrid_stats_header), 128)
           + (apr_size_t)slots * sizeof(hybrid_child_record);
}

static hybrid_child_record *stats_record(int slot)
{
    if (!stats || slot < 0 || (apr_uint32_t)slot >= stats->slots) {
        return NULL;
    }
    return (hybrid_child_record *)((char *)stats + stats->header_size
                                   + (apr_size_t)slot * stats->record_size);
}

static stats_retained *stats_retained_get(void)
{
    static const char key[] = "mpm_hybrid_stats";
    stats_retained *r = ap_retained_data_get(key);

    return r ? r : ap_retained_data_create(key, sizeof(*r));
}

void hyb_stats_create(server_rec *s, int slots)
{
    stats_retained *r = stats_retained_get();
    apr_size_t size = stats_size(slots);
    hybrid_stats_header *h;
    apr_status_t rv;

    if (r->header) {
        stats = r->header;
        return;
    }
    rv = apr_shm_create(&r->shm, size, NULL, ap_pglobal);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, HYBLOGNO(00010)
                     "cannot create the per-child statistics segment "
                     "(%" APR_SIZE_T_FMT " bytes); per-child statistics "
                     "will be missing", size);
        stats = NULL;
        return;
    }
    h = apr_shm_baseaddr_get(r->shm);
    memset(h, 0, size);
    h->magic = HYBRID_STATS_MAGIC;
    h->version = HYBRID_STATS_VERSION;
    h->header_size = (apr_uint32_t)APR_ALIGN(sizeof(*h), 128);
    h->record_size = sizeof(hybrid_child_record);
    h->slots = (apr_uint32_t)slots;
    r->header = stats = h;
}

void hyb_stats_publish_generation(int generation)
{
    const hyb_strategy *st = hyb_conf.strategy;
    const char *mutex = st->mutex_name ? st->mutex_name() : NULL;

    if (!stats) {
        return;
    }
    stats->generation = generation;
    stats->strategy = st->id;
    stats->groups = hyb_accept_groups();
    stats->threads_per_child = hyb_conf.lim.threads_per_child;
    stats->mutex_broken = 0;      /* a new generation has a new mutex */
    apr_cpystrn(stats->strategy_name, st->name, sizeof(stats->strategy_name));
    apr_cpystrn(stats->mutex_name, mutex ? mutex : "",
                sizeof(stats->mutex_name));
}

/* Seqlock write: readers retry while seq is odd or has moved. */
static void identity_begin(hybrid_child_identity *id)
{
    __atomic_store_n(&id->seq, id->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void identity_end(hybrid_child_identity *id)
{
    __atomic_store_n(&id->seq, id->seq + 1, __ATOMIC_RELEASE);
}

void hyb_stats_note_spawn(int slot, pid_t pid, int generation, int group,
                          apr_uint32_t restarts, apr_time_t started)
{
    hybrid_child_record *r = stats_record(slot);

    if (!r) {
        return;
    }
    identity_begin(&r->who.id);
    r->who.id.slot = slot;
    r->who.id.pid = (apr_int32_t)pid;
    r->who.id.generation = generation;
    r->who.id.strategy = hyb_conf.strategy->id;
    r->who.id.group = group;
    r->who.id.state = HYBRID_SLOT_STARTING;
    r->who.id.restarts = restarts;
    r->who.id.threads = hyb_conf.lim.threads_per_child;
    r->who.id.start_time = started;
    r->who.id.ready_time = 0;
    r->who.id.stop_time = 0;
    /* The slot's counters go on growing; this child's share is what they
     * gain from here.  The child is not running yet, so nothing moves
     * them while they are copied.  (Child-written values: only shown,
     * never acted on.) */
    r->who.id.base = r->load.c;
    identity_end(&r->who.id);
}

void hyb_stats_note_state(int slot, hybrid_slot_state_e state)
{
    hybrid_child_record *r = stats_record(slot);

    if (!r) {
        return;
    }
    identity_begin(&r->who.id);
    r->who.id.state = state;
    if (state == HYBRID_SLOT_READY && !r->who.id.ready_time) {
        r->who.id.ready_time = apr_time_now();
    }
    if (state == HYBRID_SLOT_GRACEFUL && !r->who.id.stop_time) {
        r->who.id.stop_time = apr_time_now();
    }
    identity_end(&r->who.id);
}

void hyb_stats_note_exit(int slot, apr_exit_why_e why, int status)
{
    hybrid_child_record *r = stats_record(slot);

    if (!r) {
        return;
    }
    identity_begin(&r->who.id);
    r->who.id.pid = 0;
    r->who.id.state = HYBRID_SLOT_DEAD;
    r->who.id.last_exit_why = (why & APR_PROC_SIGNAL) ? HYBRID_EXIT_SIGNAL
                                                      : HYBRID_EXIT_CODE;
    r->who.id.last_exit_status = status;
    identity_end(&r->who.id);
}

hybrid_child_counters *hyb_stats_counters(int slot)
{
    hybrid_child_record *r = stats_record(slot);

    return r ? &r->load.c : NULL;
}

int hyb_stats_mutex_broken_first(void)
{
    return !stats || !__atomic_exchange_n(&stats->mutex_broken, 1,
                                          __ATOMIC_SEQ_CST);
}

static const hybrid_stats_header *hybrid_get_stats(void)
{
    return stats;
}

void hyb_stats_register(void)
{
    APR_REGISTER_OPTIONAL_FN(hybrid_get_stats);
}
