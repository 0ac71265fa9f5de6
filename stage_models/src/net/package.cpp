#include "vidfarm/stage_models/package.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "vidfarm/common/log.h"
#include "vidfarm/common/sha256.h"
#include "vidfarm/stage_models/safetensors.h"

namespace vidfarm::models {
namespace fs = std::filesystem;

namespace {

nlohmann::json Shape(int64_t channels, int64_t frames, int64_t height, int64_t width, double fps) {
  return {{"channels", channels},
          {"frames", frames},
          {"height", height},
          {"width", width},
          {"fps", fps}};
}

std::string StageName(int index, const std::string& label) {
  return "stage " + std::to_string(index) + " (" + label + ")";
}

// Keys whose values differ between two JSON objects, for error messages.
std::string DiffKeys(const nlohmann::json& a, const nlohmann::json& b) {
  std::string out;
  std::set<std::string> keys;
  for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
  for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
  for (const auto& k : keys) {
    const auto va = a.contains(k) ? a.at(k) : nlohmann::json();
    const auto vb = b.contains(k) ? b.at(k) : nlohmann::json();
    if (va != vb) {
      out += (out.empty() ? "" : ", ") + k + " " + va.dump() + " vs expected " + vb.dump();
    }
  }
  return out;
}

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status::IOError("cannot create " + path);
  f << text;
  f.flush();
  if (!f) return Status::IOError("writing " + path + " failed");
  return Status::OK();
}

// Named parameters in registration order (stable).
std::vector<std::pair<std::string, torch::Tensor>> NamedParams(torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : m.named_parameters(/*recurse=*/true)) {
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

}  // namespace

nlohmann::json PackageConfig(const StageSpec& spec, const std::string& preset, int64_t param_count,
                             const nlohmann::json& provenance) {
  nlohmann::json j;
  j["format"] = kPackageFormat;
  j["stage"] = spec.index;
  j["name"] = spec.name;
  j["label"] = spec.label;
  j["kind"] = StageKindName(spec.kind);
  j["preset"] = preset;
  j["input"] =
      Shape(spec.net.channels, spec.in_frames(), spec.in_height(), spec.in_width(), spec.in_fps());
  j["output"] = Shape(spec.net.channels, spec.frames, spec.height, spec.width, spec.fps);
  j["architecture"] = spec.net.ToJson();
  j["param_count"] = param_count;
  j["prediction"] = spec.sampling.prediction;
  j["sampling"] = spec.sampling.ToJson();
  j["spec"] = spec.ToJson();
  j["weights"] = nullptr;
  j["provenance"] = provenance.is_null() ? nlohmann::json::object() : provenance;
  return j;
}

Status SavePackage(const std::string& dir, const StageSpec& spec, const std::string& preset,
                   VideoUNet& net, const nlohmann::json& provenance, WeightDType dtype) {
  if (dir.empty()) return Status::InvalidArgument("package directory is empty");
  if (!net) return Status::InvalidArgument("no network to save");
  if (!(net->config() == spec.net)) {
    return Status::InvalidArgument("network architecture differs from " +
                                   StageName(spec.index, spec.label) + ": " +
                                   DiffKeys(net->config().ToJson(), spec.net.ToJson()));
  }
  if (net->device().is_meta()) return Status::InvalidArgument("cannot save a meta-device network");
  static std::atomic<int> counter{0};
  const fs::path target = fs::path(dir).lexically_normal();
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string base = target.filename().string();
  const fs::path tmp = parent / (base + ".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(counter.fetch_add(1)));
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return Status::IOError("cannot create " + parent.string() + ": " + ec.message());
  if (fs::exists(target, ec) &&
      !(fs::is_directory(target, ec) &&
        (fs::is_empty(target, ec) || fs::exists(target / kPackageConfigFile, ec)))) {
    return Status::InvalidArgument(target.string() +
                                   " exists and is not a model package; not replacing it");
  }
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec)) {
    return Status::IOError("cannot create " + tmp.string() + ": " + ec.message());
  }
  auto cleanup = [&] {
    std::error_code e2;
    fs::remove_all(tmp, e2);
  };
  const std::string dt = dtype == WeightDType::kF16 ? "F16" : "F32";
  auto params = NamedParams(*net);
  auto sha = WriteSafetensors((tmp / kPackageWeightsFile).string(), params, dt,
                              {{"format", "pt"}, {"vidfarm", kPackageFormat}});
  if (!sha.ok()) {
    cleanup();
    return sha.status();
  }
  auto config = PackageConfig(spec, preset, CountParameters(*net), provenance);
  config["weights"] = {{"file", kPackageWeightsFile}, {"sha256", *sha}, {"dtype", dt}};
  Status st = WriteText((tmp / kPackageConfigFile).string(), config.dump(2) + "\n");
  if (!st.ok()) {
    cleanup();
    return st;
  }
  // Swap into place. A reader sees the old package or the new one, except for the instant
  // between the two renames when there is none (it gets NotFound and retries).
  fs::path old;
  if (fs::exists(target, ec)) {
    old = parent / (base + ".old-" + std::to_string(::getpid()) + "-" +
                    std::to_string(counter.fetch_add(1)));
    fs::rename(target, old, ec);
    if (ec) {
      cleanup();
      return Status::IOError("cannot move " + target.string() + " aside: " + ec.message());
    }
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    const std::string msg = ec.message();
    if (!old.empty()) fs::rename(old, target, ec);
    cleanup();
    return Status::IOError("cannot rename " + tmp.string() + " to " + target.string() + ": " + msg);
  }
  if (!old.empty()) fs::remove_all(old, ec);
  return Status::OK();
}

