#include "vidfarm/storage/store.h"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <new>
#include <random>

#include "vidfarm/common/crc32.h"
#include "vidfarm/common/hash.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/sha256.h"
#include "vidfarm/common/thread_name.h"

namespace vidfarm::storage {
namespace {

using nlohmann::json;

constexpr const char* kJobsCf = "jobs";
constexpr const char* kTasksCf = "tasks";
constexpr const char* kBlobsCf = "blobs";
constexpr const char* kEventsCf = "events";
constexpr const char* kMetaCf = "meta";
constexpr size_t kJobIdBytes = 19;  // "j-" 12 digits "-" 4 hex digits (NewJobId)
constexpr const char* kSchemaKey = "schema_version";
constexpr const char* kMaxSubmitSeqKey = "max_submit_seq";
// Manifest v2 checks the whole blob with CRC32C; v1 (databases written before) with SHA-256,
// which is still read. CRC32C costs a quarter of SHA-256 here and a single-chunk blob (every tiny
// video) reuses its chunk's CRC, so a stage's RESULT no longer spends a hash on its video.
constexpr int kManifestVersion = 2;
constexpr size_t kChunkHeaderBytes = 4;  // little-endian CRC32C of the chunk bytes

// The one place rocksdb::Status becomes vidfarm::Status.
Status FromRocks(const rocksdb::Status& s, const std::string& context) {
  if (s.ok()) return Status::OK();
  std::string m = fmt::format("{}: {}", context, s.ToString());
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kSpaceLimit) {
    return Status::ResourceExhausted(fmt::format("{}: disk full ({})", context, s.ToString()));
  }
  if (s.IsMemoryLimit()) return Status::ResourceExhausted(std::move(m));
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return Status::NotFound(std::move(m));
    case rocksdb::Status::kCorruption:
      return Status::Corruption(std::move(m));
    case rocksdb::Status::kIOError:
      return Status::IOError(std::move(m));
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
      return Status::Busy(std::move(m));
    case rocksdb::Status::kTimedOut:
      return Status::TimedOut(std::move(m));
    case rocksdb::Status::kInvalidArgument:
      return Status::InvalidArgument(std::move(m));
    case rocksdb::Status::kNotSupported:
      return Status::NotSupported(std::move(m));
    default:
      return Status::Internal(std::move(m));
  }
}

std::string EncodeSeq(uint64_t seq) {
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) k[i] = static_cast<char>(seq >> (56 - 8 * i));
  return k;
}

Result<uint64_t> DecodeSeq(const rocksdb::Slice& k) {
  if (k.size() != 8) return Status::Corruption("events: key is not an 8-byte sequence");
  uint64_t seq = 0;
  for (int i = 0; i < 8; ++i) seq = (seq << 8) | static_cast<uint8_t>(k[i]);
  return seq;
}

// "<job>/<stage, two digits>" (stage < kMaxStages <= 100); built by hand, as it is made for every
// task record written.
std::string TaskKey(const std::string& job_id, int stage) {
  if (stage < 0 || stage > 99) return fmt::format("{}/{:02d}", job_id, stage);
  std::string key;
  key.reserve(job_id.size() + 3);
  key += job_id;
  key += '/';
  key += static_cast<char>('0' + stage / 10);
  key += static_cast<char>('0' + stage % 10);
  return key;
}
std::string ManifestKey(const std::string& key) { return key + "#m"; }
std::string ChunkKey(const std::string& key, uint64_t index) {
  return fmt::format("{}#{:06d}", key, index);
}

Result<uint64_t> ParseDecimal(const std::string& s, const std::string& what) {
  if (s.empty() || s.size() > 20 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Status::Corruption(fmt::format("meta '{}' is not a number: '{}'", what, s));
  }
  return std::stoull(s);
}

struct Manifest {
  uint64_t size = 0;
  uint64_t chunks = 0;
  uint64_t chunk_bytes = 0;
  uint32_t crc32c = 0;  // of the whole blob (v2)
  std::string sha256;   // of the whole blob (v1 manifests only)
};

std::string EncodeManifest(const Manifest& m) {
  json j = {{"v", kManifestVersion},
            {"size", m.size},
            {"chunks", m.chunks},
            {"chunk_bytes", m.chunk_bytes},
            {"crc32c", m.crc32c}};
  return j.dump();
}

