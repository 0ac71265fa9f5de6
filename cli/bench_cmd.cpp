// `vidfarm bench unet ...`: prints figures; judging them is left to the reader.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <zmq.hpp>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/sha256.h"
#include "vidfarm/coordinator/client.h"
#include "vidfarm/coordinator/coordinator.h"
#include "vidfarm/stage_models/bench.h"
#include "vidfarm/stage_models/stage_runner.h"
#include "vidfarm/storage/store.h"

namespace vidfarm::cli {
namespace {

// `vidfarm bench transfer`: a blob stored in a coordinator's database, downloaded over tcp
// loopback by a client through the same chunked, credit-limited FETCH/CHUNK path workers use.
int RunBenchTransfer(const std::vector<std::string>& args) {
  int64_t mb = 64, credit = 8, chunk_kb = 1024, rounds = 5;
  FlagSet flags(
      "vidfarm bench transfer [--mb 64] [--credit 8] [--chunk-kb 1024] [--rounds 5]",
      "Stores a blob of --mb MiB in a fresh coordinator database (a temp dir), starts the\n"
      "coordinator on tcp://127.0.0.1, and downloads the blob --rounds times with a\n"
      "client keeping --credit chunk requests in flight. Prints MB/s per round (the\n"
      "first round reads the blob from RocksDB; later ones hit the coordinator's cache)\n"
      "and checks the bytes with SHA-256.");
  flags.Int("mb", 0, &mb, "blob size in MiB");
  flags.Int("credit", 0, &credit, "chunk requests in flight");
  flags.Int("chunk-kb", 0, &chunk_kb, "chunk size in KiB");
  flags.Int("rounds", 'n', &rounds, "downloads");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "bench", &positional); rc >= 0) return rc;
  if (mb < 1 || mb > 1024 || credit < 1 || chunk_kb < 4 || rounds < 1) {
    return Fail("bench", "--mb 1..1024, --credit >= 1, --chunk-kb >= 4, --rounds >= 1", 2);
  }
  namespace fs = std::filesystem;
  if (std::getenv("VIDFARM_LOG") == nullptr) SetLogLevel(LogLevel::kWarn);
  char tmpl[] = "/tmp/vidfarm-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Fail("bench", "cannot create a temp dir");
  const std::string dir = tmpl;
  auto cleanup = [&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  };
  std::string blob(static_cast<size_t>(mb) << 20, '\0');
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= blob.size(); i += 8) {
    const uint64_t x = rng();
    std::memcpy(&blob[i], &x, 8);
  }
  const std::string sha = Sha256Hex(blob.data(), blob.size());
  {
    storage::StoreOptions so;
    so.path = dir + "/db";
    auto store = storage::Store::Open(so);
    if (!store.ok()) return cleanup(), Fail("bench", store.status().ToString());
    auto txn = (*store)->NewTxn();
    Status put = txn.PutBlob("bench/blob", blob);
    if (put.ok()) put = (*store)->Commit(std::move(txn));
    if (!put.ok()) return cleanup(), Fail("bench", put.ToString());
  }
  zmq::context_t ctx(1);
  coordinator::CoordinatorOptions co;
  co.db_path = dir + "/db";
  co.worker_endpoint = "tcp://127.0.0.1:0";
  co.api_endpoint = "tcp://127.0.0.1:0";
  co.chunk_bytes = static_cast<size_t>(chunk_kb) << 10;
  auto coord = coordinator::Coordinator::Start(co, &ctx);
  if (!coord.ok()) return cleanup(), Fail("bench", coord.status().ToString());
  auto client = coordinator::Client::Connect((*coord)->api_endpoint(), &ctx, 30000);
  if (!client.ok()) return cleanup(), Fail("bench", client.status().ToString());
  std::printf("transfer %lld MiB over %s, chunks of %lld KiB, credit %lld\n",
              static_cast<long long>(mb), (*coord)->api_endpoint().c_str(),
              static_cast<long long>(chunk_kb), static_cast<long long>(credit));
  std::vector<double> rates;
  int rc = 0;
  for (int64_t r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    auto got = (*client)->FetchBlob("bench/blob", static_cast<int>(credit));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!got.ok()) {
      rc = Fail("bench", got.status().ToString());
      break;
    }
    if (Sha256Hex(got->data(), got->size()) != sha) {
      rc = Fail("bench", "downloaded bytes differ from the stored blob");
      break;
    }
    rates.push_back(static_cast<double>(blob.size()) / s / 1e6);
    std::printf("round %lld  %.3f s  %.0f MB/s%s\n", static_cast<long long>(r + 1), s, rates.back(),
                r == 0 ? "  (from RocksDB)" : "");
  }
  if (rc == 0 && rates.size() > 1) {
    std::vector<double> warm(rates.begin() + 1, rates.end());
    std::sort(warm.begin(), warm.end());
    std::printf("median of cached rounds  %.0f MB/s\n", warm[warm.size() / 2]);
  }
  client->reset();
  (*coord)->Stop();
  cleanup();
  return rc;
}

}  // namespace

// bench_farm_cmd.cpp: `bench dispatch|overhead|pipeline`; -1 when `which` is none of them.
int RunBenchFarm(const std::string& which, const std::vector<std::string>& args);

int RunBench(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "transfer") {
    return RunBenchTransfer(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  if (!args.empty()) {
    const int rc = RunBenchFarm(args[0], std::vector<std::string>(args.begin() + 1, args.end()));
    if (rc >= 0) return rc;
  }
  std::string mults = "1,2,4,8", dtype = "fp32", device = "cpu";
  int64_t dim = 32, frames = 16, size = 32, batch = 2, iters = 5, threads = 0;
  int64_t psnr_stages = 3, psnr_steps = 4;
  bool psnr = true;
  FlagSet flags(
      "vidfarm bench unet [--dim 32] [--mults 1,2,4,8] [--frames 16] [--size 32] "
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
  if (int rc = ParseOrExit(flags, args, "bench", &positional); rc >= 0) return rc;
  if (positional.size() != 1 || positional[0] != "unet") {
    return Fail("bench",
                "which benchmark? `vidfarm bench unet|transfer|dispatch|overhead|pipeline` "
                "(see --help)",
                2);
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
  if (o.dtype == torch::kBFloat16) WarnIfBf16Emulated("bench --dtype bf16", o.device.is_cpu());

  auto r = models::BenchUNet(o);
  if (!r.ok()) return Fail("bench", r.status().ToString());
  std::printf(
      "unet dim=%lld mults=%s frames=%lld size=%lld batch=%lld dtype=%s device=%s threads=%d\n",
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
    std::printf(
        "render psnr       %.2f dB (%s vs fp32, tiny stages 0..%lld, %lld DDIM steps, seed 1)\n",
        p->psnr_db, dtype.c_str(), static_cast<long long>(psnr_stages - 1),
        static_cast<long long>(psnr_steps));
    std::printf("render seconds    fp32 %.2f, %s %.2f\n", p->fp32_seconds, dtype.c_str(),
                p->low_seconds);
  }
  return 0;
}

}  // namespace vidfarm::cli
