// The stage trainer: keyed randomness per step, Adam + EMA written here (so the whole optimizer
// state is a handful of named tensors in a safetensors file), and checkpoints that are renamed
// into place only when complete.
#include "vidfarm/stage_models/train.h"

#include <ATen/autocast_mode.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "vidfarm/common/hash.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/plot.h"
#include "vidfarm/common/video_ops.h"
#include "vidfarm/stage_models/conditioning.h"
#include "vidfarm/stage_models/noise.h"
#include "vidfarm/stage_models/package.h"
#include "vidfarm/stage_models/safetensors.h"
#include "vidfarm/stage_models/stage_runner.h"
#include "vidfarm/stage_models/text_encoder.h"

namespace vidfarm::models {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr double kBeta1 = 0.9, kBeta2 = 0.99, kAdamEps = 1e-8;
constexpr const char* kLatestFile = "LATEST";
constexpr const char* kLossCsv = "loss.csv";
constexpr const char* kLossCsvHeader =
    "step,loss,lr,steps_per_s,elapsed_s,eval_psnr,eval_baseline_psnr";

uint64_t Mix(uint64_t x) { return SplitMix64(&x); }

// What each keyed uniform decides (its own stream per purpose).
enum class Draw : uint64_t { kImage = 1, kTime, kAugTime, kDropText, kCropT, kCropY, kCropX };

double KeyedUniform(uint64_t seed, int64_t step, int64_t row, Draw what) {
  const uint64_t h =
      Mix(seed ^ Mix(static_cast<uint64_t>(step) ^
                     Mix(static_cast<uint64_t>(row) ^ Mix(static_cast<uint64_t>(what)))));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
}

int64_t KeyedOffset(uint64_t seed, int64_t step, int64_t row, Draw what, int64_t range) {
  if (range <= 0) return 0;
  return std::min<int64_t>(range, static_cast<int64_t>(KeyedUniform(seed, step, row, what) *
                                                       static_cast<double>(range + 1)));
}

std::string CheckpointName(int64_t step) { return fmt::format("step-{:08d}", step); }

Status WriteTextFileAtomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return Status::IOError(fmt::format("cannot write {}", tmp.string()));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::IOError(fmt::format("cannot rename {}: {}", tmp.string(), ec.message()));
  return Status::OK();
}

struct Batch {
  std::vector<std::string> captions;
  torch::Tensor x;           // [B,C,T,H,W] target
  torch::Tensor cond;        // SR: conditioning at the output shape (before augmentation)
  torch::Tensor image_mask;  // [B] bool
};

class Trainer {
 public:
  static Result<std::unique_ptr<Trainer>> Create(const TrainOptions& options);
  Result<TrainResult> Run(const std::function<void(const TrainProgress&)>& on_progress);

 private:
  explicit Trainer(const TrainOptions& o) : opt_(o) {}
  Status Init();
  Status Resume();
  Status InitFrom();
  Status LoadTensors(const fs::path& dir, std::vector<std::string>* missing);
  void AdoptProgress(const fs::path& run_dir, const nlohmann::json& state);
  void AdoptCheckpointNetChoices();
  Result<Batch> MakeBatch(int64_t step);
  Result<double> Step(int64_t step);
  Status SaveCheckpoint();
  Status WriteLossFiles();
  Result<std::pair<double, double>> Evaluate();
  nlohmann::json Provenance() const;
  nlohmann::json LrSegment() const;
  void NoteLrSegment();
  double LearningRate(int64_t step) const { return ScheduledLearningRate(opt_, step); }

  TrainOptions opt_;
  CascadePreset preset_;
  StageSpec spec_;
  std::unique_ptr<TrainingData> data_, eval_data_;
  std::unique_ptr<TextEncoder> encoder_;
  VideoUNet net_{nullptr}, ema_{nullptr};
  std::vector<std::string> names_;
  std::vector<torch::Tensor> params_, ema_params_, m_, v_;
  CosineSchedule schedule_;
  fs::path ckpt_dir_;
  int64_t step_ = 0;           // steps completed
  double elapsed_before_ = 0;  // seconds of earlier sessions (from the checkpoint)
  Clock::time_point start_;
  std::vector<std::string> csv_rows_;  // loss.csv rows (without the header)
  double last_loss_avg_ = 0;
  uint64_t noise_seed_ = 0;
  // The learning-rate schedule as run: one segment per change of rate, warmup or cooldown across
  // resumes, each with the steps it covered ("from", and "until" once a later one took over).
  nlohmann::json lr_history_ = nlohmann::json::array();
  nlohmann::json init_from_;  // provenance of --init-from (null if none)
};

Result<std::unique_ptr<Trainer>> Trainer::Create(const TrainOptions& options) {
  std::unique_ptr<Trainer> t(new Trainer(options));
  VF_RETURN_NOT_OK(t->Init());
  return t;
}

