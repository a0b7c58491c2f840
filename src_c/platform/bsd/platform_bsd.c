/*
 * platform_bsd.c - the rest of the bsd backend (FreeBSD, OpenBSD, NetBSD,
 * DragonFly, macOS): its name, the engine thread's name, and the portable
 * notifier (a pipe) and datagram I/O (one recvfrom / sendto per datagram,
 * MSG_CONFIRM ignored where the system has none) from core/portable.c.
 * The loop is loop_kqueue.c, raw frames eth_bpf.c.
 */
#define HB_FORWARD_NOTIFY
#define HB_FORWARD_DGRAM
#include "portable_forward.h"

#include <pthread.h>
#if defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
#include <pthread_np.h>
#endif

#define THREAD_NAME "heart-engine"

const char *hb_platform_name(void)
{
    return "bsd";
}

void hb_platform_thread_setup(void)
{
#if defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
    /* FreeBSD, OpenBSD, DragonFly: <pthread_np.h> */
    pthread_set_name_np(pthread_self(), THREAD_NAME);
#elif defined(__APPLE__)
    /* macOS: names the calling thread only */
    (void)pthread_setname_np(THREAD_NAME);
#elif defined(__NetBSD__)
    /* NetBSD: a printf format and its one argument */
    (void)pthread_setname_np(pthread_self(), "%s", (void *)THREAD_NAME);
#else
    /* anything else (the Linux shim build): nothing portable to do */
    hb_portable_thread_setup();
#endif
}
