#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "storage_test_util.h"
#include "vidfarm/common/crc32.h"
#include "vidfarm/common/sha256.h"
#include "vidfarm/storage/store.h"

namespace vidfarm::storage {
namespace {

using testing::FakeClock;
using testing::OpenOrDie;
using testing::RandomBytes;
using testing::RawDb;
using testing::TempDir;

class StoreTest : public ::testing::Test {
 protected:
  StoreOptions Options() {
    StoreOptions o;
    o.path = dir_.db();
    o.clock = clock_;
    o.min_free_bytes = 0;
    return o;
  }
  std::unique_ptr<Store> Open() { return OpenOrDie(Options()); }
  // Opens a store with `o`, commits `data` under each key in one transaction, and closes it.
  void CommitBlobs(const StoreOptions& o, const std::string& data,
                   std::initializer_list<const char*> keys) {
    auto store = OpenOrDie(o);
    ASSERT_TRUE(store);
    WriteTxn txn = store->NewTxn();
    for (const char* k : keys) ASSERT_TRUE(txn.PutBlob(k, data).ok());
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  }

  TempDir dir_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
};

JobRecord MakeJob(Store& store, int priority = 0) {
  JobRecord job;
  job.submit_seq = store.NextSubmitSeq();
  job.id = store.NewJobId(job.submit_seq);
  job.priority = priority;
  job.spec = JobSpecText({{"prompt", "a cat surfing"}, {"seed", 7}, {"preset", "tiny"}});
  return job;
}

TaskRecord MakeTask(const JobRecord& job, int stage) {
  TaskRecord t;
  t.job_id = job.id;
  t.stage = stage;
  t.state = stage == 0 ? TaskState::kReady : TaskState::kWaiting;
  t.priority = job.priority;
  t.submit_seq = job.submit_seq;
  return t;
}

TEST_F(StoreTest, OpenCreatesAndReopens) {
  {
    StoreOptions o = Options();
    o.create_if_missing = false;
    auto missing = Store::Open(o);
    EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
    EXPECT_FALSE(std::filesystem::exists(dir_.db()));
  }
  std::string id;
  {
    auto store = Open();
    ASSERT_TRUE(store);
    JobRecord job = MakeJob(*store);
    id = job.id;
    WriteTxn txn = store->NewTxn();
    txn.PutJob(job);
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  }
  StoreOptions o = Options();
  o.create_if_missing = false;
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->GetJob(id).ok());
  EXPECT_TRUE(store->GetJob("j-nope").status().IsNotFound());
  // A second Store on the same directory is refused by RocksDB's lock, as an error value.
  auto second = Store::Open(o);
  EXPECT_FALSE(second.ok());
  EXPECT_TRUE(second.status().IsIOError()) << second.status().ToString();
}

TEST_F(StoreTest, NewerSchemaIsRefusedWithClearError) {
  ASSERT_TRUE(Open());
  {
    RawDb raw(dir_.db());
    EXPECT_EQ(raw.Get("meta", "schema_version"), std::to_string(kSchemaVersion));
    raw.Put("meta", "schema_version", std::to_string(kSchemaVersion + 1));
    raw.Create("thumbnails");  // a newer build's column family must not mask the version check
  }
  auto store = Store::Open(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Status::Code::kNotSupported) << store.status().ToString();
  EXPECT_NE(store.status().message().find("schema version 2"), std::string::npos)
      << store.status().message();
  {
    RawDb raw(dir_.db());
    raw.Put("meta", "schema_version", "two");
  }
  EXPECT_TRUE(Store::Open(Options()).status().IsCorruption());
  {
    RawDb raw(dir_.db());
    raw.Put("meta", "schema_version", std::to_string(kSchemaVersion));
  }
  EXPECT_TRUE(Store::Open(Options()).ok());
}

TEST_F(StoreTest, JobAndSevenTasksInOneTxnReadBackFieldByField) {
  auto store = Open();
  ASSERT_TRUE(store);
  JobRecord job = MakeJob(*store, 5);
  job.state = JobState::kRunning;
  job.stages_done = 2;
  job.error = "none yet";
  job.created_us = 11;
  job.updated_us = 22;
  job.finished_us = 33;
  job.keep_intermediates = true;
  job.output_blob = "out/" + job.id;
  WriteTxn txn = store->NewTxn();
  txn.PutJob(job);
  for (int s = 0; s < 7; ++s) {
    TaskRecord t = MakeTask(job, s);
    t.attempts = s;
    t.lease_id = "lease-" + std::to_string(s);
    t.worker_id = "w" + std::to_string(s);
    t.lease_expires_us = 1000 + s;
    t.checkpoint_step = s * 2;
    t.checkpoint_blob = "ckpt/" + std::to_string(s);
    t.step = s;
    t.steps = 64;
    t.input_blob = "in/" + std::to_string(s);
    t.output_blob = "out/" + std::to_string(s);
    t.error = s == 6 ? "boom" : "";
    t.updated_us = 500 + s;
    if (s == 3) t.state = TaskState::kLeased;
    txn.PutTask(t);
  }
  txn.AppendEvent(job.id, "submitted", {{"priority", 5}});
  ASSERT_TRUE(store->Commit(std::move(txn)).ok());

  auto got = store->GetJob(job.id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->id, job.id);
  EXPECT_EQ(got->submit_seq, job.submit_seq);
  EXPECT_EQ(got->spec, job.spec);
  EXPECT_EQ(nlohmann::json::parse(got->spec)["prompt"], "a cat surfing");
  EXPECT_EQ(got->priority, 5);
  EXPECT_EQ(got->state, JobState::kRunning);
  EXPECT_EQ(got->num_stages, 7);
  EXPECT_EQ(got->stages_done, 2);
  EXPECT_EQ(got->error, "none yet");
  EXPECT_EQ(got->created_us, 11);
  EXPECT_EQ(got->updated_us, 22);
  EXPECT_EQ(got->finished_us, 33);
  EXPECT_TRUE(got->keep_intermediates);
  EXPECT_EQ(got->output_blob, job.output_blob);

  auto tasks = store->GetTasks(job.id);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 7u);
  for (int s = 0; s < 7; ++s) {
    const TaskRecord& t = (*tasks)[s];
    auto one = store->GetTask(job.id, s);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(one->lease_id, t.lease_id);
    EXPECT_EQ(t.job_id, job.id);
    EXPECT_EQ(t.stage, s);
    EXPECT_EQ(t.state, s == 0   ? TaskState::kReady
                       : s == 3 ? TaskState::kLeased
                                : TaskState::kWaiting);
    EXPECT_EQ(t.priority, 5);
    EXPECT_EQ(t.submit_seq, job.submit_seq);
    EXPECT_EQ(t.attempts, s);
    EXPECT_EQ(t.lease_id, "lease-" + std::to_string(s));
    EXPECT_EQ(t.worker_id, "w" + std::to_string(s));
    EXPECT_EQ(t.lease_expires_us, 1000 + s);
    EXPECT_EQ(t.checkpoint_step, s * 2);
    EXPECT_EQ(t.checkpoint_blob, "ckpt/" + std::to_string(s));
    EXPECT_EQ(t.step, s);
    EXPECT_EQ(t.steps, 64);
    EXPECT_EQ(t.input_blob, "in/" + std::to_string(s));
    EXPECT_EQ(t.output_blob, "out/" + std::to_string(s));
    EXPECT_EQ(t.error, s == 6 ? "boom" : "");
    EXPECT_EQ(t.updated_us, 500 + s);
  }
  EXPECT_TRUE(store->GetTask(job.id, 7).status().IsNotFound());
  std::vector<Event> events;
  ASSERT_TRUE(store->ReadEvents(0, 10, &events).ok());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq, 1u);
  EXPECT_EQ(events[0].time_us, clock_->now_us);
  EXPECT_EQ(events[0].job_id, job.id);
  EXPECT_EQ(events[0].type, "submitted");
  EXPECT_EQ(events[0].data["priority"], 5);
}

