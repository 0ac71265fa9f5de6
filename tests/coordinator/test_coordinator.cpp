// The coordinator over real ZeroMQ (127.0.0.1, port 0) and a real RocksDB in a temp dir, driven
// by fake workers on raw DEALER sockets.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "coord_test_util.h"
#include "vidfarm/common/cascade_table.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/storage/store.h"

namespace vidfarm::coordinator {
namespace {

using namespace testing;  // NOLINT

std::unique_ptr<storage::Store> OpenStore(const std::string& path) {
  storage::StoreOptions so;
  so.path = path;
  so.create_if_missing = false;
  auto s = storage::Store::Open(so);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(Coordinator, SubmitCreatesJobAndSevenTasks) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("a red ball"), Spec("a blue cube", 3)});
  ASSERT_EQ(ids.size(), 2u);
  json job = farm.Job(ids[1]);
  EXPECT_EQ(job["state"], "queued");
  EXPECT_EQ(job["priority"], 3);
  ASSERT_EQ(job["tasks"].size(), 7u);
  EXPECT_EQ(job["tasks"][0]["state"], "ready");
  for (int s = 1; s < 7; ++s) EXPECT_EQ(job["tasks"][s]["state"], "waiting") << s;
  auto list = farm.client->Call(Command::kList, {{"state", "queued"}});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)["total"], 2);
  farm.Stop();

  auto store = OpenStore(farm.dir.db());
  ASSERT_TRUE(store);
  for (const auto& id : ids) {
    auto tasks = store->GetTasks(id);
    ASSERT_TRUE(tasks.ok());
    ASSERT_EQ(tasks->size(), 7u);
    EXPECT_EQ((*tasks)[0].state, storage::TaskState::kReady);
    EXPECT_EQ((*tasks)[6].state, storage::TaskState::kWaiting);
  }
  auto j = store->GetJob(ids[0]);
  ASSERT_TRUE(j.ok());
  EXPECT_LT(j->submit_seq, store->GetJob(ids[1])->submit_seq);
  std::vector<storage::Event> events;
  ASSERT_TRUE(store->ReadEvents(0, 100, &events).ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, "submitted");
}

TEST(Coordinator, OneWorkerPerStageDrivesJobToDone) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  std::vector<std::unique_ptr<FakeWorker>> workers;
  for (int s = 0; s < 7; ++s) workers.push_back(farm.Worker(s));
  auto ids = farm.Submit({Spec("a cat", 0, {{"format", "mp4"}})});
  ASSERT_EQ(ids.size(), 1u);
  const std::string job = ids[0];

  // A watcher on its own thread and socket.
  std::vector<json> events;
  Status watch_status;
  std::thread watcher([&] {
    auto c = Client::Connect(farm.coord->api_endpoint(), &farm.ctx, 5000);
    ASSERT_TRUE(c.ok());
    watch_status = (*c)->Watch(job, [&](const json& e) {
      events.push_back(e);
      return true;
    });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the WATCH register

  for (int s = 0; s < 7; ++s) {
    ASSERT_TRUE(workers[s]->RunOne(1, -0.5f + 0.15f * s)) << "stage " << s;
    // The next stage becomes ready only after this RESULT is stored.
    if (s < 6) {
      farm.WaitStagesDone(job, s + 1, 5000);
      EXPECT_EQ(farm.Job(job)["stages_done"], s + 1);
    }
  }
  ASSERT_TRUE(farm.WaitState(job, "done"));
  watcher.join();
  EXPECT_TRUE(watch_status.ok()) << watch_status.ToString();

  json st = farm.Job(job);
  EXPECT_EQ(st["stages_done"], 7);
  const std::string key = st["output_blob"];
  EXPECT_EQ(key, job + "/final.mp4");
  auto bytes = farm.client->FetchBlob(key);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(st["output_bytes"].get<size_t>(), bytes->size());
  const std::string path = farm.dir.path() + "/out.mp4";
  {
    std::ofstream f(path, std::ios::binary);
    f << *bytes;
  }
  auto video = ReadVideo(path);
  ASSERT_TRUE(video.ok()) << video.status().ToString();
  EXPECT_EQ(video->frames, 64);
  EXPECT_EQ(video->height, 96);
  EXPECT_EQ(video->width, 160);
  EXPECT_NEAR(video->fps, 24.0, 1e-6);

  // The watcher saw the job's life, in order, ending with "done".
  std::vector<std::string> types;
  for (const auto& e : events) types.push_back(e["type"]);
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.back(), "done");
  EXPECT_EQ(std::count(types.begin(), types.end(), "stage_started"), 7);
  EXPECT_EQ(std::count(types.begin(), types.end(), "stage_done"), 7);
  EXPECT_GE(std::count(types.begin(), types.end(), "progress"), 14);
  bool saw_step = false;
  for (const auto& e : events) {
    if (e["type"] == "progress" && e["data"]["step"] == 1 && e["data"]["steps"] == 2)
      saw_step = true;
  }
  EXPECT_TRUE(saw_step);

  for (int s = 0; s < 7; ++s) EXPECT_EQ(farm.WorkerInfo("w" + std::to_string(s))["done"], 1);
  farm.Stop();
  // Intermediates are gone (keep_intermediates is false); the final video stays.
  auto store = OpenStore(farm.dir.db());
  ASSERT_TRUE(store);
  for (int s = 0; s < 7; ++s) {
    EXPECT_FALSE(*store->HasBlob(job + "/" + std::to_string(s) + "/out")) << s;
  }
  EXPECT_TRUE(*store->HasBlob(key));
}

TEST(Coordinator, JobWithLastStageStopsThereAndOutputsThatStagesVideo) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto w0 = farm.Worker(0), w1 = farm.Worker(1), w2 = farm.Worker(2);
  auto ids = farm.Submit({Spec("a preview", 0, {{"last_stage", 1}})});
  ASSERT_EQ(ids.size(), 1u);
  const std::string job = ids[0];
  json st = farm.Job(job);
  EXPECT_EQ(st["num_stages"], 2);
  ASSERT_EQ(st["tasks"].size(), 2u);
  ASSERT_TRUE(w0->RunOne());
  farm.WaitStagesDone(job, 1, 5000);
  // The coordinator restarts between the stages: the job replays with its own stage count.
  farm.Stop();
  ASSERT_TRUE(farm.Start());
  EXPECT_EQ(farm.Job(job)["num_stages"], 2);
  EXPECT_EQ(farm.Job(job)["tasks"][1]["state"], "ready");
  w1 = farm.Worker(1);
  w2 = farm.Worker(2);
  ASSERT_TRUE(w1->RunOne());
  ASSERT_TRUE(farm.WaitState(job, "done"));
  w2->Ready();
  EXPECT_TRUE(w2->ExpectSilence(200)) << "stage 2 is past the job's last stage";
  st = farm.Job(job);
  EXPECT_EQ(st["stages_done"], 2);
  auto bytes = farm.client->FetchBlob(st["output_blob"]);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  const std::string path = farm.dir.path() + "/preview.mp4";
  {
    std::ofstream f(path, std::ios::binary);
    f << *bytes;
  }
  auto video = ReadVideo(path);
  ASSERT_TRUE(video.ok()) << video.status().ToString();
  auto table = CascadeTable("tiny");
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(video->frames, (*table)[1].frames);
  EXPECT_EQ(video->height, (*table)[1].height);
  EXPECT_EQ(video->width, (*table)[1].width);
  farm.Stop();
  auto store = OpenStore(farm.dir.db());
  ASSERT_TRUE(store);
  auto tasks = store->GetTasks(job);
  ASSERT_TRUE(tasks.ok());
  EXPECT_EQ(tasks->size(), 2u);
  EXPECT_FALSE(*store->HasBlob(job + "/1/out")) << "intermediates are collected as usual";
}

