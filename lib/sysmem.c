/* lib/sysmem.c - available memory: /proc/meminfo, the cgroup, an override. */
#include "sysmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first unsigned number in the file at path, or 0 ("max", missing). */
static uint64_t read_number(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t v = 0;
    while (fgets(line, sizeof line, f)) {
        if (key && strncmp(line, key, strlen(key)) != 0)
            continue;
        const char *p = line + (key ? strlen(key) : 0);
        char *end;
        unsigned long long x = strtoull(p, &end, 10);
        if (end != p)
            v = (uint64_t)x;
        break;
    }
    fclose(f);
    return v;
}

static uint64_t lower(uint64_t a, uint64_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

uint64_t lh_mem_available(void)
{
    uint64_t avail = read_number("/proc/meminfo", "MemAvailable:") * 1024;
    uint64_t max = read_number("/sys/fs/cgroup/memory.max", NULL);
    uint64_t cur = read_number("/sys/fs/cgroup/memory.current", NULL);
    if (max)
        avail = lower(avail, max > cur ? max - cur : 1);
    const char *cap = getenv("LORAHUB_MEM_AVAILABLE");
    if (cap && *cap) {
        char *end;
        unsigned long long x = strtoull(cap, &end, 10);
        if (!*end && x > 0)
            avail = lower(avail, (uint64_t)x);
    }
    return avail;
}
