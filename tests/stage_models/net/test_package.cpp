#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "vidfarm/common/sha256.h"
#include "vidfarm/stage_models/package.h"
#include "vidfarm/stage_models/safetensors.h"
#include "vidfarm/stage_models/text_encoder.h"

namespace vidfarm::models {
namespace {
namespace fs = std::filesystem;

class PackageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("vf_pkg_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    preset_ = *GetPreset("tiny");
  }
  void TearDown() override { fs::remove_all(root_); }

  torch::Tensor Run(VideoUNet& net, const StageSpec& s) {
    torch::NoGradGuard ng;
    torch::manual_seed(1);
    UNetInputs in;
    in.z = torch::randn({1, 3, 4, s.height, s.width});
    in.logsnr = torch::full({1}, 0.5);
    auto e = MakeBuiltinTextEncoder(preset_.text_dim, preset_.text_tokens)
                 ->Encode({"a boat on a lake"}, torch::kCPU);
    in.text_tokens = e->tokens;
    in.text_mask = e->mask;
    in.text_pooled = e->pooled;
    if (s.net.super_resolution) {
      in.cond_video = torch::randn_like(in.z);
      in.aug_logsnr = torch::full({1}, 1.1);
    }
    return net->forward(in);
  }

  std::string Save(int stage, WeightDType dt, const std::string& name = "pkg") {
    auto pkg = RandomPackage(preset_.stages[stage], 11, torch::kCPU);
    EXPECT_TRUE(pkg.ok());
    const std::string dir = (root_ / name).string();
    auto st = SavePackage(dir, preset_.stages[stage], "tiny", pkg->net,
                          {{"trained_steps", 0}, {"note", "test"}}, dt);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return dir;
  }

  nlohmann::json ReadConfig(const std::string& dir) {
    std::ifstream f(fs::path(dir) / "config.json");
    return nlohmann::json::parse(f);
  }
  void WriteConfig(const std::string& dir, const nlohmann::json& j) {
    std::ofstream f(fs::path(dir) / "config.json", std::ios::trunc);
    f << j.dump(2);
  }

