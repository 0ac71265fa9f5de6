// The stage worker against a scripted fake coordinator: a raw ROUTER socket in the test thread on
// 127.0.0.1 port 0, speaking common/wire.h. Tiny preset, random weights, a few sampler steps.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "vidfarm/common/job_spec.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/stage_models/package.h"
#include "vidfarm/stage_models/preset.h"
#include "vidfarm/stage_models/stage_runner.h"
#include "vidfarm/worker/worker.h"

namespace vidfarm::worker {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using wire::Command;
using wire::Message;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kInitSeed = 0x5eed;

// The coordinator's side of the protocol, scripted by each test. Recv() answers what a test does
// not want to see itself: HEARTBEATs (echoed, counted), FETCHes of known blobs (CHUNKs) and PUTs
// (stored, PUT_ACKed). With `lazy` set, FETCHes and PUTs are held and answered one at a time
// whenever the worker has been quiet for a moment, so the tests see its credit window fill.
class FakeCoordinator {
 public:
  explicit FakeCoordinator(zmq::context_t& ctx, const std::string& endpoint = "tcp://127.0.0.1:0")
      : router_(ctx, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind(endpoint);
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  }
  // A coordinator that dies: its socket goes, with everything queued on it.
  void Close() { router_.close(); }

  const std::string& endpoint() const { return endpoint_; }

  bool echo_heartbeats = true;
  bool lazy = false;
  int heartbeats = 0;
  size_t max_fetches_outstanding = 0, max_puts_outstanding = 0;
  int chunks_served = 0, puts_received = 0;
  int64_t serve_max = INT64_MAX;  // a coordinator with a smaller chunk size serves less than asked
  // Messages lost on the way to the worker (as a send queue drop or a dead connection loses them).
  int drop_chunks = 0, drop_put_acks = 0;
  std::map<int64_t, int> fetches_by_offset;  // FETCHes seen per offset (re-sent ones count again)
  std::map<int64_t, int> puts_by_offset;
  std::map<std::string, std::string> blobs;    // served on FETCH
  std::map<std::string, std::string> uploads;  // assembled from PUTs

  void SendRaw(const std::vector<std::string>& frames) {
    ASSERT_FALSE(identity_.empty()) << "the worker has not spoken yet";
    std::vector<zmq::message_t> parts;
    parts.emplace_back(identity_.data(), identity_.size());
    for (const std::string& f : frames) parts.emplace_back(f.data(), f.size());
    ASSERT_TRUE(zmq::send_multipart(router_, parts));
  }
  void Send(Command c, nlohmann::json header, std::vector<std::string> payload = {}) {
    Message m;
    m.command = c;
    m.header = std::move(header);
    m.payload = std::move(payload);
    SendRaw(wire::Encode(m));
  }

  // The next message the test has to see, or nullopt after `timeout`.
  std::optional<Message> Recv(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      const auto now = Clock::now();
      if (now >= deadline) return std::nullopt;
      auto wait = std::chrono::duration_cast<milliseconds>(deadline - now);
      if (lazy && (!fetches_.empty() || !puts_.empty())) wait = std::min(wait, milliseconds(20));
      zmq::pollitem_t item{static_cast<void*>(router_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, wait);
      if (!(item.revents & ZMQ_POLLIN)) {
        AnswerOneHeld();
        continue;
      }
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(router_, std::back_inserter(parts))) continue;
      identity_ = parts[0].to_string();
      std::vector<std::string> frames;
      for (size_t i = 1; i < parts.size(); ++i) frames.push_back(parts[i].to_string());
      auto m = wire::Decode(frames);
      EXPECT_TRUE(m.ok()) << "the worker sent a bad message: " << m.status().ToString();
      if (!m.ok()) continue;
      switch (m->command) {
        case Command::kHeartbeat:
          ++heartbeats;
          if (echo_heartbeats) Send(Command::kHeartbeat, nlohmann::json::object());
          continue;
        case Command::kFetch:
          if (!blobs.count(m->header.value("blob", ""))) return m.value();
          fetches_.push_back(*m);
          max_fetches_outstanding = std::max(max_fetches_outstanding, fetches_.size());
          if (!lazy) AnswerAllHeld();
          continue;
        case Command::kPut:
          ++puts_received;
          puts_.push_back(*m);
          max_puts_outstanding = std::max(max_puts_outstanding, puts_.size());
          if (!lazy) AnswerAllHeld();
          continue;
        default:
          return m.value();
      }
    }
  }

  // Skips (and keeps in `seen`) other messages until `c` arrives.
  std::optional<Message> Expect(Command c, milliseconds timeout = milliseconds(20000)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto m = Recv(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
      if (!m) break;
      if (m->command == c) return m;
      if (m->command == Command::kFail) {
        ADD_FAILURE() << "FAIL while waiting for " << wire::CommandName(c) << ": "
                      << m->header.dump();
        return std::nullopt;
      }
      seen.push_back(*m);
    }
    ADD_FAILURE() << "no " << wire::CommandName(c) << " within " << timeout.count() << " ms";
    return std::nullopt;
  }

  std::vector<Message> seen;

 private:
  void AnswerOneHeld() {
    if (!fetches_.empty()) {
      Message f = fetches_.front();
      fetches_.pop_front();
      const std::string blob = f.header["blob"].get<std::string>();
      const std::string& data = blobs[blob];
      const auto offset = f.header["offset"].get<int64_t>();
      const auto length = std::min<int64_t>(f.header["length"].get<int64_t>(), serve_max);
      ASSERT_LE(offset + length, static_cast<int64_t>(data.size()));
      ++fetches_by_offset[offset];
      if (drop_chunks > 0) {
        --drop_chunks;
        return;
      }
      ++chunks_served;
      Send(Command::kChunk,
           {{"blob", blob}, {"offset", offset}, {"total", static_cast<int64_t>(data.size())}},
           {data.substr(static_cast<size_t>(offset), static_cast<size_t>(length))});
    } else if (!puts_.empty()) {
      Message p = puts_.front();
      puts_.pop_front();
      const std::string id = p.header["upload"].get<std::string>();
      const auto offset = p.header["offset"].get<int64_t>();
      const auto total = p.header["total"].get<int64_t>();
      std::string& u = uploads[id];
      u.resize(static_cast<size_t>(total));
      ASSERT_EQ(p.payload.size(), 1u);
      ASSERT_LE(offset + static_cast<int64_t>(p.payload[0].size()), total);
      std::copy(p.payload[0].begin(), p.payload[0].end(), u.begin() + offset);
      ++puts_by_offset[offset];
      if (drop_put_acks > 0) {
        --drop_put_acks;
        return;
      }
      Send(Command::kPutAck, {{"upload", id}, {"offset", offset}});
    }
  }
  void AnswerAllHeld() {
    while (!fetches_.empty() || !puts_.empty()) AnswerOneHeld();
  }

