/*
 * test_detector.c - failure detectors (fixed timing and phi accrual) driven
 * by synthetic arrival times; no clock, no sleeping.
 */
#include "heart/heart.h"
#include "hbtest.h"

#include <errno.h>
#include <math.h>

#define US 1000ull          /* ns per microsecond */
#define MS 1000000ull       /* ns per millisecond */
#define SEC 1000000000ull   /* ns per second */
#define T0 (5000ull * MS)   /* an arbitrary CLOCK_MONOTONIC origin */

/* Reference values: one-sided standard normal quantiles (scipy
 * norm.isf(10**-threshold)). */
#define Z_PHI8 5.612001244174789
#define Z_PHI3 3.090232306167813
#define Z_PHI1 1.2815515655446004
#define Z_PHI01 (-0.8215316028830921)

static int near(double a, double b, double tol)
{
    return fabs(a - b) <= tol;
}

static uint64_t xs_state = 88172645463325252ull;

static uint64_t xorshift(void)
{
    xs_state ^= xs_state << 13;
    xs_state ^= xs_state >> 7;
    xs_state ^= xs_state << 17;
    return xs_state;
}

/* Uniform integer in [-r, r]. */
static int64_t jitter(int64_t r)
{
    return (int64_t)(xorshift() % (uint64_t)(2 * r + 1)) - r;
}

static hb_timing phi_timing(uint32_t interval_us)
{
    hb_timing t;
    hb_timing_defaults(&t, interval_us);
    t.detector = HB_DETECTOR_PHI;
    return t;
}

/* Feed `count` heartbeats spaced exactly step_us apart, starting right after
 * the last one (or at T0 when never heard).  Returns the last arrival. */
static uint64_t feed_regular(hb_detector *d, int count, uint64_t step_us)
{
    uint64_t t = d->last_ns ? d->last_ns : T0 - step_us * US;
    for (int i = 0; i < count; i++) {
        t += step_us * US;
        hb_detector_heartbeat(d, t);
    }
    return t;
}

/* Expected phi down_at, computed independently of the library. */
static uint64_t expect_down(uint64_t last, double m_us, double s_us, double z)
{
    return last + (uint64_t)ceil((m_us + z * s_us) * 1000.0);
}

/* ------------------------------------------------------------------ */

static void test_defaults(void)
{
    hb_timing t;
    hb_timing_defaults(&t, 1000000);
    CHECK_EQ(t.interval_us, 1000000);
    CHECK_EQ(t.warntime_us, 2000000);
    CHECK_EQ(t.deadtime_us, 4000000);
    CHECK_EQ(t.initdead_us, 8000000);
    CHECK_EQ(t.detector, HB_DETECTOR_FIXED);
    CHECK(t.phi_threshold == 8.0);
    CHECK_EQ(t.phi_min_std_us, 250000);
    CHECK_EQ(t.phi_acceptable_pause_us, 0);
    CHECK_EQ(t.phi_window, 256);
    CHECK_EQ(t.phi_min_samples, 16);
    CHECK_EQ(hb_timing_validate(&t), 0);
    t.detector = HB_DETECTOR_PHI;
    CHECK_EQ(hb_timing_validate(&t), 0);

    /* min std floor of 100 us */
    hb_timing_defaults(&t, 200);
    CHECK_EQ(t.phi_min_std_us, 100);
    hb_timing_defaults(&t, 1000);
    CHECK_EQ(t.phi_min_std_us, 250);

    /* Every nonzero interval gives valid defaults, without overflow. */
    uint32_t intervals[] = {1, 2, 3, 1000, 100000, 1u << 30, 0x7fffffffu,
                            UINT32_MAX};
    for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
        hb_timing_defaults(&t, intervals[i]);
        CHECK_EQ(hb_timing_validate(&t), 0);
        CHECK(t.deadtime_us >= t.interval_us);
        CHECK(t.warntime_us < t.deadtime_us);
        CHECK(t.initdead_us >= t.deadtime_us);
    }
    hb_timing_defaults(&t, 1u << 30);
    CHECK_EQ(t.deadtime_us, UINT32_MAX); /* saturated, not wrapped to 0 */
    CHECK_EQ(t.warntime_us, 1u << 31);
    CHECK_EQ(t.initdead_us, UINT32_MAX);

    /* Interval 0: defaults are written but do not validate. */
    hb_timing_defaults(&t, 0);
    CHECK_EQ(hb_timing_validate(&t), -EINVAL);
    hb_timing_defaults(NULL, 1000); /* no crash */
}

