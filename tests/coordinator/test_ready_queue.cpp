#include <gtest/gtest.h>

#include "vidfarm/coordinator/ready_queue.h"

namespace vidfarm::coordinator {
namespace {

constexpr int64_t kSec = 1000000;

std::vector<std::string> Ids(const std::vector<ReadyQueue::Entry>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.job_id);
  return out;
}

TEST(ReadyQueue, PriorityThenSubmitOrder) {
  ReadyQueue q(/*aging_seconds=*/0);
  q.Push({"a", 0, 1, 0, "k"});
  q.Push({"b", 5, 2, 0, "k"});
  q.Push({"c", 0, 3, 0, "k"});
  q.Push({"d", 5, 4, 0, "k"});
  q.Push({"e", -3, 5, 0, "k"});
  EXPECT_EQ(Ids(q.Ordered(0)), (std::vector<std::string>{"b", "d", "a", "c", "e"}));
  std::vector<std::string> popped;
  while (!q.empty()) popped.push_back(q.PopBatch(0, 1).at(0).job_id);
  EXPECT_EQ(popped, (std::vector<std::string>{"b", "d", "a", "c", "e"}));
}

TEST(ReadyQueue, AgingPromotesOldJobs) {
  // aging 60 s: +1 per full minute waited since submission.
  ReadyQueue q(60);
  q.Push({"old_low", 0, 1, 0, "k"});            // submitted at t=0
  q.Push({"new_high", 2, 2, 150 * kSec, "k"});  // submitted at t=150 s
  // At t=150 s the old job has waited 2.5 min → effective 0 + 2 = 2; tie with new_high (2),
  // the older submission wins.
  EXPECT_EQ(q.EffectivePriority({"x", 0, 1, 0, ""}, 150 * kSec), 2);
  EXPECT_EQ(q.PopBatch(150 * kSec, 1).at(0).job_id, "old_low");
  q.Push({"old_low", 0, 1, 0, "k"});
  // At t=119 s the old job is only at effective 1 (floor(119/60)); new_high (waited 0) wins... but
  // new_high was submitted at 150 s; use a job submitted at t=100 s instead.
  q.Remove("new_high");
  q.Push({"mid_high", 2, 2, 100 * kSec, "k"});
  EXPECT_EQ(q.PopBatch(119 * kSec, 1).at(0).job_id, "mid_high");
  q.Push({"mid_high", 2, 2, 100 * kSec, "k"});
  // At t=181 s: old_low effective 3, mid_high effective 2 + floor(81/60) = 3 → tie, older wins.
  EXPECT_EQ(q.PopBatch(181 * kSec, 1).at(0).job_id, "old_low");
  // Without aging the high priority job always wins.
  ReadyQueue no_aging(0);
  no_aging.Push({"old_low", 0, 1, 0, "k"});
  no_aging.Push({"new_high", 2, 2, 1000 * kSec, "k"});
  EXPECT_EQ(no_aging.PopBatch(100000 * kSec, 1).at(0).job_id, "new_high");
}

TEST(ReadyQueue, BatchTakesOnlyCompatibleTasks) {
  ReadyQueue q(0);
  q.Push({"a", 0, 1, 0, "x"});
  q.Push({"b", 0, 2, 0, "y"});
  q.Push({"c", 0, 3, 0, "x"});
  q.Push({"d", 0, 4, 0, "x"});
  auto batch = q.PopBatch(0, 2);
  EXPECT_EQ(Ids(batch), (std::vector<std::string>{"a", "c"}));
  EXPECT_TRUE(q.Contains("b"));
  EXPECT_TRUE(q.Contains("d"));
  EXPECT_EQ(Ids(q.PopBatch(0, 8)), (std::vector<std::string>{"b"}));
  EXPECT_EQ(Ids(q.PopBatch(0, 8)), (std::vector<std::string>{"d"}));
  EXPECT_TRUE(q.PopBatch(0, 8).empty());
}

TEST(ReadyQueue, PushReplacesAndRemove) {
  ReadyQueue q(0);
  q.Push({"a", 0, 1, 0, "x"});
  q.Push({"a", 9, 1, 0, "x"});
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.Ordered(0).at(0).priority, 9);
  EXPECT_TRUE(q.Remove("a"));
  EXPECT_FALSE(q.Remove("a"));
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace vidfarm::coordinator