  zmq::socket_t router_;
  std::string endpoint_;
  std::string identity_;
  std::deque<Message> fetches_, puts_;
};

// A worker running on its own thread for the length of a test.
class RunningWorker {
 public:
  RunningWorker(const WorkerOptions& o, zmq::context_t& ctx) {
    auto w = Worker::Create(o, &ctx);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    if (!w.ok()) return;
    worker_ = std::move(*w);
    thread_ = std::thread([this] { status_ = worker_->Run(); });
  }
  ~RunningWorker() { (void)Join(); }
  Status Join() {
    if (thread_.joinable()) {
      worker_->Stop();
      thread_.join();
    }
    return status_;
  }
  // Waits for Run to return by itself.
  Status Wait() {
    if (thread_.joinable()) thread_.join();
    return status_;
  }
  Worker& worker() { return *worker_; }

 private:
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  Status status_;
};

class WorkerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { torch::set_num_threads(2); }

  void SetUp() override {
    auto p = models::GetPreset("tiny");
    ASSERT_TRUE(p.ok());
    preset_ = *p;
  }

  WorkerOptions Options(int stage) {
    WorkerOptions o;
    o.endpoint = fake_.endpoint();
    o.stage = stage;
    o.preset = "tiny";
    o.init_seed = kInitSeed;
    o.worker_id = "test-worker-" + std::to_string(stage);
    return o;
  }

  static JobSpec Spec(int stage, int steps, uint64_t seed, const std::string& prompt) {
    JobSpec spec;
    spec.prompt = prompt;
    spec.seed = seed;
    spec.steps.assign(7, 0);
    spec.steps[static_cast<size_t>(stage)] = steps;
    return spec;
  }

  static nlohmann::json TaskJson(int stage, const JobSpec& spec, const std::string& input_blob = "",
                                 int64_t input_bytes = 0, nlohmann::json checkpoint = nullptr) {
    nlohmann::json t = {{"job", "job-1"},          {"stage", stage},    {"seed", spec.seed},
                        {"prompt", spec.prompt},   {"sample_index", 0}, {"spec", spec.ToJson()},
                        {"checkpoint", checkpoint}};
    if (!input_blob.empty()) {
      t["input_blob"] = input_blob;
      t["input_bytes"] = input_bytes;
    }
    return t;
  }

  void Assign(const std::string& lease, int stage, std::vector<nlohmann::json> tasks) {
    fake_.Send(Command::kAssign, {{"lease", lease}, {"stage", stage}, {"tasks", tasks}});
  }

  // What StageRunner::Run gives directly, with the weights every process derives for `stage`.
  Video Direct(int stage, const JobSpec& spec, const std::vector<Video>& inputs = {}) {
    const models::StageSpec& s = preset_.stages[static_cast<size_t>(stage)];
    auto pkg = models::RandomPackage(s, kInitSeed + static_cast<uint64_t>(stage), torch::kCPU);
    EXPECT_TRUE(pkg.ok());
    auto runner = models::StageRunner::Create(std::move(*pkg), preset_, {});
    EXPECT_TRUE(runner.ok());
    auto settings = models::ResolveStageSettings(s, OverridesFromSpec(spec, stage));
    EXPECT_TRUE(settings.ok());
    models::StageRequest req;
    req.prompts = {spec.prompt};
    req.seed = spec.seed;
    req.inputs = inputs;
    auto out = (*runner)->Run(req, *settings);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out->front();
  }

  Video Input(int stage) {
    const models::StageSpec& s = preset_.stages[static_cast<size_t>(stage)];
    Video v(3, s.in_frames(), s.in_height(), s.in_width(), s.in_fps());
    for (size_t i = 0; i < v.data.size(); ++i)
      v.data[i] = static_cast<float>(std::sin(0.013 * static_cast<double>(i)));
    return v;
  }

  // The bytes of task i of a RESULT/CHECKPOINT: its inline payload frame, or the upload it names.
  static std::string Bytes(const FakeCoordinator& f, const Message& m, size_t i = 0) {
    if (m.header.value("inline", false)) {
      EXPECT_FALSE(m.header.contains("uploads"));
      EXPECT_GT(m.payload.size(), i);
      return i < m.payload.size() ? m.payload[i] : std::string();
    }
    const auto& ids = m.header.at("uploads");
    EXPECT_GT(ids.size(), i);
    return f.uploads.at(ids.at(i).get<std::string>());
  }
  static size_t Count(const Message& m) {
    return m.header.value("inline", false) ? m.payload.size() : m.header.at("uploads").size();
  }

  // The decoded video behind task i of a RESULT/CHECKPOINT.
  Video Uploaded(const Message& m, size_t i = 0) {
    auto v = wire::DecodeVideo(Bytes(fake_, m, i));
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ValueOr(Video());
  }

  static bool SameVideo(const Video& a, const Video& b) {
    return a.channels == b.channels && a.frames == b.frames && a.height == b.height &&
           a.width == b.width && a.fps == b.fps && a.data == b.data;
  }

  zmq::context_t ctx_;
  FakeCoordinator fake_{ctx_};
  models::CascadePreset preset_;
};