Result<Manifest> DecodeManifest(std::string_view bytes, const std::string& key) {
  auto bad = [&](const char* why) {
    return Status::Corruption(fmt::format("blob '{}': bad manifest: {}", key, why));
  };
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto u64 = [&](const char* name, uint64_t* out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_number_unsigned()) return false;
    *out = it->get<uint64_t>();
    return true;
  };
  uint64_t v = 0;
  Manifest m;
  if (!u64("v", &v) || v < 1 || v > kManifestVersion) return bad("unknown version");
  if (!u64("size", &m.size) || !u64("chunks", &m.chunks) || !u64("chunk_bytes", &m.chunk_bytes)) {
    return bad("missing size, chunks or chunk_bytes");
  }
  if (v == 1) {
    auto sha = j.find("sha256");
    if (sha == j.end() || !sha->is_string() || sha->get_ref<const std::string&>().size() != 64) {
      return bad("missing sha256");
    }
    m.sha256 = sha->get<std::string>();
  } else {
    uint64_t crc = 0;
    if (!u64("crc32c", &crc) || crc > UINT32_MAX) return bad("missing crc32c");
    m.crc32c = static_cast<uint32_t>(crc);
  }
  if (m.chunk_bytes == 0 || m.chunks > kMaxBlobChunks) return bad("impossible chunk layout");
  if (m.chunks != (m.size + m.chunk_bytes - 1) / m.chunk_bytes)
    return bad("size and chunks disagree");
  return m;
}

class SystemClockImpl : public Clock {
 public:
  int64_t NowMicros() const override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

Result<uint64_t> FreeBytes(const std::string& path) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) {
    return Status::IOError(fmt::format("statvfs({}): {}", path, std::strerror(errno)));
  }
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

bool ValidJobId(const std::string& id) { return !id.empty() && id.find('/') == std::string::npos; }

}  // namespace

std::shared_ptr<Clock> SystemClock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<SystemClockImpl>();
  return clock;
}

// ---------------------------------------------------------------------------------------------
// WriteTxn

void WriteTxn::Fail(Status st) {
  if (status_.ok()) status_ = std::move(st);
}

bool WriteTxn::empty() const {
  return jobs_.empty() && tasks_.empty() && blobs_.empty() && events_.empty();
}

void WriteTxn::PutJob(const JobRecord& job) {
  if (!ValidJobId(job.id)) {
    return Fail(Status::InvalidArgument(fmt::format("job id '{}' is empty or has a '/'", job.id)));
  }
  jobs_.emplace_back(job.id, EncodeJob(job));
  bytes_ += jobs_.back().first.size() + jobs_.back().second.size();
  max_submit_seq_ = std::max(max_submit_seq_, job.submit_seq);
}

void WriteTxn::PutTask(const TaskRecord& task) {
  if (!ValidJobId(task.job_id)) {
    return Fail(Status::InvalidArgument(
        fmt::format("task job id '{}' is empty or has a '/'", task.job_id)));
  }
  if (task.stage < 0 || task.stage >= kMaxStages) {
    return Fail(Status::InvalidArgument(fmt::format("task stage {} of job {} is outside [0, {})",
                                                    task.stage, task.job_id, kMaxStages)));
  }
  tasks_.emplace_back(TaskKey(task.job_id, task.stage), EncodeTask(task));
  bytes_ += tasks_.back().first.size() + tasks_.back().second.size();
}

