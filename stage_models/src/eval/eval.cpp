// `vidfarm eval`: renders prompts of the synthetic world's grammar through the cascade and scores
// the results against exact ground truth. See eval.h for what each part measures.
#include "vidfarm/stage_models/eval.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "vidfarm/common/hash.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/plot.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/stage_models/cascade.h"
#include "vidfarm/stage_models/conditioning.h"
#include "vidfarm/stage_models/noise.h"
#include "vidfarm/stage_models/synth.h"

namespace vidfarm::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kFidelitySalt = 0xf1de11e7ULL;
constexpr uint64_t kTruthBaseSalt = 0x7b0a5e11ULL;
constexpr int kContactSheets = 3;  // prompts whose every stage is shown
constexpr size_t kTrueBaseSheets = 2;  // the same for part 7
constexpr int64_t kBatch = 4;      // prompts per stage call

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// ---- Prompts ----

Result<std::vector<std::string>> LoadPrompts(const EvalOptions& o) {
  std::vector<std::string> prompts;
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    if (!in) return Status::NotFound(fmt::format("prompts file {} not found", o.prompts_file));
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
      prompts.push_back(line);
    }
    if (prompts.empty()) {
      return Status::InvalidArgument(fmt::format("{} holds no prompts", o.prompts_file));
    }
    if (o.samples > 0 && static_cast<int>(prompts.size()) > o.samples) prompts.resize(o.samples);
    return prompts;
  }
  for (int i = 0; i < o.samples; ++i) {
    prompts.push_back(synth::Caption(synth::RandomScene(o.seed, static_cast<uint64_t>(i))));
  }
  return prompts;
}

// ---- The cascade, batched ----

struct ChainResult {
  std::vector<Video> finals;                   // one per prompt
  std::vector<std::vector<Video>> per_stage;   // [prompt < keep][stage]
  double seconds = 0;
};

// Runs stages first..last for every prompt, kBatch prompts per call; prompt i uses keyed noise
// sample i of `seed`. With first > 0, inputs[i] is prompt i's input to stage `first`. Keeps every
// stage's output of the first `keep` prompts.
Result<ChainResult> RunChain(Cascade& cascade, const std::vector<std::string>& prompts,
                             uint64_t seed, int last, const std::vector<StageSettings>& settings,
                             int keep, const std::function<void(const std::string&)>& progress,
                             const std::string& what, int first = 0,
                             const std::vector<Video>& inputs = {}) {
  if (first > 0 && inputs.size() != prompts.size()) {
    return Status::InvalidArgument("RunChain: one input per prompt is needed after stage 0");
  }
  ChainResult r;
  r.per_stage.resize(std::min<size_t>(keep, prompts.size()));
  const auto start = Clock::now();
  const int64_t n = static_cast<int64_t>(prompts.size());
  for (int64_t b0 = 0; b0 < n; b0 += kBatch) {
    const int64_t len = std::min(kBatch, n - b0);
    std::vector<Video> current;
    if (first > 0) current.assign(inputs.begin() + b0, inputs.begin() + b0 + len);
    for (int k = first; k <= last; ++k) {
      StageRequest req;
      req.prompts.assign(prompts.begin() + b0, prompts.begin() + b0 + len);
      for (int64_t i = 0; i < len; ++i) req.sample_indices.push_back(b0 + i);
      req.seed = seed;
      if (k > 0) req.inputs = std::move(current);
      VF_ASSIGN_OR_RETURN(current, cascade.stage(k).Run(req, settings[k]));
      for (int64_t i = 0; i < len; ++i) {
        if (b0 + i < static_cast<int64_t>(r.per_stage.size())) {
          r.per_stage[b0 + i].push_back(current[i]);
        }
      }
    }
    for (auto& v : current) r.finals.push_back(std::move(v));
    if (progress) {
      progress(fmt::format("{}: {}/{} prompts ({:.0f} s)", what, b0 + len, n, Seconds(start)));
    }
  }
  r.seconds = Seconds(start);
  return r;
}

// ---- Scores ----

struct Confusion {
  std::vector<std::string> labels;
  std::vector<std::vector<double>> counts;
  explicit Confusion(std::vector<std::string> l)
      : labels(std::move(l)), counts(labels.size(), std::vector<double>(labels.size(), 0)) {}
  void Add(int truth, int predicted) { counts[truth][predicted] += 1; }
  json ToJson() const { return {{"labels", labels}, {"rows_true_cols_predicted", counts}}; }
};

std::vector<std::string> ColourLabels() {
  std::vector<std::string> l;
  for (int c = 0; c < synth::kNumColours; ++c) l.push_back(synth::ColourName(static_cast<synth::Colour>(c)));
  return l;
}
std::vector<std::string> MotionLabels() {
  std::vector<std::string> l;
  for (int m = 0; m < synth::kNumMotions; ++m) l.push_back(synth::MotionName(static_cast<synth::Motion>(m)));
  return l;
}
const std::vector<std::string> kShapeKinds = {"circle", "square", "triangle", "star", "letter",
                                              "digit"};
const std::vector<std::string> kBackgroundKinds = {"black", "colour", "gradient", "painted"};

int BackgroundClass(const synth::Attributes& a) {
  switch (a.background) {
    case synth::BackgroundKind::kPlain: return a.background_black ? 0 : 1;
    case synth::BackgroundKind::kGradient: return 2;
    case synth::BackgroundKind::kPainted: return 3;
  }
  return 0;
}
bool SameBackground(const synth::Attributes& a, const synth::Attributes& b) {
  if (BackgroundClass(a) != BackgroundClass(b)) return false;
  return BackgroundClass(a) != 1 || a.background_colour == b.background_colour;
}

struct AlignmentScore {
  int n = 0, colour = 0, shape = 0, motion = 0, background = 0, all = 0;
  double consistency_sum = 0;
  Confusion colours{ColourLabels()}, motions{MotionLabels()}, shapes{kShapeKinds},
      backgrounds{kBackgroundKinds};
  json per_prompt = json::array();

  static double Rate(int k, int n) { return n > 0 ? static_cast<double>(k) / n : 0.0; }
  json Summary() const {
    return {{"n", n},
            {"colour", Rate(colour, n)},
            {"shape", Rate(shape, n)},
            {"motion", Rate(motion, n)},
            {"background", Rate(background, n)},
            {"all_attributes", Rate(all, n)}};
  }
};

// Scores one video against its prompt (skipped when the prompt is outside the grammar).
Status Score(const std::string& prompt, const Video& video, AlignmentScore* s, bool detail) {
  auto truth = synth::ParseCaption(prompt);
  if (!truth.ok()) {
    if (detail) s->per_prompt.push_back({{"prompt", prompt}, {"skipped", truth.status().message()}});
    return Status::OK();
  }
  VF_ASSIGN_OR_RETURN(synth::Analysis an, synth::Analyze(video));
  const synth::Attributes& a = an.attributes;
  const bool colour = a.colour == truth->colour;
  const bool shape = a.shape == truth->shape;
  const bool motion = a.motion == truth->motion;
  const bool bg = SameBackground(a, *truth);
  s->n += 1;
  s->colour += colour;
  s->shape += shape;
  s->motion += motion;
  s->background += bg;
  s->all += colour && shape && motion && bg;
  s->colours.Add(static_cast<int>(truth->colour), static_cast<int>(a.colour));
  s->motions.Add(static_cast<int>(truth->motion), static_cast<int>(a.motion));
  s->shapes.Add(static_cast<int>(truth->shape.kind), static_cast<int>(a.shape.kind));
  s->backgrounds.Add(BackgroundClass(*truth), BackgroundClass(a));
  double consistent = 0;
  for (bool f : an.frame_consistent) consistent += f ? 1 : 0;
  const double frac = an.frame_consistent.empty()
                          ? 0.0
                          : consistent / static_cast<double>(an.frame_consistent.size());
  s->consistency_sum += frac;
  if (detail) {
    s->per_prompt.push_back({{"prompt", prompt},
                             {"analyzed", synth::Caption(a)},
                             {"colour", colour},
                             {"shape", shape},
                             {"motion", motion},
                             {"background", bg},
                             {"temporal_consistency", frac}});
  }
  return Status::OK();
}

