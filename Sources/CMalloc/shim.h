// glibc functions Swift's Glibc module does not export: malloc tuning (mallopt), and prctl, which
// is variadic and so not imported; and C's stdout, a global variable Swift 6 refuses to read.
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>

/// Asks the kernel to SIGKILL this process when the thread that started it exits (PR_SET_PDEATHSIG).
static inline int sidecar_die_with_parent(void) { return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); }

/// C's stdout, the stream `print` writes through.
static inline FILE *sidecar_stdout(void) { return stdout; }
