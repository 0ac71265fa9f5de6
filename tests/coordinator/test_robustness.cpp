// Bad input, full disks, big transfers and client errors.
#include <gtest/gtest.h>

#include <random>

#include "coord_test_util.h"
#include "vidfarm/common/log.h"
#include "vidfarm/storage/store.h"

namespace vidfarm::coordinator {
namespace {

using namespace testing;  // NOLINT

TEST(CoordinatorInput, SubmitWithOneBadSpecWritesNothing) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto r = farm.client->Call(
      Command::kSubmit, {{"jobs", {Spec("good"), Spec("bad", 0, {{"colour", "red"}}), Spec("x")}}});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_NE(r.status().message().find("job 1"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("colour"), std::string::npos) << r.status().message();
  auto other_preset =
      farm.client->Call(Command::kSubmit, {{"jobs", {Spec("p", 0, {{"preset", "paper"}})}}});
  EXPECT_NE(other_preset.status().message().find("preset"), std::string::npos);
  EXPECT_FALSE(farm.client->Call(Command::kSubmit, {{"jobs", json::array()}}).ok());
  EXPECT_FALSE(farm.client->Call(Command::kSubmit, {{"jobs", "nope"}}).ok());
  auto list = farm.client->Call(Command::kList, json::object());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)["total"], 0);
  farm.Stop();
  storage::StoreOptions so;
  so.path = farm.dir.db();
  auto store = storage::Store::Open(so);
  ASSERT_TRUE(store.ok());
  int jobs = 0;
  ASSERT_TRUE((*store)->ForEachJob([&](const storage::JobRecord&) { return ++jobs, true; }).ok());
  EXPECT_EQ(jobs, 0);
  EXPECT_EQ((*store)->last_event_seq(), 0u);
}

TEST(CoordinatorInput, FullDiskRefusesNewJobsButStatusWorks) {
  Farm farm([](CoordinatorOptions& o) { o.min_free_bytes = 1ull << 62; });
  ASSERT_TRUE(farm.Start());
  auto r = farm.client->Call(Command::kSubmit, {{"jobs", {Spec("x")}}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("disk full"), std::string::npos) << r.status().message();
  auto st = farm.client->Call(Command::kStatus, json::object());
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ((*st)["total_jobs"], 0);
  ASSERT_TRUE((*st)["disk"].is_object());
  EXPECT_GT((*st)["disk"]["free_bytes"].get<uint64_t>(), 0u);
}

TEST(CoordinatorInput, WorkerRegistrationIsChecked) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto w = farm.Worker(2);
  w->Ready({{"preset", "paper"}});
  wire::Message m;
  ASSERT_TRUE(w->Expect(Command::kDisconnect, &m));
  EXPECT_NE(m.header["reason"].get<std::string>().find("preset"), std::string::npos);
  w->Ready({{"shape", {{"frames", 16}, {"height", 24}, {"width", 41}, {"fps", 6}}}});
  ASSERT_TRUE(w->Expect(Command::kDisconnect, &m));
  EXPECT_NE(m.header["reason"].get<std::string>().find("16x24x40"), std::string::npos);
  w->Ready({{"stage", 9}});
  ASSERT_TRUE(w->Expect(Command::kDisconnect, &m));
  w->Ready({{"max_batch", "four"}});
  ASSERT_TRUE(w->Expect(Command::kError, &m));
  EXPECT_EQ(m.header["code"], "bad_request");
  // Not registered: anything but READY is answered with unknown_worker.
  w->Send(Command::kProgress, {{"lease", "l-1"}, {"step", 1}, {"steps", 2}});
  ASSERT_TRUE(w->Expect(Command::kError, &m));
  EXPECT_EQ(m.header["code"], "unknown_worker");
  EXPECT_TRUE(farm.Workers().empty());
  // Client commands on the worker socket and worker commands on the client socket.
  w->Ready();
  w->Send(Command::kSubmit, {{"rid", "1"}, {"jobs", {Spec("x")}}});
  ASSERT_TRUE(w->Expect(Command::kError, &m));
  EXPECT_EQ(m.header["code"], "unknown_command");
  auto r = farm.client->Call(Command::kHeartbeat, json::object());
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  ASSERT_EQ(farm.Workers().size(), 1u);
  EXPECT_EQ(farm.Workers()[0]["state"], "idle");
}