TEST_F(StoreTest, InvalidRecordPoisonsTxn) {
  auto store = Open();
  ASSERT_TRUE(store);
  JobRecord job = MakeJob(*store);
  WriteTxn txn = store->NewTxn();
  txn.PutJob(job);
  txn.PutTask(MakeTask(job, 100));  // stage does not fit the 2-digit key
  EXPECT_TRUE(txn.status().IsInvalidArgument());
  EXPECT_TRUE(store->Commit(std::move(txn)).IsInvalidArgument());
  EXPECT_TRUE(store->GetJob(job.id).status().IsNotFound());

  WriteTxn txn2 = store->NewTxn();
  JobRecord slash = job;
  slash.id = "a/b";
  txn2.PutJob(slash);
  EXPECT_TRUE(store->Commit(std::move(txn2)).IsInvalidArgument());
}

TEST_F(StoreTest, ForEachJobInSubmissionOrderAndTasksGrouped) {
  auto store = Open();
  ASSERT_TRUE(store);
  std::vector<JobRecord> jobs;
  for (int i = 0; i < 12; ++i) jobs.push_back(MakeJob(*store, i % 3));
  // Commit out of order (12, 1, 11, 2, ...): iteration must still follow submission.
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) {
    order.push_back(11 - i);
    order.push_back(i);
  }
  for (int i : order) {
    WriteTxn txn = store->NewTxn();
    txn.PutJob(jobs[i]);
    for (int s = 0; s < 7; ++s) txn.PutTask(MakeTask(jobs[i], s));
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  }
  std::vector<uint64_t> seqs;
  ASSERT_TRUE(store
                  ->ForEachJob([&](const JobRecord& j) {
                    seqs.push_back(j.submit_seq);
                    return true;
                  })
                  .ok());
  ASSERT_EQ(seqs.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(seqs[i], jobs[i].submit_seq);
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
  EXPECT_GE(jobs[11].submit_seq, 10u);  // padding matters once seqs reach two digits

  int visited = 0;
  ASSERT_TRUE(store->ForEachJob([&](const JobRecord&) { return ++visited < 3; }).ok());
  EXPECT_EQ(visited, 3);

  std::vector<std::pair<uint64_t, int>> task_order;
  ASSERT_TRUE(store
                  ->ForEachTask([&](const TaskRecord& t) {
                    task_order.emplace_back(t.submit_seq, t.stage);
                    return true;
                  })
                  .ok());
  ASSERT_EQ(task_order.size(), 12u * 7u);
  EXPECT_TRUE(std::is_sorted(task_order.begin(), task_order.end()));
}

