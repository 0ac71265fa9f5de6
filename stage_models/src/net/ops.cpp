#include "vidfarm/stage_models/ops.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>

namespace vidfarm::models::ops {
namespace {

thread_local FlopCounterScope* g_scope = nullptr;

double Bytes(const torch::Tensor& t) {
  return static_cast<double>(t.numel()) * static_cast<double>(t.element_size());
}

bool IsMeta(const torch::Tensor& t) { return t.device().is_meta(); }

int64_t ConvOut(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  return (in + 2 * pad - (k - 1) - 1) / stride + 1;
}

// Debian's LibTorch does its fp32 matrix products in OpenBLAS, which SetComputeThreads pins to one
// thread (its own pool fights LibTorch's OpenMP team on two cores). Inference on the CPU instead
// cuts the large products into blocks run on LibTorch's threads, one single-threaded BLAS call
// each. Every block boundary follows from the shapes alone, never from the thread count, so the
// numbers are the same with one thread or many (direct, farm and resumed renders stay identical).
// With autograd recording (training) the products run whole, as LibTorch does them.
bool SplitOnThreads(const torch::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat && !torch::GradMode::is_enabled();
}

// Runs fn(i) for i in [0, n) on LibTorch's threads, each with grad off and the caller's inference
// mode (both are thread-local, and the pool's threads do not inherit them). Only called with grad
// off (SplitOnThreads).
template <typename Fn>
void ParallelBlocks(int64_t n, const Fn& fn) {
  const bool inference = c10::InferenceMode::is_enabled();
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    c10::InferenceMode im(inference);
    torch::NoGradGuard no_grad;
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

// Multiply-adds per block of a split product: a few hundred microseconds of one core, enough to
// amortise the call and small enough to give two threads several blocks each.
constexpr int64_t kBlockMacs = int64_t{1} << 21;

}  // namespace

FlopCounterScope::FlopCounterScope() : prev_(g_scope) { g_scope = this; }

FlopCounterScope::~FlopCounterScope() {
  g_scope = prev_;
  if (prev_ != nullptr) {
    prev_->counts_.flops += counts_.flops;
    prev_->counts_.activation_bytes += counts_.activation_bytes;
    prev_->counts_.ops += counts_.ops;
  }
}

bool Counting() { return g_scope != nullptr; }

void Count(double flops, const torch::Tensor& out) {
  if (g_scope == nullptr) return;
  g_scope->counts_.flops += flops;
  if (out.defined()) g_scope->counts_.activation_bytes += Bytes(out);
  g_scope->counts_.ops += 1;
}

torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                     int64_t stride, int64_t padding, int64_t groups) {
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4, "conv2d expects 4-D input and weight");
  TORCH_CHECK(x.size(1) == w.size(1) * groups, "conv2d: input has ", x.size(1),
              " channels, weight expects ", w.size(1) * groups);
  torch::Tensor out;
  if (IsMeta(x) || IsMeta(w)) {
    const int64_t oh = ConvOut(x.size(2), w.size(2), stride, padding);
    const int64_t ow = ConvOut(x.size(3), w.size(3), stride, padding);
    TORCH_CHECK(oh > 0 && ow > 0, "conv2d: input too small");
    out = torch::empty({x.size(0), w.size(0), oh, ow}, x.options());
  } else {
    // Channels-last is ~2x faster for the 3x3 convs on CPU (oneDNN) and is what cuDNN prefers.
    const auto xin = x.contiguous(torch::MemoryFormat::ChannelsLast);
    out = torch::conv2d(xin, w, b, {stride, stride}, {padding, padding}, {1, 1}, groups);
  }
  const double macs = static_cast<double>(out.numel()) * static_cast<double>(w.size(1)) *
                      static_cast<double>(w.size(2) * w.size(3));
  Count(2.0 * macs + (b.defined() ? static_cast<double>(out.numel()) : 0.0), out);
  return out;
}

torch::Tensor conv1d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                     int64_t stride, int64_t padding) {
  TORCH_CHECK(x.dim() == 3 && w.dim() == 3, "conv1d expects 3-D input and weight");
  TORCH_CHECK(x.size(1) == w.size(1), "conv1d: input has ", x.size(1), " channels, weight expects ",
              w.size(1));
  torch::Tensor out;
  if (IsMeta(x) || IsMeta(w)) {
    const int64_t ol = ConvOut(x.size(2), w.size(2), stride, padding);
    TORCH_CHECK(ol > 0, "conv1d: input too small");
    out = torch::empty({x.size(0), w.size(0), ol}, x.options());
  } else {
    out = torch::conv1d(x, w, b, {stride}, {padding});
  }
  const double macs = static_cast<double>(out.numel()) * static_cast<double>(w.size(1) * w.size(2));
  Count(2.0 * macs + (b.defined() ? static_cast<double>(out.numel()) : 0.0), out);
  return out;
}

