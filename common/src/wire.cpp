#include "vidfarm/common/wire.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstring>

#include "vidfarm/common/crc32.h"

namespace vidfarm::wire {
namespace {

struct CommandEntry {
  Command command;
  const char* name;
};

constexpr std::array<CommandEntry, 25> kCommands = {{
    {Command::kReady, "READY"},         {Command::kHeartbeat, "HEARTBEAT"},
    {Command::kProgress, "PROGRESS"},   {Command::kCheckpoint, "CHECKPOINT"},
    {Command::kResult, "RESULT"},       {Command::kFail, "FAIL"},
    {Command::kFetch, "FETCH"},         {Command::kPut, "PUT"},
    {Command::kAssign, "ASSIGN"},       {Command::kCancel, "CANCEL"},
    {Command::kDisconnect, "DISCONNECT"}, {Command::kChunk, "CHUNK"},
    {Command::kPutAck, "PUT_ACK"},      {Command::kError, "ERROR"},
    {Command::kSubmit, "SUBMIT"},       {Command::kStatus, "STATUS"},
    {Command::kList, "LIST"},           {Command::kWatch, "WATCH"},
    {Command::kCancelJob, "CANCEL_JOB"}, {Command::kPause, "PAUSE"},
    {Command::kResume, "RESUME"},       {Command::kRetry, "RETRY"},
    {Command::kWorkers, "WORKERS"},     {Command::kReply, "REPLY"},
    {Command::kEvent, "EVENT"},
}};

template <typename T>
void Put(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // the project targets little-endian hosts (x86-64, aarch64)
  out->append(buf, sizeof(T));
}

template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

constexpr size_t kVideoHeaderBytes = 4 + 4 * 4 + 8 + 4;

}  // namespace

const char* CommandName(Command c) {
  for (const auto& e : kCommands) {
    if (e.command == c) return e.name;
  }
  return "UNKNOWN";
}

Result<Command> ParseCommand(std::string_view name) {
  for (const auto& e : kCommands) {
    if (name == e.name) return e.command;
  }
  std::string shown(name.substr(0, 32));
  for (char& ch : shown) {
    if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7e) ch = '?';
  }
  return Status::InvalidArgument(fmt::format("unknown command '{}'", shown));
}

