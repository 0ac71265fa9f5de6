#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "vidfarm/common/crc32.h"
#include "vidfarm/common/wire.h"

namespace vidfarm::wire {
namespace {

TEST(Wire, EncodeDecodeRoundTrip) {
  Message m;
  m.command = Command::kReady;
  m.header = {{"stage", 3}, {"preset", "tiny"}, {"max_batch", 2}};
  m.payload = {std::string("\0\1\2", 3), "xyz"};
  auto frames = Encode(m);
  ASSERT_EQ(frames.size(), 5u);
  EXPECT_EQ(frames[0], "VF1");
  EXPECT_EQ(frames[1], "READY");
  auto d = Decode(frames);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->command, Command::kReady);
  EXPECT_EQ(d->header["stage"], 3);
  EXPECT_EQ(d->payload, m.payload);
  EXPECT_EQ(*GetInt(*d, "stage"), 3);
  EXPECT_EQ(*GetString(*d, "preset"), "tiny");
  EXPECT_FALSE(GetInt(*d, "preset").ok());
  EXPECT_NE(GetInt(*d, "missing").status().message().find("'missing'"), std::string::npos);
}

TEST(Wire, BooleansAreReadStrictlyAndFlagsOnlyWhenTrue) {
  Message m;
  m.command = Command::kFail;
  m.header = {{"yes", true}, {"no", false}, {"one", 1}, {"text", "true"}};
  EXPECT_TRUE(*GetBool(m, "yes"));
  EXPECT_FALSE(*GetBool(m, "no"));
  for (const char* f : {"one", "text", "missing"}) {
    auto b = GetBool(m, f);
    ASSERT_FALSE(b.ok()) << f;
    EXPECT_EQ(b.status().message(), std::string("FAIL: field '") + f + "' must be true or false");
  }
  EXPECT_TRUE(FlagSet(m, "yes"));
  for (const char* f : {"no", "one", "text", "missing"}) EXPECT_FALSE(FlagSet(m, f)) << f;
}

TEST(Wire, EveryCommandNameRoundTrips) {
  for (int c = 0; c <= static_cast<int>(Command::kEvent); ++c) {
    auto cmd = static_cast<Command>(c);
    auto parsed = ParseCommand(CommandName(cmd));
    ASSERT_TRUE(parsed.ok()) << CommandName(cmd);
    EXPECT_EQ(*parsed, cmd);
  }
  EXPECT_FALSE(ParseCommand("BOGUS").ok());
}

TEST(Wire, RejectsMalformedFrames) {
  EXPECT_FALSE(Decode({}).ok());
  EXPECT_FALSE(Decode({"VF1", "READY"}).ok());
  auto v2 = Decode({"VF2", "READY", "{}"});
  ASSERT_FALSE(v2.ok());
  EXPECT_EQ(v2.status().code(), Status::Code::kNotSupported);
  EXPECT_FALSE(Decode({"garbage", "READY", "{}"}).ok());
  EXPECT_FALSE(Decode({"VF1", "NOPE", "{}"}).ok());
  EXPECT_FALSE(Decode({"VF1", "READY", "{not json"}).ok());
  EXPECT_FALSE(Decode({"VF1", "READY", "[1,2]"}).ok());
  DecodeLimits small;
  small.max_header_bytes = 8;
  EXPECT_FALSE(Decode({"VF1", "READY", R"({"a":"0123456789"})"}, small).ok());
  small = {};
  small.max_payload_frames = 1;
  EXPECT_FALSE(Decode({"VF1", "PUT", "{}", "a", "b"}, small).ok());
  small = {};
  small.max_payload_bytes = 2;
  EXPECT_FALSE(Decode({"VF1", "PUT", "{}", "abc"}, small).ok());
}

TEST(Wire, DecodeFromAnRvalueTakesThePayloadOnlyWhenTheMessageIsValid) {
  const std::string video(20000, 'v');  // longer than any small-string buffer
  std::vector<std::string> frames = {"VF1", "RESULT", R"({"lease":"L1","inline":true})", video};
  const char* bytes = frames[3].data();
  auto m = Decode(std::move(frames));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->payload.size(), 1u);
  EXPECT_EQ(m->payload[0], video);
  EXPECT_EQ(m->payload[0].data(), bytes);  // moved, not copied

