/* faults_hint.c: the advice appended to messages about writes that ran out of space (see
 * faults_hint.h). */
#include "util/faults_hint.h"

#include <errno.h>

const char *cg_write_hint(int err) {
    switch (err) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return "; the disk is full: free space on it and run the same command again (nothing "
               "half-written is kept; finished stages and checkpoints are)";
    case EFBIG:
        return "; a file-size limit ('ulimit -f') was reached: raise it and run the same command "
               "again (nothing half-written is kept; finished stages and checkpoints are)";
    default:
        return "";
    }
}
