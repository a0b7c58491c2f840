/*
 * lfilter.c - a BSD bpf program as a Linux socket filter (SO_ATTACH_FILTER).
 * Classic BPF is encoded the same way on both, so the instructions copy
 * over as they are; what differs is what the filter sees: Linux takes an
 * 802.1Q tag out of the frame (BPF on a BSD shows it inline) and shows
 * outgoing frames to an ETH_P_ALL socket, so a prefix of Linux ancillary
 * loads drops those before the program runs.
 */
#include "shim_int.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define PREFIX_MAX 4

int hb_shim_attach_filter(int sock, const struct hb_shim_insn *prog, unsigned n,
                          int want_in, int want_out)
{
    static const struct hb_shim_insn accept_all = {BPF_RET | BPF_K, 0, 0, 0xffffffffu};
    if (prog == NULL) {
        prog = &accept_all;
        n = 1;
    }
    /* the prefix jumps over the program to a final "drop": jt/jf are 8 bits */
    if (n == 0 || n > 250) {
        errno = EINVAL;
        return -1;
    }
    struct sock_filter *f = calloc(PREFIX_MAX + n + 1, sizeof *f);
    if (f == NULL) {
        errno = ENOMEM;
        return -1;
    }
    unsigned p = 2 + (want_in && want_out ? 0 : 2); /* prefix length */
    unsigned drop = p + n;                            /* index of the drop */
    unsigned i = 0;
    /* a VLAN tag Linux took out of the frame: BPF would see 0x8100 */
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                          (uint32_t)(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT));
    f[i] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0,
                                        (uint8_t)(drop - i - 1));
    i++;
    if (!(want_in && want_out)) {
        f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                              (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE));
        uint8_t to_drop = (uint8_t)(drop - i - 1);
        f[i] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING,
                                            want_out ? 0 : to_drop,
                                            want_in ? 0 : to_drop);
        i++;
    }
    for (unsigned j = 0; j < n; j++, i++) {
        f[i].code = prog[j].code;
        f[i].jt = prog[j].jt;
        f[i].jf = prog[j].jf;
        f[i].k = prog[j].k;
    }
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);

    struct sock_fprog fp;
    fp.len = (unsigned short)i;
    fp.filter = f;
    int rc = setsockopt(sock, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp);
    int err = errno;
    free(f);
    errno = err;
    return rc < 0 ? -1 : 0;
}