TEST_F(StoreTest, GetTasksDoesNotLeakIntoJobsSharingAPrefix) {
  auto store = Open();
  ASSERT_TRUE(store);
  WriteTxn txn = store->NewTxn();
  for (std::string id : {"a", "a-b", "ab", "a0"}) {
    JobRecord j;
    j.id = id;
    txn.PutJob(j);
    for (int s = 0; s < 2; ++s) {
      TaskRecord t = MakeTask(j, s);
      t.worker_id = id;
      txn.PutTask(t);
    }
  }
  ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  auto tasks = store->GetTasks("a");
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 2u);
  for (auto& t : *tasks) EXPECT_EQ(t.worker_id, "a");
  EXPECT_TRUE(store->GetTasks("zzz")->empty());
}

TEST_F(StoreTest, BlobRoundTripAcrossChunkBoundaries) {
  StoreOptions o = Options();
  o.blob_chunk_bytes = 1024;
  const size_t sizes[] = {0, 1, 1023, 1024, 1025, 3 * 1024 + 5};
  {
    auto store = OpenOrDie(o);
    ASSERT_TRUE(store);
    for (size_t n : sizes) {
      WriteTxn txn = store->NewTxn();
      ASSERT_TRUE(txn.PutBlob("b/" + std::to_string(n), RandomBytes(n, n)).ok());
      ASSERT_TRUE(store->Commit(std::move(txn)).ok());
    }
    EXPECT_FALSE(*store->HasBlob("b/7"));
    EXPECT_TRUE(store->GetBlob("b/7").status().IsNotFound());
    for (size_t n : sizes) {
      EXPECT_TRUE(*store->HasBlob("b/" + std::to_string(n)));
      auto got = store->GetBlob("b/" + std::to_string(n));
      ASSERT_TRUE(got.ok()) << n << ": " << got.status().ToString();
      EXPECT_EQ(*got, RandomBytes(n, n)) << n;
    }
  }
  // The documented layout: one manifest plus ceil(n / chunk) chunks per blob.
  RawDb raw(dir_.db());
  auto keys = raw.Keys("blobs");
  auto count = [&](const std::string& prefix) {
    return std::count_if(keys.begin(), keys.end(),
                         [&](const std::string& k) { return k.rfind(prefix, 0) == 0; });
  };
  EXPECT_EQ(count("b/0#"), 1);     // manifest only
  EXPECT_EQ(count("b/1024#"), 2);  // manifest + 1 chunk
  EXPECT_EQ(count("b/1025#"), 3);
  EXPECT_EQ(count("b/3077#"), 5);
  EXPECT_EQ(keys.size(), 1u + 2 + 2 + 2 + 3 + 5);
  EXPECT_NE(std::find(keys.begin(), keys.end(), "b/3077#000003"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "b/3077#m"), keys.end());
}

