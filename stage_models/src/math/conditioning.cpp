#include "vidfarm/stage_models/conditioning.h"

#include <cmath>
#include <cstring>
#include <exception>

#include "vidfarm/stage_models/diffusion.h"

namespace vidfarm::models {

torch::Tensor ResizeVideo(const torch::Tensor& x, int64_t height, int64_t width) {
  TORCH_CHECK(x.dim() == 4 || x.dim() == 5, "ResizeVideo expects [B,C,T,H,W] or [C,T,H,W], got ",
              x.sizes());
  TORCH_CHECK(height > 0 && width > 0, "ResizeVideo needs a positive size");
  const int64_t h = x.size(-2), w = x.size(-1);
  if (h == height && w == width) return x.clone();
  // Every frame of every channel is an independent image: fold all leading dims into N.
  const auto images = x.reshape({-1, 1, h, w});
  const bool shrink = height < h || width < w;
  const auto out = shrink ? at::_upsample_bilinear2d_aa(images, {height, width}, false)
                          : at::upsample_bilinear2d(images, {height, width}, false);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape[shape.size() - 2] = height;
  shape[shape.size() - 1] = width;
  return out.reshape(shape);
}

Result<TemporalUpsample> ParseTemporalUpsample(const std::string& name) {
  if (name == "repeat") return TemporalUpsample::kRepeat;
  if (name == "blank") return TemporalUpsample::kBlank;
  if (name == "blend") return TemporalUpsample::kBlend;
  return Status::InvalidArgument("unknown temporal upsampling '" + name +
                                 "' (expected repeat, blank or blend)");
}

const char* TemporalUpsampleName(TemporalUpsample mode) {
  switch (mode) {
    case TemporalUpsample::kRepeat:
      return "repeat";
    case TemporalUpsample::kBlank:
      return "blank";
    case TemporalUpsample::kBlend:
      return "blend";
  }
  return "unknown";
}

torch::Tensor UpsampleFrames(const torch::Tensor& x, int factor, TemporalUpsample mode) {
  TORCH_CHECK(x.dim() >= 3, "UpsampleFrames expects [..., T, H, W], got ", x.sizes());
  TORCH_CHECK(factor >= 1, "UpsampleFrames needs factor >= 1");
  const int64_t tdim = x.dim() - 3;
  if (mode == TemporalUpsample::kRepeat) return x.repeat_interleave(factor, tdim);
  if (mode == TemporalUpsample::kBlend) {
    const int64_t t = x.size(tdim);
    // next[i] = x[i + 1], the last frame held; out[.., i, j, ..] = x_i + (j/f)·(next_i − x_i).
    const auto next = torch::cat({x.narrow(tdim, 1, t - 1), x.narrow(tdim, t - 1, 1)}, tdim);
    std::vector<int64_t> wshape(static_cast<size_t>(x.dim()) + 1, 1);
    wshape[static_cast<size_t>(tdim) + 1] = factor;
    const auto w = (torch::arange(factor, x.options()) / static_cast<double>(factor)).view(wshape);
    const auto a = x.unsqueeze(tdim + 1), d = (next - x).unsqueeze(tdim + 1);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape[tdim] *= factor;
    return (a + w * d).reshape(shape);
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape[tdim] *= factor;
  auto out = torch::zeros(shape, x.options());
  out.slice(tdim, 0, shape[tdim], factor).copy_(x);
  return out;
}

torch::Tensor SubsampleFrames(const torch::Tensor& x, int factor) {
  TORCH_CHECK(x.dim() >= 3, "SubsampleFrames expects [..., T, H, W], got ", x.sizes());
  TORCH_CHECK(factor >= 1, "SubsampleFrames needs factor >= 1");
  const int64_t tdim = x.dim() - 3;
  return x.slice(tdim, 0, x.size(tdim), factor).contiguous();
}

torch::Tensor NoiseAugment(const torch::Tensor& x, const torch::Tensor& logsnr,
                           const torch::Tensor& noise) {
  const auto l = logsnr.to(torch::kDouble);
  return Diffuse(x, noise, BroadcastTo(AlphaFromLogSnr(l), x), BroadcastTo(SigmaFromLogSnr(l), x));
}

torch::Tensor VideoToTensor(const Video& v) {
  const Status st = v.Validate();
  TORCH_CHECK(st.ok(), "VideoToTensor: ", st.ToString());
  auto out = torch::empty({v.channels, v.frames, v.height, v.width}, torch::kFloat);
  std::memcpy(out.data_ptr<float>(), v.data.data(), sizeof(float) * v.data.size());
  return out;
}

Result<torch::Tensor> VideoToTensorChecked(const Video& v) {
  VF_RETURN_NOT_OK(v.Validate());
  try {
    return VideoToTensor(v);
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("VideoToTensor: ") + e.what_without_backtrace());
  }
}

Result<Video> TensorToVideo(const torch::Tensor& x, double fps) {
  if (!x.defined()) return Status::InvalidArgument("TensorToVideo: undefined tensor");
  if (x.dim() != 4) {
    return Status::InvalidArgument("TensorToVideo expects [C, T, H, W], got " +
                                   std::to_string(x.dim()) + " dims");
  }
  if (!(fps > 0.0) || !std::isfinite(fps)) {
    return Status::InvalidArgument("TensorToVideo: fps must be positive");
  }
  for (int64_t d : x.sizes()) {
    if (d <= 0) return Status::InvalidArgument("TensorToVideo: sizes must be positive");
  }
  try {
    const auto cpu = x.detach().to(torch::kCPU, torch::kFloat).contiguous();
    Video v(cpu.size(0), cpu.size(1), cpu.size(2), cpu.size(3), fps);
    std::memcpy(v.data.data(), cpu.data_ptr<float>(), sizeof(float) * v.data.size());
    VF_RETURN_NOT_OK(v.Validate());
    return v;
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("TensorToVideo: ") + e.what_without_backtrace());
  }
}

}  // namespace vidfarm::models
