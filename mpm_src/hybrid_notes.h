/* hybrid_notes.h: the parent's wake-up pipes.
 *
 * The parent sleeps in poll() on two pipes; its SIGCHLD handler and its
 * children write short notes to them, so it wakes when a child exits,
 * runs out of idle threads, or has used up its connections.  "Out of idle
 * threads" has a pipe of its own, which the parent may stop listening to
 * for a moment; the others always wake it at once.  A note is 4 bytes: a
 * type, then the sender's slot in 24 bits (the child's word: only ever an
 * index into the parent's own table).
 */
#ifndef HYBRID_NOTES_H
#define HYBRID_NOTES_H

#include "apr_pools.h"
#include "apr_time.h"

#define HYB_NOTE_CHILD_EXIT 'C'   /* SIGCHLD */
#define HYB_NOTE_SHORT      'S'   /* a child has no idle thread left */
#define HYB_NOTE_RETIRING   'R'   /* a child used up its connections */

/* Parent, open_logs: the pipes (made once, kept across generations). */
apr_status_t hyb_notes_open(void);

/* Parent, each generation: SIGCHLD writes a note (undone when pconf
 * is cleared, before this DSO is unloaded). */
void hyb_notes_install_sigchld(apr_pool_t *pconf);

/* Parent: sleeps until timeout, a signal or a note; for the first `deaf`
 * of it "short of idle threads" notes do not wake it (the others and
 * signals still do), and what they said is read when it wakes.  Calls
 * on_retiring for each retiring note; returns 1 if a child said it was
 * short of idle threads (or retiring). */
int hyb_notes_wait(apr_interval_time_t timeout, apr_interval_time_t deaf,
                   void (*on_retiring)(int));

/* Child: the read ends are the parent's; and a note from this child. */
void hyb_notes_child_init(void);
void hyb_notes_send(int slot, char type);

#endif /* HYBRID_NOTES_H */
