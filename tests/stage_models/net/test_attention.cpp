#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "../../../stage_models/src/net/attention_cpu.h"
#include "vidfarm/stage_models/ops.h"

namespace vidfarm::models {
namespace {

// softmax(q k^T / sqrt(d) + bias, masked) v in double, written out from the definition.
torch::Tensor Reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& bias = {}, const torch::Tensor& mask = {}) {
  const auto qd = q.to(torch::kDouble), kd = k.to(torch::kDouble), vd = v.to(torch::kDouble);
  auto logits = torch::matmul(qd, kd.transpose(-2, -1)) / std::sqrt(double(q.size(-1)));
  if (bias.defined()) logits = logits + bias.to(torch::kDouble);
  if (mask.defined()) {
    logits = logits.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
  }
  return torch::matmul(torch::softmax(logits, -1), vd);
}

// |got - ref| <= 1e-5 |ref| + 1e-5 max|ref| elementwise; NaN only where ref has NaN.
void ExpectClose(const torch::Tensor& got, const torch::Tensor& ref, const std::string& what) {
  ASSERT_EQ(got.sizes(), ref.sizes()) << what;
  EXPECT_EQ(got.scalar_type(), torch::kFloat) << what;
  const auto g = got.to(torch::kDouble);
  EXPECT_TRUE(torch::equal(torch::isnan(g), torch::isnan(ref))) << what;
  const auto finite = torch::isfinite(ref);
  const auto gf = g.masked_select(finite), rf = ref.masked_select(finite);
  const double scale = rf.numel() ? rf.abs().max().item<double>() : 0.0;
  const auto excess = (gf - rf).abs() - (1e-5 * rf.abs() + 1e-5 * scale);
  EXPECT_LE(excess.numel() ? excess.max().item<double>() : 0.0, 0.0)
      << what << ": max abs error " << (gf - rf).abs().max().item<double>();
}

struct Shape {
  int64_t n, h, lq, lk, d, dv;
};

// Odd sizes on purpose: not multiples of the 6-row strips, 16-wide tiles, 96-row query blocks or
// 128-key blocks, and d of 8, 16, 32, 64 plus a value width that is none of those.
const Shape kShapes[] = {
    {2, 3, 37, 53, 16, 16},  {1, 2, 130, 300, 32, 32}, {3, 1, 7, 5, 64, 64},
    {2, 2, 200, 129, 8, 8},  {1, 1, 1, 1, 32, 32},     {1, 2, 97, 257, 32, 24},
    {2, 4, 16, 16, 32, 32},  {1, 1, 300, 17, 64, 40},
};

std::string Name(const Shape& s) {
  return "[" + std::to_string(s.n) + "," + std::to_string(s.h) + "," + std::to_string(s.lq) + "," +
         std::to_string(s.lk) + "," + std::to_string(s.d) + "->" + std::to_string(s.dv) + "]";
}

TEST(Attention, FusedMatchesDoubleReference) {
  torch::manual_seed(1);
  for (const auto& s : kShapes) {
    auto q = torch::randn({s.n, s.h, s.lq, s.d}), k = torch::randn({s.n, s.h, s.lk, s.d}),
         v = torch::randn({s.n, s.h, s.lk, s.dv});
    const auto ref = Reference(q, k, v);
    ASSERT_TRUE(ops::detail::UseFusedAttentionCpu(q, k, v, {}, {})) << Name(s);
    ExpectClose(ops::detail::FusedAttentionCpu(q, k, v, {}, {}), ref, "fused " + Name(s));
    ExpectClose(ops::attention(q, k, v), ref, "ops " + Name(s));
  }
}

TEST(Attention, FusedMatchesWithBiasAndMask) {
  torch::manual_seed(2);
  for (const auto& s : kShapes) {
    auto q = torch::randn({s.n, s.h, s.lq, s.d}), k = torch::randn({s.n, s.h, s.lk, s.d}),
         v = torch::randn({s.n, s.h, s.lk, s.dv});
    // Per-head bias shared by the batch (temporal attention), a full bias, a per-sample key mask
    // (cross-attention; key 0 always kept) and a full mask with one key kept per row.
    const auto head_bias = torch::randn({1, s.h, s.lq, s.lk});
    const auto full_bias = 3 * torch::randn({s.n, s.h, s.lq, s.lk});
    auto key_mask = torch::rand({s.n, 1, 1, s.lk}) > 0.4;
    key_mask.narrow(3, 0, 1).fill_(true);
    auto full_mask = torch::rand({s.n, s.h, s.lq, s.lk}) > 0.7;
    full_mask.narrow(3, s.lk - 1, 1).fill_(true);
    const std::pair<torch::Tensor, torch::Tensor> cases[] = {
        {head_bias, {}}, {full_bias, {}}, {{}, key_mask}, {{}, full_mask}, {head_bias, key_mask}};
    for (const auto& [bias, mask] : cases) {
      const auto ref = Reference(q, k, v, bias, mask);
      const std::string what = Name(s) + (bias.defined() ? " bias" : "") +
                               (mask.defined() ? " mask" : "");
      ASSERT_TRUE(ops::detail::UseFusedAttentionCpu(q, k, v, bias, mask)) << what;
      ExpectClose(ops::detail::FusedAttentionCpu(q, k, v, bias, mask), ref, "fused " + what);
      ExpectClose(ops::attention(q, k, v, bias, mask), ref, "ops " + what);
    }
  }
}

TEST(Attention, StridedViewsLikeTheUNet) {
  // q, k, v as views into one qkv projection [N, L, 3, h, d], as SpatialAttention makes them.
  torch::manual_seed(3);
  auto qkv = torch::randn({2, 150, 3, 4, 32}).permute({2, 0, 3, 1, 4});
  const auto q = qkv[0], k = qkv[1], v = qkv[2];
  ASSERT_FALSE(q.is_contiguous());
  ExpectClose(ops::detail::FusedAttentionCpu(q, k, v, {}, {}), Reference(q, k, v), "views");
  // Features not unit-stride either.
  const auto qt = torch::randn({2, 4, 32, 150}).transpose(2, 3);
  ExpectClose(ops::detail::FusedAttentionCpu(qt, k, v, {}, {}), Reference(qt, k, v), "qt");
}

TEST(Attention, FullyMaskedRowIsNanLikeSoftmax) {
  // Rows with no key to attend to come out NaN on both paths (softmax over -inf);
  // the other rows are unaffected.
  torch::manual_seed(4);
  auto q = torch::randn({2, 2, 150, 16}), k = torch::randn({2, 2, 140, 16}),
       v = torch::randn({2, 2, 140, 16});
  auto mask = torch::ones({2, 2, 150, 140}, torch::kBool);
  mask[0][1][3].fill_(false);
  mask[1][0][149].fill_(false);
  mask[1][1][100].narrow(0, 0, 130).fill_(false);  // only keys in the last block left
  const auto ref = Reference(q, k, v, {}, mask);
  const auto got = ops::detail::FusedAttentionCpu(q, k, v, {}, mask);
  ExpectClose(got, ref, "masked rows");
  EXPECT_TRUE(torch::isnan(got[0][1][3]).all().item<bool>());
  EXPECT_TRUE(torch::isnan(got[1][0][149]).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(got[1][1][100]).all().item<bool>());
  EXPECT_EQ(torch::isnan(got).sum().item<int64_t>(), 2 * 16);
  // Same NaN pattern as plain matmul/softmax/matmul in fp32 (the unfused path's arithmetic).
  const auto logits = torch::matmul(q, k.transpose(-2, -1)) / 4.0;
  const auto plain = torch::matmul(
      torch::softmax(logits.masked_fill(mask.logical_not(), -INFINITY), -1), v);
  EXPECT_TRUE(torch::equal(torch::isnan(plain), torch::isnan(got)));
}

TEST(Attention, BitIdenticalAcrossRunsBatchesAndThreads) {
  torch::manual_seed(5);
  auto q = torch::randn({3, 2, 200, 32}), k = torch::randn({3, 2, 170, 32}),
       v = torch::randn({3, 2, 170, 32});
  const auto a = ops::attention(q, k, v);
  EXPECT_TRUE(torch::equal(a, ops::attention(q, k, v)));
  // One sample alone gives the same bits as inside the batch.
  EXPECT_TRUE(torch::equal(a.narrow(0, 1, 1),
                           ops::attention(q.narrow(0, 1, 1), k.narrow(0, 1, 1),
                                          v.narrow(0, 1, 1))));
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = ops::attention(q, k, v);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(a, one));
}

