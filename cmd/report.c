/* cmd/report.c - `lorahub report [--tsv|--markdown] REPORT...`: one table
 * row per report that lorahub adapt wrote (task, select, method,
 * optimizer, evaluations, loss, test accuracy, seconds, the chosen modules
 * and weights). Every file is read before anything is printed, so a bad
 * file prints one line on stderr and no table. The rows and the table are
 * adapt/summary.c's, shared with the summary of a batch job. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt/summary.h"
#include "cmd.h"

static const char *const CMD = "report";

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub report [--tsv | --markdown] REPORT.json...\n");
}

int cmd_report(int argc, char **argv)
{
    lh_summary_format fmt = LH_SUMMARY_TEXT;
    static const struct option longopts[] = {{"tsv", no_argument, NULL, 't'},
                                             {"markdown", no_argument, NULL, 'm'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 't')
            fmt = LH_SUMMARY_TSV;
        else if (opt == 'm')
            fmt = LH_SUMMARY_MARKDOWN;
        else if (opt == 'h') {
            usage(stdout);
            return 0;
        } else
            return cmd_usage_error(CMD, "option '%s' is unknown", argv[optind - 1]);
    }
    int n = argc - optind;
    if (n < 1)
        return cmd_usage_error(CMD, "no report given");
    lh_summary_row *rows = calloc((size_t)n, sizeof *rows);
    lh_error err;
    lh_status st = rows ? LH_OK : lh_error_set(&err, LH_ERR_NOMEM, "out of memory");
    int have = 0;
    for (; st == LH_OK && have < n; have++)
        st = lh_summary_row_read(argv[optind + have], &rows[have], &err);
    char *text = NULL;
    if (st == LH_OK)
        st = lh_summary_table(rows, (size_t)n, fmt, &text, &err);
    for (int i = 0; rows && i < have; i++)
        lh_summary_row_release(&rows[i]);
    free(rows);
    if (st != LH_OK)
        return cmd_fail(CMD, &err);
    fputs(text, stdout);
    free(text);
    return 0;
}
