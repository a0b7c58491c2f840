/*
 * shim_int.h - for the .c files of tests/shim/bsd.  They see the real
 * Linux calls: shim.h is included for the prototypes only.
 */
#ifndef HEART_SHIM_BSD_INT_H
#define HEART_SHIM_BSD_INT_H

#define HB_SHIM_IMPL
#include "shim.h"

#include <stdint.h>

/* A classic BPF instruction, the layout both bpf_insn and Linux's
 * sock_filter have. */
struct hb_shim_insn {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
};

/* Attach prog (n instructions; NULL: accept everything) to the AF_PACKET
 * socket sock as a Linux socket filter, behind a prefix that drops what BPF
 * on a BSD would not show: frames whose VLAN tag Linux took out of the data
 * (BPF would see ethertype 0x8100), outgoing frames unless want_out,
 * incoming ones unless want_in.  0 or -1 with errno (lfilter.c). */
int hb_shim_attach_filter(int sock, const struct hb_shim_insn *prog, unsigned n,
                          int want_in, int want_out);

/* close(2) calls these first: forget fd if it is a kqueue (kqueue.c). */
void hb_shim_kq_forget(int fd);

/* fds the shim tracks are below this */
#define HB_SHIM_MAX_FD 4096

#endif /* HEART_SHIM_BSD_INT_H */