TEST(CoordinatorInput, UploadLimitsAndOffsetsAreEnforced) {
  Farm farm([](CoordinatorOptions& o) { o.max_upload_bytes = 1000; });
  ASSERT_TRUE(farm.Start());
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message m;
  w->Send(Command::kPut, {{"upload", "big"}, {"offset", 0}, {"total", 5000}}, {"abc"});
  ASSERT_TRUE(w->Expect(Command::kError, &m));
  EXPECT_NE(m.header["error"].get<std::string>().find("exceeds"), std::string::npos);
  w->Send(Command::kPut, {{"upload", "u"}, {"offset", 0}, {"total", 6}}, {"abc"});
  ASSERT_TRUE(w->Expect(Command::kPutAck, &m));
  EXPECT_EQ(m.header["received"], 3);
  w->Send(Command::kPut, {{"upload", "u"}, {"offset", 5}, {"total", 6}}, {"d"});  // a gap
  ASSERT_TRUE(w->Expect(Command::kError, &m));
  EXPECT_NE(m.header["error"].get<std::string>().find("expected offset 3"), std::string::npos);
  w->Send(Command::kPut, {{"upload", "v"}, {"offset", 0}, {"total", 2}}, {"abc"});  // overrun
  ASSERT_TRUE(w->Expect(Command::kError, &m));
}

TEST(CoordinatorInput, FetchErrors) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto r = farm.client->FetchBlob("no/such/blob");
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  auto w = farm.Worker(0);
  w->Ready();
  w->Send(Command::kFetch, {{"blob", "nope"}, {"offset", 0}, {"length", 10}});
  wire::Message m;
  ASSERT_TRUE(w->Expect(Command::kError, &m));
  EXPECT_EQ(m.header["code"], "not_found");
  EXPECT_EQ(m.header["blob"], "nope");
}

TEST(CoordinatorInput, FetchBlob64MiBIntact) {
  TempDir dir;
  std::string blob(64u << 20, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= blob.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&blob[i], &v, 8);
  }
  {
    storage::StoreOptions so;
    so.path = dir.db();
    so.min_free_bytes = 0;
    auto store = storage::Store::Open(so);
    ASSERT_TRUE(store.ok());
    auto txn = (*store)->NewTxn();
    ASSERT_TRUE(txn.PutBlob("big/video", blob).ok());
    ASSERT_TRUE((*store)->Commit(std::move(txn)).ok());
  }
  zmq::context_t ctx;
  CoordinatorOptions o;
  o.db_path = dir.db();
  o.worker_endpoint = "inproc://w64";
  o.api_endpoint = "tcp://127.0.0.1:0";
  o.min_free_bytes = 0;
  auto coord = Coordinator::Start(o, &ctx);
  ASSERT_TRUE(coord.ok()) << coord.status().ToString();
  EXPECT_EQ((*coord)->worker_endpoint(), "inproc://w64");
  auto client = Client::Connect((*coord)->api_endpoint(), &ctx, 10000);
  ASSERT_TRUE(client.ok());
  const int64_t t0 = NowMs();
  auto got = (*client)->FetchBlob("big/video", 8);
  const int64_t ms = NowMs() - t0;
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), blob.size());
  EXPECT_TRUE(*got == blob);
  std::printf("64 MiB fetched in %lld ms\n", static_cast<long long>(ms));
  // A second download comes from the cache.
  auto again = (*client)->FetchBlob("big/video", 4);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again == blob);
  client->reset();
  (*coord)->Stop();
  (*coord)->Stop();  // idempotent
}

