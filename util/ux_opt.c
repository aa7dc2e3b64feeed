/* ux_opt.c: the one-line message for a command-line option that getopt_long refused. */
#include "util/ux_opt.h"

#include "util/util.h"

#include <getopt.h>
#include <string.h>

int cg_opt_error(const char *cmd, char **argv, const struct option *opts) {
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    /* an abbreviation of several long options (glibc refuses it as it refuses an unknown one) */
    if (optopt == 0 && strncmp(arg, "--", 2) == 0 && arg[2] && opts) {
        size_t n = strcspn(arg + 2, "=");
        const char *match[16];
        int k = 0, exact = 0;
        for (const struct option *o = opts; o->name && k < 16; o++)
            if (strncmp(o->name, arg + 2, n) == 0) {
                match[k++] = o->name;
                exact |= strlen(o->name) == n;
            }
        if (k > 1 && !exact) {
            cg_buf names;
            cg_buf_init(&names);
            for (int i = 0; i < k; i++)
                cg_buf_addf(&names, "%s--%s", i == 0 ? "" : i == k - 1 ? " or " : ", ", match[i]);
            int rc = cg_err(CG_EUSER, "%s: option '%.*s' is ambiguous: %s; see 'cgvlm %s --help'", cmd,
                            (int)(n + 2), arg, names.data, cmd);
            cg_buf_free(&names);
            return rc;
        }
    }
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
