// zstd (Debian: libzstd-dev).
#include <zstd.h>
