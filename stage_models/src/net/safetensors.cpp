#include "vidfarm/stage_models/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "vidfarm/common/sha256.h"

namespace vidfarm::models {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; add byte swapping for this platform");

constexpr uint64_t kMaxHeader = 100ull << 20;  // as the reference implementation

struct FileCloser {
  void operator()(FILE* f) const {
    if (f != nullptr) std::fclose(f);
  }
};
using File = std::unique_ptr<FILE, FileCloser>;

int64_t ElementSize(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

torch::ScalarType ScalarType(const std::string& dtype) {
  if (dtype == "F16") return torch::kHalf;
  if (dtype == "BF16") return torch::kBFloat16;
  return torch::kFloat32;
}

}  // namespace

Result<std::string> WriteSafetensors(
    const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const std::string& dtype, const std::map<std::string, std::string>& metadata) {
  const int64_t es = ElementSize(dtype);
  if (es == 0) return Status::InvalidArgument("unsupported safetensors dtype '" + dtype + "'");
  try {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
      if (name.empty() || name == "__metadata__") {
        return Status::InvalidArgument("bad tensor name '" + name + "'");
      }
      if (header.contains(name)) return Status::InvalidArgument("duplicate tensor '" + name + "'");
      const uint64_t n = static_cast<uint64_t>(t.numel()) * static_cast<uint64_t>(es);
      header[name] = {
          {"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
      offset += n;
    }
    std::string hs = header.dump();
    while (hs.size() % 8 != 0) hs.push_back(' ');  // data section 8-byte aligned
    File f(std::fopen(path.c_str(), "wb"));
    if (!f) return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
    Sha256 sha;
    auto put = [&](const void* p, size_t n) -> bool {
      sha.Update(p, n);
      return std::fwrite(p, 1, n, f.get()) == n;
    };
    uint8_t len[8];
    const uint64_t hl = hs.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(hl >> (8 * i));
    bool ok = put(len, 8) && put(hs.data(), hs.size());
    for (const auto& [name, t] : tensors) {
      if (!ok) break;
      auto c = t.detach().to(torch::kCPU, ScalarType(dtype)).contiguous();
      ok = put(c.data_ptr(), static_cast<size_t>(c.numel() * es));
    }
    if (!ok || std::fflush(f.get()) != 0) {
      return Status::IOError("writing " + path + " failed: " + std::strerror(errno));
    }
    return sha.FinalHex();
  } catch (const std::exception& e) {
    return Status::Internal("writing " + path + ": " + e.what());
  }
}

Result<SafetensorsIndex> ReadSafetensorsIndex(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    if (errno == ENOENT) return Status::NotFound("weights file " + path + " does not exist");
    return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  }
  auto bad = [&](const std::string& m) {
    return Status::Corruption("safetensors file " + path + ": " + m);
  };
  if (std::fseek(f.get(), 0, SEEK_END) != 0) return Status::IOError("cannot seek " + path);
  const long size = std::ftell(f.get());
  if (size < 0) return Status::IOError("cannot size " + path);
  std::rewind(f.get());
  SafetensorsIndex idx;
  idx.file_size = static_cast<uint64_t>(size);
  uint8_t len[8];
  if (idx.file_size < 8 || std::fread(len, 1, 8, f.get()) != 8) return bad("shorter than 8 bytes");
  uint64_t hl = 0;
  for (int i = 0; i < 8; ++i) hl |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (hl < 2 || hl > kMaxHeader || hl > idx.file_size - 8) {
    return bad("header length " + std::to_string(hl) + " does not fit a " +
               std::to_string(idx.file_size) + "-byte file");
  }
  std::string hs(hl, '\0');
  if (std::fread(hs.data(), 1, hl, f.get()) != hl) return bad("truncated header");
  idx.data_start = 8 + hl;
  const uint64_t data_size = idx.file_size - idx.data_start;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hs);
  } catch (const std::exception& e) {
    return bad(std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) return bad("header is not a JSON object");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  try {
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it.value().is_object()) return bad("__metadata__ is not an object");
        for (auto m = it.value().begin(); m != it.value().end(); ++m) {
          if (!m.value().is_string()) return bad("__metadata__ values must be strings");
          idx.metadata[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const auto& v = it.value();
      if (!v.is_object()) return bad("entry '" + it.key() + "' is not an object");
      SafetensorsEntry e;
      e.dtype = v.at("dtype").get<std::string>();
      const int64_t es = ElementSize(e.dtype);
      if (es == 0) return bad("tensor '" + it.key() + "' has unsupported dtype " + e.dtype);
      uint64_t numel = 1;
      for (const auto& d : v.at("shape")) {
        const int64_t n = d.get<int64_t>();
        if (n < 0 || n > (int64_t{1} << 40)) return bad("tensor '" + it.key() + "' bad shape");
        e.shape.push_back(n);
        numel *= static_cast<uint64_t>(n);
        if (numel > (uint64_t{1} << 40)) return bad("tensor '" + it.key() + "' too large");
      }
      const auto& off = v.at("data_offsets");
      if (!off.is_array() || off.size() != 2) return bad("tensor '" + it.key() + "' bad offsets");
      e.begin = off[0].get<uint64_t>();
      e.end = off[1].get<uint64_t>();
      if (e.end < e.begin || e.end > data_size) {
        return bad("tensor '" + it.key() + "' data [" + std::to_string(e.begin) + ", " +
                   std::to_string(e.end) + ") lies outside the " + std::to_string(data_size) +
                   "-byte data section (truncated file?)");
      }
      if (e.end - e.begin != numel * static_cast<uint64_t>(es)) {
        return bad("tensor '" + it.key() + "' size does not match its shape");
      }
      ranges.emplace_back(e.begin, e.end);
      idx.tensors.emplace(it.key(), std::move(e));
    }
  } catch (const std::exception& e) {
    return bad(std::string("malformed header: ") + e.what());
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) return bad("tensor data overlaps");
  }
  return idx;
}

Result<std::map<std::string, torch::Tensor>> ReadSafetensors(const std::string& path) {
  VF_ASSIGN_OR_RETURN(auto idx, ReadSafetensorsIndex(path));
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  std::map<std::string, torch::Tensor> out;
  try {
    for (const auto& [name, e] : idx.tensors) {
      auto t = torch::empty(e.shape, torch::TensorOptions().dtype(ScalarType(e.dtype)));
      const uint64_t n = e.end - e.begin;
      if (n > 0) {
        if (std::fseek(f.get(), static_cast<long>(idx.data_start + e.begin), SEEK_SET) != 0 ||
            std::fread(t.data_ptr(), 1, n, f.get()) != n) {
          return Status::Corruption("safetensors file " + path + ": cannot read tensor '" + name +
                                    "'");
        }
      }
      out.emplace(name, t.to(torch::kFloat32));
    }
  } catch (const std::exception& ex) {
    return Status::Corruption("safetensors file " + path + ": " + ex.what());
  }
  return out;
}

}  // namespace vidfarm::models
