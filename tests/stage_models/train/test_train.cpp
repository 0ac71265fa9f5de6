// The stage trainer: the loss falls on a fixed batch, resume after a stop computes exactly the
// steps the uninterrupted run computed, checkpoints are not overwritten by accident, and the data
// sources deliver the stage's shapes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "test_util.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/stage_models/package.h"
#include "vidfarm/stage_models/safetensors.h"
#include "vidfarm/stage_models/synth.h"
#include "vidfarm/stage_models/train.h"

namespace vidfarm::models {
namespace {

namespace fs = std::filesystem;

TrainOptions SmallRun(const std::string& dir, int stage = 0) {
  TrainOptions o;
  o.preset = "tiny";
  o.stage = stage;
  o.out = dir + "/pkg";
  o.batch = 2;
  o.steps = 4;
  o.warmup = 0;
  o.lr = 1e-3;
  o.checkpoint_every = 2;
  o.log_every = 1;
  o.seed = 3;
  return o;
}

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
};

TEST_F(TrainTest, LossFallsOnAFixedBatch) {
  testing::TempDir dir;
  TrainOptions o = SmallRun(dir.path());
  o.fixed_batch = true;
  o.cond_dropout = 0;
  o.steps = 40;
  o.checkpoint_every = 40;
  o.log_every = 10;
  o.lr = 2e-3;
  auto r = Train(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->losses.size(), 40u);
  const double first = std::accumulate(r->losses.begin(), r->losses.begin() + 3, 0.0) / 3;
  const double last = std::accumulate(r->losses.end() - 3, r->losses.end(), 0.0) / 3;
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  // The package holds the EMA weights and says how it was trained.
  auto spec = GetPreset("tiny")->stages[0];
  auto pkg = LoadPackage(o.out, spec, torch::kCPU);
  ASSERT_TRUE(pkg.ok()) << pkg.status().ToString();
  EXPECT_FALSE(pkg->random_init);
  EXPECT_EQ(pkg->config["provenance"]["steps"], 40);
  EXPECT_EQ(pkg->config["provenance"]["trainer"], "vidfarm train");
  EXPECT_TRUE(fs::exists(o.out + ".ckpt/loss.csv"));
  EXPECT_TRUE(fs::exists(o.out + ".ckpt/loss.png"));
}

TEST(LearningRate, WarmupThenConstantThenCosineCooldown) {
  TrainOptions o;
  o.lr = 1e-3;
  o.warmup = 10;
  o.steps = 100;
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(o, 0), 1e-4);
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(o, 4), 5e-4);
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(o, 9), 1e-3);
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(o, 99), 1e-3);  // no cooldown by default
  o.lr_decay_from = 60;
  o.lr_final = 0.1;
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(o, 59), 1e-3);
  EXPECT_DOUBLE_EQ(ScheduledLearningRate(o, 60), 1e-3);
  // Halfway through the cooldown the cosine is at its midpoint: lr * (0.1 + 0.9 / 2).
  EXPECT_NEAR(ScheduledLearningRate(o, 80), 1e-3 * 0.55, 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(o, 100), 1e-4, 1e-12);
  for (int64_t s = 61; s <= 100; ++s) {
    EXPECT_LT(ScheduledLearningRate(o, s), ScheduledLearningRate(o, s - 1)) << s;
  }
  o.lr_decay_from = -2;
  testing::TempDir dir;
  o.out = dir.file("pkg");
  auto r = Train(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--lr-decay-from"), std::string::npos);
}

