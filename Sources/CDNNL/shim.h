// oneDNN's C API (Debian: libdnnl-dev 2.6, built with the OpenMP CPU runtime).
#include <oneapi/dnnl/dnnl.h>
