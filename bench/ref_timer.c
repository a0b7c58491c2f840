/*
 * ref_timer.c - the platform's floor for send_timing.py: the simplest
 * periodic loop there is (clock_nanosleep to absolute CLOCK_MONOTONIC
 * deadlines, like cyclictest), with the same scheduling as the engine run,
 * measured in the same run under the same load.  No socket, no lock, no
 * libheart: whatever lateness this shows, no heartbeat loop can beat.
 *
 * usage: ref_timer INTERVAL_US SECONDS RT_PRIORITY(0: normal)
 * prints one JSON object: p50/p99/p999/max lateness in us and missed ticks.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

static int cmp(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

static double pct(const long *v, int n, double q)
{
    int i = (int)(q / 100.0 * (n - 1) + 0.5);
    return v[i] / 1000.0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s INTERVAL_US SECONDS RT_PRIORITY\n", argv[0]);
        return 2;
    }
    long interval_ns = atol(argv[1]) * 1000L;
    double seconds = atof(argv[2]);
    int prio = atoi(argv[3]);
    int rt_ok = 1;
    if (interval_ns <= 0 || seconds <= 0)
        return 2;
    if (prio > 0) {
        struct sched_param sp;
        memset(&sp, 0, sizeof sp);
        sp.sched_priority = prio;
        rt_ok = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
        (void)mlockall(MCL_CURRENT | MCL_FUTURE);
    }
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    int n = (int)(seconds * 1e9 / (double)interval_ns);
    long *lat = calloc((size_t)n, sizeof *lat);
    if (!lat || n < 2)
        return 1;
    long missed = 0;
    struct timespec t, now;
    clock_gettime(CLOCK_MONOTONIC, &t);
    for (int i = 0; i < n; i++) {
        t.tv_nsec += interval_ns;
        while (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        lat[i] = (now.tv_sec - t.tv_sec) * 1000000000L + (now.tv_nsec - t.tv_nsec);
        /* Like the engine: deadlines that passed meanwhile are skipped
         * and counted, never run in a burst. */
        long behind = lat[i];
        while (behind >= interval_ns) {
            t.tv_nsec += interval_ns;
            while (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
            }
            behind -= interval_ns;
            missed++;
        }
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    printf("{\"sends\": %d, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"max_us\": %.1f, \"missed\": %ld, \"realtime\": %s}\n",
           n, pct(lat, n, 50), pct(lat, n, 99), pct(lat, n, 99.9), lat[n - 1] / 1000.0,
           missed, prio > 0 && rt_ok ? "true" : "false");
    free(lat);
    return 0;
}
