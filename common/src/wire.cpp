#include "vidfarm/common/wire.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "vidfarm/common/crc32.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// IEEE binary16 <-> binary32. Half to float is exact; float to half rounds to nearest even (only
// used here to find out whether a float is exactly a half, so the rounding never reaches a payload).
float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf, nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;  // ±0
  } else {  // subnormal: man·2^-24, normalised
    int e = -1;
    uint32_t m = man;
    do {
      ++e;
      m <<= 1;
    } while ((m & 0x400u) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((m & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The half whose value is exactly f, if there is one (nan never: its payload need not survive).
std::optional<uint16_t> ExactHalf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const int32_t exp = static_cast<int32_t>((bits >> 23) & 0xffu) - 127;
  const uint32_t man = bits & 0x7fffffu;
  if ((bits & 0x7fffffffu) == 0) return sign;                 // ±0
  if (exp == 128) return man == 0 ? std::optional<uint16_t>(sign | 0x7c00u) : std::nullopt;
  if (exp >= -14 && exp <= 15) {                              // normal half
    if (man & 0x1fffu) return std::nullopt;
    return static_cast<uint16_t>(sign | (exp + 15) << 10 | man >> 13);
  }
  if (exp >= -24 && exp < -14) {                             // subnormal half: (1.man)·2^exp
    const uint32_t full = man | 0x800000u;
    const int shift = 13 + (-14 - exp);                       // bits dropped
    if (full & ((1u << shift) - 1)) return std::nullopt;
    return static_cast<uint16_t>(sign | full >> shift);
  }
  return std::nullopt;
}

bool ExactHalvesPortable(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    auto h = ExactHalf(in[i]);
    if (!h) return false;
    out[i] = *h;
  }
  return true;
}

void HalvesToFloatsPortable(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

#if defined(__x86_64__)
bool CpuHasF16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}

// F16C, eight samples at a time: round to half and back, and compare the bits (not the values:
// -0 and +0, and denormals under DAZ, must not pass for each other).
__attribute__((target("avx,f16c"))) bool ExactHalvesF16c(const float* in, uint16_t* out,
                                                          size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 f = _mm256_loadu_ps(in + i);
    const __m128i h = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT);
    const __m256 back = _mm256_cvtph_ps(h);
    const __m128i lo = _mm_cmpeq_epi32(_mm_castps_si128(_mm256_castps256_ps128(f)),
                                       _mm_castps_si128(_mm256_castps256_ps128(back)));
    const __m128i hi = _mm_cmpeq_epi32(_mm_castps_si128(_mm256_extractf128_ps(f, 1)),
                                       _mm_castps_si128(_mm256_extractf128_ps(back, 1)));
    if (_mm_movemask_epi8(_mm_and_si128(lo, hi)) != 0xffff) return false;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  return ExactHalvesPortable(in + i, out + i, n - i);
}

__attribute__((target("avx,f16c"))) void HalvesToFloatsF16c(const uint16_t* in, float* out,
                                                             size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  HalvesToFloatsPortable(in + i, out + i, n - i);
}
#endif

// Every sample as an exact half, or false when one is not.
bool ToHalves(const std::vector<float>& in, std::vector<uint16_t>* out) {
  out->resize(in.size());
#if defined(__x86_64__)
  if (CpuHasF16c()) return ExactHalvesF16c(in.data(), out->data(), in.size());
#endif
  return ExactHalvesPortable(in.data(), out->data(), in.size());
}

void HalvesToFloats(const char* in, float* out, size_t n) {
  // The payload's halves need not be 2-byte aligned in the message: copy them out first.
  std::vector<uint16_t> h(n);
  std::memcpy(h.data(), in, n * sizeof(uint16_t));
#if defined(__x86_64__)
  if (CpuHasF16c()) return HalvesToFloatsF16c(h.data(), out, n);
#endif
  HalvesToFloatsPortable(h.data(), out, n);
}

// Whether every sample is finite, on the raw little-endian bits.
// Branch-free within blocks of samples, so the compiler vectorizes it (the coordinator checks
// every stored video with it).
template <typename T>
bool AllFiniteAs(const char* data, uint64_t n, T exponent) {
  constexpr uint64_t kBlock = 4096;
  for (uint64_t start = 0; start < n; start += kBlock) {
    const uint64_t end = std::min(n, start + kBlock);
    unsigned bad = 0;
    for (uint64_t i = start; i < end; ++i) {
      T x;
      std::memcpy(&x, data + sizeof(T) * i, sizeof(T));
      bad |= static_cast<unsigned>((x & exponent) == exponent);
    }
    if (bad) return false;
  }
  return true;
}

bool AllFinite(const char* data, uint64_t n, bool half) {
  return half ? AllFiniteAs<uint16_t>(data, n, 0x7c00u)
              : AllFiniteAs<uint32_t>(data, n, 0x7f800000u);
}

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

namespace {

// Every check of Decode, and the command and header; the payload is left to the caller.
Result<Message> DecodeHead(const std::vector<std::string>& frames, const DecodeLimits& limits) {
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
  }
  m.payload.reserve(payloads);
  return m;
}

}  // namespace

Result<Message> Decode(const std::vector<std::string>& frames, const DecodeLimits& limits) {
  VF_ASSIGN_OR_RETURN(Message m, DecodeHead(frames, limits));
  m.payload.assign(frames.begin() + 3, frames.end());
  return m;
}

