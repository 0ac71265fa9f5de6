// The diffusion math against /work/shared/testvectors/diffusion.json (NumPy, double precision,
// computed independently of this code).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vidfarm/stage_models/diffusion.h"
#include "vidfarm/stage_models/guidance.h"

namespace vidfarm::models {
namespace {

using nlohmann::json;

const json& Vectors() {
  static const json j = [] {
    std::ifstream in(std::string(VF_TESTVECTORS_DIR) + "/diffusion.json");
    EXPECT_TRUE(in.good()) << "cannot open diffusion.json under " << VF_TESTVECTORS_DIR;
    return json::parse(in);
  }();
  return j;
}

// float32 tolerance: ~1e-5 relative with a small absolute floor for values near zero.
constexpr double kRel = 1e-5;
constexpr double kAbs = 1e-6;

void ExpectClose(double actual, double expected, const std::string& what) {
  EXPECT_NEAR(actual, expected, kRel * std::abs(expected) + 1e-9) << what;
}

torch::Tensor Vec(const json& j, torch::Dtype dtype = torch::kDouble) {
  return torch::tensor(j.get<std::vector<double>>(), torch::dtype(torch::kDouble)).to(dtype);
}

void ExpectTensorClose(const torch::Tensor& actual, const json& expected, const std::string& what) {
  const auto e = expected.get<std::vector<double>>();
  const auto a = actual.to(torch::kDouble).contiguous().reshape({-1});
  ASSERT_EQ(a.numel(), static_cast<int64_t>(e.size())) << what;
  for (size_t i = 0; i < e.size(); ++i) {
    EXPECT_NEAR(a[i].item<double>(), e[i], kRel * std::abs(e[i]) + kAbs) << what << "[" << i << "]";
  }
}

CosineSchedule Schedule() {
  CosineSchedule s;
  s.logsnr_min = Vectors()["schedule"]["logsnr_min"].get<double>();
  s.logsnr_max = Vectors()["schedule"]["logsnr_max"].get<double>();
  return s;
}

double LogSnrAt(const json& section, const char* key) {
  return Schedule().LogSnr(section[key].get<double>());
}

TEST(Vectors, SchedulePointsScalar) {
  const auto s = Schedule();
  for (const auto& p : Vectors()["schedule"]["points"]) {
    const double t = p["t"].get<double>();
    const std::string at = "t=" + std::to_string(t);
    const double l = s.LogSnr(t);
    ExpectClose(l, p["logsnr"].get<double>(), "logsnr " + at);
    ExpectClose(AlphaFromLogSnr(l), p["alpha"].get<double>(), "alpha " + at);
    ExpectClose(SigmaFromLogSnr(l), p["sigma"].get<double>(), "sigma " + at);
  }
}

TEST(Vectors, SchedulePointsTensor) {
  const auto s = Schedule();
  std::vector<double> ts;
  json logsnr = json::array(), alpha = json::array(), sigma = json::array();
  for (const auto& p : Vectors()["schedule"]["points"]) {
    ts.push_back(p["t"].get<double>());
    logsnr.push_back(p["logsnr"]);
    alpha.push_back(p["alpha"]);
    sigma.push_back(p["sigma"]);
  }
  // The float32 path, as the samplers and training use it.
  const auto tf = torch::tensor(ts, torch::dtype(torch::kDouble)).to(torch::kFloat);
  const auto lf = s.LogSnr(tf);
  EXPECT_EQ(lf.scalar_type(), torch::kFloat);
  ExpectTensorClose(lf, logsnr, "float logsnr");
  ExpectTensorClose(AlphaFromLogSnr(lf), alpha, "float alpha");
  ExpectTensorClose(SigmaFromLogSnr(lf), sigma, "float sigma");
  const auto ld = s.LogSnr(torch::tensor(ts, torch::dtype(torch::kDouble)));
  EXPECT_EQ(ld.scalar_type(), torch::kDouble);
  ExpectTensorClose(ld, logsnr, "double logsnr");
}

TEST(Vectors, Parameterization) {
  const auto& v = Vectors()["parameterization"];
  const double l = LogSnrAt(v, "t");
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const std::string tag = dtype == torch::kDouble ? " (double)" : " (float)";
    const auto x = Vec(v["x"], dtype), eps = Vec(v["eps"], dtype);
    const auto alpha = torch::tensor(AlphaFromLogSnr(l), torch::dtype(dtype));
    const auto sigma = torch::tensor(SigmaFromLogSnr(l), torch::dtype(dtype));
    const auto z = Diffuse(x, eps, alpha, sigma);
    ExpectTensorClose(z, v["z_t"], "z_t" + tag);
    const auto vt = VTarget(x, eps, alpha, sigma);
    ExpectTensorClose(vt, v["v"], "v" + tag);
    ExpectTensorClose(TrainingTarget(Parameterization::kV, x, eps, alpha, sigma), v["v"],
                      "target v" + tag);
    ExpectTensorClose(TrainingTarget(Parameterization::kEps, x, eps, alpha, sigma), v["eps"],
                      "target eps" + tag);
    // Conversions from the reference z and v, then round trips through our own z and v.
    const auto zr = Vec(v["z_t"], dtype), vr = Vec(v["v"], dtype);
    ExpectTensorClose(XFromV(zr, vr, alpha, sigma), v["x_from_v"], "x_from_v" + tag);
    ExpectTensorClose(EpsFromV(zr, vr, alpha, sigma), v["eps_from_v"], "eps_from_v" + tag);
    ExpectTensorClose(XFromV(z, vt, alpha, sigma), v["x"], "x round trip" + tag);
    ExpectTensorClose(EpsFromV(z, vt, alpha, sigma), v["eps"], "eps round trip" + tag);
    ExpectTensorClose(XFromEps(zr, Vec(v["eps"], dtype), alpha, sigma), v["x"], "x_from_eps" + tag);
    // PredictX with a per-sample logsnr [1] on a batch of one.
    const auto ls = torch::full({1}, l, torch::dtype(dtype));
    ExpectTensorClose(PredictX(Parameterization::kV, zr.unsqueeze(0), vr.unsqueeze(0), ls), v["x"],
                      "PredictX v" + tag);
    ExpectTensorClose(
        PredictX(Parameterization::kEps, zr.unsqueeze(0), Vec(v["eps"], dtype).unsqueeze(0), ls),
        v["x"], "PredictX eps" + tag);
  }
}

TEST(Vectors, DdimStep) {
  const auto& v = Vectors()["ddim_step"];
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const auto zs =
        DdimStep(Vec(v["z_t"], dtype), Vec(v["x_hat"], dtype), LogSnrAt(v, "t"), LogSnrAt(v, "s"));
    EXPECT_EQ(zs.scalar_type(), dtype);
    ExpectTensorClose(zs, v["z_s"], "ddim z_s");
  }
}

