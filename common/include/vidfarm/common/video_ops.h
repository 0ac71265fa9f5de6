// Small whole-video helpers that need no FFmpeg: for looking at tiny videos and comparing them.
#pragma once

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"

namespace vidfarm {

// Each pixel becomes a factor×factor block (frames and fps unchanged). factor must be >= 1.
Result<Video> UpscaleNearest(const Video& v, int factor);

// Peak signal-to-noise ratio in dB, with [-1, 1] mapped to [0, 1] (so the peak is 1):
// 10 * log10(1 / mean((a - b)^2 / 4)). Identical videos give +infinity. Shapes must match
// (fps is not compared).
Result<double> Psnr(const Video& a, const Video& b);

}  // namespace vidfarm
