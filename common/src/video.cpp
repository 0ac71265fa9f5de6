#include "vidfarm/common/video.h"

#include <fmt/format.h>

#include <cmath>

namespace vidfarm {

Video::Video(int64_t c, int64_t t, int64_t h, int64_t w, double fps_)
    : channels(c), frames(t), height(h), width(w), fps(fps_) {
  // Negative sizes are left for Validate() to report; do not let them become a huge allocation.
  if (c > 0 && t > 0 && h > 0 && w > 0) data.assign(static_cast<size_t>(numel()), 0.0f);
}

std::string Video::ShapeString() const {
  // {:g} keeps integral rates short ("3fps") and fractional ones readable ("29.97fps").
  return fmt::format("{}x{}x{}x{}@{:g}fps", channels, frames, height, width, fps);
}

Status Video::Validate() const {
  if (channels <= 0 || frames <= 0 || height <= 0 || width <= 0) {
    return Status::InvalidArgument("video sizes must be positive, got " + ShapeString());
  }
  if (channels != 1 && channels != 3) {
    return Status::InvalidArgument(
        fmt::format("video must have 1 or 3 channels, got {} ({})", channels, ShapeString()));
  }
  if (!(fps > 0.0) || !std::isfinite(fps)) {
    return Status::InvalidArgument(
        fmt::format("video fps must be positive and finite, got {}", fps));
  }
  if (static_cast<int64_t>(data.size()) != numel()) {
    return Status::InvalidArgument(
        fmt::format("video {} needs {} values but holds {}", ShapeString(), numel(), data.size()));
  }
  for (size_t i = 0; i < data.size(); ++i) {
    if (!std::isfinite(data[i])) {
      return Status::InvalidArgument(
          fmt::format("video {} has a non-finite value at index {}", ShapeString(), i));
    }
  }
  return Status::OK();
}

}  // namespace vidfarm
