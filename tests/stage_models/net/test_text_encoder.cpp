#include <gtest/gtest.h>

#include "vidfarm/stage_models/text_encoder.h"

namespace vidfarm::models {
namespace {

TEST(TextEncoder, Tokenize) {
  EXPECT_EQ(BuiltinTokenize("A Red-fox, 2 jumps!"),
            (std::vector<std::string>{"a", "red", "fox", "2", "jumps"}));
  EXPECT_TRUE(BuiltinTokenize("  ...  ").empty());
}

TEST(TextEncoder, DeterministicMaskAndPadding) {
  auto enc = MakeBuiltinTextEncoder(32, 6);
  EXPECT_EQ(enc->dim(), 32);
  EXPECT_EQ(enc->max_tokens(), 6);
  auto a = enc->Encode({"a red fox", "one two three four five six seven eight"}, torch::kCPU);
  ASSERT_TRUE(a.ok());
  auto b = MakeBuiltinTextEncoder(32, 6)->Encode({"a red fox", "x"}, torch::kCPU);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->tokens.sizes(), (std::vector<int64_t>{2, 6, 32}));
  EXPECT_EQ(a->pooled.sizes(), (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(a->mask.scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(a->tokens[0], b->tokens[0]));  // same prompt, another encoder object
  EXPECT_TRUE(torch::equal(a->mask[0], torch::tensor({1, 1, 1, 0, 0, 0}).to(torch::kBool)));
  EXPECT_TRUE(a->mask[1].all().item<bool>());                           // truncated at 6 tokens
  EXPECT_EQ(a->tokens[0].slice(0, 3).abs().max().item<float>(), 0.0f);  // zero padding
  // Pooled = masked mean.
  EXPECT_TRUE(torch::allclose(a->pooled[0], a->tokens[0].slice(0, 0, 3).mean(0), 1e-5, 1e-6));
  // Same word, same position → same vector; other words differ.
  auto c = enc->Encode({"fox red a", "a red cat"}, torch::kCPU);
  EXPECT_TRUE(torch::equal(c->tokens[1][1], a->tokens[0][1]));      // "red" at position 1
  EXPECT_FALSE(torch::allclose(c->tokens[1][2], a->tokens[0][2]));  // cat vs fox
  // Case-insensitive.
  auto d = enc->Encode({"A RED FOX"}, torch::kCPU);
  EXPECT_TRUE(torch::equal(d->tokens[0], a->tokens[0]));
}

TEST(TextEncoder, WordVectorsHaveUnitVariance) {
  auto enc = MakeBuiltinTextEncoder(4096, 1);
  auto a = enc->Encode({"zebra"}, torch::kCPU);
  ASSERT_TRUE(a.ok());
  // token = word vector + position code (sin 0 = 0, cos 0 = 1 on odd dims).
  auto pos = torch::zeros({4096});
  pos.slice(0, 1, 4096, 2).fill_(1.0);
  auto v = a->tokens[0][0] - pos;
  EXPECT_NEAR(v.mean().item<double>(), 0.0, 0.1);
  EXPECT_NEAR(v.std().item<double>(), 1.0, 0.1);
}

TEST(TextEncoder, RejectsEmpty) {
  auto enc = MakeBuiltinTextEncoder(16, 4);
  EXPECT_TRUE(enc->Encode({}, torch::kCPU).status().IsInvalidArgument());
  EXPECT_TRUE(enc->Encode({"ok", ""}, torch::kCPU).status().IsInvalidArgument());
  EXPECT_TRUE(enc->Encode({"!!!"}, torch::kCPU).status().IsInvalidArgument());
}

}  // namespace
}  // namespace vidfarm::models
