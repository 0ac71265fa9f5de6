// The Video type that every room passes around: float32 samples in C×T×H×W order (planar,
// frame-major within a channel), nominal value range [-1, 1] (the diffusion models' space;
// -1 is black, +1 full intensity), plus the frame rate. No LibTorch here: stage_models converts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"

namespace vidfarm {

struct Video {
  int64_t channels = 3;
  int64_t frames = 0;
  int64_t height = 0;
  int64_t width = 0;
  double fps = 24.0;
  std::vector<float> data;  // channels*frames*height*width values, C×T×H×W

  Video() = default;
  // Allocates a zero-filled (mid-grey is 0) video.
  Video(int64_t c, int64_t t, int64_t h, int64_t w, double fps_);

  int64_t numel() const { return channels * frames * height * width; }
  bool empty() const { return numel() == 0; }
  float& at(int64_t c, int64_t t, int64_t y, int64_t x) {
    return data[((c * frames + t) * height + y) * width + x];
  }
  float at(int64_t c, int64_t t, int64_t y, int64_t x) const {
    return data[((c * frames + t) * height + y) * width + x];
  }
  // "3x16x24x40@3fps"
  std::string ShapeString() const;
  // Checks sizes are positive, channels is 1 or 3, data has numel() finite values, fps > 0.
  Status Validate() const;
};

}  // namespace vidfarm
