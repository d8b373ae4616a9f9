// TurboJPEG, libjpeg-turbo's error-code API (Debian: libturbojpeg0-dev). Not libjpeg's jpeglib.h,
// whose setjmp/longjmp error handling Swift cannot use safely.
#include <turbojpeg.h>