TEST(Coordinator, BatchedAssignTakesCompatibleTasksUpToMaxBatch) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("a"), Spec("b"),
                          Spec("odd", 0, {{"steps", {5, 0, 0, 0, 0, 0, 0}}}),  // incompatible
                          Spec("c"), Spec("d"), Spec("e")});
  ASSERT_EQ(ids.size(), 6u);
  auto w = farm.Worker(0, /*max_batch=*/3);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  ASSERT_EQ(a.header["tasks"].size(), 3u);
  EXPECT_EQ(a.header["tasks"][0]["job"], ids[0]);
  EXPECT_EQ(a.header["tasks"][1]["job"], ids[1]);
  EXPECT_EQ(a.header["tasks"][2]["job"], ids[3]);  // skips the incompatible job
  EXPECT_EQ(a.header["tasks"][0]["input_blob"], "");
  EXPECT_EQ(a.header["tasks"][0]["sample_index"], 0);
  EXPECT_EQ(a.header["tasks"][0]["prompt"], "a");
  EXPECT_EQ(a.header["tasks"][0]["seed"], 7);
  EXPECT_TRUE(a.header["tasks"][0]["checkpoint"].is_null());
  // All three tasks share one lease.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(farm.Job(a.header["tasks"][i]["job"])["tasks"][0]["lease"], a.header["lease"]);
  ASSERT_TRUE(w->Complete(a));
  w->Ready();
  wire::Message b;
  ASSERT_TRUE(w->Expect(Command::kAssign, &b));
  ASSERT_EQ(b.header["tasks"].size(), 1u);
  EXPECT_EQ(b.header["tasks"][0]["job"], ids[2]);  // oldest remaining, alone in its batch
  ASSERT_TRUE(w->Complete(b));
  w->Ready();
  ASSERT_TRUE(w->Expect(Command::kAssign, &b));
  ASSERT_EQ(b.header["tasks"].size(), 2u);
  ASSERT_TRUE(w->Complete(b));
  for (const auto& id : ids) {
    farm.WaitStagesDone(id, 1, 3000);
    EXPECT_EQ(farm.Job(id)["stages_done"], 1) << id;
    EXPECT_EQ(farm.Job(id)["tasks"][1]["state"], "ready");
  }
}

TEST(Coordinator, PriorityOrderThenSubmission) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("low", -5), Spec("high", 10), Spec("mid", 0), Spec("high2", 10)});
  auto w = farm.Worker(0);
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    w->Ready();
    wire::Message a;
    ASSERT_TRUE(w->Expect(Command::kAssign, &a));
    order.push_back(a.header["tasks"][0]["prompt"]);
    ASSERT_TRUE(w->Complete(a));
  }
  EXPECT_EQ(order, (std::vector<std::string>{"high", "high2", "mid", "low"}));
}

// Prefetch: a worker whose READY says max_leases 2 holds up to two leases; a worker holding none
// is served before one that would prefetch.
TEST(Coordinator, PrefetchingWorkerHoldsUpToMaxLeasesAfterIdleWorkers) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto a = farm.Worker(0, 1, "a"), b = farm.Worker(0, 1, "b");
  a->Ready({{"max_leases", 2}});
  ASSERT_TRUE(farm.WaitWorkers(1));
  b->Ready({{"max_leases", 2}});
  ASSERT_TRUE(farm.WaitWorkers(2));
  auto ids = farm.Submit({Spec("j0"), Spec("j1"), Spec("j2"), Spec("j3"), Spec("j4")});
  wire::Message a1, a2, b1, b2;
  ASSERT_TRUE(a->Expect(Command::kAssign, &a1));
  ASSERT_TRUE(b->Expect(Command::kAssign, &b1));
  ASSERT_TRUE(a->Expect(Command::kAssign, &a2));
  ASSERT_TRUE(b->Expect(Command::kAssign, &b2));
  // Each took one while both were idle, then one more each: j4 waits for a free slot.
  EXPECT_EQ(a1.header["tasks"][0]["job"], ids[0]);
  EXPECT_EQ(b1.header["tasks"][0]["job"], ids[1]);
  EXPECT_EQ(a2.header["tasks"][0]["job"], ids[2]);
  EXPECT_EQ(b2.header["tasks"][0]["job"], ids[3]);
  EXPECT_TRUE(a->ExpectSilence(200));
  EXPECT_TRUE(b->ExpectSilence(1));
  EXPECT_EQ(farm.Job(ids[4])["tasks"][0]["state"], "ready");
  json info = farm.WorkerInfo("a");
  EXPECT_EQ(info["leases"], 2);
  EXPECT_EQ(info["max_leases"], 2);
  EXPECT_EQ(info["lease"], a1.header["lease"]);  // the oldest: the one it works on first
  // a finishes its first lease and says it still holds the second: it gets j4.
  ASSERT_TRUE(a->Complete(a1));
  a->Ready({{"max_leases", 2}, {"leases", {a2.header["lease"]}}});
  wire::Message a3;
  ASSERT_TRUE(a->Expect(Command::kAssign, &a3));
  EXPECT_EQ(a3.header["tasks"][0]["job"], ids[4]);
  for (auto* m : {&a2, &a3}) ASSERT_TRUE(a->Complete(*m));
  for (auto* m : {&b1, &b2}) ASSERT_TRUE(b->Complete(*m));
  for (const auto& id : ids) {
    farm.WaitStagesDone(id, 1, 3000);
    EXPECT_EQ(farm.Job(id)["stages_done"], 1) << id;
  }
  EXPECT_EQ(farm.WorkerInfo("a")["done"], 3);
}