double SaturatedFraction(const std::vector<Video>& videos) {
  double sat = 0, total = 0;
  for (const Video& v : videos) {
    for (float x : v.data) sat += std::abs(x) >= 0.98f ? 1 : 0;
    total += static_cast<double>(v.data.size());
  }
  return total > 0 ? sat / total : 0.0;
}

torch::Tensor Luma(const torch::Tensor& v) {  // [C,T,H,W] → [T,1,H,W]
  torch::Tensor y = v.size(0) == 3 ? 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2] : v[0];
  return y.unsqueeze(1).to(torch::kFloat32);
}

// The frames a TSR stage invents: every index not a multiple of the factor.
torch::Tensor NewFrames(const torch::Tensor& v, int factor) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < v.size(1); ++i) {
    if (i % factor != 0) idx.push_back(i);
  }
  return v.index_select(1, torch::tensor(idx, torch::kLong));
}

// Examples [b0, b0 + len) of a fidelity set as one stage request (sample index = example index).
StageRequest SliceRequest(const std::vector<std::string>& prompts, const std::vector<Video>& inputs,
                          size_t b0, size_t len, uint64_t seed) {
  StageRequest req;
  req.prompts.assign(prompts.begin() + b0, prompts.begin() + b0 + len);
  req.inputs.assign(inputs.begin() + b0, inputs.begin() + b0 + len);
  for (size_t i = 0; i < len; ++i) req.sample_indices.push_back(static_cast<int64_t>(b0 + i));
  req.seed = seed;
  return req;
}

// How well stage k denoises at each noise level, given ground-truth input: the PSNR of one x̂
// (z = α·x + σ·ε at log-SNR λ) against the truth (TSR: on the new frames), next to the PSNR of z/α
// (the noisy video itself). Where x̂ falls below the stage's naive upsampling at high λ, the
// sampler's last steps leave noise the network does not remove.
Result<json> DenoisingCurve(Cascade& cascade, int k, const std::vector<std::string>& prompts,
                            const std::vector<Video>& inputs, const std::vector<Video>& targets,
                            uint64_t seed) {
  const StageSpec& spec = cascade.stage(k).spec();
  const bool tsr = spec.kind == StageKind::kTemporalSR;
  auto frames = [&](const torch::Tensor& v) { return tsr ? NewFrames(v, spec.temporal_factor) : v; };
  const std::vector<double> levels = {-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0};
  std::vector<double> model(levels.size()), noisy(levels.size());
  for (size_t b0 = 0; b0 < prompts.size(); b0 += kBatch) {
    const size_t len = std::min<size_t>(kBatch, prompts.size() - b0);
    const StageRequest req = SliceRequest(prompts, inputs, b0, len, seed);
    std::vector<torch::Tensor> gts;
    for (size_t i = 0; i < len; ++i) gts.push_back(VideoToTensor(targets[b0 + i]));
    const torch::Tensor gt = torch::stack(gts);
    VF_ASSIGN_OR_RETURN(std::vector<torch::Tensor> xhats,
                        cascade.stage(k).PredictClean(req, cascade.settings(k), gt, levels));
    // The same ε as PredictClean's, for the noisy input's own PSNR.
    const torch::Tensor eps = KeyedNormalBatch(seed, k, StageRunner::kProbeNoiseStep,
                                               req.sample_indices, gt.sizes().slice(1), torch::kCPU);
    for (size_t l = 0; l < levels.size(); ++l) {
      const torch::Tensor z = (gt + eps * std::exp(-0.5 * levels[l])).clamp(-1, 1);  // z/α
      for (size_t i = 0; i < len; ++i) {
        model[l] += std::min(99.0, TensorPsnr(frames(xhats[l][i]), frames(gt[i])));
        noisy[l] += std::min(99.0, TensorPsnr(frames(z[i]), frames(gt[i])));
      }
    }
  }
  const double n = static_cast<double>(std::max<size_t>(prompts.size(), 1));
  json curve = json::array();
  for (size_t l = 0; l < levels.size(); ++l) {
    curve.push_back({{"logsnr", levels[l]}, {"psnr", model[l] / n}, {"noisy_psnr", noisy[l] / n}});
  }
  return curve;
}

// 7: stages 1..last fed each prompt's ground truth at the base's shape (the scene SceneFor draws
// for its attributes): the alignment and consistency the stages above the base give a perfect
// base. "naive" scores that input upsampled without a model (linear blend, bilinear), "truth" the
// same scenes rendered at the last stage's shape (the analyzer's own ceiling). Prompts outside
// the grammar are skipped.
Result<json> AboveTrueBase(Cascade& cascade, const std::vector<std::string>& all_prompts,
                           const EvalOptions& o, int last,
                           const std::vector<StageSettings>& settings,
                           const std::function<void(const std::string&)>& progress) {
  json r = {{"n", 0}};
  if (last < 1) return r;
  const StageSpec& base = cascade.stage(0).spec();
  const StageSpec& top = cascade.stage(last).spec();
  std::vector<std::string> prompts;
  std::vector<Video> inputs, truths;
  AlignmentScore truth, naive;
  for (const std::string& p : all_prompts) {
    if (static_cast<int>(prompts.size()) >= o.true_base_samples) break;
    auto a = synth::ParseCaption(p);
    if (!a.ok()) continue;
    const synth::Scene scene = synth::SceneFor(*a, o.seed ^ kTruthBaseSalt, prompts.size());
    VF_ASSIGN_OR_RETURN(Video in,
                        synth::Render(scene, base.frames, base.height, base.width, base.fps));
    VF_ASSIGN_OR_RETURN(Video gt, synth::Render(scene, top.frames, top.height, top.width, top.fps));
    VF_RETURN_NOT_OK(Score(p, gt, &truth, false));
    // No model: the base-shaped truth blended linearly in time and resized bilinearly.
    const int factor = static_cast<int>(top.frames / base.frames);
    torch::Tensor up = VideoToTensor(in);
    if (factor > 1) up = UpsampleFrames(up, factor, TemporalUpsample::kBlend);
    up = ResizeVideo(up, top.height, top.width).clamp(-1, 1);
    VF_ASSIGN_OR_RETURN(Video nv, TensorToVideo(up, top.fps));
    VF_RETURN_NOT_OK(Score(p, nv, &naive, false));
    prompts.push_back(p);
    inputs.push_back(std::move(in));
    if (truths.size() < kTrueBaseSheets) truths.push_back(std::move(gt));
  }
  if (prompts.empty()) return r;
  VF_ASSIGN_OR_RETURN(ChainResult c, RunChain(cascade, prompts, o.seed, last, settings,
                                              static_cast<int>(kTrueBaseSheets), progress,
                                              "above a true base", /*first=*/1, inputs));
  // A look at the first prompts: the input, every stage's output, the truth at the last shape.
  int sheets = 0;
  for (size_t i = 0; i < c.per_stage.size() && !o.out_dir.empty(); ++i, ++sheets) {
    std::vector<std::vector<Video>> rows = {{inputs[i]}};
    std::vector<std::string> labels = {"input"};
    for (size_t k = 0; k < c.per_stage[i].size(); ++k) {
      rows.push_back({c.per_stage[i][k]});
      labels.push_back(
          fmt::format("{} {}", k + 1, cascade.stage(static_cast<int>(k) + 1).spec().name));
    }
    rows.push_back({truths[i]});
    labels.push_back("truth");
    ContactSheetOptions co;
    co.title = "\"" + prompts[i] + "\" from a ground-truth base";
    VF_ASSIGN_OR_RETURN(Video sheet, ContactSheet(rows, labels, co));
    VF_RETURN_NOT_OK(
        SavePlotPng(sheet, (fs::path(o.out_dir) / fmt::format("true_base_{}.png", i)).string()));
  }
  AlignmentScore s;
  for (size_t i = 0; i < prompts.size(); ++i) {
    VF_RETURN_NOT_OK(Score(prompts[i], c.finals[i], &s, /*detail=*/true));
  }
  if (progress) {
    progress(fmt::format(
        "above a true base: colour {:.1f}%, shape {:.1f}%, motion {:.1f}% on {} prompts",
        100 * AlignmentScore::Rate(s.colour, s.n), 100 * AlignmentScore::Rate(s.shape, s.n),
        100 * AlignmentScore::Rate(s.motion, s.n), s.n));
  }
  r = s.Summary();
  r["temporal_consistency"] = s.n > 0 ? s.consistency_sum / s.n : 0.0;
  r["confusion"] = {{"motion", s.motions.ToJson()}, {"shape_kind", s.shapes.ToJson()}};
  r["prompts"] = s.per_prompt;
  r["truth"] = truth.Summary();
  r["truth"]["temporal_consistency"] = truth.n > 0 ? truth.consistency_sum / truth.n : 0.0;
  r["contact_sheets"] = sheets;
  r["naive"] = naive.Summary();
  r["naive"]["temporal_consistency"] = naive.n > 0 ? naive.consistency_sum / naive.n : 0.0;
  r["seconds"] = c.seconds;
  return r;
}

