/* ux_opt.h: the one-line message for a command-line option that getopt_long refused. */
#ifndef CG_UX_OPT_H
#define CG_UX_OPT_H

#include <getopt.h>

/* Call when getopt_long (with opterr = 0) returned '?': records, for the option just read
 * (argv[optind - 1]), "CMD: option '--x' needs a value", "CMD: option '--x' takes no value" or
 * "CMD: unknown option 'ARG'" ("CMD: option '-o' is unknown or needs a value" for a lone short
 * option, which glibc does not tell apart; "CMD: option '--d' is ambiguous: --db, --device or
 * --dry-run" for an abbreviation of several of opts), each followed by "; see 'cgvlm CMD --help'",
 * and returns CG_EUSER. CMD is the command as typed after cgvlm ("sweep", "bench db"); opts the
 * table given to getopt_long. */
int cg_opt_error(const char *cmd, char **argv, const struct option *opts);

#endif
