/*
 * shim.h - run the bsd backend (src_c/platform/bsd: bpf(4), kqueue(2),
 * getifaddrs AF_LINK) on Linux, for its tests.
 *
 * How it works: CMake builds libheart_bsd_shim.so from the core, the bsd
 * backend and the .c files of tests/shim/bsd.  Only the backend's sources
 * get this file force-included (-include), and every source of that
 * library finds tests/shim/bsd/include first, which supplies the BSD
 * headers Linux lacks (net/bpf.h, net/if_dl.h, sys/event.h; nothing Linux
 * has is shadowed).
 * Below, the calls the backend makes on BSD objects are renamed to
 * hb_shim_* (function-like macros: only calls and declarations are
 * touched, not struct kevent or member names).  The shim's own .c files do
 * not see this file, so there open, read, ... are Linux's:
 *
 *   open("/dev/bpf"), open("/dev/bpfN")  an AF_PACKET socket, remembered
 *                          as a bpf device; other paths: the real open
 *   ioctl, read, write    BIOC* requests, bpf_hdr records, whole frames on
 *                          those; pass through for any other descriptor
 *   close                 forgets the device / kqueue, then closes
 *   getifaddrs            Linux's list plus AF_LINK sockaddr_dl entries
 *   kqueue, kevent        epoll + one timerfd per timer
 *
 * The system headers are included first, so that their declarations of
 * these functions are not renamed.
 */
#ifndef HEART_SHIM_BSD_SHIM_H
#define HEART_SHIM_BSD_SHIM_H

#include <sys/types.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <time.h>
#include <unistd.h>

struct kevent;

int hb_shim_open(const char *path, int flags, ...);
int hb_shim_close(int fd);
ssize_t hb_shim_read(int fd, void *buf, size_t n);
ssize_t hb_shim_write(int fd, const void *buf, size_t n);
int hb_shim_ioctl(int fd, unsigned long request, ...);
int hb_shim_getifaddrs(struct ifaddrs **out);
void hb_shim_freeifaddrs(struct ifaddrs *ifa);
int hb_shim_kqueue(void);
int hb_shim_kevent(int kq, const struct kevent *changelist, int nchanges,
                   struct kevent *eventlist, int nevents,
                   const struct timespec *timeout);

/* The shim's own sources include this file for the prototypes only. */
#ifndef HB_SHIM_IMPL
#define open(...) hb_shim_open(__VA_ARGS__)
#define close(...) hb_shim_close(__VA_ARGS__)
#define read(...) hb_shim_read(__VA_ARGS__)
#define write(...) hb_shim_write(__VA_ARGS__)
#define ioctl(...) hb_shim_ioctl(__VA_ARGS__)
#define getifaddrs(...) hb_shim_getifaddrs(__VA_ARGS__)
#define freeifaddrs(...) hb_shim_freeifaddrs(__VA_ARGS__)
#define kqueue(...) hb_shim_kqueue(__VA_ARGS__)
#define kevent(...) hb_shim_kevent(__VA_ARGS__)
#endif

#endif /* HEART_SHIM_BSD_SHIM_H */
