#include <gtest/gtest.h>

#include <limits>
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

// The hand-written encoders must give exactly the bytes of nlohmann's dump of the same object,
// for plain strings and for those that need escaping or replacement.
TEST(StorageRecords, EncodersMatchNlohmannDump) {
  using nlohmann::json;
  auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
  const std::string strings[] = {"",
                                 "plain ascii 123",
                                 "quote \" backslash \\ slash /",
                                 "tab\tnewline\ncr\rbell\x07",
                                 "caf\xc3\xa9 \xe2\x9c\x93",
                                 std::string("bad \xff\xfe utf8"),
                                 std::string("nul\0inside", 10),
                                 "\x7f del",
                                 // longer than any writer's first buffer: it has to grow
                                 std::string(3000, 'q'),
                                 std::string(3000, 'q') + "\"quoted\""};
  int n = 0;
  for (const auto& str : strings) {
    ++n;
    JobRecord job;
    job.id = "j-" + std::to_string(n);
    job.submit_seq = (uint64_t{1} << 63) + n;
    const json spec = {{"prompt", str}, {"seed", n}, {"steps", {1, 2, 3}}};
    job.spec = dump(spec);
    job.priority = -n;
    job.state = static_cast<JobState>(n % 6);
    job.num_stages = 7;
    job.stages_done = n % 7;
    job.error = str;
    job.created_us = -1;
    job.updated_us = int64_t{1} << 50;
    job.finished_us = n;
    job.keep_intermediates = n % 2 == 0;
    job.output_blob = str + "/final.mp4";
    json jj = {{"v", kRecordVersion},
               {"id", job.id},
               {"submit_seq", job.submit_seq},
               {"spec", spec},
               {"priority", job.priority},
               {"state", JobStateName(job.state)},
               {"num_stages", job.num_stages},
               {"stages_done", job.stages_done},
               {"error", job.error},
               {"created_us", job.created_us},
               {"updated_us", job.updated_us},
               {"finished_us", job.finished_us},
               {"keep_intermediates", job.keep_intermediates},
               {"output_blob", job.output_blob}};
    EXPECT_EQ(EncodeJob(job), dump(jj)) << n;

    TaskRecord t;
    t.job_id = job.id;
    t.stage = n % 7;
    t.state = static_cast<TaskState>(n % 6);
    t.priority = n - 4;
    t.submit_seq = job.submit_seq;
    t.attempts = n;
    t.lease_id = "l-" + str;
    t.worker_id = str;
    t.lease_expires_us = std::numeric_limits<int64_t>::min();
    t.checkpoint_step = n * 3;
    t.checkpoint_blob = str;
    t.step = n;
    t.steps = 2 * n;
    t.input_blob = "in/" + str;
    t.output_blob = "out";
    t.error = str;
    t.updated_us = std::numeric_limits<int64_t>::max();
    json tj = {{"v", kRecordVersion},
               {"job_id", t.job_id},
               {"stage", t.stage},
               {"state", TaskStateName(t.state)},
               {"priority", t.priority},
               {"submit_seq", t.submit_seq},
               {"attempts", t.attempts},
               {"lease_id", t.lease_id},
               {"worker_id", t.worker_id},
               {"lease_expires_us", t.lease_expires_us},
               {"checkpoint_step", t.checkpoint_step},
               {"checkpoint_blob", t.checkpoint_blob},
               {"step", t.step},
               {"steps", t.steps},
               {"input_blob", t.input_blob},
               {"output_blob", t.output_blob},
               {"error", t.error},
               {"updated_us", t.updated_us}};
    EXPECT_EQ(EncodeTask(t), dump(tj)) << n;
    auto back = DecodeTask(EncodeTask(t));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->updated_us, t.updated_us);
    EXPECT_EQ(back->lease_expires_us, t.lease_expires_us);

    Event e;
    e.seq = n;
    e.time_us = -n;
    e.job_id = job.id;
    e.type = str;
    e.data = {{"msg", str}, {"n", n}};
    json ej = {{"v", kRecordVersion}, {"seq", e.seq},   {"time_us", e.time_us},
               {"job_id", e.job_id},  {"type", e.type}, {"data", e.data}};
    EXPECT_EQ(EncodeEvent(e), dump(ej)) << n;
  }
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
