/* hybrid_types.h: names of the types that several parts pass around, so a
 * header can take a pointer to one without pulling in its owner. */
#ifndef HYBRID_TYPES_H
#define HYBRID_TYPES_H

typedef struct hyb_strategy hyb_strategy;   /* hybrid_accept.h */
typedef struct hyb_child hyb_child;         /* hybrid_child.h */
typedef struct hyb_thread hyb_thread;       /* hybrid_child.h */

#endif /* HYBRID_TYPES_H */
