/*
 * eth_linux.c - raw Ethernet frames on Linux: one AF_PACKET SOCK_RAW socket
 * per handle, bound to the interface.  Frames go out whole (the caller
 * writes the Ethernet header); a classic BPF filter attached before the
 * socket is bound lets through only what hb_frame_parse_claim may care
 * about (ARP, ICMPv6 neighbour advertisements), never frames this host
 * sends, and no frames that carried a VLAN tag (on the parent of a VLAN
 * interface those belong to another segment).
 */
#include "platform.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

struct hb_eth {
    int fd;
    int ifindex;
    uint8_t mac[HB_ETH_ALEN];
};

/* Accept ARP and ICMPv6 type 136 (next header 58 at byte 20, type at byte
 * 54: no extension headers), drop VLAN-tagged and outgoing frames. */
static struct sock_filter claim_filter[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 10),
    /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE),
    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 8, 0),
    /* 4 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
    /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_ARP, 5, 0),
    /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, 5),
    /* 7 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20),
    /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 58, 0, 3),
    /* 9 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 54),
    /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 136, 0, 1),
    /* 11 */ BPF_STMT(BPF_RET | BPF_K, 0x40000), /* accept, whole */
    /* 12 */ BPF_STMT(BPF_RET | BPF_K, 0),       /* drop */
};

/* Record which call failed, close fd (if open), return -err. */
static int fail(int fd, const char *call, int err)
{
    hb_eth_set_failed_call(call);
    if (fd >= 0)
        close(fd);
    return -err;
}

int hb_eth_open(const char *ifname, hb_eth **out)
{
    struct ifreq ifr;
    struct sockaddr_ll sll;
    struct sock_fprog prog;

    unsigned ifindex;
    int rc = hb_eth_lookup(ifname, out, IFNAMSIZ, &ifindex);
    if (rc < 0)
        return rc;
    size_t n = strlen(ifname);

    /* protocol 0: nothing is received before the filter is attached and
     * bind names the protocol */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(-1, "socket(AF_PACKET, SOCK_RAW)", errno);

    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, ifname, n);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
        return fail(fd, "ioctl(SIOCGIFHWADDR)", errno);
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
        return fail(fd, "ioctl(SIOCGIFHWADDR)", ENOTSUP); /* not Ethernet */

    prog.len = (unsigned short)(sizeof claim_filter / sizeof claim_filter[0]);
    prog.filter = claim_filter;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
        return fail(fd, "setsockopt(SO_ATTACH_FILTER)", errno);

    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        return fail(fd, "bind(AF_PACKET)", errno);

    hb_eth *h = calloc(1, sizeof *h);
    if (h == NULL)
        return fail(fd, "calloc", ENOMEM);
    h->fd = fd;
    h->ifindex = (int)ifindex;
    memcpy(h->mac, ifr.ifr_hwaddr.sa_data, HB_ETH_ALEN);
    *out = h;
    return 0;
}

int hb_eth_send(hb_eth *h, const uint8_t *frame, size_t len)
{
    struct sockaddr_ll sll;

    if (h == NULL || frame == NULL || len < HB_ETH_HLEN)
        return -EINVAL;
    /* The address names the interface, the destination and the ethertype
     * (already in network order in the frame) */
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = h->ifindex;
    memcpy(&sll.sll_protocol, frame + 2 * HB_ETH_ALEN, 2);
    sll.sll_halen = HB_ETH_ALEN;
    memcpy(sll.sll_addr, frame, HB_ETH_ALEN);
    ssize_t r;
    do {
        r = sendto(h->fd, frame, len, MSG_DONTWAIT, (struct sockaddr *)&sll,
                   sizeof sll);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    return (size_t)r == len ? 0 : -EIO;
}

int hb_eth_recv(hb_eth *h, uint8_t *buf, size_t cap, size_t *len)
{
    struct sockaddr_ll from;
    struct iovec iov;
    struct msghdr msg;

    if (h == NULL || buf == NULL || len == NULL)
        return -EINVAL;
    for (;;) {
        iov.iov_base = buf;
        iov.iov_len = cap;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &from;
        msg.msg_namelen = sizeof from;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        ssize_t r = recvmsg(h->fd, &msg, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        if (from.sll_pkttype == PACKET_OUTGOING)
            continue; /* the filter drops these; kept should it be absent */
        *len = (size_t)r; /* cut to cap when msg_flags has MSG_TRUNC */
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
    free(h);
}
