/* cmd/cmd.h - what every subcommand shares: exit codes and messages.
 *
 * Exit codes (git's convention): 0 success, 1 runtime error, 2 usage error,
 * 130 interrupted by SIGINT. Messages are one line on stderr:
 *   lorahub <cmd>: <message naming the file and the problem> */
#ifndef LH_CMD_H
#define LH_CMD_H

#include "lib/dtype.h"
#include "lib/status.h"

enum { LH_EXIT_OK = 0, LH_EXIT_ERROR = 1, LH_EXIT_USAGE = 2, LH_EXIT_INTERRUPTED = 130 };

/* "lorahub <cmd>: <fmt...>\n" on stderr. */
void cmd_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* "lorahub: warning: <line>\n" on stderr: a library warning channel's
 * printer (lh_backend_opts.warn; ud unused). */
void cmd_warning(void *ud, const char *line);
/* Print err's message for cmd and return the exit code for its status. */
int cmd_fail(const char *cmd, const lh_error *err);
/* A usage error: message, then "see 'lorahub help <cmd>'", returns 2. */
int cmd_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Parsers for option values; return 0 on success. */
int cmd_parse_int(const char *s, long lo, long hi, long *out);
int cmd_parse_double(const char *s, double *out);
int cmd_parse_dtype(const char *s, lh_dtype *out); /* f32/F32, f16/F16, bf16/BF16 */

/* Subcommands: argv[0] is the command name. */
int cmd_inspect(int argc, char **argv);
int cmd_compose(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_adapt(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve_cmd(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

#endif
