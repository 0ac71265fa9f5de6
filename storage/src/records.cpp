#include "vidfarm/storage/records.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <string_view>

namespace vidfarm::storage {
namespace {

using nlohmann::json;

constexpr const char* kJobStateNames[] = {"queued", "running", "paused",
                                          "done",   "failed",  "cancelled"};
constexpr const char* kTaskStateNames[] = {"waiting", "ready",  "leased",
                                           "done",    "failed", "cancelled"};

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Appends one JSON object's members, in the order given, with nlohmann's compact formatting.
// Writes through a cursor into a buffer grown ahead (a task record is written about ten times per
// task, so this is on the coordinator's hot path): one bounds check and one memcpy per piece
// instead of std::string's checks for every append.
class ObjectWriter {
 public:
  explicit ObjectWriter(size_t reserve) {
    out_.resize(std::max<size_t>(reserve, 64));
    out_[0] = '{';
    pos_ = 1;
  }
  // std::to_chars: the same digits as fmt's "{}", at a fraction of the cost (a task record has
  // nine integers and is written several times per task).
  void Int(std::string_view key, int64_t v) {
    Key(key);
    Digits(v);
  }
  void UInt(std::string_view key, uint64_t v) {
    Key(key);
    Digits(v);
  }
  void Bool(std::string_view key, bool v) {
    Key(key);
    Put(v ? std::string_view("true") : std::string_view("false"));
  }
  void Str(std::string_view key, std::string_view s) {
    Key(key);
    // Plain printable ASCII needs no escaping; anything else (quotes, backslashes, control
    // characters, UTF-8, invalid bytes) goes through nlohmann so it escapes and replaces alike.
    bool plain = true;
    for (unsigned char c : s) {
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') {
        plain = false;
        break;
      }
    }
    if (plain) {
      char* p = Room(s.size() + 2);
      *p++ = '"';
      std::memcpy(p, s.data(), s.size());
      p[s.size()] = '"';
      pos_ += s.size() + 2;
    } else {
      Put(Dump(json(std::string(s))));
    }
  }
  void Json(std::string_view key, const json& j) {
    Key(key);
    Put(Dump(j));
  }
  // JSON text already encoded (empty: null).
  void Raw(std::string_view key, std::string_view text) {
    Key(key);
    Put(text.empty() ? std::string_view("null") : text);
  }
  std::string Finish() {
    Put("}");
    out_.resize(pos_);
    return std::move(out_);
  }

 private:
  // A pointer to n free bytes at the cursor (the cursor does not move).
  char* Room(size_t n) {
    if (pos_ + n > out_.size()) out_.resize(std::max(out_.size() * 2, pos_ + n));
    return out_.data() + pos_;
  }
  void Put(std::string_view s) {
    std::memcpy(Room(s.size()), s.data(), s.size());
    pos_ += s.size();
  }
  void Key(std::string_view key) {  // ,"key":
    char* p = Room(key.size() + 4);
    char* const begin = p;
    if (pos_ > 1) *p++ = ',';
    *p++ = '"';
    std::memcpy(p, key.data(), key.size());
    p += key.size();
    *p++ = '"';
    *p++ = ':';
    pos_ += static_cast<size_t>(p - begin);
  }
  template <typename T>
  void Digits(T v) {
    char* p = Room(24);
    const auto r = std::to_chars(p, p + 24, v);
    pos_ += static_cast<size_t>(r.ptr - p);
  }
  std::string out_;
  size_t pos_ = 0;
};

// Typed field readers over a parsed object; the first problem is kept in `error`.
class Reader {
 public:
  Reader(const json& j, const char* what) : j_(j), what_(what) {}

