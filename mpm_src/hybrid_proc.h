/* hybrid_proc.h: the parent's children, as mechanism.
 *
 * The slot table is the parent's own (retained data, never shared with a
 * child), so pids and groups the parent acts on never come from memory a
 * child can write.  What to do when is the parent loop's business
 * (hybrid_parent.c); this only does it.
 */
#ifndef HYBRID_PROC_H
#define HYBRID_PROC_H

#include <sys/types.h>

#include "apr_thread_proc.h"
#include "apr_time.h"

typedef struct hyb_slot {
    pid_t pid;               /* 0: free */
    int generation;
    int group;
    int quiescing;           /* told to finish and exit */
    int retire_wanted;       /* used up MaxConnectionsPerChild (written
                                by hybrid_retire.c) */
    int retire_notes;        /* times it said so */
    int ready_noted;         /* READY published to the statistics */
    apr_time_t started;
    apr_uint32_t spawned;    /* children ever started in this slot */
} hyb_slot;

/* [hyb_proc_slots()] entries, the first ServerLimit of this generation
 * usable. */
extern hyb_slot *hyb_slots;

/* check_config: the table, sized by the first start's ServerLimit. */
void hyb_proc_init(int first_server_limit);
int hyb_proc_slots(void);

/* Highest slot ever used + 1 (AP_MPMQ_MAX_DAEMON_USED). */
int hyb_proc_max_used(void);

/* Forks a child into a free slot.  Returns 0, or -1 if fork failed (then
 * forks back off: hyb_proc_may_fork says when to try again). */
int hyb_proc_spawn(int slot, int group);
int hyb_proc_may_fork(void);
int hyb_proc_fork_failing(void);

int hyb_proc_free_slot(void);      /* -1 if none under ServerLimit */
int hyb_proc_find(pid_t pid);      /* -1 if not ours */
int hyb_proc_live(int include_quiescing);
void hyb_proc_signal(int slot, int sig);

/* Tells the child in `slot` to finish what it serves and exit. */
void hyb_proc_retire(int slot);

/* Records a reaped child: scoreboard, hooks, statistics, slot table. */
void hyb_proc_note_exit(int slot, apr_exit_why_e why, int status);

/* Hard stop of every child, escalating to SIGKILL. */
void hyb_proc_reclaim_all(void);

#endif /* HYBRID_PROC_H */
