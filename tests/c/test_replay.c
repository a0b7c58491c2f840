/*
 * test_replay.c - the per-peer replay window (hb_replay_check/update).
 */
#include "heart/heart.h"

#include "hbtest.h"

/* check, and on success update: what the engine does for an authenticated
 * packet.  Returns check's verdict. */
static int take(hb_replay *r, uint64_t gen, uint64_t seq)
{
    int rc = hb_replay_check(r, gen, seq);
    if (rc == 0)
        hb_replay_update(r, gen, seq);
    return rc;
}

static void test_first_packet(void)
{
    hb_replay r;
    memset(&r, 0, sizeof r);
    CHECK_EQ(hb_replay_check(&r, 5, 0), -HB_REJ_REPLAY); /* seq 0 never */
    CHECK_EQ(hb_replay_check(&r, 5, 100), 0);
    CHECK_EQ(r.valid, 0); /* check changes nothing */
    CHECK_EQ(hb_replay_update(&r, 5, 100), 0); /* first contact: no restart */
    CHECK_EQ(r.valid, 1);
    CHECK_EQ(r.generation, 5);
    CHECK_EQ(r.max_seq, 100);
    CHECK_EQ(r.seen, 1);
    /* any generation, even 0, is acceptable to an empty window */
    hb_replay z;
    memset(&z, 0, sizeof z);
    CHECK_EQ(take(&z, 0, 1), 0);
    CHECK_EQ(take(&z, 0, 1), -HB_REJ_REPLAY);
}

static void test_in_order_and_duplicates(void)
{
    hb_replay r;
    memset(&r, 0, sizeof r);
    for (uint64_t s = 1; s <= 1000; s++) {
        CHECK_EQ(take(&r, 1, s), 0);
        CHECK_EQ(hb_replay_check(&r, 1, s), -HB_REJ_REPLAY);
    }
    CHECK_EQ(r.max_seq, 1000);
    /* every one of the last 64 is a duplicate; older ones too old */
    for (uint64_t s = 1; s <= 1000; s++)
        CHECK_EQ(hb_replay_check(&r, 1, s), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 1, 1001), 0);
    CHECK_EQ(hb_replay_check(&r, 1, 0), -HB_REJ_REPLAY);
}

static void test_reorder_inside_window(void)
{
    hb_replay r;
    memset(&r, 0, sizeof r);
    CHECK_EQ(take(&r, 3, 100), 0);
    /* 99..37 are within the window (behind 1..63): each accepted once */
    CHECK_EQ(take(&r, 3, 37), 0);
    CHECK_EQ(take(&r, 3, 37), -HB_REJ_REPLAY);
    CHECK_EQ(take(&r, 3, 99), 0);
    CHECK_EQ(take(&r, 3, 99), -HB_REJ_REPLAY);
    CHECK_EQ(take(&r, 3, 70), 0);
    CHECK_EQ(r.max_seq, 100); /* older packets do not move the window */
    /* the boundary: max_seq - 63 is inside, max_seq - 64 is too old */
    CHECK_EQ(hb_replay_check(&r, 3, 36), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 3, 38), 0);
    /* jump ahead by 10: the old bits shift, 37/70/99 stay seen */
    CHECK_EQ(take(&r, 3, 110), 0);
    CHECK_EQ(hb_replay_check(&r, 3, 99), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 3, 70), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 3, 100), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 3, 47), 0);        /* behind 63: inside */
    CHECK_EQ(hb_replay_check(&r, 3, 46), -HB_REJ_REPLAY); /* behind 64 */
    CHECK_EQ(hb_replay_check(&r, 3, 37), -HB_REJ_REPLAY); /* now too old */
    CHECK_EQ(hb_replay_check(&r, 3, 105), 0);       /* gap, never seen */
    CHECK_EQ(take(&r, 3, 105), 0);
    CHECK_EQ(take(&r, 3, 105), -HB_REJ_REPLAY);
}

static void test_reverse_order_fills_window(void)
{
    hb_replay r;
    memset(&r, 0, sizeof r);
    CHECK_EQ(take(&r, 1, 64), 0);
    for (uint64_t s = 63; s >= 1; s--)
        CHECK_EQ(take(&r, 1, s), 0);
    CHECK_EQ(r.seen, UINT64_MAX);
    for (uint64_t s = 1; s <= 64; s++)
        CHECK_EQ(hb_replay_check(&r, 1, s), -HB_REJ_REPLAY);
}

static void test_large_jump(void)
{
    hb_replay r;
    memset(&r, 0, sizeof r);
    CHECK_EQ(take(&r, 1, 10), 0);
    CHECK_EQ(take(&r, 1, 9), 0);
    /* jump by exactly 64 and by much more: the bitmap restarts cleanly */
    CHECK_EQ(take(&r, 1, 74), 0);
    CHECK_EQ(r.seen, 1);
    CHECK_EQ(hb_replay_check(&r, 1, 11), 0);  /* behind 63, never seen */
    CHECK_EQ(hb_replay_check(&r, 1, 10), -HB_REJ_REPLAY); /* too old */
    CHECK_EQ(take(&r, 1, UINT64_MAX), 0);
    CHECK_EQ(r.seen, 1);
    CHECK_EQ(hb_replay_check(&r, 1, UINT64_MAX), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 1, UINT64_MAX - 1), 0);
    CHECK_EQ(hb_replay_check(&r, 1, UINT64_MAX - 64), -HB_REJ_REPLAY);
}