TEST(Attention, FlopCountUnchangedByTheFusedPath) {
  const int64_t n = 2, h = 3, lq = 40, lk = 50, d = 16, dv = 8;
  auto q = torch::randn({n, h, lq, d}), k = torch::randn({n, h, lk, d}),
       v = torch::randn({n, h, lk, dv});
  const double nl = double(n * h * lq * lk);
  const double expected = 2.0 * nl * d + 5.0 * nl + 2.0 * nl * dv;
  {
    ops::FlopCounterScope scope;
    ops::attention(q, k, v);
    EXPECT_DOUBLE_EQ(scope.flops(), expected);
  }
  auto m = torch::TensorOptions().device(torch::kMeta);
  ops::FlopCounterScope scope;
  auto y = ops::attention(torch::empty({n, h, lq, d}, m), torch::empty({n, h, lk, d}, m),
                          torch::empty({n, h, lk, dv}, m));
  EXPECT_TRUE(y.device().is_meta());
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{n, h, lq, dv}));
  EXPECT_DOUBLE_EQ(scope.flops(), expected);
}

TEST(Attention, OtherDtypesKeepTheUnfusedPath) {
  auto q = torch::randn({1, 2, 9, 16}, torch::kDouble);
  EXPECT_FALSE(ops::detail::UseFusedAttentionCpu(q, q, q, {}, {}));
  EXPECT_FALSE(ops::detail::UseFusedAttentionCpu(q.to(torch::kBFloat16), q.to(torch::kBFloat16),
                                                 q.to(torch::kBFloat16), {}, {}));
  const auto qf = q.to(torch::kFloat);
  const auto y = ops::attention(q.to(torch::kBFloat16), q.to(torch::kBFloat16),
                                q.to(torch::kBFloat16));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat), ops::attention(qf, qf, qf), 3e-2, 3e-2));
}

}  // namespace
}  // namespace vidfarm::models
