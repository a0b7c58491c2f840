/*
 * net/bpf.h - the shim's Berkeley Packet Filter header (tests/shim/bsd):
 * what src_c/platform/bsd/eth_bpf.c uses of bpf(4), written from the
 * manual page.  Instruction encoding and opcode values are those of classic
 * BPF (the same on the BSDs and in Linux's socket filters); the struct
 * layouts follow FreeBSD; the BIOC* request numbers are private to the
 * shim (ioctl() on a /dev/bpf descriptor is answered by tests/shim/bsd).
 */
#ifndef HEART_SHIM_NET_BPF_H
#define HEART_SHIM_NET_BPF_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/time.h>

typedef int32_t bpf_int32;
typedef uint32_t bpf_u_int32;

/* ---- programs ---- */

struct bpf_insn {
    unsigned short code;
    unsigned char jt;
    unsigned char jf;
    bpf_u_int32 k;
};

struct bpf_program {
    unsigned int bf_len;
    struct bpf_insn *bf_insns;
};

#define BPF_STMT(code, k) { (unsigned short)(code), 0, 0, (k) }
#define BPF_JUMP(code, k, jt, jf) { (unsigned short)(code), (jt), (jf), (k) }

#define BPF_MAXINSNS 512

/* instruction classes */
#define BPF_CLASS(code) ((code) & 0x07)
#define BPF_LD   0x00
#define BPF_LDX  0x01
#define BPF_ST   0x02
#define BPF_STX  0x03
#define BPF_ALU  0x04
#define BPF_JMP  0x05
#define BPF_RET  0x06
#define BPF_MISC 0x07

/* ld/ldx: size */
#define BPF_SIZE(code) ((code) & 0x18)
#define BPF_W 0x00
#define BPF_H 0x08
#define BPF_B 0x10
/* ld/ldx: mode */
#define BPF_MODE(code) ((code) & 0xe0)
#define BPF_IMM 0x00
#define BPF_ABS 0x20
#define BPF_IND 0x40
#define BPF_MEM 0x60
#define BPF_LEN 0x80
#define BPF_MSH 0xa0

/* alu/jmp: operation */
#define BPF_OP(code) ((code) & 0xf0)
#define BPF_ADD 0x00
#define BPF_SUB 0x10
#define BPF_MUL 0x20
#define BPF_DIV 0x30
#define BPF_OR  0x40
#define BPF_AND 0x50
#define BPF_LSH 0x60
#define BPF_RSH 0x70
#define BPF_NEG 0x80
#define BPF_MOD 0x90
#define BPF_XOR 0xa0
#define BPF_JA   0x00
#define BPF_JEQ  0x10
#define BPF_JGT  0x20
#define BPF_JGE  0x30
#define BPF_JSET 0x40
/* alu/jmp: source */
#define BPF_SRC(code) ((code) & 0x08)
#define BPF_K 0x00
#define BPF_X 0x08

/* ret: value */
#define BPF_RVAL(code) ((code) & 0x18)
#define BPF_A 0x10

/* misc */
#define BPF_MISCOP(code) ((code) & 0xf8)
#define BPF_TAX 0x00
#define BPF_TXA 0x80

/* ---- what read(2) returns: records of a header and the captured bytes ---- */

struct bpf_hdr {
    struct timeval bh_tstamp; /* when the packet was captured */
    bpf_u_int32 bh_caplen;    /* bytes that follow the header */
    bpf_u_int32 bh_datalen;   /* the packet's length on the wire */
    unsigned short bh_hdrlen; /* header length with padding: the frame is at
                                 (char *)hdr + bh_hdrlen */
};

/* records start on long boundaries */
#define BPF_ALIGNMENT sizeof(long)
#define BPF_WORDALIGN(x) (((x) + (BPF_ALIGNMENT - 1)) & ~(BPF_ALIGNMENT - 1))

/* ---- data link types (BIOCGDLT) ---- */

#define DLT_NULL   0  /* BSD loopback */
#define DLT_EN10MB 1  /* Ethernet */
#define DLT_RAW    12 /* raw IP */

/* ---- direction (BIOCSDIRECTION, FreeBSD) ---- */

#define BPF_D_IN    0 /* incoming only */
#define BPF_D_INOUT 1 /* both (the default) */
#define BPF_D_OUT   2 /* outgoing only */

/* ---- direction filter (BIOCSDIRFILT, OpenBSD): directions NOT seen ---- */

#define BPF_DIRECTION_IN  1
#define BPF_DIRECTION_OUT 2

/* ---- ioctl requests: shim-private numbers ('B' 'P' n) ---- */

#define HB_SHIM_BIOC(n) (0x42500000ul | (unsigned long)(n))
#define BIOCGBLEN      HB_SHIM_BIOC(1)  /* u_int *: buffer length */
#define BIOCSBLEN      HB_SHIM_BIOC(2)  /* u_int *: ask for one, before SETIF */
#define BIOCSETF       HB_SHIM_BIOC(3)  /* struct bpf_program * */
#define BIOCFLUSH      HB_SHIM_BIOC(4)  /* none */
#define BIOCGDLT       HB_SHIM_BIOC(5)  /* u_int *: data link type */
#define BIOCGETIF      HB_SHIM_BIOC(6)  /* struct ifreq * */
#define BIOCSETIF      HB_SHIM_BIOC(7)  /* struct ifreq * */
#define BIOCIMMEDIATE  HB_SHIM_BIOC(8)  /* u_int *: return on each packet */
#define BIOCGHDRCMPLT  HB_SHIM_BIOC(9)  /* u_int * */
#define BIOCSHDRCMPLT  HB_SHIM_BIOC(10) /* u_int *: 1: we write the source MAC */
#define BIOCGSEESENT   HB_SHIM_BIOC(11) /* u_int * */
#define BIOCSSEESENT   HB_SHIM_BIOC(12) /* u_int *: 0: not our own packets */
#define BIOCGDIRECTION HB_SHIM_BIOC(13) /* u_int * */
#define BIOCSDIRECTION HB_SHIM_BIOC(14) /* u_int *: BPF_D_* */
#define BIOCGDIRFILT   HB_SHIM_BIOC(15) /* u_int * */
#define BIOCSDIRFILT   HB_SHIM_BIOC(16) /* u_int *: BPF_DIRECTION_* mask */

#endif /* HEART_SHIM_NET_BPF_H */
