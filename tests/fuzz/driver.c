/*
 * driver.c - runs the fuzz target without libFuzzer: a main() for gcc builds
 * and for ctest, where it runs under AddressSanitizer + UBSan.
 *
 *   fuzz_wire [--seconds S] [--runs N] [--seed X] [--max-len L] [PATH ...]
 *
 * First every PATH is run once: a file is one input, a directory stands for
 * the files in it (not recursive, in name order).  Then inputs are made from
 * a pseudo-random generator seeded with X (default fixed): random bytes,
 * packet-shaped bytes, and mutations of the corpus files.  That goes on until
 * N inputs were made (default: no limit; 0: run the PATHs only, e.g. to
 * replay a crash) or S seconds passed (default 5; 0: no time limit, then
 * --runs is required).  For one seed the sequence of
 * inputs is always the same, so --runs N makes a run fully reproducible; with
 * only a time bound, how far along the sequence a run gets depends on speed.
 *
 * There is no coverage feedback here: this is a regression and smoke runner,
 * not a substitute for `make fuzz` (libFuzzer).  When an input breaks an
 * invariant (abort) or a sanitizer stops the process, the input is written
 * to ./crash-<hash> first; run `fuzz_wire crash-<hash>` to replay it.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SEED 0x4845415254f0221eull /* "HEART" ... */
#define MAX_FILE (1u << 20)
#define MAX_CORPUS 4096

/* ------------------------------------------------------------------ */
/* Saving the input that killed us                                    */
/* ------------------------------------------------------------------ */

static const uint8_t *volatile cur_data;
static volatile size_t cur_size;
static volatile sig_atomic_t saved;

/* Async-signal-safe: only open/write/close and arithmetic. */
static void save_current(void)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = cur_data;
    size_t n = cur_size;
    char name[32] = "crash-";
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

    if (saved || p == NULL)
        return;
    saved = 1;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    for (int i = 0; i < 16; i++)
        name[6 + i] = hex[(h >> (60 - 4 * i)) & 15];
    name[22] = '\0';
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(fd, p + off, n - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(fd);
    }
    static const char msg[] = "fuzz_wire: input saved as ";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    ignored = write(2, name, 22);
    ignored = write(2, "\n", 1);
    (void)ignored;
}

static void on_fatal_signal(int sig)
{
    save_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Provided by the sanitizer runtimes (gcc's and clang's); NULL without. */
extern void __sanitizer_set_death_callback(void (*callback)(void))
    __attribute__((weak));

/* gcc links UBSan's runtime apart from ASan's, so the death callback that
 * main() sets never hears of a UBSan error: make UBSan abort() instead, which the
 * SIGABRT handler sees.  UBSAN_OPTIONS in the environment still adds to this. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "abort_on_error=1";
}

/* Like libFuzzer, hand the target a heap copy of exactly size bytes, so that
 * ASan sees a read one byte past the input. */
static void run_one(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL) {
        fprintf(stderr, "fuzz_wire: out of memory\n");
        exit(1);
    }
    if (size > 0)
        memcpy(copy, data, size);
    cur_data = copy;
    cur_size = size;
    LLVMFuzzerTestOneInput(copy, size);
    cur_data = NULL;
    free(copy);
}

/* ------------------------------------------------------------------ */
/* Corpus                                                             */
/* ------------------------------------------------------------------ */

struct input {
    uint8_t *p;
    size_t n;
};

static struct input corpus[MAX_CORPUS]; /* kept for mutation */
static size_t n_corpus;
static size_t n_files; /* run, kept or not */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz_wire: %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(MAX_FILE);
    if (buf == NULL) {
        fclose(f);
        return -1;
    }
    size_t n = fread(buf, 1, MAX_FILE, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "fuzz_wire: reading %s failed\n", path);
        free(buf);
        return -1;
    }
    run_one(buf, n);
    n_files++;
    if (n_corpus < MAX_CORPUS) {
        uint8_t *keep = realloc(buf, n > 0 ? n : 1);
        corpus[n_corpus].p = keep != NULL ? keep : buf;
        corpus[n_corpus].n = n;
        n_corpus++;
    } else {
        free(buf);
    }
    return 0;
}

/* Runs every regular file of a directory, in name order. */
static int load_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "fuzz_wire: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (grown == NULL) {
                rc = -1;
                break;
            }
            names = grown;
        }
        size_t len = strlen(path) + strlen(de->d_name) + 2;
        names[n] = malloc(len);
        if (names[n] == NULL) {
            rc = -1;
            break;
        }
        snprintf(names[n], len, "%s/%s", path, de->d_name);
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode) &&
            load_file(names[i]) != 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Making inputs                                                      */
/* ------------------------------------------------------------------ */

static uint64_t rng;

