#include "vidfarm/common/job_spec.h"

#include <fmt/format.h>

#include <cmath>

#include "vidfarm/common/cascade_table.h"
#include "vidfarm/common/sha256.h"

namespace vidfarm {
namespace {

Status Bad(const std::string& m) { return Status::InvalidArgument("job spec: " + m); }

}  // namespace

nlohmann::json JobSpec::ToJson() const {
  nlohmann::json j = {{"prompt", prompt},     {"seed", seed},
                      {"preset", preset},     {"priority", priority},
                      {"steps", steps},       {"sampler", sampler},
                      {"guidance", guidance}, {"thresholding", thresholding},
                      {"format", format},     {"keep_intermediates", keep_intermediates}};
  if (last_stage >= 0) j["last_stage"] = last_stage;
  return j;
}

Status JobSpec::Validate() const {
  const size_t first = prompt.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return Bad("prompt is empty");
  if (prompt.size() > 1000) return Bad("prompt is longer than 1000 characters");
  auto table = CascadeTable(preset);
  if (!table.ok()) return Bad(table.status().message());
  const size_t stages = table->size();
  if (priority < -1000 || priority > 1000) return Bad("priority must be in -1000..1000");
  if (last_stage < -1 || last_stage >= static_cast<int>(stages)) {
    return Bad(fmt::format("last_stage must be in 0..{} (or -1 for every stage), got {}",
                           stages - 1, last_stage));
  }
  if (!steps.empty() && steps.size() != stages) {
    return Bad(fmt::format("steps needs one value per stage ({}), got {}", stages, steps.size()));
  }
  for (int s : steps) {
    if (s < 0 || s > 10000) return Bad(fmt::format("steps must be in 0..10000, got {}", s));
  }
  if (!sampler.empty() && sampler != "ancestral" && sampler != "ddim") {
    return Bad(fmt::format("sampler '{}' is not ancestral or ddim", sampler));
  }
  if (!guidance.empty() && guidance.size() != stages) {
    return Bad(fmt::format("guidance needs one value per stage ({}), got {}", stages, guidance.size()));
  }
  for (double g : guidance) {
    if (!std::isfinite(g) || g > 100) return Bad(fmt::format("guidance {} is out of range (<= 100)", g));
  }
  if (!thresholding.empty() && thresholding != "none" && thresholding != "static" &&
      thresholding != "dynamic") {
    return Bad(fmt::format("thresholding '{}' is not none, static or dynamic", thresholding));
  }
  if (format != "mp4" && format != "webm" && format != "gif") {
    return Bad(fmt::format("format '{}' is not mp4, webm or gif", format));
  }
  return Status::OK();
}

Result<JobSpec> JobSpec::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) return Bad("must be a JSON object");
  JobSpec s;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    auto type_error = [&](const char* want) {
      return Bad(fmt::format("field '{}' must be {}", k, want));
    };
    if (k == "prompt") {
      if (!v.is_string()) return type_error("a string");
      s.prompt = v.get<std::string>();
    } else if (k == "seed") {
      if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
        return type_error("a non-negative integer");
      }
      s.seed = v.get<uint64_t>();
    } else if (k == "preset") {
      if (!v.is_string()) return type_error("a string");
      s.preset = v.get<std::string>();
    } else if (k == "priority") {
      if (!v.is_number_integer()) return type_error("an integer");
      const auto p = v.get<int64_t>();
      if (p < -1000 || p > 1000) return Bad("priority must be in -1000..1000");
      s.priority = static_cast<int>(p);
    } else if (k == "steps") {
      if (!v.is_array()) return type_error("an array of integers");
      for (const auto& x : v) {
        if (!x.is_number_integer()) return type_error("an array of integers");
        const auto n = x.get<int64_t>();
        if (n < 0 || n > 10000) return Bad(fmt::format("steps must be in 0..10000, got {}", n));
        s.steps.push_back(static_cast<int>(n));
      }
    } else if (k == "sampler" || k == "thresholding" || k == "format") {
      if (!v.is_string()) return type_error("a string");
      (k == "sampler" ? s.sampler : k == "thresholding" ? s.thresholding : s.format) =
          v.get<std::string>();
    } else if (k == "guidance") {
      if (!v.is_array()) return type_error("an array of numbers");
      for (const auto& x : v) {
        if (!x.is_number()) return type_error("an array of numbers");
        s.guidance.push_back(x.get<double>());
      }
    } else if (k == "last_stage") {
      if (!v.is_number_integer()) return type_error("an integer");
      const auto n = v.get<int64_t>();
      if (n < -1 || n > 1000) return Bad(fmt::format("last_stage {} is out of range", n));
      s.last_stage = static_cast<int>(n);
    } else if (k == "keep_intermediates") {
      if (!v.is_boolean()) return type_error("true or false");
      s.keep_intermediates = v.get<bool>();
    } else {
      return Bad(fmt::format("unknown field '{}'", k));
    }
  }
  VF_RETURN_NOT_OK(s.Validate());
  return s;
}

std::string JobSpec::Fingerprint() const {
  const std::string canonical = ToJson().dump();  // nlohmann orders object keys
  return Sha256Hex(canonical.data(), canonical.size());
}

}  // namespace vidfarm
