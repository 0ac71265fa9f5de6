#include <gtest/gtest.h>

#include <limits>

#include "vidfarm/stage_models/ops.h"

namespace vidfarm::models {
namespace {

TEST(Ops, Conv2dFlopsMatchHandCount) {
  const int64_t b = 2, cin = 5, cout = 7, h = 6, w = 9, k = 3;
  auto x = torch::randn({b, cin, h, w});
  auto wt = torch::randn({cout, cin, k, k});
  ops::FlopCounterScope scope;
  auto y = ops::conv2d(x, wt, {}, 1, 1);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{b, cout, h, w}));
  EXPECT_DOUBLE_EQ(scope.flops(), 2.0 * b * h * w * cin * cout * k * k);
  EXPECT_DOUBLE_EQ(scope.activation_bytes(), 4.0 * b * cout * h * w);
  EXPECT_TRUE(torch::allclose(y, torch::conv2d(x, wt, {}, 1, 1), 1e-4, 1e-4));
}

TEST(Ops, Conv2dOnMetaGivesShapeAndSameFlops) {
  auto m = torch::TensorOptions().device(torch::kMeta);
  auto x = torch::empty({3, 4, 17, 10}, m);
  auto wt = torch::empty({8, 4, 3, 3}, m);
  ops::FlopCounterScope scope;
  auto y = ops::conv2d(x, wt, {}, 2, 1);
  EXPECT_TRUE(y.device().is_meta());
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 8, 9, 5}));
  EXPECT_DOUBLE_EQ(scope.flops(), 2.0 * 3 * 9 * 5 * 4 * 8 * 9);
}

TEST(Ops, TemporalConvEqualsConv1d) {
  const int64_t b = 2, t = 5, p = 4, c = 3, co = 6;
  auto x = torch::randn({b, t, p, c});
  auto w = torch::randn({co, c, 3});
  auto bias = torch::randn({co});
  auto y = ops::temporal_conv(x, w, bias);  // [B,T,P,Co]
  auto ref = torch::conv1d(x.permute({0, 2, 3, 1}).reshape({b * p, c, t}), w, bias, 1, 1);
  ref = ref.view({b, p, co, t}).permute({0, 3, 1, 2});
  EXPECT_TRUE(torch::allclose(y, ref, 1e-4, 1e-4));
  auto m = torch::TensorOptions().device(torch::kMeta);
  EXPECT_EQ(ops::conv1d(torch::empty({2, 3, 7}, m), torch::empty({4, 3, 3}, m), {}, 1, 1).sizes(),
            (std::vector<int64_t>{2, 4, 7}));
}

TEST(Ops, GroupNormOnMetaAndScopesNest) {
  auto m = torch::TensorOptions().device(torch::kMeta);
  ops::FlopCounterScope outer;
  {
    ops::FlopCounterScope inner;
    auto y = ops::group_norm(torch::empty({2, 8, 4, 4}, m), 4, torch::empty({8}, m),
                             torch::empty({8}, m));
    EXPECT_TRUE(y.device().is_meta());
    EXPECT_GT(inner.flops(), 0);
  }
  EXPECT_GT(outer.flops(), 0);
  EXPECT_EQ(outer.counts().ops, 1);
}

TEST(Ops, AttentionMatchesManualSoftmax) {
  auto q = torch::randn({1, 2, 3, 4}), k = torch::randn({1, 2, 5, 4}),
       v = torch::randn({1, 2, 5, 4});
  auto mask = torch::tensor({true, false, true, true, false}).view({1, 1, 1, 5});
  auto y = ops::attention(q, k, v, {}, mask);
  auto idx = torch::tensor({0, 2, 3});
  auto ks = k.index_select(2, idx), vs = v.index_select(2, idx);
  auto ref = torch::softmax(torch::matmul(q, ks.transpose(-2, -1)) / 2.0, -1).matmul(vs);
  EXPECT_TRUE(torch::allclose(y, ref, 1e-5, 1e-5));
}

// Inference splits large fp32 products into blocks on LibTorch's threads (ops.cpp). The blocks
// follow the shapes only: one thread and two give the same bits, and both match the whole
// products that run with autograd recording.
TEST(Ops, InferenceBlocksMatchWholeProductsWithAnyThreadCount) {
  torch::manual_seed(3);
  const auto x = torch::randn({4, 1000, 64});  // 4000 rows: many row blocks
  const auto w = torch::randn({192, 64}) * 0.1, b = torch::randn({192});
  // Two samples of 1100 queries: one sample's logits exceed a block, so queries split too.
  const auto q = torch::randn({2, 4, 1100, 16}), k = torch::randn({2, 4, 1100, 16}),
             v = torch::randn({2, 4, 1100, 16});
  const auto bias = torch::randn({1, 4, 1100, 1100});
  const auto mask = (torch::rand({2, 1, 1, 1100}) > 0.2).index_put_({"...", 0}, true);
  torch::Tensor whole_lin, whole_att;
  {
    torch::AutoGradMode grad(true);  // autograd on: the products run whole
    whole_lin = ops::linear(x, w, b).detach();
    whole_att = ops::attention(q, k, v, bias, mask).detach();
  }
  const int threads = at::get_num_threads();
  std::vector<torch::Tensor> lin, att;
  for (int n : {1, 2}) {
    at::set_num_threads(n);
    torch::NoGradGuard no_grad;
    lin.push_back(ops::linear(x, w, b));
    att.push_back(ops::attention(q, k, v, bias, mask));
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(lin[0], lin[1]));
  EXPECT_TRUE(torch::equal(att[0], att[1]));
  EXPECT_EQ(lin[0].sizes(), whole_lin.sizes());
  EXPECT_TRUE(torch::allclose(lin[0], whole_lin, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(att[0], whole_att, 1e-4, 1e-5));
  // The manual formula, for the attention with bias and mask.
  auto logits = torch::matmul(q, k.transpose(-2, -1)) / 4.0 + bias;
  logits.masked_fill_(mask.logical_not(), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(torch::allclose(att[0], torch::softmax(logits, -1).matmul(v), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(lin[0], torch::linear(x, w, b), 1e-4, 1e-4));
}

}  // namespace
}  // namespace vidfarm::models