  const json* Field(const char* name) {
    auto it = j_.find(name);
    if (it == j_.end()) {
      Fail(fmt::format("missing field '{}'", name));
      return nullptr;
    }
    return &*it;
  }
  void Str(const char* name, std::string* out) {
    const json* f = Field(name);
    if (!f) return;
    if (!f->is_string()) return Fail(fmt::format("field '{}' is not a string", name));
    *out = f->get_ref<const std::string&>();
  }
  void Bool(const char* name, bool* out) {
    const json* f = Field(name);
    if (!f) return;
    if (!f->is_boolean()) return Fail(fmt::format("field '{}' is not a boolean", name));
    *out = f->get<bool>();
  }
  template <typename T>
  void Int(const char* name, T* out, int64_t lo = std::numeric_limits<T>::min(),
           int64_t hi = std::numeric_limits<T>::max()) {
    const json* f = Field(name);
    if (!f) return;
    if (!f->is_number_integer()) return Fail(fmt::format("field '{}' is not an integer", name));
    if constexpr (std::is_unsigned_v<T>) {
      if (f->is_number_unsigned()) {
        *out = static_cast<T>(f->get<uint64_t>());
        return;
      }
      if (f->get<int64_t>() < 0) return Fail(fmt::format("field '{}' is negative", name));
      *out = static_cast<T>(f->get<int64_t>());
    } else {
      if (f->is_number_unsigned() && f->get<uint64_t>() > static_cast<uint64_t>(hi)) {
        return Fail(fmt::format("field '{}' is out of range", name));
      }
      int64_t v = f->get<int64_t>();
      if (v < lo || v > hi) return Fail(fmt::format("field '{}' is out of range", name));
      *out = static_cast<T>(v);
    }
  }
  void Any(const char* name, json* out) {
    const json* f = Field(name);
    if (f) *out = *f;
  }
  void Fail(std::string m) {
    if (error_.empty()) error_ = std::move(m);
  }
  Status status() const {
    return error_.empty() ? Status::OK() : Status::Corruption(fmt::format("{}: {}", what_, error_));
  }

 private:
  const json& j_;
  const char* what_;
  std::string error_;
};

// Parses and checks the envelope (an object with a known "v").
Result<json> ParseRecord(std::string_view bytes, const char* what) {
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corruption(fmt::format("{}: value is not valid JSON", what));
  if (!j.is_object())
    return Status::Corruption(fmt::format("{}: value is not a JSON object", what));
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer()) {
    return Status::Corruption(fmt::format("{}: missing record version", what));
  }
  if (v->get<int64_t>() < 1 || v->get<int64_t>() > kRecordVersion) {
    return Status::Corruption(fmt::format("{}: record version {} is not supported (this build: {})",
                                          what, v->dump(), kRecordVersion));
  }
  return j;
}

template <typename Enum, size_t N>
Result<Enum> ParseName(const std::string& name, const char* const (&names)[N], const char* what) {
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) return static_cast<Enum>(i);
  }
  return Status::InvalidArgument(fmt::format("unknown {} '{}'", what, name));
}

}  // namespace

const char* JobStateName(JobState state) {
  auto i = static_cast<size_t>(state);
  return i < std::size(kJobStateNames) ? kJobStateNames[i] : "unknown";
}
Result<JobState> ParseJobState(const std::string& name) {
  return ParseName<JobState>(name, kJobStateNames, "job state");
}
const char* TaskStateName(TaskState state) {
  auto i = static_cast<size_t>(state);
  return i < std::size(kTaskStateNames) ? kTaskStateNames[i] : "unknown";
}
Result<TaskState> ParseTaskState(const std::string& name) {
  return ParseName<TaskState>(name, kTaskStateNames, "task state");
}

// The encoders write the JSON text by hand: they run about ten times per job on the
// coordinator's loop, and building an nlohmann tree per record cost a third of its time. The
// output is byte for byte what `Dump` of the equivalent object gives (keys in sorted order, as
// nlohmann's std::map orders them), which the tests check; the opaque spec arrives as JSON
// text and is copied in; event data is still dumped by nlohmann.
std::string EncodeJob(const JobRecord& r) {
  ObjectWriter w(256 + r.spec.size() + r.error.size() + r.output_blob.size());
  w.Int("created_us", r.created_us);
  w.Str("error", r.error);
  w.Int("finished_us", r.finished_us);
  w.Str("id", r.id);
  w.Bool("keep_intermediates", r.keep_intermediates);
  w.Int("num_stages", r.num_stages);
  w.Str("output_blob", r.output_blob);
  w.Int("priority", r.priority);
  w.Raw("spec", r.spec);
  w.Int("stages_done", r.stages_done);
  w.Str("state", JobStateName(r.state));
  w.UInt("submit_seq", r.submit_seq);
  w.Int("updated_us", r.updated_us);
  w.Int("v", kRecordVersion);
  return w.Finish();
}