Result<json> Fidelity(Cascade& cascade, const EvalOptions& o,
                      const std::function<void(const std::string&)>& progress) {
  json stages = json::array();
  for (int k = 1; k < cascade.num_stages(); ++k) {
    if (!o.fidelity_stages.empty() &&
        std::find(o.fidelity_stages.begin(), o.fidelity_stages.end(), k) == o.fidelity_stages.end()) {
      continue;
    }
    const StageSpec& spec = cascade.stage(k).spec();
    const auto start = Clock::now();
    std::vector<std::string> prompts;
    std::vector<Video> inputs, targets;
    for (int i = 0; i < o.fidelity_examples; ++i) {
      const synth::Scene scene = synth::RandomScene(o.seed ^ kFidelitySalt, static_cast<uint64_t>(i));
      prompts.push_back(synth::Caption(scene));
      VF_ASSIGN_OR_RETURN(Video in, synth::Render(scene, spec.in_frames(), spec.in_height(),
                                                  spec.in_width(), spec.in_fps()));
      VF_ASSIGN_OR_RETURN(Video out, synth::Render(scene, spec.frames, spec.height, spec.width, spec.fps));
      inputs.push_back(std::move(in));
      targets.push_back(std::move(out));
    }
    std::vector<Video> outs;
    for (size_t b0 = 0; b0 < prompts.size(); b0 += kBatch) {
      const size_t len = std::min<size_t>(kBatch, prompts.size() - b0);
      const StageRequest req = SliceRequest(prompts, inputs, b0, len, o.seed);
      VF_ASSIGN_OR_RETURN(auto got, cascade.stage(k).Run(req, cascade.settings(k)));
      for (auto& v : got) outs.push_back(std::move(v));
    }
    const bool tsr = spec.kind == StageKind::kTemporalSR;
    // A look at the first examples: the naive upsampling, the stage's output, the ground truth.
    if (!o.out_dir.empty()) {
      std::vector<std::vector<Video>> rows;
      std::vector<std::string> labels;
      for (size_t i = 0; i < std::min<size_t>(outs.size(), 3); ++i) {
        torch::Tensor naive = VideoToTensor(inputs[i]);
        if (tsr) naive = UpsampleFrames(naive, spec.temporal_factor, TemporalUpsample::kRepeat);
        naive = ResizeVideo(naive, spec.height, spec.width).clamp(-1, 1);
        VF_ASSIGN_OR_RETURN(Video nv, TensorToVideo(naive, spec.fps));
        rows.push_back({std::move(nv)});
        rows.push_back({outs[i]});
        rows.push_back({targets[i]});
        labels.insert(labels.end(), {tsr ? "repeat" : "bilinear", spec.name, "truth"});
      }
      ContactSheetOptions co;
      co.scale = static_cast<int>(std::max<int64_t>(1, 96 / spec.height));
      co.title = fmt::format("stage {} ({}) on ground-truth input", k, spec.name);
      VF_ASSIGN_OR_RETURN(Video sheet, ContactSheet(rows, labels, co));
      VF_RETURN_NOT_OK(SavePlotPng(sheet, (fs::path(o.out_dir) / fmt::format("fidelity_stage{}.png", k)).string()));
    }
    double psnr = 0, ssim = 0, base_psnr = 0, base_ssim = 0, blend_psnr = 0;
    for (size_t i = 0; i < outs.size(); ++i) {
      const torch::Tensor y = VideoToTensor(outs[i]), gt = VideoToTensor(targets[i]);
      torch::Tensor in = VideoToTensor(inputs[i]);
      if (tsr) {
        const int f = spec.temporal_factor;
        const torch::Tensor rep = UpsampleFrames(in, f, TemporalUpsample::kRepeat);
        const torch::Tensor blend = UpsampleFrames(in, f, TemporalUpsample::kBlend);
        psnr += std::min(99.0, TensorPsnr(NewFrames(y, f), NewFrames(gt, f)));
        base_psnr += std::min(99.0, TensorPsnr(NewFrames(rep, f), NewFrames(gt, f)));
        blend_psnr += std::min(99.0, TensorPsnr(NewFrames(blend, f), NewFrames(gt, f)));
        ssim += VideoSsim(y, gt);
        base_ssim += VideoSsim(rep, gt);
      } else {
        const torch::Tensor bil = ResizeVideo(in, spec.height, spec.width).clamp(-1, 1);
        psnr += std::min(99.0, TensorPsnr(y, gt));
        base_psnr += std::min(99.0, TensorPsnr(bil, gt));
        ssim += VideoSsim(y, gt);
        base_ssim += VideoSsim(bil, gt);
      }
    }
    const double n = static_cast<double>(std::max<size_t>(outs.size(), 1));
    VF_ASSIGN_OR_RETURN(json curve, DenoisingCurve(cascade, k, prompts, inputs, targets, o.seed));
    json e = {{"stage", k},
              {"name", spec.name},
              {"kind", StageKindName(spec.kind)},
              {"examples", outs.size()},
              {"psnr", psnr / n},
              {"ssim", ssim / n}};
    if (tsr) {
      e["measured_on"] = "new frames only (PSNR); all frames (SSIM)";
      e["baselines"] = {{"frame_repetition", {{"psnr", base_psnr / n}, {"ssim", base_ssim / n}}},
                        {"linear_blend", {{"psnr", blend_psnr / n}}}};
      e["gain_db"] = (psnr - base_psnr) / n;
      e["gain_over_blend_db"] = (psnr - blend_psnr) / n;
    } else {
      e["measured_on"] = "all frames";
      e["baselines"] = {{"bilinear", {{"psnr", base_psnr / n}, {"ssim", base_ssim / n}}}};
      e["gain_db"] = (psnr - base_psnr) / n;
    }
    e["denoising"] = std::move(curve);
    stages.push_back(e);
    if (progress) {
      progress(fmt::format("fidelity stage {} ({}): {:.2f} dB vs {} {:.2f} dB ({:.0f} s)", k,
                           spec.name, psnr / n, tsr ? "repetition" : "bilinear", base_psnr / n,
                           Seconds(start)));
    }
  }
  return stages;
}

// ---- 6: prompt sensitivity of the base (the diffusion model as a classifier) ----

// The motion that plays `m` backwards (left/right, up/down, growing/shrinking).
synth::Motion Reversed(synth::Motion m) {
  using synth::Motion;
  switch (m) {
    case Motion::kLeft:
      return Motion::kRight;
    case Motion::kRight:
      return Motion::kLeft;
    case Motion::kUp:
      return Motion::kDown;
    case Motion::kDown:
      return Motion::kUp;
    case Motion::kGrowing:
      return Motion::kShrinking;
    case Motion::kShrinking:
      return Motion::kGrowing;
    default:
      return m;
  }
}