  fs::path root_;
  CascadePreset preset_;
};

TEST_F(PackageTest, RoundTripF32IsExactF16IsClose) {
  const int stage = 2;
  const auto& spec = preset_.stages[stage];
  auto orig = RandomPackage(spec, 11, torch::kCPU);
  ASSERT_TRUE(orig.ok());
  EXPECT_TRUE(orig->random_init);
  const auto y = Run(orig->net, spec);
  for (auto dt : {WeightDType::kF32, WeightDType::kF16}) {
    const auto dir = Save(stage, dt, dt == WeightDType::kF32 ? "f32" : "f16");
    auto pkg = LoadPackage(dir, spec, torch::kCPU);
    ASSERT_TRUE(pkg.ok()) << pkg.status().ToString();
    EXPECT_FALSE(pkg->random_init);
    EXPECT_EQ(pkg->config["format"], "vidfarm-stage/1");
    EXPECT_EQ(pkg->config["stage"], stage);
    EXPECT_EQ(pkg->config["param_count"], CountParameters(*pkg->net));
    EXPECT_EQ(pkg->config["provenance"]["note"], "test");
    EXPECT_EQ(pkg->config["weights"]["dtype"], dt == WeightDType::kF32 ? "F32" : "F16");
    EXPECT_EQ(pkg->config["output"]["height"], spec.height);
    EXPECT_EQ(pkg->config["input"]["height"], spec.in_height());
    const auto y2 = Run(pkg->net, spec);
    if (dt == WeightDType::kF32) {
      EXPECT_TRUE(torch::equal(y, y2));
    } else {
      EXPECT_FALSE(torch::equal(y, y2));  // f16 rounding did happen
      EXPECT_TRUE(torch::allclose(y, y2, 1e-2, 1e-2)) << (y - y2).abs().max().item<double>();
    }
    EXPECT_TRUE(fs::exists(fs::path(dir) / "weights.safetensors"));
  }
  // Saving again over a package replaces it and leaves no temporary directories behind.
  Save(stage, WeightDType::kF32, "f32");
  int entries = 0;
  for (const auto& e : fs::directory_iterator(root_)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2);
}

TEST_F(PackageTest, SafetensorsHeaderIsStandard) {
  const auto dir = Save(0, WeightDType::kF16);
  const auto path = (fs::path(dir) / "weights.safetensors").string();
  auto idx = ReadSafetensorsIndex(path);
  ASSERT_TRUE(idx.ok()) << idx.status().ToString();
  EXPECT_EQ(idx->data_start % 8, 0u);
  EXPECT_EQ(idx->metadata.at("format"), "pt");
  const auto& e = idx->tensors.at("conv_in.weight");
  EXPECT_EQ(e.dtype, "F16");
  EXPECT_EQ(e.end - e.begin, 2u * e.shape[0] * e.shape[1] * e.shape[2] * e.shape[3]);
  uint64_t covered = 0;
  for (const auto& [n, t] : idx->tensors) covered += t.end - t.begin;
  EXPECT_EQ(idx->data_start + covered, idx->file_size);  // contiguous, no gaps
  EXPECT_EQ(*Sha256File(path), ReadConfig(dir)["weights"]["sha256"]);
}

TEST_F(PackageTest, MissingDirectoryConfigAndWeights) {
  const auto& spec = preset_.stages[1];
  auto r = LoadPackage((root_ / "nope").string(), spec, torch::kCPU);
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_NE(r.status().message().find("nope"), std::string::npos);
  const auto dir = Save(1, WeightDType::kF16);
  fs::remove(fs::path(dir) / "weights.safetensors");
  r = LoadPackage(dir, spec, torch::kCPU);
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("weights.safetensors"), std::string::npos);
  fs::remove(fs::path(dir) / "config.json");
  r = LoadPackage(dir, spec, torch::kCPU);
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("config.json"), std::string::npos);
}

TEST_F(PackageTest, FlippedByteIsASha256Mismatch) {
  const auto dir = Save(1, WeightDType::kF16);
  const auto path = fs::path(dir) / "weights.safetensors";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-100, std::ios::end);
    char c;
    f.get(c);
    f.seekp(-100, std::ios::end);
    f.put(static_cast<char>(c ^ 0x40));
  }
  auto r = LoadPackage(dir, preset_.stages[1], torch::kCPU);
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("sha256"), std::string::npos);
}

TEST_F(PackageTest, TruncatedWeightsWithMatchingShaAreCorruption) {
  const auto dir = Save(1, WeightDType::kF16);
  const auto path = fs::path(dir) / "weights.safetensors";
  const auto size = fs::file_size(path);
  for (uint64_t keep : {size - 10, size / 2, uint64_t{20}, uint64_t{5}, uint64_t{0}}) {
    fs::resize_file(path, keep);
    auto cfg = ReadConfig(dir);
    cfg["weights"]["sha256"] = *Sha256File(path.string());  // the sha check passes
    WriteConfig(dir, cfg);
    auto r = LoadPackage(dir, preset_.stages[1], torch::kCPU);
    EXPECT_TRUE(r.status().IsCorruption()) << keep << ": " << r.status().ToString();
  }
}

