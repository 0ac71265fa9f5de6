#include "vidfarm/stage_models/bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "vidfarm/common/video_ops.h"
#include "vidfarm/stage_models/cascade.h"
#include "vidfarm/stage_models/ops.h"
#include "vidfarm/stage_models/text_encoder.h"
#include "vidfarm/stage_models/unet.h"

namespace vidfarm::models {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Sync(torch::Device device) {
  // A host copy of one element waits for all queued device work.
  if (device.is_cuda()) (void)torch::zeros({1}, torch::TensorOptions().device(device)).cpu();
}

}  // namespace

double MatmulGflops(int64_t n, torch::ScalarType dtype, torch::Device device, int iters) {
  torch::InferenceMode guard;
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  torch::Tensor a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  (void)torch::mm(a, b);
  std::vector<double> secs;
  for (int i = 0; i < iters; ++i) {
    Sync(device);
    double t0 = Now();
    (void)torch::mm(a, b);
    Sync(device);
    secs.push_back(Now() - t0);
  }
  std::sort(secs.begin(), secs.end());
  return 2.0 * n * n * n / secs[secs.size() / 2] / 1e9;
}

Result<UNetBenchResult> BenchUNet(const UNetBenchOptions& o) {
  if (o.dim < 8 || o.mults.empty() || o.frames < 1 || o.size < 8 || o.batch < 1 || o.iters < 1) {
    return Status::InvalidArgument("bench unet: dim >= 8, mults non-empty, frames, size >= 8, batch, iters >= 1");
  }
  const int64_t levels = static_cast<int64_t>(o.mults.size());
  if (o.size % (int64_t{1} << (levels - 1)) != 0) {
    return Status::InvalidArgument(
        fmt::format("bench unet: size {} must be divisible by 2^(levels-1) = {}", o.size,
                    int64_t{1} << (levels - 1)));
  }
  UNetConfig cfg;
  cfg.dim = o.dim;
  cfg.mults = o.mults;
  cfg.num_res_blocks = 1;
  cfg.spatial_attention.assign(o.mults.size(), true);
  cfg.cross_attention = true;
  cfg.temporal = TemporalMixing::kAttention;
  cfg.text_dim = 64;
  VF_RETURN_NOT_OK(cfg.Validate());
  try {
    torch::InferenceMode guard;
    VideoUNet net(cfg, o.device);
    InitWeights(*net, 1);
    net->to(o.device, o.dtype);
    net->eval();
    UNetBenchResult r;
    r.params = CountParameters(*net);

    auto encoder = MakeBuiltinTextEncoder(cfg.text_dim, 16);
    std::vector<std::string> prompts(o.batch, "a red circle moving right");
    VF_ASSIGN_OR_RETURN(TextEmbedding text, encoder->Encode(prompts, o.device));
    auto fopts = torch::TensorOptions().dtype(o.dtype).device(o.device);
    UNetInputs in;
    in.z = torch::randn({o.batch, cfg.channels, o.frames, o.size, o.size}, fopts);
    in.logsnr = torch::zeros({o.batch}, torch::TensorOptions().device(o.device));
    in.text_tokens = text.tokens.to(o.dtype);
    in.text_mask = text.mask;
    in.text_pooled = text.pooled.to(o.dtype);
    VF_RETURN_NOT_OK(net->CheckInputs(in));
    {
      ops::FlopCounterScope counter;
      (void)net->forward(in);
      r.gflop_per_forward = counter.flops() / 1e9;
    }
    for (int i = 1; i < o.warmup; ++i) (void)net->forward(in);
    std::vector<double> ms;
    for (int i = 0; i < o.iters; ++i) {
      Sync(o.device);
      double t0 = Now();
      (void)net->forward(in);
      Sync(o.device);
      ms.push_back((Now() - t0) * 1e3);
    }
    std::sort(ms.begin(), ms.end());
    r.ms_per_forward = ms[ms.size() / 2];
    r.ms_min = ms.front();
    r.ms_max = ms.back();
    r.gflops = r.gflop_per_forward / (r.ms_per_forward / 1e3);
    r.matmul_gflops = MatmulGflops(2048, o.dtype, o.device);
    return r;
  } catch (const c10::Error& e) {
    return Status::Internal(fmt::format("bench unet: {}", e.what_without_backtrace()));
  }
}

Result<PrecisionReport> ComparePrecision(torch::ScalarType dtype, int stages, int steps,
                                         uint64_t seed) {
  auto render = [&](torch::ScalarType t, double* seconds) -> Result<Video> {
    CascadeOptions opts;
    opts.force_random_weights = true;
    opts.last_stage = stages - 1;
    opts.runner.dtype = t;
    opts.overrides.assign(7, {});
    for (auto& ov : opts.overrides) {
      ov.steps = steps;
      ov.sampler = "ddim";  // deterministic: the comparison measures precision, not noise
    }
    VF_ASSIGN_OR_RETURN(auto cascade, Cascade::Open(opts));
    double t0 = Now();
    VF_ASSIGN_OR_RETURN(Video v, cascade->Render("a red circle moving right", seed));
    *seconds = Now() - t0;
    return v;
  };
  PrecisionReport rep;
  VF_ASSIGN_OR_RETURN(Video ref, render(torch::kFloat32, &rep.fp32_seconds));
  VF_ASSIGN_OR_RETURN(Video low, render(dtype, &rep.low_seconds));
  VF_ASSIGN_OR_RETURN(rep.psnr_db, Psnr(ref, low));
  return rep;
}

}  // namespace vidfarm::models
