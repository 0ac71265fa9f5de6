// `vidfarm bench unet ...`: prints figures; judging them is left to the reader.
#include <fmt/format.h>
#include <torch/torch.h>

#include <cstdio>

#include "commands.h"
#include "flags.h"
#include "vidfarm/stage_models/bench.h"
#include "vidfarm/stage_models/stage_runner.h"

namespace vidfarm::cli {

int RunBench(const std::vector<std::string>& args) {
  std::string mults = "1,2,4,8", dtype = "fp32", device = "cpu";
  int64_t dim = 32, frames = 16, size = 32, batch = 2, iters = 5, threads = 0;
  int64_t psnr_stages = 3, psnr_steps = 4;
  bool psnr = true;
  FlagSet flags("vidfarm bench unet [--dim 32] [--mults 1,2,4,8] [--frames 16] [--size 32] "
                "[--batch 2] [--dtype fp32|bf16|fp16]",
                "Builds a base-like Video U-Net (temporal and spatial attention at every level,\n"
                "cross-attention to text), times its forward pass and prints the parameter count,\n"
                "ms per forward (median of --iters), achieved GFLOP/s, and the GFLOP/s of a 2048²\n"
                "matrix product in the same dtype on the same machine. With a dtype other than\n"
                "fp32 it also renders the first stages of the tiny cascade in fp32 and in that\n"
                "dtype (same seed, DDIM) and prints the PSNR between the two videos.");
  flags.Int("dim", 0, &dim, "base width");
  flags.String("mults", 0, &mults, "width multipliers per level");
  flags.Int("frames", 0, &frames, "frames");
  flags.Int("size", 0, &size, "height = width");
  flags.Int("batch", 'b', &batch, "batch size");
  flags.String("dtype", 0, &dtype, "fp32 | bf16 | fp16");
  flags.String("device", 0, &device, "cpu | cuda:N");
  flags.Int("iters", 'n', &iters, "timed forwards");
  flags.Int("threads", 't', &threads, "CPU threads (0 = all cores)");
  flags.Bool("psnr", 0, &psnr, "low-precision dtypes: also compare a render against fp32");
  flags.Int("psnr-stages", 0, &psnr_stages, "stages rendered for the PSNR comparison");
  flags.Int("psnr-steps", 0, &psnr_steps, "steps per stage for the PSNR comparison");
  std::vector<std::string> positional;
  Status st = flags.Parse(args, &positional);
  if (flags.help_requested()) {
    std::fputs(flags.Help().c_str(), stdout);
    return 0;
  }
  if (!st.ok()) return Fail("bench", st.message(), 2);
  if (positional.size() != 1 || positional[0] != "unet") {
    return Fail("bench", "which benchmark? `vidfarm bench unet` (see --help)", 2);
  }
  SetThreads(threads);
  models::UNetBenchOptions o;
  o.dim = dim;
  auto m = ParseIntList(mults, flags.Describe("mults"));
  if (!m.ok()) return Fail("bench", m.status().message(), 2);
  o.mults = *m;
  o.frames = frames;
  o.size = size;
  o.batch = batch;
  o.iters = static_cast<int>(iters);
  auto dt = models::ParseDType(dtype);
  if (!dt.ok()) return Fail("bench", dt.status().message(), 2);
  o.dtype = *dt;
  auto dev = models::ParseDevice(device);
  if (!dev.ok()) return Fail("bench", dev.status().message(), 2);
  o.device = *dev;

  auto r = models::BenchUNet(o);
  if (!r.ok()) return Fail("bench", r.status().ToString());
  std::printf("unet dim=%lld mults=%s frames=%lld size=%lld batch=%lld dtype=%s device=%s threads=%d\n",
              static_cast<long long>(dim), mults.c_str(), static_cast<long long>(frames),
              static_cast<long long>(size), static_cast<long long>(batch), dtype.c_str(),
              o.device.str().c_str(), torch::get_num_threads());
  std::printf("params            %.2f M\n", r->params / 1e6);
  std::printf("forward           %.2f GFLOP\n", r->gflop_per_forward);
  std::printf("ms per forward    %.1f (median of %lld; min %.1f, max %.1f)\n", r->ms_per_forward,
              static_cast<long long>(iters), r->ms_min, r->ms_max);
  std::printf("achieved          %.1f GFLOP/s\n", r->gflops);
  std::printf("matmul 2048^2     %.1f GFLOP/s (%s)\n", r->matmul_gflops, dtype.c_str());
  std::printf("fraction of matmul %.2f\n", r->gflops / r->matmul_gflops);
  if (psnr && o.dtype != torch::kFloat32) {
    auto p = models::ComparePrecision(o.dtype, static_cast<int>(psnr_stages),
                                      static_cast<int>(psnr_steps), 1);
    if (!p.ok()) return Fail("bench", p.status().ToString());
    std::printf("render psnr       %.2f dB (%s vs fp32, tiny stages 0..%lld, %lld DDIM steps, seed 1)\n",
                p->psnr_db, dtype.c_str(), static_cast<long long>(psnr_stages - 1),
                static_cast<long long>(psnr_steps));
    std::printf("render seconds    fp32 %.2f, %s %.2f\n", p->fp32_seconds, dtype.c_str(), p->low_seconds);
  }
  return 0;
}

}  // namespace vidfarm::cli