static uint64_t next(void) /* splitmix64 */
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(size_t n)
{
    return n == 0 ? 0 : (size_t)(next() % n);
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)next();
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static const uint64_t interesting[] = {
    0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
    HB_HEARTBEAT_PAYLOAD_MAX, HB_HEARTBEAT_PAYLOAD_MAX + 1, HB_PAYLOAD_MAX,
    HB_PAYLOAD_MAX + 1, 0x7fffffff, 0x80000000u, 0xffffffffu,
    0x7fffffffffffffffull, 0x8000000000000000ull, UINT64_MAX,
    FUZZ_CLUSTER, HB_WIRE_MAGIC};

/* A datagram that passes the structural checks most of the time: magic,
 * version, a known type/alg/key, our cluster, a matching length field;
 * random ids, payload and tag, so the authentication path is exercised. */
static size_t make_packet_shaped(uint8_t *p, size_t cap)
{
    unsigned type = 1 + (unsigned)below(3);
    size_t limit = type == HB_MSG_HEARTBEAT ? HB_HEARTBEAT_PAYLOAD_MAX
                                            : HB_PAYLOAD_MAX;
    size_t plen = below(8) == 0 ? limit : below(limit + 1);
    size_t n = HB_WIRE_HEADER_LEN + plen + HB_WIRE_TAG_LEN;
    if (n > cap)
        return 0;
    fill_random(p, n);
    put_be(p, HB_WIRE_MAGIC, 4);
    p[4] = HB_WIRE_VERSION;
    p[5] = (uint8_t)type;
    p[6] = (uint8_t)(1 + below(2));
    p[7] = below(4) == 0 ? (uint8_t)next() : (uint8_t)(1 + below(2));
    put_be(p + 8, FUZZ_CLUSTER, 4);
    put_be(p + 36, plen, 2);
    put_be(p + 38, 0, 2);
    return n;
}

/* One random edit of p[0 .. n) (capacity cap); returns the new length. */
static size_t mutate_once(uint8_t *p, size_t n, size_t cap)
{
    switch (below(12)) {
    case 0: /* flip a bit */
        if (n > 0)
            p[below(n)] ^= (uint8_t)(1u << below(8));
        return n;
    case 1: /* random byte */
        if (n > 0)
            p[below(n)] = (uint8_t)next();
        return n;
    case 2: /* interesting value, 1/2/4/8 bytes big-endian */
    {
        int w = 1 << below(4);
        if (n >= (size_t)w)
            put_be(p + below(n - (size_t)w + 1),
                   interesting[below(sizeof interesting / sizeof *interesting)],
                   w);
        return n;
    }
    case 3: /* insert bytes */
    {
        size_t k = 1 + below(8), at = below(n + 1);
        if (n + k > cap)
            return n;
        memmove(p + at + k, p + at, n - at);
        fill_random(p + at, k);
        return n + k;
    }
    case 4: /* erase bytes */
    {
        if (n == 0)
            return n;
        size_t at = below(n), k = 1 + below(n - at < 16 ? n - at : 16);
        memmove(p + at, p + at + k, n - at - k);
        return n - k;
    }
    case 5: /* truncate */
        return below(n + 1);
    case 6: /* append random bytes */
    {
        size_t k = 1 + below(64);
        if (n + k > cap)
            k = cap - n;
        fill_random(p + n, k);
        return n + k;
    }
    case 7: /* copy a chunk within */
    {
        if (n < 2)
            return n;
        size_t from = below(n), to = below(n);
        size_t k = 1 + below(16);
        if (k > n - from)
            k = n - from;
        if (k > n - to)
            k = n - to;
        memmove(p + to, p + from, k);
        return n;
    }
    case 8: /* splice: the tail from another corpus input */
    {
        if (n_corpus == 0)
            return n;
        const struct input *o = &corpus[below(n_corpus)];
        size_t at = below(n + 1), from = below(o->n + 1);
        size_t k = o->n - from;
        if (at + k > cap)
            k = cap - at;
        memcpy(p + at, o->p + from, k);
        return at + k;
    }
    case 9: /* make the length field agree with the length */
        if (n >= HB_WIRE_HEADER_LEN + HB_WIRE_TAG_LEN)
            put_be(p + 36, n - HB_WIRE_HEADER_LEN - HB_WIRE_TAG_LEN, 2);
        return n;
    case 10: /* a small add/subtract on a byte */
        if (n > 0)
            p[below(n)] += (uint8_t)(below(33) - 16);
        return n;
    default: /* rewrite one header field byte with a valid-looking value */
        if (n > 7)
            p[4 + below(4)] = (uint8_t)below(4);
        return n;
    }
}

