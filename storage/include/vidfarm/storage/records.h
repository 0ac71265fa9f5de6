// What the farm stores about jobs, tasks and events, and how each record is encoded (JSON with a
// version field "v"). Decoding validates every field and returns Corruption on anything malformed.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "vidfarm/common/status.h"

namespace vidfarm::storage {

// Version written into every record's "v" field; a record with a larger "v" is refused.
inline constexpr int kRecordVersion = 1;
// Stage indices are stored as two decimal digits in task keys.
inline constexpr int kMaxStages = 100;

enum class JobState { kQueued, kRunning, kPaused, kDone, kFailed, kCancelled };
enum class TaskState { kWaiting, kReady, kLeased, kDone, kFailed, kCancelled };

// "queued", "running", "paused", "done", "failed", "cancelled".
const char* JobStateName(JobState state);
Result<JobState> ParseJobState(const std::string& name);
// "waiting", "ready", "leased", "done", "failed", "cancelled".
const char* TaskStateName(TaskState state);
Result<TaskState> ParseTaskState(const std::string& name);

struct JobRecord {
  std::string id;           // From Store::NewJobId: sorts by submission; no '/'.
  uint64_t submit_seq = 0;  // Monotonically increasing per database.
  // The validated job spec as compact JSON text (nlohmann's dump of an object), opaque to
  // storage: the encoder copies it into the record as it is, so a record written at each of a
  // job's transitions does not serialize the spec again. Empty is written as null.
  std::string spec;
  int priority = 0;         // Higher first.
  JobState state = JobState::kQueued;
  int num_stages = 7;
  int stages_done = 0;
  std::string error;
  int64_t created_us = 0;
  int64_t updated_us = 0;
  int64_t finished_us = 0;
  bool keep_intermediates = false;
  std::string output_blob;  // Key of the final encoded video, when done.
};

struct TaskRecord {
  std::string job_id;
  int stage = 0;  // 0 <= stage < kMaxStages.
  TaskState state = TaskState::kWaiting;
  int priority = 0;         // Copied from the job, for queue order.
  uint64_t submit_seq = 0;  // Copied from the job, for queue order.
  int attempts = 0;         // Leases granted so far.
  std::string lease_id;
  std::string worker_id;
  int64_t lease_expires_us = 0;
  int checkpoint_step = 0;
  std::string checkpoint_blob;  // Last sampler checkpoint (latent), if any.
  int step = 0;                 // Progress: step of steps.
  int steps = 0;
  std::string input_blob;
  std::string output_blob;
  std::string error;
  int64_t updated_us = 0;
};

struct Event {
  uint64_t seq = 0;  // Dense, starting at 1; assigned by Store::Commit.
  int64_t time_us = 0;
  std::string job_id;
  std::string type;
  nlohmann::json data;
};

// Encoders never throw (invalid UTF-8 in strings is replaced, not rejected).
std::string EncodeJob(const JobRecord& job);
// JobRecord::spec's text for a spec: compact JSON, invalid UTF-8 replaced (as the encoders write).
std::string JobSpecText(const nlohmann::json& spec);
std::string EncodeTask(const TaskRecord& task);
std::string EncodeEvent(const Event& event);
// Decoders return Corruption naming the problem; they never throw.
Result<JobRecord> DecodeJob(std::string_view bytes);
Result<TaskRecord> DecodeTask(std::string_view bytes);
Result<Event> DecodeEvent(std::string_view bytes);

}  // namespace vidfarm::storage
