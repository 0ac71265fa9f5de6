// SHA-256 (FIPS 180-4), for model package weights and blob checksums. Uses the x86 SHA
// extensions (SHA-NI) when the CPU has them, checked once at run time; portable code otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "vidfarm/common/status.h"

namespace vidfarm {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t n);
  // Lower-case hex digest; the object must not be updated afterwards.
  std::string FinalHex();

  // Whether this machine runs the SHA-NI code path; `portable` forces the other one (tests).
  static bool HasHardware();
  explicit Sha256(bool portable);

 private:
  void Blocks(const uint8_t* p, size_t count);
  void Block(const uint8_t* p);
  bool hardware_ = false;
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string Sha256Hex(const void* data, size_t n);
Result<std::string> Sha256File(const std::string& path);

}  // namespace vidfarm
