/*
 * eth_bpf.c - raw Ethernet frames through the Berkeley Packet Filter device
 * (bpf(4)) on FreeBSD, OpenBSD, NetBSD, DragonFly and macOS.
 *
 * One bpf descriptor per handle, attached to the interface (BIOCSETIF) with
 * a classic BPF program that lets through only what hb_frame_parse_claim
 * may care about: ARP, and ICMPv6 neighbour advertisements (IPv6 next
 * header 58 at byte 20, ICMPv6 type 136 at byte 54: no extension headers).
 * BPF sees 802.1Q tags inline, so a tagged frame has ethertype 0x8100 at
 * byte 12 and the program drops it.  Frames this host sends are not
 * delivered (BIOCSSEESENT 0 / BIOCSDIRECTION / BIOCSDIRFILT), and
 * hb_eth_recv drops any frame whose source MAC is ours as a backstop.
 *
 * read(2) on a bpf descriptor returns a buffer of records, each a struct
 * bpf_hdr followed by the captured bytes, the next record at
 * BPF_WORDALIGN(bh_hdrlen + bh_caplen); the buffer passed to read must be
 * exactly the size BIOCGBLEN reports.  hb_eth_recv keeps that buffer and
 * hands out one frame per call, reading again when it is used up: drain it
 * until -EAGAIN before polling hb_eth_fd again (records already read do not
 * keep the descriptor readable).
 */
#include "platform.h"

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <net/if_dl.h>
#include <net/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Ask for a buffer of this size (BIOCSBLEN, before BIOCSETIF); the kernel
 * may clamp it, and BIOCGBLEN says what we got. */
#define WANT_BUFLEN 32768u

#define ETHERTYPE_OFF 12

struct hb_eth {
    int fd;
    int ifindex;
    uint8_t mac[HB_ETH_ALEN];
    uint8_t *buf;  /* BIOCGBLEN bytes: the last read(2) */
    size_t blen;
    size_t pos;    /* next record in buf */
    size_t end;    /* bytes read into buf */
};

/* Accept ARP, and ICMPv6 type 136 in IPv6 with next header 58; drop the
 * rest, VLAN-tagged frames (ethertype 0x8100) included. */
static struct bpf_insn claim_filter[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, ETHERTYPE_OFF),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, HB_ETHERTYPE_ARP, 5, 0),
    /* 2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, HB_ETHERTYPE_IPV6, 0, 5),
    /* 3 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20),               /* next header */
    /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 58, 0, 3),        /* ICMPv6 */
    /* 5 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 54),               /* its type */
    /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 136, 0, 1),       /* NA */
    /* 7 */ BPF_STMT(BPF_RET | BPF_K, 0x40000),                   /* accept, whole */
    /* 8 */ BPF_STMT(BPF_RET | BPF_K, 0),                         /* drop */
};

/* Record which call failed, close fd (if open), return -err. */
static int fail(int fd, const char *call, int err)
{
    hb_eth_set_failed_call(call);
    if (fd >= 0)
        close(fd);
    return -err;
}

/* A bpf descriptor: the cloning device /dev/bpf (FreeBSD, NetBSD, OpenBSD,
 * DragonFly, recent macOS), else the first free /dev/bpfN (older systems,
 * macOS: each unit opens once, EBUSY while in use).  -errno on failure. */