  // An invalid message leaves every frame where it was: the caller still reads the header to
  // echo a request id in its error reply.
  std::vector<std::string> bad = {"VF1", "RESULT", R"({"rid":"r7"})", video};
  DecodeLimits small;
  small.max_payload_bytes = 100;
  auto refused = Decode(std::move(bad), small);
  ASSERT_FALSE(refused.ok());
  ASSERT_EQ(bad.size(), 4u);
  EXPECT_EQ(bad[2], R"({"rid":"r7"})");
  EXPECT_EQ(bad[3], video);
}

TEST(Wire, ThousandsOfCorruptedFramesNeverCrash) {
  Message m;
  m.command = Command::kResult;
  m.header = {{"lease", "l-1"}, {"uploads", {"u1", "u2"}}};
  m.payload = {"payload"};
  const auto good = Encode(m);
  std::mt19937 rng(42);
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) {
    auto frames = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      auto& f = frames[rng() % frames.size()];
      switch (rng() % 4) {
        case 0:
          if (!f.empty()) f[rng() % f.size()] = static_cast<char>(rng());
          break;
        case 1: f.resize(rng() % (f.size() + 1)); break;
        case 2: f.insert(f.begin() + (f.empty() ? 0 : rng() % f.size()), static_cast<char>(rng())); break;
        case 3: frames.resize(rng() % (frames.size() + 1)); break;
      }
      if (frames.empty()) break;
    }
    auto d = Decode(frames);
    accepted += d.ok();
  }
  EXPECT_LT(accepted, 5000);  // most corruptions are caught; none crash
}

TEST(Wire, VideoCodecIsLosslessAndChecksummed) {
  Video v(3, 4, 6, 10, 12.0);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = std::sin(0.37f * static_cast<float>(i));
  std::string bytes = EncodeVideo(v);
  auto back = DecodeVideo(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->data, v.data);
  EXPECT_EQ(back->frames, 4);
  EXPECT_DOUBLE_EQ(back->fps, 12.0);
  std::string flipped = bytes;
  flipped[bytes.size() - 3] ^= 0x10;
  EXPECT_EQ(DecodeVideo(flipped).status().code(), Status::Code::kCorruption);
  EXPECT_FALSE(DecodeVideo(bytes.substr(0, bytes.size() - 4)).ok());
  EXPECT_FALSE(DecodeVideo("VFV1").ok());
  EXPECT_FALSE(DecodeVideo("").ok());
  std::string huge = bytes;
  huge[4] = '\xff';
  huge[5] = '\xff';
  EXPECT_FALSE(DecodeVideo(huge).ok());

  // New payloads are VFV2 (CRC-32C); VFV1 payloads of older databases (CRC-32) still decode, and
  // a checksum of the other kind is caught.
  ASSERT_EQ(bytes.substr(0, 4), "VFV2");
  const char* samples = bytes.data() + 32;
  const size_t n = bytes.size() - 32;
  uint32_t crc = 0;
  std::memcpy(&crc, bytes.data() + 28, 4);
  EXPECT_EQ(crc, Crc32c(samples, n));
  std::string v1 = bytes;
  v1.replace(0, 4, "VFV1");
  EXPECT_EQ(DecodeVideo(v1).status().code(), Status::Code::kCorruption);  // CRC-32C under VFV1
  const uint32_t ieee = Crc32(samples, n);
  std::memcpy(v1.data() + 28, &ieee, 4);
  auto old = DecodeVideo(v1);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->data, v.data);
}

