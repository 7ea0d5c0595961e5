/* cstatus_record.c: the per-child records of mod_child_status.
 *
 * Owns: creating the anonymous segment (parent), claiming a record and
 * counting into it (child), copying and summing it (any reader).
 * Does not own: deciding what a record means for a slot (cstatus_collect.c).
 * Called from: mod_child_status.c hooks.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "apr_shm.h"

#include "httpd.h"
#include "http_config.h"
#include "ap_mpm.h"
#include "scoreboard.h"

#include "cstatus_record.h"

#define RETAINED_KEY "mod_child_status.c/records"

/* Generations whose load time is remembered; older children than that
 * are long gone. */
#define GENERATION_HISTORY 16

/* Survives restarts in the process pool; the module's statics do not,
 * because the DSO is unloaded and loaded again each generation. */
typedef struct retained_records {
    apr_shm_t *shm;
    cstatus_record *base;
    int slots;
    int since_generation;
    int loaded_generation[GENERATION_HISTORY];
    apr_time_t loaded_time[GENERATION_HISTORY];
} retained_records;

/* This generation's view of the retained data; set in the parent before
 * any fork, so children inherit it. */
static retained_records *seg;

/* Per child process: the record it owns once claimed. */
static struct {
    cstatus_record *volatile rec;
    apr_uint32_t pid;
    int slot;
    apr_time_t started;
    pthread_once_t once;
} mine = { NULL, 0, -1, 0, PTHREAD_ONCE_INIT };

static apr_status_t create_segment(retained_records *rr, server_rec *s,
                                   int slots)
{
    apr_size_t size = (apr_size_t)slots * sizeof(cstatus_record);
    apr_status_t rv;

    if (rr->shm) {
        /* Only reached on a grown limit; children of the old size are
         * gone after a hard restart and keep their own mapping anyway. */
        apr_shm_destroy(rr->shm);
        rr->shm = NULL;
        rr->base = NULL;
        rr->slots = 0;
    }
    rv = apr_shm_create(&rr->shm, size, NULL, s->process->pool);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rr->base = apr_shm_baseaddr_get(rr->shm);
    memset(rr->base, 0, size);
    rr->slots = slots;
    return APR_SUCCESS;
}

apr_status_t cstatus_record_setup(server_rec *s, int hard_limit, int generation)
{
    retained_records *rr = ap_retained_data_get(RETAINED_KEY);

    if (rr == NULL) {
        rr = ap_retained_data_create(RETAINED_KEY, sizeof(*rr));
        rr->since_generation = generation;
    }
    rr->loaded_generation[generation % GENERATION_HISTORY] = generation;
    rr->loaded_time[generation % GENERATION_HISTORY] = apr_time_now();
    if (hard_limit < 1) {
        hard_limit = 1;
    }
    seg = rr;
    if (rr->base == NULL || hard_limit > rr->slots) {
        return create_segment(rr, s, hard_limit);
    }
    return APR_SUCCESS;
}

cstatus_record *cstatus_record_base(int *slots, int *since_generation)
{
    if (seg == NULL || seg->base == NULL) {
        *slots = 0;
        *since_generation = 0;
        return NULL;
    }
    *slots = seg->slots;
    *since_generation = seg->since_generation;
    return seg->base;
}

apr_time_t cstatus_record_generation_loaded(int generation)
{
    int i = generation % GENERATION_HISTORY;

    if (seg == NULL || generation < 0
        || seg->loaded_generation[i] != generation) {
        return 0;
    }
    return seg->loaded_time[i];
}

/* The scoreboard slot of the worker that `c` runs on, or -1.  The handle
 * is opaque, but the worker_score it points to lies inside exactly one
 * slot's row, and the rows are what ap_get_scoreboard_worker indexes. */
static int slot_of_connection(conn_rec *c)
{
    worker_score *ws;
    global_score *g;
    int i;

    if (c == NULL || c->sbh == NULL || ap_scoreboard_image == NULL) {
        return -1;
    }
    ws = ap_get_scoreboard_worker(c->sbh);
    g = ap_scoreboard_image->global;
    if (ws == NULL || g == NULL) {
        return -1;
    }
    for (i = 0; i < g->server_limit; i++) {
        worker_score *row = ap_scoreboard_image->servers[i];
        if (ws >= row && ws < row + g->thread_limit) {
            return i;
        }
    }
    return -1;
}

/* Runs once per child process (pthread_once), so no thread of this child
 * counts into the record before it is reset for the new pid.  Any earlier
 * occupant of the slot is gone or quiescing; from here on it sees a pid
 * that is not its own and stops writing. */