static int open_bpf(void)
{
    int fd = open("/dev/bpf", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    if (errno != ENOENT && errno != EBUSY)
        return -errno;
    int err = ENOENT;
    for (int unit = 0; unit < 256; unit++) {
        char path[16];
        snprintf(path, sizeof path, "/dev/bpf%d", unit);
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            return fd;
        err = errno;
        if (err != EBUSY)
            break; /* ENOENT: no more units; EACCES: no privilege */
    }
    return -err;
}

/* The interface's link-level address from its AF_LINK entry: 0, -ENOTSUP
 * when it has none of 6 bytes, -errno when getifaddrs fails. */
static int link_address(const char *ifname, uint8_t mac[HB_ETH_ALEN])
{
    struct ifaddrs *ifa0;
    if (getifaddrs(&ifa0) < 0)
        return -errno;
    int rc = -ENOTSUP;
    for (struct ifaddrs *ifa = ifa0; ifa != NULL; ifa = ifa->ifa_next) {
        if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != AF_LINK ||
            strcmp(ifa->ifa_name, ifname) != 0)
            continue;
        const struct sockaddr_dl *sdl = (const struct sockaddr_dl *)(void *)ifa->ifa_addr;
        if (sdl->sdl_alen == HB_ETH_ALEN) {
            memcpy(mac, LLADDR(sdl), HB_ETH_ALEN);
            rc = 0;
        }
        break;
    }
    freeifaddrs(ifa0);
    return rc;
}

int hb_eth_open(const char *ifname, hb_eth **out)
{
    struct ifreq ifr;
    struct bpf_program prog;
    u_int one = 1;

    /* before the device: an unknown name needs no privilege to say so */
    unsigned ifindex;
    int rc = hb_eth_lookup(ifname, out, IFNAMSIZ, &ifindex);
    if (rc < 0)
        return rc;
    size_t n = strlen(ifname);

    int fd = open_bpf();
    if (fd < 0) {
        int err = -fd;
        /* the device node is root's (or group bpf's on macOS) */
        return fail(-1, "open(/dev/bpf)",
                    err == EACCES || err == EPERM ? EPERM : err);
    }

    /* Optional: a larger buffer, only before BIOCSETIF; the kernel clamps
     * it to its limits, so a failure just keeps the default. */
    u_int blen = WANT_BUFLEN;
    (void)ioctl(fd, BIOCSBLEN, &blen);

    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, ifname, n);
    if (ioctl(fd, BIOCSETIF, &ifr) < 0) {
        int err = errno;
        /* gone since if_nametoindex */
        return fail(fd, "ioctl(BIOCSETIF)", err == ENXIO ? ENODEV : err);
    }

    u_int dlt = 0;
    if (ioctl(fd, BIOCGDLT, &dlt) < 0)
        return fail(fd, "ioctl(BIOCGDLT)", errno);
    if (dlt != DLT_EN10MB)
        return fail(fd, "ioctl(BIOCGDLT)", ENOTSUP); /* not Ethernet */

    /* deliver each frame as it arrives, not when the buffer fills */
    if (ioctl(fd, BIOCIMMEDIATE, &one) < 0)
        return fail(fd, "ioctl(BIOCIMMEDIATE)", errno);
    /* we write the source MAC ourselves: the kernel must not fill it in */
    if (ioctl(fd, BIOCSHDRCMPLT, &one) < 0)
        return fail(fd, "ioctl(BIOCSHDRCMPLT)", errno);

    /* None of our own frames.  Best effort: hb_eth_recv drops frames from
     * our MAC anyway. */
#if defined(BIOCSDIRECTION)
    /* FreeBSD, DragonFly (BIOCSSEESENT is the older name there) */
    u_int direction = BPF_D_IN;
    (void)ioctl(fd, BIOCSDIRECTION, &direction);
#elif defined(BIOCSSEESENT)
    /* macOS, NetBSD */
    u_int seesent = 0;
    (void)ioctl(fd, BIOCSSEESENT, &seesent);
#elif defined(BIOCSDIRFILT)
    /* OpenBSD: the directions to filter out */
    u_int dirfilt = BPF_DIRECTION_OUT;
    (void)ioctl(fd, BIOCSDIRFILT, &dirfilt);
