/*
 * detector.c - per-peer failure detectors: fixed timing (heartbeat's
 * warntime/deadtime) and phi accrual (Hayashibara et al.) with a normal
 * distribution over a window of inter-arrival times.
 *
 * The window keeps the last phi_window inter-arrival times, in microseconds,
 * in a ring with a running sum and sum of squares; the sums are recomputed
 * from the ring every time the ring's head wraps (every phi_window samples)
 * so floating-point drift cannot accumulate.
 *
 * down_at for phi needs no search at run time: phi(t) >= threshold exactly
 * when (elapsed - m) / s >= z, where z depends on the threshold alone.  z is
 * found once in hb_detector_init (phi_z) and down_at = last + m + z * s.
 *
 * Nothing here allocates, locks or reads a clock: the caller passes times.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define HB_SQRT2 1.41421356237309504880
#define HB_MIN_STD_FLOOR_US 100u

/* ------------------------------------------------------------------ */
/* Timing                                                             */
/* ------------------------------------------------------------------ */

static uint32_t sat_u32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static uint64_t sat_add_u64(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void hb_timing_defaults(hb_timing *t, uint32_t interval_us)
{
    if (!t)
        return;
    memset(t, 0, sizeof *t);
    uint64_t i = interval_us;
    t->interval_us = interval_us;
    /* Four missed heartbeats before a peer is declared down. */
    t->deadtime_us = sat_u32(4 * i);
    t->warntime_us = sat_u32(2 * i);
    /* Only for absurd intervals (> ~35 min) does saturation make warntime
     * reach deadtime; keep the defaults valid for every nonzero interval. */
    if (t->warntime_us >= t->deadtime_us && t->deadtime_us > 1)
        t->warntime_us = t->deadtime_us - 1;
    t->initdead_us = sat_u32(2 * (uint64_t)t->deadtime_us);
    t->detector = HB_DETECTOR_FIXED;
    t->phi_threshold = 8.0;
    t->phi_min_std_us = interval_us / 4 < HB_MIN_STD_FLOOR_US
                            ? HB_MIN_STD_FLOOR_US
                            : interval_us / 4;
    t->phi_acceptable_pause_us = 0;
    t->phi_window = 256;
    t->phi_min_samples = 16;
}

int hb_timing_validate(const hb_timing *t)
{
    if (!t)
        return -EINVAL;
    if (t->interval_us == 0)
        return -EINVAL;
    if (t->warntime_us == 0 || t->warntime_us >= t->deadtime_us)
        return -EINVAL;
    if (t->deadtime_us < t->interval_us)
        return -EINVAL;
    if (t->initdead_us < t->deadtime_us)
        return -EINVAL;
    if (t->detector != HB_DETECTOR_FIXED && t->detector != HB_DETECTOR_PHI)
        return -EINVAL;
    if (t->detector == HB_DETECTOR_PHI &&
        (!isfinite(t->phi_threshold) || !(t->phi_threshold > 0.0)))
        return -EINVAL;
    /* The window also feeds the statistics in fixed mode: always checked. */
    if (t->phi_window == 0 || t->phi_window > HB_DETECTOR_WINDOW_MAX)
        return -EINVAL;
    if (t->phi_min_samples > t->phi_window)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Normal tail                                                        */
/* ------------------------------------------------------------------ */

/* phi for a z-score: -log10(P(Z > z)), Z standard normal.  0 for P == 1,
 * +inf when P underflows to 0; never NaN for finite or infinite z. */
static double phi_of_z(double z)
{
    if (isnan(z))
        return 0.0;
    double p = 0.5 * erfc(z / HB_SQRT2);
    if (!(p > 0.0))
        return (double)INFINITY;
    if (p >= 1.0)
        return 0.0;
    double phi = -log10(p);
    return phi > 0.0 ? phi : 0.0;
}

/* Smallest z (to ~1e-12) with phi_of_z(z) >= threshold.  phi_of_z is 0 at
 * z = -40 and +inf at z = 40 (erfc underflows near z = 37.5), so for every
 * threshold > 0 the crossing lies inside; thresholds beyond the largest
 * finite phi land on the underflow edge, where phi jumps to +inf. */
static double z_for_threshold(double threshold)
{
    double lo = -40.0, hi = 40.0;
    for (int i = 0; i < 200 && hi - lo > 1e-12; i++) {
        double mid = 0.5 * (lo + hi);
        if (phi_of_z(mid) >= threshold)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

/* ------------------------------------------------------------------ */
/* Window                                                             */
/* ------------------------------------------------------------------ */

static void window_recompute(hb_detector *d)
{
    double sum = 0.0, sumsq = 0.0;
    for (uint32_t i = 0; i < d->n; i++) {
        double v = (double)d->samples[i];
        sum += v;
        sumsq += v * v;
    }
    d->sum = sum;
    d->sumsq = sumsq;
}

static void window_push(hb_detector *d, uint32_t sample_us)
{
    uint32_t w = d->t.phi_window;
    if (w == 0 || w > HB_DETECTOR_WINDOW_MAX)
        return; /* not initialised by hb_detector_init */
    if (d->head >= w)
        d->head = 0;
    if (d->n >= w) {
        double old = (double)d->samples[d->head];
        d->sum -= old;
        d->sumsq -= old * old;
        d->n = w;
    } else {
        d->n++;
    }
    double v = (double)sample_us;
    d->samples[d->head] = sample_us;
    d->sum += v;
    d->sumsq += v * v;
    if (++d->head == w) {
        /* Samples live in [0, n) in both the filling and the full ring. */
        d->head = 0;
        window_recompute(d);
    }
}

static void window_stats(const hb_detector *d, double *mean, double *std)
{
    if (d->n == 0) {
        *mean = 0.0;
        *std = 0.0;
        return;
    }
    double n = (double)d->n;
    double m = d->sum / n;
    if (!(m > 0.0))
        m = 0.0;
    double var = d->sumsq / n - m * m;
    if (!(var > 0.0)) /* rounding can make it slightly negative */
        var = 0.0;
    *mean = m;
    *std = sqrt(var);
}

/* Mean (plus acceptable pause) and floored std used by phi, microseconds. */
static void phi_params(const hb_detector *d, double *m, double *s)
{
    double mean, std;
    window_stats(d, &mean, &std);
    double floor_us = (double)d->t.phi_min_std_us;
    *m = mean + (double)d->t.phi_acceptable_pause_us;
    *s = std > floor_us ? std : floor_us;
}

/* Phi rules down_at once the window holds this many samples (at least one:
 * an empty window has no distribution). */
static uint32_t phi_needed(const hb_detector *d)
{
    return d->t.phi_min_samples > 0 ? d->t.phi_min_samples : 1;
}

/* ------------------------------------------------------------------ */
/* Detector                                                           */
/* ------------------------------------------------------------------ */

int hb_detector_init(hb_detector *d, const hb_timing *t)
{
    if (!d || !t)
        return -EINVAL;
    int rc = hb_timing_validate(t);
    if (rc < 0)
        return rc;
    memset(d, 0, sizeof *d);
    d->t = *t;
    /* In fixed mode the threshold is not validated and phi_z is unused. */
    if (isfinite(t->phi_threshold) && t->phi_threshold > 0.0)
        d->phi_z = z_for_threshold(t->phi_threshold);
    else
        d->phi_z = 0.0;
    return 0;
}

void hb_detector_heartbeat(hb_detector *d, uint64_t now_ns)
{
    if (!d)
        return;
    if (now_ns == 0)
        now_ns = 1; /* last_ns == 0 means "never heard" */
    if (d->last_ns == 0) {
        d->last_ns = now_ns;
        return;
    }
    if (now_ns < d->last_ns)
        return; /* out of order: no negative inter-arrival, last never moves back */
    uint64_t delta_ns = now_ns - d->last_ns;
    /* Round to the nearest microsecond without overflowing. */
    uint64_t us = delta_ns / HB_NS_PER_US + (delta_ns % HB_NS_PER_US >= 500 ? 1 : 0);
    window_push(d, sat_u32(us));
    d->last_ns = now_ns;
}

double hb_detector_phi(const hb_detector *d, uint64_t now_ns)
{
    if (!d || d->last_ns == 0 || d->n == 0)
        return 0.0;
    double elapsed_us =
        now_ns > d->last_ns ? (double)(now_ns - d->last_ns) / 1000.0 : 0.0;
    double m, s;
    phi_params(d, &m, &s);
    if (!(s > 0.0)) {
        /* Degenerate distribution (min std 0 and identical samples):
         * P(X > x) is 1 before the mean and 0 from it on. */
        return elapsed_us < m ? 0.0 : (double)INFINITY;
    }
    return phi_of_z((elapsed_us - m) / s);
}

uint64_t hb_detector_down_at(const hb_detector *d)
{
    if (!d || d->last_ns == 0)
        return 0;
    if (d->t.detector != HB_DETECTOR_PHI || d->n < phi_needed(d))
        return sat_add_u64(d->last_ns, (uint64_t)d->t.deadtime_us * HB_NS_PER_US);
    double m, s;
    phi_params(d, &m, &s);
    double dur_ns = (m + d->phi_z * s) * 1000.0;
    if (!(dur_ns > 0.0)) /* tiny thresholds give z < 0: down at once, not before */
        return d->last_ns;
    if (dur_ns >= 1.8e19) /* below 2^64, so the conversion below is defined */
        return UINT64_MAX;
    return sat_add_u64(d->last_ns, (uint64_t)ceil(dur_ns));
}

uint64_t hb_detector_late_at(const hb_detector *d)
{
    if (!d || d->last_ns == 0)
        return 0;
    uint64_t late = sat_add_u64(d->last_ns, (uint64_t)d->t.warntime_us * HB_NS_PER_US);
    if (d->t.detector == HB_DETECTOR_PHI) {
        uint64_t down = hb_detector_down_at(d);
        if (down < late)
            late = down;
    }
    return late;
}

void hb_detector_stats(const hb_detector *d, double *mean_us, double *std_us)
{
    double m = 0.0, s = 0.0;
    if (d)
        window_stats(d, &m, &s);
    if (mean_us)
        *mean_us = m;
    if (std_us)
        *std_us = s;
}
