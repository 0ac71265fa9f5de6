// Crash safety with a real second process: the child commits transitions and dies by SIGKILL
// without closing the database; the parent reopens and must find exactly what was committed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "storage_test_util.h"
#include "vidfarm/storage/store.h"

namespace vidfarm::storage {
namespace {

using testing::TempDir;

constexpr const char* kJobId = "j-000000000001-c0de";

// Transition i (1-based) of the child's script: job progress, the task for stage (i-1)%7 moves
// on, one event, and a blob that is replaced each time; all in one WriteTxn.
Status CommitTransition(Store& store, int i, bool sync = true) {
  WriteTxn txn = store.NewTxn();
  JobRecord job;
  job.id = kJobId;
  job.submit_seq = 1;
  job.state = JobState::kRunning;
  job.stages_done = i;
  txn.PutJob(job);
  TaskRecord task;
  task.job_id = kJobId;
  task.stage = (i - 1) % 7;
  task.state = TaskState::kLeased;
  task.step = i;
  task.attempts = i;
  txn.PutTask(task);
  VF_RETURN_NOT_OK(txn.PutBlob("latent", std::string(1000 + i, static_cast<char>(i))));
  txn.AppendEvent(kJobId, "progress", {{"i", i}});
  return store.Commit(std::move(txn), sync);
}

// Runs only as the child (the parent execs this binary with the environment set). It acks each
// commit with one byte on VF_CRASH_ACK_FD, after Commit returned. With VF_CRASH_GROUP=n (group
// commit) it commits unsynced and acks every n commits together, after the Store::Sync for them.
TEST(StorageCrashChild, DISABLED_Run) {
  const char* dir = std::getenv("VF_CRASH_DIR");
  const char* k = std::getenv("VF_CRASH_K");
  const char* ack = std::getenv("VF_CRASH_ACK_FD");
  if (!dir || !k || !ack) GTEST_SKIP() << "child of StorageCrash only";
  StoreOptions o;
  o.path = dir;
  o.blob_chunk_bytes = 256;
  o.buffer_wal = std::getenv("VF_CRASH_BUFFER_WAL") != nullptr;
  o.async_commit = std::getenv("VF_CRASH_ASYNC") != nullptr;
  auto store = Store::Open(o);
  if (!store.ok()) _exit(3);
  int limit = std::atoi(k), fd = std::atoi(ack);
  const char* group_env = std::getenv("VF_CRASH_GROUP");
  const int group = group_env ? std::atoi(group_env) : 0;
  for (int i = 1; limit == 0 || i <= limit; ++i) {
    if (!CommitTransition(**store, i, /*sync=*/group == 0).ok()) _exit(4);
    if (group > 0 && i % group != 0) continue;
    if (group > 0 && !(*store)->Sync().ok()) _exit(6);
    const std::string acks(static_cast<size_t>(std::max(group, 1)), '\1');
    if (write(fd, acks.data(), acks.size()) != static_cast<ssize_t>(acks.size())) _exit(5);
  }
  raise(SIGKILL);  // no destructor, no close, no flush
}

// Starts the child; returns its pid and the read end of the ack pipe.
pid_t SpawnChild(const std::string& dir, int k, int* ack_read_fd, int group = 0,
                 bool buffer_wal = false, bool async_commit = false) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDOUT_FILENO);
    setenv("VF_CRASH_DIR", dir.c_str(), 1);
    setenv("VF_CRASH_K", std::to_string(k).c_str(), 1);
    setenv("VF_CRASH_ACK_FD", std::to_string(fds[1]).c_str(), 1);
    if (group > 0) setenv("VF_CRASH_GROUP", std::to_string(group).c_str(), 1);
    if (buffer_wal) setenv("VF_CRASH_BUFFER_WAL", "1", 1);
    if (async_commit) setenv("VF_CRASH_ASYNC", "1", 1);
    // exec, so the child is a clean process (no inherited RocksDB threads or locks).
    execl("/proc/self/exe", "test_storage", "--gtest_filter=StorageCrashChild.DISABLED_Run",
          "--gtest_also_run_disabled_tests", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  *ack_read_fd = fds[0];
  return pid;
}

// What the database must hold after exactly m transitions.
void ExpectStateAfter(Store& store, int m) {
  auto job = store.GetJob(kJobId);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->stages_done, m);
  auto tasks = store.GetTasks(kJobId);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), static_cast<size_t>(std::min(m, 7)));
  for (const auto& t : *tasks) {
    // The latest transition that touched this stage.
    int last = m - ((m - 1 - t.stage) % 7 + 7) % 7;
    EXPECT_EQ(t.step, last) << "stage " << t.stage;
    EXPECT_EQ(t.attempts, last);
  }
  auto blob = store.GetBlob("latent");
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(*blob, std::string(1000 + m, static_cast<char>(m)));
  EXPECT_EQ(store.last_event_seq(), static_cast<uint64_t>(m));
  std::vector<Event> events;
  ASSERT_TRUE(store.ReadEvents(0, 10000, &events).ok());
  ASSERT_EQ(events.size(), static_cast<size_t>(m));
  for (int i = 0; i < m; ++i) {
    EXPECT_EQ(events[i].seq, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(events[i].data["i"], i + 1);
  }
  EXPECT_EQ(store.NextSubmitSeq(), 2u);
}

