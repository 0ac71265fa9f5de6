// Model packages: one directory per stage holding config.json and weights.safetensors.
//
// config.json:
//   "format": "vidfarm-stage/1", "stage": 0..6, "name", "label", "kind", "preset",
//   "input" / "output": {"channels","frames","height","width","fps"}, "architecture" (UNetConfig),
//   "param_count", "prediction" ("v" | "eps"), "sampling" (defaults), "spec" (the full StageSpec),
//   "weights": {"file","sha256","dtype"}, "provenance" (free JSON from the trainer).
// Weight tensor names are the U-Net's parameter names (unet.h).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "vidfarm/common/status.h"
#include "vidfarm/stage_models/preset.h"
#include "vidfarm/stage_models/unet.h"

namespace vidfarm::models {

inline constexpr const char* kPackageFormat = "vidfarm-stage/1";
inline constexpr const char* kPackageConfigFile = "config.json";
inline constexpr const char* kPackageWeightsFile = "weights.safetensors";

enum class WeightDType { kF32, kF16 };

struct ModelPackage {
  StageSpec spec;  // the expected spec; sampling.prediction taken from the package
  VideoUNet net{nullptr};
  nlohmann::json config;
  bool random_init = false;
  std::string dir;  // empty for a random package
};

// The config.json a package of this stage would have (weights entry null).
nlohmann::json PackageConfig(const StageSpec& spec, const std::string& preset, int64_t param_count,
                             const nlohmann::json& provenance);

// Writes <dir>/config.json and <dir>/weights.safetensors into a temporary sibling directory and
// renames it into place, replacing an existing package at `dir` (not any other directory).
Status SavePackage(const std::string& dir, const StageSpec& spec, const std::string& preset,
                   VideoUNet& net, const nlohmann::json& provenance,
                   WeightDType dtype = WeightDType::kF16);

// Loads and checks a package against the stage the caller expects; weights become f32 on
// `device`. NotFound: missing directory, config or weights (the message names the path).
// Corruption: unparsable config, sha256 mismatch, bad safetensors, missing/extra tensors, tensor
// shape mismatch. InvalidArgument: another stage, other shapes or another architecture.
Result<ModelPackage> LoadPackage(const std::string& dir, const StageSpec& expected,
                                 torch::Device device);

// A package with InitWeights(init_seed) weights (random_init = true); for smoke tests and
// benchmarks without trained weights.
Result<ModelPackage> RandomPackage(const StageSpec& spec, uint64_t init_seed, torch::Device device);

}  // namespace vidfarm::models