torch::Tensor temporal_conv(const torch::Tensor& x, const torch::Tensor& w,
                            const torch::Tensor& b) {
  TORCH_CHECK(x.dim() >= 3 && w.dim() == 3, "temporal_conv expects [...,T,P,C] and [Cout,Cin,k]");
  TORCH_CHECK(x.size(-1) == w.size(1), "temporal_conv: input has ", x.size(-1),
              " channels, weight expects ", w.size(1));
  const int64_t k = w.size(2);
  TORCH_CHECK(k % 2 == 1, "temporal_conv: odd kernel expected");
  const int64_t pad = k / 2;
  const int64_t t = x.size(-3);
  torch::Tensor stacked;
  if (k == 1) {
    stacked = x;
  } else {
    const auto padded = torch::constant_pad_nd(x, {0, 0, 0, 0, pad, pad});
    std::vector<torch::Tensor> shifted;
    shifted.reserve(k);
    for (int64_t i = 0; i < k; ++i) shifted.push_back(padded.narrow(-3, i, t));
    stacked = torch::cat(shifted, -1);  // [..., T, P, k*Cin], tap-major
  }
  // Conv1d weight [Cout,Cin,k] -> [Cout, k*Cin] in the same tap-major order.
  const auto wm = w.permute({0, 2, 1}).reshape({w.size(0), k * w.size(1)});
  // ops::linear counts the same FLOPs (k·Cin multiply-adds per output) and splits the product
  // across threads at inference.
  return linear(stacked, wm, b);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  TORCH_CHECK(x.size(-1) == w.size(1), "linear: input has ", x.size(-1),
              " features, weight expects ", w.size(1));
  torch::Tensor out;
  const int64_t in = w.size(1), feats = w.size(0);
  const int64_t rows = x.numel() / std::max<int64_t>(in, 1);
  const int64_t block = std::max<int64_t>(16, kBlockMacs / std::max<int64_t>(in * feats, 1));
  if (!IsMeta(x) && SplitOnThreads(x) && rows >= 2 * block) {
    // Row blocks of x·wᵀ + b, each written in place into its rows of the output.
    const auto x2 = x.reshape({rows, in}).contiguous();
    const auto wt = w.t();
    auto o2 = torch::empty({rows, feats}, x.options());
    ParallelBlocks((rows + block - 1) / block, [&](int64_t i) {
      const int64_t r0 = i * block, len = std::min(block, rows - r0);
      auto o = o2.narrow(0, r0, len);
      if (b.defined()) {
        torch::addmm_out(o, b, x2.narrow(0, r0, len), wt);
      } else {
        torch::mm_out(o, x2.narrow(0, r0, len), wt);
      }
    });
    auto sizes = x.sizes().vec();
    sizes.back() = feats;
    out = o2.view(sizes);
  } else {
    out = torch::linear(x, w, b);
  }
  const double macs = static_cast<double>(out.numel()) * static_cast<double>(w.size(1));
  Count(2.0 * macs + (b.defined() ? static_cast<double>(out.numel()) : 0.0), out);
  return out;
}

torch::Tensor group_norm(const torch::Tensor& x, int64_t groups, const torch::Tensor& w,
                         const torch::Tensor& b, double eps) {
  TORCH_CHECK(x.dim() >= 2 && x.size(1) % groups == 0, "group_norm: ", x.size(1),
              " channels not divisible into ", groups, " groups");
  torch::Tensor out;
  if (IsMeta(x)) {
    out = torch::empty_like(x);
  } else {
    // Under autocast (bf16 training) activations arrive in bf16 while the affine parameters stay
    // f32; LibTorch 1.13's CPU kernel wants one dtype, and norms belong in f32 anyway.
    const bool mixed = w.defined() && w.scalar_type() != x.scalar_type();
    out = torch::group_norm(mixed ? x.to(w.scalar_type()) : x, groups, w, b, eps,
                            /*cudnn_enabled=*/true);
  }
  Count(5.0 * static_cast<double>(out.numel()), out);
  return out;
}

