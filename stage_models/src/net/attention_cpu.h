// Fused fp32 attention for the CPU (private to the network library).
#pragma once

#include <torch/torch.h>

namespace vidfarm::models::ops::detail {

// Whether FusedAttentionCpu handles these inputs (fp32 CPU tensors, k/v with q's batch and heads)
// and is expected to beat matmul/softmax/matmul for them.
bool UseFusedAttentionCpu(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& bias, const torch::Tensor& mask);

// softmax(q k^T / sqrt(d) + bias, masked) v without materialising the logits: key blocks are
// streamed past each block of query rows with a running max and sum (online softmax). Same
// contract as ops::attention, including NaN for a row whose keys are all masked. The result for
// a (sample, head) does not depend on the batch size or the thread count. The result is a
// [N,h,Lq,dv] view of [N,Lq,h,dv] memory (not contiguous).
// portable_only skips the AVX2+FMA kernels even where the CPU has them (for tests).
torch::Tensor FusedAttentionCpu(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, const torch::Tensor& bias,
                                const torch::Tensor& mask, bool portable_only = false);

}  // namespace vidfarm::models::ops::detail