Result<ModelPackage> LoadPackage(const std::string& dir, const StageSpec& expected,
                                 torch::Device device) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Status::NotFound("model package directory " + dir + " does not exist");
  }
  const fs::path cfg_path = fs::path(dir) / kPackageConfigFile;
  if (!fs::exists(cfg_path, ec)) {
    return Status::NotFound("model package " + dir + " has no " + cfg_path.string());
  }
  nlohmann::json config;
  {
    std::ifstream f(cfg_path, std::ios::binary);
    if (!f) return Status::IOError("cannot read " + cfg_path.string());
    std::stringstream ss;
    ss << f.rdbuf();
    try {
      config = nlohmann::json::parse(ss.str());
    } catch (const std::exception& e) {
      return Status::Corruption(cfg_path.string() + " is not valid JSON: " + e.what());
    }
  }
  auto corrupt = [&](const std::string& m) {
    return Status::Corruption("model package " + dir + ": " + m);
  };
  if (!config.is_object()) return corrupt("config.json is not a JSON object");
  ModelPackage pkg;
  pkg.spec = expected;
  pkg.dir = dir;
  UNetConfig arch;
  std::string weights_file, sha, prediction;
  try {
    const auto format = config.at("format").get<std::string>();
    if (format != kPackageFormat) {
      if (format.rfind("vidfarm-stage/", 0) == 0) {
        return Status::NotSupported("model package " + dir + " has format " + format +
                                    "; this build reads " + kPackageFormat);
      }
      return corrupt("unknown format '" + format + "'");
    }
    const int stage = config.at("stage").get<int>();
    const std::string label = config.value("label", std::string("?"));
    if (stage != expected.index) {
      return Status::InvalidArgument("package " + dir + " is " + StageName(stage, label) + " but " +
                                     StageName(expected.index, expected.label) + " was expected");
    }
    auto want_out = Shape(expected.net.channels, expected.frames, expected.height, expected.width,
                          expected.fps);
    auto want_in = Shape(expected.net.channels, expected.in_frames(), expected.in_height(),
                         expected.in_width(), expected.in_fps());
    if (config.at("output") != want_out) {
      return Status::InvalidArgument(
          "package " + dir + " output shape differs: " + DiffKeys(config.at("output"), want_out));
    }
    if (config.at("input") != want_in) {
      return Status::InvalidArgument(
          "package " + dir + " input shape differs: " + DiffKeys(config.at("input"), want_in));
    }
    auto a = UNetConfig::FromJson(config.at("architecture"));
    if (!a.ok()) return corrupt(a.status().message());
    arch = *a;
    // The output skip goes with the parameterization (like "prediction"), and the base's motion
    // layers (frame embedding, space-time attention) with the weights: the package says.
    UNetConfig want = expected.net;
    CopyOutputSkip(arch, &want);
    CopyMotionLayers(arch, &want);
    if (!(arch == want)) {
      return Status::InvalidArgument("package " + dir + " architecture differs from " +
                                     StageName(expected.index, expected.label) + ": " +
                                     DiffKeys(arch.ToJson(), want.ToJson()));
    }
    prediction = config.value("prediction", std::string("v"));
    if (prediction != "v" && prediction != "eps") return corrupt("prediction '" + prediction + "'");
    const auto& w = config.at("weights");
    weights_file = w.at("file").get<std::string>();
    sha = w.at("sha256").get<std::string>();
    if (weights_file.empty() || weights_file.find('/') != std::string::npos ||
        weights_file == "..") {
      return corrupt("weights file name '" + weights_file + "' must be a plain file name");
    }
  } catch (const std::exception& e) {
    return corrupt(std::string("config.json is missing or has a malformed field: ") + e.what());
  }
  pkg.spec.sampling.prediction = prediction;
  CopyOutputSkip(arch, &pkg.spec.net);
  CopyMotionLayers(arch, &pkg.spec.net);

  const std::string wpath = (fs::path(dir) / weights_file).string();
  if (!fs::exists(wpath, ec)) {
    return Status::NotFound("model package " + dir + " has no weights file " + wpath);
  }
  VF_ASSIGN_OR_RETURN(auto actual, Sha256File(wpath));
  if (actual != sha) {
    return corrupt("sha256 of " + wpath + " is " + actual + ", config.json says " + sha);
  }
  VF_ASSIGN_OR_RETURN(auto tensors, ReadSafetensors(wpath));
  VF_ASSIGN_OR_RETURN(auto net, MakeVideoUNet(arch, device));
  try {
    torch::NoGradGuard no_grad;
    std::set<std::string> seen;
    std::string missing;
    for (auto& item : net->named_parameters(/*recurse=*/true)) {
      auto it = tensors.find(item.key());
      if (it == tensors.end()) {
        missing += (missing.empty() ? "" : ", ") + item.key();
        continue;
      }
      if (it->second.sizes() != item.value().sizes()) {
        return corrupt("tensor '" + item.key() + "' has shape " + c10::str(it->second.sizes()) +
                       ", the network needs " + c10::str(item.value().sizes()));
      }
      item.value().copy_(it->second.to(device));
      seen.insert(item.key());
    }
    if (!missing.empty()) return corrupt("weights file lacks tensors: " + missing);
    if (seen.size() != tensors.size()) {
      std::string extra;
      for (const auto& [name, t] : tensors) {
        if (!seen.count(name)) extra += (extra.empty() ? "" : ", ") + name;
      }
      return corrupt("weights file has unexpected tensors: " + extra);
    }
  } catch (const std::exception& e) {
    return Status::Internal("loading " + wpath + ": " + e.what());
  }
  const int64_t count = CountParameters(*net);
  if (config.value("param_count", count) != count) {
    VF_LOG_WARN("package {}: config says {} parameters, the network has {}", dir,
                config.value("param_count", int64_t{0}), count);
  }
  pkg.net = net;
  pkg.config = std::move(config);
  pkg.random_init = false;
  return pkg;
}

Result<ModelPackage> RandomPackage(const StageSpec& spec, uint64_t init_seed,
                                   torch::Device device) {
  VF_ASSIGN_OR_RETURN(auto net, MakeVideoUNet(spec.net, device));
  try {
    InitWeights(*net, init_seed);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("initialising weights: ") + e.what());
  }
  ModelPackage pkg;
  pkg.spec = spec;
  pkg.net = net;
  pkg.config = PackageConfig(spec, "", CountParameters(*net),
                             {{"random_init", true}, {"init_seed", init_seed}});
  pkg.random_init = true;
  return pkg;
}

}  // namespace vidfarm::models
