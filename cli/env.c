/* env.c: `cgvlm env`: the build configuration, the BLAS library and threads, CUDA devices. */
#include "cli/commands.h"
#include "kernels/gpu.h"
#include "util/util.h"
#include "version.h"

#include <cblas.h>
#include <omp.h>
#include <sqlite3.h>
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

int cmd_env(int argc, char **argv) {
    if (argc > 1) {
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
            printf("usage: cgvlm env\n\nprints the build configuration, the BLAS library and its\n"
                   "thread count, the libraries linked and the CUDA devices found (or \"no GPU\").\n");
            return CG_OK;
        }
        return cg_report(cg_err(CG_EUSER, "env: unexpected argument '%s'; see 'cgvlm env --help'", argv[1]));
    }
    struct utsname u;
    uname(&u);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    printf("cgvlm      %s (code %s)\n", CGVLM_VERSION, CGVLM_GIT);
    printf("build      %s, %s, sanitizers %s, CUDA %s\n", CGVLM_BUILD_TYPE, CGVLM_C_COMPILER,
           CGVLM_SANITIZE_BUILD ? "on" : "off", cg_gpu_built() ? "on" : "off");
    printf("host       %s (%s %s %s), %ld CPUs online\n", host, u.sysname, u.release, u.machine,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("blas       %s, %d threads\n", openblas_get_config(), openblas_get_num_threads());
    printf("openmp     %d threads\n", omp_get_max_threads());
    printf("sqlite     %s\n", sqlite3_libversion());
    printf("curl       %s\n", curl_version());
    printf("cjson      %s\n", cJSON_Version());
    cg_buf gpus;
    cg_buf_init(&gpus);
    cg_gpu_describe(&gpus);
    printf("cuda       %s", gpus.data);
    cg_buf_free(&gpus);
    return CG_OK;
}