TEST(Vectors, AncestralStepByGamma) {
  const auto& v = Vectors()["ancestral_step"];
  const double lt = LogSnrAt(v, "t"), ls = LogSnrAt(v, "s");
  ASSERT_EQ(v["by_gamma"].size(), 3u);
  for (const auto& g : v["by_gamma"]) {
    const double gamma = g["gamma"].get<double>();
    const std::string tag = " gamma=" + std::to_string(gamma);
    for (auto dtype : {torch::kDouble, torch::kFloat}) {
      const auto z_t = Vec(v["z_t"], dtype), x_hat = Vec(v["x_hat"], dtype);
      const auto m = AncestralPosterior(z_t, x_hat, lt, ls, gamma);
      ExpectTensorClose(m.mean, v["mean"], "mean" + tag);
      ExpectClose(m.var, g["var"].get<double>(), "var" + tag);
      ExpectTensorClose(AncestralStep(z_t, x_hat, lt, ls, gamma, Vec(v["noise"], dtype)), g["z_s"],
                        "z_s" + tag);
    }
  }
}

TEST(Vectors, AncestralVarianceEndpoints) {
  const auto& v = Vectors()["ancestral_step"];
  const double lt = LogSnrAt(v, "t"), ls = LogSnrAt(v, "s");
  // Independently of the library's formula: σ² = sigmoid(−λ) = 1/(1+e^λ).
  const double r = std::exp(lt - ls);
  const double sigma2_s = 1.0 / (1.0 + std::exp(ls)), sigma2_t = 1.0 / (1.0 + std::exp(lt));
  const auto z_t = Vec(v["z_t"]), x_hat = Vec(v["x_hat"]);
  const double small = AncestralPosterior(z_t, x_hat, lt, ls, 0.0).var;
  const double large = AncestralPosterior(z_t, x_hat, lt, ls, 1.0).var;
  ExpectClose(small, (1.0 - r) * sigma2_s, "gamma=0 is the small posterior variance");
  ExpectClose(large, (1.0 - r) * sigma2_t, "gamma=1 is the large posterior variance");
  ExpectClose(small, v["var_small (gamma=0)"].get<double>(), "var_small");
  ExpectClose(large, v["var_large (gamma=1)"].get<double>(), "var_large");
  EXPECT_LT(small, large);
}

