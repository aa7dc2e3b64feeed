/* ux_opt.c: the one-line message for a command-line option that getopt_long refused. */
#include "util/ux_opt.h"

#include "util/util.h"

#include <getopt.h>
#include <string.h>

int cg_opt_error(const char *cmd, char **argv) {
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    /* glibc sets optopt to the option's value when it knows the option but its argument is
     * missing or unwanted, and to 0 for an unknown long option */
    if (optopt != 0 && strncmp(arg, "--", 2) == 0) {
        const char *eq = strchr(arg, '=');
        if (eq)
            return cg_err(CG_EUSER, "%s: option '%.*s' takes no value; see 'cgvlm %s --help'", cmd, (int)(eq - arg),
                          arg, cmd);
        return cg_err(CG_EUSER, "%s: option '%s' needs a value; see 'cgvlm %s --help'", cmd, arg, cmd);
    }
    if (optopt != 0 && arg[0] == '-' && arg[1] == optopt && arg[2] == '\0') /* "-o": unknown or valueless */
        return cg_err(CG_EUSER, "%s: option '%s' is unknown or needs a value; see 'cgvlm %s --help'", cmd, arg, cmd);
    return cg_err(CG_EUSER, "%s: unknown option '%s'; see 'cgvlm %s --help'", cmd, arg, cmd);
}
