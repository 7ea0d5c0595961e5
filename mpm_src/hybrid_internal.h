/* hybrid_internal.h: what the parts of mpm_hybrid share.
 *
 * mpm_hybrid is one translation unit: mod_mpm_hybrid.c includes every
 * hybrid_*.c and accept_*.c file in dependency order, so every symbol but
 * the module struct is static and nothing leaks into httpd's namespace
 * (the MPM DSO is unloaded and reloaded on every restart; a stray global
 * could be interposed by another module).  This header declares the types
 * and the cross-file functions; each .c file owns one concern.
 *
 *   hybrid_config.c    directives, defaults, check_config clamping
 *   hybrid_counters.c  per-child statistics segment (parent + child side)
 *   hybrid_spare.c     spare-thread policy, a pure function
 *   hybrid_proc.c      mechanism: slot table, spawn, signal, reap
 *   hybrid_parent.c    policy: the parent loop, restart and stop flows
 *   hybrid_child.c     a child's life: init, threads, signals, exit
 *   hybrid_worker.c    one worker thread: take a connection, serve it
 *   hybrid_accept.c    the accept-strategy registry and shared helpers
 *   hybrid_drain.c     a closing listener is drained, not reset
 *   accept_*.c         one accept strategy each
 *   reuseport_steer.c  which listener group gets a new connection
 */
#ifndef HYBRID_INTERNAL_H
#define HYBRID_INTERNAL_H

#include "apr.h"
#include "apr_portable.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"
#include "apr_proc_mutex.h"
#include "apr_shm.h"
#include "apr_poll.h"
#include "apr_signal.h"
#include "apr_atomic.h"

#include "httpd.h"
#include "http_main.h"
#include "http_log.h"
#include "http_config.h"
#include "http_core.h"
#include "http_connection.h"
#include "ap_mpm.h"
#include "ap_listen.h"
#include "mpm_common.h"
#include "scoreboard.h"
#include "unixd.h"
#include "util_mutex.h"

#include "mod_mpm_hybrid.h"
#include "hybrid_spare.h"

#include <poll.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/wait.h>
#include <semaphore.h>

/* Compile-time caps, as httpd's MAX_SERVER_LIMIT / MAX_THREAD_LIMIT. */
#ifndef HYBRID_MAX_SERVER_LIMIT
#define HYBRID_MAX_SERVER_LIMIT 20000
#endif
#ifndef HYBRID_MAX_THREAD_LIMIT
#define HYBRID_MAX_THREAD_LIMIT 20000
#endif
#ifndef HYBRID_DEFAULT_ACCEPT
#define HYBRID_DEFAULT_ACCEPT "exclusive"
#endif

#define HYB_TICK             apr_time_from_sec(1)
#define HYB_EARLY_TICK       apr_time_from_msec(100)
#define HYB_WAIT_SLICE_MS    1000    /* longest a child sleeps unchecked */

/* Sent by the kernel to a child whose parent died (PR_SET_PDEATHSIG). */
#define HYB_SIG_PARENT_DIED  SIGUSR2

/* Notes on the parent's wake-up pipe: 4 bytes, a type then a 24-bit slot. */
#define HYB_NOTE_SIZE        4
#define HYB_NOTE_CHILD_EXIT  'C'     /* SIGCHLD */
#define HYB_NOTE_SHORT       'S'     /* a child has no idle thread left */
#define HYB_NOTE_RETIRING    'R'     /* a child used up its connections */

/* Log tags for this module's own messages. */
#define HYBLOGNO(n) "HYB" #n ": "

/* ------------------------------------------------------------------ */
/* Configuration (hybrid_config.c)                                     */

typedef struct hyb_strategy hyb_strategy;

typedef struct hyb_config {
    int start_servers;
    int server_limit;
    int thread_limit;
    int threads_per_child;
    int max_workers;          /* MaxRequestWorkers, after clamping */
    int min_spare_threads;
    int max_spare_threads;
    int min_spare_servers;    /* prefork meaning, ThreadsPerChild 1 only */
    int max_spare_servers;
    int reuseport_groups;     /* 0 = auto */
    const hyb_strategy *strategy;
    /* which values came from the config file (vs defaults) */
    unsigned set_start:1, set_server_limit:1, set_thread_limit:1,
             set_tpc:1, set_max_workers:1, set_min_spare_threads:1,
             set_max_spare_threads:1, set_spare_servers:1, set_strategy:1;
    /* derived in check_config */
    int daemons_limit;        /* max_workers / threads_per_child */
    int spare_min;            /* idle-thread targets the parent uses */
    int spare_max;
} hyb_config;

static hyb_config conf;

static const command_rec hybrid_cmds[];
static void hyb_config_defaults(void);
static int hyb_check_config(apr_pool_t *p, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s);

/* ------------------------------------------------------------------ */
/* Parent-private state that survives the DSO reload (retained data).  */

