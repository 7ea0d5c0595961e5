/* hybrid_spare.c: how many children to start or stop, given a snapshot.
 *
 * A pure function: no I/O, no globals, so test/unit drives it directly.
 * The policy is prefork's and worker's: below the idle minimum, start
 * children at an exponentially growing rate (1, 2, 4, ... 32 per tick);
 * above the idle maximum, retire one child per tick; otherwise reset the
 * rate.  MaxRequestWorkers is never exceeded.
 * Called from: the parent loop, once per maintenance tick.
 */

#include "hybrid_spare.h"

hyb_spare_out hyb_spare_decide(const hyb_spare_in *in)
{
    hyb_spare_out out = { 0, 0, 1, 0, 0 };
    int room;

    if (in->idle_threads > in->spare_max && in->active_children > 1) {
        out.retire = 1;
        return out;
    }
    if (in->idle_threads >= in->spare_min) {
        return out;
    }
    room = in->daemons_limit - in->active_children;
    if (room <= 0) {
        out.at_max_workers = 1;
        return out;
    }
    if (in->free_slots <= 0) {
        out.no_free_slot = 1;
        return out;
    }
    out.spawn = in->spawn_rate < 1 ? 1 : in->spawn_rate;
    if (out.spawn > room) {
        out.spawn = room;
    }
    if (out.spawn > in->free_slots) {
        out.spawn = in->free_slots;
    }
    if (in->hold_off > 0) {
        out.next_rate = in->spawn_rate < 1 ? 1 : in->spawn_rate;
    }
    else {
        out.next_rate = in->spawn_rate * 2;
        if (out.next_rate > HYB_MAX_SPAWN_RATE) {
            out.next_rate = HYB_MAX_SPAWN_RATE;
        }
        if (out.next_rate < 1) {
            out.next_rate = 1;
        }
    }
    return out;
}
