/* cstatus_model.h: the plain snapshot mod_child_status renders.
 *
 * Owns: the model (one snapshot of every child, taken in
 * cstatus_collect.c) and the renderer descriptor each output format
 * exports.  Does not own: shared memory (cstatus_record.h, the MPM's
 * header) or escaping (each renderer escapes what it prints).
 *
 * A field the server cannot provide has its has_* flag clear; renderers
 * print it as null (JSON) or leave it out, and never make a value up.
 */
#ifndef CSTATUS_MODEL_H
#define CSTATUS_MODEL_H

#include "apr.h"
#include "apr_time.h"
#include "httpd.h"

#include "cstatus_fair.h"

/* Request-rate windows, in seconds; the fairness window is the middle. */
#define CSTATUS_NWINDOWS 3
#define CSTATUS_FAIR_WINDOW 1
extern const int cstatus_windows[CSTATUS_NWINDOWS];

/* The fairness populations (cstatus_fair.h): the running generation, and
 * every older generation together. */
#define CSTATUS_POP_CURRENT 0
#define CSTATUS_POP_PREVIOUS 1

/* The rule in one sentence, as every format that explains itself says it. */
extern const char cstatus_fair_rule[];

typedef enum {
    CSTATUS_STARTING = 0,
    CSTATUS_READY,
    CSTATUS_GRACEFUL,
    CSTATUS_DEAD
} cstatus_state_e;

/* An async MPM's connections of one child (process_score). */
typedef struct cstatus_async {
    apr_uint64_t connections;       /* all it holds */
    apr_uint64_t keep_alive;        /* idle between requests */
    apr_uint64_t lingering_close;
    apr_uint64_t write_completion;
    apr_uint64_t suspended;         /* by a module */
    int has_wait_io;                /* httpd 2.4.63 and later */
    apr_uint64_t wait_io;
} cstatus_async;

/* Counters that only grow, across child exits and graceful restarts (a
 * hard restart zeroes the scoreboard's), of one slot or summed over all,
 * so a rate over them is right however short-lived the children are. */
typedef struct cstatus_counts {
    int has_scoreboard;         /* ExtendedStatus keeps them (mod_status on) */
    apr_uint64_t requests;      /* worker_score access_count */
    apr_uint64_t bytes;         /* worker_score bytes_served */
    apr_uint64_t duration_us;   /* worker_score duration */
    int has_hybrid;             /* mpm_hybrid's slot counters */
    apr_uint64_t connections;
    apr_uint64_t lost_wakeups;
    apr_uint64_t accept_errors;
    apr_uint64_t accept_waits;
    apr_uint64_t accept_wait_us;
    apr_uint64_t child_restarts;    /* children started after a slot's first */
} cstatus_counts;

typedef struct cstatus_child {
    int slot;
    pid_t pid;
    int generation;
    cstatus_state_e state;
    int threads_busy;           /* serving a connection */
    int threads_idle;           /* waiting for one (accepting children only) */

    int has_counts;             /* our record belongs to this pid */
    apr_uint64_t connections;
    apr_uint64_t requests;
    apr_uint64_t bytes;
    apr_uint64_t duration_us;
    double rate[CSTATUS_NWINDOWS];  /* requests per second */
    int has_mean;               /* has_counts and requests > 0 */
    double mean_ms;             /* mean request time */
    double recent;              /* requests in the fairness window */

    /* Fairness (cstatus_fair.h): its inputs and what the rule made of it;
     * fair.population < 0 when it is in no population. */
    cstatus_fair_child fair;
    int has_share;              /* judged: fair.share is its share */

    /* From mpm_hybrid's statistics, when it runs and the pid matches. */
    int has_hybrid;
    const char *strategy;       /* NULL if the id is unknown */
    int group;
    apr_uint64_t accepts;
    apr_uint64_t accept_waits;
    apr_uint64_t accept_wait_us;
    apr_uint64_t lost_wakeups;  /* woken for a connection another took */
    apr_uint64_t accept_errors;
    int has_slot_history;       /* restarts/last exit of the slot */
    apr_uint32_t restarts;
    int has_exit;
    const char *exit_why;       /* "code" or "signal" */
    int exit_status;

    /* The slot's counters (not this child's alone). */
    cstatus_counts slot_counts;

    /* From the scoreboard, with an MPM that parks connections without a
     * thread (AP_MPMQ_IS_ASYNC), as its listener last counted them. */
    int has_async;
    cstatus_async async;
} cstatus_child;

/* Sums over the children shown (live, and dead ones still shown). */
typedef struct cstatus_totals {
    int children;
    int threads_busy;
    int threads_idle;
    apr_uint64_t connections;
    apr_uint64_t requests;
    apr_uint64_t bytes;
    apr_uint64_t duration_us;
    double rate[CSTATUS_NWINDOWS];
    int has_mean;
    double mean_ms;
    apr_uint64_t lost_wakeups;      /* has_hybrid children */
    apr_uint64_t accept_errors;
    int has_async;
    cstatus_async async;
} cstatus_totals;

typedef cstatus_fair_result cstatus_fairness;

typedef struct cstatus_model {
    apr_time_t now;
    apr_time_t restart_time;
    const char *server_name;
    const char *server_version;
    const char *mpm;
    int generation;             /* running MPM generation */
    int server_limit;
    int thread_limit;
    const char *accept_strategy;  /* NULL unless the MPM says */
    const char *accept_mutex;     /* NULL unless the MPM says; "" = none */
    int has_hybrid;
    int is_async;                 /* AP_MPMQ_IS_ASYNC */
    int nchildren;
    cstatus_child *children;      /* slot order */
    cstatus_totals totals;
    cstatus_counts server;        /* every slot */
    cstatus_fairness fairness;    /* the current generation */
    int has_previous;             /* an older generation was accepting */
    cstatus_fairness previous;    /* older generations, judged apart */
} cstatus_model;

/* How a request asked to see the model. */
typedef struct cstatus_view {
    int refresh;                /* seconds, 0 = none */
} cstatus_view;

typedef struct cstatus_renderer {
    const char *name;
    const char *content_type;
    void (*render)(request_rec *r, const cstatus_model *m,
                   const cstatus_view *v);
} cstatus_renderer;

extern const cstatus_renderer cstatus_html;
extern const cstatus_renderer cstatus_json;
extern const cstatus_renderer cstatus_prom;
extern const cstatus_renderer cstatus_auto;

/* mod_status hook parts: the HTML section and the ?auto lines. */
void cstatus_html_section(request_rec *r, const cstatus_model *m,
                          int with_table);
void cstatus_auto_lines(request_rec *r, const cstatus_model *m);

/* mpm_hybrid's hybrid_get_stats (mod_mpm_hybrid.h), fetched per
 * generation; NULL when that MPM is not loaded. */
struct hybrid_stats_header;
typedef const struct hybrid_stats_header *(*cstatus_hybrid_fn)(void);

/* Snapshot the scoreboard, our records and (if given) the MPM's stats into
 * a model allocated from `p`.  Takes no lock; returns the model. */
cstatus_model *cstatus_collect(apr_pool_t *p, cstatus_hybrid_fn hybrid);

/* The state's lower-case name ("starting", "ready", "graceful", "dead"). */
const char *cstatus_state_name(cstatus_state_e state);


#endif /* CSTATUS_MODEL_H */
