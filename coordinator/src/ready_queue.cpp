#include "vidfarm/coordinator/ready_queue.h"

#include <algorithm>
#include <cmath>

namespace vidfarm::coordinator {

void ReadyQueue::Push(const Entry& e) {
  Remove(e.job_id);
  entries_[e.job_id] = e;
  levels_[e.priority].emplace(e.submit_seq, e.job_id);
}

bool ReadyQueue::Remove(const std::string& job_id) {
  auto it = entries_.find(job_id);
  if (it == entries_.end()) return false;
  auto lv = levels_.find(it->second.priority);
  if (lv != levels_.end()) {
    lv->second.erase({it->second.submit_seq, job_id});
    if (lv->second.empty()) levels_.erase(lv);
  }
  entries_.erase(it);
  return true;
}

int64_t ReadyQueue::EffectivePriority(const Entry& e, int64_t now_us) const {
  if (aging_seconds_ <= 0) return e.priority;
  const double waited_s = std::max<int64_t>(0, now_us - e.since_us) / 1e6;
  return e.priority + static_cast<int64_t>(std::floor(waited_s / aging_seconds_));
}

const ReadyQueue::Entry* ReadyQueue::Best(int64_t now_us) const {
  const Entry* best = nullptr;
  int64_t best_eff = 0;
  for (const auto& [prio, level] : levels_) {
    if (level.empty()) continue;
    const Entry& head = entries_.at(level.begin()->second);
    const int64_t eff = EffectivePriority(head, now_us);
    if (!best || eff > best_eff || (eff == best_eff && head.submit_seq < best->submit_seq)) {
      best = &head;
      best_eff = eff;
    }
  }
  return best;
}

std::vector<ReadyQueue::Entry> ReadyQueue::PopBatch(int64_t now_us, size_t max, size_t max_scan) {
  std::vector<Entry> taken, skipped;
  for (size_t scanned = 0; taken.size() < max && scanned < max_scan; ++scanned) {
    const Entry* best = Best(now_us);
    if (!best) break;
    Entry e = *best;
    Remove(e.job_id);
    if (taken.empty() || e.batch_key == taken.front().batch_key) {
      taken.push_back(std::move(e));
    } else {
      skipped.push_back(std::move(e));
    }
  }
  for (const Entry& e : skipped) Push(e);
  return taken;
}

std::vector<ReadyQueue::Entry> ReadyQueue::Ordered(int64_t now_us) const {
  std::vector<Entry> all;
  all.reserve(entries_.size());
  for (const auto& [id, e] : entries_) all.push_back(e);
  std::sort(all.begin(), all.end(), [&](const Entry& a, const Entry& b) {
    const int64_t ea = EffectivePriority(a, now_us), eb = EffectivePriority(b, now_us);
    return ea != eb ? ea > eb : a.submit_seq < b.submit_seq;
  });
  return all;
}

}  // namespace vidfarm::coordinator