static void test_validate_rejects(void)
{
    hb_timing base = phi_timing(100000), t;
    hb_detector d;
    CHECK_EQ(hb_timing_validate(&base), 0);
    CHECK_EQ(hb_timing_validate(NULL), -EINVAL);

#define REJECT(stmt)                                                         \
    do {                                                                     \
        t = base;                                                            \
        stmt;                                                                \
        CHECK_EQ(hb_timing_validate(&t), -EINVAL);                           \
        CHECK_EQ(hb_detector_init(&d, &t), -EINVAL);                         \
    } while (0)
#define ACCEPT(stmt)                                                         \
    do {                                                                     \
        t = base;                                                            \
        stmt;                                                                \
        CHECK_EQ(hb_timing_validate(&t), 0);                                 \
        CHECK_EQ(hb_detector_init(&d, &t), 0);                               \
    } while (0)

    REJECT(t.interval_us = 0);
    REJECT(t.warntime_us = 0);
    REJECT(t.warntime_us = t.deadtime_us);
    REJECT(t.warntime_us = t.deadtime_us + 1);
    ACCEPT(t.warntime_us = t.deadtime_us - 1);
    REJECT(t.deadtime_us = t.interval_us - 1; t.warntime_us = 1);
    ACCEPT(t.deadtime_us = t.interval_us; t.warntime_us = 1);
    REJECT(t.initdead_us = t.deadtime_us - 1);
    ACCEPT(t.initdead_us = t.deadtime_us);
    REJECT(t.detector = 2);
    REJECT(t.detector = -1);
    REJECT(t.phi_threshold = 0.0);
    REJECT(t.phi_threshold = -1.0);
    REJECT(t.phi_threshold = NAN);
    REJECT(t.phi_threshold = INFINITY);
    ACCEPT(t.phi_threshold = 1e-3);
    REJECT(t.phi_window = 0);
    REJECT(t.phi_window = HB_DETECTOR_WINDOW_MAX + 1);
    ACCEPT(t.phi_window = HB_DETECTOR_WINDOW_MAX);
    REJECT(t.phi_min_samples = t.phi_window + 1);
    ACCEPT(t.phi_min_samples = t.phi_window);
    ACCEPT(t.phi_min_samples = 0);

    /* The threshold only matters to the phi detector... */
    ACCEPT(t.detector = HB_DETECTOR_FIXED; t.phi_threshold = NAN);
    ACCEPT(t.detector = HB_DETECTOR_FIXED; t.phi_threshold = 0.0);
    /* ...but the window feeds the statistics in both modes. */
    REJECT(t.detector = HB_DETECTOR_FIXED; t.phi_window = 0);
    REJECT(t.detector = HB_DETECTOR_FIXED; t.phi_min_samples = 300);
#undef REJECT
#undef ACCEPT

    CHECK_EQ(hb_detector_init(NULL, &base), -EINVAL);
    CHECK_EQ(hb_detector_init(&d, NULL), -EINVAL);
}

static void test_never_heard(void)
{
    for (int kind = 0; kind <= 1; kind++) {
        hb_timing t;
        hb_timing_defaults(&t, 100000);
        t.detector = kind;
        hb_detector d;
        CHECK_EQ(hb_detector_init(&d, &t), 0);
        CHECK_EQ(hb_detector_late_at(&d), 0);
        CHECK_EQ(hb_detector_down_at(&d), 0);
        CHECK(hb_detector_phi(&d, T0) == 0.0);
        double m = -1, s = -1;
        hb_detector_stats(&d, &m, &s);
        CHECK(m == 0.0 && s == 0.0);

        /* One heartbeat: heard, but no inter-arrival yet. */
        hb_detector_heartbeat(&d, T0);
        CHECK_EQ(d.last_ns, T0);
        CHECK_EQ(d.n, 0);
        CHECK(hb_detector_phi(&d, T0 + 10 * SEC) == 0.0);
        CHECK_EQ(hb_detector_late_at(&d), T0 + 200 * MS);
        CHECK_EQ(hb_detector_down_at(&d), T0 + 400 * MS);
    }
    /* A heartbeat at clock 0 still counts as heard. */
    hb_timing t;
    hb_timing_defaults(&t, 100000);
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    hb_detector_heartbeat(&d, 0);
    CHECK(d.last_ns != 0);
    CHECK(hb_detector_down_at(&d) != 0);
}

