/* cstatus_record.h: mod_child_status's own per-child shared memory.
 *
 * Owns: the record layout (one per scoreboard slot), the parent's segment
 * creation, the owning child's lock-free writes and the readers' window
 * sums.  Does not own: the scoreboard or the MPM's statistics (read in
 * cstatus_collect.c), nor any output.
 *
 * Writer rule: a record is written only by the child process whose pid is
 * stamped in it, with relaxed atomics (threads of one child share it).
 * Readers only load; they never take a lock a worker takes.
 */
#ifndef CSTATUS_RECORD_H
#define CSTATUS_RECORD_H

#include "apr.h"
#include "apr_pools.h"
#include "apr_time.h"
#include "httpd.h"

#include "cstatus_ring.h"

#define CSTATUS_LINE 128

typedef struct cstatus_counters {
    volatile apr_uint32_t pid;      /* owner; 0 = never claimed */
    apr_int32_t generation;         /* MPM generation of the owner */
    apr_time_t claimed;             /* when the owner claimed the slot */
    apr_time_t started;             /* when the owner's child_init ran */
    volatile apr_time_t stopped;    /* when it began to stop (0: not yet) */
    volatile apr_uint64_t connections;
    volatile apr_uint64_t requests;
    volatile apr_uint64_t bytes;        /* response body bytes */
    volatile apr_uint64_t duration_us;  /* summed request times */
} cstatus_counters;

/* The counters share a line (one writing process); the ring follows on
 * its own lines.  Each ring word packs {second stamp:32, count:32} so a
 * bucket is reset and bumped by a single compare-and-swap. */
typedef struct cstatus_record {
    union { cstatus_counters c; char line[CSTATUS_LINE]; } head;
    volatile apr_uint64_t ring[CSTATUS_RING];
} cstatus_record;

/* A consistent copy of one record, as the collector uses it. */
typedef struct cstatus_record_copy {
    pid_t pid;
    int generation;
    apr_time_t started;
    apr_time_t stopped;
    apr_uint64_t connections;
    apr_uint64_t requests;
    apr_uint64_t bytes;
    apr_uint64_t duration_us;
    apr_uint64_t ring[CSTATUS_RING];
} cstatus_record_copy;

/* Parent, post_config: create or keep the segment (retained across
 * restarts, re-created only when the slot limit grew).  Returns
 * APR_SUCCESS or the apr_shm error; logs nothing. */
apr_status_t cstatus_record_setup(server_rec *s, int hard_limit, int generation);

/* Any process: the segment's record array and its length (0 before setup).
 * `since_generation` is the first MPM generation that had the module. */
cstatus_record *cstatus_record_base(int *slots, int *since_generation);

/* When the parent loaded the configuration of `generation` (its
 * post_config), or 0 if not known (before the module, or long ago).  A
 * graceful restart tells the old children to stop accepting just before
 * that, so it dates their stop when nothing better does.  Kept in the
 * parent's retained data: a child sees the generations loaded before it
 * was forked, which covers every older one. */
apr_time_t cstatus_record_generation_loaded(int generation);

/* Child, any thread: count one accepted connection / one finished request
 * for the calling process.  `c` is used only to find the slot the first
 * time.  Cheap; never blocks except for the one-time claim per process. */
void cstatus_record_connection(conn_rec *c);
void cstatus_record_request(request_rec *r);

/* Child: note when it started (child_init) and when it began to stop
 * (child_stopping), so fairness can tell how long it was accepting.  The
 * start is kept until the record is claimed; a stop before any
 * connection has no record to go to and is not noted. */
void cstatus_record_child_started(void);
void cstatus_record_child_stopping(void);

/* Reader: copy a record (no lock; counters are monotonic per pid). */
void cstatus_record_read(const cstatus_record *rec, cstatus_record_copy *out);

/* Reader: requests in the `secs` seconds ending at `now`, with the oldest,
 * partly covered second weighted by the part inside the window. */
double cstatus_record_window(const cstatus_record_copy *rec, apr_time_t now,
                             int secs);

/* Reader: the same second by second, newest first (cstatus_ring_seconds). */
void cstatus_record_seconds(const cstatus_record_copy *rec, apr_time_t now,
                            int secs, double *out);

#endif /* CSTATUS_RECORD_H */
