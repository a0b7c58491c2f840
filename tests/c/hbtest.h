/*
 * hbtest.h - a tiny test harness for libheart's C tests (ctest runs each
 * test_*.c as its own executable).  A failed CHECK prints file:line and the
 * expression and marks the test failed; the run goes on so one run shows all
 * failures.  main() is HB_TEST_MAIN(test_a, test_b, ...).
 */
#ifndef HEART_HBTEST_H
#define HEART_HBTEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hbt_failures;
static int hbt_checks;
static const char *hbt_current;

#define CHECK(expr)                                                           \
    do {                                                                      \
        hbt_checks++;                                                         \
        if (!(expr)) {                                                        \
            hbt_failures++;                                                   \
            fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__,        \
                    __LINE__, hbt_current, #expr);                            \
        }                                                                     \
    } while (0)

#define CHECK_EQ(a, b)                                                        \
    do {                                                                      \
        long long hbt_a_ = (long long)(a), hbt_b_ = (long long)(b);           \
        hbt_checks++;                                                         \
        if (hbt_a_ != hbt_b_) {                                               \
            hbt_failures++;                                                   \
            fprintf(stderr, "%s:%d: %s: CHECK_EQ failed: %s == %s (%lld != %lld)\n", \
                    __FILE__, __LINE__, hbt_current, #a, #b, hbt_a_, hbt_b_); \
        }                                                                     \
    } while (0)

typedef void (*hbt_fn)(void);

static inline int hbt_run(const char *names, hbt_fn *fns, int n)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", names);
    char *save = NULL;
    char *name = strtok_r(buf, ", ", &save);
    for (int i = 0; i < n; i++) {
        hbt_current = name ? name : "?";
        int before = hbt_failures;
        fns[i]();
        printf("%s %s\n", hbt_failures == before ? "ok  " : "FAIL", hbt_current);
        name = strtok_r(NULL, ", ", &save);
    }
    printf("%d checks, %d failed\n", hbt_checks, hbt_failures);
    return hbt_failures ? 1 : 0;
}

#define HB_TEST_MAIN(...)                                                     \
    int main(void)                                                            \
    {                                                                         \
        hbt_fn fns[] = {__VA_ARGS__};                                         \
        return hbt_run(#__VA_ARGS__, fns, (int)(sizeof fns / sizeof fns[0])); \
    }

#endif /* HEART_HBTEST_H */