TEST(StorageCrash, ChildKilledAfterKCommitsLeavesExactlyK) {
  TempDir dir;
  const int k = 25;
  int ack = -1;
  pid_t pid = SpawnChild(dir.db(), k, &ack);
  ASSERT_GT(pid, 0);
  int acks = 0;
  char c;
  while (read(ack, &c, 1) == 1) ++acks;
  close(ack);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(acks, k);

  StoreOptions o;
  o.path = dir.db();
  auto store = testing::OpenOrDie(o);
  ASSERT_TRUE(store);
  ExpectStateAfter(*store, k);
}

// A child commits until killed (group = 0: every commit synced; else one Sync per `group`
// unsynced commits); the kill lands anywhere, possibly inside a commit or a Sync. Every commit the
// child acknowledged (after its sync) is there, and what is there is a whole prefix.
void KillMidStreamAndCheck(int group, bool buffer_wal = false, bool async_commit = false) {
  TempDir dir;
  int ack = -1;
  pid_t pid = SpawnChild(dir.db(), /*k=*/0, &ack, group, buffer_wal, async_commit);
  ASSERT_GT(pid, 0);
  int acks = 0;
  char c;
  while (acks < 40 && read(ack, &c, 1) == 1) ++acks;
  kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(ack);
  ASSERT_EQ(acks, 40) << "child died early, status " << status;

  StoreOptions o;
  o.path = dir.db();
  auto store = testing::OpenOrDie(o);
  ASSERT_TRUE(store);
  auto job = store->GetJob(kJobId);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  int m = job->stages_done;
  EXPECT_GE(m, 40);  // every acknowledged commit is there
  ExpectStateAfter(*store, m);
}

TEST(StorageCrash, ChildKilledMidStreamLeavesAWholePrefix) { KillMidStreamAndCheck(0); }

TEST(StorageCrash, GroupCommitChildKilledMidStreamLeavesAWholePrefixWithEverySyncedCommit) {
  KillMidStreamAndCheck(5);
}

// The coordinator's setting under group commit: unsynced commits wait in RocksDB's WAL buffer.
TEST(StorageCrash, BufferedWalChildKilledMidStreamLeavesAWholePrefixWithEverySyncedCommit) {
  KillMidStreamAndCheck(5, /*buffer_wal=*/true);
}

// The coordinator's setting now: the same, with the writes on the store's writer thread.
TEST(StorageCrash, AsyncCommitChildKilledMidStreamLeavesAWholePrefixWithEverySyncedCommit) {
  KillMidStreamAndCheck(5, /*buffer_wal=*/true, /*async_commit=*/true);
}

// What buffer_wal changes: a process killed after unsynced commits leaves them in the page cache
// without it (the reopened store has all 10), and loses them with it (only Sync writes the log).
TEST(StorageCrash, BufferedWalKeepsUnsyncedCommitsInTheProcessUntilSync) {
  for (bool buffer_wal : {false, true}) {
    TempDir dir;
    int ack = -1;
    pid_t pid = SpawnChild(dir.db(), /*k=*/10, &ack, /*group=*/1000, buffer_wal);  // never syncs
    ASSERT_GT(pid, 0);
    char c;
    while (read(ack, &c, 1) == 1) {
    }
    close(ack);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exit status " << status;
    StoreOptions o;
    o.path = dir.db();
    auto store = testing::OpenOrDie(o);
    ASSERT_TRUE(store);
    if (buffer_wal) {
      EXPECT_TRUE(store->GetJob(kJobId).status().IsNotFound());
      EXPECT_EQ(store->last_event_seq(), 0u);
    } else {
      ExpectStateAfter(*store, 10);
    }
  }
}

void UnsyncedCommitsAreReadableAtOnce(bool buffer_wal);

TEST(StorageCrash, UnsyncedCommitsAreReadableAtOnceAndKeepEventOrder) {
  for (bool buffer_wal : {false, true}) {
    SCOPED_TRACE(buffer_wal ? "buffered WAL" : "WAL written per commit");
    UnsyncedCommitsAreReadableAtOnce(buffer_wal);
  }
}

// With buffer_wal the last commits are unsynced when the store closes: a clean close keeps them.
TEST(StorageCrash, BufferedWalCommitsSurviveACleanClose) {
  TempDir dir;
  StoreOptions o;
  o.path = dir.db();
  o.buffer_wal = true;
  {
    auto store = testing::OpenOrDie(o);
    ASSERT_TRUE(store);
    for (int i = 1; i <= 4; ++i) ASSERT_TRUE(CommitTransition(*store, i, /*sync=*/false).ok());
  }
  auto store = testing::OpenOrDie(o);
  ASSERT_TRUE(store);
  ExpectStateAfter(*store, 4);
}

void UnsyncedCommitsAreReadableAtOnce(bool buffer_wal) {
  TempDir dir;
  StoreOptions o;
  o.path = dir.db();
  o.buffer_wal = buffer_wal;
  {
    auto store = testing::OpenOrDie(o);
    ASSERT_TRUE(store);
    for (int i = 1; i <= 9; ++i) {
      ASSERT_TRUE(CommitTransition(*store, i, /*sync=*/i % 3 == 0).ok()) << i;
      auto job = store->GetJob(kJobId);
      ASSERT_TRUE(job.ok());
      EXPECT_EQ(job->stages_done, i);  // visible before any Sync
    }
    ASSERT_TRUE(store->Sync().ok());
    ExpectStateAfter(*store, 9);
  }
  auto store = testing::OpenOrDie(o);
  ASSERT_TRUE(store);
  ExpectStateAfter(*store, 9);
}

}  // namespace
}  // namespace vidfarm::storage