TEST_F(StoreTest, LargeBlobWithDefaultChunks) {
  auto store = Open();
  ASSERT_TRUE(store);
  const std::string big = RandomBytes(20 << 20, 42);
  WriteTxn txn = store->NewTxn();
  ASSERT_TRUE(txn.PutBlob("video/final.mp4", big).ok());
  ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  auto got = store->GetBlob("video/final.mp4");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == big);
  // Survives a flush (chunks move to blob files) and a reopen.
  ASSERT_TRUE(store->Flush().ok());
  store.reset();
  store = Open();
  ASSERT_TRUE(store);
  got = store->GetBlob("video/final.mp4");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == big);
}

TEST_F(StoreTest, CorruptChunkIsReportedNotCrashed) {
  StoreOptions o = Options();
  o.blob_chunk_bytes = 1024;
  const std::string data = RandomBytes(5000, 9);
  CommitBlobs(o, data, {"k", "k2", "k3", "k4"});
  {
    RawDb raw(dir_.db());
    std::string chunk = raw.Get("blobs", "k#000002");
    chunk[100] ^= 0x01;  // one flipped bit in the payload
    raw.Put("blobs", "k#000002", chunk);
    // Swapped chunks each pass their CRC; only the whole-blob checksum catches it.
    std::string c0 = raw.Get("blobs", "k2#000000"), c1 = raw.Get("blobs", "k2#000001");
    raw.Put("blobs", "k2#000000", c1);
    raw.Put("blobs", "k2#000001", c0);
    raw.Delete("blobs", "k3#000004");
    raw.Put("blobs", "k4#m", "{\"v\":1,\"size\":\"lots\"}");
  }
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store);
  auto bad = store->GetBlob("k");
  ASSERT_TRUE(bad.status().IsCorruption()) << bad.status().ToString();
  EXPECT_NE(bad.status().message().find("'k'"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("chunk 2"), std::string::npos) << bad.status().message();
  auto swapped = store->GetBlob("k2");
  ASSERT_TRUE(swapped.status().IsCorruption()) << swapped.status().ToString();
  EXPECT_NE(swapped.status().message().find("checksum (crc32c) of the whole blob"),
            std::string::npos)
      << swapped.status().message();
  auto missing = store->GetBlob("k3");
  ASSERT_TRUE(missing.status().IsCorruption()) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("chunk 4"), std::string::npos);
  EXPECT_TRUE(store->GetBlob("k4").status().IsCorruption());
  // A corrupt blob can still be deleted completely (chunks found by scanning).
  WriteTxn txn = store->NewTxn();
  txn.DeleteBlob("k4");
  ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  EXPECT_TRUE(store->GetBlob("k4").status().IsNotFound());
  store.reset();
  RawDb raw(dir_.db());
  for (auto& key : raw.Keys("blobs")) EXPECT_NE(key.rfind("k4#", 0), 0u) << key;
}

