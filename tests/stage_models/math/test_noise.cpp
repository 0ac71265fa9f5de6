#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "vidfarm/stage_models/noise.h"

namespace vidfarm::models {
namespace {

TEST(NoiseStreamSeed, EveryFieldMatters) {
  const NoiseKey base{42, 3, 7, 11};
  std::set<uint64_t> seen{NoiseStreamSeed(base)};
  EXPECT_EQ(NoiseStreamSeed(base), NoiseStreamSeed(NoiseKey{42, 3, 7, 11}));
  for (NoiseKey k : {NoiseKey{43, 3, 7, 11}, NoiseKey{42, 4, 7, 11}, NoiseKey{42, 3, 8, 11},
                     NoiseKey{42, 3, 7, 12}, NoiseKey{42, 3, -1, 11}, NoiseKey{42, 7, 3, 11},
                     NoiseKey{42, 3, 11, 7}, NoiseKey{0, 0, 0, 0}, NoiseKey{0, 0, 0, 1}}) {
    EXPECT_TRUE(seen.insert(NoiseStreamSeed(k)).second)
        << k.seed << "/" << k.stage << "/" << k.step << "/" << k.sample;
  }
}

TEST(NoiseStreamSeed, NoCollisionsOverAGrid) {
  std::set<uint64_t> seen;
  int n = 0;
  for (uint64_t seed : {0ull, 1ull, 0xffffffffffffffffull})
    for (int stage = 0; stage < 7; ++stage)
      for (int step = -1; step < 32; ++step)
        for (int64_t sample = 0; sample < 4; ++sample, ++n)
          seen.insert(NoiseStreamSeed({seed, stage, step, sample}));
  EXPECT_EQ(static_cast<int>(seen.size()), n);
}

TEST(KeyedNormal, SameKeySameNoiseDifferentKeyDifferent) {
  const std::vector<int64_t> shape{3, 4, 5, 6};
  const NoiseKey k{7, 2, 5, 1};
  const auto a = KeyedNormal(k, shape);
  EXPECT_EQ(a.sizes(), torch::IntArrayRef(shape));
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
  EXPECT_TRUE(a.device().is_cpu());
  // The global generator must not matter.
  torch::manual_seed(123);
  EXPECT_TRUE(torch::equal(a, KeyedNormal(k, shape)));
  torch::randn({100});
  EXPECT_TRUE(torch::equal(a, KeyedNormal(k, shape)));
  for (NoiseKey other :
       {NoiseKey{8, 2, 5, 1}, NoiseKey{7, 3, 5, 1}, NoiseKey{7, 2, 6, 1}, NoiseKey{7, 2, 5, 2}}) {
    EXPECT_FALSE(torch::equal(a, KeyedNormal(other, shape)));
  }
}

TEST(KeyedNormal, IndependentOfThreadCountAndStandardNormal) {
  const std::vector<int64_t> shape{3, 16, 64, 64};  // large enough to be split across threads
  const NoiseKey k{99, 0, -1, 0};
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  const auto one = KeyedNormal(k, shape);
  torch::set_num_threads(2);
  const auto two = KeyedNormal(k, shape);
  torch::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_NEAR(one.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(one.std().item<double>(), 1.0, 0.01);
}

TEST(KeyedNormalBatch, RowIsTheSingleSampleNoise) {
  const std::vector<int64_t> per{2, 3, 4, 4};
  const std::vector<int64_t> idx{5, 0, 9};
  const auto b = KeyedNormalBatch(11, 4, 2, idx, per);
  EXPECT_EQ(b.sizes(), torch::IntArrayRef({3, 2, 3, 4, 4}));
  for (size_t i = 0; i < idx.size(); ++i) {
    EXPECT_TRUE(torch::equal(b[static_cast<int64_t>(i)], KeyedNormal({11, 4, 2, idx[i]}, per)));
  }
  // Batching does not change a sample's noise: sample 9 alone equals its row in the batch.
  EXPECT_TRUE(torch::equal(KeyedNormalBatch(11, 4, 2, {9}, per)[0], b[2]));
  EXPECT_FALSE(torch::equal(b[0], b[1]));
}

}  // namespace
}  // namespace vidfarm::models