typedef struct hyb_slot {
    pid_t pid;               /* 0: free */
    int generation;
    int group;
    int quiescing;           /* told to finish and exit */
    int retire_wanted;       /* used up MaxConnectionsPerChild */
    int retire_notes;        /* times it said so (every 16 connections) */
    int ready_noted;         /* READY published to the statistics */
    apr_time_t started;
    apr_uint32_t spawned;    /* children ever started in this slot */
} hyb_slot;

typedef struct hyb_retained {
    ap_unixd_mpm_retained_data *mpm;
    int first_server_limit;   /* ServerLimit/ThreadLimit cannot change */
    int first_thread_limit;   /* without a full stop (scoreboard size) */
    hyb_slot *slots;          /* first_server_limit entries */
    int max_daemon_used;      /* highest slot ever used + 1 */
    int spawn_rate;
    int hold_off_spawn_ticks; /* no exponential ramp right after restart */
    int max_workers_logged;   /* each said once per server lifetime */
    int slots_full_logged;
    int fork_failures;        /* consecutive; drives back-off */
    apr_time_t next_fork_try;
    int notify_fd[2];         /* children/SIGCHLD -> parent wake-up pipe */
    apr_shm_t *stats_shm;
    hybrid_stats_header *stats;
    int one_process;
    int startup_pass;         /* module_loads == 1 */
    int old_generation_pending; /* graceful restart: tell the old children
                                 * once the new config is in place */
} hyb_retained;

static hyb_retained *retained;
static apr_pool_t *pconf;     /* this generation's config pool */

/* ------------------------------------------------------------------ */
/* Accept strategies (hybrid_accept.c, accept_*.c)                     */

typedef enum {
    HYB_ACCEPT_OK,        /* *csd holds a new connection */
    HYB_ACCEPT_RETRY,     /* nothing this time; loop */
    HYB_ACCEPT_STOP,      /* the child is stopping */
    HYB_ACCEPT_SICK       /* resource shortage persisted; child should go */
} hyb_accept_rc;

typedef struct hyb_child hyb_child;

/* One way of taking connections.  Ops in call order:
 *   probe       parent, check_config: NULL if usable here, else why not
 *   open        parent, open_logs, every generation, before any fork:
 *               create what children share (lock, sockets)
 *   child_init  child main thread after fork, before the privilege drop
 *   accept_one  the worker thread holding the child's accept turn; lock,
 *               wait, accept and errno classification all stay inside
 *   child_exit  child main thread after all workers are done (optional)
 *   mutex_name  the lock mechanism in use, for logs and status (optional)
 *   configure   parent, check_config: adjust core settings the strategy
 *               depends on before listeners are opened (optional)
 *   groups      how many listener groups children are spread over
 *               (optional; 1 if absent)
 *   reaped      parent, after a child of this generation died from a
 *               signal: repair what it may have left locked (optional)
 *   stopping    parent, the server is stopping: close what open keeps
 *               across generations, so new connections are refused
 *               (optional)
 *   steer       parent, several times a second: the idle threads and
 *               children of each group, to send new connections where
 *               they will be served soonest (optional)
 */
struct hyb_strategy {
    const char *name;
    hybrid_accept_id_e id;
    const char *(*probe)(apr_pool_t *p);
    apr_status_t (*open)(apr_pool_t *pconf, server_rec *s);
    apr_status_t (*child_init)(hyb_child *ch);
    hyb_accept_rc (*accept_one)(hyb_child *ch, apr_socket_t **csd,
                                apr_pool_t *ptrans);
    void (*child_exit)(hyb_child *ch);
    const char *(*mutex_name)(void);
    const char *(*configure)(cmd_parms *cmd);
    int (*groups)(void);
    void (*reaped)(pid_t pid);
    void (*stopping)(void);
    void (*steer)(const int *idle, const int *children, int groups);
};

static int hyb_groups(void);

static const hyb_strategy *hyb_strategy_find(const char *name);
static const char *hyb_strategy_names(apr_pool_t *p);

/* The listeners a child waits on, plus its wake-up fd (last entry). */
typedef struct hyb_pollset {
    struct pollfd *fds;
    ap_listen_rec **lrs;      /* lrs[i] for fds[i], i < nlisten */
    int nlisten;
    int next;                 /* round-robin start among ready listeners */
} hyb_pollset;

static apr_status_t hyb_pollset_build(hyb_child *ch, ap_listen_rec *lrs,
                                      hyb_pollset *ps);
static hyb_accept_rc hyb_wait_and_accept(hyb_child *ch, hyb_pollset *ps,
                                         apr_socket_t **csd,
                                         apr_pool_t *ptrans);
static hyb_accept_rc hyb_accept_on(hyb_child *ch, ap_listen_rec *lr,
                                   apr_socket_t **csd, apr_pool_t *ptrans);
static void hyb_listeners_nonblocking(ap_listen_rec *lrs);

/* Waiting on listeners with epoll and EPOLLEXCLUSIVE (hybrid_accept.c). */
typedef struct hyb_excl hyb_excl;
static int hyb_excl_supported(void);
static apr_status_t hyb_excl_init(hyb_child *ch, ap_listen_rec *lrs,
                                  hyb_excl **out);
