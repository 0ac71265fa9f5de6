#include <gtest/gtest.h>

#include <string>

#include "vidfarm/common/crc32.h"
#include "vidfarm/storage/records.h"

namespace vidfarm::storage {
namespace {

TEST(StorageRecords, StateNamesRoundTrip) {
  const char* jobs[] = {"queued", "running", "paused", "done", "failed", "cancelled"};
  for (int i = 0; i < 6; ++i) {
    auto s = static_cast<JobState>(i);
    EXPECT_STREQ(JobStateName(s), jobs[i]);
    auto parsed = ParseJobState(jobs[i]);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, s);
  }
  const char* tasks[] = {"waiting", "ready", "leased", "done", "failed", "cancelled"};
  for (int i = 0; i < 6; ++i) {
    auto s = static_cast<TaskState>(i);
    EXPECT_STREQ(TaskStateName(s), tasks[i]);
    auto parsed = ParseTaskState(tasks[i]);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, s);
  }
  EXPECT_TRUE(ParseJobState("Queued").status().IsInvalidArgument());
  EXPECT_TRUE(ParseTaskState("waiting ").status().IsInvalidArgument());
  EXPECT_TRUE(ParseJobState("waiting").status().IsInvalidArgument());
}

TEST(StorageRecords, GarbageJobValuesAreCorruption) {
  JobRecord good;
  good.id = "j-000000000001-abcd";
  std::string ok = EncodeJob(good);
  ASSERT_TRUE(DecodeJob(ok).ok());

  auto with = [&](const char* field, nlohmann::json value) {
    auto j = nlohmann::json::parse(ok);
    j[field] = std::move(value);
    return j.dump();
  };
  auto without = [&](const char* field) {
    auto j = nlohmann::json::parse(ok);
    j.erase(field);
    return j.dump();
  };
  const std::string cases[] = {
      "",
      "not json",
      "{\"v\":1,",
      "[1,2,3]",
      "42",
      std::string("\0\xff\xfe", 3),
      without("v"),
      without("state"),
      without("id"),
      with("v", 2),
      with("v", "1"),
      with("state", "exploded"),
      with("state", 3),
      with("submit_seq", -1),
      with("priority", 1e20),
      with("priority", int64_t{1} << 40),
      with("num_stages", 1000),
      with("keep_intermediates", "yes"),
      with("id", ""),
  };
  for (const auto& bytes : cases) {
    auto r = DecodeJob(bytes);
    EXPECT_TRUE(r.status().IsCorruption()) << bytes << " -> " << r.status().ToString();
  }
}

TEST(StorageRecords, GarbageTaskAndEventValuesAreCorruption) {
  TaskRecord t;
  t.job_id = "j";
  auto j = nlohmann::json::parse(EncodeTask(t));
  ASSERT_TRUE(DecodeTask(j.dump()).ok());
  j["stage"] = 100;
  EXPECT_TRUE(DecodeTask(j.dump()).status().IsCorruption());
  j["stage"] = -1;
  EXPECT_TRUE(DecodeTask(j.dump()).status().IsCorruption());
  j["stage"] = 3;
  j["attempts"] = -2;
  EXPECT_TRUE(DecodeTask(j.dump()).status().IsCorruption());
  EXPECT_TRUE(DecodeEvent("{}").status().IsCorruption());
  EXPECT_TRUE(DecodeEvent("{\"v\":1,\"seq\":\"x\"}").status().IsCorruption());
}

TEST(StorageRecords, EncodeDoesNotThrowOnInvalidUtf8) {
  JobRecord job;
  job.id = "j-1";
  job.error = std::string("bad \xff\xfe utf8");
  std::string bytes;
  ASSERT_NO_THROW(bytes = EncodeJob(job));
  auto back = DecodeJob(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, "j-1");
}

// RFC 3720 B.4 check value and an all-zero vector.
TEST(StorageRecords, Crc32cKnownVectors) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  // Incremental == one shot (exercises the 8-byte and tail paths).
  std::string s = "The quick brown fox jumps over the lazy dog, twice over.";
  EXPECT_EQ(Crc32c(s.data() + 13, s.size() - 13, Crc32c(s.data(), 13)), Crc32c(s.data(), s.size()));
}

}  // namespace
}  // namespace vidfarm::storage
