#include "vidfarm/common/video.h"
// Implemented by the common/ owner.
