// Frozen text encoders. Every stage gets the same embeddings: tokens for cross-attention and a
// pooled vector for the conditioning embedding (Imagen Video §2: frozen T5-XXL in the paper).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"

namespace vidfarm::models {

struct TextEmbedding {
  torch::Tensor tokens;  // [B,L,D] f32, zero past each prompt's last token
  torch::Tensor mask;    // [B,L] bool, true for real tokens
  torch::Tensor pooled;  // [B,D] f32
};

// Implementations must be deterministic and thread-safe (Encode is const). A T5 encoder fits here
// (loaded from its own weights); the built-in one needs no download.
class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  // Empty prompt list, or a prompt with no word → InvalidArgument. L = max_tokens().
  virtual Result<TextEmbedding> Encode(const std::vector<std::string>& prompts,
                                       torch::Device device) const = 0;
  virtual int64_t dim() const = 0;
  virtual int64_t max_tokens() const = 0;
  virtual std::string name() const = 0;  // e.g. "builtin-hash-64x16"
};

// Lower-cases ASCII, splits on every byte that is not an ASCII letter or digit (bytes >= 0x80 are
// kept as word characters, so UTF-8 words survive whole), maps each word to a fixed unit-variance
// vector from a 64-bit FNV-1a hash of the word (splitmix64 + Box–Muller, not torch's RNG: the same
// numbers on every platform), adds a sinusoidal position code, and pools with the masked mean.
// Words beyond max_tokens are dropped (truncation, as T5 encoders in Imagen do at 128 tokens).
std::unique_ptr<TextEncoder> MakeBuiltinTextEncoder(int64_t dim, int64_t max_tokens);

// The words the built-in encoder sees (exposed for tests and for logging truncation).
std::vector<std::string> BuiltinTokenize(const std::string& prompt);

}  // namespace vidfarm::models
