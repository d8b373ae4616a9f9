// libpng's simplified API, png_image_* (Debian: libpng-dev).
#include <png.h>
