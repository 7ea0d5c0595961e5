/* cstatus_fair.h: are the children sharing the work?  The rule.
 *
 * Owns: which children are compared, on what, and the figures that come
 * out (Jain's index, largest and smallest share, verdict).  Pure: APR
 * types only, no httpd, unit-tested in test/unit/test_fair.c.  The
 * collector (cstatus_collect.c) fills the inputs from the scoreboard, the
 * module's records and the MPM's statistics.
 *
 * The rule.  Children are compared on what they could do.  In every
 * second of the window the requests finished are shared out among the
 * children accepting connections in that second, in proportion to their
 * threads: that is each child's fair share, and a child is measured by
 * its requests over its fair share (1 = its part exactly).  Requests are
 * counted per second, so only the children accepting throughout a second
 * are compared in it (who served what in the part of a second before a
 * child started cannot be told apart).  So a child spawned, retired or
 * restarted in the middle of the window is compared only over the seconds
 * it was there, against the children that were there with it; a simple
 * count or a rate over its lifetime would blame it (or the others, whose
 * earlier seconds had fewer competitors) for when it existed.
 *
 * A child is judged only if it was accepting for at least a quarter as
 * long as the longest-accepting child of its population (a quarter of the
 * window once some child has been accepting throughout): a child just
 * forked takes a moment to reach its first accept(), which would weigh
 * on a short life.  Younger ones are shown but not counted.  Each
 * population (the current generation; all older generations together) is
 * judged apart.  A child known to have stopped accepting at an unknown
 * time (killed) cannot be placed in time and is not judged.
 *
 * The verdict.  "concentrated" needs Jain's index below 0.9 and a spread
 * that chance would give less than once in a thousand: the judged
 * children's request counts against their fair shares (chi-square, k - 1
 * degrees of freedom).  So a handful of requests cannot raise a false
 * alarm, while one child taking 30 of 30 among four does.  No requests at
 * all is "idle".
 */
#ifndef CSTATUS_FAIR_H
#define CSTATUS_FAIR_H

#include "apr.h"
#include "apr_time.h"

/* The window fairness looks at, in seconds. */
#define CSTATUS_FAIR_WINDOW_S 10
/* Jain's index at or above this reads as "spread". */
#define CSTATUS_SPREAD_JAIN 0.9
/* Judged when accepting for at least this part of the longest. */
#define CSTATUS_YOUNG_FRACTION 0.25
/* "concentrated" needs a spread that chance gives less often than this. */
#define CSTATUS_CHANCE 0.001

typedef enum {
    CSTATUS_FAIR_JUDGED = 0,
    CSTATUS_FAIR_YOUNG,         /* still accepting, started too recently */
    CSTATUS_FAIR_BRIEF,         /* stopped after accepting too briefly */
    CSTATUS_FAIR_STOP_UNKNOWN,  /* stopped, and when is not known */
    CSTATUS_FAIR_OUTSIDE,       /* not accepting at all in the window */
    CSTATUS_FAIR_OTHER          /* another population, or none */
} cstatus_fair_status_e;

typedef struct cstatus_fair_child {
    /* Filled by the caller. */
    int population;          /* which population it is judged in; < 0: none */
    apr_time_t since;        /* began accepting; 0 = unknown, long ago */
    int stopped;             /* no longer accepting */
    apr_time_t until;        /* when it stopped; 0 = unknown */
    int threads;             /* threads it accepts with (taken as >= 1) */
    /* Requests it finished in each second of the window, newest first:
     * [0] is the current second up to now, [CSTATUS_FAIR_WINDOW_S] the
     * oldest, counted by the part of it inside the window
     * (cstatus_ring_seconds gives exactly this). */
    double per_second[CSTATUS_FAIR_WINDOW_S + 1];
    /* Filled by cstatus_fair_judge for the children of its population. */
    cstatus_fair_status_e status;
    double requests;         /* in the window */
    double accepting_s;      /* seconds of the window it was accepting */
    int has_rate;            /* accepting_s > 0 */
    double rate;             /* requests / accepting_s / threads */
    double compared;         /* requests in the whole seconds it was
                                accepting: what is compared (judged) */
    double expected;         /* its fair share of those (judged) */
    double share;            /* compared / expected, as a part of the sum
                                of that over the judged children (judged) */
} cstatus_fair_child;

typedef struct cstatus_fair_result {
    int judged;              /* children compared */
    int young;               /* shown, not compared: too young or too brief */
    double requests;         /* requests of the judged children */
    double min_accepting_s;  /* the bar for being judged */
    int has_jain;            /* false when idle (no requests to compare) */
    double jain;             /* over requests / fair share */
    double max_share;
    double min_share;
    double chi2;             /* of the judged children's counts */
    double chi2_limit;       /* what chance exceeds with CSTATUS_CHANCE */
    const char *verdict;     /* "spread", "concentrated" or "idle" */
} cstatus_fair_result;

/* Judge the children of `population` among *c[0..n) over the window
 * ending at `now`: sets each one's status, requests, accepting time, rate,
 * fair share and share, and fills `out`.  Children of other populations
 * are left as they are.  Jain's index J = (sum x)^2 / (k * sum x^2) over
 * x = requests / fair share of the k judged children: 1 when each does
 * its part, 1/k when one child does all. */
void cstatus_fair_judge(cstatus_fair_child *const *c, int n, int population,
                        apr_time_t now, cstatus_fair_result *out);

/* The value a chi-square variable with `df` degrees of freedom exceeds
 * with probability CSTATUS_CHANCE (Wilson-Hilferty; within 3 % of the
 * exact value, and above it for small df). */
double cstatus_fair_chi2_limit(int df);

/* The lower-case reason a child is not judged ("too young", ...), or NULL
 * for a judged child. */
const char *cstatus_fair_why_not(cstatus_fair_status_e status);

#endif /* CSTATUS_FAIR_H */
