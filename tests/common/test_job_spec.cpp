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
  EXPECT_NE(err({{"prompt", "x"}, {"last_stage", 7}}).find("last_stage must be in 0..6"),
            std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"last_stage", -2}}).find("last_stage"), std::string::npos);
  EXPECT_NE(err({{"prompt", "x"}, {"last_stage", "2"}}).find("an integer"), std::string::npos);
}

TEST(JobSpec, LastStageIsStoredOnlyWhenSetAndCountsStages) {
  auto full = JobSpec::FromJson({{"prompt", "a red circle moving right"}});
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->last_stage, -1);
  EXPECT_EQ(full->NumStages(7), 7);
  // A full job's JSON (and so its fingerprint, which finds an interrupted render) has no
  // last_stage: the same as before the field existed.
  EXPECT_FALSE(full->ToJson().contains("last_stage"));
  auto preview = JobSpec::FromJson({{"prompt", "a red circle moving right"}, {"last_stage", 0}});
  ASSERT_TRUE(preview.ok()) << preview.status().ToString();
  EXPECT_EQ(preview->NumStages(7), 1);
  EXPECT_EQ(preview->ToJson().at("last_stage"), 0);
  EXPECT_NE(preview->Fingerprint(), full->Fingerprint());
  auto back = JobSpec::FromJson(preview->ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->last_stage, 0);
  // last_stage 6 of 7 is a full job spelled differently: it stays as given.
  auto six = JobSpec::FromJson({{"prompt", "x"}, {"last_stage", 6}});
  ASSERT_TRUE(six.ok());
  EXPECT_EQ(six->NumStages(7), 7);
}

}  // namespace
}  // namespace vidfarm
