// LMDB (Debian: liblmdb-dev).
#include <lmdb.h>
