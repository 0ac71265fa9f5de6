// The safetensors file format (https://github.com/huggingface/safetensors), written and read here
// without the Rust library: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// raw little-endian tensor data. Files written here load with Python's safetensors.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "vidfarm/common/status.h"

namespace vidfarm::models {

struct SafetensorsEntry {
  std::string dtype;  // "F32" | "F16" | "BF16"
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

struct SafetensorsIndex {
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section (8 + header length)
  uint64_t file_size = 0;
};

// Writes the tensors (any device, converted to `dtype`: "F32", "F16" or "BF16") in the given order
// and returns the sha256 of the file written. Does not create parent directories.
Result<std::string> WriteSafetensors(
    const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const std::string& dtype, const std::map<std::string, std::string>& metadata = {});

// Parses and validates the header (sizes, dtypes, offsets inside the file, no overlaps):
// NotFound for a missing file, Corruption for anything malformed.
Result<SafetensorsIndex> ReadSafetensorsIndex(const std::string& path);

// Reads every tensor as float32 on the CPU.
Result<std::map<std::string, torch::Tensor>> ReadSafetensors(const std::string& path);

}  // namespace vidfarm::models
