// zlib, for gzopen/gzread on gzip-compressed or plain files (Debian: zlib1g-dev).
#include <zlib.h>