static void test_generations(void)
{
    hb_replay r;
    memset(&r, 0, sizeof r);
    CHECK_EQ(take(&r, 7, 500), 0);
    /* older generation: replay, even with a higher sequence */
    CHECK_EQ(hb_replay_check(&r, 6, 501), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 0, 1), -HB_REJ_REPLAY);
    /* newer generation (peer restarted): acceptable, even with seq 1 */
    CHECK_EQ(hb_replay_check(&r, 8, 1), 0);
    CHECK_EQ(hb_replay_update(&r, 8, 1), 1); /* reports the restart */
    CHECK_EQ(r.generation, 8);
    CHECK_EQ(r.max_seq, 1);
    CHECK_EQ(r.seen, 1);
    CHECK_EQ(hb_replay_update(&r, 8, 2), 0);
    /* the previous generation is dead for good now */
    CHECK_EQ(hb_replay_check(&r, 7, 501), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 8, 2), -HB_REJ_REPLAY);
    CHECK_EQ(hb_replay_check(&r, 8, 3), 0);
    /* a jump of several generations is still a restart */
    CHECK_EQ(hb_replay_update(&r, 1000, 5), 1);
    CHECK_EQ(hb_replay_check(&r, 999, 6), -HB_REJ_REPLAY);
}

static void test_update_misuse_cannot_rewind(void)
{
    hb_replay r;
    memset(&r, 0, sizeof r);
    CHECK_EQ(take(&r, 5, 200), 0);
    hb_replay before = r;
    /* updates that check would have refused change nothing */
    CHECK_EQ(hb_replay_update(&r, 4, 300), 0);
    CHECK_EQ(hb_replay_update(&r, 5, 0), 0);
    CHECK_EQ(hb_replay_update(&r, 5, 100), 0); /* too old */
    CHECK(memcmp(&before, &r, sizeof r) == 0);
    /* a duplicate update is harmless */
    CHECK_EQ(hb_replay_update(&r, 5, 200), 0);
    CHECK(memcmp(&before, &r, sizeof r) == 0);
}

/* Against a straightforward model: a set of accepted sequences. */
static void test_against_model(void)
{
    enum { SPAN = 400 };
    static unsigned char accepted[SPAN + 200];
    uint64_t x = 0x243f6a8885a308d3ull;
    hb_replay r;
    memset(&r, 0, sizeof r);
    memset(accepted, 0, sizeof accepted);
    uint64_t max = 0;
    int mismatches = 0;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* sequences drift upward, with reordering up to ~100 back */
        uint64_t base = (uint64_t)i / 50 + 1;
        uint64_t seq = base + (x % 100);
        if (seq >= sizeof accepted)
            seq = sizeof accepted - 1;
        int want;
        if (max == 0 || seq > max)
            want = 0;
        else if (max - seq >= HB_REPLAY_WINDOW)
            want = -HB_REJ_REPLAY;
        else
            want = accepted[seq] ? -HB_REJ_REPLAY : 0;
        int got = take(&r, 1, seq);
        if (got != want)
            mismatches++;
        if (got == 0) {
            accepted[seq] = 1;
            if (seq > max)
                max = seq;
        }
    }
    CHECK_EQ(mismatches, 0);
    CHECK_EQ(r.max_seq, max);
}

static void test_util(void)
{
    uint64_t a = hb_now_ns();
    uint64_t b = hb_now_ns();
    CHECK(a > 0);
    CHECK(b >= a);
    CHECK(strcmp(hb_reject_name(HB_REJ_MALFORMED), "malformed") == 0);
    CHECK(strcmp(hb_reject_name(HB_REJ_WRONG_CLUSTER), "wrong_cluster") == 0);
    CHECK(strcmp(hb_reject_name(HB_REJ_UNKNOWN_NODE), "unknown_node") == 0);
    CHECK(strcmp(hb_reject_name(HB_REJ_UNKNOWN_KEY), "unknown_key") == 0);
    CHECK(strcmp(hb_reject_name(HB_REJ_BAD_TAG), "bad_tag") == 0);
    CHECK(strcmp(hb_reject_name(HB_REJ_REPLAY), "replay") == 0);
    CHECK(strcmp(hb_reject_name(0), "?") == 0);
    CHECK(strcmp(hb_reject_name(HB_REJ_COUNT), "?") == 0);
    CHECK(strcmp(hb_reject_name(-1), "?") == 0);
}

HB_TEST_MAIN(test_first_packet, test_in_order_and_duplicates,
             test_reorder_inside_window, test_reverse_order_fills_window,
             test_large_jump, test_generations,
             test_update_misuse_cannot_rewind, test_against_model, test_util)