Status WriteTxn::PutBlob(const std::string& key, std::string_view bytes) {
  if (!status_.ok()) return status_;
  if (key.empty()) {
    Fail(Status::InvalidArgument("blob key is empty"));
    return status_;
  }
  if (bytes.size() > max_blob_bytes_) {
    Fail(Status::InvalidArgument(fmt::format("blob '{}' is {} bytes, over max_blob_bytes ({})", key,
                                             bytes.size(), max_blob_bytes_)));
    return status_;
  }
  if (chunk_bytes_ == 0) {
    Fail(Status::InvalidArgument("blob_chunk_bytes must be positive"));
    return status_;
  }
  Manifest m;
  m.size = bytes.size();
  m.chunk_bytes = chunk_bytes_;
  m.chunks = (m.size + m.chunk_bytes - 1) / m.chunk_bytes;
  if (m.chunks > kMaxBlobChunks) {
    Fail(Status::InvalidArgument(
        fmt::format("blob '{}' needs {} chunks, over {}; raise blob_chunk_bytes", key, m.chunks,
                    kMaxBlobChunks)));
    return status_;
  }
  try {
    BlobOp op;
    op.key = key;
    op.size = m.size;
    op.chunks.reserve(m.chunks);
    for (uint64_t i = 0; i < m.chunks; ++i) {
      std::string_view piece = bytes.substr(i * m.chunk_bytes, m.chunk_bytes);
      uint32_t crc = Crc32c(piece.data(), piece.size());
      m.crc32c = i == 0 ? crc : Crc32c(piece.data(), piece.size(), m.crc32c);
      std::string v;
      v.reserve(kChunkHeaderBytes + piece.size());
      for (size_t b = 0; b < kChunkHeaderBytes; ++b) v.push_back(static_cast<char>(crc >> (8 * b)));
      v.append(piece);
      op.chunks.push_back(std::move(v));
    }
    op.manifest = EncodeManifest(m);
    bytes_ += op.manifest.size() + m.size + m.chunks * (kChunkHeaderBytes + key.size() + 8);
    blobs_.push_back(std::move(op));
  } catch (const std::bad_alloc&) {
    Fail(Status::ResourceExhausted(fmt::format("out of memory staging blob '{}'", key)));
  }
  return status_;
}

void WriteTxn::DeleteBlob(const std::string& key) {
  if (key.empty()) return Fail(Status::InvalidArgument("blob key is empty"));
  BlobOp op;
  op.key = key;
  op.is_delete = true;
  bytes_ += key.size();
  blobs_.push_back(std::move(op));
}

size_t WriteTxn::ByteSize() const { return bytes_; }

void WriteTxn::AppendEvent(std::string job_id, std::string type, nlohmann::json data) {
  bytes_ += job_id.size() + type.size() + 64;  // the data's size is known once encoded
  events_.push_back({std::move(job_id), std::move(type), std::move(data)});
}

// ---------------------------------------------------------------------------------------------
// Store

struct Store::Rocks {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // every open CF, ours and unknown ones
  rocksdb::ColumnFamilyHandle* jobs = nullptr;
  rocksdb::ColumnFamilyHandle* tasks = nullptr;
  rocksdb::ColumnFamilyHandle* blobs = nullptr;
  rocksdb::ColumnFamilyHandle* events = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;

  bool buffer_wal = false;

  ~Rocks() {
    if (!db) return;
    if (buffer_wal) {  // what is committed stays committed across a clean close
      rocksdb::Status f = db->FlushWAL(/*sync=*/false);
      if (!f.ok()) VF_LOG_WARN("storage: writing the log buffer at close: {}", f.ToString());
    }
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    rocksdb::Status s = db->Close();
    if (!s.ok()) VF_LOG_WARN("storage: closing the database: {}", s.ToString());
    delete db;
  }
};

Store::Store(StoreOptions options, std::unique_ptr<Rocks> rocks)
    : options_(std::move(options)),
      clock_(options_.clock ? options_.clock : SystemClock()),
      rocks_(std::move(rocks)) {
  rng_state_ = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}() ^
               static_cast<uint64_t>(clock_->NowMicros());
}

