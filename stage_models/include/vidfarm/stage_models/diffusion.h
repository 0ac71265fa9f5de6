// Continuous-time diffusion math (Imagen Video §2; Kingma et al. 2021; Salimans & Ho 2022):
// the cosine log-SNR schedule, v/ε parameterizations, one DDIM or ancestral step and the
// progressive-distillation target. Pure functions of tensors; no model, no loop.
#pragma once

#include <torch/torch.h>

namespace vidfarm::models {

// Continuous-time cosine log-SNR schedule, clipped to [logsnr_min, logsnr_max].
struct CosineSchedule {
  double logsnr_min = -20.0;  // Default: -20. λ at t = 1 (pure noise).
  double logsnr_max = 20.0;   // Default: 20. λ at t = 0 (clean data).

  // λ(t) = −2 log tan(a t + b), b = atan(exp(−λmax/2)), a = atan(exp(−λmin/2)) − b, computed in
  // double and clamped to [logsnr_min, logsnr_max]; t is clamped to [0, 1].
  double LogSnr(double t) const;
  // Elementwise; computed in double, returned as float32 (as double when t is double).
  torch::Tensor LogSnr(const torch::Tensor& t) const;
  // Inverse of LogSnr: t = (atan(exp(−λ/2)) − b) / a, with λ clamped to the schedule's range.
  double TimeFromLogSnr(double logsnr) const;
};

double AlphaFromLogSnr(double logsnr);  // sqrt(sigmoid(λ))
double SigmaFromLogSnr(double logsnr);  // sqrt(sigmoid(−λ))
torch::Tensor AlphaFromLogSnr(const torch::Tensor& logsnr);
torch::Tensor SigmaFromLogSnr(const torch::Tensor& logsnr);

// Broadcast a per-sample [B] tensor against x [B, ...] → [B,1,1,...], in x's dtype and device.
// A 0-dim tensor is returned as a 0-dim tensor (already broadcastable).
torch::Tensor BroadcastTo(const torch::Tensor& per_sample, const torch::Tensor& like);

enum class Parameterization { kV, kEps };

// All take per-sample alpha/sigma already broadcastable to x.
torch::Tensor Diffuse(const torch::Tensor& x, const torch::Tensor& eps, const torch::Tensor& alpha,
                      const torch::Tensor& sigma);  // z = αx + σε
torch::Tensor VTarget(const torch::Tensor& x, const torch::Tensor& eps, const torch::Tensor& alpha,
                      const torch::Tensor& sigma);  // v = αε − σx
torch::Tensor XFromV(const torch::Tensor& z, const torch::Tensor& v, const torch::Tensor& alpha,
                     const torch::Tensor& sigma);  // x = αz − σv
torch::Tensor EpsFromV(const torch::Tensor& z, const torch::Tensor& v, const torch::Tensor& alpha,
                       const torch::Tensor& sigma);  // ε = σz + αv
torch::Tensor XFromEps(const torch::Tensor& z, const torch::Tensor& eps, const torch::Tensor& alpha,
                       const torch::Tensor& sigma);  // x = (z − σε)/α

// Network output (v or ε) → x̂, with logsnr per sample [B] (α, σ computed in double, then cast
// to z's dtype).
torch::Tensor PredictX(Parameterization p, const torch::Tensor& z, const torch::Tensor& out,
                       const torch::Tensor& logsnr);
// The regression target of the network: v or ε.
torch::Tensor TrainingTarget(Parameterization p, const torch::Tensor& x, const torch::Tensor& eps,
                             const torch::Tensor& alpha, const torch::Tensor& sigma);

// One deterministic DDIM step from logsnr_t to logsnr_s (s later, i.e. less noisy):
// ε̂ = (z_t − α_t x̂)/σ_t; z_s = α_s x̂ + σ_s ε̂.
torch::Tensor DdimStep(const torch::Tensor& z_t, const torch::Tensor& x_hat, double logsnr_t,
                       double logsnr_s);

// Ancestral step (paper eq. 3–4): r = exp(λ_t − λ_s); mean = r(α_s/α_t) z_t + (1 − r) α_s x̂;
// var = ((1−r) σ_s²)^(1−γ) ((1−r) σ_t²)^γ; z_s = mean + sqrt(var)·noise.
// γ = 0 gives the "small" posterior variance (1−r)σ_s², γ = 1 the "large" one (1−r)σ_t².
struct AncestralMoments {
  torch::Tensor mean;
  double var;
};
AncestralMoments AncestralPosterior(const torch::Tensor& z_t, const torch::Tensor& x_hat,
                                    double logsnr_t, double logsnr_s, double gamma);
torch::Tensor AncestralStep(const torch::Tensor& z_t, const torch::Tensor& x_hat, double logsnr_t,
                            double logsnr_s, double gamma, const torch::Tensor& noise);

// Progressive-distillation target (Salimans & Ho 2022): the x̃ for which one student DDIM step
// t → s lands on the teacher's z_s: x̃ = (z_s − (σ_s/σ_t) z_t) / (α_s − (σ_s/σ_t) α_t).
torch::Tensor DistillationTarget(const torch::Tensor& z_t, const torch::Tensor& z_teacher_s,
                                 double logsnr_t, double logsnr_s);

}  // namespace vidfarm::models