std::string EncodeTask(const TaskRecord& r) {
  ObjectWriter w(384 + r.error.size() + r.checkpoint_blob.size() + r.input_blob.size() +
                 r.output_blob.size());
  w.Int("attempts", r.attempts);
  w.Str("checkpoint_blob", r.checkpoint_blob);
  w.Int("checkpoint_step", r.checkpoint_step);
  w.Str("error", r.error);
  w.Str("input_blob", r.input_blob);
  w.Str("job_id", r.job_id);
  w.Int("lease_expires_us", r.lease_expires_us);
  w.Str("lease_id", r.lease_id);
  w.Str("output_blob", r.output_blob);
  w.Int("priority", r.priority);
  w.Int("stage", r.stage);
  w.Str("state", TaskStateName(r.state));
  w.Int("step", r.step);
  w.Int("steps", r.steps);
  w.UInt("submit_seq", r.submit_seq);
  w.Int("updated_us", r.updated_us);
  w.Int("v", kRecordVersion);
  w.Str("worker_id", r.worker_id);
  return w.Finish();
}

std::string EncodeEvent(const Event& e) {
  ObjectWriter w(128 + e.job_id.size() + e.type.size());
  w.Json("data", e.data);
  w.Str("job_id", e.job_id);
  w.UInt("seq", e.seq);
  w.Int("time_us", e.time_us);
  w.Str("type", e.type);
  w.Int("v", kRecordVersion);
  return w.Finish();
}

std::string JobSpecText(const json& spec) { return Dump(spec); }

Result<JobRecord> DecodeJob(std::string_view bytes) {
  VF_ASSIGN_OR_RETURN(json j, ParseRecord(bytes, "job record"));
  JobRecord r;
  Reader rd(j, "job record");
  std::string state;
  rd.Str("id", &r.id);
  rd.Int("submit_seq", &r.submit_seq);
  json spec;
  rd.Any("spec", &spec);
  rd.Int("priority", &r.priority);
  rd.Str("state", &state);
  rd.Int("num_stages", &r.num_stages, 0, kMaxStages);
  rd.Int("stages_done", &r.stages_done, 0, kMaxStages);
  rd.Str("error", &r.error);
  rd.Int("created_us", &r.created_us);
  rd.Int("updated_us", &r.updated_us);
  rd.Int("finished_us", &r.finished_us);
  rd.Bool("keep_intermediates", &r.keep_intermediates);
  rd.Str("output_blob", &r.output_blob);
  VF_RETURN_NOT_OK(rd.status());
  auto parsed = ParseJobState(state);
  if (!parsed.ok()) return Status::Corruption("job record: " + parsed.status().message());
  r.state = *parsed;
  if (r.id.empty()) return Status::Corruption("job record: empty id");
  r.spec = JobSpecText(spec);
  return r;
}

Result<TaskRecord> DecodeTask(std::string_view bytes) {
  VF_ASSIGN_OR_RETURN(json j, ParseRecord(bytes, "task record"));
  TaskRecord r;
  Reader rd(j, "task record");
  std::string state;
  rd.Str("job_id", &r.job_id);
  rd.Int("stage", &r.stage, 0, kMaxStages - 1);
  rd.Str("state", &state);
  rd.Int("priority", &r.priority);
  rd.Int("submit_seq", &r.submit_seq);
  rd.Int("attempts", &r.attempts, 0);
  rd.Str("lease_id", &r.lease_id);
  rd.Str("worker_id", &r.worker_id);
  rd.Int("lease_expires_us", &r.lease_expires_us);
  rd.Int("checkpoint_step", &r.checkpoint_step, 0);
  rd.Str("checkpoint_blob", &r.checkpoint_blob);
  rd.Int("step", &r.step, 0);
  rd.Int("steps", &r.steps, 0);
  rd.Str("input_blob", &r.input_blob);
  rd.Str("output_blob", &r.output_blob);
  rd.Str("error", &r.error);
  rd.Int("updated_us", &r.updated_us);
  VF_RETURN_NOT_OK(rd.status());
  auto parsed = ParseTaskState(state);
  if (!parsed.ok()) return Status::Corruption("task record: " + parsed.status().message());
  r.state = *parsed;
  if (r.job_id.empty()) return Status::Corruption("task record: empty job_id");
  return r;
}

Result<Event> DecodeEvent(std::string_view bytes) {
  VF_ASSIGN_OR_RETURN(json j, ParseRecord(bytes, "event"));
  Event e;
  Reader rd(j, "event");
  rd.Int("seq", &e.seq);
  rd.Int("time_us", &e.time_us);
  rd.Str("job_id", &e.job_id);
  rd.Str("type", &e.type);
  rd.Any("data", &e.data);
  VF_RETURN_NOT_OK(rd.status());
  return e;
}

}  // namespace vidfarm::storage
