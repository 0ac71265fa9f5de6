// `vidfarm worker --stage K --model PKG --connect ENDPOINT`: hosts one stage model.
#include <fmt/format.h>
#include <torch/torch.h>

#include <csignal>
#include <cstdio>
#include <thread>
#include <zmq.hpp>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/log.h"
#include "vidfarm/worker/worker.h"

namespace vidfarm::cli {

int RunWorker(const std::vector<std::string>& args) {
  worker::WorkerOptions o;
  o.endpoint = "tcp://127.0.0.1:5555";
  int64_t stage = -1, max_batch = 1, heartbeat_ms = o.heartbeat_ms,
          checkpoint_every = o.checkpoint_every;
  int64_t threads = 0, simulate_ms = -1, prefetch = o.prefetch;
  std::string device = "cpu", dtype = "fp32";
  FlagSet flags("vidfarm worker --stage K --connect ENDPOINT [--model PKG]",
                "Hosts stage K's model and runs the tasks the coordinator leases to it: fetches\n"
                "the input video, samples (sending progress and a checkpoint every few steps),\n"
                "and uploads the result. Refuses a package that does not match stage K of the\n"
                "coordinator's preset. Without --model it uses deterministic random weights (the\n"
                "same as `vidfarm render --random-weights`). Stops cleanly on SIGINT/SIGTERM.");
  flags.Int("stage", 'k', &stage, "cascade stage index (0..6)");
  flags.String("model", 'm', &o.package_dir, "model package directory for this stage");
  flags.String("connect", 0, &o.endpoint, "coordinator worker endpoint (its --listen)");
  flags.String("preset", 0, &o.preset, "cascade preset");
  flags.String("device", 0, &device, "cpu | cuda | cuda:N");
  flags.String("dtype", 0, &dtype, "network precision: fp32 | bf16 | fp16");
  flags.Int("max-batch", 'b', &max_batch, "tasks run together as one batch");
  flags.Int("prefetch", 0, &prefetch,
            "leases held beyond the one computing: their inputs download, and the last result "
            "uploads, while the model runs (0 = one lease at a time)");
  flags.Int("threads", 't', &threads, "CPU threads for LibTorch (0 = all cores)");
  flags.Int("heartbeat-ms", 0, &heartbeat_ms, "heartbeat period (match the coordinator's)");
  flags.Int("checkpoint-every", 0, &checkpoint_every,
            "sampler steps between checkpoints (0 = never)");
  flags.String("id", 0, &o.worker_id, "worker id (default: host-pid-stage-random)");
  bool chunked_uploads = false;
  flags.Bool("chunked-uploads", 0, &chunked_uploads,
             "PUT every result and checkpoint in chunks (default: those that fit in one "
             "1 MiB chunk travel inside their RESULT/CHECKPOINT)");
  flags.Int("simulate-ms", 0, &simulate_ms,
            "benchmarks: host no model, answer each task after D ms with a zero video (-1 = off)");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "worker", &positional); rc >= 0) return rc;
  if (!positional.empty()) return Fail("worker", "unexpected argument '" + positional[0] + "'", 2);
  if (stage < 0) return Fail("worker", "--stage K is required", 2);
  if (max_batch < 1 || max_batch > 64) return Fail("worker", "--max-batch must be in 1..64", 2);
  o.stage = static_cast<int>(stage);
  o.max_batch = static_cast<int>(max_batch);
  if (prefetch < 0 || prefetch > worker::kMaxPrefetch)
    return Fail("worker", fmt::format("--prefetch must be in 0..{}", worker::kMaxPrefetch), 2);
  o.prefetch = static_cast<int>(prefetch);
  o.heartbeat_ms = static_cast<int>(heartbeat_ms);
  o.checkpoint_every = static_cast<int>(checkpoint_every);
  if (simulate_ms < -1 || simulate_ms > 3600000)
    return Fail("worker", "--simulate-ms must be in -1..3600000", 2);
  o.simulate_ms = static_cast<int>(simulate_ms);
  o.inline_uploads = !chunked_uploads;
  auto dev = models::ParseDevice(device);
  if (!dev.ok()) return Fail("worker", dev.status().message(), 2);
  o.runner.device = *dev;
  auto dt = models::ParseDType(dtype);
  if (!dt.ok()) return Fail("worker", dt.status().message(), 2);
  o.runner.dtype = *dt;
  o.threads = SetThreads(threads);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // every thread below inherits the mask

  zmq::context_t ctx(1);
  auto w = worker::Worker::Create(o, &ctx);
  if (!w.ok()) return Fail("worker", w.status().ToString());
  std::fprintf(stderr, "worker %s: stage %d (%s), model %s, coordinator %s\n",
               (*w)->worker_id().c_str(), o.stage, o.preset.c_str(), (*w)->model_sha256().c_str(),
               o.endpoint.c_str());
  worker::Worker* raw = w->get();
  std::thread stopper([raw, set] {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGTERM || sig == SIGINT) raw->Stop();
  });
  Status run = raw->Run();
  // Wake the signal thread if Run ended on its own (e.g. DISCONNECT).
  pthread_kill(stopper.native_handle(), SIGTERM);
  stopper.join();
  const auto stats = raw->stats();
  std::fprintf(stderr, "worker %s: %lld done, %lld failed\n", raw->worker_id().c_str(),
               static_cast<long long>(stats.done), static_cast<long long>(stats.failed));
  if (!run.ok()) return Fail("worker", run.ToString());
  return 0;
}

}  // namespace vidfarm::cli
