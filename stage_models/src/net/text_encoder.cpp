#include "vidfarm/stage_models/text_encoder.h"

#include <cmath>

#include "vidfarm/common/hash.h"

namespace vidfarm::models {
namespace {

// Uniform in (0, 1], never 0 (log is taken).
double Uniform(uint64_t& state) {
  return (static_cast<double>(SplitMix64(&state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

class BuiltinTextEncoder final : public TextEncoder {
 public:
  BuiltinTextEncoder(int64_t dim, int64_t max_tokens) : dim_(dim), max_tokens_(max_tokens) {}

  Result<TextEmbedding> Encode(const std::vector<std::string>& prompts,
                               torch::Device device) const override {
    if (prompts.empty()) return Status::InvalidArgument("no prompts to encode");
    const int64_t b = static_cast<int64_t>(prompts.size());
    std::vector<float> tokens(static_cast<size_t>(b * max_tokens_ * dim_), 0.0f);
    std::vector<uint8_t> mask(static_cast<size_t>(b * max_tokens_), 0);
    std::vector<float> pooled(static_cast<size_t>(b * dim_), 0.0f);
    for (int64_t i = 0; i < b; ++i) {
      const auto words = BuiltinTokenize(prompts[i]);
      if (words.empty()) {
        return Status::InvalidArgument("prompt " + std::to_string(i) + " has no words: '" +
                                       prompts[i] + "'");
      }
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(words.size()), max_tokens_);
      for (int64_t p = 0; p < n; ++p) {
        float* row = &tokens[static_cast<size_t>((i * max_tokens_ + p) * dim_)];
        WordVector(words[p], row);
        AddPosition(p, row);
        mask[static_cast<size_t>(i * max_tokens_ + p)] = 1;
        float* pool = &pooled[static_cast<size_t>(i * dim_)];
        for (int64_t d = 0; d < dim_; ++d) pool[d] += row[d] / static_cast<float>(n);
      }
    }
    try {
      TextEmbedding e;
      e.tokens = torch::from_blob(tokens.data(), {b, max_tokens_, dim_}, torch::kFloat32)
                     .to(device, /*non_blocking=*/false, /*copy=*/true);
      e.mask = torch::from_blob(mask.data(), {b, max_tokens_}, torch::kUInt8)
                   .to(device, torch::kBool, false, true);
      e.pooled =
          torch::from_blob(pooled.data(), {b, dim_}, torch::kFloat32).to(device, false, true);
      return e;
    } catch (const std::exception& ex) {
      return Status::Internal(std::string("text encoding: ") + ex.what());
    }
  }
  int64_t dim() const override { return dim_; }
  int64_t max_tokens() const override { return max_tokens_; }
  std::string name() const override {
    return "builtin-hash-" + std::to_string(dim_) + "x" + std::to_string(max_tokens_);
  }

 private:
  // Unit-variance Gaussian vector keyed by the word (Box–Muller on splitmix64).
  void WordVector(const std::string& word, float* out) const {
    uint64_t state = Fnv1a64(word);
    for (int64_t d = 0; d < dim_; d += 2) {
      const double r = std::sqrt(-2.0 * std::log(Uniform(state)));
      const double a = 2.0 * M_PI * Uniform(state);
      out[d] = static_cast<float>(r * std::cos(a));
      if (d + 1 < dim_) out[d + 1] = static_cast<float>(r * std::sin(a));
    }
  }
  // Transformer sinusoidal position code (sin on even, cos on odd dimensions).
  void AddPosition(int64_t pos, float* row) const {
    for (int64_t d = 0; d < dim_; ++d) {
      const double freq = std::pow(10000.0, -static_cast<double>(d - d % 2) / dim_);
      const double a = static_cast<double>(pos) * freq;
      row[d] += static_cast<float>(d % 2 == 0 ? std::sin(a) : std::cos(a));
    }
  }

  int64_t dim_, max_tokens_;
};

// Locale-independent: ASCII letters and digits, plus every non-ASCII byte.
bool IsWordByte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

}  // namespace

std::vector<std::string> BuiltinTokenize(const std::string& prompt) {
  std::vector<std::string> words;
  std::string cur;
  for (unsigned char c : prompt) {
    if (!IsWordByte(c)) {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

std::unique_ptr<TextEncoder> MakeBuiltinTextEncoder(int64_t dim, int64_t max_tokens) {
  return std::make_unique<BuiltinTextEncoder>(std::max<int64_t>(dim, 1),
                                              std::max<int64_t>(max_tokens, 1));
}

}  // namespace vidfarm::models