Store::~Store() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    writer_stop_ = true;  // the writer empties the queue first
  }
  queue_cv_.notify_all();
  writer_.join();
}

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  namespace fs = std::filesystem;
  if (options.path.empty()) return Status::InvalidArgument("storage: path is empty");
  if (options.blob_chunk_bytes == 0) {
    return Status::InvalidArgument("storage: blob_chunk_bytes must be positive");
  }
  try {
    std::error_code ec;
    bool exists = fs::exists(fs::path(options.path) / "CURRENT", ec);
    if (!exists) {
      if (!options.create_if_missing) {
        return Status::NotFound(fmt::format("storage: no database at {}", options.path));
      }
      fs::create_directories(options.path, ec);
      if (ec) {
        return Status::IOError(fmt::format("storage: creating {}: {}", options.path, ec.message()));
      }
    }

    rocksdb::DBOptions db_opts;
    db_opts.create_if_missing = options.create_if_missing;
    db_opts.create_missing_column_families = true;
    db_opts.keep_log_file_num = 4;
    db_opts.manual_wal_flush = options.buffer_wal;

    rocksdb::ColumnFamilyOptions plain;
    rocksdb::ColumnFamilyOptions blobs = plain;
    blobs.enable_blob_files = true;
    blobs.min_blob_size = options.min_blob_value_bytes;
    blobs.enable_blob_garbage_collection = true;  // reclaim deleted intermediates on compaction

    // Insert hints: the skiplist memtable starts an insert from where the last one with the same
    // prefix went instead of from its head. Job ids and event sequence numbers grow, so new
    // records of those column families append (one hint each: the empty prefix); a job's task
    // records are written together (its seven at submission; stage k done and k + 1 ready), so
    // the tasks' hint is per job id. Only speed depends on this, never what is stored or read.
    rocksdb::ColumnFamilyOptions appended = plain;
    appended.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(0));
    rocksdb::ColumnFamilyOptions tasks = plain;
    tasks.memtable_insert_with_hint_prefix_extractor.reset(
        rocksdb::NewFixedPrefixTransform(kJobIdBytes));
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, plain},
                                                        {kJobsCf, appended},
                                                        {kTasksCf, tasks},
                                                        {kBlobsCf, blobs},
                                                        {kEventsCf, appended},
                                                        {kMetaCf, plain}};
    // A newer build may have added column families; open them too so the schema check can speak.
    if (exists) {
      std::vector<std::string> names;
      rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(db_opts, options.path, &names);
      if (!ls.ok()) return FromRocks(ls, "storage: listing column families of " + options.path);
      for (const auto& n : names) {
        bool known = std::any_of(cfs.begin(), cfs.end(), [&](auto& d) { return d.name == n; });
        if (!known) cfs.emplace_back(n, plain);
      }
    }

    auto rocks = std::make_unique<Rocks>();
    rocks->buffer_wal = options.buffer_wal;
    rocksdb::Status s = rocksdb::DB::Open(db_opts, options.path, cfs, &rocks->handles, &rocks->db);
    if (!s.ok()) return FromRocks(s, "storage: opening " + options.path);
    rocks->jobs = rocks->handles[1];
    rocks->tasks = rocks->handles[2];
    rocks->blobs = rocks->handles[3];
    rocks->events = rocks->handles[4];
    rocks->meta = rocks->handles[5];

    std::unique_ptr<Store> store(new Store(options, std::move(rocks)));
    VF_RETURN_NOT_OK(store->LoadMeta());
    if (options.async_commit) store->writer_ = std::thread([s = store.get()] { s->WriterMain(); });
    VF_LOG_INFO("storage: opened {} (last event {}, next submit seq {})", options.path,
                store->last_event_seq_.load(), store->next_submit_seq_.load());
    return store;
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("storage: opening {}: {}", options.path, e.what()));
  }
}

Status Store::LoadMeta() {
  rocksdb::DB* db = rocks_->db;
  std::string v;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), rocks_->meta, kSchemaKey, &v);
  if (s.IsNotFound()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db->Put(wo, rocks_->meta, kSchemaKey, std::to_string(kSchemaVersion));
    VF_RETURN_NOT_OK(FromRocks(s, "storage: writing schema version"));
  } else {
    VF_RETURN_NOT_OK(FromRocks(s, "storage: reading schema version"));
    VF_ASSIGN_OR_RETURN(uint64_t version, ParseDecimal(v, kSchemaKey));
    if (version > static_cast<uint64_t>(kSchemaVersion)) {
      return Status::NotSupported(fmt::format(
          "storage: database at {} has schema version {}, newer than this build supports ({}); "
          "open it with a newer vidfarm",
          options_.path, version, kSchemaVersion));
    }
    if (version < 1) return Status::Corruption(fmt::format("storage: schema version {}", version));
  }

  uint64_t max_seq = 0;
  s = db->Get(rocksdb::ReadOptions(), rocks_->meta, kMaxSubmitSeqKey, &v);
  if (!s.IsNotFound()) {
    VF_RETURN_NOT_OK(FromRocks(s, "storage: reading max_submit_seq"));
    VF_ASSIGN_OR_RETURN(max_seq, ParseDecimal(v, kMaxSubmitSeqKey));
  }
  // Belt and braces: the newest job key also carries the largest submit_seq.
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), rocks_->jobs));
    it->SeekToLast();
    if (it->Valid()) {
      auto job = DecodeJob(std::string_view(it->value().data(), it->value().size()));
      if (job.ok()) max_seq = std::max(max_seq, job->submit_seq);
    }
    VF_RETURN_NOT_OK(FromRocks(it->status(), "storage: reading jobs"));
  }
  persisted_max_submit_seq_ = max_seq;
  next_submit_seq_ = max_seq + 1;

  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), rocks_->events));
  it->SeekToLast();
  if (it->Valid()) {
    VF_ASSIGN_OR_RETURN(uint64_t last, DecodeSeq(it->key()));
    last_event_seq_ = last;
  }
  return FromRocks(it->status(), "storage: reading events");
}