TEST_F(WorkerTest, ReadyAdvertisesStageShapeAndModel) {
  WorkerOptions o = Options(2);
  o.max_batch = 3;
  RunningWorker w(o, ctx_);
  auto ready = fake_.Expect(Command::kReady);
  ASSERT_TRUE(ready);
  const nlohmann::json& h = ready->header;
  const models::StageSpec& s = preset_.stages[2];
  EXPECT_EQ(h["worker_id"], "test-worker-2");
  EXPECT_EQ(h["stage"], 2);
  EXPECT_EQ(h["preset"], "tiny");
  EXPECT_EQ(h["max_batch"], 3);
  EXPECT_EQ(h["pid"], static_cast<int64_t>(getpid()));
  EXPECT_EQ(h["model_sha256"], "random:" + std::to_string(kInitSeed + 2));
  EXPECT_EQ(h["shape"]["frames"], s.frames);
  EXPECT_EQ(h["shape"]["height"], s.height);
  EXPECT_EQ(h["shape"]["width"], s.width);
  EXPECT_EQ(h["shape"]["fps"], s.fps);
  EXPECT_FALSE(h.contains("lease"));
  EXPECT_TRUE(w.Join().ok());
}

TEST_F(WorkerTest, BaseStageReportsProgressCheckpointsAndExactResult) {
  WorkerOptions o = Options(0);
  o.checkpoint_every = 2;
  o.chunk_bytes = 2048;
  o.fetch_credit = 3;
  o.progress_interval_ms = 0;
  fake_.lazy = true;  // hold PUT_ACKs so the upload window fills
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const JobSpec spec = Spec(0, 5, 42, "a red circle moving right");
  Assign("L1", 0, {TaskJson(0, spec)});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->header["lease"], "L1");

  std::vector<int> steps, checkpoint_steps;
  for (const Message& m : fake_.seen) {
    if (m.command == Command::kProgress) {
      EXPECT_EQ(m.header["lease"], "L1");
      EXPECT_EQ(m.header["steps"], 5);
      steps.push_back(m.header["step"].get<int>());
    } else if (m.command == Command::kCheckpoint) {
      EXPECT_EQ(m.header["lease"], "L1");
      checkpoint_steps.push_back(m.header["step"].get<int>());
      const Video z = Uploaded(m);
      const models::StageSpec& s = preset_.stages[0];
      EXPECT_EQ(z.channels, s.net.channels);
      EXPECT_EQ(z.frames, s.frames);
      EXPECT_EQ(z.height, s.height);
      EXPECT_EQ(z.width, s.width);
    } else {
      ADD_FAILURE() << "unexpected " << wire::CommandName(m.command);
    }
  }
  ASSERT_FALSE(steps.empty());
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end()));
  EXPECT_EQ(std::adjacent_find(steps.begin(), steps.end()), steps.end()) << "repeated step";
  EXPECT_EQ(steps.back(), 5);
  // Step 2's upload starts at once; step 4's may be superseded by the RESULT while the slow
  // PUT_ACKs of step 2 are still coming in.
  ASSERT_FALSE(checkpoint_steps.empty());
  EXPECT_EQ(checkpoint_steps.front(), 2);
  EXPECT_LE(checkpoint_steps.size(), 2u);
  if (checkpoint_steps.size() == 2) {
    EXPECT_EQ(checkpoint_steps[1], 4);
  }
  EXPECT_LE(fake_.max_puts_outstanding, 3u);
  EXPECT_EQ(fake_.max_puts_outstanding, 3u);  // a video is many 2 KiB chunks: the window fills

  const Video out = Uploaded(*result);
  const models::StageSpec& s = preset_.stages[0];
  EXPECT_EQ(out.ShapeString(), Video(3, s.frames, s.height, s.width, s.fps).ShapeString());
  EXPECT_TRUE(SameVideo(out, Direct(0, spec))) << "farm output differs from StageRunner::Run";

  auto ready = fake_.Expect(Command::kReady);  // credit for the next task
  ASSERT_TRUE(ready);
  EXPECT_FALSE(ready->header.contains("lease"));
  EXPECT_EQ(w.worker().stats().done, 1);
  EXPECT_EQ(w.worker().stats().failed, 0);
}

TEST_F(WorkerTest, SrStageFetchesItsInputInChunksWithinCredit) {
  WorkerOptions o = Options(1);
  o.chunk_bytes = 4096;
  o.fetch_credit = 3;
  fake_.lazy = true;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const Video input = Input(1);
  const std::string bytes = wire::EncodeVideo(input);
  fake_.blobs["in-1"] = bytes;
  const JobSpec spec = Spec(1, 2, 9, "a green star rotating");
  Assign("L2", 1, {TaskJson(1, spec, "in-1", static_cast<int64_t>(bytes.size()))});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  const auto chunks = static_cast<int>((bytes.size() + 4095) / 4096);
  EXPECT_GE(chunks, 6);
  EXPECT_EQ(fake_.chunks_served, chunks);
  EXPECT_LE(fake_.max_fetches_outstanding, 3u);
  EXPECT_EQ(fake_.max_fetches_outstanding, 3u);
  const Video out = Uploaded(*result);
  EXPECT_TRUE(SameVideo(out, Direct(1, spec, {input})));
}

TEST_F(WorkerTest, ResumeFromCheckpointIsBitIdentical) {
  WorkerOptions o = Options(1);
  o.checkpoint_every = 2;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const Video input = Input(1);
  const std::string in_bytes = wire::EncodeVideo(input);
  fake_.blobs["in"] = in_bytes;
  const JobSpec spec = Spec(1, 4, 77, "a blue square moving up");
  Assign("L-full", 1, {TaskJson(1, spec, "in", static_cast<int64_t>(in_bytes.size()))});
  auto full = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(full);
  std::optional<Message> checkpoint;
  for (const Message& m : fake_.seen) {
    if (m.command == Command::kCheckpoint && m.header["step"] == 2) checkpoint = m;
  }
  ASSERT_TRUE(checkpoint) << "no CHECKPOINT at step 2";
  const std::string ckpt = Bytes(fake_, *checkpoint);
  fake_.blobs["ckpt"] = ckpt;
  ASSERT_TRUE(fake_.Expect(Command::kReady));

  fake_.seen.clear();
  Assign("L-resumed", 1,
         {TaskJson(1, spec, "in", static_cast<int64_t>(in_bytes.size()),
                   {{"blob", "ckpt"}, {"bytes", static_cast<int64_t>(ckpt.size())}, {"step", 2}})});
  auto resumed = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(resumed);
  for (const Message& m : fake_.seen) {
    if (m.command == Command::kProgress) {
      EXPECT_GT(m.header["step"].get<int>(), 2) << "resumed run redid a step";
    }
  }
  EXPECT_TRUE(SameVideo(Uploaded(*full), Uploaded(*resumed)));
  EXPECT_TRUE(SameVideo(Uploaded(*resumed), Direct(1, spec, {input})));
}