static void test_fixed_timing(void)
{
    hb_timing t;
    hb_timing_defaults(&t, 100000); /* 100 ms: late 200 ms, down 400 ms */
    t.warntime_us = 250000;
    t.deadtime_us = 700000;
    t.initdead_us = 1400000;
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);

    uint64_t last = feed_regular(&d, 40, 100000);
    CHECK_EQ(hb_detector_late_at(&d), last + 250 * MS);
    CHECK_EQ(hb_detector_down_at(&d), last + 700 * MS);

    /* Irregular arrivals do not change fixed timing. */
    last += 37 * MS + 123;
    hb_detector_heartbeat(&d, last);
    CHECK_EQ(hb_detector_late_at(&d), last + 250 * MS);
    CHECK_EQ(hb_detector_down_at(&d), last + 700 * MS);

    /* Statistics are kept in fixed mode too. */
    double m, s;
    hb_detector_stats(&d, &m, &s);
    CHECK_EQ(d.n, 40);
    CHECK(near(m, (39 * 100000.0 + 37000.0) / 40, 1e-6));
    CHECK(s > 0.0);
    CHECK(hb_detector_phi(&d, last + 50 * MS) >= 0.0);
}

static void test_phi_regular_jitter(void)
{
    hb_timing t = phi_timing(100000);
    t.phi_min_std_us = 100; /* let the measured jitter rule */
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);

    /* 300 arrivals, 100 ms apart +- 5 ms (whole microseconds). */
    uint64_t arr[300];
    uint64_t now = T0;
    for (int i = 0; i < 300; i++) {
        now += (uint64_t)(100000 + jitter(5000)) * US;
        arr[i] = now;
        hb_detector_heartbeat(&d, now);
    }
    uint64_t last = arr[299];
    CHECK_EQ(d.last_ns, last);
    CHECK_EQ(d.n, 256);

    /* Independent two-pass mean / std over the last 256 inter-arrivals. */
    double sum = 0.0, sq = 0.0;
    for (int i = 300 - 256; i < 300; i++)
        sum += (double)(arr[i] - arr[i - 1]) / 1000.0;
    double em = sum / 256;
    for (int i = 300 - 256; i < 300; i++) {
        double x = (double)(arr[i] - arr[i - 1]) / 1000.0 - em;
        sq += x * x;
    }
    double es = sqrt(sq / 256);
    double m, s;
    hb_detector_stats(&d, &m, &s);
    CHECK(near(m, em, 1e-6));
    CHECK(near(s, es, 1e-6));
    CHECK(s > 2000.0 && s < 4000.0); /* uniform +-5 ms: ~2.9 ms */

    /* At the mean: phi = -log10(0.5). */
    double p_mean = hb_detector_phi(&d, last + (uint64_t)llround(m * 1000.0));
    CHECK(near(p_mean, log10(2.0), 1e-3));
    CHECK(hb_detector_phi(&d, last) < 0.01);
    CHECK(hb_detector_phi(&d, last) >= 0.0);

    /* Grows monotonically with silence, strictly while finite and > 0. */
    double prev = -1.0;
    int strict_ok = 1, mono_ok = 1;
    for (uint64_t k = 0; k <= 400; k++) {
        double p = hb_detector_phi(&d, last + k * 500 * US);
        CHECK(!isnan(p));
        if (p < prev)
            mono_ok = 0;
        if (prev > 1e-6 && isfinite(p) && !(p > prev))
            strict_ok = 0;
        prev = p;
    }
    CHECK(mono_ok);
    CHECK(strict_ok);
    CHECK(prev > t.phi_threshold);

    /* Threshold reached exactly at down_at, not a microsecond before. */
    uint64_t down = hb_detector_down_at(&d);
    CHECK_EQ(down, expect_down(last, em, es, Z_PHI8));
    CHECK(down > last + (uint64_t)(m * 1000.0));
    double p_down = hb_detector_phi(&d, down);
    CHECK(near(p_down, t.phi_threshold, 1e-3));
    CHECK(p_down >= t.phi_threshold - 1e-9);
    CHECK(hb_detector_phi(&d, down - US) < t.phi_threshold);
    CHECK(hb_detector_phi(&d, down + US) > t.phi_threshold);

    /* late_at keeps the operator's meaning: last + warntime (200 ms), which
     * here comes after down_at (~117 ms), so late_at is clipped to down_at. */
    CHECK(down < last + 200 * MS);
    CHECK_EQ(hb_detector_late_at(&d), down);
}

