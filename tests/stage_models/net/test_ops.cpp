#include <gtest/gtest.h>

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

}  // namespace
}  // namespace vidfarm::models
