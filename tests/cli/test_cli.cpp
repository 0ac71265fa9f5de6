// Runs the real `vidfarm` binary in a subprocess and checks what a user sees: exit codes, error
// messages, and the video files (read back with the real ffprobe).
#include <gtest/gtest.h>

#include "test_util.h"
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {
namespace fs = std::filesystem;

using ProcResult = vidfarm::testing::CommandResult;
using vidfarm::testing::ShellQuote;

std::string Quote(const std::string& s) { return ShellQuote(s); }
ProcResult Exec(const std::string& cmd) { return vidfarm::testing::RunCommand(cmd); }

ProcResult Vidfarm(const std::string& args) { return Exec(std::string(VF_VIDFARM_BIN) + " " + args); }

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vidfarm-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::string dir_;
};

nlohmann::json Probe(const std::string& file) {
  ProcResult r = Exec("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
               "stream=codec_name,width,height,r_frame_rate,nb_read_frames,pix_fmt -of json " +
               Quote(file));
  EXPECT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.contains("streams") || j["streams"].empty()) return {};
  return j["streams"][0];
}

TEST_F(CliTest, HelpListsCommandsAndFlags) {
  ProcResult top = Vidfarm("--help");
  EXPECT_EQ(top.code, 0);
  EXPECT_NE(top.out.find("render"), std::string::npos);
  EXPECT_NE(top.out.find("plan"), std::string::npos);
  ProcResult render = Vidfarm("render --help");
  EXPECT_EQ(render.code, 0);
  for (const char* flag : {"--seed", "--steps", "--sampler", "--guidance", "--keep-intermediates",
                           "--device", "--preset", "VIDFARM_THREADS"}) {
    EXPECT_NE(render.out.find(flag), std::string::npos) << flag;
  }
  EXPECT_EQ(Vidfarm("plan --help").code, 0);
  EXPECT_EQ(Vidfarm("bench --help").code, 0);
}

// The dispatch benchmark end to end on a small run (its figures are for people; here only that
// every round completes and is reported).
TEST_F(CliTest, BenchDispatchRunsEveryRoundAndReportsTheirMedian) {
  ProcResult r = Vidfarm("bench dispatch --tasks 40 --batch 16 --rounds 2 --workers 2 "
                         "--latency-tasks 5 --rate 500");
  ASSERT_EQ(r.code, 0) << r.out;
  size_t rounds = 0;
  for (size_t at = r.out.find("throughput   40 tasks in"); at != std::string::npos;
       at = r.out.find("throughput   40 tasks in", at + 1)) {
    ++rounds;
  }
  EXPECT_EQ(rounds, 2u) << r.out;
  EXPECT_NE(r.out.find("rounds       2 throughput runs: median"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("latency      SUBMIT sent -> ASSIGN received, 5 tasks"), std::string::npos)
      << r.out;
  EXPECT_EQ(Vidfarm("bench dispatch --rounds 0").code, 2);
}

TEST_F(CliTest, BadInputGivesClearErrorsAndWritesNothing) {
  ProcResult r = Vidfarm("render");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("missing PROMPT"), std::string::npos) << r.out;
  r = Vidfarm("render 'a red circle' --bogus 3");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("unknown flag --bogus"), std::string::npos) << r.out;
  r = Vidfarm("render 'a red circle' --preset huge -o " + Quote(Path("x.mp4")));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("huge"), std::string::npos) << r.out;
  r = Vidfarm("render 'a red circle' -o " + Quote(Path("x.avi3")));
  EXPECT_EQ(r.code, 2);
  r = Vidfarm("render 'a red circle' --steps 1,2 -o " + Quote(Path("x.mp4")));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("one per stage"), std::string::npos) << r.out;
  r = Vidfarm("render 'a red circle' --seed -4 -o " + Quote(Path("x.mp4")));
  EXPECT_NE(r.code, 0);
  r = Vidfarm("render 'a red circle' --device cuda:3 -o " + Quote(Path("x.mp4")));
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(fs::is_empty(dir_)) << "a failed command left files behind";
  r = Vidfarm("render 'a red circle' --last-stage 7 -o " + Quote(Path("x.mp4")));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("last_stage must be in 0..6"), std::string::npos) << r.out;
  r = Vidfarm("frobnicate");
  EXPECT_EQ(r.code, 2);
  // An output folder that cannot be made fails before anything renders.
  std::ofstream(Path("plain")) << "a file, not a folder";
  r = Vidfarm("render 'a red circle' --random-weights --db " + Quote(Path("db")) + " -o " +
              Quote(Path("plain/x.mp4")));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("plain/x.mp4"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(Path("db"))) << "it rendered before failing";
}

