#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "vidfarm/common/sha256.h"

namespace vidfarm {
namespace {

// Known-answer digests from FIPS 180-2 Appendix B and the NIST example values.
constexpr char kEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char k448Bit[] = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr char kMillionA[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
constexpr char k448BitMessage[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

TEST(Sha256, KnownAnswers) {
  EXPECT_EQ(Sha256Hex("", 0), kEmpty);
  EXPECT_EQ(Sha256Hex("abc", 3), kAbc);
  EXPECT_EQ(Sha256Hex(k448BitMessage, sizeof(k448BitMessage) - 1), k448Bit);
  const std::string million(1000000, 'a');
  EXPECT_EQ(Sha256Hex(million.data(), million.size()), kMillionA);
}

// Both code paths give the known answers and agree on every length around block boundaries.
TEST(Sha256, HardwareAndPortablePathsAgree) {
  for (bool portable : {true, false}) {
    Sha256 sha(portable);
    sha.Update(k448BitMessage, sizeof(k448BitMessage) - 1);
    EXPECT_EQ(sha.FinalHex(), k448Bit) << (portable ? "portable" : "default");
  }
  std::string data(1000, '\0');
  uint32_t x = 12345;
  for (char& ch : data) ch = static_cast<char>((x = x * 1103515245u + 12345u) >> 23);
  for (size_t n = 0; n <= data.size(); n += (n < 200 ? 1 : 37)) {
    Sha256 a(true), b(false);
    a.Update(data.data(), n);
    b.Update(data.data(), n);
    ASSERT_EQ(a.FinalHex(), b.FinalHex()) << "length " << n;
  }
  std::printf("SHA-NI %s\n", Sha256::HasHardware() ? "in use" : "not available: portable path only");
}

TEST(Sha256, IncrementalUpdatesMatchOneShot) {
  // Uneven pieces cross the 64-byte block boundary in every possible way.
  const std::string million(1000000, 'a');
  Sha256 sha;
  size_t pos = 0;
  for (size_t piece = 1; pos < million.size(); piece = piece % 131 + 1) {
    size_t n = std::min(piece, million.size() - pos);
    sha.Update(million.data() + pos, n);
    pos += n;
  }
  EXPECT_EQ(sha.FinalHex(), kMillionA);

  // Lengths 55, 56, 63, 64 are the padding edge cases; compare one-byte-at-a-time to one shot.
  for (size_t len : {55, 56, 57, 63, 64, 65, 119, 120}) {
    const std::string msg(len, 'x');
    Sha256 bytewise;
    for (char ch : msg) bytewise.Update(&ch, 1);
    EXPECT_EQ(bytewise.FinalHex(), Sha256Hex(msg.data(), msg.size())) << "len " << len;
  }
}

TEST(Sha256, PaddingBoundaryLengthsDiffer) {
  // A broken length encoding tends to collide messages of different lengths.
  EXPECT_NE(Sha256Hex(std::string(55, 'a').data(), 55), Sha256Hex(std::string(56, 'a').data(), 56));
  EXPECT_NE(Sha256Hex(std::string(64, 'a').data(), 64), Sha256Hex(std::string(63, 'a').data(), 63));
}

TEST(Sha256, FileStreamsInChunks) {
  char dir[] = "/tmp/vf_sha256_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/million_a.bin";
  // Larger than the 1 MiB read chunk so more than one chunk is hashed.
  const std::string content(3 * 1000000, 'a');
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(content.data(), 1, content.size(), f), content.size());
  std::fclose(f);

  Result<std::string> digest = Sha256File(path);
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();
  EXPECT_EQ(*digest, Sha256Hex(content.data(), content.size()));
  EXPECT_NE(*digest, kMillionA);

  const std::string abc_path = std::string(dir) + "/abc.txt";
  f = std::fopen(abc_path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("abc", f);
  std::fclose(f);
  Result<std::string> abc = Sha256File(abc_path);
  ASSERT_TRUE(abc.ok());
  EXPECT_EQ(*abc, kAbc);

  std::remove(path.c_str());
  std::remove(abc_path.c_str());
  rmdir(dir);
}

TEST(Sha256, FileErrors) {
  Result<std::string> missing = Sha256File("/nonexistent/vidfarm/weights.bin");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("/nonexistent/vidfarm/weights.bin"), std::string::npos);

  Result<std::string> dir = Sha256File("/tmp");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), Status::Code::kIOError) << dir.status().ToString();
}

}  // namespace
}  // namespace vidfarm