// Per frame, the centre of mass (x, y in pixels) of what stands out from the frame's median
// brightness (the background of a "black background" clip): [C,T,H,W] -> [T,2].
torch::Tensor Centroids(const torch::Tensor& v) {
  auto b = v.to(torch::kFloat32).mean(0);  // [T,H,W]
  const int64_t t = b.size(0), h = b.size(1), w = b.size(2);
  auto floor = std::get<0>(b.reshape({t, h * w}).median(1)).view({t, 1, 1});
  auto m = (b - floor).clamp_min(0);
  auto xs = torch::arange(w, torch::kFloat32).view({1, 1, w});
  auto ys = torch::arange(h, torch::kFloat32).view({1, h, 1});
  auto mass = m.sum({1, 2}) + 1e-6;
  return torch::stack({(m * xs).sum({1, 2}) / mass, (m * ys).sum({1, 2}) / mass}, 1);
}

// Pixels per frame that a [T] track moves (its least-squares slope over the frame index).
double Drift(const torch::Tensor& track) {
  const auto y = track.to(torch::kFloat64).contiguous();
  std::vector<double> frames(static_cast<size_t>(y.size(0)));
  std::iota(frames.begin(), frames.end(), 0.0);
  return synth::Slope(frames,
                      std::vector<double>(y.data_ptr<double>(), y.data_ptr<double>() + y.size(0)));
}

// Does the base's prior move the object the way the caption says? The base denoises pure noise
// (a zero clip at log-SNR -5, so z holds no video) for "a {colour} {shape} moving {left|right|up|
// down}" on the default black background, unguided; its x̂ there is its guess of the caption's
// mean clip, whose object drifts along the named direction at the synthetic world's mean speed.
// Reported: the centroid's drift in pixels per frame along the named direction, for the base and
// for ground-truth renders of the same captions (one each). A base that ignores the direction
// drifts about 0. Unclamped: a faint guess of the object may lie below -1 with its background.
Result<json> PriorDrift(StageRunner& base, const StageSettings& st, uint64_t seed,
                        int per_direction) {
  using synth::Motion;
  const StageSpec& spec = base.spec();
  const std::array<Motion, 4> dirs = {Motion::kLeft, Motion::kRight, Motion::kUp, Motion::kDown};
  const auto& shapes = synth::AllShapes();
  StageRequest req;
  std::vector<synth::Attributes> attrs;
  for (Motion d : dirs) {
    for (int i = 0; i < per_direction; ++i) {
      synth::Attributes a;
      a.colour = static_cast<synth::Colour>(i % synth::kNumColours);
      a.shape = shapes[static_cast<size_t>(i * 5 + 1) % shapes.size()];
      a.motion = d;
      attrs.push_back(a);
      req.prompts.push_back(synth::Caption(a));
      req.sample_indices.push_back(static_cast<int64_t>(req.prompts.size()));
    }
  }
  req.seed = seed;
  const int64_t n = static_cast<int64_t>(req.prompts.size());
  const torch::Tensor zero =
      torch::zeros({n, spec.net.channels, spec.frames, spec.height, spec.width});
  constexpr double kLogSnr = -5.0;
  VF_ASSIGN_OR_RETURN(std::vector<torch::Tensor> xh,
                      base.PredictClean(req, st, zero, {kLogSnr}, 0, /*clamp=*/false));
  json by = json::object();
  double model_sum = 0, truth_sum = 0;
  for (size_t k = 0; k < dirs.size(); ++k) {
    const bool vertical = dirs[k] == Motion::kUp || dirs[k] == Motion::kDown;
    const double sign = dirs[k] == Motion::kLeft || dirs[k] == Motion::kUp ? -1.0 : 1.0;
    double model = 0, truth = 0;
    for (int i = 0; i < per_direction; ++i) {
      const size_t j = k * static_cast<size_t>(per_direction) + static_cast<size_t>(i);
      model += sign * Drift(Centroids(xh[0][static_cast<int64_t>(j)]).select(1, vertical));
      const synth::Scene scene = synth::SceneFor(attrs[j], seed ^ 0xd41f7ULL, j);
      VF_ASSIGN_OR_RETURN(Video gt,
                          synth::Render(scene, spec.frames, spec.height, spec.width, spec.fps));
      truth += sign * Drift(Centroids(VideoToTensor(gt)).select(1, vertical));
    }
    model /= per_direction;
    truth /= per_direction;
    by[synth::MotionName(dirs[k])] = {{"model", model}, {"truth", truth}};
    model_sum += model;
    truth_sum += truth;
  }
  return json{{"logsnr", kLogSnr},
              {"captions_per_direction", per_direction},
              {"by_direction", by},
              {"model", model_sum / dirs.size()},
              {"truth", truth_sum / dirs.size()}};
}

// Does the base's denoising use the words of its prompt? For each ground-truth clip of a caption
// and each of three counterfactual captions that change one word (the motion to its reversal, the
// colour, the shape), the base denoises the same noisy clip (one ε, log-SNR -3, -1, 1 and 3) with
// each caption, unguided (w = 1) and without thresholding, and the caption whose x̂ lies nearer the
// truth (squared error summed over the levels) "wins". A base that reads a word wins well above
// half; one that ignores it wins half the time. A base that cannot tell a clip from its time
// reversal (README: the tiny base before the frame embedding) scores about half on the motion.
// Forward passes only, so it tracks a training run cheaply where sampling would need a trained
// cascade (Li et al. 2023, "Your diffusion model is secretly a zero-shot classifier").
Result<json> PromptSensitivity(Cascade& cascade, const EvalOptions& o,
                               const std::function<void(const std::string&)>& progress) {
  using synth::Motion;
  const auto start = Clock::now();
  StageRunner& base = cascade.stage(0);
  const StageSpec& spec = base.spec();
  StageSettings st = cascade.settings(0);
  st.guidance.schedule.high = st.guidance.schedule.low = 1.0;
  st.guidance.schedule.oscillating = false;
  st.guidance.thresholding = Thresholding::kNone;
  const std::vector<double> levels = {-3.0, -1.0, 1.0, 3.0};
  const std::array<Motion, 6> motions = {Motion::kLeft, Motion::kRight,   Motion::kUp,
                                         Motion::kDown, Motion::kGrowing, Motion::kShrinking};
  const char* kinds[] = {"motion_reversed", "colour", "shape"};
  std::array<int, 3> wins{};
  std::array<double, 3> gap{};
  std::map<std::string, std::pair<int, int>> by_motion;  // wins, n
  const uint64_t salt = o.seed ^ 0x5e45171eULL;
  for (int i = 0; i < o.sensitivity_examples; ++i) {
    const uint64_t index = static_cast<uint64_t>(i);
    synth::Attributes a = synth::AttributesOf(synth::RandomScene(salt, index));
    a.motion = motions[static_cast<size_t>(i) % motions.size()];
    const synth::Scene scene = synth::SceneFor(a, salt, index);
    VF_ASSIGN_OR_RETURN(Video gt,
                        synth::Render(scene, spec.frames, spec.height, spec.width, spec.fps));
    uint64_t r = salt + index * 0x9E3779B97F4A7C15ULL;
    synth::Attributes motion = a, colour = a, shape = a;
    motion.motion = Reversed(a.motion);
    do {  // another colour, and not the background's
      colour.colour = static_cast<synth::Colour>(SplitMix64(&r) % synth::kNumColours);
    } while (colour.colour == a.colour ||
             (a.background == synth::BackgroundKind::kPlain && !a.background_black &&
              colour.colour == a.background_colour));
    const auto& shapes = synth::AllShapes();
    do {
      shape.shape = shapes[SplitMix64(&r) % shapes.size()];
    } while (synth::ShapeIndex(shape.shape) == synth::ShapeIndex(a.shape));
    StageRequest req;
    req.prompts = {synth::Caption(a), synth::Caption(motion), synth::Caption(colour),
                   synth::Caption(shape)};
    req.sample_indices.assign(req.prompts.size(), static_cast<int64_t>(i));  // one ε for all four
    req.seed = o.seed;
    const torch::Tensor x = VideoToTensor(gt);
    const torch::Tensor clean = x.unsqueeze(0).expand({4, -1, -1, -1, -1}).contiguous();
    VF_ASSIGN_OR_RETURN(std::vector<torch::Tensor> xhats,
                        base.PredictClean(req, st, clean, levels));
    std::array<double, 4> err{};
    for (const torch::Tensor& xh : xhats) {
      const torch::Tensor e = (xh - clean).pow(2).mean({1, 2, 3, 4});
      for (int j = 0; j < 4; ++j) err[j] += e[j].item<double>();
    }
    for (int k = 0; k < 3; ++k) {
      wins[k] += err[0] < err[k + 1];
      gap[k] += (err[k + 1] - err[0]) / std::max(err[0], 1e-12);
    }
    auto& bm = by_motion[synth::MotionName(a.motion)];
    bm.first += err[0] < err[1];
    bm.second += 1;
  }
  const double n = std::max(1, o.sensitivity_examples);
  json out = {{"stage", 0},
              {"examples", o.sensitivity_examples},
              {"logsnrs", levels},
              {"guidance", 1.0},
              {"seconds", Seconds(start)}};
  for (int k = 0; k < 3; ++k) {
    out[kinds[k]] = {{"wins", wins[k] / n}, {"mean_relative_gap", gap[k] / n}};
  }
  json bm = json::object();
  for (const auto& [name, c] : by_motion) bm[name] = static_cast<double>(c.first) / c.second;
  out["motion_reversed"]["by_motion"] = bm;
  VF_ASSIGN_OR_RETURN(out["prior_drift"], PriorDrift(base, st, o.seed, 8));
  out["seconds"] = Seconds(start);
  if (progress) {
    progress(fmt::format(
        "prompt sensitivity of the base: the prompt beats its motion reversed "
        "{:.0f} %, another colour {:.0f} %, another shape {:.0f} % ({} clips); its prior drifts "
        "{:.2f} px/frame the named way (truth {:.2f}) ({:.0f} s)",
        100 * wins[0] / n, 100 * wins[1] / n, 100 * wins[2] / n, o.sensitivity_examples,
        out["prior_drift"]["model"].get<double>(), out["prior_drift"]["truth"].get<double>(),
        Seconds(start)));
  }
  return out;
}