TEST_F(WorkerTest, CancelMidStageSendsReadyWithoutResult) {
  WorkerOptions o = Options(0);
  o.checkpoint_every = 0;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  Assign("L-long", 0, {TaskJson(0, Spec(0, 5000, 1, "a long one"))});
  ASSERT_TRUE(fake_.Expect(Command::kProgress));
  fake_.Send(Command::kCancel, {{"lease", "L-long"}, {"reason", "job cancelled"}});
  auto ready = fake_.Expect(Command::kReady);
  ASSERT_TRUE(ready);
  EXPECT_FALSE(ready->header.contains("lease"));
  for (const Message& m : fake_.seen) EXPECT_NE(m.command, Command::kResult);
  // The worker is free again: a short task goes through.
  fake_.seen.clear();
  Assign("L-short", 0, {TaskJson(0, Spec(0, 2, 1, "a short one"))});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->header["lease"], "L-short");
  for (const Message& m : fake_.seen) {
    if (m.header.contains("lease")) {
      EXPECT_EQ(m.header["lease"], "L-short");
    }
  }
}

// Simulate mode (benchmarks): no model, the real protocol. The input is still fetched, and the
// answer is a zero video of the stage's output shape, sent no sooner than simulate_ms.
TEST_F(WorkerTest, SimulateModeFetchesInputsAndAnswersWithAZeroVideoAfterTheDelay) {
  WorkerOptions o = Options(2);
  o.simulate_ms = 150;
  o.chunk_bytes = 8192;
  RunningWorker w(o, ctx_);
  auto ready = fake_.Expect(Command::kReady);
  ASSERT_TRUE(ready);
  const models::StageSpec& s = preset_.stages[2];
  EXPECT_EQ(ready->header["model_sha256"], "simulated");
  EXPECT_EQ(ready->header["shape"]["frames"], s.frames);
  EXPECT_EQ(ready->header["shape"]["width"], s.width);
  const std::string bytes = wire::EncodeVideo(Input(2));
  fake_.blobs["in-2"] = bytes;
  const auto assigned = Clock::now();
  Assign("L-sim", 2,
         {TaskJson(2, Spec(2, 3, 5, "simulated"), "in-2", static_cast<int64_t>(bytes.size()))});
  auto result = fake_.Expect(Command::kResult);
  ASSERT_TRUE(result);
  EXPECT_GE(Clock::now() - assigned, milliseconds(150));
  EXPECT_EQ(result->header["lease"], "L-sim");
  EXPECT_EQ(fake_.chunks_served, static_cast<int>((bytes.size() + 8191) / 8192));
  const Video out = Uploaded(*result);
  EXPECT_TRUE(SameVideo(out, Video(3, s.frames, s.height, s.width, s.fps)));
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  EXPECT_EQ(w.worker().stats().done, 1);
}

// Prefetch: the second lease's input downloads while the first computes; the second computes
// as soon as the first is done; a third lease beyond max_leases is refused.
TEST_F(WorkerTest, PrefetchedLeaseDownloadsWhileTheFirstComputes) {
  WorkerOptions o = Options(2);
  o.simulate_ms = 500;
  o.prefetch = 1;
  o.chunk_bytes = 8192;
  RunningWorker w(o, ctx_);
  auto ready = fake_.Expect(Command::kReady);
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->header["max_leases"], 2);
  EXPECT_FALSE(ready->header.contains("leases"));
  const std::string bytes = wire::EncodeVideo(Input(2));
  const int chunks = static_cast<int>((bytes.size() + 8191) / 8192);
  fake_.blobs["in-a"] = bytes;
  fake_.blobs["in-b"] = bytes;
  const auto assigned = Clock::now();
  Assign("L-a", 2, {TaskJson(2, Spec(2, 3, 5, "a"), "in-a", static_cast<int64_t>(bytes.size()))});
  Assign("L-b", 2, {TaskJson(2, Spec(2, 3, 6, "b"), "in-b", static_cast<int64_t>(bytes.size()))});
  Assign("L-c", 2, {TaskJson(2, Spec(2, 3, 7, "c"), "in-a", static_cast<int64_t>(bytes.size()))});
  auto busy = fake_.Recv(milliseconds(5000));
  ASSERT_TRUE(busy);
  ASSERT_EQ(busy->command, Command::kFail);
  EXPECT_EQ(busy->header["lease"], "L-c");
  EXPECT_TRUE(busy->header["retryable"].get<bool>());
  auto first = fake_.Expect(Command::kResult);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header["lease"], "L-a");
  EXPECT_GE(Clock::now() - assigned, milliseconds(500));
  // Both inputs were here before the first result: the second's came during the first's work.
  EXPECT_EQ(fake_.chunks_served, 2 * chunks);
  auto again = fake_.Expect(Command::kReady);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->header["leases"], nlohmann::json::array({"L-b"}));
  auto second = fake_.Expect(Command::kResult);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->header["lease"], "L-b");
  EXPECT_GE(Clock::now() - assigned, milliseconds(1000));
  auto last = fake_.Expect(Command::kReady);
  ASSERT_TRUE(last);
  EXPECT_FALSE(last->header.contains("leases"));
  EXPECT_EQ(w.worker().stats().done, 2);
}

// Leases compute in the order they were assigned, even when a younger one's input is here
// first: the coordinator keeps the younger alive on the older one's progress.
TEST_F(WorkerTest, LeasesComputeInAssignmentOrder) {
  WorkerOptions o = Options(2);
  o.simulate_ms = 200;
  o.prefetch = 1;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const std::string bytes = wire::EncodeVideo(Input(2));
  fake_.blobs["in-now"] = bytes;  // served at once; "in-late" is not known to the fake yet
  const auto size = static_cast<int64_t>(bytes.size());
  Assign("L-old", 2, {TaskJson(2, Spec(2, 3, 5, "old"), "in-late", size)});
  Assign("L-new", 2, {TaskJson(2, Spec(2, 3, 6, "new"), "in-now", size)});
  auto fetch = fake_.Recv(milliseconds(5000));  // the FETCH of the unknown blob comes to us
  ASSERT_TRUE(fetch);
  ASSERT_EQ(fetch->command, Command::kFetch);
  ASSERT_EQ(fetch->header["blob"], "in-late");
  // L-new's input is here, yet nothing is computed while L-old waits for its own.
  auto early = fake_.Recv(milliseconds(500));
  EXPECT_FALSE(early) << wire::CommandName(early->command) << " " << early->header.dump();
  fake_.Send(Command::kChunk, {{"blob", "in-late"}, {"offset", 0}, {"total", size}}, {bytes});
  auto first = fake_.Expect(Command::kResult);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header["lease"], "L-old");
  auto second = fake_.Expect(Command::kResult);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->header["lease"], "L-new");
}

