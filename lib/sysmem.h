/* lib/sysmem.h - how much memory this process can still use.
 *
 * For refusing, before the work, a run that cannot fit: the kernel's
 * MemAvailable, lowered to what the cgroup (v2) still allows, lowered to
 * LORAHUB_MEM_AVAILABLE (bytes) when that is set (a cap of one's own; the
 * tests use it to check the refusal without filling the machine). */
#ifndef LH_SYSMEM_H
#define LH_SYSMEM_H

#include <stdint.h>

/* Bytes available, or 0 when nothing could be read (then no check). */
uint64_t lh_mem_available(void);

#endif
