#include "vidfarm/stage_models/diffusion.h"

#include <algorithm>
#include <cmath>

namespace vidfarm::models {
namespace {

struct CosineCoeffs {
  double a;
  double b;
};

CosineCoeffs Coeffs(const CosineSchedule& s) {
  const double b = std::atan(std::exp(-s.logsnr_max / 2.0));
  const double a = std::atan(std::exp(-s.logsnr_min / 2.0)) - b;
  return {a, b};
}

// Numerically stable sigmoid in double.
double Sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace

double CosineSchedule::LogSnr(double t) const {
  const auto [a, b] = Coeffs(*this);
  t = std::clamp(t, 0.0, 1.0);
  const double l = -2.0 * std::log(std::tan(a * t + b));
  return std::clamp(l, logsnr_min, logsnr_max);
}

torch::Tensor CosineSchedule::LogSnr(const torch::Tensor& t) const {
  const auto [a, b] = Coeffs(*this);
  const auto td = t.to(torch::kDouble).clamp(0.0, 1.0);
  auto l = (-2.0 * torch::log(torch::tan(td * a + b))).clamp(logsnr_min, logsnr_max);
  return l.to(t.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat);
}

double CosineSchedule::TimeFromLogSnr(double logsnr) const {
  const auto [a, b] = Coeffs(*this);
  const double l = std::clamp(logsnr, logsnr_min, logsnr_max);
  return std::clamp((std::atan(std::exp(-l / 2.0)) - b) / a, 0.0, 1.0);
}

double AlphaFromLogSnr(double logsnr) { return std::sqrt(Sigmoid(logsnr)); }
double SigmaFromLogSnr(double logsnr) { return std::sqrt(Sigmoid(-logsnr)); }

torch::Tensor AlphaFromLogSnr(const torch::Tensor& logsnr) {
  return torch::sqrt(torch::sigmoid(logsnr));
}
torch::Tensor SigmaFromLogSnr(const torch::Tensor& logsnr) {
  return torch::sqrt(torch::sigmoid(-logsnr));
}

torch::Tensor BroadcastTo(const torch::Tensor& per_sample, const torch::Tensor& like) {
  auto v = per_sample.to(like.device(), like.scalar_type());
  if (v.dim() == 0) return v;
  std::vector<int64_t> shape(std::max<int64_t>(like.dim(), 1), 1);
  shape[0] = v.numel();
  return v.reshape(shape);
}

torch::Tensor Diffuse(const torch::Tensor& x, const torch::Tensor& eps, const torch::Tensor& alpha,
                      const torch::Tensor& sigma) {
  return alpha * x + sigma * eps;
}
torch::Tensor VTarget(const torch::Tensor& x, const torch::Tensor& eps, const torch::Tensor& alpha,
                      const torch::Tensor& sigma) {
  return alpha * eps - sigma * x;
}
torch::Tensor XFromV(const torch::Tensor& z, const torch::Tensor& v, const torch::Tensor& alpha,
                     const torch::Tensor& sigma) {
  return alpha * z - sigma * v;
}
torch::Tensor EpsFromV(const torch::Tensor& z, const torch::Tensor& v, const torch::Tensor& alpha,
                       const torch::Tensor& sigma) {
  return sigma * z + alpha * v;
}
torch::Tensor XFromEps(const torch::Tensor& z, const torch::Tensor& eps, const torch::Tensor& alpha,
                       const torch::Tensor& sigma) {
  return (z - sigma * eps) / alpha;
}

torch::Tensor PredictX(Parameterization p, const torch::Tensor& z, const torch::Tensor& out,
                       const torch::Tensor& logsnr) {
  const auto l = logsnr.to(torch::kDouble);
  const auto alpha = BroadcastTo(AlphaFromLogSnr(l), z);
  const auto sigma = BroadcastTo(SigmaFromLogSnr(l), z);
  return p == Parameterization::kV ? XFromV(z, out, alpha, sigma) : XFromEps(z, out, alpha, sigma);
}

torch::Tensor TrainingTarget(Parameterization p, const torch::Tensor& x, const torch::Tensor& eps,
                             const torch::Tensor& alpha, const torch::Tensor& sigma) {
  return p == Parameterization::kV ? VTarget(x, eps, alpha, sigma) : eps;
}

torch::Tensor DdimStep(const torch::Tensor& z_t, const torch::Tensor& x_hat, double logsnr_t,
                       double logsnr_s) {
  const double alpha_t = AlphaFromLogSnr(logsnr_t), sigma_t = SigmaFromLogSnr(logsnr_t);
  const double alpha_s = AlphaFromLogSnr(logsnr_s), sigma_s = SigmaFromLogSnr(logsnr_s);
  // z_s = α_s x̂ + (σ_s/σ_t)(z_t − α_t x̂), folded into two scalars.
  const double c = sigma_s / sigma_t;
  return z_t * c + x_hat * (alpha_s - c * alpha_t);
}

AncestralMoments AncestralPosterior(const torch::Tensor& z_t, const torch::Tensor& x_hat,
                                    double logsnr_t, double logsnr_s, double gamma) {
  const double alpha_t = AlphaFromLogSnr(logsnr_t), sigma_t = SigmaFromLogSnr(logsnr_t);
  const double alpha_s = AlphaFromLogSnr(logsnr_s), sigma_s = SigmaFromLogSnr(logsnr_s);
  const double r = std::exp(logsnr_t - logsnr_s);
  // 1 − r without cancellation when the step is small.
  const double one_minus_r = -std::expm1(logsnr_t - logsnr_s);
  AncestralMoments m;
  m.mean = z_t * (r * alpha_s / alpha_t) + x_hat * (one_minus_r * alpha_s);
  const double var_small = one_minus_r * sigma_s * sigma_s;
  const double var_large = one_minus_r * sigma_t * sigma_t;
  m.var = std::pow(var_small, 1.0 - gamma) * std::pow(var_large, gamma);
  return m;
}

torch::Tensor AncestralStep(const torch::Tensor& z_t, const torch::Tensor& x_hat, double logsnr_t,
                            double logsnr_s, double gamma, const torch::Tensor& noise) {
  auto m = AncestralPosterior(z_t, x_hat, logsnr_t, logsnr_s, gamma);
  return m.mean + noise * std::sqrt(std::max(m.var, 0.0));
}

torch::Tensor DistillationTarget(const torch::Tensor& z_t, const torch::Tensor& z_teacher_s,
                                 double logsnr_t, double logsnr_s) {
  const double alpha_t = AlphaFromLogSnr(logsnr_t), sigma_t = SigmaFromLogSnr(logsnr_t);
  const double alpha_s = AlphaFromLogSnr(logsnr_s), sigma_s = SigmaFromLogSnr(logsnr_s);
  const double c = sigma_s / sigma_t;
  return (z_teacher_s - z_t * c) / (alpha_s - c * alpha_t);
}

}  // namespace vidfarm::models