Status Trainer::Init() {
  const TrainOptions& o = opt_;
  if (o.out.empty()) return Status::InvalidArgument("training needs an output package directory");
  if (o.steps < 1) return Status::InvalidArgument("--steps must be at least 1");
  if (o.batch < 1 || o.batch > 1024) return Status::InvalidArgument("--batch must be 1..1024");
  if (!(o.lr > 0) || !(o.ema_decay >= 0 && o.ema_decay < 1)) {
    return Status::InvalidArgument("--lr must be > 0 and --ema-decay in [0, 1)");
  }
  if (o.lr_decay_from < -1 || !(o.lr_final >= 0 && o.lr_final <= 1)) {
    return Status::InvalidArgument(
        "--lr-decay-from must be -1 (no cooldown) or a step >= 0, and --lr-final in [0, 1]");
  }
  if (o.cond_dropout < 0 || o.cond_dropout > 1 || o.image_fraction < 0 || o.image_fraction > 1) {
    return Status::InvalidArgument("--cond-dropout and --image-fraction must be in [0, 1]");
  }
  if (o.checkpoint_every < 1 || o.log_every < 1) {
    return Status::InvalidArgument("--checkpoint-every and --log-every must be at least 1");
  }
  VF_ASSIGN_OR_RETURN(preset_, GetPreset(o.preset));
  if (o.stage < 0 || o.stage >= static_cast<int>(preset_.stages.size())) {
    return Status::InvalidArgument(fmt::format("--stage {} is not a stage of preset {} (0..{})",
                                               o.stage, o.preset, preset_.stages.size() - 1));
  }
  spec_ = preset_.stages[o.stage];
  spec_.sampling.prediction = o.prediction == Parameterization::kV ? "v" : "eps";
  if (o.cond_prior_std >= 0 && spec_.kind != StageKind::kBase) {
    spec_.net.cond_prior_std = o.cond_prior_std;
    spec_.net.cond_skip = o.cond_prior_std == 0;  // 0: the older −σ·cond offset
    if (o.cond_prior_std == 0) spec_.net.cond_prior_blend = 0;
  }
  // Layers for A/B runs: -1 keeps the preset's choice, 0/1 sets it. The frame embedding is the
  // base's (motion from the caption); space-time attention suits any stage with spatial
  // attention (an SR stage then sees an object's shape in every frame at once).
  if (o.frame_embedding >= 0) {
    if (spec_.kind != StageKind::kBase) {
      return Status::InvalidArgument("--frame-embedding is for the base stage only");
    }
    spec_.net.frame_embedding = o.frame_embedding == 1;
  }
  if (o.spacetime_attention >= 0) {
    bool any_attention = false;
    for (int l = 0; l < spec_.net.levels(); ++l) any_attention |= spec_.net.attention_at(l);
    if (o.spacetime_attention == 1 && !any_attention) {
      return Status::InvalidArgument(fmt::format(
          "--spacetime-attention on: stage {} ({}) has no spatial attention to extend over time",
          o.stage, spec_.name));
    }
    spec_.net.spacetime_attention = o.spacetime_attention == 1;
  }
  if (o.plain_output && o.cond_prior_std >= 0) {
    return Status::InvalidArgument("--plain-output and --cond-prior-std exclude each other");
  }
  // Both skips are v-space parameterizations: an ε network predicts ε itself.
  if (o.prediction != Parameterization::kV || o.plain_output) {
    spec_.net.cond_skip = false;
    spec_.net.cond_prior_std = 0;
    spec_.net.cond_prior_blend = 0;
  }
  VF_RETURN_NOT_OK(spec_.net.Validate());
  if (opt_.crop_h == 0 && spec_.trained_on_crops) opt_.crop_h = spec_.crop_h;
  if (opt_.crop_w == 0 && spec_.trained_on_crops) opt_.crop_w = spec_.crop_w;
  const int64_t div = spec_.net.divisor();
  for (int64_t c : {opt_.crop_h, opt_.crop_w}) {
    if (c < 0 || (c > 0 && c % div != 0)) {
      return Status::InvalidArgument(fmt::format(
          "crop sizes must be multiples of {} for stage {} ({})", div, spec_.index, spec_.name));
    }
  }
  if (opt_.crop_frames < 0 || opt_.crop_frames > spec_.frames ||
      opt_.crop_frames % spec_.temporal_factor != 0) {
    return Status::InvalidArgument(fmt::format("--crop-frames must be 0..{} and a multiple of {}",
                                               spec_.frames, spec_.temporal_factor));
  }
  if (opt_.crop_frames > 0 && spec_.net.temporal == TemporalMixing::kAttention) {
    // Relative-position attention would see shorter clips than at sampling; allowed, but say so.
    VF_LOG_WARN("stage {}: temporal crops with temporal attention change its context length",
                spec_.name);
  }
  if (o.data == "synth") {
    data_ = MakeSynthData(spec_, o.seed);
    eval_data_ = MakeSynthData(spec_, Mix(o.seed ^ 0xe7a1da7aULL));  // held out: other scenes
  } else {
    VF_ASSIGN_OR_RETURN(data_, MakeDirData(spec_, o.data, o.seed));
    VF_ASSIGN_OR_RETURN(eval_data_, MakeDirData(spec_, o.data, Mix(o.seed ^ 0xe7a1da7aULL)));
  }
  encoder_ = MakeBuiltinTextEncoder(preset_.text_dim, preset_.text_tokens);
  noise_seed_ = Mix(o.seed ^ 0x7a11ULL);
  ckpt_dir_ = o.checkpoint_dir.empty() ? fs::path(o.out + ".ckpt") : fs::path(o.checkpoint_dir);
  AdoptCheckpointNetChoices();

  VF_ASSIGN_OR_RETURN(net_, MakeVideoUNet(spec_.net, o.device));
  VF_ASSIGN_OR_RETURN(ema_, MakeVideoUNet(spec_.net, o.device));
  InitWeights(*net_, 0x5eedULL + static_cast<uint64_t>(spec_.index));
  net_->train();
  ema_->eval();
  {
    torch::NoGradGuard no_grad;
    auto np = net_->named_parameters(/*recurse=*/true);
    auto ep = ema_->named_parameters(/*recurse=*/true);
    for (const auto& item : np) {
      names_.push_back(item.key());
      params_.push_back(item.value());
      torch::Tensor e = ep[item.key()];
      e.copy_(item.value());
      e.set_requires_grad(false);
      ema_params_.push_back(e);
      m_.push_back(torch::zeros_like(item.value()));
      v_.push_back(torch::zeros_like(item.value()));
    }
  }
  const bool have_ckpt = fs::exists(ckpt_dir_ / kLatestFile);
  if (o.resume && have_ckpt) {
    VF_RETURN_NOT_OK(Resume());
  } else if (o.resume && o.init_from.empty()) {
    VF_LOG_INFO("no checkpoint in {}: starting from step 0", ckpt_dir_.string());
  }
  if (!have_ckpt && !o.init_from.empty()) VF_RETURN_NOT_OK(InitFrom());
  if (!o.resume && have_ckpt) {
    return Status::InvalidArgument(fmt::format(
        "{} already holds a checkpoint of a training run: pass --resume to continue it, or "
        "choose another --checkpoint-dir / remove that directory to start over",
        ckpt_dir_.string()));
  }
  NoteLrSegment();
  std::error_code ec;
  fs::create_directories(ckpt_dir_, ec);
  if (ec) {
    return Status::IOError(fmt::format("cannot create {}: {}", ckpt_dir_.string(), ec.message()));
  }
  return Status::OK();
}

