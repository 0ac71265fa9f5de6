// Functional building blocks of the stage networks. Every layer goes through these so that
//  (a) forward FLOPs and output-activation bytes are counted while a FlopCounterScope is alive, and
//  (b) the network runs on the meta device (LibTorch 1.13 has no meta kernels for convolution or
//      group norm, so those compute the output shape here and return an empty meta tensor).
// FLOP convention: a multiply-add is 2 FLOPs (conv, linear, matmul); normalisation, activation and
// elementwise ops count one FLOP per output element (small next to the matmuls).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace vidfarm::models::ops {

struct FlopCounts {
  double flops = 0;  // forward FLOPs
  double activation_bytes =
      0;            // bytes of every op output (what training keeps without checkpointing)
  int64_t ops = 0;  // number of counted ops
};

// Counts the ops run on this thread while alive. Scopes nest; an inner scope's counts are also
// added to the enclosing one when it ends.
class FlopCounterScope {
 public:
  FlopCounterScope();
  ~FlopCounterScope();
  FlopCounterScope(const FlopCounterScope&) = delete;
  FlopCounterScope& operator=(const FlopCounterScope&) = delete;

  const FlopCounts& counts() const { return counts_; }
  double flops() const { return counts_.flops; }
  double activation_bytes() const { return counts_.activation_bytes; }

 private:
  friend void Count(double flops, const torch::Tensor& out);
  FlopCounts counts_;
  FlopCounterScope* prev_;
};

// Adds `flops` and the bytes of `out` to the active scope (no-op without one).
void Count(double flops, const torch::Tensor& out);
bool Counting();

// x [N,Cin,H,W], w [Cout,Cin/groups,kh,kw], b [Cout] or undefined. Output channels-last on CPU
// when the input is.
torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                     int64_t stride = 1, int64_t padding = 0, int64_t groups = 1);
// x [N,Cin,L], w [Cout,Cin,k], b [Cout] or undefined.
torch::Tensor conv1d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                     int64_t stride = 1, int64_t padding = 0);
// Temporal convolution on a channels-last sequence: x [..., T, P, Cin] (dimension -3 is time,
// -2 any number of independent positions), w [Cout,Cin,k] (a Conv1d weight), zero padding k/2.
// Same result and FLOPs as conv1d over T, computed as one GEMM without transposing the video.
torch::Tensor temporal_conv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
// x [..., in], w [out,in], b [out] or undefined.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
// x [N,C,...]; statistics per sample and group.
torch::Tensor group_norm(const torch::Tensor& x, int64_t groups, const torch::Tensor& w,
                         const torch::Tensor& b, double eps = 1e-5);
torch::Tensor silu(const torch::Tensor& x);
// Scaled dot-product attention. q [N,h,Lq,d], k/v [N,h,Lk,d]; bias broadcastable to
// [N,h,Lq,Lk] (added to the logits) or undefined; mask bool broadcastable to [N,h,Lq,Lk], true =
// attend, or undefined. Rows with every key masked give NaN: callers keep one key always present.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& bias = {}, const torch::Tensor& mask = {});
// Nearest-neighbour 2x upsampling of [N,C,H,W].
torch::Tensor upsample_nearest2x(const torch::Tensor& x);
torch::Tensor add(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor mul(const torch::Tensor& a, const torch::Tensor& b);
// x * scale + shift in one pass (FiLM conditioning).
torch::Tensor scale_shift(const torch::Tensor& x, const torch::Tensor& scale,
                          const torch::Tensor& shift);
torch::Tensor cat(const std::vector<torch::Tensor>& xs, int64_t dim);

}  // namespace vidfarm::models::ops