TEST_F(TrainTest, ResumeRepeatsTheSameSteps) {
  testing::TempDir a, b;
  TrainOptions full = SmallRun(a.path());
  auto r_full = Train(full);
  ASSERT_TRUE(r_full.ok()) << r_full.status().ToString();
  ASSERT_EQ(r_full->losses.size(), 4u);

  // The same run stopped after its step-2 checkpoint, then resumed.
  TrainOptions first = SmallRun(b.path());
  first.steps = 2;
  auto r1 = Train(first);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  TrainOptions second = SmallRun(b.path());
  second.resume = true;
  auto r2 = Train(second);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->start_step, 2);
  ASSERT_EQ(r2->losses.size(), 2u);
  EXPECT_DOUBLE_EQ(r2->losses[0], r_full->losses[2]);
  EXPECT_DOUBLE_EQ(r2->losses[1], r_full->losses[3]);
  // And the packaged weights are the same bytes.
  auto sha = [](const std::string& pkg) {
    std::ifstream in(pkg + "/config.json");
    return nlohmann::json::parse(in)["weights"]["sha256"].get<std::string>();
  };
  EXPECT_EQ(sha(full.out), sha(second.out));
  // loss.csv has one row per step, none repeated.
  std::ifstream csv(second.out + ".ckpt/loss.csv");
  std::string line;
  int rows = 0;
  while (std::getline(csv, line)) rows += line.rfind("step,", 0) == 0 ? 0 : 1;
  EXPECT_EQ(rows, 4);
}

// The package says how the rate went across resumes: one segment per schedule, with its steps.
TEST_F(TrainTest, PackageRecordsTheLearningRateScheduleAcrossResumes) {
  testing::TempDir dir;
  TrainOptions a = SmallRun(dir.path());
  a.steps = 2;
  ASSERT_TRUE(Train(a).ok());
  TrainOptions longer = a;  // a constant rate run further: the same segment
  longer.resume = true;
  longer.steps = 3;
  ASSERT_TRUE(Train(longer).ok());
  TrainOptions cooled = longer;  // a new rate and a cooldown: a new segment from step 3
  cooled.steps = 5;
  cooled.lr = 5e-4;
  cooled.lr_decay_from = 3;
  ASSERT_TRUE(Train(cooled).ok());
  std::ifstream in(cooled.out + "/config.json");
  const auto h = nlohmann::json::parse(in)["provenance"]["lr_history"];
  ASSERT_EQ(h.size(), 2u) << h.dump();
  EXPECT_EQ(h[0]["from"], 0);
  EXPECT_EQ(h[0]["until"], 3);
  EXPECT_EQ(h[0]["lr"], 1e-3);
  EXPECT_FALSE(h[0].contains("cooldown_from"));
  EXPECT_EQ(h[1]["from"], 3);
  EXPECT_FALSE(h[1].contains("until"));
  EXPECT_EQ(h[1]["lr"], 5e-4);
  EXPECT_EQ(h[1]["cooldown_from"], 3);
  EXPECT_EQ(h[1]["cooldown_to"], 5);
}

TEST_F(TrainTest, RefusesToOverwriteOrMismatchACheckpoint) {
  testing::TempDir dir;
  TrainOptions o = SmallRun(dir.path());
  o.steps = 2;
  ASSERT_TRUE(Train(o).ok());
  auto again = Train(o);  // no --resume: would throw the checkpoint away
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("--resume"), std::string::npos);
  TrainOptions other = o;
  other.resume = true;
  other.batch = 3;
  other.steps = 3;
  auto mismatch = Train(other);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("batch"), std::string::npos);
  TrainOptions bad = SmallRun(dir.path() + "/x");
  bad.stage = 9;
  EXPECT_FALSE(Train(bad).ok());
  bad.stage = 6;
  bad.crop_h = 30;  // not a multiple of the network's divisor
  EXPECT_FALSE(Train(bad).ok());
}

