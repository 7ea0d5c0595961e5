/* test_door.c: the reserve's door (mpm_src/hybrid_door.c): sleepers stay
 * asleep while it is shut, an opening for one lets one out, an opening
 * for everyone lets every sleeper out, and two threads handing a turn to
 * each other through doors many thousand times lose no wake-up (a lost
 * one hangs, and the watchdog here fails the test). */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "hybrid_door.h"
#include "hybrid_door.c"
#include "unit_check.h"

#define SLEEPERS 8
#define PINGPONG 100000

static hyb_door door = HYB_DOOR_INIT;
static volatile int tickets;     /* threads that may leave */
static volatile int left;        /* threads that have left */

static int no_ticket(void *unused)
{
    return __atomic_load_n(&tickets, __ATOMIC_SEQ_CST) == 0;
}

/* Leaves with a ticket: takes one, or sleeps again if another thread was
 * quicker. */
static void *sleeper(void *unused)
{
    for (;;) {
        int t;

        hyb_door_wait(&door, no_ticket, NULL);
        t = __atomic_load_n(&tickets, __ATOMIC_SEQ_CST);
        while (t > 0 && !__atomic_compare_exchange_n(&tickets, &t, t - 1, 0,
                                                     __ATOMIC_SEQ_CST,
                                                     __ATOMIC_SEQ_CST)) {
        }
        if (t > 0) {
            break;
        }
    }
    __atomic_add_fetch(&left, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int left_now(void)
{
    return __atomic_load_n(&left, __ATOMIC_SEQ_CST);
}

static int tickets_now(void)
{
    return __atomic_load_n(&tickets, __ATOMIC_SEQ_CST);
}

static int asleep(void)
{
    return (int)__atomic_load_n(&door.sleepers, __ATOMIC_SEQ_CST);
}

/* Waits up to `ms` for now() to read `want`; whether it did. */
static int reaches(int (*now)(void), int want, int ms)
{
    while (now() != want && ms-- > 0) {
        usleep(1000);
    }
    return now() == want;
}

static void test_one_then_everyone(void)
{
    pthread_t th[SLEEPERS];
    int i;

    for (i = 0; i < SLEEPERS; i++) {
        pthread_create(&th[i], NULL, sleeper, NULL);
    }
    CHECK(reaches(asleep, SLEEPERS, 5000));
    usleep(50000);
    CHECK(left == 0);                     /* shut: nobody leaves */

    __atomic_store_n(&tickets, 1, __ATOMIC_SEQ_CST);
    hyb_door_open(&door, 1);
    CHECK(reaches(left_now, 1, 5000));
    usleep(100000);
    CHECK(left == 1);                     /* one ticket, one out */
    CHECK(reaches(tickets_now, 0, 1000));

    __atomic_store_n(&tickets, SLEEPERS - 1, __ATOMIC_SEQ_CST);
    hyb_door_open(&door, HYB_DOOR_EVERYONE);
    CHECK(reaches(left_now, SLEEPERS, 5000));
    if (left != SLEEPERS) {
        fprintf(stderr, "test_door: sleepers still asleep, not joining\n");
        return;
    }
    for (i = 0; i < SLEEPERS; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK(asleep() == 0);
}

/* Two threads take turns: each waits until it is its turn, passes the
 * turn on and opens the other's door. */
static hyb_door doors[2] = { HYB_DOOR_INIT, HYB_DOOR_INIT };
static volatile int whose = 0;
static volatile int rounds[2];

static int not_mine(void *arg)
{
    return __atomic_load_n(&whose, __ATOMIC_SEQ_CST) != *(int *)arg;
}

static void *player(void *arg)
{
    int me = *(int *)arg;

    while (rounds[me] < PINGPONG) {
        hyb_door_wait(&doors[me], not_mine, arg);
        __atomic_add_fetch(&rounds[me], 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&whose, 1 - me, __ATOMIC_SEQ_CST);
        hyb_door_open(&doors[1 - me], 1);
    }
    return NULL;
}

static void test_pingpong(void)
{
    static int ids[2] = { 0, 1 };
    pthread_t th[2];
    int last = -1, still = 0;

    pthread_create(&th[0], NULL, player, &ids[0]);
    pthread_create(&th[1], NULL, player, &ids[1]);
    /* the watchdog: no progress for 2 s is a lost wake-up */
    while (rounds[0] + rounds[1] < 2 * PINGPONG && still < 2000) {
        int now = rounds[0] + rounds[1];

        still = now == last ? still + 1 : 0;
        last = now;
        usleep(1000);
    }
    CHECK(rounds[0] == PINGPONG && rounds[1] == PINGPONG);
    if (rounds[0] + rounds[1] < 2 * PINGPONG) {
        fprintf(stderr, "test_door: hung at round %d/%d (whose %d, asleep "
                "%u/%u)\n", rounds[0], rounds[1], whose,
                doors[0].sleepers, doors[1].sleepers);
        return;
    }
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
}

int main(void)
{
    test_one_then_everyone();
    test_pingpong();
    return unit_report("test_door");
}
