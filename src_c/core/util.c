/*
 * util.c - small helpers every part of libheart uses: the monotonic clock
 * and the names of rejection causes.
 */
#include "internal.h"

#include <time.h>

uint64_t hb_now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid clock id and a valid
     * pointer; should it ever, 0 means "never" to every caller. */
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * HB_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

const char *hb_reject_name(int cause)
{
    switch (cause) {
    case HB_REJ_MALFORMED:
        return "malformed";
    case HB_REJ_WRONG_CLUSTER:
        return "wrong_cluster";
    case HB_REJ_UNKNOWN_NODE:
        return "unknown_node";
    case HB_REJ_UNKNOWN_KEY:
        return "unknown_key";
    case HB_REJ_BAD_TAG:
        return "bad_tag";
    case HB_REJ_REPLAY:
        return "replay";
    default:
        return "?";
    }
}