// The SR output parameterization goes with the checkpoint: a run started with the older offset
// (--cond-prior-std 0 = cond_skip) resumes with it by default, its package says so, and asking
// for another output on resume is refused. Fresh runs take the preset's (a TSR stage: cond_prior_std
// 0.02 around frames blended in time).
TEST_F(TrainTest, ResumeKeepsTheCheckpointsSrOutput) {
  testing::TempDir dir;
  auto arch = [](const std::string& pkg) {
    std::ifstream in(pkg + "/config.json");
    return nlohmann::json::parse(in).at("architecture");
  };
  TrainOptions o = SmallRun(dir.path(), 1);
  o.steps = 1;
  o.cond_prior_std = 0;
  ASSERT_TRUE(Train(o).ok());
  EXPECT_EQ(arch(o.out).at("cond_skip"), true);
  EXPECT_FALSE(arch(o.out).contains("cond_prior_std"));
  TrainOptions more = o;
  more.resume = true;
  more.steps = 2;
  more.cond_prior_std = -1;  // the preset now says 0.02 with a blend; the checkpoint wins
  auto r = Train(more);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(arch(o.out).at("cond_skip"), true);
  more.steps = 3;
  more.cond_prior_std = 0.1;
  r = Train(more);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("architecture"), std::string::npos) << r.status().ToString();

  TrainOptions fresh = SmallRun(dir.path() + "/fresh", 1);
  fresh.steps = 1;
  ASSERT_TRUE(Train(fresh).ok());
  EXPECT_EQ(arch(fresh.out).at("cond_skip"), false);
  EXPECT_EQ(arch(fresh.out).at("cond_prior_std"), 0.02);
  EXPECT_EQ(arch(fresh.out).at("cond_prior_blend"), 2);
}

// Turns a base run's latest checkpoint into one from before the frame embedding: no frame_embed or
// frame_text tensors, no frame_embedding in its architecture.
void DropFrameEmbedding(const std::string& run_dir) {
  std::ifstream latest(run_dir + "/LATEST");
  std::string name;
  latest >> name;
  const std::string dir = run_dir + "/" + name;
  for (const char* file : {"weights.safetensors", "adam.safetensors"}) {
    auto tensors = ReadSafetensors(dir + "/" + file);
    ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
    std::vector<std::pair<std::string, torch::Tensor>> kept;
    for (auto& [key, t] : *tensors) {
      if (key.find("frame_embed.") == std::string::npos &&
          key.find("frame_text.") == std::string::npos) {
        kept.emplace_back(key, t);
      }
    }
    ASSERT_LT(kept.size(), tensors->size());
    ASSERT_TRUE(WriteSafetensors(dir + "/" + file, kept, "F32").ok());
  }
  std::ifstream in(dir + "/state.json");
  auto state = nlohmann::json::parse(in);
  ASSERT_EQ(state["architecture"].erase("frame_embedding"), 1u);
  std::ofstream(dir + "/state.json") << state.dump(2);
}

// A run from before the frame embedding resumes without it; --init-from starts a new run from its
// checkpoint with the embedding added (at zero), continuing its step count and loss log.
TEST_F(TrainTest, InitFromGrowsAnOlderBaseRunByTheFrameEmbedding) {
  testing::TempDir dir;
  auto config = [](const std::string& pkg) {
    std::ifstream in(pkg + "/config.json");
    return nlohmann::json::parse(in);
  };
  TrainOptions old = SmallRun(dir.path() + "/old");
  old.steps = 2;
  ASSERT_TRUE(Train(old).ok());
  DropFrameEmbedding(old.out + ".ckpt");
  TrainOptions more = old;
  more.resume = true;
  more.steps = 3;
  auto r = Train(more);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(config(old.out)["architecture"].contains("frame_embedding"));

  TrainOptions grown = SmallRun(dir.path() + "/grown");
  grown.init_from = old.out + ".ckpt";
  grown.resume = true;  // nothing to resume yet: --init-from applies
  grown.steps = 4;
  r = Train(grown);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->start_step, 3);
  EXPECT_EQ(r->losses.size(), 1u);
  const auto c = config(grown.out);
  EXPECT_EQ(c["architecture"]["frame_embedding"], true);
  EXPECT_EQ(c["provenance"]["steps"], 4);
  EXPECT_EQ(c["provenance"]["init_from"]["step"], 3);
  EXPECT_EQ(c["provenance"]["init_from"]["new_tensors"],
            nlohmann::json::array({"frame_embed.weight", "frame_embed.bias", "frame_text.weight",
                                   "frame_text.bias"}));
  auto spec = GetPreset("tiny")->stages[0];
  ASSERT_TRUE(LoadPackage(grown.out, spec, torch::kCPU).ok());
  ASSERT_TRUE(LoadPackage(old.out, spec, torch::kCPU).ok());  // an older package still loads
  std::ifstream csv(grown.out + ".ckpt/loss.csv");
  std::string line;
  int rows = 0;
  while (std::getline(csv, line)) rows += line.rfind("step,", 0) == 0 ? 0 : 1;
  EXPECT_EQ(rows, 4);
  // Resumed later, the new run keeps its provenance.
  TrainOptions again = grown;
  again.steps = 5;
  ASSERT_TRUE(Train(again).ok());
  EXPECT_EQ(config(grown.out)["provenance"]["init_from"]["step"], 3);

  // Another stage's run is refused.
  TrainOptions sr = SmallRun(dir.path() + "/sr", 1);
  sr.steps = 1;
  ASSERT_TRUE(Train(sr).ok());
  TrainOptions wrong = SmallRun(dir.path() + "/wrong");
  wrong.init_from = sr.out + ".ckpt";
  r = Train(wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("stage"), std::string::npos) << r.status().ToString();
}