Result<uint64_t> Store::StoredChunkCount(const std::string& key) const {
  std::string v;
  rocksdb::Status s = rocks_->db->Get(rocksdb::ReadOptions(), rocks_->blobs, ManifestKey(key), &v);
  // No manifest, no chunks: Commit writes and deletes a blob's chunks in the batch that writes
  // or deletes its manifest. (A new key, the common case, so no iterator is opened for it.)
  if (s.IsNotFound()) return uint64_t{0};
  VF_RETURN_NOT_OK(FromRocks(s, fmt::format("storage: reading manifest of blob '{}'", key)));
  auto m = DecodeManifest(v, key);
  if (m.ok()) return m->chunks;
  VF_LOG_WARN("storage: {}; scanning for its chunks instead", m.status().message());
  // An unreadable manifest: count its chunks so nothing is left behind.
  uint64_t count = 0;
  std::string lo = ChunkKey(key, 0), hi = ChunkKey(key, kMaxBlobChunks - 1);
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_->db->NewIterator(rocksdb::ReadOptions(), rocks_->blobs));
  for (it->Seek(lo); it->Valid() && it->key().compare(hi) <= 0; it->Next()) {
    std::string k = it->key().ToString();
    if (k.size() != lo.size()) continue;
    count = std::max<uint64_t>(count, std::stoull(k.substr(k.size() - 6)) + 1);
  }
  VF_RETURN_NOT_OK(FromRocks(it->status(), "storage: scanning blob chunks"));
  return count;
}

Status Store::Commit(WriteTxn&& txn, bool sync) {
  if (!txn.status_.ok()) return txn.status_;
  if (txn.empty()) return Status::OK();
  if (writer_.joinable() && !sync) {
    std::unique_lock<std::mutex> lock(queue_mu_);
    const size_t bytes = txn.ByteSize();
    done_cv_.wait(lock, [&] {
      return !writer_status_.ok() || queue_.empty() ||
             queued_bytes_ + bytes <= options_.max_queued_bytes;
    });
    if (!writer_status_.ok()) return writer_status_;
    queued_bytes_ += bytes;
    queue_.push_back(std::move(txn));
    ++queued_;
    queue_cv_.notify_one();
    return Status::OK();
  }
  VF_RETURN_NOT_OK(WaitForWrites());  // a synced commit goes after every queued one
  return Write(txn, sync);
}

