/* hybrid_counters.c: the per-child statistics segment.
 *
 * Owns: creating the segment (parent, once, kept in retained data like
 * the scoreboard), the parent's seqlocked writes of each slot's identity,
 * and handing a child its own counters.  The parent only ever writes
 * here; nothing it decides depends on what children write (the
 * CVE-2019-0211 lesson).  Layout: mod_mpm_hybrid.h.
 */

static apr_size_t stats_size(int slots)
{
    return APR_ALIGN(sizeof(hybrid_stats_header), 128)
           + (apr_size_t)slots * sizeof(hybrid_child_record);
}

static hybrid_child_record *stats_record(int slot)
{
    hybrid_stats_header *h = retained->stats;

    if (!h || slot < 0 || (apr_uint32_t)slot >= h->slots) {
        return NULL;
    }
    return (hybrid_child_record *)((char *)h + h->header_size
                                   + (apr_size_t)slot * h->record_size);
}

/* Parent, open_logs: create the segment on the first start only.  A
 * failure is not fatal: the server runs, the status module shows less. */
static apr_status_t hyb_stats_create(server_rec *s)
{
    apr_status_t rv;
    hybrid_stats_header *h;
    apr_size_t size;

    if (retained->stats) {
        return APR_SUCCESS;
    }
    size = stats_size(retained->first_server_limit);
    rv = apr_shm_create(&retained->stats_shm, size, NULL, ap_pglobal);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, HYBLOGNO(00010)
                     "cannot create the per-child statistics segment "
                     "(%" APR_SIZE_T_FMT " bytes); per-child statistics "
                     "will be missing", size);
        return rv;
    }
    h = apr_shm_baseaddr_get(retained->stats_shm);
    memset(h, 0, size);
    h->magic = HYBRID_STATS_MAGIC;
    h->version = HYBRID_STATS_VERSION;
    h->header_size = (apr_uint32_t)APR_ALIGN(sizeof(*h), 128);
    h->record_size = sizeof(hybrid_child_record);
    h->slots = (apr_uint32_t)retained->first_server_limit;
    retained->stats = h;
    return APR_SUCCESS;
}

/* Parent, each generation: what the whole server runs with now. */
static void hyb_stats_publish_generation(void)
{
    hybrid_stats_header *h = retained->stats;
    const char *mutex = conf.strategy->mutex_name
                        ? conf.strategy->mutex_name() : NULL;

    if (!h) {
        return;
    }
    h->generation = retained->mpm->my_generation;
    h->strategy = conf.strategy->id;
    h->groups = hyb_groups();
    h->threads_per_child = conf.threads_per_child;
    h->mutex_broken = 0;      /* a new generation has a new mutex */
    apr_cpystrn(h->strategy_name, conf.strategy->name,
                sizeof(h->strategy_name));
    apr_cpystrn(h->mutex_name, mutex ? mutex : "", sizeof(h->mutex_name));
}

/* Seqlock write: readers retry while seq is odd or has moved. */
static void identity_begin(hybrid_child_identity *id)
{
    __atomic_store_n(&id->seq, id->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void identity_end(hybrid_child_identity *id)
{
    __atomic_store_n(&id->seq, id->seq + 1, __ATOMIC_RELEASE);
}

static void hyb_stats_note_spawn(int slot, pid_t pid)
{
    hybrid_child_record *r = stats_record(slot);
    hyb_slot *ps = &retained->slots[slot];

    if (!r) {
        return;
    }
    identity_begin(&r->who.id);
    r->who.id.slot = slot;
    r->who.id.pid = (apr_int32_t)pid;
    r->who.id.generation = ps->generation;
    r->who.id.strategy = conf.strategy->id;
    r->who.id.group = ps->group;
    r->who.id.state = HYBRID_SLOT_STARTING;
    r->who.id.restarts = ps->spawned ? ps->spawned - 1 : 0;
    r->who.id.threads = conf.threads_per_child;
    r->who.id.start_time = ps->started;
    r->who.id.ready_time = 0;
    r->who.id.stop_time = 0;
    /* The slot's counters go on growing; this child's share is what they
     * gain from here.  The child is not running yet, so nothing moves
     * them while they are copied.  (Child-written values: only shown,
     * never acted on.) */
    r->who.id.base = r->load.c;
    identity_end(&r->who.id);
}

static void hyb_stats_note_state(int slot, hybrid_slot_state_e state)
{
    hybrid_child_record *r = stats_record(slot);

    if (r) {
        identity_begin(&r->who.id);
        r->who.id.state = state;
        if (state == HYBRID_SLOT_READY && !r->who.id.ready_time) {
            r->who.id.ready_time = apr_time_now();
        }
        if (state == HYBRID_SLOT_GRACEFUL && !r->who.id.stop_time) {
            r->who.id.stop_time = apr_time_now();
        }
        identity_end(&r->who.id);
    }
}

static void hyb_stats_note_exit(int slot, apr_exit_why_e why, int status)
{
    hybrid_child_record *r = stats_record(slot);

    if (!r) {
        return;
    }
    identity_begin(&r->who.id);
    r->who.id.pid = 0;
    r->who.id.state = HYBRID_SLOT_DEAD;
    if (why & APR_PROC_SIGNAL) {
        r->who.id.last_exit_why = HYBRID_EXIT_SIGNAL;
    }
    else {
        r->who.id.last_exit_why = HYBRID_EXIT_CODE;
    }
    r->who.id.last_exit_status = status;
    identity_end(&r->who.id);
}

/* Child: its own counters (written by its threads only). */
static hybrid_child_counters *hyb_stats_counters(int slot)
{
    hybrid_child_record *r = stats_record(slot);

    return r ? &r->load.c : NULL;
}

static const hybrid_stats_header *hybrid_get_stats(void)
{
    return retained ? retained->stats : NULL;
}

static void hyb_register_optional_fns(void)
{
    APR_REGISTER_OPTIONAL_FN(hybrid_get_stats);
}

/* ------------------------------------------------------------------ */
/* Children per listener group, published by the parent for children:
 * a child that has used up MaxConnectionsPerChild may stop at once when
 * its group has another child to take the queue.  Parent-written,
 * child-read, so the trust runs the safe way. */

static volatile apr_uint32_t *group_children;

static void hyb_group_load_create(void)
{
    static const char key[] = "mpm_hybrid_group_children";
    apr_shm_t **shm = ap_retained_data_get(key);

    if (!shm) {
        shm = ap_retained_data_create(key, sizeof(*shm));
        if (apr_shm_create(shm, sizeof(apr_uint32_t)
                                * retained->first_server_limit,
                           NULL, ap_pglobal) != APR_SUCCESS) {
            *shm = NULL;
        }
    }
    group_children = *shm ? apr_shm_baseaddr_get(*shm) : NULL;
}

static void hyb_group_load_publish(int group, int children)
{
    if (group_children && group >= 0 && group < retained->first_server_limit) {
        __atomic_store_n(&group_children[group], (apr_uint32_t)children,
                         __ATOMIC_RELAXED);
    }
}

static int hyb_group_has_others(int group)
{
    return group_children && group >= 0
           && group < retained->first_server_limit
           && __atomic_load_n(&group_children[group], __ATOMIC_RELAXED) > 1;
}