// A READY that arrives after the coordinator has already spent its credit (between the RESULT
// and the READY that follows it, a dispatch round filled the worker's free slots) must not leave
// the worker marked as asking for work while out of every queue: it would never be leased to
// again (seen as a hang of `bench dispatch`).
TEST(Coordinator, LateReadyOfAFullWorkerDoesNotLoseItsCredit) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto w = farm.Worker(0, 1, "w");
  w->Ready({{"max_leases", 2}});
  ASSERT_TRUE(farm.WaitWorkers(1));
  auto ids = farm.Submit({Spec("j0")});
  wire::Message a, b, c, d;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  ASSERT_TRUE(w->Complete(a));  // RESULT only; its READY comes late
  farm.WaitStagesDone(ids[0], 1, 3000);
  farm.Submit({Spec("j1"), Spec("j2")});
  ASSERT_TRUE(w->Expect(Command::kAssign, &b));  // the free slots, on the credit still held
  ASSERT_TRUE(w->Expect(Command::kAssign, &c));
  auto late = farm.Submit({Spec("j3")});  // waits: the worker is full
  ASSERT_TRUE(w->ExpectSilence(100));
  w->Ready({{"max_leases", 2}, {"leases", {b.header["lease"], c.header["lease"]}}});
  ASSERT_TRUE(w->ExpectSilence(100));
  ASSERT_TRUE(w->Complete(b));
  w->Ready({{"max_leases", 2}, {"leases", {c.header["lease"]}}});
  ASSERT_TRUE(w->Expect(Command::kAssign, &d));
  EXPECT_EQ(d.header["tasks"][0]["job"], late[0]);
  // The same with a worker that does not list its leases (as the benchmark's no-op worker).
  ASSERT_TRUE(w->Complete(c));
  ASSERT_TRUE(w->Complete(d));
  farm.Submit({Spec("j4"), Spec("j5")});
  w->Ready({{"max_leases", 2}});
  wire::Message e, f;
  ASSERT_TRUE(w->Expect(Command::kAssign, &e));
  ASSERT_TRUE(w->Expect(Command::kAssign, &f));
  auto after = farm.Submit({Spec("j6")});
  w->Ready({{"max_leases", 2}});  // late, while full: no credit
  ASSERT_TRUE(w->ExpectSilence(100));
  ASSERT_TRUE(w->Complete(e));
  w->Ready({{"max_leases", 2}});
  wire::Message g;
  ASSERT_TRUE(w->Expect(Command::kAssign, &g));
  EXPECT_EQ(g.header["tasks"][0]["job"], after[0]);
}

// Two jobs leased to one worker "a" that takes two leases at once, on a farm whose leases
// stall after 0.5 s without a sign of work.
struct TwoLeasesOneWorker {
  Farm farm{[](CoordinatorOptions& o) { o.lease_stall_seconds = 0.5; }};
  std::vector<std::string> ids;
  std::unique_ptr<FakeWorker> a;
  wire::Message first, second;

  ::testing::AssertionResult Start() {
    auto st = farm.Start();
    if (!st) return st;
    ids = farm.Submit({Spec("first"), Spec("second")});
    a = farm.Worker(0, 1, "a");
    a->Ready({{"max_leases", 2}});
    st = a->Expect(Command::kAssign, &first);
    return st ? a->Expect(Command::kAssign, &second) : st;
  }
};

// A prefetched lease waits behind the one its worker computes: work on the older lease keeps
// the younger alive, but not the other way round.
TEST(Coordinator, WorkOnTheOlderLeaseKeepsThePrefetchedOneAlive) {
  TwoLeasesOneWorker t;
  ASSERT_TRUE(t.Start());
  auto& [farm, ids, a, first, second] = t;
  for (int step = 1; step <= 8; ++step) {  // 1.6 s, more than 3 stall periods
    a->Send(Command::kProgress, {{"lease", first.header["lease"]}, {"step", step}, {"steps", 10}});
    ASSERT_TRUE(a->ExpectSilence(200));
  }
  EXPECT_EQ(farm.Job(ids[1])["tasks"][0]["state"], "leased");
  ASSERT_TRUE(a->Complete(first));
  // The second is the oldest now: its own PROGRESS keeps it alive.
  for (int step = 1; step <= 4; ++step) {
    a->Send(Command::kProgress, {{"lease", second.header["lease"]}, {"step", step}, {"steps", 4}});
    ASSERT_TRUE(a->ExpectSilence(150));
  }
  ASSERT_TRUE(a->Complete(second));
  farm.WaitStagesDone(ids[1], 1, 3000);
  EXPECT_EQ(farm.Job(ids[1])["stages_done"], 1);
  EXPECT_EQ(farm.WorkerInfo("a")["failed"], 0);
}

TEST(Coordinator, ProgressOnThePrefetchedLeaseDoesNotKeepTheOlderAlive) {
  TwoLeasesOneWorker t;
  ASSERT_TRUE(t.Start());
  auto& [farm, ids, a, first, second] = t;
  const int64_t t0 = NowMs();
  std::optional<wire::Message> cancel;
  for (int step = 1; step <= 10 && !cancel; ++step) {
    a->Send(Command::kProgress, {{"lease", second.header["lease"]}, {"step", step}, {"steps", 10}});
    cancel = a->Recv(200);
  }
  ASSERT_TRUE(cancel.has_value());
  EXPECT_EQ(cancel->command, Command::kCancel);
  EXPECT_EQ(cancel->header["lease"], first.header["lease"]);
  EXPECT_GE(NowMs() - t0, 400);
  // The stalled task comes back to the worker's freed slot; the prefetched one kept its lease.
  wire::Message again;
  ASSERT_TRUE(a->Expect(Command::kAssign, &again));
  EXPECT_EQ(again.header["tasks"][0]["job"], ids[0]);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["attempts"], 2);
  EXPECT_EQ(farm.Job(ids[1])["tasks"][0]["lease"], second.header["lease"]);
}

TEST(Coordinator, AgingLetsAnOldLowPriorityJobGoFirst) {
  Farm farm([](CoordinatorOptions& o) { o.aging_seconds = 0.1; });
  ASSERT_TRUE(farm.Start());
  auto old_ids = farm.Submit({Spec("old", 0)});
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // effective priority 6 or 7
  auto new_ids = farm.Submit({Spec("new", 5)});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  EXPECT_EQ(a.header["tasks"][0]["prompt"], "old");
}

