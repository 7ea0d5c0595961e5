/* mod_mpm_hybrid.h: the public face of mpm_hybrid for other modules.
 *
 * Owns: the layout of the per-child statistics segment and the optional
 * function that hands it out.  Does not own: anything a module needs to
 * link against; mod_child_status (and anyone else) fetches the function
 * with APR_RETRIEVE_OPTIONAL_FN, so either module loads without the other.
 *
 * The segment is one header followed by `slots` records of `record_size`
 * bytes (ServerLimit records, indexed by scoreboard slot).  Readers must
 * check magic and version, use record_size as the stride, copy a record and
 * retry while its `seq` is odd or changed under them (identity is written by
 * the parent with a seqlock).
 *
 * Counters belong to the slot, not to one child: they only ever grow, across
 * child exits, graceful and hard restarts, so their sum over all slots is a
 * server-wide total that rate() can be taken over.  What one child did is
 * the slot's counters minus `base`, the value they had when that child was
 * started (copied by the parent into the child's identity).
 */
#ifndef MOD_MPM_HYBRID_H
#define MOD_MPM_HYBRID_H

#include "apr.h"
#include "apr_optional.h"
#include "apr_time.h"

#define HYBRID_STATS_MAGIC   0x48594231u  /* "HYB1" */
#define HYBRID_STATS_VERSION 2u

/* Accept strategies, as ids in the records (names: "mutex", ...). */
typedef enum {
    HYBRID_ACCEPT_NONE = 0,
    HYBRID_ACCEPT_MUTEX = 1,       /* serialized by the mpm-accept mutex */
    HYBRID_ACCEPT_PREEMPTIVE = 2,  /* idle children race, kernel picks */
    HYBRID_ACCEPT_REUSEPORT = 3,   /* one SO_REUSEPORT group per child */
    HYBRID_ACCEPT_EXCLUSIVE = 4    /* epoll with EPOLLEXCLUSIVE */
} hybrid_accept_id_e;

/* Life of a slot as the parent sees it. */
typedef enum {
    HYBRID_SLOT_EMPTY = 0,     /* never used */
    HYBRID_SLOT_STARTING = 1,  /* forked, threads not all up yet */
    HYBRID_SLOT_READY = 2,     /* accepting */
    HYBRID_SLOT_GRACEFUL = 3,  /* told to finish in-flight work and exit */
    HYBRID_SLOT_DEAD = 4       /* reaped; last_exit_* tell how */
} hybrid_slot_state_e;

/* How the last child in the slot ended (last_exit_why). */
typedef enum {
    HYBRID_EXIT_NONE = 0,      /* no child has exited from this slot yet */
    HYBRID_EXIT_CODE = 1,      /* exited; last_exit_status is the code */
    HYBRID_EXIT_SIGNAL = 2     /* killed; last_exit_status is the signal */
} hybrid_exit_why_e;

/* Counters of a slot.  In a record they are written only by the slot's
 * child, with relaxed atomic adds; as `base` they are a plain copy. */
typedef struct hybrid_child_counters {
    volatile apr_uint64_t accepts;         /* connections accepted */
    volatile apr_uint64_t accept_waits;    /* times the accept lock was taken */
    volatile apr_uint64_t accept_wait_us;  /* time spent waiting for it */
    volatile apr_uint64_t accept_errors;   /* accept() failures */
    volatile apr_uint64_t idle_wakeups;    /* woken for a connection another
                                              waiter took (lost the race) */
} hybrid_child_counters;

/* Written only by the parent, under seq (odd while a write is under way). */
typedef struct hybrid_child_identity {
    volatile apr_uint32_t seq;
    apr_int32_t  slot;
    apr_int32_t  pid;             /* 0 when the slot is empty or dead */
    apr_int32_t  generation;
    apr_int32_t  strategy;        /* hybrid_accept_id_e */
    apr_int32_t  group;           /* reuseport group, else 0 */
    apr_int32_t  state;           /* hybrid_slot_state_e */
    apr_uint32_t restarts;        /* children started in this slot - 1 */
    apr_int32_t  last_exit_why;   /* hybrid_exit_why_e */
    apr_int32_t  last_exit_status;
    apr_int32_t  threads;         /* ThreadsPerChild of this child */
    apr_int32_t  reserved;
    apr_time_t   start_time;      /* when this child was forked */
    apr_time_t   ready_time;      /* all its threads up (0: not yet) */
    apr_time_t   stop_time;       /* told to stop accepting (0: not yet) */
    hybrid_child_counters base;   /* the slot's counters at start_time */
} hybrid_child_identity;

/* Identity and counters sit on separate cache lines (128 bytes apart) so
 * the parent's writes never bounce the line the child's threads update. */
typedef struct hybrid_child_record {
    union { hybrid_child_identity id; char line[128]; } who;
    union { hybrid_child_counters c;  char line[128]; } load;
} hybrid_child_record;

/* Each part fits its cache line (a compile error otherwise). */
typedef char hybrid_identity_fits_[sizeof(hybrid_child_identity) <= 128
                                   ? 1 : -1];

typedef struct hybrid_stats_header {
    apr_uint32_t magic;           /* HYBRID_STATS_MAGIC */
    apr_uint32_t version;         /* HYBRID_STATS_VERSION */
    apr_uint32_t header_size;     /* offset of record 0 */
    apr_uint32_t record_size;     /* stride between records */
    apr_uint32_t slots;           /* number of records (ServerLimit) */
    apr_int32_t  generation;      /* current MPM generation */
    apr_int32_t  strategy;        /* hybrid_accept_id_e in force */
    apr_int32_t  groups;          /* reuseport groups, else 1 */
    apr_int32_t  threads_per_child;
    volatile apr_int32_t mutex_broken; /* a child found the accept mutex
                                          gone and fell back (0/1) */
    char         strategy_name[16];
    char         mutex_name[32];  /* accept mutex mechanism, "" if none */
} hybrid_stats_header;

/* Returns the statistics segment (header; records follow at header_size),
 * or NULL before the parent has created it.  Safe to call from any process
 * of the server, any thread; takes no lock. */
APR_DECLARE_OPTIONAL_FN(const hybrid_stats_header *, hybrid_get_stats, (void));

static APR_INLINE const hybrid_child_record *
hybrid_stats_record(const hybrid_stats_header *h, int slot)
{
    return (const hybrid_child_record *)
        ((const char *)h + h->header_size + (apr_size_t)slot * h->record_size);
}

#endif /* MOD_MPM_HYBRID_H */