static void test_phi_min_std_floor(void)
{
    hb_timing t = phi_timing(100000); /* min std 25 ms */
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    uint64_t last = feed_regular(&d, 100, 100000);
    double m, s;
    hb_detector_stats(&d, &m, &s);
    CHECK(m == 100000.0);
    CHECK(s == 0.0); /* the reported std is the raw one */

    uint64_t down = hb_detector_down_at(&d);
    CHECK_EQ(down, expect_down(last, 100000.0, 25000.0, Z_PHI8));
    CHECK(near(hb_detector_phi(&d, down), 8.0, 1e-3));
    CHECK(near(hb_detector_phi(&d, last + 100 * MS), log10(2.0), 1e-12));
    /* one floored std past the mean: P(Z > 1) = 0.158655 */
    CHECK(near(hb_detector_phi(&d, last + 125 * MS), -log10(0.15865525393145705), 1e-9));
    /* down_at ~240 ms is after last + warntime (200 ms): late_at unclipped */
    CHECK_EQ(hb_detector_late_at(&d), last + 200 * MS);

    /* A smaller floor moves down_at earlier. */
    t.phi_min_std_us = 1000;
    hb_detector d2;
    CHECK_EQ(hb_detector_init(&d2, &t), 0);
    uint64_t last2 = feed_regular(&d2, 100, 100000);
    CHECK_EQ(hb_detector_down_at(&d2), expect_down(last2, 100000.0, 1000.0, Z_PHI8));

    /* When jitter exceeds the floor, the measured std rules. */
    t.phi_min_std_us = 100;
    hb_detector d3;
    CHECK_EQ(hb_detector_init(&d3, &t), 0);
    hb_detector_heartbeat(&d3, T0);
    uint64_t now = T0;
    for (int i = 0; i < 64; i++) {
        now += (i % 2 ? 90000 : 110000) * US;
        hb_detector_heartbeat(&d3, now);
    }
    hb_detector_stats(&d3, &m, &s);
    CHECK(near(m, 100000.0, 1e-9));
    CHECK(near(s, 10000.0, 1e-6));
    CHECK_EQ(hb_detector_down_at(&d3), expect_down(now, 100000.0, 10000.0, Z_PHI8));
}

static void test_phi_acceptable_pause(void)
{
    hb_timing t = phi_timing(100000);
    hb_timing tp = t;
    tp.phi_acceptable_pause_us = 50000;
    hb_detector a, b;
    CHECK_EQ(hb_detector_init(&a, &t), 0);
    CHECK_EQ(hb_detector_init(&b, &tp), 0);
    uint64_t now = T0;
    xs_state = 12345;
    for (int i = 0; i < 200; i++) {
        now += (uint64_t)(100000 + jitter(20000)) * US;
        hb_detector_heartbeat(&a, now);
        hb_detector_heartbeat(&b, now);
    }
    uint64_t da = hb_detector_down_at(&a), db = hb_detector_down_at(&b);
    int64_t shift = (int64_t)(db - da) - (int64_t)(50 * MS);
    CHECK(shift >= -1 && shift <= 1); /* exactly the pause, up to ns rounding */
    /* The pause shifts the whole curve. */
    for (uint64_t k = 0; k < 40; k++) {
        double pa = hb_detector_phi(&a, now + k * 5 * MS);
        double pb = hb_detector_phi(&b, now + k * 5 * MS + 50 * MS);
        CHECK(near(pa, pb, 1e-9));
    }
    /* Statistics do not include the pause. */
    double ma, sa, mb, sb;
    hb_detector_stats(&a, &ma, &sa);
    hb_detector_stats(&b, &mb, &sb);
    CHECK(ma == mb && sa == sb);
}