nlohmann::json Trainer::LrSegment() const {
  nlohmann::json seg = {{"lr", opt_.lr}, {"warmup", opt_.warmup}};
  if (opt_.lr_decay_from >= 0) {
    seg["cooldown_from"] = opt_.lr_decay_from;
    seg["cooldown_to"] = opt_.steps;
    seg["lr_final"] = opt_.lr_final;
  }
  return seg;
}

// Starts a new segment at step_ when this run's schedule differs from the last one recorded.
void Trainer::NoteLrSegment() {
  nlohmann::json seg = LrSegment();
  if (!lr_history_.empty()) {
    nlohmann::json last = lr_history_.back();
    last.erase("from");
    last.erase("until");
    if (last == seg) return;
    lr_history_.back()["until"] = step_;
  }
  seg["from"] = step_;
  lr_history_.push_back(std::move(seg));
}

namespace {

// The latest checkpoint of a run directory (LATEST names it) and its state.json.
Result<std::pair<fs::path, nlohmann::json>> LatestCheckpoint(const fs::path& run_dir) {
  std::ifstream latest(run_dir / kLatestFile);
  std::string name;
  latest >> name;
  const fs::path dir = run_dir / name;
  if (name.empty() || !fs::is_directory(dir)) {
    return Status::Corruption(
        fmt::format("{}/LATEST names '{}', which is not a checkpoint", run_dir.string(), name));
  }
  std::ifstream state_in(dir / "state.json");
  auto state = nlohmann::json::parse(state_in, nullptr, false);
  if (state.is_discarded() || !state.is_object()) {
    return Status::Corruption(fmt::format("{}/state.json is not valid JSON", dir.string()));
  }
  return std::make_pair(dir, std::move(state));
}

}  // namespace

// The network choices that go with the weights, as in a model package: the base's motion layers
// (frame embedding, space-time attention), and the SR output parameterization (cond_skip /
// cond_prior_std / cond_prior_blend), which resuming without --cond-prior-std keeps from the
// checkpoint even where the preset has moved on; the architecture check in Resume() then compares
// the rest.
void Trainer::AdoptCheckpointNetChoices() {
  if (!opt_.resume) return;
  auto latest = LatestCheckpoint(ckpt_dir_);
  if (!latest.ok() || !latest->second.contains("architecture")) return;  // Resume() reports it
  auto arch = UNetConfig::FromJson(latest->second["architecture"]);
  if (!arch.ok()) return;
  // The base's motion layers go with the weights too: a run started before the frame embedding
  // keeps going without.
  if (!SameMotionLayers(*arch, spec_.net)) {
    VF_LOG_INFO(
        "stage {}: keeping the checkpoint's frame_embedding ({}) and spacetime_attention ({})",
        spec_.name, arch->frame_embedding, arch->spacetime_attention);
    CopyMotionLayers(*arch, &spec_.net);
  }
  if (opt_.cond_prior_std >= 0 || opt_.plain_output || spec_.kind == StageKind::kBase) return;
  if (!SameOutputSkip(*arch, spec_.net)) {
    VF_LOG_INFO(
        "stage {}: keeping the checkpoint's output skip (cond_skip {}, cond_prior_std {}, "
        "cond_prior_blend {})",
        spec_.name, arch->cond_skip, arch->cond_prior_std, arch->cond_prior_blend);
    CopyOutputSkip(*arch, &spec_.net);
  }
}

