// Shared pieces of the coordinator tests: a temp dir, a farm (coordinator + client) on 127.0.0.1
// port 0, and fake workers that speak the wire protocol over raw DEALER sockets.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "test_util.h"
#include "vidfarm/common/cascade_table.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/coordinator/client.h"
#include "vidfarm/coordinator/coordinator.h"

namespace vidfarm::coordinator::testing {

using nlohmann::json;
using wire::Command;

// A fresh directory for each test (tests/test_util.h).
class TempDir : public vidfarm::testing::TempDir {
 public:
  TempDir() : vidfarm::testing::TempDir("vf_coord") {}
};

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline const std::vector<CascadeStageShape>& Tiny() {
  static const std::vector<CascadeStageShape> t = *CascadeTable("tiny");
  return t;
}

// A video of stage `stage`'s output shape, filled with a pattern that depends on `v`.
inline Video StageVideo(int stage, float v) {
  const auto& s = Tiny()[stage];
  Video out(3, s.frames, s.height, s.width, s.fps);
  for (size_t i = 0; i < out.data.size(); ++i) {
    out.data[i] =
        std::max(-1.f, std::min(1.f, v + 0.5f * static_cast<float>((i % 97) / 97.0) - 0.25f));
  }
  return out;
}

inline std::string StageBytes(int stage, float v) {
  return wire::EncodeVideo(StageVideo(stage, v));
}

inline json Spec(const std::string& prompt, int priority = 0, json extra = json::object()) {
  json j = {{"prompt", prompt}, {"seed", 7}, {"priority", priority}};
  for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

// A fake stage worker: a DEALER speaking the protocol. Recv answers HEARTBEATs on its own.
class FakeWorker {
 public:
  FakeWorker(zmq::context_t& ctx, const std::string& endpoint, int stage, int max_batch = 1,
             std::string name = "")
      : sock_(ctx, zmq::socket_type::dealer),
        stage_(stage),
        max_batch_(max_batch),
        name_(name.empty() ? "w" + std::to_string(stage) : std::move(name)) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.connect(endpoint);
  }

  void SendFrames(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      sock_.send(zmq::buffer(frames[i]),
                 i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  void Send(Command c, json header, std::vector<std::string> payload = {}) {
    SendFrames(wire::Encode(wire::Message{c, std::move(header), std::move(payload)}));
  }

  json ReadyHeader() const {
    const auto& s = Tiny()[stage_];
    return {{"worker_id", name_},
            {"host", "127.0.0.1"},
            {"pid", 1234},
            {"stage", stage_},
            {"preset", "tiny"},
            {"model_sha256", "abc"},
            {"max_batch", max_batch_},
            {"shape",
             {{"frames", s.frames}, {"height", s.height}, {"width", s.width}, {"fps", s.fps}}}};
  }
  void Ready(json extra = json::object()) {
    json h = ReadyHeader();
    for (auto it = extra.begin(); it != extra.end(); ++it) h[it.key()] = it.value();
    Send(Command::kReady, h);
  }

  // Next non-HEARTBEAT message within timeout_ms.
  std::optional<wire::Message> Recv(int timeout_ms) {
    const int64_t deadline = NowMs() + timeout_ms;
    for (;;) {
      const int64_t left = deadline - NowMs();
      if (left <= 0) return std::nullopt;
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(std::min<int64_t>(left, 20)));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> parts;
      (void)zmq::recv_multipart(sock_, std::back_inserter(parts));
      std::vector<std::string> frames;
      for (auto& p : parts) frames.push_back(p.to_string());
      auto m = wire::Decode(frames);
      if (!m.ok()) {
        ADD_FAILURE() << "worker got an undecodable message: " << m.status().ToString();
        continue;
      }
      if (m->command == Command::kHeartbeat) {
        if (heartbeat_back_) Send(Command::kHeartbeat, json::object());
        continue;
      }
      return std::move(*m);
    }
  }

  ::testing::AssertionResult Expect(Command c, wire::Message* out, int timeout_ms = 5000) {
    auto m = Recv(timeout_ms);
    if (!m) {
      return ::testing::AssertionFailure()
             << name_ << ": no " << wire::CommandName(c) << " within " << timeout_ms << " ms";
    }
    if (m->command != c) {
      return ::testing::AssertionFailure()
             << name_ << ": expected " << wire::CommandName(c) << ", got "
             << wire::CommandName(m->command) << " " << m->header.dump();
    }
    if (out) *out = std::move(*m);
    return ::testing::AssertionSuccess();
  }

  // Nothing but heartbeats for `ms`.
  ::testing::AssertionResult ExpectSilence(int ms) {
    auto m = Recv(ms);
    if (m) {
      return ::testing::AssertionFailure()
             << name_ << ": unexpected " << wire::CommandName(m->command) << " "
             << m->header.dump();
    }
    return ::testing::AssertionSuccess();
  }

  // Uploads `bytes` with PUT in chunks, waiting for every PUT_ACK.
  ::testing::AssertionResult Put(const std::string& upload, const std::string& bytes,
                                 size_t chunk = 512 << 10, int credit = 4) {
    size_t sent = 0, received = 0;
    int outstanding = 0;
    while (received < bytes.size()) {
      while (outstanding < credit && sent < bytes.size()) {
        const size_t n = std::min(chunk, bytes.size() - sent);
        Send(Command::kPut, {{"upload", upload}, {"offset", sent}, {"total", bytes.size()}},
             {bytes.substr(sent, n)});
        sent += n;
        ++outstanding;
      }
      wire::Message ack;
      auto r = Expect(Command::kPutAck, &ack);
      if (!r) return r;
      --outstanding;
      received = ack.header.value("received", size_t{0});
    }
    return ::testing::AssertionSuccess();
  }

  // Downloads a blob with FETCH (one request at a time).
  std::string Fetch(const std::string& blob) {
    std::string out;
    int64_t total = -1;
    while (total < 0 || static_cast<int64_t>(out.size()) < total) {
      Send(Command::kFetch, {{"blob", blob}, {"offset", out.size()}, {"length", 1 << 20}});
      wire::Message m;
      auto r = Expect(Command::kChunk, &m);
      if (!r) {
        ADD_FAILURE() << r.message();
        return out;
      }
      total = m.header["total"];
      EXPECT_EQ(m.header["offset"].get<size_t>(), out.size());
      out += m.payload.at(0);
    }
    return out;
  }

  // Runs an ASSIGN to the end: fetches inputs, reports progress, uploads outputs, sends RESULT.
  ::testing::AssertionResult Complete(const wire::Message& assign, float value = 0.1f) {
    const std::string lease = assign.header["lease"];
    json uploads = json::array();
    int i = 0;
    for (const auto& t : assign.header["tasks"]) {
      const std::string input = t["input_blob"];
      if (!input.empty()) {
        std::string in = Fetch(input);
        if (in.size() != t["input_bytes"].get<size_t>()) {
          return ::testing::AssertionFailure()
                 << "input size " << in.size() << " vs " << t["input_bytes"];
        }
        if (!wire::DecodeVideo(in).ok()) return ::testing::AssertionFailure() << "bad input";
      }
      const std::string up = lease + "-" + std::to_string(i++);
      auto r = Put(up, StageBytes(stage_, value));
      if (!r) return r;
      uploads.push_back(up);
    }
    Send(Command::kProgress, {{"lease", lease}, {"step", 1}, {"steps", 2}});
    Send(Command::kProgress, {{"lease", lease}, {"step", 2}, {"steps", 2}});
    Send(Command::kResult, {{"lease", lease}, {"uploads", uploads}});
    return ::testing::AssertionSuccess();
  }

  // READY, ASSIGN, Complete.
  ::testing::AssertionResult RunOne(size_t expect_tasks = 1, float value = 0.1f) {
    Ready();
    wire::Message a;
    auto r = Expect(Command::kAssign, &a);
    if (!r) return r;
    if (a.header["tasks"].size() != expect_tasks) {
      return ::testing::AssertionFailure()
             << "ASSIGN with " << a.header["tasks"].size() << " tasks, expected " << expect_tasks;
    }
    return Complete(a, value);
  }

  void set_heartbeat_back(bool on) { heartbeat_back_ = on; }
  int stage() const { return stage_; }
  zmq::socket_t& socket() { return sock_; }

 private:
  zmq::socket_t sock_;
  int stage_;
  int max_batch_;
  std::string name_;
  bool heartbeat_back_ = true;
};

// A coordinator on 127.0.0.1 port 0 over a temp database, and a client for it.
class Farm {
 public:
  explicit Farm(std::function<void(CoordinatorOptions&)> tweak = nullptr) {
    opts.db_path = dir.db();
    opts.worker_endpoint = "tcp://127.0.0.1:0";
    opts.api_endpoint = "tcp://127.0.0.1:0";
    opts.heartbeat_ms = 100;
    opts.heartbeat_misses = 20;  // 2 s: generous, so a fake worker not being polled stays alive
    opts.aging_seconds = 1e9;
    opts.min_free_bytes = 0;
    if (tweak) tweak(opts);
  }
  ~Farm() { Stop(); }

  ::testing::AssertionResult Start() {
    auto c = Coordinator::Start(opts, &ctx);
    if (!c.ok()) return ::testing::AssertionFailure() << c.status().ToString();
    coord = std::move(*c);
    auto cl = Client::Connect(coord->api_endpoint(), &ctx, 5000);
    if (!cl.ok()) return ::testing::AssertionFailure() << cl.status().ToString();
    client = std::move(*cl);
    return ::testing::AssertionSuccess();
  }
  void Stop() {
    client.reset();
    if (coord) coord->Stop();
    coord.reset();
  }

  std::unique_ptr<FakeWorker> Worker(int stage, int max_batch = 1, std::string name = "") {
    return std::make_unique<FakeWorker>(ctx, coord->worker_endpoint(), stage, max_batch, name);
  }

  std::vector<std::string> Submit(std::vector<json> specs) {
    auto ids = client->Submit(specs);
    EXPECT_TRUE(ids.ok()) << ids.status().ToString();
    return ids.ok() ? *ids : std::vector<std::string>{};
  }
  json Job(const std::string& id) {
    auto r = client->Call(Command::kStatus, {{"job", id}});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? (*r)["job"] : json();
  }
  std::string State(const std::string& id) { return Job(id).value("state", std::string("?")); }
  // Polls until job `id` has `n` stages done or the time is up; the caller checks the outcome.
  void WaitStagesDone(const std::string& id, int n, int timeout_ms = 3000) {
    const int64_t deadline = NowMs() + timeout_ms;
    while (NowMs() < deadline && Job(id)["stages_done"] != n) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ::testing::AssertionResult WaitState(const std::string& id, const std::string& state,
                                       int timeout_ms = 10000) {
    const int64_t deadline = NowMs() + timeout_ms;
    std::string s;
    while (NowMs() < deadline) {
      s = State(id);
      if (s == state) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return ::testing::AssertionFailure() << "job " << id << " is " << s << ", not " << state;
  }
  json Workers() {
    auto r = client->Call(Command::kWorkers, json::object());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? (*r)["workers"] : json::array();
  }
  // Polls until `n` live workers are registered.
  ::testing::AssertionResult WaitWorkers(size_t n, int timeout_ms = 5000) {
    const int64_t deadline = NowMs() + timeout_ms;
    size_t live = 0;
    while (NowMs() < deadline) {
      live = 0;
      for (const auto& w : Workers()) live += w["state"] != "dead";
      if (live >= n) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return ::testing::AssertionFailure() << live << " live workers, expected " << n;
  }
  json WorkerInfo(const std::string& name) {
    for (const auto& w : Workers()) {
      if (w["worker_id"] == name) return w;
    }
    return json();
  }

  TempDir dir;
  zmq::context_t ctx;
  CoordinatorOptions opts;
  std::unique_ptr<Coordinator> coord;
  std::unique_ptr<Client> client;
};

}  // namespace vidfarm::coordinator::testing