std::vector<std::string> Encode(const Message& m) {
  std::vector<std::string> frames;
  frames.reserve(3 + m.payload.size());
  frames.emplace_back(kVersion);
  frames.emplace_back(CommandName(m.command));
  frames.push_back(m.header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  for (const auto& p : m.payload) frames.push_back(p);
  return frames;
}

Result<Message> Decode(const std::vector<std::string>& frames, const DecodeLimits& limits) {
  if (frames.size() < 3) {
    return Status::InvalidArgument(
        fmt::format("malformed message: {} frames, need at least 3 (version, command, header)",
                    frames.size()));
  }
  if (frames[0] != kVersion) {
    if (frames[0].size() <= 8 && frames[0].rfind("VF", 0) == 0) {
      return Status::NotSupported(fmt::format("protocol version '{}' is not supported (this is {})",
                                              frames[0], kVersion));
    }
    return Status::InvalidArgument("malformed message: first frame is not a protocol version");
  }
  Message m;
  VF_ASSIGN_OR_RETURN(m.command, ParseCommand(frames[1]));
  if (frames[2].size() > limits.max_header_bytes) {
    return Status::InvalidArgument(fmt::format("{}: header of {} bytes exceeds the limit of {}",
                                               frames[1], frames[2].size(), limits.max_header_bytes));
  }
  m.header = nlohmann::json::parse(frames[2], nullptr, /*allow_exceptions=*/false);
  if (m.header.is_discarded() || !m.header.is_object()) {
    return Status::InvalidArgument(fmt::format("{}: header is not a JSON object", frames[1]));
  }
  const size_t payloads = frames.size() - 3;
  if (payloads > limits.max_payload_frames) {
    return Status::InvalidArgument(fmt::format("{}: {} payload frames exceed the limit of {}",
                                               frames[1], payloads, limits.max_payload_frames));
  }
  for (size_t i = 3; i < frames.size(); ++i) {
    if (frames[i].size() > limits.max_payload_bytes) {
      return Status::InvalidArgument(fmt::format("{}: payload frame of {} bytes exceeds the limit of {}",
                                                 frames[1], frames[i].size(),
                                                 limits.max_payload_bytes));
    }
    m.payload.push_back(frames[i]);
  }
  return m;
}

Result<int64_t> GetInt(const Message& m, const char* field) {
  auto it = m.header.find(field);
  if (it == m.header.end() || !it->is_number_integer()) {
    return Status::InvalidArgument(
        fmt::format("{}: field '{}' must be an integer", CommandName(m.command), field));
  }
  return it->get<int64_t>();
}

Result<std::string> GetString(const Message& m, const char* field) {
  auto it = m.header.find(field);
  if (it == m.header.end() || !it->is_string()) {
    return Status::InvalidArgument(
        fmt::format("{}: field '{}' must be a string", CommandName(m.command), field));
  }
  return it->get<std::string>();
}

Result<double> GetDouble(const Message& m, const char* field) {
  auto it = m.header.find(field);
  if (it == m.header.end() || !it->is_number()) {
    return Status::InvalidArgument(
        fmt::format("{}: field '{}' must be a number", CommandName(m.command), field));
  }
  return it->get<double>();
}

std::string EncodeVideo(const Video& v) {
  std::string out;
  out.reserve(kVideoHeaderBytes + v.data.size() * sizeof(float));
  out.append("VFV2", 4);
  Put<uint32_t>(&out, static_cast<uint32_t>(v.channels));
  Put<uint32_t>(&out, static_cast<uint32_t>(v.frames));
  Put<uint32_t>(&out, static_cast<uint32_t>(v.height));
  Put<uint32_t>(&out, static_cast<uint32_t>(v.width));
  Put<double>(&out, v.fps);
  Put<uint32_t>(&out, Crc32c(v.data.data(), v.data.size() * sizeof(float)));
  out.append(reinterpret_cast<const char*>(v.data.data()), v.data.size() * sizeof(float));
  return out;
}

Result<Video> DecodeVideo(std::string_view bytes) {
  const std::string_view magic = bytes.substr(0, 4);
  if (bytes.size() < kVideoHeaderBytes || (magic != "VFV1" && magic != "VFV2")) {
    return Status::Corruption("video payload: bad magic or truncated header");
  }
  // VFV1 (older databases) carries CRC-32; VFV2 CRC-32C, which the CPU computes in hardware.
  const bool castagnoli = magic == "VFV2";
  const char* p = bytes.data() + 4;
  Video v;
  v.channels = Get<uint32_t>(p);
  v.frames = Get<uint32_t>(p + 4);
  v.height = Get<uint32_t>(p + 8);
  v.width = Get<uint32_t>(p + 12);
  v.fps = Get<double>(p + 16);
  const uint32_t crc = Get<uint32_t>(p + 24);
  const uint64_t n = static_cast<uint64_t>(v.channels) * v.frames * v.height * v.width;
  if (n == 0 || n > (uint64_t{1} << 34) ||
      bytes.size() != kVideoHeaderBytes + n * sizeof(float)) {
    return Status::Corruption(fmt::format("video payload: {} bytes do not match shape {}",
                                          bytes.size(), v.ShapeString()));
  }
  const char* data = bytes.data() + kVideoHeaderBytes;
  const size_t bytes_n = n * sizeof(float);
  if ((castagnoli ? Crc32c(data, bytes_n) : Crc32(data, bytes_n)) != crc) {
    return Status::Corruption("video payload: checksum mismatch");
  }
  v.data.resize(n);
  std::memcpy(v.data.data(), data, n * sizeof(float));
  Status st = v.Validate();
  if (!st.ok()) return Status::Corruption("video payload: " + st.message());
  return v;
}

}  // namespace vidfarm::wire
