// The farm as an operator runs it: a `vidfarm coordinator` process and `vidfarm worker` processes
// on 127.0.0.1 (ports picked at run time), driven with the client commands. Videos are compared
// frame by frame (ffmpeg -f framemd5 of the MP4, md5 of the last stage's raw PNG frames) with the
// in-process `vidfarm render` of the same prompt and seed. Tiny preset, random weights, few steps.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kBin = VF_VIDFARM_BIN;
// Few steps keep the suite fast; 4 at stage 4 leaves room to kill a worker mid-task there.
const std::string kSteps = "1,1,1,1,4,1,1";

std::string Quote(const std::string& s) { return vidfarm::testing::ShellQuote(s); }

using Output = vidfarm::testing::CommandResult;
Output Sh(const std::string& cmd) { return vidfarm::testing::RunCommand(cmd); }

// A child process started with posix_spawn; stdout+stderr go to a log file.
class Proc {
 public:
  Proc(const std::vector<std::string>& args, const std::string& log) : log_(log) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Proc() { Kill(SIGKILL); }
  pid_t pid() const { return pid_; }
  void Kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int st;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

class FarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vidfarm-farm-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    workers_.clear();
    coordinator_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string Path(const std::string& n) const { return (fs::path(dir_) / n).string(); }

  // Starts the coordinator; with worker/api endpoints given, binds exactly those (restart).
  void StartCoordinator(const std::string& listen = "tcp://127.0.0.1:0",
                        const std::string& api = "tcp://127.0.0.1:0") {
    const std::string log = Path("coordinator.log");
    coordinator_ = std::make_unique<Proc>(
        std::vector<std::string>{kBin, "coordinator", "--db", Path("db"), "--listen", listen,
                                 "--api", api, "--heartbeat-ms", "500", "--heartbeat-misses", "4"},
        log);
    const std::regex re("workers=(\\S+) api=(\\S+)");
    for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(20);) {
      std::smatch m;
      std::string text = coordinator_->Log();
      if (std::regex_search(text, m, re)) {
        worker_ep_ = m[1];
        api_ep_ = m[2];
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "coordinator did not start:\n" << coordinator_->Log();
  }

  void StartWorker(int stage, const std::string& name) {
    workers_[name] = std::make_unique<Proc>(
        std::vector<std::string>{kBin, "worker", "--stage", std::to_string(stage), "--connect",
                                 worker_ep_, "--heartbeat-ms", "500", "--checkpoint-every", "1",
                                 "--threads", "1", "--id", name},
        Path(name + ".log"));
  }

  void StartAllWorkers() {
    for (int k = 0; k < 7; ++k) StartWorker(k, "w" + std::to_string(k));
  }

  Output Client(const std::string& args) {
    return Sh("VIDFARM_COORDINATOR=" + api_ep_ + " " + kBin + " " + args);
  }

  std::string Submit(const std::string& prompt, int seed, const std::string& extra = "") {
    // Intermediates kept: Fetched() reads the last stage's raw frames.
    Output r = Client("submit " + Quote(prompt) + " --seed " + std::to_string(seed) + " --steps " +
                      kSteps + " --keep-intermediates " + extra);
    EXPECT_EQ(r.code, 0) << r.out;
    std::string id = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(id.rfind("j-", 0), 0u) << r.out;
    return id;
  }

  json Status(const std::string& job) {
    Output r = Client("status " + job + " --json");
    if (r.code != 0) return json::object();
    return json::parse(r.out, nullptr, false);
  }

  // Polls until every job is done (or anything fails); returns false on timeout.
  bool WaitDone(const std::vector<std::string>& jobs, int seconds) {
    for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(seconds);) {
      Output r = Client("list --json");
      if (r.code == 0) {
        json j = json::parse(r.out, nullptr, false);
        size_t done = 0;
        for (const auto& job : j["jobs"]) {
          if (std::find(jobs.begin(), jobs.end(), job["id"].get<std::string>()) == jobs.end())
            continue;
          EXPECT_NE(job["state"], "failed") << job.dump();
          if (job["state"] == "failed") return false;
          done += job["state"] == "done";
        }
        if (done == jobs.size()) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }

  static std::string FrameMd5(const std::string& file) {
    Output r = Sh("ffmpeg -v error -i " + Quote(file) + " -f framemd5 - | grep -v '^#'");
    EXPECT_EQ(r.code, 0) << r.out;
    return r.out;
  }

  // One md5 per PNG frame of a directory, in frame order.
  static std::string PngMd5(const std::string& dir) {
    Output r = Sh("cd " + Quote(dir) + " && md5sum frame_*.png");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("frame_00063.png"), std::string::npos) << r.out;
    return r.out;
  }

  // The in-process render of the same prompt/seed/steps, cached per (prompt, seed): its MP4 decoded
  // frame by frame (ffmpeg -f framemd5) followed by one md5 per raw PNG frame of the last stage.
  // It uses one LibTorch thread like the workers: bit-identity holds for the same thread count (a
  // different count changes the order of float reductions in the kernels). The MP4 comes from the
  // coordinator's encoder, as the farm's does; the PNG frames from a second render on the same
  // database, which finds that job done (both keep intermediates, so they are the same job).
  std::string Reference(const std::string& prompt, int seed) {
    const std::string key = prompt + "#" + std::to_string(seed);
    auto it = reference_.find(key);
    if (it != reference_.end()) return it->second;
    const std::string name = Path("ref-" + std::to_string(reference_.size()));
    // Its own database: the default one under $HOME is locked while another test renders.
    const std::string render = kBin + " render " + Quote(prompt) +
                               " --random-weights -q --threads 1 --seed " + std::to_string(seed) +
                               " --steps " + kSteps + " --db " + Quote(Path("refdb"));
    Output r = Sh(render + " --keep-intermediates " + Quote(name + "-stages") + " -o " +
                  Quote(name + ".mp4"));
    EXPECT_EQ(r.code, 0) << r.out;
    r = Sh(render + " -o " + Quote(name + "/"));
    EXPECT_EQ(r.code, 0) << r.out;
    return reference_[key] = FrameMd5(name + ".mp4") + PngMd5(name);
  }

  // The job's MP4 decoded frame by frame, then its last stage's raw frames (Reference's format).
  std::string Fetched(const std::string& job) {
    const std::string mp4 = Path(job + ".mp4");
    Output r = Client("fetch " + job + " -o " + Quote(mp4));
    EXPECT_EQ(r.code, 0) << r.out;
    const std::string out = Path(job) + "/";
    r = Client("fetch " + job + " --stage 6 -o " + Quote(out));
    EXPECT_EQ(r.code, 0) << r.out;
    return FrameMd5(mp4) + PngMd5(out);
  }

  std::string dir_, worker_ep_, api_ep_;
  std::unique_ptr<Proc> coordinator_;
  std::map<std::string, std::unique_ptr<Proc>> workers_;
  std::map<std::string, std::string> reference_;
};

TEST_F(FarmTest, TwentyJobsThroughSevenWorkerProcessesMatchTheEmbeddedRender) {
  StartCoordinator();
  StartAllWorkers();
  const std::vector<std::pair<std::string, int>> kinds = {
      {"a red circle moving right", 1},
      {"a blue star rotating", 2},
      {"a yellow letter K growing on a green background", 3},
      {"a white square moving up", 4}};
  std::vector<std::string> jobs;
  std::vector<size_t> kind_of;
  for (int i = 0; i < 20; ++i) {
    jobs.push_back(Submit(kinds[i % 4].first, kinds[i % 4].second));
    kind_of.push_back(i % 4);
  }
  ASSERT_TRUE(WaitDone(jobs, 600)) << Client("status").out << Client("workers").out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(Fetched(jobs[i]), Reference(kinds[kind_of[i]].first, kinds[kind_of[i]].second))
        << "job " << jobs[i];
  }
  Output w = Client("workers --json");
  ASSERT_EQ(w.code, 0);
  int64_t done = 0;
  for (const auto& x : json::parse(w.out)) done += x["done"].get<int64_t>();
  EXPECT_EQ(done, 20 * 7);
}

