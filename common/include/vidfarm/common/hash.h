// Small deterministic generators and hashes shared by every room: the same values on every
// platform and compiler (noise keys, weight initialisation, text embeddings, ids depend on them).
#pragma once

#include <cstdint>
#include <string_view>

namespace vidfarm {

// splitmix64 (Steele, Lea & Flood 2014): advances *state and returns the next 64-bit value.
inline uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 64-bit FNV-1a of the bytes of s.
inline uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace vidfarm
