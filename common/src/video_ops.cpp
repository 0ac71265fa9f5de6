#include "vidfarm/common/video_ops.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace vidfarm {

Result<Video> UpscaleNearest(const Video& v, int factor) {
  VF_RETURN_NOT_OK(v.Validate());
  if (factor < 1) return Status::InvalidArgument(fmt::format("upscale factor {} < 1", factor));
  Video out(v.channels, v.frames, v.height * factor, v.width * factor, v.fps);
  for (int64_t c = 0; c < v.channels; ++c) {
    for (int64_t t = 0; t < v.frames; ++t) {
      for (int64_t y = 0; y < out.height; ++y) {
        for (int64_t x = 0; x < out.width; ++x) {
          out.at(c, t, y, x) = v.at(c, t, y / factor, x / factor);
        }
      }
    }
  }
  return out;
}

Result<double> Psnr(const Video& a, const Video& b) {
  VF_RETURN_NOT_OK(a.Validate());
  VF_RETURN_NOT_OK(b.Validate());
  if (a.channels != b.channels || a.frames != b.frames || a.height != b.height ||
      a.width != b.width) {
    return Status::InvalidArgument(
        fmt::format("PSNR of different shapes: {} vs {}", a.ShapeString(), b.ShapeString()));
  }
  // Accumulate in double: a 1280x768x128 video has ~10^8 terms.
  double sum = 0.0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const double d = (static_cast<double>(a.data[i]) - b.data[i]) / 2.0;
    sum += d * d;
  }
  const double mse = sum / static_cast<double>(a.data.size());
  if (mse == 0.0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(1.0 / mse);
}

}  // namespace vidfarm
