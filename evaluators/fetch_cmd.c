/* fetch_cmd.c: `cgvlm fetch`: the command line over the fetcher (fetch.h). The benchmark of
 * its speed, `cgvlm bench fetch`, is in fetch_bench.c. */
#include "cli/commands.h"
#include "evaluators/fetch.h"
#include "util/util.h"
#include "util/ux_opt.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm fetch NAME[@VERSION]|MANIFEST [--cache DIR] [--offline] [--jobs N]\n"
            "                   [--base-url URL] [--timeout S] [--retries N] [--retry-delay S] [--no-progress]\n"
            "       cgvlm fetch --list [--cache DIR]\n"
            "\n"
            "Downloads every file of a benchmark into the cache, verifies each by size and sha256,\n"
            "and prints the directory where the files are.\n"
            "\n"
            "  MANIFEST          a manifest file or an http://, https:// or file:// URL (anything with\n"
            "                    a '/' or ':' or ending in .json); relative file URLs in it are\n"
            "                    resolved against the manifest's own location\n"
            "  NAME[@VERSION]    a benchmark fetched before (its manifest is kept in the cache);\n"
            "                    without @VERSION, the version fetched last\n"
            "  --cache DIR       the cache (default $XDG_CACHE_HOME/cgvlm, else ~/.cache/cgvlm);\n"
            "                    files land in DIR/NAME/VERSION/PATH\n"
            "  --offline         use the cache only; exit 2 naming what is missing\n"
            "  --jobs N          files downloaded at once (default 8)\n"
            "  --base-url URL    resolve relative file URLs against URL (a mirror)\n"
            "  --timeout S       connect timeout, and how long a transfer may stay below 1 KiB/s\n"
            "                    before it is abandoned (default 30)\n"
            "  --retries N       further attempts per file on timeouts, resets and 5xx (default 5);\n"
            "                    an interrupted file resumes where it stopped (HTTP Range)\n"
            "  --retry-delay S   first retry delay, doubled each attempt, with jitter (default 0.5)\n"
            "  --no-progress     no progress bar even on a terminal\n"
            "  --list            list the cached benchmarks: NAME VERSION FILES MB DIR [latest]\n");
}

int cmd_fetch(int argc, char **argv) {
    static const struct option longopts[] = {
        {"cache", required_argument, 0, 'c'},   {"offline", no_argument, 0, 'o'},
        {"jobs", required_argument, 0, 'j'},    {"base-url", required_argument, 0, 'b'},
        {"timeout", required_argument, 0, 't'}, {"retries", required_argument, 0, 'r'},
        {"retry-delay", required_argument, 0, 'd'}, {"no-progress", no_argument, 0, 'P'},
        {"list", no_argument, 0, 'l'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    fetch_opts o;
    fetch_opts_init(&o);
    int rc = CG_OK, c, list = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o.cache_dir = optarg; break;
        case 'o': o.offline = 1; break;
        case 'j': rc = cg_parse_int(optarg, "--jobs", 1, 256, &o.jobs); break;
        case 'b': o.base_url = optarg; break;
        case 't': rc = cg_parse_double(optarg, "--timeout", &o.timeout_s); break;
        case 'r': rc = cg_parse_int(optarg, "--retries", 0, 100, &o.retries); break;
        case 'd': rc = cg_parse_double(optarg, "--retry-delay", &o.backoff_s); break;
        case 'P': o.progress = 0; break;
        case 'l': list = 1; break;
        case 'h': usage(stdout); return CG_OK;
        default:
            return cg_report(cg_opt_error("fetch", argv, longopts));
        }
        if (rc) return cg_report(rc);
    }
    if (list) {
        if (optind != argc)
            return cg_report(cg_err(CG_EUSER, "fetch --list takes no NAME or MANIFEST ('%s')", argv[optind]));
        return cg_report(fetch_list(&o, stdout));
    }
    if (optind != argc - 1)
        return cg_report(cg_err(CG_EUSER, "fetch needs exactly one NAME or MANIFEST; see 'cgvlm fetch --help'"));
    char *dir = NULL;
    fetch_stats st;
    rc = fetch_benchmark_stats(argv[optind], &o, &dir, &st);
    if (rc == CG_OK) {
        char *line = fetch_summary(&st);
        cg_info("%s", line);
        free(line);
        printf("%s\n", dir);
    }
    free(dir);
    return cg_report(rc);
}