TEST_F(CliTest, RenderWritesTheFinalVideoAndIntermediates) {
  const std::string out = Path("new/folder/out.mp4");  // folders that do not exist yet
  const std::string keep = Path("stages");
  ProcResult r = Vidfarm("render 'a red circle moving right' --random-weights --steps 1 --seed 3 -o " +
                  Quote(out) + " --keep-intermediates " + Quote(keep) + " --profile --db " +
                  Quote(Path("db")));
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json s = Probe(out);
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s["codec_name"], "h264");
  EXPECT_EQ(s["pix_fmt"], "yuv420p");
  EXPECT_EQ(s["nb_read_frames"], "64");
  EXPECT_EQ(s["width"], 160);
  EXPECT_EQ(s["height"], 96);
  EXPECT_EQ(s["r_frame_rate"], "24/1");
  int stages = 0;
  for (const auto& e : fs::directory_iterator(keep)) stages += e.path().extension() == ".mp4";
  EXPECT_EQ(stages, 7);
  nlohmann::json base = Probe((fs::path(keep) / "stage0_base.mp4").string());
  ASSERT_FALSE(base.empty());
  EXPECT_EQ(base["nb_read_frames"], "8");
  EXPECT_EQ(base["r_frame_rate"], "3/1");
  EXPECT_NE(r.out.find("total"), std::string::npos) << "--profile prints a per-stage table";
  EXPECT_NE(r.out.find("done"), std::string::npos) << "progress lines";
}

TEST_F(CliTest, SameSeedSameVideoOtherSeedOtherVideo) {
  auto md5 = [&](const std::string& file) {
    return Exec("ffmpeg -v error -i " + Quote(file) + " -f framemd5 -").out;
  };
  const std::string common = " --random-weights --steps 2 --direct --last-stage 1 ";
  ASSERT_EQ(Vidfarm("render 'a blue star rotating' -q --seed 9" + common + "-o " + Quote(Path("a.mp4"))).code, 0);
  ASSERT_EQ(Vidfarm("render 'a blue star rotating' -q --seed 9" + common + "-o " + Quote(Path("b.mp4"))).code, 0);
  ASSERT_EQ(Vidfarm("render 'a blue star rotating' -q --seed 10" + common + "-o " + Quote(Path("c.mp4"))).code, 0);
  EXPECT_EQ(md5(Path("a.mp4")), md5(Path("b.mp4")));
  EXPECT_NE(md5(Path("a.mp4")), md5(Path("c.mp4")));
}

TEST_F(CliTest, EmbeddedDirectAndRepeatedRendersGiveTheSameFrames) {
  auto md5 = [&](const std::string& file) {
    return Exec("ffmpeg -v error -i " + Quote(file) + " -f framemd5 - | grep -v '^#'").out;
  };
  const std::string args = "render 'a white star growing' -q --random-weights --steps 1 --seed 4 ";
  ASSERT_EQ(Vidfarm(args + "--direct -o " + Quote(Path("direct.mp4"))).code, 0);
  ProcResult farm = Vidfarm(args + "--db " + Quote(Path("db")) + " -o " + Quote(Path("farm.mp4")));
  ASSERT_EQ(farm.code, 0) << farm.out;
  EXPECT_EQ(md5(Path("direct.mp4")), md5(Path("farm.mp4")));
  // The same render again is found in the database and not computed twice.
  ProcResult again = Vidfarm("render 'a white star growing' --random-weights --steps 1 --seed 4 --db " +
                             Quote(Path("db")) + " -o " + Quote(Path("again.mp4")));
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("reusing"), std::string::npos) << again.out;
  EXPECT_EQ(md5(Path("farm.mp4")), md5(Path("again.mp4")));
  // A preview that stops after stage 2 runs through the farm too, and matches the direct path.
  ASSERT_EQ(Vidfarm(args + "--last-stage 2 --direct -o " + Quote(Path("direct1.mp4"))).code, 0);
  ProcResult preview = Vidfarm(args + "--last-stage 2 --db " + Quote(Path("db")) + " -o " +
                               Quote(Path("farm1.mp4")));
  ASSERT_EQ(preview.code, 0) << preview.out;
  EXPECT_EQ(md5(Path("direct1.mp4")), md5(Path("farm1.mp4")));
  EXPECT_NE(md5(Path("farm1.mp4")), md5(Path("farm.mp4")));
  EXPECT_EQ(Probe(Path("farm1.mp4"))["width"], 40) << "stage 2 (ssr2) is 16x24x40";
}