// async_commit: Commit returns once queued; every read, Sync and the destructor see or write
// every commit queued before them, in order (dense event seqs), also when the queue's byte bound
// makes Commit wait for the writer.
TEST_F(StoreTest, AsyncCommitsAreReadBackInOrderAndWrittenAtClose) {
  StoreOptions o = Options();
  o.async_commit = true;
  o.buffer_wal = true;
  o.max_queued_bytes = 4096;  // a few transactions at a time
  std::string id;
  {
    auto store = OpenOrDie(o);
    ASSERT_TRUE(store);
    JobRecord job = MakeJob(*store);
    id = job.id;
    for (int i = 1; i <= 200; ++i) {
      WriteTxn txn = store->NewTxn();
      job.updated_us = i;
      txn.PutJob(job);
      ASSERT_TRUE(txn.PutBlob("b", std::string(1000, static_cast<char>(i))).ok());
      txn.AppendEvent(id, "progress", {{"i", i}});
      ASSERT_TRUE(store->Commit(std::move(txn), /*sync=*/false).ok());
      if (i == 100) {
        auto got = store->GetJob(id);  // right after the Commit: the read waits for it
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        EXPECT_EQ(got->updated_us, 100);
        EXPECT_EQ(store->last_event_seq(), 100u);
        auto blob = store->GetBlob("b");
        ASSERT_TRUE(blob.ok());
        EXPECT_EQ(*blob, std::string(1000, static_cast<char>(100)));
      }
    }
    ASSERT_TRUE(store->Sync().ok());
    for (int i = 201; i <= 210; ++i) {  // queued, not synced: the destructor writes them
      WriteTxn txn = store->NewTxn();
      job.updated_us = i;
      txn.PutJob(job);
      txn.AppendEvent(id, "progress", {{"i", i}});
      ASSERT_TRUE(store->Commit(std::move(txn), /*sync=*/false).ok());
    }
  }
  auto store = Open();
  ASSERT_TRUE(store);
  auto got = store->GetJob(id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->updated_us, 210);
  std::vector<Event> events;
  ASSERT_TRUE(store->ReadEvents(0, 1000, &events).ok());
  ASSERT_EQ(events.size(), 210u);
  for (int i = 0; i < 210; ++i) {
    EXPECT_EQ(events[i].seq, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(events[i].data["i"], i + 1);
  }
  EXPECT_EQ(*store->GetBlob("b"), std::string(1000, static_cast<char>(200)));
}

// A queued commit that fails to write (here a blob over the store's limit, staged in a
// transaction made with a larger one) fails the next Sync and every later Commit; reads go on.
TEST_F(StoreTest, AFailedAsyncCommitFailsEveryLaterCommitAndSync) {
  StoreOptions o = Options();
  o.async_commit = true;
  o.max_blob_bytes = 1000;
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store);
  JobRecord job = MakeJob(*store);
  WriteTxn ok = store->NewTxn();
  ok.PutJob(job);
  ASSERT_TRUE(store->Commit(std::move(ok), /*sync=*/false).ok());
  WriteTxn big(/*blob_chunk_bytes=*/1024, /*max_blob_bytes=*/1 << 20);
  ASSERT_TRUE(big.PutBlob("big", std::string(5000, 'x')).ok());
  ASSERT_TRUE(store->Commit(std::move(big), /*sync=*/false).ok());  // only queued
  Status st = store->Sync();
  ASSERT_TRUE(st.IsInvalidArgument()) << st.ToString();
  EXPECT_NE(st.message().find("max_blob_bytes"), std::string::npos) << st.message();
  for (bool sync : {false, true}) {
    WriteTxn later = store->NewTxn();
    job.updated_us = 3;
    later.PutJob(job);
    EXPECT_TRUE(store->Commit(std::move(later), sync).IsInvalidArgument());
  }
  auto got = store->GetJob(job.id);  // written before the failure
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->updated_us, job.created_us);
  EXPECT_TRUE(store->GetBlob("big").status().IsNotFound());
}