static void claim_record(void)
{
    cstatus_record *rec;
    int gen = 0;

    if (seg == NULL || seg->base == NULL || mine.slot < 0
        || mine.slot >= seg->slots) {
        return;
    }
    rec = &seg->base[mine.slot];
    ap_mpm_query(AP_MPMQ_GENERATION, &gen);
    mine.pid = (apr_uint32_t)getpid();
    __atomic_store_n(&rec->head.c.pid, 0, __ATOMIC_RELAXED);
    rec->head.c.generation = gen;
    rec->head.c.claimed = apr_time_now();
    rec->head.c.started = mine.started ? mine.started : rec->head.c.claimed;
    __atomic_store_n(&rec->head.c.stopped, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&rec->head.c.connections, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&rec->head.c.requests, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&rec->head.c.bytes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&rec->head.c.duration_us, 0, __ATOMIC_RELAXED);
    memset((void *)rec->ring, 0, sizeof(rec->ring));
    /* Readers that see the new pid see the zeroed series. */
    __atomic_store_n(&rec->head.c.pid, mine.pid, __ATOMIC_RELEASE);
    __atomic_store_n(&mine.rec, rec, __ATOMIC_RELEASE);
}

/* The calling child's record, or NULL if it has none (no segment, no
 * scoreboard handle yet, or the slot was taken over by a newer child). */
static cstatus_record *my_record(conn_rec *c)
{
    cstatus_record *rec = __atomic_load_n(&mine.rec, __ATOMIC_ACQUIRE);

    if (rec == NULL) {
        int slot = slot_of_connection(c);
        if (slot < 0) {
            return NULL;
        }
        /* Every thread of this process finds the same slot. */
        __atomic_store_n(&mine.slot, slot, __ATOMIC_RELAXED);
        pthread_once(&mine.once, claim_record);
        rec = __atomic_load_n(&mine.rec, __ATOMIC_ACQUIRE);
        if (rec == NULL) {
            return NULL;
        }
    }
    if (__atomic_load_n(&rec->head.c.pid, __ATOMIC_RELAXED) != mine.pid) {
        return NULL;
    }
    return rec;
}

static void add64(volatile apr_uint64_t *p, apr_uint64_t v)
{
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

void cstatus_record_connection(conn_rec *c)
{
    cstatus_record *rec = my_record(c);

    if (rec) {
        add64(&rec->head.c.connections, 1);
    }
}

void cstatus_record_request(request_rec *r)
{
    cstatus_record *rec = my_record(r->connection);
    const request_rec *last = r;
    apr_time_t now;

    if (rec == NULL) {
        return;
    }
    /* After internal redirects the body was sent by the last request. */
    while (last->next) {
        last = last->next;
    }
    now = apr_time_now();
    add64(&rec->head.c.requests, 1);
    if (last->bytes_sent > 0) {
        add64(&rec->head.c.bytes, (apr_uint64_t)last->bytes_sent);
    }
    if (now > r->request_time) {
        add64(&rec->head.c.duration_us, (apr_uint64_t)(now - r->request_time));
    }
    cstatus_ring_bump(rec->ring, now);
}

void cstatus_record_child_started(void)
{
    mine.started = apr_time_now();
}

void cstatus_record_child_stopping(void)
{
    cstatus_record *rec = __atomic_load_n(&mine.rec, __ATOMIC_ACQUIRE);

    if (rec && __atomic_load_n(&rec->head.c.pid, __ATOMIC_RELAXED)
               == mine.pid) {
        __atomic_store_n(&rec->head.c.stopped, apr_time_now(),
                         __ATOMIC_RELAXED);
    }
}

void cstatus_record_read(const cstatus_record *rec, cstatus_record_copy *out)
{
    const cstatus_counters *c = &rec->head.c;
    int i;

    out->pid = (pid_t)__atomic_load_n(&c->pid, __ATOMIC_ACQUIRE);
    out->generation = c->generation;
    out->started = c->started;
    out->stopped = __atomic_load_n(&c->stopped, __ATOMIC_RELAXED);
    out->connections = __atomic_load_n(&c->connections, __ATOMIC_RELAXED);
    out->requests = __atomic_load_n(&c->requests, __ATOMIC_RELAXED);
    out->bytes = __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
    out->duration_us = __atomic_load_n(&c->duration_us, __ATOMIC_RELAXED);
    for (i = 0; i < CSTATUS_RING; i++) {
        out->ring[i] = __atomic_load_n(&rec->ring[i], __ATOMIC_RELAXED);
    }
}

double cstatus_record_window(const cstatus_record_copy *rec, apr_time_t now,
                             int secs)
{
    return cstatus_ring_window(rec->ring, now, secs);
}

void cstatus_record_seconds(const cstatus_record_copy *rec, apr_time_t now,
                            int secs, double *out)
{
    cstatus_ring_seconds(rec->ring, now, secs, out);
}