// --frame-embedding and --spacetime-attention: a base run from step 0 with or without them,
// whatever the preset says; a resumed run keeps its checkpoint's choice; SR stages refuse the
// frame embedding, and take space-time attention where they have spatial attention.
TEST_F(TrainTest, FrameEmbeddingAndSpaceTimeAttentionCanBeChosenForAFreshBaseRun) {
  testing::TempDir dir;
  auto arch = [](const std::string& pkg) {
    std::ifstream in(pkg + "/config.json");
    return nlohmann::json::parse(in)["architecture"];
  };
  TrainOptions off = SmallRun(dir.path() + "/off");
  off.steps = 1;
  off.frame_embedding = 0;
  ASSERT_TRUE(Train(off).ok());
  EXPECT_FALSE(arch(off.out).contains("frame_embedding"));
  TrainOptions on = SmallRun(dir.path() + "/on");
  on.steps = 1;
  on.frame_embedding = 1;
  on.spacetime_attention = 1;
  ASSERT_TRUE(Train(on).ok());
  EXPECT_EQ(arch(on.out)["frame_embedding"], true);
  EXPECT_EQ(arch(on.out)["spacetime_attention"], true);
  EXPECT_FALSE(arch(off.out).contains("spacetime_attention"));
  TrainOptions resumed = off;  // resumed with the options flipped: the checkpoint decides
  resumed.resume = true;
  resumed.steps = 2;
  resumed.frame_embedding = 1;
  resumed.spacetime_attention = 1;
  auto r = Train(resumed);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(arch(off.out).contains("frame_embedding"));
  EXPECT_FALSE(arch(off.out).contains("spacetime_attention"));
  TrainOptions sr = SmallRun(dir.path() + "/sr", 1);
  sr.steps = 1;
  sr.frame_embedding = 1;
  r = Train(sr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("base stage only"), std::string::npos)
      << r.status().ToString();
  // Space-time attention extends spatial attention, which tsr1 has and the fully convolutional
  // ssr6 does not.
  sr.frame_embedding = -1;
  sr.spacetime_attention = 1;
  r = Train(sr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(arch(sr.out)["spacetime_attention"], true);
  EXPECT_FALSE(arch(sr.out).contains("frame_embedding"));
  TrainOptions last = SmallRun(dir.path() + "/last", 6);
  last.steps = 1;
  last.spacetime_attention = 1;
  r = Train(last);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("has no spatial attention to extend over time"),
            std::string::npos)
      << r.status().ToString();
}

TEST_F(TrainTest, EverySrKindTrainsAStep) {
  // One step each of a TSR stage, an SSR stage with images, and the cropped last stage.
  for (int stage : {1, 2, 6}) {
    testing::TempDir dir;
    TrainOptions o = SmallRun(dir.path(), stage);
    o.batch = 2;
    o.steps = 1;
    o.image_fraction = stage == 2 ? 1.0 : 0.0;
    if (stage == 6) o.crop_frames = 8;
    o.eval_every = 1;
    o.eval_examples = 1;
    o.eval_steps = 2;
    std::vector<TrainProgress> seen;
    auto r = Train(o, [&](const TrainProgress& p) { seen.push_back(p); });
    ASSERT_TRUE(r.ok()) << "stage " << stage << ": " << r.status().ToString();
    ASSERT_FALSE(seen.empty());
    EXPECT_TRUE(std::isfinite(seen.back().loss));
    EXPECT_GT(seen.back().eval_psnr, 0) << stage;
    EXPECT_GT(seen.back().eval_baseline_psnr, 0) << stage;
  }
}