// Copies a checkpoint's tensors into the run's. Every checkpoint tensor must find its place; with
// `missing` set, tensors of the network the checkpoint lacks keep their values and are listed there
// (a grown network), otherwise they are an error.
Status Trainer::LoadTensors(const fs::path& dir, std::vector<std::string>* missing) {
  VF_ASSIGN_OR_RETURN(auto weights, ReadSafetensors((dir / "weights.safetensors").string()));
  VF_ASSIGN_OR_RETURN(auto adam, ReadSafetensors((dir / "adam.safetensors").string()));
  torch::NoGradGuard no_grad;
  size_t used = 0;
  auto load = [&](std::map<std::string, torch::Tensor>& from, const std::string& key,
                  torch::Tensor& into, bool* absent) -> Status {
    auto it = from.find(key);
    if (it == from.end() && missing != nullptr) {
      *absent = true;
      return Status::OK();
    }
    if (it == from.end() || it->second.sizes() != into.sizes()) {
      return Status::Corruption(
          fmt::format("checkpoint {}: tensor {} missing or of the wrong shape", dir.string(), key));
    }
    into.copy_(it->second);
    ++used;
    return Status::OK();
  };
  for (size_t i = 0; i < names_.size(); ++i) {
    bool absent = false;
    VF_RETURN_NOT_OK(load(weights, "param/" + names_[i], params_[i], &absent));
    if (absent) {  // a new tensor: its EMA starts equal to it, its moments at zero
      missing->push_back(names_[i]);
      continue;
    }
    VF_RETURN_NOT_OK(load(weights, "ema/" + names_[i], ema_params_[i], &absent));
    VF_RETURN_NOT_OK(load(adam, "m/" + names_[i], m_[i], &absent));
    VF_RETURN_NOT_OK(load(adam, "v/" + names_[i], v_[i], &absent));
    if (absent) {
      return Status::Corruption(
          fmt::format("checkpoint {}: tensor {} has weights but not its EMA or moments",
                      dir.string(), names_[i]));
    }
  }
  if (used != weights.size() + adam.size()) {
    return Status::InvalidArgument(fmt::format(
        "checkpoint {} holds {} tensors this stage's network has no place for: its architecture "
        "differs by more than added layers",
        dir.string(), weights.size() + adam.size() - used));
  }
  return Status::OK();
}

// The step, time, learning-rate history and loss log of a run's checkpoint, as this run's own.
void Trainer::AdoptProgress(const fs::path& run_dir, const nlohmann::json& state) {
  step_ = state.value("step", int64_t{0});
  elapsed_before_ = state.value("elapsed_s", 0.0);
  if (state.contains("lr_history") && state["lr_history"].is_array()) {
    lr_history_ = state["lr_history"];
  } else if (step_ > 0) {  // a checkpoint from before the history was kept
    lr_history_ = nlohmann::json::array(
        {{{"from", 0}, {"until", step_}, {"note", "not recorded by the checkpoint"}}});
  }
  // The loss log keeps the rows up to the checkpoint; later ones are recomputed.
  csv_rows_.clear();
  std::ifstream csv(run_dir / kLossCsv);
  std::string line;
  while (std::getline(csv, line)) {
    if (line.empty() || line.rfind("step,", 0) == 0) continue;
    if (std::stoll(line.substr(0, line.find(','))) <= step_) csv_rows_.push_back(line);
  }
}

Status Trainer::InitFrom() {
  VF_ASSIGN_OR_RETURN(auto latest, LatestCheckpoint(opt_.init_from));
  const fs::path& dir = latest.first;
  const nlohmann::json& state = latest.second;
  for (const auto& [key, want] : std::vector<std::pair<const char*, nlohmann::json>>{
           {"preset", opt_.preset},
           {"stage", opt_.stage},
           {"prediction", spec_.sampling.prediction}}) {
    if (!state.contains(key) || state[key] != want) {
      return Status::InvalidArgument(
          fmt::format("--init-from {}: that run has {}={}, this one {}", opt_.init_from, key,
                      state.contains(key) ? state[key].dump() : "?", want.dump()));
    }
  }
  std::vector<std::string> added;
  VF_RETURN_NOT_OK(LoadTensors(dir, &added));
  AdoptProgress(opt_.init_from, state);
  init_from_ = {{"checkpoint", dir.string()}, {"step", step_}, {"new_tensors", added}};
  VF_LOG_INFO("stage {} ({}): starting from {} at step {}; new tensors (initial values): {}",
              spec_.index, spec_.name, dir.string(), step_,
              added.empty() ? std::string("none") : fmt::format("{}", fmt::join(added, ", ")));
  return Status::OK();
}

Status Trainer::Resume() {
  VF_ASSIGN_OR_RETURN(auto latest, LatestCheckpoint(ckpt_dir_));
  const fs::path& dir = latest.first;
  const nlohmann::json& state = latest.second;
  // A resumed run must compute the same steps as the one that stopped.
  const std::string prediction = spec_.sampling.prediction;
  auto mismatch = [&](const char* key, const nlohmann::json& want) -> Status {
    if (!state.contains(key) || state[key] != want) {
      return Status::InvalidArgument(fmt::format(
          "checkpoint {} was trained with {}={}, this run asks for {}: resume with the same "
          "settings or start a new --checkpoint-dir",
          dir.string(), key, state.contains(key) ? state[key].dump() : "?", want.dump()));
    }
    return Status::OK();
  };
  VF_RETURN_NOT_OK(mismatch("preset", opt_.preset));
  VF_RETURN_NOT_OK(mismatch("stage", opt_.stage));
  VF_RETURN_NOT_OK(mismatch("prediction", prediction));
  VF_RETURN_NOT_OK(mismatch("batch", opt_.batch));
  VF_RETURN_NOT_OK(mismatch("seed", opt_.seed));
  VF_RETURN_NOT_OK(mismatch("data", opt_.data));
  // Older checkpoints did not record the architecture; the tensor shapes are checked below.
  if (state.contains("architecture"))
    VF_RETURN_NOT_OK(mismatch("architecture", spec_.net.ToJson()));
  else if (spec_.net.cond_skip) {
    return Status::InvalidArgument(fmt::format(
        "checkpoint {} predates the SR output skip (cond_skip): start a new --checkpoint-dir",
        dir.string()));
  }
  VF_RETURN_NOT_OK(LoadTensors(dir, nullptr));
  AdoptProgress(ckpt_dir_, state);
  if (state.contains("init_from")) init_from_ = state["init_from"];
  VF_LOG_INFO("resumed stage {} ({}) from {} at step {}", spec_.index, spec_.name, dir.string(),
              step_);
  return Status::OK();
}