// (step, eval_psnr) rows of a trainer's loss.csv.
std::vector<std::pair<double, double>> ReadPsnrCurve(const std::string& path) {
  std::vector<std::pair<double, double>> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.rfind("step,", 0) == 0) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, ',')) cells.push_back(c);
    if (cells.size() >= 6 && !cells[5].empty()) {
      rows.emplace_back(std::stod(cells[0]), std::stod(cells[5]));
    }
  }
  return rows;
}

json VersusEps(const EvalOptions& o) {
  if (o.v_log.empty() || o.eps_log.empty()) {
    return {{"skipped", "no training logs given (--v-log, --eps-log)"}};
  }
  const auto v = ReadPsnrCurve(o.v_log), e = ReadPsnrCurve(o.eps_log);
  if (v.empty() || e.empty()) {
    return {{"skipped", fmt::format("no held-out PSNR rows in {} or {} (train with --eval-every)",
                                    o.v_log, o.eps_log)}};
  }
  const double eps_final = e.back().second;
  json reach = nullptr;
  for (const auto& [step, p] : v) {
    if (p >= eps_final) {
      reach = step;
      break;
    }
  }
  auto curve = [](const std::vector<std::pair<double, double>>& rows) {
    json c = json::array();
    for (const auto& [s, p] : rows) c.push_back({s, p});
    return c;
  };
  json jv = curve(v), je = curve(e);
  json skip = nullptr;
  if (!o.v_skip_log.empty()) {
    const auto vs = ReadPsnrCurve(o.v_skip_log);
    if (!vs.empty()) skip = {{"log", o.v_skip_log}, {"curve", curve(vs)}};
  }
  return {{"v_log", o.v_log},
          {"v_skip", skip},
          {"eps_log", o.eps_log},
          {"v", jv},
          {"eps", je},
          {"eps_final_step", e.back().first},
          {"eps_final_psnr", eps_final},
          {"v_steps_to_reach_eps_final", reach},
          {"v_final_psnr", v.back().second}};
}

// ---- Figures and the Markdown report ----

// Denoising curves: one x̂ per noise level, per SR stage (denoising.png).
Status SaveDenoisingPlot(const json& r, const fs::path& out) {
  if (!r.contains("fidelity") || r["fidelity"].empty() || !r["fidelity"][0].contains("denoising")) {
    return Status::OK();
  }
  std::vector<Series> series;
  for (const json& e : r["fidelity"]) {
    Series s;
    s.name = e["name"].get<std::string>();
    s.markers = true;
    for (const json& p : e["denoising"]) {
      s.x.push_back(p["logsnr"]);
      s.y.push_back(p["psnr"]);
    }
    series.push_back(std::move(s));
  }
  Series noisy;
  noisy.name = "z/alpha (the noisy input)";
  for (const json& p : r["fidelity"][0]["denoising"]) {
    noisy.x.push_back(p["logsnr"]);
    noisy.y.push_back(p["noisy_psnr"]);
  }
  series.push_back(std::move(noisy));
  LinePlotOptions lo;
  lo.title = "One denoising step on true input: x-hat PSNR";
  lo.x_label = "log-SNR of z";
  lo.y_label = "PSNR dB";
  VF_ASSIGN_OR_RETURN(Video p, LinePlot(series, lo));
  return SavePlotPng(p, (out / "denoising.png").string());
}