TEST_F(TrainTest, SynthDataHasTheStageShapes) {
  auto spec = GetPreset("tiny")->stages[1];  // TSR: 8 → 16 frames
  auto data = MakeSynthData(spec, 5);
  auto ex = data->Get(3, false);
  ASSERT_TRUE(ex.ok()) << ex.status().ToString();
  EXPECT_EQ(ex->target.frames, 16);
  EXPECT_EQ(ex->cond.frames, 8);
  EXPECT_EQ(ex->cond.height, spec.in_height());
  EXPECT_TRUE(synth::ParseCaption(ex->caption).ok()) << ex->caption;
  // Input frame i is the target's frame 2i: the same scene at half the frame rate.
  for (int64_t i = 0; i < 8; ++i) {
    double diff = 0;
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < spec.height; ++y)
        for (int64_t x = 0; x < spec.width; ++x)
          diff = std::max<double>(diff, std::abs(ex->cond.at(c, i, y, x) -
                                                 ex->target.at(c, 2 * i, y, x)));
    EXPECT_LT(diff, 1e-5) << "frame " << i;
  }
  EXPECT_FALSE(data->supports_images());
  // Image examples of the base stage: independent stills of one motionless caption.
  auto base = MakeSynthData(GetPreset("tiny")->stages[0], 5);
  auto img = base->Get(3, true);
  ASSERT_TRUE(img.ok());
  auto attrs = synth::ParseCaption(img->caption);
  ASSERT_TRUE(attrs.ok()) << img->caption;
  EXPECT_EQ(img->target.frames, 8);
  double frame_diff = 0;
  for (int64_t y = 0; y < img->target.height; ++y)
    for (int64_t x = 0; x < img->target.width; ++x)
      frame_diff += std::abs(img->target.at(0, 0, y, x) - img->target.at(0, 1, y, x));
  EXPECT_GT(frame_diff, 0.5);
}

TEST_F(TrainTest, DirectoryDataReadsVideosAndCaptions) {
  testing::TempDir dir;
  std::ofstream jsonl(dir.path() + "/captions.jsonl");
  for (int i = 0; i < 2; ++i) {
    auto scene = synth::RandomScene(11, i);
    auto v = synth::Render(scene, 48, 72, 120, 24);  // 2 s at 24 fps, another size
    ASSERT_TRUE(v.ok());
    const std::string file = "clip" + std::to_string(i) + ".mp4";
    ASSERT_TRUE(WriteVideo(*v, dir.path() + "/" + file).ok());
    jsonl << nlohmann::json{{"file", file}, {"caption", synth::Caption(scene)}}.dump() << "\n";
  }
  jsonl.close();
  auto spec = GetPreset("tiny")->stages[2];  // SSR 16x24x40 @ 6 fps
  auto data = MakeDirData(spec, dir.path(), 1);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  auto ex = (*data)->Get(0, false);
  ASSERT_TRUE(ex.ok()) << ex.status().ToString();
  EXPECT_EQ(ex->target.frames, 16);
  EXPECT_EQ(ex->target.height, 24);
  EXPECT_EQ(ex->target.width, 40);
  EXPECT_EQ(ex->cond.height, 12);
  EXPECT_EQ(ex->cond.width, 20);
  EXPECT_TRUE(synth::ParseCaption(ex->caption).ok());
  // Missing captions and a missing directory are clear errors.
  testing::TempDir empty;
  auto none = MakeDirData(spec, empty.path(), 1);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("captions"), std::string::npos);
  EXPECT_FALSE(MakeDirData(spec, empty.path() + "/nope", 1).ok());
}

}  // namespace
}  // namespace vidfarm::models
