/* hybrid_counters.h: the per-child statistics segment (layout in the
 * public mod_mpm_hybrid.h).
 *
 * The parent creates it once and writes each slot's identity; a child
 * gets its slot's counters and adds to them.  Nothing the parent decides
 * depends on what children write here.
 */
#ifndef HYBRID_COUNTERS_H
#define HYBRID_COUNTERS_H

#include "apr_time.h"
#include "apr_thread_proc.h"
#include "httpd.h"

#include "mod_mpm_hybrid.h"

/* Parent, open_logs: create the segment on the first start only (a
 * failure is logged; the server runs, the status pages show less). */
void hyb_stats_create(server_rec *s, int slots);

/* Parent, each generation: strategy, groups, threads, mutex in force. */
void hyb_stats_publish_generation(int generation);

/* Parent: a child was forked into `slot`. */
void hyb_stats_note_spawn(int slot, pid_t pid, int generation, int group,
                          apr_uint32_t restarts, apr_time_t started);
void hyb_stats_note_state(int slot, hybrid_slot_state_e state);
void hyb_stats_note_exit(int slot, apr_exit_why_e why, int status);

/* Child: its own slot's counters, NULL without a segment. */
hybrid_child_counters *hyb_stats_counters(int slot);

/* Any process: flags the accept mutex as broken; returns 1 for the first
 * caller of the generation (who logs it), 0 after that. */
int hyb_stats_mutex_broken_first(void);

/* register_hooks: the optional function other modules read it with. */
void hyb_stats_register(void);

/* Adds to a counter of the child's slot (relaxed: counters, not locks). */
#define HYB_COUNT(ch, field, n) do {                                   \
        if ((ch)->counters)                                            \
            __atomic_fetch_add(&(ch)->counters->field, (n),            \
                               __ATOMIC_RELAXED);                      \
    } while (0)

#endif /* HYBRID_COUNTERS_H */