TEST_F(CliTest, PngFramesAndScaleComeFromTheLastStagesRawVideo) {
  const std::string frames = Path("frames") + "/";
  ProcResult r = Vidfarm("render 'a green circle' -q --random-weights --steps 1 --scale 2 --db " +
                         Quote(Path("db")) + " -o " + Quote(frames));
  ASSERT_EQ(r.code, 0) << r.out;
  int pngs = 0;
  for (const auto& e : fs::directory_iterator(frames)) pngs += e.path().extension() == ".png";
  EXPECT_EQ(pngs, 64);
  nlohmann::json s = Probe((fs::path(frames) / "frame_00000.png").string());
  EXPECT_EQ(s["width"], 320);
  EXPECT_EQ(s["height"], 192);
  EXPECT_EQ(r.out.find("RANDOM WEIGHTS"), std::string::npos) << "asked for: no warning\n" << r.out;
}

TEST_F(CliTest, EnvironmentSetsFlags) {
  ProcResult r = Exec("VIDFARM_STEPS=1,2 " + std::string(VF_VIDFARM_BIN) + " render 'a red circle' -o " +
               Quote(Path("x.mp4")));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("VIDFARM_STEPS"), std::string::npos) << r.out;
}

TEST_F(CliTest, PlanPaperMatchesTheCascadeTable) {
  ProcResult r = Vidfarm("plan --preset paper --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["stages"].size(), 7u);
  const int64_t expect[7][4] = {{16, 24, 40, 3},    {32, 24, 40, 6},    {32, 48, 80, 6},
                                {32, 192, 320, 6},  {64, 192, 320, 12}, {128, 192, 320, 24},
                                {128, 768, 1280, 24}};
  for (int k = 0; k < 7; ++k) {
    const auto& s = j["stages"][k];
    EXPECT_EQ(s["frames"], expect[k][0]) << k;
    EXPECT_EQ(s["height"], expect[k][1]) << k;
    EXPECT_EQ(s["width"], expect[k][2]) << k;
    EXPECT_EQ(s["fps"].get<double>(), static_cast<double>(expect[k][3])) << k;
    EXPECT_GT(s["params"].get<int64_t>(), 0);
    EXPECT_GT(s["forward_gflops"].get<double>(), 0);
  }
  ProcResult table = Vidfarm("plan --preset tiny");
  EXPECT_EQ(table.code, 0) << table.out;
  EXPECT_NE(table.out.find("ssr"), std::string::npos) << table.out;
}

TEST_F(CliTest, SynthThenAnalyzeReadsTheCaptionBackThroughH264) {
  const std::string caption = "a yellow letter K rotating on a blue background";
  ProcResult r = Vidfarm("synth " + Quote(caption) + " -o " + Quote(Path("k.mp4")));
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json probe = Probe(Path("k.mp4"));
  EXPECT_EQ(probe["width"], 160);
  EXPECT_EQ(probe["height"], 96);
  EXPECT_EQ(probe["nb_read_frames"], "64");
  r = Vidfarm("analyze --json " + Quote(Path("k.mp4")));
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["caption"], caption) << r.out;
  EXPECT_GT(j["consistent_frames"].get<int>(), 56) << r.out;

  r = Vidfarm("synth 'a red circel' -o " + Quote(Path("x.mp4")));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("circel"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(Path("x.mp4")));
  EXPECT_EQ(Vidfarm("analyze " + Quote(Path("missing.mp4"))).code, 2);
}

TEST_F(CliTest, SynthRandomWritesClipsAndCaptions) {
  ProcResult r = Vidfarm("synth --random 3 --seed 4 --frames 8 --height 24 --width 40 --fps 3 "
                         "--out-dir " + Quote(Path("data")));
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream list(Path("data/captions.jsonl"));
  std::string line;
  int n = 0;
  while (std::getline(list, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_TRUE(fs::exists(Path("data/" + j["file"].get<std::string>()))) << line;
    EXPECT_EQ(j["caption"].get<std::string>().rfind("a ", 0), 0u) << line;
    EXPECT_EQ(j["index"], n);
    ++n;
  }
  EXPECT_EQ(n, 3);
}

}  // namespace
