// zstd (Debian: libzstd-dev). The experimental section is opened for one decompression
// parameter, ZSTD_d_forceIgnoreChecksum, a value passed to the stable ZSTD_DCtx_setParameter
// (Swift does not import its macro, hence the function).
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

static inline size_t sidecar_zstd_ignore_content_checksum(ZSTD_DCtx *context) {
    return ZSTD_DCtx_setParameter(context, ZSTD_d_forceIgnoreChecksum, ZSTD_d_ignoreChecksum);
}