TEST(Vectors, GuidanceByW) {
  const auto& v = Vectors()["guidance"];
  ASSERT_EQ(v["by_w"].size(), 4u);
  for (const auto& g : v["by_w"]) {
    const double w = g["w"].get<double>();
    for (auto dtype : {torch::kDouble, torch::kFloat}) {
      ExpectTensorClose(CombineGuidance(Vec(v["x_cond"], dtype), Vec(v["x_uncond"], dtype), w),
                        g["x"], "guided x w=" + std::to_string(w));
    }
  }
}

TEST(Vectors, DynamicThresholdingByP) {
  const auto& v = Vectors()["dynamic_thresholding"];
  const auto rows = v["x"].get<std::vector<std::vector<double>>>();
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(v["by_p"].size(), 3u);
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const auto x = torch::tensor(rows[0], torch::dtype(torch::kDouble)).to(dtype).reshape({1, -1});
    for (const auto& g : v["by_p"]) {
      const double p = g["p"].get<double>();
      const std::string tag = " p=" + std::to_string(p);
      const auto s = DynamicThresholdScale(x, p);
      ASSERT_EQ(s.sizes(), torch::IntArrayRef({1}));
      EXPECT_NEAR(s.item<double>(), g["s"].get<double>(), kRel * g["s"].get<double>())
          << "s" << tag;
      const auto out = DynamicThreshold(x, p);
      EXPECT_EQ(out.sizes(), x.sizes());
      ExpectTensorClose(out, g["x_out"], "x_out" + tag);
    }
  }
}

TEST(Vectors, DistillationTarget) {
  const auto& v = Vectors()["distillation_target"];
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    ExpectTensorClose(DistillationTarget(Vec(v["z_t"], dtype), Vec(v["z_teacher_at_s"], dtype),
                                         LogSnrAt(v, "t"), LogSnrAt(v, "s")),
                      v["x_target"], "x_target");
  }
}

TEST(Vectors, DistillationTargetIsTheOneStepDdimPreimage) {
  // A student DDIM step t → s taken with x̃ must land on the teacher's z_s.
  const auto& v = Vectors()["distillation_target"];
  const double lt = LogSnrAt(v, "t"), ls = LogSnrAt(v, "s");
  const auto z_t = Vec(v["z_t"]);
  const auto x = DistillationTarget(z_t, Vec(v["z_teacher_at_s"]), lt, ls);
  ExpectTensorClose(DdimStep(z_t, x, lt, ls), v["z_teacher_at_s"], "student lands on teacher");
}

}  // namespace
}  // namespace vidfarm::models
