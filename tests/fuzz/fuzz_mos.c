/* tests/fuzz/fuzz_mos.c - libFuzzer target for the MoS loader (seed:
 * tests/fuzz/seeds/mos/mos_small.safetensors; mutations reach the mos_config
 * JSON and the index tables).
 *
 * Oracle beyond "no crash": every refusal says why; a module the loader
 * accepts materializes, and saved and loaded again it has the same routing
 * and the same routing hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/lorahub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the loader takes a path: hand it an in-memory file */
    int fd = memfd_create("fuzz_mos", 0);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        __builtin_trap();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lh_mos *m = NULL;
    lh_error err = {0};
    if (lh_mos_load(path, &m, &err) != LH_OK) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        close(fd);
        return 0;
    }
    lh_adapter *a = NULL;
    uint64_t cells = 0;
    for (size_t i = 0; i < m->n_types; i++)
        cells += (uint64_t)m->num_layers * m->r * (uint64_t)(m->types[i].d_in + m->types[i].d_out);
    if (cells < (1u << 22)) {
        lh_status s = lh_mos_materialize(m, &a, &err);
        /* two types may share a module template: the one legitimate refusal */
        if (s != LH_OK && !strstr(err.msg, "given twice"))
            __builtin_trap();
        lh_adapter_free(a);
    }
    char out[] = "/tmp/fuzz_mos.XXXXXX";
    int ofd = mkstemp(out);
    if (ofd < 0)
        __builtin_trap();
    close(ofd);
    lh_mos *b = NULL;
    if (lh_mos_save(m, out, 1, &err) != LH_OK || lh_mos_load(out, &b, &err) != LH_OK ||
        !lh_mos_same_routing(m, b))
        __builtin_trap();
    unlink(out);
    lh_mos_free(b);
    lh_mos_free(m);
    close(fd);
    return 0;
}