Status SaveFigures(const json& r, const std::vector<std::vector<Video>>& sheets,
                   const std::vector<std::string>& sheet_prompts, const std::vector<std::string>& stage_names,
                   const AlignmentScore& align, const fs::path& out) {
  // Contact sheets: one per prompt, one row per stage.
  for (size_t i = 0; i < sheets.size(); ++i) {
    ContactSheetOptions co;
    co.frames_per_clip = 8;
    co.title = "\"" + sheet_prompts[i] + "\"";
    std::vector<std::vector<Video>> rows;
    std::vector<std::string> labels;
    for (size_t k = 0; k < sheets[i].size(); ++k) {
      rows.push_back({sheets[i][k]});
      labels.push_back(fmt::format("{} {}", k, stage_names[k]));
    }
    VF_ASSIGN_OR_RETURN(Video sheet, ContactSheet(rows, labels, co));
    VF_RETURN_NOT_OK(SavePlotPng(sheet, (out / fmt::format("contact_{}.png", i)).string()));
  }
  // Alignment per attribute against the 90% target.
  {
    const json& a = r["alignment"];
    BarChartOptions bo;
    bo.title = "Text alignment: analyzer on final videos vs the prompt";
    bo.y_label = "accuracy";
    bo.y_range = std::make_pair(0.0, 1.0);
    bo.target = 0.9;
    bo.target_label = "target 0.90";
    BarGroup g{"cascade", {a["colour"], a["shape"], a["motion"], a["background"]}, std::nullopt};
    VF_ASSIGN_OR_RETURN(Video chart, BarChart({"colour", "shape", "motion", "background"}, {g}, bo));
    VF_RETURN_NOT_OK(SavePlotPng(chart, (out / "alignment.png").string()));
  }
  auto heat = [&](const Confusion& c, const std::string& name) -> Status {
    HeatmapOptions ho;
    ho.title = "Confusion: " + name + " (rows: prompt, columns: analyzer)";
    ho.x_label = "analyzed";
    ho.y_label = "prompt";
    ho.decimals = 0;
    VF_ASSIGN_OR_RETURN(Video h, Heatmap(c.labels, c.labels, c.counts, ho));
    return SavePlotPng(h, (out / ("confusion_" + name + ".png")).string());
  };
  VF_RETURN_NOT_OK(heat(align.colours, "colour"));
  VF_RETURN_NOT_OK(heat(align.motions, "motion"));
  VF_RETURN_NOT_OK(heat(align.shapes, "shape_kind"));
  // Fidelity: model vs naive per SR stage.
  if (r["fidelity"].is_array() && !r["fidelity"].empty()) {
    std::vector<std::string> cats;
    BarGroup model{"model", {}, std::nullopt}, naive{"bilinear / frame repetition", {}, std::nullopt};
    for (const json& e : r["fidelity"]) {
      cats.push_back(e["name"].get<std::string>());
      model.values.push_back(e["psnr"]);
      const json& b = e["baselines"];
      naive.values.push_back(b.contains("bilinear") ? b["bilinear"]["psnr"] : b["frame_repetition"]["psnr"]);
    }
    BarChartOptions bo;
    bo.title = "Per-stage fidelity (TSR: new frames only)";
    bo.y_label = "PSNR dB";
    bo.decimals = 1;
    VF_ASSIGN_OR_RETURN(Video chart, BarChart(cats, {model, naive}, bo));
    VF_RETURN_NOT_OK(SavePlotPng(chart, (out / "fidelity.png").string()));
  }
  VF_RETURN_NOT_OK(SaveDenoisingPlot(r, out));
  // Guidance sweep.
  if (r.contains("guidance") && r["guidance"].is_array() && !r["guidance"].empty()) {
    std::map<std::string, Series> align_s, sat_s;
    for (const json& g : r["guidance"]) {
      if (g["oscillating"].get<bool>()) continue;
      const std::string th = g["thresholding"];
      align_s[th].name = "alignment, " + th + " thresholding";
      align_s[th].x.push_back(g["w"]);
      align_s[th].y.push_back(g["alignment"]["all_attributes"]);
      align_s[th].markers = true;
      sat_s[th].name = "saturated pixels, " + th;
      sat_s[th].x.push_back(g["w"]);
      sat_s[th].y.push_back(g["saturated_fraction"]);
      sat_s[th].markers = true;
    }
    std::vector<Series> a, s;
    for (auto& [k, v] : align_s) a.push_back(v);
    for (auto& [k, v] : sat_s) s.push_back(v);
    LinePlotOptions lo;
    lo.title = "Guidance sweep: all-attribute alignment vs w";
    lo.x_label = "guidance weight w";
    lo.y_label = "accuracy";
    lo.y_range = std::make_pair(0.0, 1.0);
    VF_ASSIGN_OR_RETURN(Video p1, LinePlot(a, lo));
    VF_RETURN_NOT_OK(SavePlotPng(p1, (out / "guidance_alignment.png").string()));
    lo.title = "Guidance sweep: share of saturated pixels (|x| >= 0.98)";
    lo.y_label = "fraction";
    lo.y_range.reset();
    VF_ASSIGN_OR_RETURN(Video p2, LinePlot(s, lo));
    VF_RETURN_NOT_OK(SavePlotPng(p2, (out / "guidance_saturation.png").string()));
  }
  if (r["v_vs_eps"].contains("v")) {
    const json& ve = r["v_vs_eps"];
    auto series = [](const char* name, const json& points) {
      Series c;
      c.name = name;
      for (const json& p : points) c.x.push_back(p[0]), c.y.push_back(p[1]);
      return c;
    };
    std::vector<Series> curves = {series("v-prediction", ve["v"]),
                                  series("eps-prediction", ve["eps"])};
    if (ve.contains("v_skip") && ve["v_skip"].is_object()) {
      curves.push_back(series("v, output skip (shipped)", ve["v_skip"]["curve"]));
    }
    LinePlotOptions lo;
    lo.title = "v vs eps prediction: held-out PSNR while training";
    lo.x_label = "training step";
    lo.y_label = "PSNR dB";
    VF_ASSIGN_OR_RETURN(Video p, LinePlot(curves, lo));
    VF_RETURN_NOT_OK(SavePlotPng(p, (out / "v_vs_eps.png").string()));
  }
  return Status::OK();
}

std::string Pct(const json& x) { return fmt::format("{:.1f}%", 100.0 * x.get<double>()); }