Result<Batch> Trainer::MakeBatch(int64_t step) {
  const int64_t key_step = opt_.fixed_batch ? 0 : step;
  const bool images = data_->supports_images() && opt_.image_fraction > 0;
  Batch b;
  std::vector<torch::Tensor> xs, conds;
  std::vector<bool> image_rows;
  for (int64_t r = 0; r < opt_.batch; ++r) {
    const uint64_t index = static_cast<uint64_t>(key_step * opt_.batch + r);
    const bool image =
        images && KeyedUniform(opt_.seed, key_step, r, Draw::kImage) < opt_.image_fraction;
    VF_ASSIGN_OR_RETURN(TrainingExample ex, data_->Get(index, image));
    b.captions.push_back(ex.caption);
    image_rows.push_back(image);
    xs.push_back(VideoToTensor(ex.target));
    if (spec_.kind != StageKind::kBase) conds.push_back(VideoToTensor(ex.cond));
  }
  b.x = torch::stack(xs);
  b.image_mask = torch::zeros({opt_.batch}, torch::kBool);
  for (int64_t r = 0; r < opt_.batch; ++r) b.image_mask[r] = static_cast<bool>(image_rows[r]);
  if (spec_.kind != StageKind::kBase) {
    // The same conditioning path as sampling (StageRunner): upsample frames, then resize.
    torch::Tensor cond = torch::stack(conds);
    if (spec_.temporal_factor > 1) {
      VF_ASSIGN_OR_RETURN(TemporalUpsample mode, ParseTemporalUpsample(spec_.temporal_upsample));
      cond = UpsampleFrames(cond, spec_.temporal_factor, mode);
    }
    if (cond.size(3) != spec_.height || cond.size(4) != spec_.width) {
      cond = ResizeVideo(cond, spec_.height, spec_.width);
    }
    b.cond = cond;
  }
  // Random crops (the fully convolutional stage trains on crops, samples whole frames).
  const int64_t ct = opt_.crop_frames > 0 ? opt_.crop_frames : spec_.frames;
  const int64_t ch = opt_.crop_h > 0 ? std::min(opt_.crop_h, spec_.height) : spec_.height;
  const int64_t cw = opt_.crop_w > 0 ? std::min(opt_.crop_w, spec_.width) : spec_.width;
  if (ct != spec_.frames || ch != spec_.height || cw != spec_.width) {
    std::vector<torch::Tensor> cx, cc;
    for (int64_t r = 0; r < opt_.batch; ++r) {
      // A TSR crop starts on an original frame, so the repeated conditioning frames keep the
      // phase they have at sampling.
      const int64_t tf = spec_.temporal_factor;
      const int64_t t0 =
          KeyedOffset(opt_.seed, key_step, r, Draw::kCropT, (spec_.frames - ct) / tf) * tf;
      const int64_t y0 = KeyedOffset(opt_.seed, key_step, r, Draw::kCropY, spec_.height - ch);
      const int64_t x0 = KeyedOffset(opt_.seed, key_step, r, Draw::kCropX, spec_.width - cw);
      auto crop = [&](const torch::Tensor& v) {
        return v[r].narrow(1, t0, ct).narrow(2, y0, ch).narrow(3, x0, cw);
      };
      cx.push_back(crop(b.x));
      if (b.cond.defined()) cc.push_back(crop(b.cond));
    }
    b.x = torch::stack(cx);
    if (b.cond.defined()) b.cond = torch::stack(cc);
  }
  b.x = b.x.to(opt_.device);
  if (b.cond.defined()) b.cond = b.cond.to(opt_.device);
  b.image_mask = b.image_mask.to(opt_.device);
  return b;
}

