/* cmd/main.c - lorahub's entry point: a git-style command table.
 * Only cmd/ prints to the user or exits. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"

struct cmd_struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

/* Keep in step with man/lorahub.1; tests/cli checks every entry has a page. */
static const struct cmd_struct commands[] = {
    {"help", cmd_help, "show the manual page of a command"},
    {"version", cmd_version, "print the version"},
    {"inspect", cmd_inspect, "show what adapters hold (table or JSON)"},
    {"compose", cmd_compose, "merge modules with given weights and a method"},
    {"adapt", cmd_adapt, "search composition weights for a new task"},
    {"convert", cmd_convert, "rewrite a module (PEFT or MoS) as a PEFT directory"},
    {"eval", cmd_eval, "loss and exact-match accuracy of a model on examples"},
    {"serve-cmd", cmd_serve_cmd, "print the llama-server command that serves modules"},
    {"report", cmd_report, "a table of lorahub adapt reports (text, TSV or Markdown)"},
    {"tokenize", cmd_tokenize, "print the token ids (or pieces) of texts"},
};

void cmd_error(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "lorahub %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cmd_warning(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "lorahub: warning: %s\n", line);
}

int cmd_fail(const char *cmd, const lh_error *err)
{
    cmd_error(cmd, "%s", lh_error_message(err));
    if (err && err->code == LH_ERR_INTERRUPTED)
        return LH_EXIT_INTERRUPTED;
    if (err && err->code == LH_ERR_ARG)
        return LH_EXIT_USAGE;
    return LH_EXIT_ERROR;
}

int cmd_usage_error(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "lorahub %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'lorahub help %s')\n", cmd);
    return LH_EXIT_USAGE;
}

int cmd_parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cmd_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int cmd_parse_dtype(const char *s, lh_dtype *out)
{
    /* the output dtypes only, in the CLI's lower case and safetensors' upper case */
    static const struct {
        const char *lower, *upper;
        lh_dtype t;
    } names[] = {{"f32", "F32", LH_F32}, {"f16", "F16", LH_F16}, {"bf16", "BF16", LH_BF16}};
    for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].lower) || !strcmp(s, names[i].upper)) {
            *out = names[i].t;
            return 0;
        }
    return -1;
}

static void print_usage(FILE *f)
{
    fprintf(f, "usage: lorahub [--version] [--help] <command> [<args>]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "   %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nSee 'lorahub help <command>' for the manual page of a command.\n");
}

static const struct cmd_struct *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

static int cmd_version(int argc, char **argv)
{
    printf("lorahub %s\n", LH_VERSION);
    return 0;
}

/* Open the man page: man/ beside the binary's source tree first (so it works
 * from a build directory), then the installed one. */
static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return 0;
    }
    const char *topic = argv[1];
    if (!find_command(topic) && strncmp(topic, "lorahub-", 8) != 0 && strcmp(topic, "lorahub") != 0) {
        cmd_error("help", "no such command or topic '%s'", topic);
        return LH_EXIT_USAGE;
    }
    char page[256];
    if (!strcmp(topic, "lorahub") || !strncmp(topic, "lorahub-", 8))
        snprintf(page, sizeof page, "%s", topic);
    else
        snprintf(page, sizeof page, "lorahub-%s", topic);
    const char *sections[] = {"1", "5", "7"};
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            for (size_t s = 0; s < 3; s++) {
                char local[PATH_MAX + 300];
                snprintf(local, sizeof local, "%s/../man/%s.%s", exe, page, sections[s]);
                if (access(local, R_OK) == 0) {
                    fflush(stdout);
                    execlp("man", "man", "-l", local, (char *)NULL);
                }
            }
        }
    }
    fflush(stdout);
    execlp("man", "man", page, (char *)NULL);
    cmd_error("help", "cannot run 'man %s': %s", page, strerror(errno));
    return LH_EXIT_ERROR;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return LH_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V"))
        name = "version";
    const struct cmd_struct *c = find_command(name);
    if (!c) {
        fprintf(stderr, "lorahub: '%s' is not a lorahub command. See 'lorahub --help'.\n", name);
        return LH_EXIT_USAGE;
    }
    int rc = c->fn(argc - 1, argv + 1);
    /* Like git: a full disk or closed pipe on stdout is an error too. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "lorahub %s: write failure on standard output: %s\n", c->name,
                strerror(errno));
        return LH_EXIT_ERROR;
    }
    return rc;
}
