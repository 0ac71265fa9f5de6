#include <gtest/gtest.h>

#include "vidfarm/common/job_spec.h"

namespace vidfarm {
namespace {

TEST(JobSpec, RoundTripAndFingerprint) {
  auto s = JobSpec::FromJson({{"prompt", "a red circle moving right"},
                              {"seed", 7},
                              {"priority", 5},
                              {"steps", {32, 8, 8, 8, 4, 4, 4}},
                              {"sampler", "ddim"},
                              {"format", "webm"}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->seed, 7u);
  EXPECT_EQ(s->priority, 5);
  EXPECT_EQ(s->steps[0], 32);
  auto back = JobSpec::FromJson(s->ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->Fingerprint(), s->Fingerprint());
  JobSpec other = *s;
  other.seed = 8;
  EXPECT_NE(other.Fingerprint(), s->Fingerprint());
  EXPECT_EQ(s->Fingerprint().size(), 64u);
}

TEST(JobSpec, RejectsBadSpecsWithClearErrors) {
  auto err = [](const nlohmann::json& j) {
    auto r = JobSpec::FromJson(j);
    EXPECT_FALSE(r.ok()) << j.dump();
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(err({{"seed", 1}}).find("prompt is empty"), std::string::npos);
  EXPECT_NE(err({{"prompt", "   "}}).find("prompt is empty"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"preset", "huge"}}).find("huge"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"steps", {1, 2}}}).find("one value per stage"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"sampler", "euler"}}).find("euler"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"seed", -1}}).find("seed"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"priority", 5000}}).find("priority"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"promt", "typo"}}).find("unknown field 'promt'"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"format", "avi"}}).find("avi"), std::string::npos);
  EXPECT_NE(err({{"prompt", 3}}).find("must be a string"), std::string::npos);
  EXPECT_NE(err(nlohmann::json::array()).find("JSON object"), std::string::npos);
  EXPECT_NE(err({{"prompt", std::string(1001, 'a')}}).find("1000"), std::string::npos);
}

}  // namespace
}  // namespace vidfarm