// Databases written before manifest v2 check a blob with SHA-256; they still read, and a
// mismatch is still caught.
TEST_F(StoreTest, VersionOneManifestsWithSha256StillRead) {
  StoreOptions o = Options();
  o.blob_chunk_bytes = 1024;
  const std::string data = RandomBytes(3000, 4);
  CommitBlobs(o, data, {"old", "old-bad"});
  {
    RawDb raw(dir_.db());
    const nlohmann::json v2 = nlohmann::json::parse(raw.Get("blobs", "old#m"));
    EXPECT_EQ(v2.at("v"), 2);
    EXPECT_EQ(v2.at("crc32c").get<uint32_t>(), Crc32c(data.data(), data.size()));
    nlohmann::json v1 = {{"v", 1},
                         {"size", 3000},
                         {"chunks", 3},
                         {"chunk_bytes", 1024},
                         {"sha256", Sha256Hex(data.data(), data.size())}};
    raw.Put("blobs", "old#m", v1.dump());
    v1["sha256"] = Sha256Hex(data.data(), data.size() - 1);
    raw.Put("blobs", "old-bad#m", v1.dump());
  }
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store);
  auto got = store->GetBlob("old");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
  auto bad = store->GetBlob("old-bad");
  ASSERT_TRUE(bad.status().IsCorruption()) << bad.status().ToString();
  EXPECT_NE(bad.status().message().find("checksum (sha256)"), std::string::npos)
      << bad.status().message();
}

TEST_F(StoreTest, GarbageJobAndTaskValuesAreCorruption) {
  std::string id;
  {
    auto store = Open();
    ASSERT_TRUE(store);
    JobRecord job = MakeJob(*store);
    id = job.id;
    WriteTxn txn = store->NewTxn();
    txn.PutJob(job);
    txn.PutTask(MakeTask(job, 0));
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  }
  {
    RawDb raw(dir_.db());
    raw.Put("jobs", id, "{\"v\":1,\"id\":\"x\",\"state\":");
    raw.Put("tasks", id + "/00", "\x01\x02garbage");
  }
  auto store = Open();
  ASSERT_TRUE(store);  // opening does not depend on every record decoding
  auto job = store->GetJob(id);
  EXPECT_TRUE(job.status().IsCorruption()) << job.status().ToString();
  EXPECT_NE(job.status().message().find(id), std::string::npos);
  EXPECT_TRUE(store->ForEachJob([](const JobRecord&) { return true; }).IsCorruption());
  EXPECT_TRUE(store->GetTask(id, 0).status().IsCorruption());
  EXPECT_TRUE(store->GetTasks(id).status().IsCorruption());
}

TEST_F(StoreTest, DeleteBlobRemovesEveryChunk) {
  StoreOptions o = Options();
  o.blob_chunk_bytes = 1024;
  {
    auto store = OpenOrDie(o);
    ASSERT_TRUE(store);
    WriteTxn txn = store->NewTxn();
    ASSERT_TRUE(txn.PutBlob("gone", RandomBytes(4 * 1024 + 1, 1)).ok());
    ASSERT_TRUE(txn.PutBlob("shrinks", RandomBytes(5 * 1024, 2)).ok());
    ASSERT_TRUE(txn.PutBlob("kept", RandomBytes(2 * 1024, 3)).ok());
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());

    WriteTxn del = store->NewTxn();
    del.DeleteBlob("gone");
    ASSERT_TRUE(del.PutBlob("shrinks", RandomBytes(1500, 4)).ok());
    // Put then delete in one transaction leaves nothing.
    ASSERT_TRUE(del.PutBlob("transient", RandomBytes(3000, 5)).ok());
    del.DeleteBlob("transient");
    del.DeleteBlob("never-existed");
    ASSERT_TRUE(store->Commit(std::move(del)).ok());

    EXPECT_TRUE(store->GetBlob("gone").status().IsNotFound());
    EXPECT_FALSE(*store->HasBlob("transient"));
    EXPECT_EQ(*store->GetBlob("shrinks"), RandomBytes(1500, 4));
    EXPECT_EQ(*store->GetBlob("kept"), RandomBytes(2 * 1024, 3));
  }
  RawDb raw(dir_.db());
  std::vector<std::string> expected = {"kept#000000",    "kept#000001",    "kept#m",
                                       "shrinks#000000", "shrinks#000001", "shrinks#m"};
  EXPECT_EQ(raw.Keys("blobs"), expected);
}

