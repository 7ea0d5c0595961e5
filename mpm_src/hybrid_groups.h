/* hybrid_groups.h: the load of the server and of each listener group,
 * and the group policy: which group a new child goes to, which child may
 * retire, and that no group is ever left without a child.
 *
 * With one listener group (every strategy but reuseport) the whole server
 * is group 0.
 */
#ifndef HYBRID_GROUPS_H
#define HYBRID_GROUPS_H

#include "apr_pools.h"

#include "hybrid_spare.h"

typedef struct hyb_group_load {
    int children;             /* live, current, not quiescing */
    int idle;                 /* their idle threads */
    int free_threads;         /* idle or closing threads of children not
                                 retiring: what steering may offer */
} hyb_group_load;

typedef struct hyb_load {
    int groups;
    hyb_group_load *group;    /* [groups] */
    int idle_threads;         /* over the whole server */
    int active_children;
    int free_slots;
} hyb_load;

/* Parent, each generation. */
void hyb_load_init(hyb_load *load, apr_pool_t *p);

/* Counts children and idle threads from the slot table and the
 * scoreboard.  The scoreboard is written by children: it only feeds
 * counts, never pids or indices the parent acts on.  No side effects. */
void hyb_load_measure(hyb_load *load);

/* Tells status readers which children are now serving (the first time a
 * thread of theirs is seen ready). */
void hyb_load_note_ready(void);

/* The spare policy's input for this load. */
hyb_spare_in hyb_load_spare_in(const hyb_load *load, int spawn_rate,
                               int hold_off);

/* The group a new child helps most. */
int hyb_groups_neediest(const hyb_load *load);

/* Starts up to n children, each in the group that needs one most;
 * returns how many started. */
int hyb_groups_spawn(hyb_load *load, int n);

/* Starts a child in every group that has none. */
void hyb_groups_cover(hyb_load *load);

/* Retires one child of the group that can best spare one. */
void hyb_groups_retire_one(hyb_load *load);

/* At MaxRequestWorkers: moves a child from a group with a child's worth
 * of idle threads towards a starved one. */
void hyb_groups_rebalance(hyb_load *load);

#endif /* HYBRID_GROUPS_H */