TEST(CoordinatorInput, ClientRequestsWithBadFieldsAndWatchOfAFinishedJob) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("w")});
  EXPECT_TRUE(farm.client->Call(Command::kStatus, {{"job", 5}}).status().IsInvalidArgument());
  EXPECT_TRUE(
      farm.client->Call(Command::kList, {{"state", "sleeping"}}).status().IsInvalidArgument());
  EXPECT_TRUE(farm.client->Call(Command::kList, {{"limit", "ten"}}).status().IsInvalidArgument());
  EXPECT_TRUE(farm.client->Call(Command::kWatch, {{"job", "j-none"}}).status().IsNotFound());
  EXPECT_TRUE(farm.client->Call(Command::kCancelJob, json::object()).status().IsInvalidArgument());
  auto summary = farm.client->Call(Command::kStatus, json::object());
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ((*summary)["jobs"]["queued"], 1);
  EXPECT_EQ((*summary)["ready"][0], 1);
  ASSERT_TRUE(farm.client->Call(Command::kCancelJob, {{"job", ids[0]}}).ok());
  // Watching a job that already ended gives its terminal event right away.
  std::vector<std::string> types;
  Status st = farm.client->Watch(ids[0], [&](const json& e) {
    types.push_back(e["type"]);
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(types, (std::vector<std::string>{"cancelled"}));
  auto limited = farm.client->Call(Command::kList, {{"limit", 1}});
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ((*limited)["jobs"].size(), 1u);
  EXPECT_EQ((*limited)["jobs"][0]["state"], "cancelled");
}

TEST(CoordinatorInput, ClientTimesOutWithoutCoordinator) {
  zmq::context_t ctx;
  auto c = Client::Connect("tcp://127.0.0.1:1", &ctx, 200);
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Call(Command::kStatus, json::object());
  EXPECT_EQ(r.status().code(), Status::Code::kTimedOut);
  EXPECT_NE(r.status().message().find("no answer from coordinator at tcp://127.0.0.1:1"),
            std::string::npos)
      << r.status().message();
}

// Thousands of corrupted, truncated and garbage messages to both sockets; afterwards the
// coordinator still answers, and a registered worker still gets work.
TEST(CoordinatorInput, SeededGarbageOnBothSockets) {
  Farm farm([](CoordinatorOptions& o) { o.heartbeat_misses = 100; });
  ASSERT_TRUE(farm.Start());
  const LogLevel saved = GetLogLevel();
  SetLogLevel(LogLevel::kError);  // one warning per bad message is expected; keep the test quiet

  // The survivor must still run afterwards; the garbage aims at the other job ("target").
  auto ids = farm.Submit({Spec("survivor", 10), Spec("target")});
  json ready_header = FakeWorker(farm.ctx, "inproc://unused", 3).ReadyHeader();  // stage 3: idle
  std::mt19937 rng(20261121);
  auto rand_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  const std::vector<Command> commands = {
      Command::kReady,     Command::kHeartbeat, Command::kProgress, Command::kCheckpoint,
      Command::kResult,    Command::kFail,      Command::kFetch,    Command::kPut,
      Command::kSubmit,    Command::kStatus,    Command::kList,     Command::kWatch,
      Command::kCancelJob, Command::kPause,     Command::kResume,   Command::kRetry,
      Command::kWorkers,   Command::kAssign,    Command::kReply,    Command::kEvent};
  auto valid_header = [&](Command c) -> json {
    switch (c) {
      case Command::kReady:
        return ready_header;
      case Command::kProgress:
        return {{"lease", "l-1-x"}, {"step", 1}, {"steps", 2}};
      case Command::kResult:
        return {{"lease", "l-1-x"}, {"uploads", {"a"}}};
      case Command::kFetch:
        return {{"rid", "r"}, {"blob", ids[1] + "/0/out"}, {"offset", 0}, {"length", 10}};
      case Command::kPut:
        return {{"upload", "u"}, {"offset", 0}, {"total", 10}};
      case Command::kSubmit:
        return {{"rid", "r"}, {"jobs", {Spec("z", 0, {{"preset", "nope"}})}}};
      default:
        return {{"rid", "r"}, {"job", ids[1]}, {"lease", "l"}, {"state", "done"}};
    }
  };
  auto random_json = [&]() -> json {
    switch (rng() % 6) {
      case 0:
        return nullptr;
      case 1:
        return static_cast<int>(rng());
      case 2:
        return rand_bytes(rng() % 8);
      case 3:
        return json::array({1, "x", nullptr});
      case 4:
        return json::object({{"k", -1}});
      default:
        return 1e308 * 10;  // inf → null in JSON
    }
  };
  zmq::socket_t wsock(farm.ctx, zmq::socket_type::dealer),
      asock(farm.ctx, zmq::socket_type::dealer);
  wsock.set(zmq::sockopt::linger, 0);
  asock.set(zmq::sockopt::linger, 0);
  wsock.connect(farm.coord->worker_endpoint());
  asock.connect(farm.coord->api_endpoint());
  size_t answers = 0;
  std::string last_error;
  auto drain = [&](zmq::socket_t& s) {
    std::vector<zmq::message_t> parts;
    while (zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      std::vector<std::string> frames;
      for (auto& p : parts) frames.push_back(p.to_string());
      parts.clear();
      auto m = wire::Decode(frames);
      ASSERT_TRUE(m.ok()) << "the coordinator sent a malformed message";
      ++answers;
      if (m->command == Command::kError) last_error = m->header.value("error", "");
    }
  };
  int sent = 0;
  for (int i = 0; i < 4000; ++i) {
    const Command c = commands[rng() % commands.size()];
    json h = valid_header(c);
    std::vector<std::string> frames =
        wire::Encode(wire::Message{c, h,
                                   rng() % 3 == 0 ? std::vector<std::string>{rand_bytes(rng() % 64)}
                                                  : std::vector<std::string>{}});
    switch (rng() % 9) {
      case 0:
        frames.resize(rng() % frames.size());
        break;  // truncated
      case 1:
        frames[0] = rng() % 2 ? "VF2" : rand_bytes(rng() % 6);
        break;  // version
      case 2:
        frames[1] = rand_bytes(rng() % 12);
        break;  // command
      case 3:
        frames[2] = frames[2].substr(0, rng() % (frames[2].size() + 1));
        break;   // header cut
      case 4: {  // byte flips
        std::string& f = frames[rng() % frames.size()];
        for (int k = 0; k < 3 && !f.empty(); ++k)
          f[rng() % f.size()] ^= static_cast<char>(1 + rng() % 255);
        break;
      }
      case 5: {  // a field of the wrong type
        if (!h.empty()) {
          auto it = h.begin();
          std::advance(it, rng() % h.size());
          *it = random_json();
          frames[2] = h.dump(-1, ' ', false, json::error_handler_t::replace);
        }
        break;
      }
      case 6:
        for (int k = 0; k < 20; ++k) frames.push_back("x");
        break;  // too many frames
      case 7:
        frames = {rand_bytes(rng() % 40)};
        break;  // pure garbage
      default:
        frames[2] = "[1,2,3]";
        break;  // not an object
    }
    if (frames.empty()) frames.push_back("");
    zmq::socket_t& s = rng() % 2 ? wsock : asock;
    for (size_t k = 0; k < frames.size(); ++k) {
      s.send(zmq::buffer(frames[k]),
             k + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    ++sent;
    if (i % 200 == 0) {
      drain(wsock);
      drain(asock);
    }
  }
  // Markers behind the garbage on both connections: once answered, every message before them
  // has been handled.
  json marker = ready_header;
  marker["max_batch"] = 999;
  {
    auto frames = wire::Encode(wire::Message{Command::kReady, marker, {}});
    for (size_t k = 0; k < frames.size(); ++k) {
      wsock.send(zmq::buffer(frames[k]),
                 k + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    frames = wire::Encode(wire::Message{Command::kStatus, {{"rid", "marker"}}, {}});
    for (size_t k = 0; k < frames.size(); ++k) {
      asock.send(zmq::buffer(frames[k]),
                 k + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  bool worker_marker = false, api_marker = false;
  const int64_t marker_deadline = NowMs() + 20000;
  while ((!worker_marker || !api_marker) && NowMs() < marker_deadline) {
    for (zmq::socket_t* s : {&wsock, &asock}) {
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(*s, std::back_inserter(parts), zmq::recv_flags::dontwait)) continue;
      std::vector<std::string> frames;
      for (auto& p : parts) frames.push_back(p.to_string());
      auto m = wire::Decode(frames);
      ASSERT_TRUE(m.ok()) << "the coordinator sent a malformed message";
      ++answers;
      if (m->header.value("error", "").find("got 999") != std::string::npos) worker_marker = true;
      if (m->command == Command::kReply && m->header.value("rid", "") == "marker")
        api_marker = true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_TRUE(worker_marker);
  EXPECT_TRUE(api_marker);
  // Nearly every bad message got an answer (a few valid-looking ones, like HEARTBEAT, get none).
  EXPECT_GT(answers, 3000u) << "last error: " << last_error;

  // One oversize header and one unknown version, answered with the right codes.
  auto probe = farm.Worker(0, 1, "probe");
  probe->SendFrames({"VF1", "HEARTBEAT", "{\"pad\":\"" + std::string(1100000, 'a') + "\"}"});
  wire::Message m;
  ASSERT_TRUE(probe->Expect(Command::kError, &m));
  EXPECT_EQ(m.header["code"], "bad_request");
  probe->SendFrames({"VF9", "READY", "{}"});
  ASSERT_TRUE(probe->Expect(Command::kError, &m));
  EXPECT_EQ(m.header["code"], "unsupported_version");

  SetLogLevel(saved);
  EXPECT_EQ(sent, 4000);
  auto st = farm.client->Call(Command::kStatus, json::object());
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(farm.State(ids[0]), "queued");
  auto w = farm.Worker(0, 1, "after");
  ASSERT_TRUE(w->RunOne());
  const int64_t deadline = NowMs() + 3000;
  while (NowMs() < deadline && farm.Job(ids[0])["stages_done"] != 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
}

}  // namespace
}  // namespace vidfarm::coordinator
