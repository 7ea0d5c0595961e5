/* hybrid_spare.h: the spare-thread policy's input and output.
 *
 * The policy depends on nothing but these two structs, so test/unit
 * compiles hybrid_spare.c on its own.
 */
#ifndef HYBRID_SPARE_H
#define HYBRID_SPARE_H

#define HYB_MAX_SPAWN_RATE   32      /* children per maintenance tick */

/* Spare policy (hybrid_spare.c): a pure function, unit-tested.        */

typedef struct hyb_spare_in {
    int idle_threads;     /* idle threads in live, current children */
    int active_children;  /* live, current, not quiescing */
    int free_slots;       /* slots a new child could take now */
    int daemons_limit;    /* MaxRequestWorkers / ThreadsPerChild */
    int spare_min;        /* MinSpareThreads (or MinSpareServers) */
    int spare_max;
    int spawn_rate;       /* current exponential rate */
    int hold_off;         /* ticks left without exponential growth */
} hyb_spare_in;

typedef struct hyb_spare_out {
    int spawn;            /* children to start now */
    int retire;           /* children to stop gracefully now (0 or 1) */
    int next_rate;
    int at_max_workers;   /* idle too low but MaxRequestWorkers reached */
    int no_free_slot;     /* idle too low, limit not reached, slots full */
} hyb_spare_out;

hyb_spare_out hyb_spare_decide(const hyb_spare_in *in);

#endif /* HYBRID_SPARE_H */