static hyb_accept_rc hyb_excl_wait_and_accept(hyb_child *ch, hyb_excl *ex,
                                              apr_socket_t **csd,
                                              apr_pool_t *ptrans);
static void hyb_excl_close(hyb_excl *ex);

/* ------------------------------------------------------------------ */
/* A child process (hybrid_child.c, hybrid_worker.c)                   */

typedef enum {
    HYB_RUNNING = 0,
    HYB_STOP_GRACEFUL = 1,    /* finish in-flight connections, then exit */
    HYB_STOP_NOW = 2          /* drop everything */
} hyb_stop_mode;

typedef struct hyb_thread {
    hyb_child *child;
    int num;                  /* scoreboard thread index */
    apr_thread_t *thd;
    apr_pool_t *ptrans;       /* made by the main thread before start */
    volatile int active_fd;   /* connection being served, or -1 */
    volatile int done;
    int counted_in_room;      /* waiting, and counted in hyb_group_room */
} hyb_thread;

struct hyb_child {
    int slot;
    int group;
    int generation;
    pid_t parent_pid;
    apr_pool_t *pool;         /* pchild */
    int threaded;             /* ThreadsPerChild > 1 */
    int wake_fd[2];           /* readable once the child stops accepting */
    volatile apr_uint32_t stop; /* hyb_stop_mode, set once upwards */
    volatile apr_int32_t conns_left; /* MaxConnectionsPerChild budget */
    int limit_conns;
    apr_int32_t notice_at;    /* conns_left at which the parent is told */
    apr_thread_mutex_t *accept_turn; /* one thread per child in accept */
    hyb_thread *threads;
    volatile apr_uint32_t live_threads;
    volatile apr_uint32_t idle_threads;
    apr_time_t last_short_notice;
    hybrid_child_counters *counters; /* NULL if no stats segment */
    void *accept_state;       /* the strategy's own per-child data */
    int *listen_fds;          /* listener fds this child holds */
    ap_listen_rec **listen_lrs; /* their records, to drain them */
    apr_uint32_t *listen_released; /* [i]: listen_fds[i] let go of */
    int nlisten_fds;
    int placeholder_fd;       /* /dev/null, dup2()ed over them on stop */
    pthread_t waiter;         /* worker blocked in an interruptible wait */
    volatile int waiting;     /* waiter is valid */
    int sick;                 /* a worker hit a persistent accept error */
    int stopping_hooks_run;   /* child_stopping hooks already called */
};

static hyb_child *the_child;  /* in a child process only */

/* Free threads per listener group, shared with the kernel's steering
 * program (reuseport_steer.c); NULL when nothing steers. */
static apr_int32_t *hyb_group_room;

static void hyb_child_main(int slot, int group) __attribute__((noreturn));
static void block_child_signals(int how);
static void hyb_child_request_stop(hyb_child *ch, hyb_stop_mode mode);
static void hyb_child_orphaned(hyb_child *ch);
static void hyb_child_mark_interruptible(hyb_child *ch, int on);
static int hyb_child_stopping(const hyb_child *ch);
static void *hyb_worker_run(hyb_thread *t);
static void *APR_THREAD_FUNC hyb_worker_thread(apr_thread_t *thd, void *data);
static apr_pool_t *create_ptrans(hyb_child *ch);
static void hyb_notify_parent(hyb_child *ch, char type);

/* ------------------------------------------------------------------ */
/* Parent mechanism (hybrid_proc.c) and policy (hybrid_parent.c)       */

static int hyb_spawn(int slot, int group);
static int hyb_find_slot(pid_t pid);
static void hyb_signal_child(int slot, int sig);
static void hyb_note_exit(int slot, apr_exit_why_e why, int status);
static void hyb_reclaim_all(void);
static int hyb_live_children(int include_quiescing);
static int hyb_run(apr_pool_t *pconf, apr_pool_t *plog, server_rec *s);

/* Spare policy: hybrid_spare.h */


/* ------------------------------------------------------------------ */
/* Statistics segment (hybrid_counters.c)                              */

static apr_status_t hyb_stats_create(server_rec *s);
static void hyb_stats_publish_generation(void);
static void hyb_stats_note_spawn(int slot, pid_t pid);
static void hyb_stats_note_exit(int slot, apr_exit_why_e why, int status);
static void hyb_stats_note_state(int slot, hybrid_slot_state_e state);
static hybrid_child_counters *hyb_stats_counters(int slot);
static void hyb_register_optional_fns(void);
static void hyb_group_load_create(void);
static void hyb_group_load_publish(int group, int children);
static int hyb_group_has_others(int group);

#define HYB_COUNT(ch, field, n) do {                                   \
        if ((ch)->counters)                                            \
            __atomic_fetch_add(&(ch)->counters->field, (n),            \
                               __ATOMIC_RELAXED);                      \
    } while (0)

#endif /* HYBRID_INTERNAL_H */