TEST_F(StoreTest, EventsAreDenseOrderedAndSurviveReopen) {
  const int kThreads = 4, kPerThread = 25;
  {
    auto store = Open();
    ASSERT_TRUE(store);
    EXPECT_EQ(store->last_event_seq(), 0u);
    WriteTxn a = store->NewTxn();
    a.AppendEvent("j1", "submitted", {{"n", 0}});
    a.AppendEvent("j1", "ready", {{"n", 1}});
    ASSERT_TRUE(store->Commit(std::move(a)).ok());
    WriteTxn none = store->NewTxn();
    none.PutJob(MakeJob(*store));
    ASSERT_TRUE(store->Commit(std::move(none)).ok());
    EXPECT_EQ(store->last_event_seq(), 2u);

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          WriteTxn txn = store->NewTxn();
          txn.AppendEvent("j" + std::to_string(t), "progress", {{"i", i}});
          EXPECT_TRUE(store->Commit(std::move(txn)).ok());
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(store->last_event_seq(), 2u + kThreads * kPerThread);
  }
  clock_->now_us += 5;
  auto store = Open();
  ASSERT_TRUE(store);
  const uint64_t n = 2 + kThreads * kPerThread;
  EXPECT_EQ(store->last_event_seq(), n);
  // Page through in pieces of 7; every seq appears once, in order, and each thread's events keep
  // their own order.
  std::vector<Event> all, page;
  uint64_t after = 0;
  do {
    ASSERT_TRUE(store->ReadEvents(after, 7, &page).ok());
    ASSERT_LE(page.size(), 7u);
    all.insert(all.end(), page.begin(), page.end());
    if (!page.empty()) after = page.back().seq;
  } while (!page.empty());
  ASSERT_EQ(all.size(), n);
  std::map<std::string, int> next_i;
  for (uint64_t i = 0; i < n; ++i) {
    EXPECT_EQ(all[i].seq, i + 1);
    if (all[i].type == "progress") {
      EXPECT_EQ(all[i].data["i"], next_i[all[i].job_id]++);
    }
  }
  EXPECT_EQ(all[1].type, "ready");
  WriteTxn more = store->NewTxn();
  more.AppendEvent("j9", "done", nullptr);
  ASSERT_TRUE(store->Commit(std::move(more)).ok());
  ASSERT_TRUE(store->ReadEvents(n, 100, &page).ok());
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].seq, n + 1);
  EXPECT_EQ(page[0].time_us, clock_->now_us);
  ASSERT_TRUE(store->ReadEvents(n + 1, 100, &page).ok());
  EXPECT_TRUE(page.empty());
}

TEST_F(StoreTest, SubmitSeqContinuesAfterReopenAndIdsSort) {
  uint64_t committed = 0;
  std::string last_id;
  {
    auto store = Open();
    ASSERT_TRUE(store);
    EXPECT_EQ(store->NextSubmitSeq(), 1u);
    EXPECT_EQ(store->NextSubmitSeq(), 2u);
    JobRecord job = MakeJob(*store);
    committed = job.submit_seq;
    last_id = job.id;
    EXPECT_EQ(committed, 3u);
    EXPECT_EQ(job.id.rfind("j-000000000003-", 0), 0u) << job.id;
    EXPECT_EQ(job.id.size(), std::string("j-000000000042-3fa2").size());
    EXPECT_NE(store->NewJobId(3), store->NewJobId(3));  // random suffix (1 in 65536 flake)
    WriteTxn txn = store->NewTxn();
    txn.PutJob(job);
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());
    store->NextSubmitSeq();  // handed out, never committed: may be reused, never goes backwards
  }
  {
    auto store = Open();
    ASSERT_TRUE(store);
    JobRecord next = MakeJob(*store);
    EXPECT_EQ(next.submit_seq, committed + 1);
    EXPECT_GT(next.id, last_id);
    // A job committed with an explicit, larger seq moves the counter past it.
    next.submit_seq = 1000;
    next.id = store->NewJobId(1000);
    WriteTxn txn = store->NewTxn();
    txn.PutJob(next);
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());
    EXPECT_EQ(store->NextSubmitSeq(), 1001u);
  }
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->NextSubmitSeq(), 1001u);
}