// Several workers finishing at once put several RESULTs (and the leases that follow) into one
// loop round. With group commit they share WAL syncs; with or without it, every transition must
// be stored whole and in order: each job's stage 0 done with its output, stage 1 ready on it, and
// the event log dense with each job's events in the order they happened.
void RunBusyRounds(bool group_commit) {
  Farm farm([&](CoordinatorOptions& o) { o.group_commit = group_commit; });
  ASSERT_TRUE(farm.Start());
  constexpr int kWorkers = 6, kJobs = 36;
  std::vector<std::unique_ptr<FakeWorker>> workers;
  for (int i = 0; i < kWorkers; ++i) workers.push_back(farm.Worker(0, 1, "w" + std::to_string(i)));
  std::vector<json> specs;
  for (int i = 0; i < kJobs; ++i) specs.push_back(Spec("job " + std::to_string(i)));
  const auto ids = farm.Submit(specs);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kJobs));
  std::vector<int> ran(kWorkers, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWorkers; ++i) {
    threads.emplace_back([&, i] {
      for (;;) {
        workers[i]->Ready();
        auto m = workers[i]->Recv(1000);
        if (!m) return;  // no work left
        if (m->command != Command::kAssign) continue;
        EXPECT_TRUE(workers[i]->Complete(*m, 0.01f * static_cast<float>(i)));
        ++ran[i];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::accumulate(ran.begin(), ran.end(), 0), kJobs);
  for (const auto& id : ids) {
    farm.WaitStagesDone(id, 1, 5000);
    ASSERT_EQ(farm.Job(id)["stages_done"], 1) << id;
  }
  auto status = farm.client->Call(Command::kStatus, json::object());
  ASSERT_TRUE(status.ok());
  const json store_info = (*status)["store"];
  // The loop worked (36 RESULTs, leases) and waited (for the workers' messages).
  EXPECT_GT((*status)["loop"]["busy_s"].get<double>(), 0.0);
  EXPECT_GT((*status)["loop"]["wait_s"].get<double>(), 0.0);
  EXPECT_EQ(store_info["group_commit"], group_commit);
  const auto commits = store_info["commits"].get<uint64_t>();
  const auto syncs = store_info["syncs"].get<uint64_t>();
  EXPECT_GE(commits, static_cast<uint64_t>(kJobs + 1));  // a SUBMIT, a RESULT per job, leases
  EXPECT_GE(syncs, 1u);
  if (group_commit) {
    EXPECT_LE(syncs, commits);
  } else {
    EXPECT_EQ(syncs, commits);
  }
  farm.Stop();

  auto store = OpenStore(farm.dir.db());
  ASSERT_TRUE(store);
  for (const auto& id : ids) {
    auto tasks = store->GetTasks(id);
    ASSERT_TRUE(tasks.ok());
    ASSERT_EQ(tasks->size(), 7u);
    EXPECT_EQ((*tasks)[0].state, storage::TaskState::kDone) << id;
    EXPECT_EQ((*tasks)[0].output_blob, id + "/0/out");
    EXPECT_TRUE(*store->HasBlob(id + "/0/out")) << id;
    EXPECT_EQ((*tasks)[1].state, storage::TaskState::kReady) << id;
    EXPECT_EQ((*tasks)[1].input_blob, id + "/0/out");
    EXPECT_EQ(store->GetJob(id)->stages_done, 1);
  }
  std::vector<storage::Event> events;
  ASSERT_TRUE(store->ReadEvents(0, 100000, &events).ok());
  std::map<std::string, std::vector<std::string>> by_job;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq, i + 1);
    by_job[events[i].job_id].push_back(events[i].type);
  }
  ASSERT_EQ(by_job.size(), static_cast<size_t>(kJobs));
  for (const auto& [job, types] : by_job) {
    EXPECT_EQ(types, (std::vector<std::string>{"submitted", "stage_started", "stage_done"})) << job;
  }
}

TEST(Coordinator, GroupCommitStoresEveryTransitionOfBusyRoundsInOrder) { RunBusyRounds(true); }
TEST(Coordinator, SyncPerTransitionStoresTheSame) { RunBusyRounds(false); }

TEST(Coordinator, StagesOfDifferentJobsRunAtOnce) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto w0 = farm.Worker(0, 1, "base");
  auto w1 = farm.Worker(1, 1, "tsr1");
  auto ids = farm.Submit({Spec("first"), Spec("second")});
  ASSERT_TRUE(w0->RunOne());  // first job's stage 0
  wire::Message a0, a1;
  w1->Ready();
  ASSERT_TRUE(w1->Expect(Command::kAssign, &a1));
  EXPECT_EQ(a1.header["tasks"][0]["job"], ids[0]);
  EXPECT_EQ(a1.header["tasks"][0]["input_blob"], ids[0] + "/0/out");
  w0->Ready();
  ASSERT_TRUE(w0->Expect(Command::kAssign, &a0));
  EXPECT_EQ(a0.header["tasks"][0]["job"], ids[1]);
  // Both leases are held at the same time: the two jobs are in different stages at once.
  json base = farm.WorkerInfo("base"), tsr = farm.WorkerInfo("tsr1");
  EXPECT_EQ(base["state"], "busy");
  EXPECT_EQ(base["job"], ids[1]);
  EXPECT_EQ(tsr["state"], "busy");
  EXPECT_EQ(tsr["job"], ids[0]);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][1]["state"], "leased");
  EXPECT_EQ(farm.Job(ids[1])["tasks"][0]["state"], "leased");
  ASSERT_TRUE(w1->Complete(a1));
  ASSERT_TRUE(w0->Complete(a0));
}

TEST(Coordinator, SilentWorkerLosesLeaseAndTaskResumesElsewhereFromCheckpoint) {
  Farm farm([](CoordinatorOptions& o) {
    o.heartbeat_ms = 50;
    o.heartbeat_misses = 3;
  });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("fragile")});
  auto a = farm.Worker(0, 1, "a");
  a->Ready();
  wire::Message as;
  ASSERT_TRUE(a->Expect(Command::kAssign, &as));
  const std::string lease = as.header["lease"];
  const std::string latent = StageBytes(0, 0.3f);
  ASSERT_TRUE(a->Put("ck", latent));
  a->Send(Command::kCheckpoint, {{"lease", lease}, {"step", 5}, {"uploads", {"ck"}}});
  const int64_t deadline = NowMs() + 3000;
  while (NowMs() < deadline && farm.Job(ids[0])["tasks"][0]["checkpoint_step"] != 5) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["checkpoint_step"], 5);
  // Worker a goes silent (does not read, does not answer heartbeats). Worker b is waiting.
  auto b = farm.Worker(0, 1, "b");
  b->Ready();
  wire::Message bs;
  ASSERT_TRUE(b->Expect(Command::kAssign, &bs, 3000));
  EXPECT_NE(bs.header["lease"], lease);
  const json& t = bs.header["tasks"][0];
  EXPECT_EQ(t["job"], ids[0]);
  ASSERT_TRUE(t["checkpoint"].is_object());
  EXPECT_EQ(t["checkpoint"]["step"], 5);
  EXPECT_EQ(t["checkpoint"]["blob"], ids[0] + "/0/ckpt");
  EXPECT_EQ(t["checkpoint"]["bytes"].get<size_t>(), latent.size());
  EXPECT_EQ(b->Fetch(t["checkpoint"]["blob"]), latent);
  json job = farm.Job(ids[0]);
  EXPECT_EQ(job["tasks"][0]["attempts"], 2);
  json wa = farm.WorkerInfo("a");
  EXPECT_EQ(wa["state"], "dead");
  EXPECT_EQ(wa["failed"], 1);
  // The dead worker's late RESULT is refused: it must register again.
  a->set_heartbeat_back(false);
  EXPECT_FALSE(a->Put("late", StageBytes(0, 0.1f)));  // unknown_worker, not PUT_ACK
  ASSERT_TRUE(b->Complete(bs));
  farm.WaitStagesDone(ids[0], 1, 3000);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
}