void Store::WriterMain() {
  NameThisThread("vf-store-writer");
  std::unique_lock<std::mutex> lock(queue_mu_);
  for (;;) {
    queue_cv_.wait(lock, [&] { return writer_stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything queued is written
    WriteTxn txn = std::move(queue_.front());
    queue_.pop_front();
    const size_t bytes = txn.ByteSize();
    const bool failed = !writer_status_.ok();
    lock.unlock();
    Status st = failed ? Status::OK() : Write(txn, /*sync=*/false);
    txn = WriteTxn();  // free the staged bytes outside the lock
    lock.lock();
    if (!st.ok()) {
      VF_LOG_ERROR(
          "storage: a queued commit failed ({}); every later commit fails until the store is "
          "reopened",
          st.ToString());
      writer_status_ = std::move(st);
    }
    queued_bytes_ -= bytes;
    ++written_;
    done_cv_.notify_all();
  }
}

Status Store::WaitForWrites() const {
  if (!writer_.joinable()) return Status::OK();
  std::unique_lock<std::mutex> lock(queue_mu_);
  const uint64_t target = queued_;
  done_cv_.wait(lock, [&] { return written_ >= target; });
  return writer_status_;
}

uint64_t Store::last_event_seq() const {
  (void)WaitForWrites();
  return last_event_seq_.load();
}

Status Store::Write(WriteTxn& txn, bool sync) {
  try {
    std::lock_guard<std::mutex> lock(commit_mu_);
    rocksdb::WriteBatch batch(txn.ByteSize() + 1024);
    auto put = [&](rocksdb::ColumnFamilyHandle* cf, const std::string& k, const std::string& v) {
      return FromRocks(batch.Put(cf, k, v), "storage: building batch");
    };
    auto del = [&](rocksdb::ColumnFamilyHandle* cf, const std::string& k) {
      return FromRocks(batch.Delete(cf, k), "storage: building batch");
    };
    for (auto& [k, v] : txn.jobs_) VF_RETURN_NOT_OK(put(rocks_->jobs, k, v));
    for (auto& [k, v] : txn.tasks_) VF_RETURN_NOT_OK(put(rocks_->tasks, k, v));

    // Blob ops in order; afterwards drop every chunk index the final state no longer uses
    // (older, longer versions in the database or earlier in this transaction).
    struct Final {
      uint64_t chunks = 0;  // 0 when deleted
      uint64_t max_written = 0;
    };
    std::map<std::string, Final> finals;
    for (auto& op : txn.blobs_) {
      Final& f = finals[op.key];
      if (op.is_delete) {
        VF_RETURN_NOT_OK(del(rocks_->blobs, ManifestKey(op.key)));
        f.chunks = 0;
        continue;
      }
      if (op.size > options_.max_blob_bytes) {
        return Status::InvalidArgument(
            fmt::format("blob '{}' is {} bytes, over max_blob_bytes ({})", op.key, op.size,
                        options_.max_blob_bytes));
      }
      for (uint64_t i = 0; i < op.chunks.size(); ++i) {
        VF_RETURN_NOT_OK(put(rocks_->blobs, ChunkKey(op.key, i), op.chunks[i]));
        std::string().swap(op.chunks[i]);  // the batch holds a copy now
      }
      VF_RETURN_NOT_OK(put(rocks_->blobs, ManifestKey(op.key), op.manifest));
      f.chunks = op.chunks.size();
      f.max_written = std::max<uint64_t>(f.max_written, op.chunks.size());
    }
    for (auto& [key, f] : finals) {
      VF_ASSIGN_OR_RETURN(uint64_t stored, StoredChunkCount(key));
      for (uint64_t i = f.chunks; i < std::max(stored, f.max_written); ++i) {
        VF_RETURN_NOT_OK(del(rocks_->blobs, ChunkKey(key, i)));
      }
    }

    uint64_t seq = last_event_seq_.load();
    int64_t now = clock_->NowMicros();
    for (auto& pe : txn.events_) {
      Event e{++seq, now, std::move(pe.job_id), std::move(pe.type), std::move(pe.data)};
      VF_RETURN_NOT_OK(put(rocks_->events, EncodeSeq(e.seq), EncodeEvent(e)));
    }
    bool bump = txn.max_submit_seq_ > persisted_max_submit_seq_;
    if (bump)
      VF_RETURN_NOT_OK(put(rocks_->meta, kMaxSubmitSeqKey, std::to_string(txn.max_submit_seq_)));

    rocksdb::WriteOptions wo;
    wo.sync = sync;
    Status st = FromRocks(rocks_->db->Write(wo, &batch), "storage: commit");
    if (st.ok() && sync && options_.buffer_wal) {  // the buffer holds earlier unsynced records
      st = FromRocks(rocks_->db->FlushWAL(/*sync=*/true), "storage: commit");
    }
    if (!st.ok()) {
      VF_LOG_ERROR("{}", st.ToString());
      return st;
    }
    last_event_seq_ = seq;
    if (bump) {
      persisted_max_submit_seq_ = txn.max_submit_seq_;
      uint64_t next = next_submit_seq_.load();
      while (next <= txn.max_submit_seq_ &&
             !next_submit_seq_.compare_exchange_weak(next, txn.max_submit_seq_ + 1)) {
      }
    }
    return Status::OK();
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("storage: out of memory building a commit");
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("storage: commit: {}", e.what()));
  }
}

Status Store::Sync() {
  VF_RETURN_NOT_OK(WaitForWrites());
  try {
    Status st = FromRocks(rocks_->db->FlushWAL(/*sync=*/true), "storage: syncing the log");
    if (!st.ok()) VF_LOG_ERROR("{}", st.ToString());
    return st;
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("storage: sync: {}", e.what()));
  }
}

Result<JobRecord> Store::GetJob(const std::string& id) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  std::string v;
  rocksdb::Status s = rocks_->db->Get(rocksdb::ReadOptions(), rocks_->jobs, id, &v);
  if (s.IsNotFound()) return Status::NotFound(fmt::format("job '{}' not found", id));
  VF_RETURN_NOT_OK(FromRocks(s, fmt::format("storage: reading job '{}'", id)));
  auto job = DecodeJob(v);
  if (!job.ok()) return job.status().WithContext(fmt::format("job '{}'", id));
  return job;
}