TEST_F(PackageTest, GarbledHeaderAndWrongTensorsAreCorruption) {
  const auto dir = Save(1, WeightDType::kF32);
  const auto path = (fs::path(dir) / "weights.safetensors").string();
  auto reseal = [&] {
    auto cfg = ReadConfig(dir);
    cfg["weights"]["sha256"] = *Sha256File(path);
    WriteConfig(dir, cfg);
  };
  // Header length pointing past the end.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const char big[8] = {'\xff', '\xff', '\xff', '\x0f', 0, 0, 0, 0};
    f.write(big, 8);
  }
  reseal();
  EXPECT_TRUE(LoadPackage(dir, preset_.stages[1], torch::kCPU).status().IsCorruption());
  // A valid file with a tensor missing, or one of the wrong shape.
  auto pkg = RandomPackage(preset_.stages[1], 3, torch::kCPU);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& it : pkg->net->named_parameters()) named.emplace_back(it.key(), it.value());
  auto missing = named;
  missing.pop_back();
  ASSERT_TRUE(WriteSafetensors(path, missing, "F32").ok());
  reseal();
  auto r = LoadPackage(dir, preset_.stages[1], torch::kCPU);
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(named.back().first), std::string::npos);
  auto extra = named;
  extra.emplace_back("bogus.weight", torch::zeros({2}));
  ASSERT_TRUE(WriteSafetensors(path, extra, "F32").ok());
  reseal();
  r = LoadPackage(dir, preset_.stages[1], torch::kCPU);
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("bogus.weight"), std::string::npos);
  auto wrong = named;
  wrong[0].second = torch::zeros({wrong[0].second.numel() + 1});
  ASSERT_TRUE(WriteSafetensors(path, wrong, "F32").ok());
  reseal();
  EXPECT_TRUE(LoadPackage(dir, preset_.stages[1], torch::kCPU).status().IsCorruption());
}

TEST_F(PackageTest, WrongStageShapeOrArchitectureIsInvalidArgument) {
  const auto dir = Save(2, WeightDType::kF16);
  auto r = LoadPackage(dir, preset_.stages[3], torch::kCPU);
  ASSERT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("is stage 2 (SSR ×2) but stage 3 (SSR ×2) was expected"),
            std::string::npos)
      << r.status().message();
  // Same index, other shapes (e.g. the paper's stage 2).
  auto paper = *GetPreset("paper");
  EXPECT_TRUE(LoadPackage(dir, paper.stages[2], torch::kCPU).status().IsInvalidArgument());
  // Same shapes, other widths.
  auto spec = preset_.stages[2];
  spec.net.dim += 8;
  r = LoadPackage(dir, spec, torch::kCPU);
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("dim"), std::string::npos);
  // Saving a net under another stage's spec is refused.
  auto pkg = RandomPackage(preset_.stages[1], 1, torch::kCPU);
  EXPECT_TRUE(SavePackage((root_ / "x").string(), preset_.stages[2], "tiny", pkg->net, {})
                  .IsInvalidArgument());
}

TEST_F(PackageTest, GarbageConfigIsCorruption) {
  const auto dir = Save(0, WeightDType::kF16);
  {
    std::ofstream f(fs::path(dir) / "config.json", std::ios::trunc);
    f << "{ this is not json";
  }
  auto r = LoadPackage(dir, preset_.stages[0], torch::kCPU);
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  WriteConfig(dir, nlohmann::json{{"format", "vidfarm-stage/1"}, {"stage", 0}});  // fields missing
  r = LoadPackage(dir, preset_.stages[0], torch::kCPU);
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  WriteConfig(dir, nlohmann::json::array({1, 2}));
  EXPECT_TRUE(LoadPackage(dir, preset_.stages[0], torch::kCPU).status().IsCorruption());
}

TEST_F(PackageTest, RefusesToReplaceANonPackageDirectory) {
  fs::create_directories(root_ / "photos");
  std::ofstream(root_ / "photos" / "cat.jpg") << "x";
  auto pkg = RandomPackage(preset_.stages[0], 1, torch::kCPU);
  EXPECT_TRUE(SavePackage((root_ / "photos").string(), preset_.stages[0], "tiny", pkg->net, {})
                  .IsInvalidArgument());
  EXPECT_TRUE(fs::exists(root_ / "photos" / "cat.jpg"));
}

}  // namespace
}  // namespace vidfarm::models