// A CHECKPOINT or RESULT may carry its videos as payload frames ("inline": true) instead of
// naming uploads: stored the same way; a wrong count or a bad flag is refused and changes nothing.
TEST(Coordinator, InlineCheckpointAndResultAreStoredLikeUploads) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("inline")});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  const std::string lease = a.header["lease"];
  const std::string latent = StageBytes(0, 0.3f);
  auto refused = [&](json header, std::vector<std::string> payload, const std::string& why) {
    w->Send(Command::kCheckpoint, std::move(header), std::move(payload));
    wire::Message err;
    ASSERT_TRUE(w->Expect(Command::kError, &err));
    EXPECT_EQ(err.header["code"], "bad_request");
    EXPECT_NE(err.header["error"].get<std::string>().find(why), std::string::npos)
        << err.header.dump();
  };
  refused({{"lease", lease}, {"step", 3}, {"inline", false}}, {latent}, "'inline' must be true");
  refused({{"lease", lease}, {"step", 3}, {"inline", true}}, {latent, latent}, "2 inline payloads");
  refused({{"lease", lease}, {"step", 3}, {"inline", true}, {"uploads", {"u"}}}, {latent},
          "together");
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["checkpoint_step"], 0);

  w->Send(Command::kCheckpoint, {{"lease", lease}, {"step", 3}, {"inline", true}}, {latent});
  const int64_t deadline = NowMs() + 3000;
  while (NowMs() < deadline && farm.Job(ids[0])["tasks"][0]["checkpoint_step"] != 3) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["checkpoint_step"], 3);
  EXPECT_EQ(w->Fetch(ids[0] + "/0/ckpt"), latent);

  const std::string out = StageBytes(0, 0.25f);
  w->Send(Command::kResult, {{"lease", lease}, {"inline", true}}, {out});
  farm.WaitStagesDone(ids[0], 1, 3000);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["state"], "done");
  auto next = farm.Worker(1);
  next->Ready();
  wire::Message b;
  ASSERT_TRUE(next->Expect(Command::kAssign, &b));
  EXPECT_EQ(b.header["tasks"][0]["input_bytes"].get<size_t>(), out.size());
  EXPECT_EQ(next->Fetch(b.header["tasks"][0]["input_blob"]), out);
}

// ASSIGN says "ready_in_result": a RESULT with "ready": true offers the worker's credit again (the
// next ASSIGN comes without a READY); one without it does not; a stale RESULT with it still does.
TEST(Coordinator, ResultSayingReadyOffersTheCreditAgain) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("a"), Spec("b"), Spec("c"), Spec("d")});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  EXPECT_EQ(a.header["ready_in_result"], true);
  w->Send(Command::kResult, {{"lease", a.header["lease"]}, {"inline", true}, {"ready", true}},
          {StageBytes(0, 0.2f)});
  wire::Message b;
  ASSERT_TRUE(w->Expect(Command::kAssign, &b));
  EXPECT_NE(b.header["lease"], a.header["lease"]);
  w->Send(Command::kResult, {{"lease", b.header["lease"]}, {"inline", true}},
          {StageBytes(0, 0.2f)});
  EXPECT_TRUE(w->ExpectSilence(300));  // no credit offered: no work
  farm.WaitStagesDone(ids[1], 1, 3000);
  w->Ready();
  wire::Message c;
  ASSERT_TRUE(w->Expect(Command::kAssign, &c));
  // A duplicate RESULT of a finished lease is refused as stale; its "ready" still counts.
  w->Send(Command::kResult, {{"lease", c.header["lease"]}, {"inline", true}, {"ready", true}},
          {StageBytes(0, 0.2f)});
  ASSERT_TRUE(w->Expect(Command::kAssign, &b));
  w->Send(Command::kResult, {{"lease", c.header["lease"]}, {"inline", true}, {"ready", true}},
          {StageBytes(0, 0.2f)});
  wire::Message err;
  ASSERT_TRUE(w->Expect(Command::kError, &err));
  EXPECT_EQ(err.header["code"], "stale_lease");
  // A "ready" that is not a boolean is ignored, not a crash.
  w->Send(Command::kResult, {{"lease", b.header["lease"]}, {"inline", true}, {"ready", "yes"}},
          {StageBytes(0, 0.2f)});
  EXPECT_TRUE(w->ExpectSilence(300));
  for (const auto& id : ids) farm.WaitStagesDone(id, 1, 3000);
  for (const auto& id : ids) EXPECT_EQ(farm.Job(id)["tasks"][0]["state"], "done") << id;
}

TEST(Coordinator, StaleAndDuplicateResultsAreDropped) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("x")});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a1;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a1));
  const std::string l1 = a1.header["lease"];
  w->Send(Command::kFail, {{"lease", l1}, {"error", "CUDA hiccup"}, {"retryable", true}});
  w->Ready();
  wire::Message a2;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a2));
  const std::string l2 = a2.header["lease"];
  EXPECT_NE(l1, l2);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["attempts"], 2);
  // A late RESULT of the first lease: refused, nothing stored.
  ASSERT_TRUE(w->Put("old", StageBytes(0, 0.2f)));
  w->Send(Command::kResult, {{"lease", l1}, {"uploads", {"old"}}});
  wire::Message err;
  ASSERT_TRUE(w->Expect(Command::kError, &err));
  EXPECT_EQ(err.header["code"], "stale_lease");
  EXPECT_EQ(err.header["lease"], l1);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 0);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["state"], "leased");
  // The current lease completes; a duplicate RESULT afterwards is stale too.
  ASSERT_TRUE(w->Complete(a2));
  ASSERT_TRUE(w->Put("dup", StageBytes(0, 0.2f)));
  w->Send(Command::kResult, {{"lease", l2}, {"uploads", {"dup"}}});
  ASSERT_TRUE(w->Expect(Command::kError, &err));
  EXPECT_EQ(err.header["code"], "stale_lease");
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["state"], "done");
}

TEST(Coordinator, WrongShapeResultCountsAsFailure) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("x")});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  ASSERT_TRUE(w->Put("u", StageBytes(1, 0.2f)));  // stage 1's shape, not stage 0's
  w->Send(Command::kResult, {{"lease", a.header["lease"]}, {"uploads", {"u"}}});
  wire::Message err;
  ASSERT_TRUE(w->Expect(Command::kError, &err));
  EXPECT_NE(err.header["error"].get<std::string>().find("does not match"), std::string::npos);
  json job = farm.Job(ids[0]);
  EXPECT_EQ(job["stages_done"], 0);
  EXPECT_EQ(job["tasks"][0]["state"], "ready");
  EXPECT_EQ(farm.WorkerInfo("w0")["failed"], 1);
}

TEST(Coordinator, NonRetryableFailFailsTheJob) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("doomed")});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  w->Send(
      Command::kFail,
      {{"lease", a.header["lease"]}, {"error", "prompt embedding is NaN"}, {"retryable", false}});
  ASSERT_TRUE(farm.WaitState(ids[0], "failed", 3000));
  json job = farm.Job(ids[0]);
  EXPECT_NE(job["error"].get<std::string>().find("prompt embedding is NaN"), std::string::npos);
  EXPECT_EQ(job["tasks"][0]["state"], "failed");
  EXPECT_EQ(job["tasks"][0]["attempts"], 1);
}

TEST(Coordinator, RetryableFailuresExhaustAttempts) {
  Farm farm([](CoordinatorOptions& o) {
    o.max_attempts = 2;
    o.quarantine_after = 100;
  });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("flaky")});
  auto w = farm.Worker(0);
  for (int i = 0; i < 2; ++i) {
    w->Ready();
    wire::Message a;
    ASSERT_TRUE(w->Expect(Command::kAssign, &a));
    w->Send(Command::kFail, {{"lease", a.header["lease"]}, {"error", "oom"}, {"retryable", true}});
  }
  ASSERT_TRUE(farm.WaitState(ids[0], "failed", 3000));
  EXPECT_NE(farm.Job(ids[0])["error"].get<std::string>().find("after 2 attempt(s): oom"),
            std::string::npos);
  w->Ready();
  EXPECT_TRUE(w->ExpectSilence(200));
}

