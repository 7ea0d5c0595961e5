/* hybrid_child.h: a child process, as its parts see it.
 *
 * One hyb_child per child process (the_child), made after fork; its
 * threads each have a hyb_thread.  Strategies use the pool, the group,
 * the wake pipe, the stop test and the two helpers for waits that only a
 * signal can end; the worker loop uses the rest.
 */
#ifndef HYBRID_CHILD_H
#define HYBRID_CHILD_H

#include <pthread.h>
#include <sys/types.h>

#include "apr_allocator.h"
#include "apr_pools.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"

#include "mod_mpm_hybrid.h"
#include "hybrid_types.h"

typedef enum {
    HYB_RUNNING = 0,
    HYB_STOP_GRACEFUL = 1,    /* finish in-flight connections, then exit */
    HYB_STOP_NOW = 2          /* drop everything */
} hyb_stop_mode;

struct hyb_thread {
    hyb_child *child;
    int num;                  /* scoreboard thread index */
    apr_thread_t *thd;
    apr_pool_t *ptrans;       /* a spare pool for the next connection */
    apr_allocator_t *allocator; /* of the pools this thread makes */
    volatile int active_fd;   /* connection being served, or -1 */
    int counted_in_room;      /* waiting, counted in the steering room */
    apr_time_t serving_since; /* its response began then, or 0 (own) */
    volatile apr_time_t out_since; /* left the watch then, or 0 (read by
                                      the child's other threads) */
    int served;               /* a response timed since (hybrid_poller.c) */
};

struct hyb_child {
    int slot;
    int group;                /* listener group (reuseport), else 0 */
    int generation;
    pid_t parent_pid;         /* 0 with -X */
    apr_pool_t *pool;         /* pchild */
    int threaded;             /* ThreadsPerChild > 1 */
    int wake_fd[2];           /* readable once the child stops accepting */
    volatile apr_uint32_t stop; /* hyb_stop_mode, set once upwards */
    apr_thread_mutex_t *accept_turn; /* gated listeners: one thread per
                                        child polls them */
    hyb_thread *threads;
    volatile apr_uint32_t live_threads;
    volatile apr_uint32_t idle_threads;
    apr_time_t last_short_notice;
    hybrid_child_counters *counters; /* NULL if no stats segment */
    void *accept_state;       /* the strategy's own per-child data */
    pthread_t waiter;         /* worker blocked in an interruptible wait */
    volatile int waiting;     /* waiter is valid */
    int sick;                 /* a worker hit a persistent accept error */
    int stopping_hooks_run;   /* child_stopping hooks already called */
};

/* In a child process only: the child.  NULL in the parent. */
extern hyb_child *hyb_the_child;

/* Parent, right after fork: becomes the child and never returns. */
void hyb_child_main(int slot, int group) __attribute__((noreturn));

/* Parent, around fork: the child's signals stay blocked until it has its
 * own handlers. */
void hyb_child_block_signals(int how);

int hyb_child_stopping(const hyb_child *ch);

/* Stops accepting and wakes every wait of the child; a second call can
 * only make the stop stronger.  Async-signal-safe. */
void hyb_child_request_stop(hyb_child *ch, hyb_stop_mode mode);

/* A wait that has slept a whole slice checks that the parent still
 * exists, and stops the child if not (in case PR_SET_PDEATHSIG was
 * lost). */
void hyb_child_check_parent(hyb_child *ch);

/* A worker about to block in a wait only a signal can interrupt (a file
 * lock) says so, for the duration, so that a stop can interrupt it. */
void hyb_child_mark_interruptible(hyb_child *ch, int on);

#endif /* HYBRID_CHILD_H */
