/* hybrid_retire.h: MaxConnectionsPerChild, both ends.
 *
 * A child counts its connections against the budget and tells the parent
 * when it is (nearly) used up; the parent answers by starting a
 * replacement and telling the child to go, so that a listener group is
 * never left without a child to take its queue.  (hybrid_retire.c says
 * how.)
 */
#ifndef HYBRID_RETIRE_H
#define HYBRID_RETIRE_H

#include "hybrid_groups.h"
#include "hybrid_types.h"

/* Parent, open_logs: the children-per-group counts children read (made
 * once, kept across generations). */
void hyb_retire_open(int slots);

/* Parent: a child said it is retiring (the slot is its word). */
void hyb_retire_noted(int slot);

/* Parent, each pass of the loop: answers the children that said so. */
void hyb_retire_answer(hyb_load *load);

/* Parent, after measuring: publishes how many children each group has. */
void hyb_retire_publish(const hyb_load *load);

/* Child main thread, after child_init hooks: this child's budget. */
void hyb_retire_child_init(hyb_child *ch);

/* Worker: one more connection spent. */
void hyb_retire_spend(hyb_child *ch);

/* Any thread of the child: is the budget used up? */
int hyb_retire_spent(const hyb_child *ch);

#endif /* HYBRID_RETIRE_H */