Result<TaskRecord> Store::GetTask(const std::string& job_id, int stage) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  std::string v, key = TaskKey(job_id, stage);
  rocksdb::Status s = rocks_->db->Get(rocksdb::ReadOptions(), rocks_->tasks, key, &v);
  if (s.IsNotFound()) return Status::NotFound(fmt::format("task '{}' not found", key));
  VF_RETURN_NOT_OK(FromRocks(s, fmt::format("storage: reading task '{}'", key)));
  auto task = DecodeTask(v);
  if (!task.ok()) return task.status().WithContext(fmt::format("task '{}'", key));
  return task;
}

Result<std::vector<TaskRecord>> Store::GetTasks(const std::string& job_id) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  std::vector<TaskRecord> out;
  std::string prefix = job_id + "/";
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_->db->NewIterator(rocksdb::ReadOptions(), rocks_->tasks));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto task = DecodeTask(std::string_view(it->value().data(), it->value().size()));
    if (!task.ok())
      return task.status().WithContext(fmt::format("task '{}'", it->key().ToString()));
    out.push_back(std::move(task).value());
  }
  VF_RETURN_NOT_OK(FromRocks(it->status(), "storage: reading tasks of " + job_id));
  return out;
}

Status Store::ForEachJob(const std::function<bool(const JobRecord&)>& fn) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_->db->NewIterator(rocksdb::ReadOptions(), rocks_->jobs));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto job = DecodeJob(std::string_view(it->value().data(), it->value().size()));
    if (!job.ok()) return job.status().WithContext(fmt::format("job '{}'", it->key().ToString()));
    if (!fn(*job)) return Status::OK();
  }
  return FromRocks(it->status(), "storage: reading jobs");
}

Status Store::ForEachTask(const std::function<bool(const TaskRecord&)>& fn) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_->db->NewIterator(rocksdb::ReadOptions(), rocks_->tasks));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto task = DecodeTask(std::string_view(it->value().data(), it->value().size()));
    if (!task.ok())
      return task.status().WithContext(fmt::format("task '{}'", it->key().ToString()));
    if (!fn(*task)) return Status::OK();
  }
  return FromRocks(it->status(), "storage: reading tasks");
}

Result<std::string> Store::GetBlob(const std::string& key) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  try {
    rocksdb::PinnableSlice v;
    rocksdb::Status s =
        rocks_->db->Get(rocksdb::ReadOptions(), rocks_->blobs, ManifestKey(key), &v);
    if (s.IsNotFound()) return Status::NotFound(fmt::format("blob '{}' not found", key));
    VF_RETURN_NOT_OK(FromRocks(s, fmt::format("storage: reading manifest of blob '{}'", key)));
    VF_ASSIGN_OR_RETURN(Manifest m, DecodeManifest(std::string_view(v.data(), v.size()), key));
    std::string out;
    out.reserve(m.size);
    uint32_t whole = 0;  // CRC32C of the blob so far (v2)
    for (uint64_t i = 0; i < m.chunks; ++i) {
      v.Reset();
      s = rocks_->db->Get(rocksdb::ReadOptions(), rocks_->blobs, ChunkKey(key, i), &v);
      if (s.IsNotFound()) {
        return Status::Corruption(
            fmt::format("blob '{}': chunk {} of {} is missing", key, i, m.chunks));
      }
      VF_RETURN_NOT_OK(FromRocks(s, fmt::format("storage: reading blob '{}' chunk {}", key, i)));
      uint64_t want = std::min<uint64_t>(m.chunk_bytes, m.size - i * m.chunk_bytes);
      if (v.size() != kChunkHeaderBytes + want) {
        return Status::Corruption(fmt::format("blob '{}': chunk {} is {} bytes, expected {}", key,
                                              i, v.size(), kChunkHeaderBytes + want));
      }
      const auto* p = reinterpret_cast<const uint8_t*>(v.data());
      uint32_t stored =
          uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
      uint32_t actual = Crc32c(p + kChunkHeaderBytes, want);
      if (stored != actual) {
        return Status::Corruption(
            fmt::format("blob '{}': chunk {} checksum mismatch (crc32c {:08x}, stored {:08x})", key,
                        i, actual, stored));
      }
      if (m.sha256.empty()) whole = i == 0 ? actual : Crc32c(p + kChunkHeaderBytes, want, whole);
      out.append(v.data() + kChunkHeaderBytes, want);
    }
    if (m.sha256.empty() ? whole != m.crc32c : Sha256Hex(out.data(), out.size()) != m.sha256) {
      return Status::Corruption(
          fmt::format("blob '{}': checksum ({}) of the whole blob does not match", key,
                      m.sha256.empty() ? "crc32c" : "sha256"));
    }
    return out;
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted(fmt::format("storage: out of memory reading blob '{}'", key));
  } catch (const std::length_error&) {
    return Status::Corruption(fmt::format("blob '{}': impossible size in manifest", key));
  }
}