// Two leases held at once on a real model give each the video it gives alone.
TEST_F(WorkerTest, TwoHeldLeasesGiveTheSameVideosAsAlone) {
  WorkerOptions o = Options(0);
  o.prefetch = 1;
  o.checkpoint_every = 2;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const JobSpec a = Spec(0, 4, 11, "a red circle moving right");
  const JobSpec b = Spec(0, 3, 12, "a blue square rotating");
  Assign("L-1", 0, {TaskJson(0, a)});
  Assign("L-2", 0, {TaskJson(0, b)});
  std::map<std::string, Video> results;
  while (results.size() < 2) {
    auto r = fake_.Expect(Command::kResult, milliseconds(60000));
    ASSERT_TRUE(r);
    results[r->header["lease"].get<std::string>()] = Uploaded(*r);
  }
  EXPECT_TRUE(SameVideo(results.at("L-1"), Direct(0, a)));
  EXPECT_TRUE(SameVideo(results.at("L-2"), Direct(0, b)));
  // Progress and checkpoints name the lease they belong to, in order: L-2 starts after L-1.
  bool l2_started = false;
  for (const Message& m : fake_.seen) {
    if (m.command != Command::kProgress && m.command != Command::kCheckpoint) continue;
    const std::string lease = m.header["lease"];
    if (lease == "L-2") l2_started = true;
    if (lease == "L-1") {
      EXPECT_FALSE(l2_started) << "L-1 reported after L-2 started";
    }
  }
  EXPECT_TRUE(l2_started);
}

TEST_F(WorkerTest, WithoutPrefetchASecondAssignIsRefused) {
  WorkerOptions o = Options(0);
  o.prefetch = 0;
  o.simulate_ms = 300;
  RunningWorker w(o, ctx_);
  auto ready = fake_.Expect(Command::kReady);
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->header["max_leases"], 1);
  Assign("L-one", 0, {TaskJson(0, Spec(0, 3, 1, "one"))});
  Assign("L-two", 0, {TaskJson(0, Spec(0, 3, 2, "two"))});
  auto busy = fake_.Recv(milliseconds(5000));
  ASSERT_TRUE(busy);
  ASSERT_EQ(busy->command, Command::kFail);
  EXPECT_EQ(busy->header["lease"], "L-two");
  auto result = fake_.Expect(Command::kResult);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->header["lease"], "L-one");
}

TEST_F(WorkerTest, SimulateModeCancelEndsTheWaitWithoutAResult) {
  WorkerOptions o = Options(0);
  o.simulate_ms = 60000;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  Assign("L-sim-long", 0, {TaskJson(0, Spec(0, 3, 1, "long"))});
  std::this_thread::sleep_for(milliseconds(100));
  fake_.Send(Command::kCancel, {{"lease", "L-sim-long"}, {"reason", "job cancelled"}});
  auto ready = fake_.Expect(Command::kReady, milliseconds(5000));
  ASSERT_TRUE(ready);
  EXPECT_FALSE(ready->header.contains("lease"));
  for (const Message& m : fake_.seen) EXPECT_NE(m.command, Command::kResult);
  EXPECT_EQ(w.worker().stats().done, 0);
}

TEST_F(WorkerTest, SimulateModeRefusesAModelPackage) {
  WorkerOptions o = Options(0);
  o.simulate_ms = 0;
  o.package_dir = "/nonexistent/package";
  auto w = Worker::Create(o, &ctx_);
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(w.status().IsInvalidArgument()) << w.status().ToString();
}

TEST_F(WorkerTest, HeartbeatsKeepFlowingDuringALongStage) {
  WorkerOptions o = Options(0);
  o.heartbeat_ms = 50;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  Assign("L-hb", 0, {TaskJson(0, Spec(0, 5000, 1, "heartbeats"))});
  ASSERT_TRUE(fake_.Expect(Command::kProgress));
  fake_.heartbeats = 0;
  const auto start = Clock::now();
  while (Clock::now() - start < milliseconds(1000)) {
    auto m = fake_.Recv(milliseconds(100));
    if (m) {
      EXPECT_TRUE(m->command == Command::kProgress || m->command == Command::kCheckpoint);
    }
  }
  EXPECT_GE(fake_.heartbeats, 12) << "20 expected in 1 s at 50 ms";
  EXPECT_TRUE(w.Join().ok());
}

TEST_F(WorkerTest, SilentCoordinatorGetsReadyWithTheLease) {
  WorkerOptions o = Options(0);
  o.heartbeat_ms = 50;
  o.heartbeat_misses = 3;
  fake_.echo_heartbeats = false;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  Assign("L-silent", 0, {TaskJson(0, Spec(0, 5000, 1, "silence"))});
  const auto start = Clock::now();
  auto ready = fake_.Expect(Command::kReady, milliseconds(5000));
  ASSERT_TRUE(ready);
  EXPECT_GE(Clock::now() - start, milliseconds(140));
  EXPECT_EQ(ready->header["lease"], "L-silent");
  EXPECT_EQ(ready->header["worker_id"], "test-worker-0");
}