Result<Message> Decode(std::vector<std::string>&& frames, const DecodeLimits& limits) {
  VF_ASSIGN_OR_RETURN(Message m, DecodeHead(frames, limits));
  for (size_t i = 3; i < frames.size(); ++i) m.payload.push_back(std::move(frames[i]));
  return m;
}

namespace {

// A header field of one JSON type, or "COMMAND: field 'F' must be WHAT".
template <typename T>
Result<T> GetTyped(const Message& m, const char* field,
                   bool (nlohmann::json::*is_type)() const noexcept, const char* what) {
  auto it = m.header.find(field);
  if (it == m.header.end() || !((*it).*is_type)()) {
    return Status::InvalidArgument(
        fmt::format("{}: field '{}' must be {}", CommandName(m.command), field, what));
  }
  return it->get<T>();
}

}  // namespace

Result<int64_t> GetInt(const Message& m, const char* field) {
  return GetTyped<int64_t>(m, field, &nlohmann::json::is_number_integer, "an integer");
}

Result<std::string> GetString(const Message& m, const char* field) {
  return GetTyped<std::string>(m, field, &nlohmann::json::is_string, "a string");
}

Result<double> GetDouble(const Message& m, const char* field) {
  return GetTyped<double>(m, field, &nlohmann::json::is_number, "a number");
}

Result<bool> GetBool(const Message& m, const char* field) {
  return GetTyped<bool>(m, field, &nlohmann::json::is_boolean, "true or false");
}

bool FlagSet(const Message& m, const char* field) {
  auto it = m.header.find(field);
  return it != m.header.end() && it->is_boolean() && it->get<bool>();
}

std::string EncodeVideo(const Video& v, VideoSamples samples) {
  std::vector<uint16_t> halves;
  const bool half = samples == VideoSamples::kHalfWhenExact && ToHalves(v.data, &halves);
  const void* data = half ? static_cast<const void*>(halves.data()) : v.data.data();
  const size_t bytes = v.data.size() * (half ? sizeof(uint16_t) : sizeof(float));
  std::string out;
  out.reserve(kVideoHeaderBytes + bytes);
  out.append(half ? "VFH2" : "VFV2", 4);
  Put<uint32_t>(&out, static_cast<uint32_t>(v.channels));
  Put<uint32_t>(&out, static_cast<uint32_t>(v.frames));
  Put<uint32_t>(&out, static_cast<uint32_t>(v.height));
  Put<uint32_t>(&out, static_cast<uint32_t>(v.width));
  Put<double>(&out, v.fps);
  Put<uint32_t>(&out, Crc32c(data, bytes));
  out.append(static_cast<const char*>(data), bytes);
  return out;
}

Result<Video> VerifyVideo(std::string_view bytes) {
  const std::string_view magic = bytes.substr(0, 4);
  const bool half = magic == "VFH2";
  if (bytes.size() < kVideoHeaderBytes || (magic != "VFV1" && magic != "VFV2" && !half)) {
    return Status::Corruption("video payload: bad magic or truncated header");
  }
  // VFV1 (older databases) carries CRC-32; VFV2 and VFH2 CRC-32C, which the CPU computes in
  // hardware.
  const bool castagnoli = magic != "VFV1";
  const char* p = bytes.data() + 4;
  Video v;
  v.channels = Get<uint32_t>(p);
  v.frames = Get<uint32_t>(p + 4);
  v.height = Get<uint32_t>(p + 8);
  v.width = Get<uint32_t>(p + 12);
  v.fps = Get<double>(p + 16);
  const uint32_t crc = Get<uint32_t>(p + 24);
  const uint64_t n = static_cast<uint64_t>(v.channels) * v.frames * v.height * v.width;
  const size_t sample_bytes = half ? sizeof(uint16_t) : sizeof(float);
  if (n == 0 || n > (uint64_t{1} << 34) || bytes.size() != kVideoHeaderBytes + n * sample_bytes) {
    return Status::Corruption(fmt::format("video payload: {} bytes do not match shape {}",
                                          bytes.size(), v.ShapeString()));
  }
  const char* data = bytes.data() + kVideoHeaderBytes;
  const size_t bytes_n = n * sample_bytes;
  if ((castagnoli ? Crc32c(data, bytes_n) : Crc32(data, bytes_n)) != crc) {
    return Status::Corruption("video payload: checksum mismatch");
  }
  if (v.channels != 1 && v.channels != 3) {
    return Status::Corruption(fmt::format("video payload: {} channels ({})", v.channels,
                                          v.ShapeString()));
  }
  if (!(v.fps > 0.0) || !std::isfinite(v.fps)) {
    return Status::Corruption(fmt::format("video payload: fps {} is not positive", v.fps));
  }
  if (!AllFinite(data, n, half)) {
    return Status::Corruption(fmt::format("video payload: {} holds a non-finite value",
                                          v.ShapeString()));
  }
  return v;
}

Result<Video> DecodeVideo(std::string_view bytes) {
  VF_ASSIGN_OR_RETURN(Video v, VerifyVideo(bytes));
  const char* data = bytes.data() + kVideoHeaderBytes;
  v.data.resize(static_cast<size_t>(v.numel()));
  if (bytes.substr(0, 4) == "VFH2") {
    HalvesToFloats(data, v.data.data(), v.data.size());
  } else {
    std::memcpy(v.data.data(), data, v.data.size() * sizeof(float));
  }
  return v;
}

}  // namespace vidfarm::wire