Result<double> Trainer::Step(int64_t step) {
  const int64_t key_step = opt_.fixed_batch ? 0 : step;
  VF_ASSIGN_OR_RETURN(Batch b, MakeBatch(step));
  const int64_t batch = opt_.batch;
  std::vector<int64_t> rows(batch);
  std::vector<float> logsnr(batch), aug(batch);
  auto keep = torch::ones({batch}, torch::kBool);
  for (int64_t r = 0; r < batch; ++r) {
    rows[r] = r;
    logsnr[r] =
        static_cast<float>(schedule_.LogSnr(KeyedUniform(opt_.seed, key_step, r, Draw::kTime)));
    aug[r] = static_cast<float>(
        schedule_.LogSnr(opt_.aug_t_max * KeyedUniform(opt_.seed, key_step, r, Draw::kAugTime)));
    if (KeyedUniform(opt_.seed, key_step, r, Draw::kDropText) < opt_.cond_dropout) {
      keep[r] = false;
    }
  }
  torch::Tensor ls = torch::tensor(logsnr).to(opt_.device);
  torch::Tensor alpha = BroadcastTo(AlphaFromLogSnr(ls), b.x);
  torch::Tensor sigma = BroadcastTo(SigmaFromLogSnr(ls), b.x);
  const auto per_sample = b.x.sizes().slice(1);
  torch::Tensor eps = KeyedNormalBatch(noise_seed_, spec_.index * 2, static_cast<int>(key_step),
                                       rows, per_sample, opt_.device);
  torch::Tensor z = Diffuse(b.x, eps, alpha, sigma);
  VF_ASSIGN_OR_RETURN(TextEmbedding text, encoder_->Encode(b.captions, opt_.device));
  UNetInputs in;
  in.z = z;
  in.logsnr = ls;
  in.text_tokens = text.tokens;
  in.text_mask = text.mask;
  in.text_pooled = text.pooled;
  in.text_keep = keep.to(opt_.device);
  in.image_mask = b.image_mask;
  if (b.cond.defined()) {
    torch::Tensor aug_ls = torch::tensor(aug).to(opt_.device);
    torch::Tensor aug_noise =
        KeyedNormalBatch(noise_seed_, spec_.index * 2 + 1, static_cast<int>(key_step), rows,
                         b.cond.sizes().slice(1), opt_.device);
    in.cond_video = NoiseAugment(b.cond, aug_ls, aug_noise);
    in.aug_logsnr = aug_ls;
  }
  torch::Tensor out;
  if (opt_.bf16) {
    at::autocast::set_cpu_enabled(opt_.device.is_cpu());
    at::autocast::set_autocast_cpu_dtype(torch::kBFloat16);
    at::autocast::set_enabled(opt_.device.is_cuda());
    if (opt_.device.is_cuda()) at::autocast::set_autocast_gpu_dtype(torch::kBFloat16);
    try {
      out = net_->forward(in);
    } catch (...) {
      at::autocast::set_cpu_enabled(false);
      at::autocast::set_enabled(false);
      throw;
    }
    at::autocast::set_cpu_enabled(false);
    at::autocast::set_enabled(false);
    at::autocast::clear_cache();
  } else {
    out = net_->forward(in);
  }
  torch::Tensor target = TrainingTarget(opt_.prediction, b.x, eps, alpha, sigma);
  torch::Tensor loss = torch::mse_loss(out.to(torch::kFloat32), target);
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
  loss.backward();
  const double loss_value = loss.item<double>();
  if (!std::isfinite(loss_value)) {
    return Status::Internal(fmt::format(
        "stage {} step {}: the loss is {} (lower --lr, or resume from the last checkpoint)",
        spec_.name, step, loss_value));
  }

  torch::NoGradGuard no_grad;
  double norm2 = 0;
  for (auto& p : params_) {
    if (p.grad().defined()) norm2 += p.grad().pow(2).sum().item<double>();
  }
  const double clip =
      opt_.grad_clip > 0 ? std::min(1.0, opt_.grad_clip / (std::sqrt(norm2) + 1e-6)) : 1.0;
  const double t = static_cast<double>(step + 1);
  const double lr = LearningRate(step);
  const double bc1 = 1.0 - std::pow(kBeta1, t), bc2 = 1.0 - std::pow(kBeta2, t);
  const double decay = std::min(opt_.ema_decay, (1.0 + t) / (10.0 + t));
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor g = params_[i].grad();
    if (!g.defined()) continue;  // e.g. the SR-only layers of a base stage
    if (clip < 1.0) g = g * clip;
    m_[i].mul_(kBeta1).add_(g, 1.0 - kBeta1);
    v_[i].mul_(kBeta2).addcmul_(g, g, 1.0 - kBeta2);
    torch::Tensor denom = (v_[i] / bc2).sqrt_().add_(kAdamEps);
    params_[i].addcdiv_(m_[i], denom, -lr / bc1);
    ema_params_[i].mul_(decay).add_(params_[i], 1.0 - decay);
  }
  return loss_value;
}

nlohmann::json Trainer::Provenance() const {
  const double elapsed =
      elapsed_before_ + std::chrono::duration<double>(Clock::now() - start_).count();
  nlohmann::json p = {
      {"trainer", "vidfarm train"},
      {"data", data_->Describe()},
      {"steps", step_},
      {"batch", opt_.batch},
      {"loss", spec_.sampling.prediction == "v" ? "v-prediction MSE" : "eps-prediction MSE"},
      {"final_loss_avg", last_loss_avg_},
      {"optimizer",
       fmt::format("Adam(b1={}, b2={}, eps={}) lr {} warmup {}{}, grad clip {}, "
                   "EMA {} (package holds the EMA weights)",
                   kBeta1, kBeta2, kAdamEps, opt_.lr, opt_.warmup,
                   opt_.lr_decay_from >= 0 ? fmt::format(", cosine cooldown to x{} from step {}",
                                                         opt_.lr_final, opt_.lr_decay_from)
                                           : std::string(),
                   opt_.grad_clip, opt_.ema_decay)},
      {"lr_history", lr_history_},
      {"cond_dropout", opt_.cond_dropout},
      {"image_fraction", data_->supports_images() ? opt_.image_fraction : 0.0},
      {"aug_t_max", spec_.kind == StageKind::kBase ? 0.0 : opt_.aug_t_max},
      {"crop", {opt_.crop_frames, opt_.crop_h, opt_.crop_w}},
      {"bf16_autocast", opt_.bf16},
      {"device", opt_.device.str()},
      {"threads", torch::get_num_threads()},
      {"train_seconds", std::round(elapsed)},
      {"seed", opt_.seed},
  };
  if (!init_from_.is_null()) p["init_from"] = init_from_;
  return p;
}