Result<bool> Store::HasBlob(const std::string& key) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  rocksdb::PinnableSlice v;
  rocksdb::Status s = rocks_->db->Get(rocksdb::ReadOptions(), rocks_->blobs, ManifestKey(key), &v);
  if (s.IsNotFound()) return false;
  VF_RETURN_NOT_OK(FromRocks(s, fmt::format("storage: reading manifest of blob '{}'", key)));
  return true;
}

Status Store::ReadEvents(uint64_t after_seq, size_t max, std::vector<Event>* out) const {
  (void)WaitForWrites();  // async_commit: see every commit made before this read
  out->clear();
  if (max == 0 || after_seq == UINT64_MAX) return Status::OK();
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_->db->NewIterator(rocksdb::ReadOptions(), rocks_->events));
  for (it->Seek(EncodeSeq(after_seq + 1)); it->Valid() && out->size() < max; it->Next()) {
    VF_ASSIGN_OR_RETURN(uint64_t seq, DecodeSeq(it->key()));
    auto e = DecodeEvent(std::string_view(it->value().data(), it->value().size()));
    if (!e.ok()) return e.status().WithContext(fmt::format("event {}", seq));
    if (e->seq != seq) {
      return Status::Corruption(fmt::format("event {}: record says seq {}", seq, e->seq));
    }
    out->push_back(std::move(e).value());
  }
  return FromRocks(it->status(), "storage: reading events");
}

uint64_t Store::NextSubmitSeq() { return next_submit_seq_.fetch_add(1); }

std::string Store::NewJobId(uint64_t submit_seq) {
  uint64_t r;
  {
    std::lock_guard<std::mutex> lock(rng_mu_);
    r = SplitMix64(&rng_state_);
  }
  return fmt::format("j-{:012d}-{:04x}", submit_seq, r & 0xffff);
}

Result<Store::DiskUsage> Store::GetDiskUsage() const {
  namespace fs = std::filesystem;
  DiskUsage u;
  std::error_code ec;
  for (fs::directory_iterator it(options_.path, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) {
      uint64_t n = it->file_size(fec);
      if (!fec) u.total_bytes += n;
    }
  }
  if (ec)
    return Status::IOError(fmt::format("storage: listing {}: {}", options_.path, ec.message()));
  for (auto* cf : {rocks_->jobs, rocks_->tasks, rocks_->blobs, rocks_->events, rocks_->meta}) {
    uint64_t v = 0;
    if (rocks_->db->GetIntProperty(cf, "rocksdb.total-sst-files-size", &v)) u.sst_bytes += v;
  }
  uint64_t blob = 0;
  if (rocks_->db->GetIntProperty(rocks_->blobs, "rocksdb.total-blob-file-size", &blob)) {
    u.blob_bytes = blob;
  }
  VF_ASSIGN_OR_RETURN(u.free_bytes, FreeBytes(options_.path));
  return u;
}

Status Store::CheckSpaceForNewJob() const {
  VF_ASSIGN_OR_RETURN(uint64_t free_bytes, FreeBytes(options_.path));
  if (free_bytes < options_.min_free_bytes) {
    return Status::ResourceExhausted(fmt::format(
        "storage: only {} MiB free on {}; new jobs need at least {} MiB (min_free_bytes)",
        free_bytes >> 20, options_.path, options_.min_free_bytes >> 20));
  }
  return Status::OK();
}

Status Store::Flush() {
  VF_RETURN_NOT_OK(WaitForWrites());
  rocksdb::FlushOptions fo;
  fo.wait = true;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs = {rocks_->jobs, rocks_->tasks, rocks_->blobs,
                                                   rocks_->events, rocks_->meta};
  return FromRocks(rocks_->db->Flush(fo, cfs), "storage: flush");
}

}  // namespace vidfarm::storage