TEST_F(FarmTest, KilledWorkerTaskFinishesElsewhereFromItsCheckpoint) {
  StartCoordinator();
  for (int k = 0; k < 7; ++k) {
    if (k != 4) StartWorker(k, "w" + std::to_string(k));
  }
  StartWorker(4, "victim");
  const std::string job = Submit("a purple triangle moving left", 11);
  // Wait until the victim has checkpointed at least once in stage 4, then kill -9 it.
  bool killed = false;
  for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(300) && !killed;) {
    json s = Status(job);
    if (s.contains("tasks")) {
      const json& t = s["tasks"][4];
      if (t["state"] == "leased" && t["checkpoint_step"].get<int>() >= 1) {
        workers_["victim"]->Kill(SIGKILL);
        killed = true;
      }
      ASSERT_NE(s["state"], "done") << "the job finished before the worker could be killed";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(killed);
  StartWorker(4, "rescuer");
  ASSERT_TRUE(WaitDone({job}, 300)) << Client("status " + job).out;
  json s = Status(job);
  EXPECT_GE(s["tasks"][4]["attempts"].get<int>(), 2) << s.dump();
  EXPECT_EQ(s["tasks"][4]["worker"], "rescuer");
  EXPECT_EQ(Fetched(job), Reference("a purple triangle moving left", 11));
}

TEST_F(FarmTest, KilledCoordinatorRestartsOnTheSameDatabaseAndEveryJobCompletes) {
  StartCoordinator();
  StartAllWorkers();
  std::vector<std::string> jobs;
  for (int i = 0; i < 4; ++i) jobs.push_back(Submit("an orange circle moving down", 20 + i));
  // Let some work happen, then kill -9 the coordinator mid-run.
  for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(120);) {
    json s = Status(jobs[0]);
    if (s.contains("stages_done") && s["stages_done"].get<int>() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string listen = worker_ep_, api = api_ep_;
  coordinator_->Kill(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  StartCoordinator(listen, api);
  ASSERT_EQ(worker_ep_, listen);
  ASSERT_TRUE(WaitDone(jobs, 600)) << Client("status").out << coordinator_->Log();
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(Fetched(jobs[i]),
              Reference("an orange circle moving down", 20 + static_cast<int>(i)));
  }
}

TEST_F(FarmTest, CancelPauseResumeRetryAndPriorityFromTheCommandLine) {
  StartCoordinator();
  // No workers yet: jobs wait in the queue, so their order and control are observable.
  const std::string low = Submit("a green star still", 5, "--priority 0");
  const std::string high = Submit("a green star still", 6, "--priority 10");
  const std::string paused = Submit("a green star still", 7);
  const std::string cancelled = Submit("a green star still", 8);
  EXPECT_EQ(Client("pause " + paused).code, 0);
  EXPECT_EQ(Status(paused)["state"], "paused");
  EXPECT_EQ(Client("cancel " + cancelled).code, 0);
  EXPECT_EQ(Status(cancelled)["state"], "cancelled");
  Output bad = Client("pause j-nope");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("j-nope"), std::string::npos) << bad.out;
  // One base worker: the high-priority job's stage 0 must run first.
  StartWorker(0, "w0");
  for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(120);) {
    if (Status(high)["tasks"][0]["state"] == "done") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  json h = Status(high), l = Status(low);
  EXPECT_EQ(h["tasks"][0]["state"], "done");
  EXPECT_LE(h["tasks"][0]["state"] == "done" ? 0 : 1, l["tasks"][0]["state"] == "done" ? 0 : 1);
  for (int k = 1; k < 7; ++k) StartWorker(k, "w" + std::to_string(k));
  ASSERT_TRUE(WaitDone({high, low}, 300));
  EXPECT_LT(Status(high)["finished_us"].get<int64_t>(), Status(low)["finished_us"].get<int64_t>());
  EXPECT_EQ(Status(paused)["state"], "paused");  // still waiting
  EXPECT_EQ(Client("resume " + paused).code, 0);
  EXPECT_EQ(Client("retry " + cancelled).code, 0);
  ASSERT_TRUE(WaitDone({paused, cancelled}, 300));
  EXPECT_EQ(Fetched(cancelled), Reference("a green star still", 8));
  Output w = Client("watch " + high);
  EXPECT_EQ(w.code, 0) << w.out;
  EXPECT_NE(w.out.find("done"), std::string::npos);
}

TEST_F(FarmTest, InterruptedEmbeddedRenderPicksUpWhereItStopped) {
  const std::string prompt = "a red square moving diagonally";
  const std::string args = "render " + Quote(prompt) + " --random-weights --threads 1 --seed 31 --steps " +
                           kSteps + " --db " + Quote(Path("renderdb"));
  auto first = std::make_unique<Proc>(
      std::vector<std::string>{"/bin/sh", "-c", kBin + " " + args + " -o " + Quote(Path("a") + "/")},
      Path("render1.log"));
  // Kill it once stage 4 is under way (its progress lines name the stage).
  bool killed = false;
  for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(300);) {
    if (first->Log().find("[5/7") != std::string::npos) {
      ::kill(-first->pid(), SIGKILL);
      Sh("pkill -9 -f " + Quote("renderdb"));
      first->Kill(SIGKILL);
      killed = true;
      break;
    }
    ASSERT_FALSE(fs::exists(Path("a/frame_00000.png"))) << "finished before it could be interrupted";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(killed) << first->Log();
  Output again = Sh(kBin + " " + args + " -o " + Quote(Path("b") + "/"));
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("resuming"), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("[1/7"), std::string::npos) << "stage 1 ran again:\n" << again.out;
  // The same job once more, as MP4: it is done, so this only fetches the coordinator's encode.
  Output mp4 = Sh(kBin + " " + args + " --keep-intermediates " + Quote(Path("c-stages")) + " -o " +
                  Quote(Path("c.mp4")));
  ASSERT_EQ(mp4.code, 0) << mp4.out;
  EXPECT_EQ(mp4.out.find("[7/7"), std::string::npos) << "stage 7 ran again:\n" << mp4.out;
  EXPECT_EQ(FrameMd5(Path("c.mp4")) + PngMd5(Path("b")), Reference(prompt, 31));
}