// A payload whose checksum is right but which holds an infinity or a NaN is refused, wherever
// the sample sits (first, inside a later block of the check, last), in f16 and f32 payloads.
TEST(Wire, VideoWithANonFiniteSampleIsRefused) {
  Video v(3, 8, 24, 40, 12.0);  // 23040 samples: several blocks
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = 0.25f;
  const std::string halves = EncodeVideo(v);
  ASSERT_EQ(halves.substr(0, 4), "VFH2");
  v.data[1] = 0.1f;  // not a half: f32
  const std::string floats = EncodeVideo(v);
  ASSERT_EQ(floats.substr(0, 4), "VFV2");
  ASSERT_TRUE(VerifyVideo(halves).ok());
  ASSERT_TRUE(VerifyVideo(floats).ok());
  const size_t n = v.data.size();
  for (size_t at : {size_t{0}, size_t{4096 * 3 + 17}, n - 1}) {
    for (uint16_t bits : {uint16_t{0x7c00}, uint16_t{0xfc00}, uint16_t{0x7e01}}) {  // ±inf, NaN
      std::string b = halves;
      std::memcpy(b.data() + 32 + 2 * at, &bits, 2);
      const uint32_t crc = Crc32c(b.data() + 32, b.size() - 32);
      std::memcpy(b.data() + 28, &crc, 4);
      EXPECT_EQ(VerifyVideo(b).status().code(), Status::Code::kCorruption) << at << " " << bits;
    }
    for (float x : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
      std::string b = floats;
      std::memcpy(b.data() + 32 + 4 * at, &x, 4);
      const uint32_t crc = Crc32c(b.data() + 32, b.size() - 32);
      std::memcpy(b.data() + 28, &crc, 4);
      EXPECT_EQ(VerifyVideo(b).status().code(), Status::Code::kCorruption) << at << " " << x;
    }
  }
}

// Every finite binary16 value, worked out here with ldexp: such a video travels as VFH2 (2 bytes a
// sample) and decodes to the same floats; one sample that is not a half keeps the whole video f32.
TEST(Wire, VideoCodecSendsExactHalvesAtHalfTheBytes) {
  std::vector<float> halves;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) continue;  // inf and nan: a Video holds neither
    const double mag = exp == 0 ? std::ldexp(man, -24) : std::ldexp(1024 + man, int(exp) - 25);
    halves.push_back(static_cast<float>((h & 0x8000) ? -mag : mag));
  }
  ASSERT_EQ(halves.size(), 2u * 31 * 1024);
  Video v(1, 1, 62, 1024, 24.0);
  v.data = halves;
  const std::string bytes = EncodeVideo(v);
  EXPECT_EQ(bytes.substr(0, 4), "VFH2");
  EXPECT_EQ(bytes.size(), 32 + 2 * halves.size());
  auto back = DecodeVideo(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  for (size_t i = 0; i < halves.size(); ++i) {
    ASSERT_EQ(std::signbit(back->data[i]), std::signbit(halves[i])) << i;
    ASSERT_EQ(back->data[i], halves[i]) << i;
  }
  std::string flipped = bytes;
  flipped[bytes.size() - 1] ^= 0x01;
  EXPECT_EQ(DecodeVideo(flipped).status().code(), Status::Code::kCorruption);
  EXPECT_FALSE(DecodeVideo(bytes.substr(0, bytes.size() - 2)).ok());

  for (float odd : {1.0f + std::ldexp(1.0f, -11), std::ldexp(1.0f, -25), 65536.0f, 1e-30f}) {
    Video w(1, 1, 1, 2, 24.0);
    w.data = {0.5f, odd};
    const std::string b = EncodeVideo(w);
    EXPECT_EQ(b.substr(0, 4), "VFV2") << odd;
    auto d = DecodeVideo(b);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->data, w.data);
  }
  // Asked for float32, a half-exact video stays float32.
  EXPECT_EQ(EncodeVideo(v, VideoSamples::kFloat32).substr(0, 4), "VFV2");
}

}  // namespace
}  // namespace vidfarm::wire
