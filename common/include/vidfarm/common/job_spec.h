// What a user asks for in one job; validated at submit (bad specs get a clear error and nothing is
// written), stored with the job, and handed to every stage worker with its task.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vidfarm/common/status.h"

namespace vidfarm {

struct JobSpec {
  std::string prompt;                // required, 1..1000 characters after trimming
  uint64_t seed = 1;                 // Default: 1. Same seed, same video.
  std::string preset = "tiny";       // Default: tiny.
  int priority = 0;                  // Default: 0. Higher runs first; range -1000..1000.
  std::vector<int> steps;            // empty, or one per stage (0 = the stage's default)
  std::string sampler;               // "" (per-stage default) | "ancestral" | "ddim"
  std::vector<double> guidance;      // empty, or one per stage (negative = the stage's default)
  std::string thresholding;          // "" | "none" | "static" | "dynamic"
  std::string format = "mp4";        // Default: mp4. mp4 | webm | gif
  bool keep_intermediates = false;   // Default: false. Keep every stage's video after the job.
  int last_stage = -1;               // Default: -1 (every stage). Stop after this stage index;
                                     // its video is the job's output (a quick low-res preview).

  // How many stages the job runs in a cascade of table_size stages (last_stage + 1, or all).
  int NumStages(size_t table_size) const {
    return last_stage < 0 ? static_cast<int>(table_size) : last_stage + 1;
  }

  // last_stage appears only when set, so a full job's JSON and fingerprint are what they were
  // before the field existed.
  nlohmann::json ToJson() const;
  // Accepts a JSON object with any subset of the fields (unknown fields are an error, so typos
  // are caught); validates the result.
  static Result<JobSpec> FromJson(const nlohmann::json& j);
  Status Validate() const;  // also checks the preset name and the per-stage list lengths
  // sha256 of the canonical JSON: identical specs share it (an interrupted `render` finds its job).
  std::string Fingerprint() const;
};

}  // namespace vidfarm