TEST_F(FarmTest, ClientErrorsAreClear) {
  StartCoordinator();
  Output r = Client("submit '' ");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("prompt"), std::string::npos) << r.out;
  std::ofstream(Path("bad.jsonl")) << "{\"prompt\": \"ok\"}\n{\"promt\": \"typo\"}\n";
  r = Client("submit --file " + Path("bad.jsonl"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find(":2:"), std::string::npos) << r.out;
  EXPECT_EQ(json::parse(Client("list --json").out)["total"], 0) << "a bad file queued jobs";
  std::ofstream(Path("good.jsonl"))
      << "{\"prompt\": \"a red circle\"}\n\n{\"prompt\": \"a blue square\", \"priority\": 3}\n";
  r = Client("submit --file " + Path("good.jsonl"));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2);
  r = Client("status");  // the farm's summary
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(" queued 2 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("coordinator: loop busy "), std::string::npos) << r.out;
  r = Client("status j-missing");
  EXPECT_EQ(r.code, 3);
  r = Client("fetch " + r.out.substr(0, 0) + "j-000000000001-x -o " + Path("x.mp4"));
  EXPECT_NE(r.code, 0);
  r = Sh("VIDFARM_COORDINATOR=tcp://127.0.0.1:1 " + kBin + " status --timeout-ms 300");
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.out.find("no answer"), std::string::npos) << r.out;
}

}  // namespace
