// `vidfarm train` and `vidfarm eval` as a user runs them: a training run killed with SIGKILL
// resumes from its last checkpoint, and eval writes its report and figures.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "test_util.h"

namespace {
namespace fs = std::filesystem;
using vidfarm::testing::RunCommand;
using vidfarm::testing::ShellQuote;

const std::string kBin = VF_VIDFARM_BIN;

TEST(CliTrain, KillNineThenResumeLosesNothingBeforeTheCheckpoint) {
  vidfarm::testing::TempDir dir;
  const std::string pkg = dir.path() + "/pkg", ckpt = pkg + ".ckpt";
  const std::string train = kBin + " train --stage 0 --batch 1 --threads 1 --checkpoint-every 2 " +
                            "--log-every 1 --out " + ShellQuote(pkg);
  // Start a long run, wait for its first checkpoint plus a little, then SIGKILL it.
  const std::string script =
      train + " --steps 100000 > " + ShellQuote(dir.path() + "/log1") + " 2>&1 & pid=$!; " +
      "for i in $(seq 1 900); do [ -f " + ShellQuote(ckpt + "/LATEST") +
      " ] && break; sleep 0.1; done; sleep 1; kill -9 $pid; wait $pid; echo status=$?";
  auto killed = RunCommand(script);
  ASSERT_NE(killed.out.find("status=137"), std::string::npos) << killed.out;
  std::ifstream latest(ckpt + "/LATEST");
  std::string name;
  latest >> name;
  ASSERT_EQ(name.rfind("step-", 0), 0u) << name;
  const int saved = std::stoi(name.substr(5));
  ASSERT_GE(saved, 2);
  ASSERT_EQ(saved % 2, 0);

  // Without --resume the checkpoint is protected; with it, training continues from there.
  auto refused = RunCommand(train + " --steps " + std::to_string(saved + 2));
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.out.find("--resume"), std::string::npos) << refused.out;
  auto resumed = RunCommand(train + " --resume --steps " + std::to_string(saved + 2));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("at step " + std::to_string(saved)), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("done: " + std::to_string(saved + 2) + " steps"), std::string::npos)
      << resumed.out;
  // One loss row per step 1..saved+2, none lost and none repeated.
  std::ifstream csv(ckpt + "/loss.csv");
  std::string line;
  std::set<int> steps;
  int rows = 0;
  while (std::getline(csv, line)) {
    if (line.rfind("step,", 0) == 0) continue;
    steps.insert(std::stoi(line.substr(0, line.find(','))));
    ++rows;
  }
  EXPECT_EQ(rows, saved + 2);
  EXPECT_EQ(static_cast<int>(steps.size()), saved + 2);
  EXPECT_TRUE(fs::exists(ckpt + "/loss.png"));
  std::ifstream cfg(pkg + "/config.json");
  auto config = nlohmann::json::parse(cfg);
  EXPECT_EQ(config["provenance"]["steps"], saved + 2);
  EXPECT_EQ(config["stage"], 0);
}

