/*
 * replay.c - the per-peer replay window (docs/protocol.md, "Replay").
 *
 * A peer's packets carry (generation, seq).  The window remembers the
 * highest accepted seq of the current generation (max_seq) and, as a bitmap,
 * which of the HB_REPLAY_WINDOW sequences max_seq, max_seq-1, ...,
 * max_seq-63 were accepted (bit i <=> max_seq - i).  Packets may arrive out
 * of order (several links, different paths) as long as they are less than
 * HB_REPLAY_WINDOW behind the newest; each (generation, seq) is accepted at
 * most once.
 *
 * hb_replay_check runs before the tag check and changes nothing;
 * hb_replay_update runs after it, only for authenticated packets, so a forged
 * packet can never move the window.
 */
#include "internal.h"

/* The window is one uint64_t bitmap. */
_Static_assert(HB_REPLAY_WINDOW == 64, "hb_replay.seen holds exactly 64 bits");

int hb_replay_check(const hb_replay *r, uint64_t generation, uint64_t seq)
{
    if (seq == 0)
        return -HB_REJ_REPLAY; /* no sender ever uses sequence 0 */
    if (!r->valid)
        return 0;
    if (generation < r->generation)
        return -HB_REJ_REPLAY; /* from before the peer's last restart */
    if (generation > r->generation)
        return 0; /* the peer restarted */
    if (seq > r->max_seq)
        return 0;
    uint64_t behind = r->max_seq - seq;
    if (behind >= HB_REPLAY_WINDOW)
        return -HB_REJ_REPLAY; /* too old to tell: reject */
    if ((r->seen >> behind) & 1u)
        return -HB_REJ_REPLAY; /* duplicate */
    return 0;
}

/*
 * Record an authenticated (generation, seq).  Returns 1 when a window that
 * already had a generation moved to a higher one (the peer restarted), 0
 * otherwise - including for the very first packet of a peer, which is not a
 * restart (the caller sees that from r->valid == 0 before the call).
 *
 * Callers call hb_replay_check first; a (generation, seq) that check would
 * reject leaves the window unchanged here too, so a misuse cannot rewind it.
 */
int hb_replay_update(hb_replay *r, uint64_t generation, uint64_t seq)
{
    if (seq == 0)
        return 0;
    if (!r->valid || generation > r->generation) {
        int restarted = r->valid;
        r->generation = generation;
        r->max_seq = seq;
        r->seen = 1;
        r->valid = 1;
        return restarted;
    }
    if (generation < r->generation)
        return 0;
    if (seq > r->max_seq) {
        uint64_t shift = seq - r->max_seq;
        /* shifting a 64-bit value by >= 64 is undefined in C */
        r->seen = shift >= HB_REPLAY_WINDOW ? 1 : (r->seen << shift) | 1u;
        r->max_seq = seq;
        return 0;
    }
    uint64_t behind = r->max_seq - seq;
    if (behind < HB_REPLAY_WINDOW)
        r->seen |= (uint64_t)1 << behind;
    return 0;
}
