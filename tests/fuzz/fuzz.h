/*
 * fuzz.h - what the fuzz target (fuzz_wire.c) offers its two runners:
 * libFuzzer (clang -fsanitize=fuzzer, HEART_LIBFUZZER=ON) and driver.c, the
 * standalone main() that ctest runs under gcc + ASan/UBSan; and the corpus
 * generator (make_corpus.c), which seals its seeds with the target's keys.
 */
#ifndef HEART_FUZZ_H
#define HEART_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "heart/heart.h"

/* The cluster id of the target's receiver and of the seed packets. */
#define FUZZ_CLUSTER 0x00f0221eu

/* The libFuzzer entry point: always returns 0; a broken invariant abort()s
 * after printing what broke, so that libFuzzer and the sanitizers report it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The target's receiving keyring: key id 1 HMAC-SHA256, key id 2
 * AES-256-GCM, created at the first call.  The send key is whatever the
 * target last used; a caller that seals sets it first. */
hb_keyring *fuzz_wire_keyring(void);

/* Frees what the target allocated (the driver calls it before exiting, so
 * LeakSanitizer sees a clean exit; libFuzzer never does, which is fine). */
void fuzz_wire_cleanup(void);

/* What the inputs did, for the driver's summary line. */
struct fuzz_wire_stats {
    uint64_t inputs;
    uint64_t raw_parsed;    /* input parsed as a well-formed packet */
    uint64_t raw_accepted;  /* input authenticated as it is (a seed) */
    uint64_t sealed;        /* a packet was built from the input's prefix */
    uint64_t mutated_same;  /* the mutations left it unchanged: accepted */
    uint64_t mutated_rejected[HB_REJ_COUNT]; /* changed: rejected, by cause */
    uint64_t rotations;     /* key rotation / cache eviction checks */
    uint64_t replay_ops;    /* hb_replay_check calls */
    uint64_t replay_accepted;
};
extern struct fuzz_wire_stats fuzz_wire_stats;

#endif /* HEART_FUZZ_H */