Status Trainer::WriteLossFiles() {
  std::string csv = std::string(kLossCsvHeader) + "\n";
  std::vector<double> xs, ys, exs, eys, bys;
  for (const std::string& row : csv_rows_) {
    csv += row + "\n";
    std::vector<double> f;
    std::stringstream ss(row);
    std::string cell;
    while (std::getline(ss, cell, ',')) f.push_back(cell.empty() ? -1 : std::stod(cell));
    f.resize(7, -1);  // trailing empty cells (no evaluation at this row)
    xs.push_back(f[0]);
    ys.push_back(f[1]);
    if (f[5] >= 0) {
      exs.push_back(f[0]);
      eys.push_back(f[5]);
      bys.push_back(f[6]);
    }
  }
  VF_RETURN_NOT_OK(WriteTextFileAtomic(ckpt_dir_ / kLossCsv, csv));
  if (xs.size() < 2) return Status::OK();
  LinePlotOptions lp;
  lp.title = fmt::format("{} stage {} ({}): training loss", opt_.preset, spec_.index, spec_.name);
  lp.x_label = "step";
  lp.y_label = spec_.sampling.prediction == "v" ? "v-MSE" : "eps-MSE";
  lp.log_y = true;
  Series s;
  s.name = "loss (mean per log window)";
  s.x = xs;
  s.y = ys;
  VF_ASSIGN_OR_RETURN(Video plot, LinePlot({s}, lp));
  VF_RETURN_NOT_OK(SavePlotPng(plot, (ckpt_dir_ / "loss.png").string()));
  if (exs.size() >= 2) {
    LinePlotOptions ep;
    ep.title = fmt::format("{} stage {} ({}): held-out PSNR", opt_.preset, spec_.index, spec_.name);
    ep.x_label = "step";
    ep.y_label = "PSNR dB";
    Series model;
    model.name = "model (EMA weights, DDIM)";
    model.x = exs;
    model.y = eys;
    std::vector<Series> series = {model};
    if (!bys.empty() && bys[0] >= 0) {
      Series naive;
      naive.name = spec_.kind == StageKind::kTemporalSR ? "frame repetition" : "bilinear";
      naive.x = exs;
      naive.y = bys;
      series.push_back(naive);
    }
    VF_ASSIGN_OR_RETURN(Video eplot, LinePlot(series, ep));
    VF_RETURN_NOT_OK(SavePlotPng(eplot, (ckpt_dir_ / "psnr.png").string()));
  }
  return Status::OK();
}

Status Trainer::SaveCheckpoint() {
  const std::string name = CheckpointName(step_);
  const fs::path tmp = ckpt_dir_ / (name + ".tmp");
  const fs::path final_dir = ckpt_dir_ / name;
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return Status::IOError(fmt::format("cannot create {}: {}", tmp.string(), ec.message()));
  std::vector<std::pair<std::string, torch::Tensor>> weights, adam;
  for (size_t i = 0; i < names_.size(); ++i) {
    weights.emplace_back("param/" + names_[i], params_[i]);
    weights.emplace_back("ema/" + names_[i], ema_params_[i]);
    adam.emplace_back("m/" + names_[i], m_[i]);
    adam.emplace_back("v/" + names_[i], v_[i]);
  }
  // Everything in f32: a resumed run then computes bit for bit the steps the stopped one would
  // have (bf16 moments would halve adam.safetensors but change every later step slightly).
  VF_RETURN_NOT_OK(
      WriteSafetensors((tmp / "weights.safetensors").string(), weights, "F32").status());
  VF_RETURN_NOT_OK(WriteSafetensors((tmp / "adam.safetensors").string(), adam, "F32").status());
  const double elapsed =
      elapsed_before_ + std::chrono::duration<double>(Clock::now() - start_).count();
  nlohmann::json state = {{"step", step_},
                          {"elapsed_s", elapsed},
                          {"preset", opt_.preset},
                          {"stage", opt_.stage},
                          {"prediction", spec_.sampling.prediction},
                          {"batch", opt_.batch},
                          {"seed", opt_.seed},
                          {"data", opt_.data},
                          {"architecture", spec_.net.ToJson()},
                          {"lr", opt_.lr},
                          {"lr_history", lr_history_}};
  if (!init_from_.is_null()) state["init_from"] = init_from_;
  VF_RETURN_NOT_OK(WriteTextFileAtomic(tmp / "state.json", state.dump(2) + "\n"));
  // The loss log before LATEST: a run killed in between resumes from the older checkpoint, which
  // keeps the log's rows up to its own step. After LATEST, a kill would lose this checkpoint's
  // rows since the last one.
  VF_RETURN_NOT_OK(WriteLossFiles());
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) return Status::IOError(fmt::format("cannot rename {}: {}", tmp.string(), ec.message()));
  VF_RETURN_NOT_OK(WriteTextFileAtomic(ckpt_dir_ / kLatestFile, name + "\n"));
  // Older checkpoints go only once LATEST names the new one.
  for (const auto& entry : fs::directory_iterator(ckpt_dir_, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.rfind("step-", 0) == 0 && n != name) fs::remove_all(entry.path(), ec);
  }
  return SavePackage(opt_.out, spec_, opt_.preset, ema_, Provenance(), WeightDType::kF16);
}