#endif

    prog.bf_len = (u_int)(sizeof claim_filter / sizeof claim_filter[0]);
    prog.bf_insns = claim_filter;
    if (ioctl(fd, BIOCSETF, &prog) < 0)
        return fail(fd, "ioctl(BIOCSETF)", errno);

    blen = 0;
    if (ioctl(fd, BIOCGBLEN, &blen) < 0)
        return fail(fd, "ioctl(BIOCGBLEN)", errno);
    if (blen == 0)
        return fail(fd, "ioctl(BIOCGBLEN)", EINVAL);

    uint8_t mac[HB_ETH_ALEN];
    rc = link_address(ifname, mac);
    if (rc < 0)
        return fail(fd, "getifaddrs(AF_LINK)", -rc);

    hb_eth *h = calloc(1, sizeof *h);
    if (h == NULL)
        return fail(fd, "calloc", ENOMEM);
    h->buf = malloc(blen);
    if (h->buf == NULL) {
        free(h);
        return fail(fd, "malloc", ENOMEM);
    }
    h->blen = blen;
    memcpy(h->mac, mac, HB_ETH_ALEN);
    h->fd = fd;
    h->ifindex = (int)ifindex;
    *out = h;
    return 0;
}

int hb_eth_send(hb_eth *h, const uint8_t *frame, size_t len)
{
    if (h == NULL || frame == NULL || len < HB_ETH_HLEN)
        return -EINVAL;
    /* BIOCSHDRCMPLT is set: the frame goes out as it is */
    ssize_t r;
    do {
        r = write(h->fd, frame, len);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return (size_t)r == len ? 0 : -EIO;
}

/* The three bpf_hdr fields we use, read without assuming the record is
 * aligned for the whole struct or that the struct fits in what is left. */
static int record_header(const uint8_t *p, size_t avail, size_t *hdrlen,
                         size_t *caplen)
{
    struct bpf_hdr bh;
    size_t need = offsetof(struct bpf_hdr, bh_hdrlen) + sizeof bh.bh_hdrlen;
    if (avail < need)
        return -1;
    memset(&bh, 0, sizeof bh);
    memcpy(&bh, p, avail < sizeof bh ? avail : sizeof bh);
    *hdrlen = bh.bh_hdrlen;
    *caplen = bh.bh_caplen;
    if (*hdrlen < need || *hdrlen > avail || *caplen > avail - *hdrlen)
        return -1;
    return 0;
}

int hb_eth_recv(hb_eth *h, uint8_t *buf, size_t cap, size_t *len)
{
    if (h == NULL || buf == NULL || len == NULL)
        return -EINVAL;
    for (;;) {
        if (h->pos >= h->end) {
            h->pos = h->end = 0;
            ssize_t r = read(h->fd, h->buf, h->blen);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
            }
            if (r == 0)
                return -EAGAIN; /* a read timeout with nothing captured */
            h->end = (size_t)r;
        }
        size_t hdrlen, caplen;
        const uint8_t *rec = h->buf + h->pos;
        if (record_header(rec, h->end - h->pos, &hdrlen, &caplen) < 0) {
            h->pos = h->end; /* cannot happen; drop the rest of the buffer */
            continue;
        }
        size_t next = BPF_WORDALIGN(hdrlen + caplen);
        h->pos = next < h->end - h->pos ? h->pos + next : h->end;
        const uint8_t *frame = rec + hdrlen;
        if (caplen < HB_ETH_HLEN)
            continue;
        /* a backstop for the direction setting: never our own frames */
        if (memcmp(frame + HB_ETH_ALEN, h->mac, HB_ETH_ALEN) == 0)
            continue;
        size_t n = caplen < cap ? caplen : cap;
        memcpy(buf, frame, n);
        *len = n;
        return 0;
    }
}

int hb_eth_fd(const hb_eth *h)
{
    return h != NULL ? h->fd : -EINVAL;
}

int hb_eth_hwaddr(const hb_eth *h, uint8_t mac[6])
{
    if (h == NULL || mac == NULL)
        return -EINVAL;
    memcpy(mac, h->mac, HB_ETH_ALEN);
    return 0;
}

int hb_eth_ifindex(const hb_eth *h)
{
    return h != NULL ? h->ifindex : -EINVAL;
}

void hb_eth_close(hb_eth *h)
{
    if (h == NULL)
        return;
    close(h->fd);
    free(h->buf);
    free(h);
}
