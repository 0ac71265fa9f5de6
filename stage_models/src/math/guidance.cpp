#include "vidfarm/stage_models/guidance.h"

#include <cmath>

namespace vidfarm::models {

double GuidanceSchedule::WeightAt(int step) const {
  if (!oscillating || step < constant_steps) return high;
  return (step - constant_steps) % 2 == 0 ? high : low;
}

Result<Thresholding> ParseThresholding(const std::string& name) {
  if (name == "none") return Thresholding::kNone;
  if (name == "static") return Thresholding::kStatic;
  if (name == "dynamic") return Thresholding::kDynamic;
  return Status::InvalidArgument("unknown thresholding '" + name +
                                 "' (expected none, static or dynamic)");
}

const char* ThresholdingName(Thresholding t) {
  switch (t) {
    case Thresholding::kNone:
      return "none";
    case Thresholding::kStatic:
      return "static";
    case Thresholding::kDynamic:
      return "dynamic";
  }
  return "unknown";
}

torch::Tensor CombineGuidance(const torch::Tensor& x_cond, const torch::Tensor& x_uncond,
                              double w) {
  return x_cond * (1.0 + w) - x_uncond * w;
}

torch::Tensor StaticThreshold(const torch::Tensor& x) { return x.clamp(-1.0, 1.0); }

torch::Tensor DynamicThresholdScale(const torch::Tensor& x, double p) {
  const int64_t batch = x.dim() <= 1 ? 1 : x.size(0);
  const auto flat = x.abs().reshape({batch, -1});
  const int64_t n = flat.size(1);
  // torch.quantile's "linear": position p·(n−1) between the order statistics around it.
  // kthvalue (1-based) rather than torch::quantile, which refuses inputs over 16M elements.
  const double pos = std::clamp(p, 0.0, 1.0) * static_cast<double>(n - 1);
  const int64_t lo = static_cast<int64_t>(std::floor(pos));
  const int64_t hi = std::min<int64_t>(lo + 1, n - 1);
  const double frac = pos - static_cast<double>(lo);
  auto q = std::get<0>(flat.kthvalue(lo + 1, /*dim=*/1));
  if (frac > 0.0 && hi != lo) {
    const auto q_hi = std::get<0>(flat.kthvalue(hi + 1, /*dim=*/1));
    q = q + (q_hi - q) * frac;
  }
  return q.clamp_min(1.0);
}

torch::Tensor DynamicThreshold(const torch::Tensor& x, double p) {
  auto s = DynamicThresholdScale(x, p);
  if (x.dim() >= 1) {
    std::vector<int64_t> shape(x.dim(), 1);
    if (x.dim() >= 2) shape[0] = s.size(0);
    s = s.reshape(shape);
  } else {
    s = s.reshape({});
  }
  return torch::max(torch::min(x, s), -s) / s;
}

DenoiseFn MakeGuidedDenoiser(NetFn net, GuidanceOptions opts) {
  return [net = std::move(net), opts](const torch::Tensor& z, double logsnr, int step) {
    const double w = opts.schedule.WeightAt(step);
    const int64_t b = z.size(0);
    const auto fopts = z.options();
    const auto bopts = z.options().dtype(torch::kBool);
    torch::Tensor x;
    if (w == 0.0) {
      const auto ls = torch::full({b}, logsnr, fopts);
      x = PredictX(opts.param, z, net(z, ls, torch::ones({b}, bopts)), ls);
    } else {
      const auto z2 = torch::cat({z, z}, 0);
      const auto ls = torch::full({2 * b}, logsnr, fopts);
      const auto keep = torch::cat({torch::ones({b}, bopts), torch::zeros({b}, bopts)}, 0);
      const auto x2 = PredictX(opts.param, z2, net(z2, ls, keep), ls);
      x = CombineGuidance(x2.narrow(0, 0, b), x2.narrow(0, b, b), w);
    }
    switch (opts.thresholding) {
      case Thresholding::kNone:
        return x;
      case Thresholding::kStatic:
        return StaticThreshold(x);
      case Thresholding::kDynamic:
        return DynamicThreshold(x, opts.dynamic_p);
    }
    return x;
  };
}

}  // namespace vidfarm::models