TEST(Coordinator, WorkerQuarantinedAfterRepeatedFailures) {
  Farm farm([](CoordinatorOptions& o) {
    o.quarantine_after = 2;
    o.max_attempts = 10;
  });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("x")});
  auto bad = farm.Worker(0, 1, "bad");
  for (int i = 0; i < 2; ++i) {
    bad->Ready();
    wire::Message a;
    ASSERT_TRUE(bad->Expect(Command::kAssign, &a));
    bad->Send(Command::kFail,
              {{"lease", a.header["lease"]}, {"error", "segfault"}, {"retryable", true}});
  }
  bad->Ready();
  EXPECT_TRUE(bad->ExpectSilence(300));  // quarantined: no more work
  json info = farm.WorkerInfo("bad");
  EXPECT_EQ(info["state"], "quarantined");
  EXPECT_EQ(info["failed"], 2);
  auto good = farm.Worker(0, 1, "good");
  ASSERT_TRUE(good->RunOne());
  EXPECT_EQ(farm.WorkerInfo("bad")["state"], "quarantined");
}

TEST(Coordinator, CancelStopsTheLeaseAndRetryRequeues) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("x")});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  const std::string lease = a.header["lease"];
  auto r = farm.client->Call(Command::kCancelJob, {{"job", ids[0]}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["state"], "cancelled");
  wire::Message c;
  ASSERT_TRUE(w->Expect(Command::kCancel, &c));
  EXPECT_EQ(c.header["lease"], lease);
  EXPECT_EQ(c.header["job"], ids[0]);
  EXPECT_EQ(farm.State(ids[0]), "cancelled");
  // A result for the cancelled job is dropped.
  ASSERT_TRUE(w->Put("u", StageBytes(0, 0.1f)));
  w->Send(Command::kResult, {{"lease", lease}, {"uploads", {"u"}}});
  wire::Message err;
  ASSERT_TRUE(w->Expect(Command::kError, &err));
  EXPECT_EQ(err.header["code"], "stale_lease");
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 0);
  // Wrong states and unknown jobs are clear errors.
  auto again = farm.client->Call(Command::kCancelJob, {{"job", ids[0]}});
  EXPECT_TRUE(again.status().IsInvalidArgument()) << again.status().ToString();
  EXPECT_NE(again.status().message().find("cancelled"), std::string::npos);
  EXPECT_TRUE(farm.client->Call(Command::kPause, {{"job", "j-nope"}}).status().IsNotFound());
  EXPECT_TRUE(farm.client->Call(Command::kResume, {{"job", ids[0]}}).status().IsInvalidArgument());
  // RETRY: back to READY with attempts reset, and it runs.
  auto rt = farm.client->Call(Command::kRetry, {{"job", ids[0]}});
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  json job = farm.Job(ids[0]);
  EXPECT_EQ(job["state"], "queued");
  EXPECT_EQ(job["tasks"][0]["state"], "ready");
  EXPECT_EQ(job["tasks"][0]["attempts"], 0);
  ASSERT_TRUE(w->RunOne());
  EXPECT_TRUE(farm.client->Call(Command::kRetry, {{"job", ids[0]}}).status().IsInvalidArgument());
}

TEST(Coordinator, RetryAfterFailureResumesFromTheFailedStage) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("x")});
  auto w0 = farm.Worker(0), w1 = farm.Worker(1);
  ASSERT_TRUE(w0->RunOne());
  w1->Ready();
  wire::Message a;
  ASSERT_TRUE(w1->Expect(Command::kAssign, &a));
  w1->Send(Command::kFail, {{"lease", a.header["lease"]}, {"error", "bad"}, {"retryable", false}});
  ASSERT_TRUE(farm.WaitState(ids[0], "failed", 3000));
  ASSERT_TRUE(farm.client->Call(Command::kRetry, {{"job", ids[0]}}).ok());
  EXPECT_EQ(farm.State(ids[0]), "running");
  w1->Ready();
  ASSERT_TRUE(w1->Expect(Command::kAssign, &a));
  EXPECT_EQ(a.header["tasks"][0]["input_blob"], ids[0] + "/0/out");
  EXPECT_EQ(farm.Job(ids[0])["tasks"][1]["attempts"], 1);
  EXPECT_EQ(farm.Job(ids[0])["error"], "");
}

TEST(Coordinator, PauseHoldsNewLeasesAndResumeReleasesThem) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("p")});
  ASSERT_TRUE(farm.client->Call(Command::kPause, {{"job", ids[0]}}).ok());
  EXPECT_EQ(farm.State(ids[0]), "paused");
  auto w0 = farm.Worker(0), w1 = farm.Worker(1);
  w0->Ready();
  EXPECT_TRUE(w0->ExpectSilence(250));
  auto resumed = farm.client->Call(Command::kResume, {{"job", ids[0]}});
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ((*resumed)["state"], "queued");  // nothing ran yet
  wire::Message a;
  ASSERT_TRUE(w0->Expect(Command::kAssign, &a));
  // Pausing a running job lets the running stage finish but leases nothing new.
  ASSERT_TRUE(farm.client->Call(Command::kPause, {{"job", ids[0]}}).ok());
  ASSERT_TRUE(w0->Complete(a));
  farm.WaitStagesDone(ids[0], 1, 3000);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
  EXPECT_EQ(farm.State(ids[0]), "paused");
  w1->Ready();
  EXPECT_TRUE(w1->ExpectSilence(250));
  ASSERT_TRUE(farm.client->Call(Command::kResume, {{"job", ids[0]}}).ok());
  EXPECT_EQ(farm.State(ids[0]), "running");
  ASSERT_TRUE(w1->Expect(Command::kAssign, &a));
  EXPECT_EQ(a.header["tasks"][0]["job"], ids[0]);
}

