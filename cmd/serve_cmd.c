/* cmd/serve_cmd.c - `lorahub serve-cmd --modules DIR|LIST --base-gguf FILE
 * [--gguf-dir DIR] [--port N] [--llama-server PATH]`: the llama-server
 * command line that serves the modules for the server backend.
 *
 * The modules are found as `lorahub adapt` finds them (same order: the
 * adapter ids of the servers follow it) and loaded with --lora-scaled F:0
 * (llama-server applies an adapter at its start scale to requests that do
 * not name it; --lora-init-without-apply has no effect at the pinned
 * commit). A module that is not GGUF is converted once, as F32 (so a module
 * at scale w equals the merge, as in the llamacpp backend), into --gguf-dir
 * as NAME.gguf; a file there newer than its module is reused. Flash
 * attention off and an F32 KV cache make the servers score like the
 * llamacpp backend; one slot per server (-np 1) keeps every request's
 * arithmetic the same whoever else is asking: a server with several slots
 * batches concurrent requests, and llama.cpp's rounding then depends on
 * the batch (1e-4 relative on the zoo's F16 base), so a search's
 * trajectory would depend on timing. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapt/modules.h"
#include "lib/fsutil.h"
#include "lib/gguf.h"
#include "lib/strbuf.h"
#include "cmd.h"

#define CMD "serve-cmd"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub serve-cmd --modules DIR|LIST --base-gguf FILE [--gguf-dir DIR]\n"
               "                         [--port N] [--llama-server PATH]\n");
}

/* s quoted for sh when it needs it. */
static void append_quoted(lh_sb *sb, const char *s)
{
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%") ==
                  strlen(s)) {
        lh_sb_append(sb, s);
        return;
    }
    lh_sb_append(sb, "'");
    for (; *s; s++)
        if (*s == '\'')
            lh_sb_append(sb, "'\\''");
        else
            lh_sb_append_n(sb, s, 1);
    lh_sb_append(sb, "'");
}

static int newer_or_same(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_mtime >= sb.st_mtime;
}

/* The GGUF file llama-server loads for module m: its own file, or a
 * conversion into gguf_dir (*path malloc'd). */
static lh_status module_gguf(const lh_adapter *m, const lh_gguf_arch *arch, const char *gguf_dir,
                             char **path, lh_error *err)
{
    *path = NULL;
    if (m->format == LH_FORMAT_GGUF && m->path) {
        *path = realpath(m->path, NULL);
        return *path ? LH_OK : lh_error_errno(err, LH_ERR_IO, errno, "cannot resolve '%s'", m->path);
    }
    if (!gguf_dir)
        return lh_error_set(err, LH_ERR_ARG,
                            "module '%s' is not GGUF: give --gguf-dir DIR to convert it into",
                            m->path ? m->path : m->name);
    if (!lh_is_dir(gguf_dir) && mkdir(gguf_dir, 0777) != 0)
        return lh_error_errno(err, LH_ERR_IO, errno, "cannot create '%s'", gguf_dir);
    lh_sb name;
    lh_sb_init(&name);
    lh_sb_appendf(&name, "%s.gguf", m->name);
    char *out = lh_sb_failed(&name) ? NULL : lh_path_join(gguf_dir, name.buf);
    lh_sb_release(&name);
    if (!out)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    lh_status st = LH_OK;
    if (!(m->path && newer_or_same(out, m->path))) {
        lh_gguf_save_opts so = {.dtype = LH_F32, .force = 1};
        st = lh_gguf_save_lora_opts(m, arch, out, &so, err);
    }
    if (!st && !(*path = realpath(out, NULL)))
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot resolve '%s'", out);
    free(out);
    return st;
}

static int print_command(const lh_module_set *set, const lh_gguf_arch *arch, const char *base,
                         const char *gguf_dir, long port, const char *bin)
{
    lh_error err = {0};
    lh_sb sb;
    lh_sb_init(&sb);
    append_quoted(&sb, bin);
    lh_sb_append(&sb, " -m ");
    char *abs_base = realpath(base, NULL);
    append_quoted(&sb, abs_base ? abs_base : base);
    free(abs_base);
    for (size_t i = 0; i < set->n; i++) {
        char *path;
        if (module_gguf(set->mods[i], arch, gguf_dir, &path, &err) != LH_OK) {
            lh_sb_release(&sb);
            return cmd_fail(CMD, &err);
        }
        lh_sb word; /* FILE:SCALE, quoted as one word */
        lh_sb_init(&word);
        lh_sb_appendf(&word, "%s:0", path);
        lh_sb_append(&sb, " --lora-scaled ");
        append_quoted(&sb, lh_sb_failed(&word) ? "" : word.buf);
        lh_sb_release(&word);
        free(path);
    }
    lh_sb_appendf(&sb, " --port %ld -np 1 -fa off -ctk f32 -ctv f32\n", port);
    if (lh_sb_failed(&sb)) {
        cmd_error(CMD, "out of memory");
        return LH_EXIT_ERROR;
    }
    fputs(sb.buf, stdout);
    lh_sb_release(&sb);
    return fflush(stdout) == 0 ? LH_EXIT_OK : LH_EXIT_ERROR;
}

int cmd_serve_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"modules", required_argument, NULL, 'm'},
        {"base-gguf", required_argument, NULL, 'b'},
        {"gguf-dir", required_argument, NULL, 'g'},
        {"port", required_argument, NULL, 'p'},
        {"llama-server", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *modules = NULL, *base = NULL, *gguf_dir = NULL, *bin = "llama-server";
    long port = 8080;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': modules = optarg; break;
        case 'b': base = optarg; break;
        case 'g': gguf_dir = optarg; break;
        case 'L': bin = optarg; break;
        case 'p':
            if (cmd_parse_int(optarg, 1, 65535, &port))
                return cmd_usage_error(CMD, "--port needs a port 1 to 65535, not '%s'", optarg);
            break;
        case 'h': usage(stdout); return LH_EXIT_OK;
        case ':': return cmd_usage_error(CMD, "option '%s' needs a value", argv[optind - 1]);
        default: return cmd_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cmd_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!modules || !base)
        return cmd_usage_error(CMD, "--modules DIR|LIST and --base-gguf FILE are required");
    lh_error err = {0};
    lh_gguf_arch arch;
    if (lh_gguf_arch_from_model(base, &arch, &err) != LH_OK)
        return cmd_fail(CMD, &err);
    lh_module_set *set = NULL;
    if (lh_modules_from_spec_base(modules, NULL, 0, 0, &arch, &set, &err) != LH_OK)
        return cmd_fail(CMD, &err);
    int rc = print_command(set, &arch, base, gguf_dir, port, bin);
    lh_module_set_free(set);
    return rc;
}