static void test_phi_min_samples(void)
{
    hb_timing t = phi_timing(100000); /* min_samples 16, deadtime 400 ms */
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    /* 16 heartbeats = 15 inter-arrival samples: fixed timing rules. */
    uint64_t last = feed_regular(&d, 16, 100000);
    CHECK_EQ(d.n, 15);
    CHECK_EQ(hb_detector_down_at(&d), last + 400 * MS);
    CHECK_EQ(hb_detector_late_at(&d), last + 200 * MS);
    /* the 16th sample hands over to phi */
    last = feed_regular(&d, 1, 100000);
    CHECK_EQ(d.n, 16);
    uint64_t down = hb_detector_down_at(&d);
    CHECK_EQ(down, expect_down(last, 100000.0, 25000.0, Z_PHI8));
    CHECK(down != last + 400 * MS);

    /* min_samples 0 still needs one sample for a distribution. */
    t.phi_min_samples = 0;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    last = feed_regular(&d, 1, 100000);
    CHECK_EQ(hb_detector_down_at(&d), last + 400 * MS);
    last = feed_regular(&d, 1, 100000);
    CHECK_EQ(hb_detector_down_at(&d), expect_down(last, 100000.0, 25000.0, Z_PHI8));

    /* min_samples == window */
    t.phi_window = 8;
    t.phi_min_samples = 8;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    last = feed_regular(&d, 8, 100000);
    CHECK_EQ(hb_detector_down_at(&d), last + 400 * MS);
    last = feed_regular(&d, 1, 100000);
    CHECK_EQ(hb_detector_down_at(&d), expect_down(last, 100000.0, 25000.0, Z_PHI8));
}

static void test_ring_wrap(void)
{
    hb_timing t = phi_timing(1000);
    t.phi_window = 32;
    t.phi_min_samples = 8;
    t.phi_min_std_us = 100;
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    feed_regular(&d, 101, 1000); /* 100 samples of 1 ms */
    CHECK_EQ(d.n, 32);
    double m, s;
    hb_detector_stats(&d, &m, &s);
    CHECK(m == 1000.0 && s == 0.0);

    feed_regular(&d, 16, 3000); /* half the window now at 3 ms */
    CHECK_EQ(d.n, 32);
    hb_detector_stats(&d, &m, &s);
    CHECK(near(m, 2000.0, 1e-9));
    CHECK(near(s, 1000.0, 1e-6));

    uint64_t last = feed_regular(&d, 16, 3000); /* the old samples are gone */
    hb_detector_stats(&d, &m, &s);
    CHECK(near(m, 3000.0, 1e-9));
    CHECK(near(s, 0.0, 1e-3));
    CHECK_EQ(hb_detector_down_at(&d), expect_down(last, 3000.0, 100.0, Z_PHI8));

    /* Long run with wildly varying samples: the running sums match a fresh
     * computation over the ring (no drift, no negative variance). */
    enum { W = 300 };
    hb_timing tw = phi_timing(1000);
    tw.phi_window = W; /* 100000 samples leave the head mid-ring */
    hb_detector *w = calloc(1, sizeof *w);
    CHECK(w != NULL);
    if (!w)
        return;
    CHECK_EQ(hb_detector_init(w, &tw), 0);
    uint64_t now = T0, prev = 0;
    uint32_t last_samples[W];
    hb_detector_heartbeat(w, now);
    xs_state = 987654321;
    for (int i = 0; i < 100000; i++) {
        /* mostly ~1 s, sometimes 1 us, sometimes ~70 min */
        uint64_t r = xorshift();
        uint64_t us = (r % 10 == 0) ? 1 : (r % 10 == 1) ? 4000000000ull + r % 1000
                                                        : 1000000 + r % 5000;
        prev = now;
        now += us * US;
        hb_detector_heartbeat(w, now);
        last_samples[i % W] = (uint32_t)((now - prev) / US);
    }
    CHECK_EQ(w->n, W);
    CHECK_EQ(w->head, 100000 % W);
    double em = 0.0, es = 0.0;
    for (int i = 0; i < W; i++)
        em += last_samples[i];
    em /= W;
    for (int i = 0; i < W; i++)
        es += (last_samples[i] - em) * (last_samples[i] - em);
    es = sqrt(es / W);
    hb_detector_stats(w, &m, &s);
    CHECK(near(m, em, em * 1e-12));
    CHECK(near(s, es, es * 1e-6));
    free(w);

    /* Drift: huge samples then small ones.  Subtracting the huge squares
     * from the running sum of squares leaves rounding noise far larger than
     * the small samples' variance; the periodic recomputation removes it. */
    hb_timing tdr = phi_timing(1000);
    tdr.phi_window = 32;
    tdr.phi_min_samples = 8;
    CHECK_EQ(hb_detector_init(&d, &tdr), 0);
    now = T0;
    hb_detector_heartbeat(&d, now);
    for (int i = 0; i < 32; i++) {
        now += (4000000000ull + (uint64_t)i * 7919) * US;
        hb_detector_heartbeat(&d, now);
    }
    for (int i = 0; i < 40; i++) { /* ring wraps at 64, then 8 more */
        now += (i % 2 ? 1010 : 1000) * US;
        hb_detector_heartbeat(&d, now);
    }
    CHECK_EQ(d.head, 8);
    hb_detector_stats(&d, &m, &s);
    CHECK(near(m, 1005.0, 1e-9));
    CHECK(near(s, 5.0, 1e-6));

    /* Here the head is mid-ring and the sums are checked against the ring. */
    hb_detector *v = calloc(1, sizeof *v);
    CHECK(v != NULL);
    if (!v)
        return;
    tw.phi_window = 256;
    CHECK_EQ(hb_detector_init(v, &tw), 0);
    now = T0;
    hb_detector_heartbeat(v, now);
    for (int i = 0; i < 100003; i++) {
        now += (uint64_t)(1 + xorshift() % 3000000000ull) * US;
        hb_detector_heartbeat(v, now);
    }
    CHECK_EQ(v->head, 100003 % 256);
    double rs = 0.0;
    for (uint32_t i = 0; i < v->n; i++)
        rs += v->samples[i];
    CHECK(v->sum == rs); /* integer-valued sums below 2^53 stay exact */
    hb_detector_stats(v, &m, &s);
    CHECK(!isnan(s) && s > 0.0);
    free(v);
}

