/* faults_hint.h: what to tell the user after a write that failed because the disk is full or a
 * file-size limit was reached (appended to the error message naming the file and the cause). */
#ifndef CG_FAULTS_HINT_H
#define CG_FAULTS_HINT_H

/* "; free space on that disk ... and run the command again" for ENOSPC/EDQUOT, the same about
 * `ulimit -f` for EFBIG, "" for any other errno. A static string. */
const char *cg_write_hint(int err);

#endif