static size_t make_input(uint8_t *p, size_t cap)
{
    size_t n;
    unsigned how = (unsigned)below(8);
    if (n_corpus > 0 && how < 5) {
        const struct input *c = &corpus[below(n_corpus)];
        n = c->n < cap ? c->n : cap;
        memcpy(p, c->p, n);
    } else if (how < 7) {
        n = make_packet_shaped(p, cap);
    } else {
        n = below(8) == 0 ? below(cap + 1) : below(128);
        fill_random(p, n);
        return n;
    }
    for (size_t k = 1 + below(below(2) ? 2 : 8); k > 0; k--)
        n = mutate_once(p, n, cap);
    return n;
}

/* ------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: fuzz_wire [--seconds S] [--runs N] [--seed X] "
            "[--max-len L] [FILE|DIR ...]\n");
}

static int parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 0);
    return errno == 0 && end != s && *end == '\0' ? 0 : -1;
}

int main(int argc, char **argv)
{
    double seconds = 5;
    unsigned long long seed = DEFAULT_SEED, max_len = 4096;
    long long runs = -1; /* no limit */
    int rc = 0;

    /* abort(): a broken invariant.  Under a sanitizer its own report comes
     * first and then the death callback saves the input; without one, the
     * crash signals are ours to catch. */
    signal(SIGABRT, on_fatal_signal);
    if (__sanitizer_set_death_callback != NULL) {
        __sanitizer_set_death_callback(save_current);
    } else {
        signal(SIGSEGV, on_fatal_signal);
        signal(SIGBUS, on_fatal_signal);
        signal(SIGFPE, on_fatal_signal);
    }

    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc) {
            usage();
            return 2;
        }
        const char *val = argv[++i];
        unsigned long long v;
        char *end;
        if (strcmp(opt, "--seconds") == 0) {
            seconds = strtod(val, &end);
            if (end == val || *end != '\0' || seconds < 0) {
                usage();
                return 2;
            }
        } else if (parse_u64(val, &v) != 0) {
            usage();
            return 2;
        } else if (strcmp(opt, "--runs") == 0 && v <= LLONG_MAX) {
            runs = (long long)v;
        } else if (strcmp(opt, "--seed") == 0) {
            seed = v;
        } else if (strcmp(opt, "--max-len") == 0 && v > 0 && v <= MAX_FILE) {
            max_len = v;
        } else {
            usage();
            return 2;
        }
    }
    if (seconds == 0 && runs < 0) {
        fprintf(stderr, "fuzz_wire: --seconds 0 needs --runs N\n");
        return 2;
    }

    double t0 = now_s();
    for (; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "fuzz_wire: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
        } else if (S_ISDIR(st.st_mode) ? load_dir(argv[i]) != 0
                                       : load_file(argv[i]) != 0) {
            rc = 1;
        }
    }
    double t1 = now_s();

    uint8_t *buf = malloc(max_len);
    if (buf == NULL)
        return 1;
    rng = seed;
    unsigned long long made = 0;
    while (runs < 0 || made < (unsigned long long)runs) {
        if (seconds > 0 && (made & 15) == 0 && now_s() - t1 >= seconds)
            break;
        size_t n = make_input(buf, max_len);
        run_one(buf, n);
        made++;
    }
    double t2 = now_s();
    free(buf);

    const struct fuzz_wire_stats *s = &fuzz_wire_stats;
    printf("fuzz_wire: seed %#llx: %zu corpus inputs in %.2f s, %llu made "
           "inputs in %.2f s (%.0f exec/s)\n",
           seed, n_files, t1 - t0, made, t2 - t1,
           t2 > t1 ? (double)made / (t2 - t1) : 0.0);
    printf("fuzz_wire: %llu inputs: %llu parsed, %llu authenticated as is; "
           "%llu sealed, %llu unchanged after mutation, rejected after "
           "mutation: malformed %llu, wrong_cluster %llu, unknown_key %llu, "
           "bad_tag %llu; %llu rotation checks; %llu replay checks, %llu "
           "accepted\n",
           (unsigned long long)s->inputs, (unsigned long long)s->raw_parsed,
           (unsigned long long)s->raw_accepted, (unsigned long long)s->sealed,
           (unsigned long long)s->mutated_same,
           (unsigned long long)s->mutated_rejected[HB_REJ_MALFORMED],
           (unsigned long long)s->mutated_rejected[HB_REJ_WRONG_CLUSTER],
           (unsigned long long)s->mutated_rejected[HB_REJ_UNKNOWN_KEY],
           (unsigned long long)s->mutated_rejected[HB_REJ_BAD_TAG],
           (unsigned long long)s->rotations,
           (unsigned long long)s->replay_ops,
           (unsigned long long)s->replay_accepted);

    for (size_t k = 0; k < n_corpus; k++)
        free(corpus[k].p);
    fuzz_wire_cleanup();
    return rc;
}
