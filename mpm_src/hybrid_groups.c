/* hybrid_groups.c: the server's load, per listener group, and the group
 * policy (hybrid_groups.h).
 *
 * Owns: measuring (slot table + scoreboard, no side effects), and which
 * group gets a new child, which child is retired for spare threads, and
 * keeping every group covered.  The mechanism (fork, signal) is
 * hybrid_proc.c's.
 * Called from: the parent loop.
 */

#include <string.h>

#include "httpd.h"
#include "scoreboard.h"

#include "hybrid_accept.h"
#include "hybrid_config.h"
#include "hybrid_counters.h"
#include "hybrid_groups.h"
#include "hybrid_proc.h"
#include "hybrid_server.h"

void hyb_load_init(hyb_load *load, apr_pool_t *p)
{
    memset(load, 0, sizeof(*load));
    load->groups = hyb_accept_groups();
    load->group = apr_pcalloc(p, sizeof(*load->group) * load->groups);
}

static int is_current(const hyb_slot *ps)
{
    return ps->pid && !ps->quiescing
           && ps->generation == hyb_server.mpm->my_generation;
}

static void count_threads(hyb_load *load, hyb_group_load *gl, int slot)
{
    int t;

    for (t = 0; t < hyb_conf.lim.threads_per_child; t++) {
        int st = ap_scoreboard_image->servers[slot][t].status;

        load->idle_threads += st <= SERVER_READY;
        gl->idle += st <= SERVER_READY;
        gl->free_threads += !hyb_slots[slot].retire_wanted
                            && (st <= SERVER_READY || st == SERVER_CLOSING);
    }
}

void hyb_load_measure(hyb_load *load)
{
    hyb_group_load none, *gl;
    int i;

    load->idle_threads = load->active_children = load->free_slots = 0;
    memset(load->group, 0, sizeof(*load->group) * load->groups);
    memset(&none, 0, sizeof(none));   /* a group out of range counts here */
    for (i = 0; i < hyb_conf.lim.server_limit; i++) {
        const hyb_slot *ps = &hyb_slots[i];

        if (!ps->pid) {
            load->free_slots++;
            continue;
        }
        if (!is_current(ps)) {
            continue;
        }
        load->active_children++;
        gl = ps->group >= 0 && ps->group < load->groups
             ? &load->group[ps->group] : &none;
        gl->children++;
        count_threads(load, gl, i);
    }
}

void hyb_load_note_ready(void)
{
    int i, t;

    for (i = 0; i < hyb_conf.lim.server_limit; i++) {
        hyb_slot *ps = &hyb_slots[i];

        if (!is_current(ps) || ps->ready_noted) {
            continue;
        }
        for (t = 0; t < hyb_conf.lim.threads_per_child; t++) {
            if (ap_scoreboard_image->servers[i][t].status >= SERVER_READY) {
                /* first sign of a serving thread */
                ps->ready_noted = 1;
                hyb_stats_note_state(i, HYBRID_SLOT_READY);
                break;
            }
        }
    }
}

hyb_spare_in hyb_load_spare_in(const hyb_load *load, int spawn_rate,
                               int hold_off)
{
    hyb_spare_in in;

    memset(&in, 0, sizeof(in));
    in.idle_threads = load->idle_threads;
    in.active_children = load->active_children;
    in.free_slots = load->free_slots;
    in.daemons_limit = hyb_conf.lim.daemons_limit;
    in.spare_min = hyb_conf.lim.spare_min;
    in.spare_max = hyb_conf.lim.spare_max;
    in.spawn_rate = spawn_rate;
    in.hold_off = hold_off;
    return in;
}

/* The group that can best spare a child: most idle threads among groups
 * with more than one child; -1 if none may lose one. */
static int idlest_group(const hyb_load *load)
{
    int g, best = -1;

    for (g = 0; g < load->groups; g++) {
        const hyb_group_load *gl = &load->group[g];

        if ((gl->children > 1 || load->groups == 1)
            && (best < 0 || gl->idle > load->group[best].idle)) {
            best = g;
        }
    }
    return best;
}

/* Fewest idle threads (its queue is the one waiting), then fewest
 * children. */
int hyb_groups_neediest(const hyb_load *load)
{
    int g, best = 0;

    for (g = 1; g < load->groups; g++) {
        const hyb_group_load *a = &load->group[g], *b = &load->group[best];

        if (a->idle < b->idle
            || (a->idle == b->idle && a->children < b->children)) {
            best = g;
        }
    }
    return best;
}

static void counted_spawn(hyb_load *load, int g)
{
    load->group[g].children++;
    load->group[g].idle += hyb_conf.lim.threads_per_child;
}

int hyb_groups_spawn(hyb_load *load, int n)
{
    int started = 0, slot, g;

    if (!hyb_proc_may_fork()) {
        return 0;
    }
    while (started < n && (slot = hyb_proc_free_slot()) >= 0) {
        g = hyb_groups_neediest(load);
        if (hyb_proc_spawn(slot, g) != 0) {
            break;
        }
        counted_spawn(load, g);
        started++;
    }
    return started;
}

/* Every listener group must always have a child able to take what the
 * kernel queues on it, whatever the spare counts say. */
void hyb_groups_cover(hyb_load *load)
{
    int g, slot;

    for (g = 0; g < load->groups; g++) {
        if (load->group[g].children > 0 || !hyb_proc_may_fork()) {
            continue;
        }
        if ((slot = hyb_proc_free_slot()) < 0) {
            break;
        }
        if (hyb_proc_spawn(slot, g) == 0) {
            counted_spawn(load, g);
        }
    }
}

/* Never a group's last child; the highest slot first, so the low slots
 * stay stable. */
void hyb_groups_retire_one(hyb_load *load)
{
    int i, g = idlest_group(load);

    if (g < 0) {
        return;
    }
    for (i = hyb_conf.lim.server_limit - 1; i >= 0; i--) {
        const hyb_slot *ps = &hyb_slots[i];

        if (is_current(ps) && ps->group == g) {
            load->group[g].children--;
            hyb_proc_retire(i);
            return;
        }
    }
}

/* At MaxRequestWorkers no group can get another child, so one whose
 * threads are all busy (connections wait in its queue) could stay starved
 * while another group idles; keep-alive connections, pinned to threads,
 * make that last.  Retire a child of a group with a child's worth of idle
 * threads: its slot goes to the starved group at the next pass, and its
 * clients reconnect and are spread again.  One per tick at most. */
void hyb_groups_rebalance(hyb_load *load)
{
    int g, starved = 0, donor;

    for (g = 0; g < load->groups; g++) {
        starved |= load->group[g].idle == 0;
    }
    donor = idlest_group(load);
    if (starved && donor >= 0
        && load->group[donor].idle >= hyb_conf.lim.threads_per_child) {
        hyb_groups_retire_one(load);
    }
}