torch::Tensor silu(const torch::Tensor& x) {
  auto out = torch::silu(x);
  Count(static_cast<double>(out.numel()), out);
  return out;
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& bias, const torch::Tensor& mask) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention expects [N,h,L,d]");
  TORCH_CHECK(q.size(-1) == k.size(-1) && k.size(-2) == v.size(-2), "attention: shape mismatch");
  const int64_t n = q.size(0), heads = q.size(1), lq = q.size(2), lk = k.size(2);
  // The scale goes on q (L·d values) rather than on the logits (L·L values).
  const auto qs = q * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  const auto kt = k.transpose(-2, -1);
  // The logits are the largest tensor of the network; on the CPU they are computed a few
  // samples at a time so each chunk stays cache-sized, with bias, mask and softmax applied to
  // the chunk in place. Meta and GPU tensors go in one piece.
  const int64_t per_sample = heads * lq * lk * static_cast<int64_t>(q.element_size());
  const int64_t budget = q.device().is_cpu() ? (int64_t{16} << 20) : (int64_t{1} << 40);
  const int64_t step = std::clamp<int64_t>(budget / std::max<int64_t>(per_sample, 1), 1, n);
  auto slice = [](const torch::Tensor& t, int64_t i, int64_t len) {
    return t.size(0) == 1 ? t : t.narrow(0, i, len);  // broadcast along the batch stays put
  };
  // One block of samples [i, i+len) and query rows [r, r+rows): bias, mask and softmax applied to
  // its logits in place.
  auto block = [&](int64_t i, int64_t len, int64_t r, int64_t rows) {
    auto rows_of = [&](const torch::Tensor& t) {
      return rows == lq || t.size(-2) == 1 ? t : t.narrow(-2, r, rows);
    };
    auto logits = torch::matmul(rows_of(qs.narrow(0, i, len)), kt.narrow(0, i, len));
    if (bias.defined()) logits.add_(rows_of(slice(bias, i, len)));
    if (mask.defined()) {
      logits.masked_fill_(rows_of(slice(mask, i, len)).bitwise_not(),
                          -std::numeric_limits<float>::infinity());
    }
    return torch::matmul(torch::softmax(logits, -1), v.narrow(0, i, len));
  };
  torch::Tensor out;
  if (IsMeta(q)) {  // shapes only (plan): no kernel runs
    out = torch::empty({n, heads, lq, v.size(-1)}, q.options());
  } else if (SplitOnThreads(q)) {
    // Inference: blocks of at most half the budget (two threads' blocks together stay
    // cache-sized) and at least four of them where there are samples enough, across samples
    // and, when one sample's logits exceed that, across query rows.
    const int64_t half = budget / 2;
    const int64_t per_row = heads * lk * static_cast<int64_t>(q.element_size());
    const int64_t len =
        std::clamp<int64_t>(half / std::max<int64_t>(per_sample, 1), 1, (n + 3) / 4);
    const int64_t rows =
        len > 1 ? lq : std::clamp<int64_t>(half / std::max<int64_t>(per_row, 1), 1, lq);
    const int64_t sample_blocks = (n + len - 1) / len, row_blocks = (lq + rows - 1) / rows;
    out = torch::empty({n, heads, lq, v.size(-1)}, q.options());
    ParallelBlocks(sample_blocks * row_blocks, [&](int64_t b) {
      const int64_t i = (b / row_blocks) * len, r = (b % row_blocks) * rows;
      const int64_t l = std::min(len, n - i), nr = std::min(rows, lq - r);
      out.narrow(0, i, l).narrow(2, r, nr).copy_(block(i, l, r, nr));
    });
  } else {
    std::vector<torch::Tensor> outs;
    for (int64_t i = 0; i < n; i += step) outs.push_back(block(i, std::min(step, n - i), 0, lq));
    out = outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
  }
  const double nl = static_cast<double>(n * heads * lq * lk);
  // QK^T and PV: 2 FLOPs per multiply-add each; scale, bias, mask and softmax ~5 per logit.
  if (Counting()) {
    Count(2.0 * nl * static_cast<double>(q.size(-1)) + 5.0 * nl,
          torch::empty({n, heads, lq, lk}, q.options().device(torch::kMeta)));
  }
  Count(2.0 * nl * static_cast<double>(v.size(-1)), out);
  return out;
}

torch::Tensor upsample_nearest2x(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "upsample_nearest2x expects [N,C,H,W]");
  auto out = torch::upsample_nearest2d(x, std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2});
  Count(0.0, out);
  return out;
}

torch::Tensor add(const torch::Tensor& a, const torch::Tensor& b) {
  auto out = a + b;
  Count(static_cast<double>(out.numel()), out);
  return out;
}

torch::Tensor mul(const torch::Tensor& a, const torch::Tensor& b) {
  auto out = a * b;
  Count(static_cast<double>(out.numel()), out);
  return out;
}

torch::Tensor scale_shift(const torch::Tensor& x, const torch::Tensor& scale,
                          const torch::Tensor& shift) {
  auto out = torch::addcmul(shift, x, scale);
  Count(2.0 * static_cast<double>(out.numel()), out);
  return out;
}

torch::Tensor cat(const std::vector<torch::Tensor>& xs, int64_t dim) {
  auto out = torch::cat(xs, dim);
  Count(0.0, out);
  return out;
}

}  // namespace vidfarm::models::ops