TEST_F(WorkerTest, SurvivesACoordinatorRestartMidTask) {
  WorkerOptions o = Options(0);
  o.heartbeat_ms = 50;
  o.checkpoint_every = 5;
  o.chunk_bytes = 4096;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const JobSpec spec = Spec(0, 30, 8, "through a restart");
  Assign("L-restart", 0, {TaskJson(0, spec)});
  // Die while the step-5 checkpoint is being uploaded (PUT_ACKs held back).
  fake_.lazy = true;
  while (fake_.puts_received == 0) ASSERT_TRUE(fake_.Recv(milliseconds(20000)));
  fake_.Close();
  std::this_thread::sleep_for(milliseconds(100));

  // The new coordinator does not know the worker's connection: it says so, as the real one does.
  FakeCoordinator restarted(ctx_, fake_.endpoint());
  auto first = restarted.Recv(milliseconds(5000));
  ASSERT_TRUE(first);
  restarted.Send(Command::kError, {{"error", "send READY first"}, {"code", "unknown_worker"}});
  auto ready = restarted.Expect(Command::kReady, milliseconds(5000));
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->header["lease"], "L-restart");
  auto result = restarted.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->header["lease"], "L-restart");
  // The interrupted upload was started again under a new id and completed.
  bool checkpoint = false;
  for (const Message& m : restarted.seen) {
    if (m.command != Command::kCheckpoint) continue;
    checkpoint = true;
    const std::string id = m.header["uploads"][0].get<std::string>();
    ASSERT_TRUE(restarted.uploads.count(id)) << id;
    EXPECT_TRUE(wire::DecodeVideo(restarted.uploads.at(id)).ok());
  }
  EXPECT_TRUE(checkpoint);
  auto v = wire::DecodeVideo(restarted.uploads.at(result->header["uploads"][0].get<std::string>()));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(SameVideo(*v, Direct(0, spec)));
}