TEST(Coordinator, RestartResumesHalfDoneJobAndReattachesHeldLease) {
  Farm farm([](CoordinatorOptions& o) {
    o.heartbeat_ms = 100;
    o.heartbeat_misses = 30;  // the held lease survives the restart window
  });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("half"), Spec("held")});
  {
    auto w0 = farm.Worker(0), w1 = farm.Worker(1);
    ASSERT_TRUE(w0->RunOne());  // "half": stage 0
    ASSERT_TRUE(w1->RunOne());  // "half": stage 1
  }
  auto w0 = farm.Worker(0, 1, "holder");
  w0->Ready();
  wire::Message held;
  ASSERT_TRUE(w0->Expect(Command::kAssign, &held));
  ASSERT_EQ(held.header["tasks"][0]["job"], ids[1]);
  const std::string lease = held.header["lease"];
  farm.WaitStagesDone(ids[0], 2, 3000);
  ASSERT_EQ(farm.Job(ids[0])["stages_done"], 2);

  farm.Stop();  // the coordinator goes away mid-run
  ASSERT_TRUE(farm.Start());
  EXPECT_EQ(farm.State(ids[0]), "running");
  EXPECT_EQ(farm.Job(ids[0])["tasks"][2]["state"], "ready");
  EXPECT_EQ(farm.Job(ids[1])["tasks"][0]["state"], "leased");

  // The holder reconnects (a new connection), is told to register, and reattaches its lease.
  auto holder = farm.Worker(0, 1, "holder");
  holder->Send(Command::kHeartbeat, json::object());
  wire::Message err;
  ASSERT_TRUE(holder->Expect(Command::kError, &err));
  EXPECT_EQ(err.header["code"], "unknown_worker");
  holder->Ready({{"lease", lease}});
  EXPECT_TRUE(holder->ExpectSilence(150));  // no new ASSIGN: it is busy with its lease
  EXPECT_EQ(farm.WorkerInfo("holder")["lease"], lease);
  ASSERT_TRUE(holder->Complete(held));
  // Every remaining stage runs after the restart and both jobs finish.
  std::vector<std::unique_ptr<FakeWorker>> ws;
  for (int s = 0; s < 7; ++s) ws.push_back(farm.Worker(s));
  // One READY (one unit of credit) outstanding per worker: a READY re-sent while an ASSIGN is
  // still on its way would rightly earn a second ASSIGN (seen on a loaded machine).
  std::vector<bool> asked(7, false);
  const int64_t until = NowMs() + 60000;
  while (NowMs() < until) {
    for (int s = 0; s < 7; ++s) {
      if (!asked[s]) ws[s]->Ready();
      asked[s] = true;
      wire::Message a;
      if (ws[s]->Expect(Command::kAssign, &a, 100)) {
        asked[s] = false;
        ASSERT_TRUE(ws[s]->Complete(a));
      }
    }
    if (farm.Job(ids[0])["stages_done"] == 7 && farm.Job(ids[1])["stages_done"] == 7) break;
  }
  EXPECT_TRUE(farm.WaitState(ids[0], "done"));
  EXPECT_TRUE(farm.WaitState(ids[1], "done"));
}

TEST(Coordinator, RestartRequeuesUnclaimedLeaseWithCheckpoint) {
  Farm farm([](CoordinatorOptions& o) {
    o.heartbeat_ms = 50;
    o.heartbeat_misses = 4;
  });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("orphan")});
  std::string lease;
  {
    auto w = farm.Worker(0, 1, "gone");
    w->Ready();
    wire::Message a;
    ASSERT_TRUE(w->Expect(Command::kAssign, &a));
    lease = a.header["lease"];
    ASSERT_TRUE(w->Put("ck", StageBytes(0, 0.4f)));
    w->Send(Command::kCheckpoint, {{"lease", lease}, {"step", 3}, {"uploads", {"ck"}}});
    const int64_t deadline = NowMs() + 3000;
    while (NowMs() < deadline && farm.Job(ids[0])["tasks"][0]["checkpoint_step"] != 3) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(farm.Job(ids[0])["tasks"][0]["checkpoint_step"], 3);
  }
  farm.Stop();
  ASSERT_TRUE(farm.Start());
  auto w = farm.Worker(0, 1, "fresh");
  w->Ready();
  wire::Message a;
  // Not before the lease window (4 × 50 ms) has passed since the restart...
  ASSERT_TRUE(w->Expect(Command::kAssign, &a, 3000));
  EXPECT_NE(a.header["lease"], lease);
  EXPECT_EQ(a.header["tasks"][0]["checkpoint"]["step"], 3);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["attempts"], 2);
  // ...and the old holder coming back late is told its lease is gone.
  auto late = farm.Worker(0, 1, "gone");
  late->Ready({{"lease", lease}});
  wire::Message c;
  ASSERT_TRUE(late->Expect(Command::kCancel, &c));
  EXPECT_EQ(c.header["lease"], lease);
}

// A worker that keeps heartbeating but has stopped working on its lease (it waits for a message
// that was lost) must not hold the task forever: after lease_stall_seconds without PROGRESS,
// CHECKPOINT, RESULT, FETCH or PUT the lease is failed as retryable and re-queued from its
// checkpoint, and the worker gets CANCEL.
TEST(Coordinator, LeaseWithoutSignOfWorkIsRequeuedFromItsCheckpoint) {
  Farm farm([](CoordinatorOptions& o) { o.lease_stall_seconds = 0.6; });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("wedged")});
  auto a = farm.Worker(0, 1, "a");
  a->Ready();
  wire::Message as;
  ASSERT_TRUE(a->Expect(Command::kAssign, &as));
  const std::string lease = as.header["lease"];
  ASSERT_TRUE(a->Put("ck", StageBytes(0, 0.3f)));
  a->Send(Command::kCheckpoint, {{"lease", lease}, {"step", 1}, {"uploads", {"ck"}}});
  const int64_t t0 = NowMs();
  wire::Message cancel;
  ASSERT_TRUE(a->Expect(Command::kCancel, &cancel, 5000));  // heartbeats answered meanwhile
  EXPECT_GE(NowMs() - t0, 400);
  EXPECT_EQ(cancel.header["lease"], lease);
  EXPECT_NE(cancel.header["reason"].get<std::string>().find("stalled"), std::string::npos);
  json job = farm.Job(ids[0]);
  EXPECT_EQ(job["tasks"][0]["attempts"], 2);  // re-queued and leased again
  EXPECT_EQ(job["tasks"][0]["checkpoint_step"], 1);
  EXPECT_NE(job["tasks"][0]["error"].get<std::string>().find("stalled"), std::string::npos);
  EXPECT_EQ(farm.WorkerInfo("a")["state"] == "dead", false);
  // The credit came back with the stalled lease: the task returns to the worker from step 1.
  // The READY it sends after the CANCEL finds the credit given and changes nothing.
  a->Ready();
  wire::Message again;
  ASSERT_TRUE(a->Expect(Command::kAssign, &again));
  EXPECT_NE(again.header["lease"], lease);
  EXPECT_EQ(again.header["tasks"][0]["checkpoint"]["step"], 1);
  ASSERT_TRUE(a->Complete(again));
  farm.WaitStagesDone(ids[0], 1, 3000);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
}

// An ASSIGN the worker never got (lost on the way): the lease stalls and is re-queued, and the
// credit it took comes back, so the worker, which will not answer a CANCEL of a lease it does
// not know, is leased to again without a READY.
TEST(Coordinator, CreditSpentOnALostAssignComesBackWhenTheLeaseStalls) {
  Farm farm([](CoordinatorOptions& o) { o.lease_stall_seconds = 0.5; });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("lost")});
  auto a = farm.Worker(0, 1, "a");
  a->Ready();
  wire::Message lost;
  ASSERT_TRUE(a->Expect(Command::kAssign, &lost));  // as if it never arrived: no answer
  wire::Message cancel;
  ASSERT_TRUE(a->Expect(Command::kCancel, &cancel, 5000));
  EXPECT_EQ(cancel.header["lease"], lost.header["lease"]);
  wire::Message again;
  ASSERT_TRUE(a->Expect(Command::kAssign, &again, 5000));
  EXPECT_NE(again.header["lease"], lost.header["lease"]);
  EXPECT_EQ(again.header["tasks"][0]["job"], ids[0]);
  ASSERT_TRUE(a->Complete(again));
  farm.WaitStagesDone(ids[0], 1, 3000);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
}