static void test_phi_z(void)
{
    hb_timing t = phi_timing(100000);
    hb_detector d;
    struct { double thr, z; } cases[] = {
        {8.0, Z_PHI8}, {3.0, Z_PHI3}, {1.0, Z_PHI1}, {0.1, Z_PHI01},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t.phi_threshold = cases[i].thr;
        CHECK_EQ(hb_detector_init(&d, &t), 0);
        CHECK(near(d.phi_z, cases[i].z, 1e-9));
    }
    t.phi_threshold = 8.0;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    CHECK(near(d.phi_z, 5.612, 1e-3));

    /* z is negative for thresholds below log10(2): down_at never precedes
     * the last arrival. */
    t.phi_threshold = 1e-4;
    t.phi_acceptable_pause_us = 0;
    t.phi_min_std_us = 1000000; /* huge std: m + z*s < 0 */
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    CHECK(d.phi_z < -3.0);
    uint64_t last = feed_regular(&d, 40, 100000);
    CHECK_EQ(hb_detector_down_at(&d), last);
    CHECK_EQ(hb_detector_late_at(&d), last);

    /* Thresholds beyond the largest finite phi: down_at is where phi
     * becomes +inf, and it is finite. */
    t = phi_timing(100000);
    t.phi_threshold = 1000.0;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    CHECK(isfinite(d.phi_z) && d.phi_z > 30.0 && d.phi_z <= 40.0);
    last = feed_regular(&d, 40, 100000);
    uint64_t down = hb_detector_down_at(&d);
    CHECK(down > last && down < last + 2000 * MS);
    CHECK(hb_detector_phi(&d, down) >= 1000.0);
    CHECK(hb_detector_phi(&d, down - US) < 1000.0);
}

