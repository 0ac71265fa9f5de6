// The per-stage READY queue and its scheduling policy.
//
// Policy (anti-starvation by aging):
//   effective_priority = priority + floor(waited_seconds / aging_seconds)
//   where waited_seconds counts from the job's submission (its created time), so a job that has
//   been in the farm long moves ahead at every stage, and the order is a pure function of
//   (priority, submit time, now). The highest effective priority runs first; ties go to the
//   earlier submission (submit_seq). aging_seconds <= 0 disables aging.
//   Example: with aging 60 s, a priority-0 job that has waited 3 minutes (effective 3) runs before
//   a priority-2 job submitted just now, and ties with a priority-3 one (the older wins).
//
// Cost: entries are grouped by priority level, each level ordered by submit_seq; since within a
// level the earliest submission has waited longest, only each level's head competes, so picking
// the next task is O(number of distinct priorities), not O(queue length).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace vidfarm::coordinator {

class ReadyQueue {
 public:
  struct Entry {
    std::string job_id;
    int priority = 0;
    uint64_t submit_seq = 0;  // unique per job
    int64_t since_us = 0;     // job submission time; must not decrease with submit_seq
    std::string batch_key;    // tasks with equal keys may run in one batch
  };

  explicit ReadyQueue(double aging_seconds = 60) : aging_seconds_(aging_seconds) {}

  // Inserts or replaces the job's entry.
  void Push(const Entry& e);
  // False when the job had no entry.
  bool Remove(const std::string& job_id);
  bool Contains(const std::string& job_id) const { return entries_.count(job_id) != 0; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  int64_t EffectivePriority(const Entry& e, int64_t now_us) const;

  // Removes and returns up to `max` entries that share the best entry's batch_key, in policy
  // order; looks at most `max_scan` entries (the incompatible ones it passes stay queued).
  std::vector<Entry> PopBatch(int64_t now_us, size_t max, size_t max_scan = 256);

  // Everything in policy order at now_us (for tests and status; O(n log n)).
  std::vector<Entry> Ordered(int64_t now_us) const;

 private:
  const Entry* Best(int64_t now_us) const;

  double aging_seconds_;
  std::unordered_map<std::string, Entry> entries_;
  // priority -> (submit_seq, job id), ordered.
  std::map<int, std::set<std::pair<uint64_t, std::string>>> levels_;
};

}  // namespace vidfarm::coordinator
