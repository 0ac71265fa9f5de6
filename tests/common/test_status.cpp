#include <gtest/gtest.h>

#include <string>

#include "vidfarm/common/status.h"

namespace vidfarm {
namespace {

Result<int> ParsePositive(int x) {
  if (x <= 0) return Status::InvalidArgument("must be positive");
  return x;
}

Result<int> Doubled(int x) {
  VF_ASSIGN_OR_RETURN(int v, ParsePositive(x));
  return 2 * v;
}

Status CheckBoth(int a, int b) {
  VF_RETURN_NOT_OK(ParsePositive(a).status());
  VF_RETURN_NOT_OK(ParsePositive(b).status().WithContext("second"));
  return Status::OK();
}

TEST(Status, OkAndCodes) {
  EXPECT_TRUE(Status().ok());
  EXPECT_EQ(Status::OK().ToString(), "OK");
  Status nf = Status::NotFound("no such job");
  EXPECT_FALSE(nf.ok());
  EXPECT_TRUE(nf.IsNotFound());
  EXPECT_EQ(nf.ToString(), "NotFound: no such job");
  EXPECT_EQ(Status::IOError("disk").ToString(), "IOError: disk");
  EXPECT_STREQ(Status::CodeName(Status::Code::kInvalidArgument), "InvalidArgument");
}

TEST(Status, WithContextKeepsCode) {
  Status st = Status::Corruption("bad checksum").WithContext("blob 7");
  EXPECT_TRUE(st.IsCorruption());
  EXPECT_EQ(st.message(), "blob 7: bad checksum");
  EXPECT_TRUE(Status::OK().WithContext("ignored").ok());
}

TEST(Status, MacrosPropagate) {
  Result<int> ok = Doubled(21);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 42);
  Result<int> bad = Doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsInvalidArgument());
  EXPECT_EQ(bad.ValueOr(-7), -7);

  EXPECT_TRUE(CheckBoth(1, 2).ok());
  Status st = CheckBoth(1, 0);
  EXPECT_EQ(st.message(), "second: must be positive");
}

}  // namespace
}  // namespace vidfarm
