#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "vidfarm/common/crc32.h"

namespace vidfarm {
namespace {

TEST(Crc32, KnownVectors) {
  // The "check" values of the CRC catalogue: CRC-32/ISO-HDLC and CRC-32/ISCSI of "123456789".
  EXPECT_EQ(Crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32("", 0), 0u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
}

TEST(Crc32, PiecesChainAndPathsAgree) {
  std::string data(777, '\0');
  uint32_t x = 99;
  for (char& ch : data) ch = static_cast<char>((x = x * 1664525u + 1013904223u) >> 24);
  for (size_t n = 0; n <= data.size(); n += (n < 40 ? 1 : 17)) {
    ASSERT_EQ(Crc32c(data.data(), n), Crc32cPortable(data.data(), n)) << n;
    for (size_t cut : {size_t{0}, n / 3, n}) {
      ASSERT_EQ(Crc32(data.data() + cut, n - cut, Crc32(data.data(), cut)), Crc32(data.data(), n));
      ASSERT_EQ(Crc32c(data.data() + cut, n - cut, Crc32c(data.data(), cut)), Crc32c(data.data(), n));
    }
  }
  std::printf("CRC-32C %s\n", Crc32cHasHardware() ? "uses SSE4.2" : "is portable only");
}

}  // namespace
}  // namespace vidfarm