// Group commit holds a message until the sync that makes what it reveals durable, but dispatch
// does not wait: an ASSIGN goes at once (the next test shows why that is safe). With every sync
// slowed to 1 s, a waiting worker gets its ASSIGN while the client still waits for the SUBMIT's
// reply, which must not come before the job is durable. Before, both waited for the same sync and
// the reply went first.
TEST(Coordinator, AssignGoesBeforeTheSyncThatTheSubmitReplyWaitsFor) {
  Farm farm([](CoordinatorOptions& o) { o.test_min_sync_ms = 1000; });
  ASSERT_TRUE(farm.Start());
  auto w = farm.Worker(0, 1, "w");
  w->Ready();
  ASSERT_TRUE(farm.WaitWorkers(1));
  std::atomic<int64_t> replied_ms{0};
  std::thread submitter([&] {
    farm.Submit({Spec("eager")});
    replied_ms = NowMs();
  });
  wire::Message a;
  const bool got = w->Expect(Command::kAssign, &a, 5000);
  const int64_t assigned_ms = NowMs();
  submitter.join();
  ASSERT_TRUE(got);
  EXPECT_EQ(a.header["tasks"][0]["prompt"], "eager");
  EXPECT_GE(replied_ms.load() - assigned_ms, 100) << "the SUBMIT reply did not wait for its sync";
}

// Why an ASSIGN need not wait: if the coordinator dies before the lease's sync, the restarted one
// does not know the lease. The worker's RESULT for it is refused as stale and stores nothing, its
// READY naming it gets a CANCEL, and the task, ready again, is leased anew. The worker's time is
// lost, no data.
TEST(Coordinator, ALeaseACrashTookBackCostsOnlyTheWorkersTime) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  const auto ids = farm.Submit({Spec("taken back")});  // answered, so durable
  // The coordinator dies before any lease of the job was synced.
  farm.Stop();
  ASSERT_TRUE(farm.Start());
  const std::string ghost = "l-1-0badf00d";  // the lease the worker got before the crash
  auto w = farm.Worker(0, 1, "w");
  w->Ready({{"leases", {ghost}}});
  wire::Message cancel;
  ASSERT_TRUE(w->Expect(Command::kCancel, &cancel));
  EXPECT_EQ(cancel.header["lease"], ghost);
  ASSERT_TRUE(w->Put("late", StageBytes(0, 0.2f)));
  w->Send(Command::kResult, {{"lease", ghost}, {"uploads", {"late"}}});
  wire::Message err;
  ASSERT_TRUE(w->Expect(Command::kError, &err));
  EXPECT_EQ(err.header["code"], "stale_lease");
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 0);
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["state"], "ready");
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  EXPECT_NE(a.header["lease"], ghost);
  EXPECT_EQ(a.header["tasks"][0]["job"], ids[0]);
  ASSERT_TRUE(w->Complete(a));
  farm.WaitStagesDone(ids[0], 1, 3000);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
}

// A slow stage that reports PROGRESS (one per sampler step) is working: not stalled.
TEST(Coordinator, ProgressKeepsASlowLeaseAlive) {
  Farm farm([](CoordinatorOptions& o) { o.lease_stall_seconds = 0.5; });
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("slow")});
  auto a = farm.Worker(0, 1, "a");
  a->Ready();
  wire::Message as;
  ASSERT_TRUE(a->Expect(Command::kAssign, &as));
  const std::string lease = as.header["lease"];
  for (int step = 1; step <= 8; ++step) {  // 1.6 s, more than 3 stall periods
    a->Send(Command::kProgress, {{"lease", lease}, {"step", step}, {"steps", 10}});
    ASSERT_TRUE(a->ExpectSilence(200));
  }
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["state"], "leased");
  ASSERT_TRUE(a->Complete(as));
  farm.WaitStagesDone(ids[0], 1, 3000);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
  EXPECT_EQ(farm.WorkerInfo("a")["failed"], 0);
}

// A PUT the worker sends again (its PUT_ACK was lost) is acknowledged again, not appended and
// not an error; a "duplicate" with other bytes is still refused.
TEST(Coordinator, ResentPutChunkIsAcknowledgedAgain) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message m;
  w->Send(Command::kPut, {{"upload", "u"}, {"offset", 0}, {"total", 6}}, {"abc"});
  ASSERT_TRUE(w->Expect(Command::kPutAck, &m));
  w->Send(Command::kPut, {{"upload", "u"}, {"offset", 0}, {"total", 6}}, {"abc"});
  ASSERT_TRUE(w->Expect(Command::kPutAck, &m));
  EXPECT_EQ(m.header["offset"], 0);
  EXPECT_EQ(m.header["received"], 3);
  w->Send(Command::kPut, {{"upload", "u"}, {"offset", 3}, {"total", 6}}, {"def"});
  ASSERT_TRUE(w->Expect(Command::kPutAck, &m));
  EXPECT_EQ(m.header["received"], 6);
  w->Send(Command::kPut, {{"upload", "u"}, {"offset", 3}, {"total", 6}}, {"def"});
  ASSERT_TRUE(w->Expect(Command::kPutAck, &m));
  EXPECT_EQ(m.header["received"], 6);
  w->Send(Command::kPut, {{"upload", "u"}, {"offset", 0}, {"total", 6}}, {"xyz"});
  ASSERT_TRUE(w->Expect(Command::kError, &m));
}

// A RESULT naming an upload the coordinator does not hold keeps the lease: ERROR unknown_upload,
// no failure counted, no new work for the worker until its RESULT arrives complete.
TEST(Coordinator, ResultWithLostUploadAsksForItAgainAndKeepsTheLease) {
  Farm farm;
  ASSERT_TRUE(farm.Start());
  auto ids = farm.Submit({Spec("x"), Spec("y")});
  auto w = farm.Worker(0);
  w->Ready();
  wire::Message a;
  ASSERT_TRUE(w->Expect(Command::kAssign, &a));
  const std::string lease = a.header["lease"];
  w->Send(Command::kResult, {{"lease", lease}, {"uploads", {"gone"}}});
  w->Ready();
  wire::Message err;
  ASSERT_TRUE(w->Expect(Command::kError, &err));
  EXPECT_EQ(err.header["code"], "unknown_upload");
  EXPECT_EQ(err.header["lease"], lease);
  EXPECT_EQ(err.header["command"], "RESULT");
  ASSERT_TRUE(w->ExpectSilence(300));  // that READY earned no ASSIGN
  EXPECT_EQ(farm.Job(ids[0])["tasks"][0]["state"], "leased");
  ASSERT_TRUE(w->Put("again", StageBytes(0, 0.2f)));
  w->Send(Command::kResult, {{"lease", lease}, {"uploads", {"again"}}});
  w->Ready();
  wire::Message next;
  ASSERT_TRUE(w->Expect(Command::kAssign, &next));
  EXPECT_EQ(next.header["tasks"][0]["job"], ids[1]);
  EXPECT_EQ(farm.Job(ids[0])["stages_done"], 1);
  EXPECT_EQ(farm.WorkerInfo("w0")["failed"], 0);
}

}  // namespace
}  // namespace vidfarm::coordinator