static void test_huge_silence(void)
{
    hb_timing t = phi_timing(100000);
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    uint64_t last = feed_regular(&d, 40, 100000);
    double p = hb_detector_phi(&d, last + 10 * 1000 * MS);
    CHECK(isinf(p) && p > 0);
    p = hb_detector_phi(&d, UINT64_MAX);
    CHECK(!isnan(p) && p >= t.phi_threshold);
    /* A time before the last arrival is no silence at all. */
    p = hb_detector_phi(&d, last - 50 * MS);
    CHECK(!isnan(p) && p >= 0.0 && p < 0.01);

    /* Clock values close to the top of uint64: saturate, never wrap. */
    for (int kind = 0; kind <= 1; kind++) {
        hb_timing tk = phi_timing(100000);
        tk.detector = kind;
        CHECK_EQ(hb_detector_init(&d, &tk), 0);
        uint64_t top = UINT64_MAX - 5 * 100000 * US * 40;
        for (int i = 0; i < 40; i++)
            hb_detector_heartbeat(&d, top + (uint64_t)i * 100000 * US);
        hb_detector_heartbeat(&d, UINT64_MAX - 10 * US);
        CHECK_EQ(hb_detector_late_at(&d), UINT64_MAX);
        CHECK_EQ(hb_detector_down_at(&d), UINT64_MAX);
        CHECK(!isnan(hb_detector_phi(&d, UINT64_MAX)));
    }

    /* An inter-arrival of ~292 years saturates the uint32 sample. */
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    hb_detector_heartbeat(&d, 1);
    hb_detector_heartbeat(&d, UINT64_MAX / 2);
    CHECK_EQ(d.n, 1);
    CHECK_EQ(d.samples[0], UINT32_MAX);
    double m, s;
    hb_detector_stats(&d, &m, &s);
    CHECK(m == (double)UINT32_MAX && s == 0.0);
    CHECK(!isnan(hb_detector_phi(&d, UINT64_MAX)));

    /* Maximal timings: down_at saturates too. */
    hb_timing_defaults(&t, UINT32_MAX);
    t.detector = HB_DETECTOR_PHI;
    t.phi_acceptable_pause_us = UINT32_MAX;
    t.phi_min_std_us = UINT32_MAX;
    t.phi_min_samples = 1;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    hb_detector_heartbeat(&d, UINT64_MAX - 2 * SEC);
    hb_detector_heartbeat(&d, UINT64_MAX - SEC);
    CHECK_EQ(hb_detector_down_at(&d), UINT64_MAX);
    CHECK_EQ(hb_detector_late_at(&d), UINT64_MAX);
}

static void test_equal_and_backward_clock(void)
{
    hb_timing t = phi_timing(100000);
    hb_detector d;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    uint64_t last = feed_regular(&d, 20, 100000);
    uint32_t n = d.n;

    /* Same nanosecond twice (one receive batch): a zero sample. */
    hb_detector_heartbeat(&d, last);
    CHECK_EQ(d.n, n + 1);
    CHECK_EQ(d.samples[(d.head + t.phi_window - 1) % t.phi_window], 0);
    CHECK_EQ(d.last_ns, last);
    double p = hb_detector_phi(&d, last);
    CHECK(!isnan(p) && p >= 0.0);
    CHECK(hb_detector_down_at(&d) > last);

    /* Going backwards: ignored, last does not move back. */
    hb_detector_heartbeat(&d, last - 30 * MS);
    CHECK_EQ(d.n, n + 1);
    CHECK_EQ(d.last_ns, last);

    /* Sub-microsecond inter-arrivals round to the nearest microsecond. */
    hb_detector_heartbeat(&d, last + 1499);
    CHECK_EQ(d.samples[(d.head + t.phi_window - 1) % t.phi_window], 1);
    hb_detector_heartbeat(&d, last + 1499 + 1500);
    CHECK_EQ(d.samples[(d.head + t.phi_window - 1) % t.phi_window], 2);

    /* min std 0 and identical samples: a step, never NaN. */
    t.phi_min_std_us = 0;
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    last = feed_regular(&d, 40, 100000);
    CHECK(hb_detector_phi(&d, last) == 0.0);
    CHECK(hb_detector_phi(&d, last + 100 * MS - US) == 0.0);
    CHECK(isinf(hb_detector_phi(&d, last + 100 * MS)));
    CHECK_EQ(hb_detector_down_at(&d), last + 100 * MS);

    /* All samples zero, std 0, floor 0: mean 0, still no NaN. */
    CHECK_EQ(hb_detector_init(&d, &t), 0);
    for (int i = 0; i < 40; i++)
        hb_detector_heartbeat(&d, T0);
    CHECK_EQ(d.n, 39);
    CHECK(!isnan(hb_detector_phi(&d, T0)));
    CHECK(isinf(hb_detector_phi(&d, T0)));
    CHECK_EQ(hb_detector_down_at(&d), T0);
    CHECK_EQ(hb_detector_late_at(&d), T0);
}

HB_TEST_MAIN(test_defaults, test_validate_rejects, test_never_heard,
             test_fixed_timing, test_phi_regular_jitter, test_phi_min_std_floor,
             test_phi_acceptable_pause, test_phi_min_samples, test_ring_wrap,
             test_phi_z, test_huge_silence, test_equal_and_backward_clock)