std::string Markdown(const json& r) {
  std::string md = fmt::format("# vidfarm eval: preset {}\n\n", r["preset"].get<std::string>());
  md += fmt::format("Models: `{}`. {} prompts, seed {}, steps {}. Command: `{}`\n\n",
                    r["models_dir"].get<std::string>(), r["alignment"]["n"].get<int>(),
                    r["seed"].get<uint64_t>(), r["steps"].dump(), r["command"].get<std::string>());
  md += "## Targets\n\n| target | measured | met |\n|---|---|---|\n";
  for (const json& t : r["targets"]) {
    md += fmt::format("| {} | {} | {} |\n", t["target"].get<std::string>(),
                      t["measured"].get<std::string>(), t["met"].get<bool>() ? "yes" : "no");
  }
  const json& a = r["alignment"];
  md += "\n## 1. Text alignment (analyzer on final videos)\n\n";
  md += "| colour | shape | motion | background | all four |\n|---|---|---|---|---|\n";
  md += fmt::format("| {} | {} | {} | {} | {} |\n\n", Pct(a["colour"]), Pct(a["shape"]),
                    Pct(a["motion"]), Pct(a["background"]), Pct(a["all_attributes"]));
  md += "![alignment](alignment.png)\n\n![colour](confusion_colour.png) "
        "![motion](confusion_motion.png) ![shape](confusion_shape_kind.png)\n\n";
  md += fmt::format("Render time: {:.1f} s per prompt batched {} at a time; one default render "
                    "(unbatched, as `vidfarm render`) {:.1f} s.\n\n", r["seconds_per_prompt"].get<double>(), kBatch,
                    r["default_render_seconds"].get<double>());
  md += "## 2. Per-stage fidelity (ground-truth inputs)\n\n| stage | PSNR | SSIM | naive PSNR | "
        "naive SSIM | gain |\n|---|---|---|---|---|---|\n";
  for (const json& e : r["fidelity"]) {
    const json& b = e["baselines"];
    const json& nb = b.contains("bilinear") ? b["bilinear"] : b["frame_repetition"];
    std::string naive = b.contains("bilinear") ? "bilinear" : "repetition";
    if (b.contains("linear_blend")) {
      naive += fmt::format(" (blend {:.2f})", b["linear_blend"]["psnr"].get<double>());
    }
    md += fmt::format("| {} {} | {:.2f} | {:.3f} | {:.2f} {} | {:.3f} | {:+.2f} dB |\n",
                      e["stage"].get<int>(), e["name"].get<std::string>(), e["psnr"].get<double>(),
                      e["ssim"].get<double>(), nb["psnr"].get<double>(), naive,
                      nb["ssim"].get<double>(), e["gain_db"].get<double>());
  }
  md += "\nTSR PSNR counts only the frames the stage invents.\n\n![fidelity](fidelity.png)\n\n";
  if (!r["fidelity"].empty() && r["fidelity"][0].contains("denoising")) {
    md += "One denoising step at each noise level (z = α·x + σ·ε on the same inputs): PSNR of x̂, dB.\n\n"
          "| stage |";
    for (const json& p : r["fidelity"][0]["denoising"]) md += fmt::format(" λ = {:g} |", p["logsnr"].get<double>());
    md += "\n|---|";
    for (size_t i = 0; i < r["fidelity"][0]["denoising"].size(); ++i) md += "---|";
    md += "\n";
    for (const json& e : r["fidelity"]) {
      md += "| " + e["name"].get<std::string>() + " |";
      for (const json& p : e["denoising"]) md += fmt::format(" {:.1f} |", p["psnr"].get<double>());
      md += "\n";
    }
    md += "| z/α (the noisy input) |";
    for (const json& p : r["fidelity"][0]["denoising"]) md += fmt::format(" {:.1f} |", p["noisy_psnr"].get<double>());
    md += "\n\n![denoising](denoising.png)\n\n";
  }
  md += fmt::format("## 3. Temporal consistency\n\n{} of frames keep the clip's colour and shape.\n\n",
                    Pct(r["temporal_consistency"]));
  md += "## 4. Guidance sweep\n\n";
  if (r["guidance"].is_array() && !r["guidance"].empty()) {
    md += "| w | thresholding | colour | shape | motion | all | saturated |\n|---|---|---|---|---|---|---|\n";
    for (const json& g : r["guidance"]) {
      const std::string w = g["oscillating"].get<bool>() ? "15/1 oscillating" : fmt::format("{}", g["w"].get<double>());
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {:.4f} |\n", w,
                        g["thresholding"].get<std::string>(), Pct(g["alignment"]["colour"]),
                        Pct(g["alignment"]["shape"]), Pct(g["alignment"]["motion"]),
                        Pct(g["alignment"]["all_attributes"]), g["saturated_fraction"].get<double>());
    }
    md += fmt::format("\nStages 0..{} rendered per setting; the analyzer reads that size.\n\n"
                      "![alignment](guidance_alignment.png) ![saturation](guidance_saturation.png)\n\n",
                      r["guidance_last_stage"].get<int>());
  } else {
    md += "Skipped.\n\n";
  }
  md += "## 5. v- vs eps-prediction\n\n";
  const json& ve = r["v_vs_eps"];
  if (ve.contains("skipped")) {
    md += ve["skipped"].get<std::string>() + "\n\n";
  } else {
    md += fmt::format("eps reaches {:.2f} dB at step {}; v reaches it at step {} (v ends at {:.2f} "
                      "dB).\n\n![v vs eps](v_vs_eps.png)\n\n",
                      ve["eps_final_psnr"].get<double>(), ve["eps_final_step"].get<double>(),
                      ve["v_steps_to_reach_eps_final"].dump(), ve["v_final_psnr"].get<double>());
    md += fmt::format("Logs: v `{}`, eps `{}`.", ve["v_log"].get<std::string>(),
                      ve["eps_log"].get<std::string>());
    if (ve["v_skip"].is_object()) {
      md += fmt::format(" Also drawn: `{}`, a v run whose output starts from the conditioning.",
                        ve["v_skip"]["log"].get<std::string>());
    }
    md += "\n\n";
  }
  if (r.contains("sensitivity")) {
    const json& se = r["sensitivity"];
    md += "## 6. Prompt sensitivity of the base\n\n";
    md += fmt::format(
        "On {} ground-truth clips, how often the base denoises a noisy clip (log-SNR -3..3, "
        "unguided) nearer the truth with the clip's own caption than with one word changed. "
        "50 % = the word is ignored.\n\n| motion reversed | another colour | another shape |\n"
        "|---|---|---|\n| {} | {} | {} |\n\nMotion reversed, by the clip's motion: ",
        se["examples"].get<int>(), Pct(se["motion_reversed"]["wins"]), Pct(se["colour"]["wins"]),
        Pct(se["shape"]["wins"]));
    for (const auto& [name, v] : se["motion_reversed"]["by_motion"].items()) {
      md += fmt::format("{} {}; ", name, Pct(v));
    }
    md += "\n\n";
    if (se.contains("prior_drift")) {
      const json& pd = se["prior_drift"];
      md += fmt::format(
          "Prior drift: from pure noise (log-SNR {}), how far the base's guess of the clip moves "
          "its object per frame along the direction its caption names ({} captions per "
          "direction, black background), against ground-truth renders of the same captions.\n\n"
          "| direction | base (px/frame) | truth (px/frame) |\n|---|---|---|\n",
          pd["logsnr"].get<double>(), pd["captions_per_direction"].get<int>());
      for (const auto& [name, v] : pd["by_direction"].items()) {
        md += fmt::format("| {} | {:.2f} | {:.2f} |\n", name, v["model"].get<double>(),
                          v["truth"].get<double>());
      }
      md += "\n";
    }
  }
  if (r.contains("above_true_base") && r["above_true_base"]["n"].get<int>() > 0) {
    const json& t = r["above_true_base"];
    const json& a = r["alignment"];
    md += "## 7. The stages above the base, on a perfect base\n\n";
    md += fmt::format(
        "Stages 1 and up fed the ground truth of {} of the prompts at the base's shape instead of "
        "the base's sample (same seed), read back by the analyzer; \"no model\" upsamples that "
        "input to the last stage's shape without any stage; \"ground truth\" is the same scenes "
        "rendered at the last stage's shape.\n\n"
        "| input to stage 1 | colour | shape | motion | background | all four | temporal "
        "consistency |\n|---|---|---|---|---|---|---|\n",
        t["n"].get<int>());
    auto row = [&](const char* name, const json& x, double tc) {
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", name, Pct(x["colour"]),
                        Pct(x["shape"]), Pct(x["motion"]), Pct(x["background"]),
                        Pct(x["all_attributes"]), Pct(tc));
    };
    row("the base's sample (part 1, all prompts)", a, r["temporal_consistency"].get<double>());
    row("ground truth at the base's shape", t, t["temporal_consistency"].get<double>());
    if (t.contains("naive")) {
      row("the same, no model: linear blend in time, bilinear in space", t["naive"],
          t["naive"]["temporal_consistency"].get<double>());
    }
    row("ground truth (no model)", t["truth"], t["truth"]["temporal_consistency"].get<double>());
    md += "\n";
    for (int i = 0; i < t.value("contact_sheets", 0); ++i) {
      md += fmt::format("![from a ground-truth base](true_base_{}.png) ", i);
    }
    md += "\n\n";
  }
  md += "Contact sheets (one row per stage): ";
  for (int i = 0; i < r["contact_sheets"].get<int>(); ++i) {
    md += fmt::format("[{}](contact_{}.png) ", i, i);
  }
  md += "\n";
  return md;
}

}  // namespace

double TensorPsnr(const torch::Tensor& a, const torch::Tensor& b) {
  const double mse = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).pow(2).mean().item<double>();
  if (mse <= 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(4.0 / mse);
}

double VideoSsim(const torch::Tensor& a, const torch::Tensor& b) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = Luma(a).to(torch::kFloat64), y = Luma(b).to(torch::kFloat64);
  const int64_t k = std::min<int64_t>({7, x.size(2), x.size(3)});
  auto g = torch::arange(k, torch::kFloat64) - (k - 1) / 2.0;
  g = torch::exp(-(g * g) / (2 * 1.5 * 1.5));
  g = g / g.sum();
  const torch::Tensor w = torch::outer(g, g).view({1, 1, k, k});
  auto filt = [&](const torch::Tensor& t) { return torch::conv2d(t, w); };
  const double c1 = std::pow(0.01 * 2, 2), c2 = std::pow(0.03 * 2, 2);
  const auto mx = filt(x), my = filt(y);
  const auto sxx = filt(x * x) - mx * mx, syy = filt(y * y) - my * my, sxy = filt(x * y) - mx * my;
  const auto map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return map.mean().item<double>();
}