TEST_F(WorkerTest, UnknownWorkerErrorRegistersAgain) {
  RunningWorker w(Options(0), ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  fake_.Send(Command::kError, {{"error", "who are you"}, {"code", "unknown_worker"}});
  auto ready = fake_.Expect(Command::kReady, milliseconds(2000));
  ASSERT_TRUE(ready);
  EXPECT_FALSE(ready->header.contains("lease"));
}

TEST_F(WorkerTest, StaleLeaseErrorAbandonsTheTask) {
  RunningWorker w(Options(0), ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  Assign("L-stale", 0, {TaskJson(0, Spec(0, 5000, 1, "stale"))});
  ASSERT_TRUE(fake_.Expect(Command::kProgress));
  fake_.Send(Command::kError,
             {{"error", "lease expired"}, {"code", "stale_lease"}, {"lease", "L-stale"}});
  auto ready = fake_.Expect(Command::kReady, milliseconds(2000));
  ASSERT_TRUE(ready);
  EXPECT_FALSE(ready->header.contains("lease"));
  while (auto m = fake_.Recv(milliseconds(300))) {
    EXPECT_NE(m->command, Command::kResult);
    EXPECT_NE(m->command, Command::kCheckpoint);
  }
}

TEST_F(WorkerTest, DisconnectEndsRunWithTheReason) {
  RunningWorker w(Options(0), ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  fake_.Send(Command::kDisconnect, {{"reason", "model package mismatch: expected sha abc"}});
  Status st = w.Wait();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("model package mismatch: expected sha abc"), std::string::npos)
      << st.ToString();
}

TEST_F(WorkerTest, BadEndpointIsAnErrorNotACrash) {
  WorkerOptions o = Options(0);
  o.endpoint = "nonsense://here";
  auto w = Worker::Create(o, &ctx_);
  ASSERT_TRUE(w.ok()) << w.status().ToString();  // nothing is connected before Run
  Status st = (*w)->Run();
  EXPECT_TRUE(st.IsIOError()) << st.ToString();
  o.stage = 7;
  EXPECT_TRUE(Worker::Create(o, &ctx_).status().IsInvalidArgument());
}

TEST_F(WorkerTest, PackageOfAnotherStageIsRefused) {
  const fs::path dir = fs::temp_directory_path() / ("vf-worker-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto pkg = models::RandomPackage(preset_.stages[2], 5, torch::kCPU);
  ASSERT_TRUE(pkg.ok());
  ASSERT_TRUE(
      models::SavePackage((dir / "ssr2").string(), preset_.stages[2], "tiny", pkg->net, {}).ok());

  WorkerOptions o = Options(3);
  o.package_dir = (dir / "ssr2").string();
  auto wrong = Worker::Create(o, &ctx_);
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(wrong.status().IsInvalidArgument()) << wrong.status().ToString();
  EXPECT_NE(wrong.status().message().find("stage 3"), std::string::npos)
      << wrong.status().ToString();

  o.stage = 2;  // the right stage loads, and READY names the package's weights
  auto right = Worker::Create(o, &ctx_);
  ASSERT_TRUE(right.ok()) << right.status().ToString();
  std::ifstream config(dir / "ssr2" / "config.json");
  const auto sha = nlohmann::json::parse(config)["weights"]["sha256"].get<std::string>();
  EXPECT_EQ((*right)->model_sha256(), sha);
  fs::remove_all(dir);
}

TEST_F(WorkerTest, MalformedAssignIsFailedAndTheWorkerStaysReady) {
  RunningWorker w(Options(0), ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  nlohmann::json task = TaskJson(0, Spec(0, 2, 1, "wrong stage"));
  task["stage"] = 4;
  Assign("L-bad", 0, {task});
  auto fail = fake_.Expect(Command::kFail, milliseconds(2000));
  ASSERT_TRUE(fail);
  EXPECT_EQ(fail->header["lease"], "L-bad");
  EXPECT_EQ(fail->header["retryable"], false);
  EXPECT_NE(fail->header["error"].get<std::string>().find("stage 4"), std::string::npos);
  ASSERT_TRUE(fake_.Expect(Command::kReady, milliseconds(2000)));
  EXPECT_EQ(w.worker().stats().failed, 1);
}

TEST_F(WorkerTest, GarbageFromTheCoordinatorIsIgnored) {
  RunningWorker w(Options(0), ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  fake_.SendRaw({"garbage"});
  fake_.SendRaw({"VF9", "ASSIGN", "{}"});
  fake_.SendRaw({"VF1", "NO_SUCH_COMMAND", "{}"});
  fake_.SendRaw({"VF1", "ASSIGN", "{not json"});
  fake_.SendRaw({"VF1", "ASSIGN", "[1,2,3]"});
  fake_.SendRaw({"VF1", "ASSIGN", R"({"tasks": 7})"});  // no lease
  fake_.SendRaw({"VF1", "CHUNK", R"({"blob": "nope", "offset": 0, "total": 3})", "abc"});
  fake_.SendRaw({"VF1", "CHUNK", R"({"blob": 5})"});
  fake_.SendRaw({"VF1", "PUT_ACK", R"({"upload": "nope", "offset": 0})"});
  fake_.SendRaw({"VF1", "CANCEL", R"({"lease": 12})"});
  fake_.SendRaw({"VF1", "ERROR", R"({"code": ["x"]})"});
  fake_.SendRaw({"VF1", "HEARTBEAT", "{}", std::string(1 << 10, '\0')});
  fake_.SendRaw({"VF1", "READY", "{}"});  // a worker's command, not ours
  std::string random(64, '\0');
  std::mt19937 gen(3);
  for (int i = 0; i < 200; ++i) {
    for (char& c : random) c = static_cast<char>(gen());
    fake_.SendRaw(
        {"VF1", i % 2 ? "ASSIGN" : "CHUNK", random.substr(0, static_cast<size_t>(i % 64))});
  }
  const JobSpec spec = Spec(0, 2, 5, "still here");
  Assign("L-after", 0, {TaskJson(0, spec)});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->header["lease"], "L-after");
  EXPECT_TRUE(SameVideo(Uploaded(*result), Direct(0, spec)));
}

TEST_F(WorkerTest, BatchOfTasksWithDifferentSeedsMatchesSingleRuns) {
  WorkerOptions o = Options(0);
  o.max_batch = 2;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const JobSpec a = Spec(0, 2, 100, "first job");
  const JobSpec b = Spec(0, 2, 200, "second job");
  nlohmann::json tb = TaskJson(0, b);
  tb["job"] = "job-2";
  Assign("L-batch", 0, {TaskJson(0, a), tb});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  ASSERT_EQ(Count(*result), 2u);
  EXPECT_TRUE(SameVideo(Uploaded(*result, 0), Direct(0, a)));
  EXPECT_TRUE(SameVideo(Uploaded(*result, 1), Direct(0, b)));
  EXPECT_EQ(w.worker().stats().done, 2);
}

TEST_F(WorkerTest, ShortChunksAreAskedForAgain) {
  WorkerOptions o = Options(1);
  o.chunk_bytes = 64 << 10;
  fake_.serve_max = 3000;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const Video input = Input(1);
  const std::string bytes = wire::EncodeVideo(input);
  fake_.blobs["in-short"] = bytes;
  const JobSpec spec = Spec(1, 2, 4, "short chunks");
  Assign("L-short-chunks", 1, {TaskJson(1, spec, "in-short", static_cast<int64_t>(bytes.size()))});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(fake_.chunks_served, static_cast<int>((bytes.size() + 2999) / 3000));
  EXPECT_TRUE(SameVideo(Uploaded(*result), Direct(1, spec, {input})));
}

TEST_F(WorkerTest, CancellingOneJobOfABatchKeepsTheOthers) {
  WorkerOptions o = Options(0);
  o.max_batch = 2;
  o.checkpoint_every = 0;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const JobSpec a = Spec(0, 12, 100, "cancelled job");
  const JobSpec b = Spec(0, 12, 100, "kept job");
  nlohmann::json tb = TaskJson(0, b);
  tb["job"] = "job-2";
  Assign("L-two", 0, {TaskJson(0, a), tb});
  ASSERT_TRUE(fake_.Expect(Command::kProgress));
  fake_.Send(Command::kCancel,
             {{"lease", "L-two"}, {"reason", "job job-1 cancelled"}, {"job", "job-1"}});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  for (const Message& m : fake_.seen) EXPECT_NE(m.command, Command::kReady);
  ASSERT_EQ(Count(*result), 2u);  // one per task; the coordinator drops job-1's
  // Same seed and settings: one batched Run, whose rows match single runs to float tolerance,
  // which in fp16 outputs is one half-precision step (2^-10 at 1).
  const Video kept = Uploaded(*result, 1), direct = Direct(0, b);
  ASSERT_EQ(kept.data.size(), direct.data.size());
  for (size_t i = 0; i < kept.data.size(); ++i)
    ASSERT_NEAR(kept.data[i], direct.data[i], 1.0 / 1024) << i;

  // Cancelling every task of a lease frees the worker.
  fake_.seen.clear();
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  Assign("L-gone", 0, {TaskJson(0, Spec(0, 5000, 1, "long"))});
  ASSERT_TRUE(fake_.Expect(Command::kProgress));
  fake_.Send(Command::kCancel,
             {{"lease", "L-gone"}, {"reason", "job job-1 cancelled"}, {"job", "job-1"}});
  auto ready = fake_.Expect(Command::kReady);
  ASSERT_TRUE(ready);
  for (const Message& m : fake_.seen) EXPECT_NE(m.command, Command::kResult);
}

// The farm wedge: a CHUNK lost on the way (a send queue drop, a dead connection) left the worker
// waiting for it forever while its heartbeats kept the lease alive. With retries off (a retry
// period longer than the test), that is still what happens.
TEST_F(WorkerTest, WithoutRetryALostChunkWedgesTheLease) {
  WorkerOptions o = Options(1);
  o.transfer_retry_ms = 600000;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const std::string bytes = wire::EncodeVideo(Input(1));
  fake_.blobs["in-1"] = bytes;
  fake_.drop_chunks = 1;
  Assign("L1", 1, {TaskJson(1, Spec(1, 2, 9, "lost"), "in-1", static_cast<int64_t>(bytes.size()))});
  auto m = fake_.Recv(milliseconds(1500));  // heartbeats flow, nothing else
  EXPECT_FALSE(m) << wire::CommandName(m->command);
  EXPECT_EQ(fake_.chunks_served, 0);
  EXPECT_GT(fake_.heartbeats, 0);
}

TEST_F(WorkerTest, LostChunkIsFetchedAgainAfterTheRetryPeriod) {
  WorkerOptions o = Options(1);
  o.chunk_bytes = 4096;
  o.fetch_credit = 2;
  o.transfer_retry_ms = 300;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const Video input = Input(1);
  const std::string bytes = wire::EncodeVideo(input);
  fake_.blobs["in-1"] = bytes;
  fake_.drop_chunks = 1;  // the first CHUNK (offset 0) never arrives
  const JobSpec spec = Spec(1, 2, 9, "a lost chunk");
  Assign("L1", 1, {TaskJson(1, spec, "in-1", static_cast<int64_t>(bytes.size()))});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(fake_.fetches_by_offset[0], 2);  // asked again
  EXPECT_TRUE(SameVideo(Uploaded(*result), Direct(1, spec, {input})));
}

TEST_F(WorkerTest, LostPutAckIsAnsweredByPuttingTheChunkAgain) {
  WorkerOptions o = Options(0);
  o.checkpoint_every = 0;
  o.chunk_bytes = 4096;
  o.transfer_retry_ms = 300;
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  fake_.drop_put_acks = 1;  // the first PUT is stored but its PUT_ACK is lost
  const JobSpec spec = Spec(0, 2, 5, "a lost ack");
  Assign("L1", 0, {TaskJson(0, spec)});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(fake_.puts_by_offset[0], 2);  // sent again, acknowledged the second time
  EXPECT_TRUE(SameVideo(Uploaded(*result), Direct(0, spec)));
  EXPECT_EQ(w.worker().stats().done, 1);
}

// The coordinator lost the RESULT's upload (ERROR unknown_upload): the worker uploads it again
// under a new id and sends RESULT again, instead of the task being run again.
TEST_F(WorkerTest, ResultWhoseUploadWasLostIsUploadedAgain) {
  WorkerOptions o = Options(0);
  o.checkpoint_every = 0;
  o.inline_uploads = false;  // a 12 KB output would travel inside the RESULT
  RunningWorker w(o, ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  const JobSpec spec = Spec(0, 2, 5, "a lost upload");
  Assign("L1", 0, {TaskJson(0, spec)});
  auto first = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(first);
  const std::string first_id = first->header["uploads"][0];
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  fake_.uploads.erase(first_id);
  fake_.Send(Command::kError, {{"code", "unknown_upload"},
                               {"error", "RESULT: upload is missing"},
                               {"lease", "L1"},
                               {"command", "RESULT"},
                               {"upload", first_id}});
  auto again = fake_.Expect(Command::kResult, milliseconds(20000));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->header["lease"], "L1");
  EXPECT_NE(again->header["uploads"][0], first_id);
  EXPECT_TRUE(SameVideo(Uploaded(*again), Direct(0, spec)));
  auto ready = fake_.Expect(Command::kReady);
  ASSERT_TRUE(ready);
  EXPECT_FALSE(ready->header.contains("lease"));
  EXPECT_EQ(w.worker().stats().done, 1);
}

// Outputs and checkpoints that fit in one chunk travel inside the RESULT/CHECKPOINT: no PUT, and
// the same bytes as the chunked path, which --chunk-bytes smaller than the video still takes.
// An ASSIGN saying "ready_in_result": the RESULT says "ready": true and no READY follows it; an
// ASSIGN without it (an older coordinator) gets the RESULT and then a READY, as before.
TEST_F(WorkerTest, ResultCarriesTheCreditWhereTheAssignAllowsIt) {
  const JobSpec spec = Spec(0, 2, 5, "a red circle moving right");
  RunningWorker w(Options(0), ctx_);
  ASSERT_TRUE(fake_.Expect(Command::kReady));
  fake_.Send(
      Command::kAssign,
      {{"lease", "L1"}, {"stage", 0}, {"tasks", {TaskJson(0, spec)}}, {"ready_in_result", true}});
  auto result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->header.value("lease", ""), "L1");
  EXPECT_EQ(result->header.value("ready", false), true);
  for (auto m = fake_.Recv(milliseconds(1500)); m; m = fake_.Recv(milliseconds(1500))) {
    EXPECT_NE(m->command, Command::kReady) << m->header.dump();
  }
  Assign("L2", 0, {TaskJson(0, spec)});
  result = fake_.Expect(Command::kResult, milliseconds(60000));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->header.value("lease", ""), "L2");
  EXPECT_FALSE(result->header.contains("ready"));
  EXPECT_TRUE(fake_.Expect(Command::kReady));
  EXPECT_TRUE(w.Join().ok());
}

TEST_F(WorkerTest, SmallOutputsTravelInsideTheResult) {
  const JobSpec spec = Spec(0, 4, 11, "a green star rotating");
  // Computed before any worker runs: a worker left unanswered while the test computes this can
  // take the coordinator for silent and register again, and that stale READY would then be read
  // as the second worker's.
  const auto direct = Direct(0, spec);
  std::string inlined, chunked;
  for (bool inline_uploads : {true, false}) {
    WorkerOptions o = Options(0);
    o.checkpoint_every = 2;
    o.inline_uploads = inline_uploads;
    o.worker_id += inline_uploads ? "-inline" : "-chunked";
    fake_.seen.clear();
    fake_.puts_received = 0;
    RunningWorker w(o, ctx_);
    // The first worker's last words (a READY) may still be queued: the ASSIGN goes to this one.
    std::optional<Message> ready;
    do {
      ready = fake_.Expect(Command::kReady);
      ASSERT_TRUE(ready);
    } while (ready->header.value("worker_id", "") != o.worker_id);
    Assign(inline_uploads ? "L-inline" : "L-chunked", 0, {TaskJson(0, spec)});
    auto result = fake_.Expect(Command::kResult, milliseconds(60000));
    ASSERT_TRUE(result);
    EXPECT_EQ(result->header.value("inline", false), inline_uploads);
    EXPECT_EQ(Count(*result), 1u);
    int checkpoints = 0;
    for (const Message& m : fake_.seen) {
      if (m.command != Command::kCheckpoint) continue;
      ++checkpoints;
      EXPECT_EQ(m.header.value("inline", false), inline_uploads);
      EXPECT_EQ(Uploaded(m).frames, preset_.stages[0].frames);
    }
    EXPECT_GE(checkpoints, 1);
    if (inline_uploads) {
      EXPECT_EQ(fake_.puts_received, 0);
      inlined = Bytes(fake_, *result);
    } else {
      EXPECT_GT(fake_.puts_received, 0);
      chunked = Bytes(fake_, *result);
    }
    EXPECT_TRUE(SameVideo(Uploaded(*result), direct));
    ASSERT_TRUE(fake_.Expect(Command::kReady));
    EXPECT_TRUE(w.Join().ok());
  }
  EXPECT_EQ(inlined, chunked);
}

}  // namespace
}  // namespace vidfarm::worker