TEST(CliTrain, BadFlagsAreUsageErrors) {
  vidfarm::testing::TempDir dir;
  EXPECT_EQ(RunCommand(kBin + " train --stage 0").code, 2);  // no --out
  auto r = RunCommand(kBin + " train --stage 0 --out " + ShellQuote(dir.path() + "/p") +
                      " --prediction x");
  EXPECT_EQ(r.code, 2) << r.out;
  r = RunCommand(kBin + " train --stage 0 --steps 1 --out " + ShellQuote(dir.path() + "/p") +
                 " --data " + ShellQuote(dir.path() + "/nothing"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("nothing"), std::string::npos) << r.out;
  r = RunCommand(kBin + " train --stage 2 --steps 1 --plain-output --cond-prior-std 0.1 --out " +
                 ShellQuote(dir.path() + "/p2"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--plain-output and --cond-prior-std"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir.path() + "/p2"));
  r = RunCommand(kBin + " train --stage 0 --steps 1 --frame-embedding maybe --out " +
                 ShellQuote(dir.path() + "/p3"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--frame-embedding must be"), std::string::npos) << r.out;
  r = RunCommand(kBin + " train --stage 0 --steps 1 --spacetime-attention yes --out " +
                 ShellQuote(dir.path() + "/p4"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--spacetime-attention must be"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir.path() + "/p4"));
  EXPECT_EQ(RunCommand(kBin + " train --help").code, 0);
}

TEST(CliEval, TwoPromptsWriteTheReportAndFigures) {
  vidfarm::testing::TempDir dir;
  const std::string out = dir.path() + "/eval";
  std::ofstream(dir.path() + "/prompts.txt") << "a red circle moving right\n"
                                             << "# comments and blank lines are skipped\n\n"
                                             << "a yellow letter K rotating on a blue background\n";
  auto r = RunCommand(kBin + " eval --random-weights --prompts " +
                      ShellQuote(dir.path() + "/prompts.txt") +
                      " --steps 1 --fidelity-examples 1 --sweep-samples 1 --sensitivity-examples 2 "
                      "--threads 1 --out " +
                      ShellQuote(out));
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(out + "/report.json");
  auto j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["alignment"]["n"], 2);
  for (const char* k : {"colour", "shape", "motion", "background"}) {
    EXPECT_GE(j["alignment"][k].get<double>(), 0.0);
    EXPECT_LE(j["alignment"][k].get<double>(), 1.0);
  }
  EXPECT_EQ(j["fidelity"].size(), 6u);  // every SR stage
  EXPECT_EQ(j["guidance"].size(), 14u);  // 7 weights x 2 thresholdings
  EXPECT_GT(j["default_render_seconds"].get<double>(), 0.0);
  EXPECT_EQ(j["sensitivity"]["examples"], 2);
  // Part 7: stages 1..6 on each prompt's ground truth at the base's shape. The same scenes at
  // the last stage's shape read back as their prompts (the analyzer's ceiling).
  const auto& tb = j["above_true_base"];
  EXPECT_EQ(tb["n"], 2) << tb.dump();
  EXPECT_EQ(tb["prompts"].size(), 2u);
  for (const char* k : {"colour", "shape", "motion", "background"}) {
    EXPECT_DOUBLE_EQ(tb["truth"][k].get<double>(), 1.0) << k << " " << tb.dump();
    EXPECT_GE(tb["naive"][k].get<double>(), 0.0) << k;
    EXPECT_GE(tb[k].get<double>(), 0.0);
    EXPECT_LE(tb[k].get<double>(), 1.0);
  }
  // The committed training/tiny/ssr2 and ssr2-eps logs (beside models/tiny) feed it.
  const auto& ve = j["v_vs_eps"];
  EXPECT_FALSE(ve.contains("skipped")) << ve.dump();
  EXPECT_FALSE(ve["v"].empty());
  EXPECT_FALSE(ve["eps"].empty());
  EXPECT_TRUE(ve["eps_final_psnr"].is_number());
  EXPECT_TRUE(ve.contains("v_steps_to_reach_eps_final"));
  // The like-for-like v twin (ssr2-v, plain output) against eps; the shipped ssr2 drawn beside.
  EXPECT_NE(ve["v_log"].get<std::string>().find("ssr2-v"), std::string::npos) << ve["v_log"];
  ASSERT_TRUE(ve["v_skip"].is_object()) << ve.dump();
  EXPECT_FALSE(ve["v_skip"]["curve"].empty());
  for (const char* f : {"report.md", "alignment.png", "confusion_colour.png", "fidelity.png",
                        "guidance_alignment.png", "contact_0.png", "contact_1.png", "videos/00.mp4",
                        "true_base_0.png", "true_base_1.png"}) {
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  }
  std::ifstream md(out + "/report.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("## 6. Prompt sensitivity of the base"), std::string::npos);
  EXPECT_NE(text.find("Prior drift: from pure noise"), std::string::npos);
  EXPECT_NE(text.find("## 7. The stages above the base, on a perfect base"), std::string::npos);
  // A prompts file that does not exist is a clear error, and nothing is written.
  r = RunCommand(kBin + " eval --random-weights --prompts /nonexistent/p.txt --out " +
                 ShellQuote(dir.path() + "/e2"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("/nonexistent/p.txt"), std::string::npos) << r.out;
}

}  // namespace

// Part 6 alone on the shipped base: its denoising reads the colour word (its videos have the
// prompt's colour), so the true caption beats another colour on nearly every clip; the report
// has the three scores and the motion's by motion.
TEST(CliEval, SensitivityOnlyScoresTheShippedBase) {
  vidfarm::testing::TempDir dir;
  const std::string out = dir.path() + "/sens";
  auto r =
      RunCommand(kBin + " eval --sensitivity-only --sensitivity-examples 12 --threads 1 --out " +
                 ShellQuote(out));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("prompt sensitivity of the base"), std::string::npos) << r.out;
  std::ifstream in(out + "/report.json");
  auto j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_TRUE(j.contains("sensitivity")) << j.dump();
  EXPECT_FALSE(j.contains("alignment"));
  const auto& s = j["sensitivity"];
  EXPECT_EQ(s["examples"], 12);
  for (const char* k : {"motion_reversed", "colour", "shape"}) {
    EXPECT_GE(s[k]["wins"].get<double>(), 0.0) << k;
    EXPECT_LE(s[k]["wins"].get<double>(), 1.0) << k;
  }
  EXPECT_GE(s["colour"]["wins"].get<double>(), 10.0 / 12) << s.dump();
  EXPECT_EQ(s["motion_reversed"]["by_motion"].size(), 6u) << s.dump();
  // The prior's drift: ground-truth renders move the named way (so the centroid and its sign are
  // right); the base's figure is a finite number of pixels per frame.
  const auto& drift = s["prior_drift"]["by_direction"];
  ASSERT_EQ(drift.size(), 4u) << s.dump();
  for (const auto& [name, d] : drift.items()) {
    EXPECT_GT(d["truth"].get<double>(), 0.3) << name;
    EXPECT_LT(d["truth"].get<double>(), 1.5) << name;
    EXPECT_TRUE(std::isfinite(d["model"].get<double>())) << name;
    EXPECT_LT(std::abs(d["model"].get<double>()), 3.0) << name;
  }
  r = RunCommand(kBin + " eval --sensitivity-only --sensitivity-examples 0 --out " +
                 ShellQuote(dir.path() + "/none"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_FALSE(fs::exists(dir.path() + "/none"));
  r = RunCommand(kBin + " eval --sensitivity-only --true-base-only --out " +
                 ShellQuote(dir.path() + "/none"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("exclude each other"), std::string::npos) << r.out;
  r = RunCommand(kBin + " eval --true-base-only --true-base-samples 0 --out " +
                 ShellQuote(dir.path() + "/none"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_FALSE(fs::exists(dir.path() + "/none"));
}