// Held-out examples sampled by the EMA network with a short DDIM sampler; PSNR against the ground
// truth, and the naive upsampler's PSNR for SR stages (bilinear, or frame repetition for TSR).
Result<std::pair<double, double>> Trainer::Evaluate() {
  std::vector<std::string> prompts;
  std::vector<Video> targets, inputs;
  for (int64_t i = 0; i < opt_.eval_examples; ++i) {
    VF_ASSIGN_OR_RETURN(TrainingExample ex, eval_data_->Get(static_cast<uint64_t>(i), false));
    prompts.push_back(ex.caption);
    targets.push_back(std::move(ex.target));
    if (spec_.kind != StageKind::kBase) inputs.push_back(std::move(ex.cond));
  }
  ModelPackage pkg;
  pkg.spec = spec_;
  pkg.net = ema_;
  VF_ASSIGN_OR_RETURN(auto runner,
                      StageRunner::Create(pkg, preset_, StageRunnerOptions{opt_.device}));
  StageOverrides ov;
  ov.steps = opt_.eval_steps;
  ov.sampler = "ddim";
  VF_ASSIGN_OR_RETURN(StageSettings settings, ResolveStageSettings(spec_, ov));
  StageRequest req;
  req.prompts = prompts;
  req.inputs = inputs;
  req.seed = 7;
  VF_ASSIGN_OR_RETURN(std::vector<Video> outs, runner->Run(req, settings));
  double psnr = 0, base = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    VF_ASSIGN_OR_RETURN(double p, Psnr(outs[i], targets[i]));
    psnr += std::min(p, 99.0);
    if (spec_.kind != StageKind::kBase) {
      torch::Tensor c = VideoToTensor(inputs[i]);
      if (spec_.temporal_factor > 1) {
        c = UpsampleFrames(c, spec_.temporal_factor, TemporalUpsample::kRepeat);
      }
      if (c.size(2) != spec_.height || c.size(3) != spec_.width) {
        c = ResizeVideo(c, spec_.height, spec_.width);
      }
      VF_ASSIGN_OR_RETURN(Video naive, TensorToVideo(c.clamp(-1, 1), spec_.fps));
      VF_ASSIGN_OR_RETURN(double q, Psnr(naive, targets[i]));
      base += std::min(q, 99.0);
    }
  }
  const double n = static_cast<double>(outs.size());
  return std::make_pair(psnr / n, spec_.kind == StageKind::kBase ? -1.0 : base / n);
}

Result<TrainResult> Trainer::Run(const std::function<void(const TrainProgress&)>& on_progress) {
  TrainResult result;
  result.start_step = step_;
  start_ = Clock::now();
  auto window_start = Clock::now();
  double window_loss = 0;
  int64_t window_n = 0;
  VF_LOG_INFO("training {} stage {} ({}) on {}: steps {}..{}, batch {}, {} parameters", opt_.preset,
              spec_.index, spec_.name, data_->Describe(), step_, opt_.steps, opt_.batch,
              CountParameters(*net_));
  while (step_ < opt_.steps) {
    if (opt_.stop != nullptr && opt_.stop->load()) break;
    double loss = 0;
    try {
      VF_ASSIGN_OR_RETURN(loss, Step(step_));
    } catch (const c10::Error& e) {
      return Status::Internal(
          fmt::format("stage {} step {}: {}", spec_.name, step_, e.what_without_backtrace()));
    }
    ++step_;
    result.losses.push_back(loss);
    window_loss += loss;
    ++window_n;
    const bool log_now = step_ % opt_.log_every == 0 || step_ == opt_.steps;
    const bool eval_now =
        opt_.eval_every > 0 && (step_ % opt_.eval_every == 0 || step_ == opt_.steps);
    if (log_now || eval_now) {
      const auto now = Clock::now();
      TrainProgress p;
      p.step = step_;
      p.steps = opt_.steps;
      p.loss = loss;
      p.loss_avg = window_loss / static_cast<double>(std::max<int64_t>(window_n, 1));
      p.steps_per_s = static_cast<double>(window_n) /
                      std::max(1e-9, std::chrono::duration<double>(now - window_start).count());
      p.elapsed_s = elapsed_before_ + std::chrono::duration<double>(now - start_).count();
      if (eval_now) {
        try {
          VF_ASSIGN_OR_RETURN(auto ev, Evaluate());
          p.eval_psnr = ev.first;
          p.eval_baseline_psnr = ev.second;
        } catch (const c10::Error& e) {
          return Status::Internal(fmt::format("evaluating stage {} at step {}: {}", spec_.name,
                                              step_, e.what_without_backtrace()));
        }
      }
      last_loss_avg_ = p.loss_avg;
      csv_rows_.push_back(fmt::format(
          "{},{:.6g},{:.6g},{:.4g},{:.1f},{},{}", step_, p.loss_avg, LearningRate(step_ - 1),
          p.steps_per_s, p.elapsed_s, p.eval_psnr >= 0 ? fmt::format("{:.3f}", p.eval_psnr) : "",
          p.eval_baseline_psnr >= 0 ? fmt::format("{:.3f}", p.eval_baseline_psnr) : ""));
      if (on_progress) on_progress(p);
      window_loss = 0;
      window_n = 0;
      window_start = Clock::now();
    }
    if (step_ % opt_.checkpoint_every == 0 || step_ == opt_.steps) {
      VF_RETURN_NOT_OK(SaveCheckpoint());
    }
  }
  if (step_ % opt_.checkpoint_every != 0 && step_ != opt_.steps && step_ > result.start_step) {
    VF_RETURN_NOT_OK(SaveCheckpoint());  // stopped early: keep what was done
  }
  result.step = step_;
  result.loss_avg = last_loss_avg_;
  result.elapsed_s = elapsed_before_ + std::chrono::duration<double>(Clock::now() - start_).count();
  return result;
}

}  // namespace

double ScheduledLearningRate(const TrainOptions& o, int64_t step) {
  double lr = o.lr;
  if (o.warmup > 0) {
    lr *= std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(o.warmup));
  }
  if (o.lr_decay_from >= 0 && step >= o.lr_decay_from && o.steps > o.lr_decay_from) {
    const double u = std::min(1.0, static_cast<double>(step - o.lr_decay_from) /
                                       static_cast<double>(o.steps - o.lr_decay_from));
    lr *= o.lr_final + (1.0 - o.lr_final) * 0.5 * (1.0 + std::cos(M_PI * u));
  }
  return lr;
}

Result<TrainResult> Train(const TrainOptions& options,
                          const std::function<void(const TrainProgress&)>& on_progress) {
  try {
    VF_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(options));
    return trainer->Run(on_progress);
  } catch (const c10::Error& e) {
    return Status::Internal(fmt::format("training: {}", e.what_without_backtrace()));
  }
}

}  // namespace vidfarm::models