TEST_F(StoreTest, FailedPutBlobCommitsNothing) {
  StoreOptions o = Options();
  o.max_blob_bytes = 1000;
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store);
  JobRecord job = MakeJob(*store);
  WriteTxn txn = store->NewTxn();
  txn.PutJob(job);
  txn.PutTask(MakeTask(job, 0));
  ASSERT_TRUE(txn.PutBlob("small", "fits").ok());
  Status st = txn.PutBlob("huge", RandomBytes(1001, 1));
  EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
  EXPECT_NE(st.message().find("max_blob_bytes"), std::string::npos);
  txn.AppendEvent(job.id, "submitted", {});
  EXPECT_TRUE(store->Commit(std::move(txn)).IsInvalidArgument());
  EXPECT_TRUE(store->GetJob(job.id).status().IsNotFound());
  EXPECT_TRUE(store->GetTask(job.id, 0).status().IsNotFound());
  EXPECT_FALSE(*store->HasBlob("small"));
  EXPECT_FALSE(*store->HasBlob("huge"));
  EXPECT_EQ(store->last_event_seq(), 0u);
  std::vector<Event> events;
  ASSERT_TRUE(store->ReadEvents(0, 10, &events).ok());
  EXPECT_TRUE(events.empty());

  // A txn built for a more permissive store is still held to this store's limit at commit.
  WriteTxn loose(1024, 1 << 20);
  ASSERT_TRUE(loose.PutBlob("huge", RandomBytes(5000, 2)).ok());
  EXPECT_TRUE(store->Commit(std::move(loose)).IsInvalidArgument());
  EXPECT_FALSE(*store->HasBlob("huge"));
}

TEST_F(StoreTest, DiskUsageAfterLargeBlob) {
  auto store = Open();
  ASSERT_TRUE(store);
  WriteTxn txn = store->NewTxn();
  ASSERT_TRUE(txn.PutBlob("v", RandomBytes(20 << 20, 3)).ok());
  JobRecord job = MakeJob(*store);
  txn.PutJob(job);
  ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  ASSERT_TRUE(store->Flush().ok());
  auto u = store->GetDiskUsage();
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_GE(u->blob_bytes, 20u << 20);
  EXPECT_GT(u->sst_bytes, 0u);
  EXPECT_LT(u->sst_bytes, 1u << 20);  // the chunks live in blob files, not SSTs
  EXPECT_GE(u->total_bytes, u->blob_bytes + u->sst_bytes);
  EXPECT_GT(u->free_bytes, 0u);
}

TEST_F(StoreTest, LowDiskSpaceRefusesNewJobsButReadsAndWritesGoOn) {
  std::string id;
  {
    auto store = Open();
    ASSERT_TRUE(store);
    EXPECT_TRUE(store->CheckSpaceForNewJob().ok());
    JobRecord job = MakeJob(*store);
    id = job.id;
    WriteTxn txn = store->NewTxn();
    txn.PutJob(job);
    ASSERT_TRUE(txn.PutBlob("in", "abc").ok());
    ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  }
  StoreOptions o = Options();
  o.min_free_bytes = UINT64_MAX;
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store);
  Status st = store->CheckSpaceForNewJob();
  EXPECT_EQ(st.code(), Status::Code::kResourceExhausted) << st.ToString();
  EXPECT_NE(st.message().find("min_free_bytes"), std::string::npos);
  EXPECT_TRUE(store->GetJob(id).ok());
  EXPECT_EQ(*store->GetBlob("in"), "abc");
  // Existing jobs keep moving: the check is advisory for new work only.
  auto job = store->GetJob(id);
  job->state = JobState::kRunning;
  WriteTxn txn = store->NewTxn();
  txn.PutJob(*job);
  ASSERT_TRUE(store->Commit(std::move(txn)).ok());
  EXPECT_EQ(store->GetJob(id)->state, JobState::kRunning);
}

}  // namespace
}  // namespace vidfarm::storage
