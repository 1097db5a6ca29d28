/* tests/fuzz/fuzz_job.c - libFuzzer target for `lorahub adapt` job files
 * (YAML through libyaml into the settings table: every key's type, range and
 * choices, lists of paths, the preset).
 *
 * Oracle beyond "no crash": every refusal is one line naming the job file or
 * the key; an accepted job file takes a preset, and every key it set reads
 * back as text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "adapt/settings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(const lh_error *err)
{
    if (!err->msg[0] || strchr(err->msg, '\n'))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the loader takes a path: hand it an in-memory file */
    int fd = memfd_create("fuzz_job", 0);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        __builtin_trap();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lh_settings *s = NULL;
    lh_error err = {0};
    if (lh_settings_new(&s, &err) != LH_OK)
        __builtin_trap();
    if (lh_settings_load_job(s, path, &err) != LH_OK) {
        check_refusal(&err);
    } else if (lh_settings_apply_preset(s, &err) != LH_OK) {
        check_refusal(&err);
    } else {
        const lh_setting_def *defs = lh_setting_defs();
        for (size_t i = 0; i < lh_setting_count(); i++)
            if (lh_settings_is_set(s, defs[i].key) && !lh_settings_text(s, defs[i].key))
                __builtin_trap();
    }
    lh_settings_free(s);
    close(fd);
    return 0;
}