Result<json> RunEval(const EvalOptions& o, const std::function<void(const std::string&)>& progress) {
  if (o.samples < 1 && o.prompts_file.empty()) return Status::InvalidArgument("--samples must be >= 1");
  if (o.fidelity_examples < 1 || o.sweep_samples < 1) {
    return Status::InvalidArgument("--fidelity-examples and --sweep-samples must be >= 1");
  }
  VF_ASSIGN_OR_RETURN(std::vector<std::string> prompts, LoadPrompts(o));
  std::error_code ec;
  const fs::path out(o.out_dir);
  fs::create_directories(out, ec);
  if (ec) return Status::IOError(fmt::format("cannot create {}: {}", o.out_dir, ec.message()));

  CascadeOptions co;
  co.preset = o.preset;
  co.models_dir = o.models_dir;
  // Stages a part does not use may be untrained.
  co.allow_random_weights =
      o.random_weights || o.fidelity_only || o.sensitivity_only || o.true_base_only;
  co.force_random_weights = o.random_weights;
  if (o.sensitivity_only) co.last_stage = 0;  // part 6 uses the base alone
  co.runner = o.runner;
  VF_ASSIGN_OR_RETURN(CascadePreset preset, GetPreset(o.preset));
  const StageOverrides& ov = o.overrides;
  co.overrides.assign(preset.stages.size(), ov);  // unset fields keep each stage's default
  VF_ASSIGN_OR_RETURN(auto cascade, Cascade::Open(co));
  const int last = cascade->num_stages() - 1;
  std::vector<StageSettings> settings;
  std::vector<std::string> stage_names;
  for (int k = 0; k <= last; ++k) {
    settings.push_back(cascade->settings(k));
    stage_names.push_back(cascade->stage(k).spec().name);
  }
  json r = {{"preset", o.preset},
            {"models_dir", o.random_weights ? "(random weights)" : o.models_dir},
            {"seed", o.seed},
            {"steps", ov.steps ? json(*ov.steps) : json("preset defaults")},
            {"device", o.runner.device.str()},
            {"threads", torch::get_num_threads()}};
  if (ov.guidance) r["guidance_override"] = *ov.guidance;
  if (ov.aug_logsnr) r["aug_logsnr_override"] = *ov.aug_logsnr;
  if (ov.thresholding) r["thresholding_override"] = *ov.thresholding;
  if (ov.sampler) r["sampler_override"] = *ov.sampler;
  if (ov.time_power) r["time_power_override"] = *ov.time_power;
  if (ov.frame_noise) r["frame_noise_override"] = *ov.frame_noise;
  if (o.sensitivity_only) {
    VF_ASSIGN_OR_RETURN(r["sensitivity"], PromptSensitivity(*cascade, o, progress));
    return r;
  }
  if (o.true_base_only) {
    VF_ASSIGN_OR_RETURN(r["above_true_base"],
                        AboveTrueBase(*cascade, prompts, o, last, settings, progress));
    return r;
  }
  if (o.fidelity_only) {
    VF_ASSIGN_OR_RETURN(r["fidelity"], Fidelity(*cascade, o, progress));
    if (!o.out_dir.empty()) VF_RETURN_NOT_OK(SaveDenoisingPlot(r, o.out_dir));
    return r;
  }

  // 1 and 3: the whole cascade on every prompt.
  VF_ASSIGN_OR_RETURN(ChainResult chain, RunChain(*cascade, prompts, o.seed, last, settings,
                                                  kContactSheets, progress, "alignment"));
  AlignmentScore align;
  fs::create_directories(out / "videos", ec);
  for (size_t i = 0; i < prompts.size(); ++i) {
    VF_RETURN_NOT_OK(Score(prompts[i], chain.finals[i], &align, /*detail=*/true));
    if (i < 8) {
      VF_RETURN_NOT_OK(WriteVideo(chain.finals[i], (out / "videos" / fmt::format("{:02d}.mp4", i)).string()));
      align.per_prompt.back()["video"] = fmt::format("videos/{:02d}.mp4", i);
    }
  }
  r["alignment"] = align.Summary();
  r["alignment"]["confusion"] = {{"colour", align.colours.ToJson()},
                                 {"motion", align.motions.ToJson()},
                                 {"shape_kind", align.shapes.ToJson()},
                                 {"background", align.backgrounds.ToJson()}};
  r["alignment"]["prompts"] = align.per_prompt;
  r["temporal_consistency"] = align.n > 0 ? align.consistency_sum / align.n : 0.0;
  r["seconds_per_prompt"] = chain.seconds / static_cast<double>(prompts.size());
  r["contact_sheets"] = static_cast<int>(chain.per_stage.size());

  // A default render as `vidfarm render --direct` runs it: one prompt, unbatched.
  {
    const auto start = Clock::now();
    VF_RETURN_NOT_OK(cascade->Render(prompts[0], o.seed).status());
    r["default_render_seconds"] = Seconds(start);
    if (progress) progress(fmt::format("default render: {:.0f} s", Seconds(start)));
  }

  // 2: every SR stage on ground-truth inputs.
  VF_ASSIGN_OR_RETURN(r["fidelity"], Fidelity(*cascade, o, progress));

  // 4: guidance sweep over stages 0..sweep_last_stage.
  r["guidance"] = json::array();
  const int sweep_last = std::min(o.sweep_last_stage, last);
  r["guidance_last_stage"] = sweep_last;
  if (o.guidance_sweep) {
    std::vector<std::string> sweep_prompts;
    for (int i = 0; i < o.sweep_samples; ++i) {
      sweep_prompts.push_back(prompts[static_cast<size_t>(i) % prompts.size()]);
    }
    struct Setting {
      double w;
      bool oscillating;
    };
    const std::vector<Setting> weights = {{0, false}, {1, false}, {3, false}, {5, false},
                                          {8, false}, {15, false}, {15, true}};
    for (const char* th : {"dynamic", "static"}) {
      for (const Setting& s : weights) {
        std::vector<StageSettings> ss(settings.begin(), settings.begin() + sweep_last + 1);
        for (auto& st : ss) {
          st.guidance.schedule.high = s.w;
          st.guidance.schedule.low = s.oscillating ? 1.0 : s.w;
          st.guidance.schedule.oscillating = s.oscillating;
          st.guidance.schedule.constant_steps = s.oscillating ? std::max(1, st.sampler.steps / 8) : 0;
          VF_ASSIGN_OR_RETURN(st.guidance.thresholding, ParseThresholding(th));
        }
        const std::string what = fmt::format("guidance w={}{} {}", s.w, s.oscillating ? "/1 osc" : "", th);
        VF_ASSIGN_OR_RETURN(ChainResult c, RunChain(*cascade, sweep_prompts, o.seed, sweep_last, ss,
                                                    0, progress, what));
        AlignmentScore sa;
        for (size_t i = 0; i < sweep_prompts.size(); ++i) {
          VF_RETURN_NOT_OK(Score(sweep_prompts[i], c.finals[i], &sa, false));
        }
        r["guidance"].push_back({{"w", s.w},
                                 {"oscillating", s.oscillating},
                                 {"thresholding", th},
                                 {"alignment", sa.Summary()},
                                 {"saturated_fraction", SaturatedFraction(c.finals)}});
      }
    }
  }

  // 5: v vs ε from the training logs.
  r["v_vs_eps"] = VersusEps(o);

  // 6: does the base's denoising read the prompt's words?
  if (o.sensitivity_examples > 0) {
    VF_ASSIGN_OR_RETURN(r["sensitivity"], PromptSensitivity(*cascade, o, progress));
  }

  // 7: the stages above the base on a perfect base.
  if (o.true_base_samples > 0) {
    VF_ASSIGN_OR_RETURN(r["above_true_base"],
                        AboveTrueBase(*cascade, prompts, o, last, settings, progress));
  }

  // Targets of the issue, judged on what was measured here.
  json targets = json::array();
  auto target = [&](const std::string& name, const std::string& measured, bool met) {
    targets.push_back({{"target", name}, {"measured", measured}, {"met", met}});
  };
  for (const char* attr : {"colour", "shape", "motion"}) {
    const double v = r["alignment"][attr];
    target(fmt::format("alignment {} >= 90%", attr), Pct(v), v >= 0.9);
  }
  for (const json& e : r["fidelity"]) {
    const double g = e["gain_db"];
    target(fmt::format("stage {} {} >= +2 dB over {}", e["stage"].get<int>(), e["name"].get<std::string>(),
                       e["kind"] == "tsr" ? "frame repetition" : "bilinear"),
           fmt::format("{:+.2f} dB", g), g >= 2.0);
  }
  const double tc = r["temporal_consistency"];
  target("temporal consistency >= 95%", Pct(tc), tc >= 0.95);
  if (r["v_vs_eps"].contains("v")) {
    const json& ve = r["v_vs_eps"];
    const bool met = !ve["v_steps_to_reach_eps_final"].is_null() &&
                     ve["v_steps_to_reach_eps_final"].get<double>() < ve["eps_final_step"].get<double>();
    target("v reaches eps's final PSNR in fewer steps",
           fmt::format("v at step {}, eps final at step {}", ve["v_steps_to_reach_eps_final"].dump(),
                       ve["eps_final_step"].get<double>()),
           met);
  }
  const double rs = r["default_render_seconds"];
  target("a default render <= 5 min", fmt::format("{:.0f} s", rs), rs <= 300);
  r["targets"] = targets;
  r["command"] = "";  // filled by the caller

  VF_RETURN_NOT_OK(SaveFigures(r, chain.per_stage, prompts, stage_names, align, out));
  return r;
}

Status WriteEvalReport(const json& r, const std::string& out_dir) {
  const fs::path out(out_dir);
  {
    std::ofstream js(out / "report.json");
    js << r.dump(2) << "\n";
    if (!js) return Status::IOError("cannot write report.json in " + out_dir);
  }
  std::ofstream md(out / "report.md");
  md << Markdown(r);
  if (!md) return Status::IOError("cannot write report.md in " + out_dir);
  return Status::OK();
}

}  // namespace vidfarm::models
