/*
 * endian_probe.c - say, at run time, which machine this is and how it
 * stores a 32-bit integer in memory.  Exit status: 0 big-endian,
 * 1 little-endian, 2 anything else.  Built only by tools/bigendian/run.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

int main(void)
{
    const uint32_t v = 0x01020304u;
    unsigned char b[sizeof v];
    struct utsname u;

    memcpy(b, &v, sizeof b);
    if (uname(&u) != 0)
        strcpy(u.machine, "?");
    int big = b[0] == 1 && b[1] == 2 && b[2] == 3 && b[3] == 4;
    int little = b[0] == 4 && b[1] == 3 && b[2] == 2 && b[3] == 1;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    const char *compiled = "big";
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const char *compiled = "little";
#else
    const char *compiled = "unknown";
#endif
    printf("machine=%s byte_order=%s memory(0x01020304)=%02x %02x %02x %02x "
           "compiler=%s sizeof(long)=%zu\n",
           u.machine, big ? "big-endian" : little ? "little-endian" : "other",
           b[0], b[1], b[2], b[3], compiled, sizeof(long));
    return big ? 0 : little ? 1 : 2;
}
