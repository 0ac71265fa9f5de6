#include "attention_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace vidfarm::models::ops::detail {
namespace {

// Tile sizes. A micro-tile is kMr query rows by kNr columns (keys for q k^T, value features for
// p v), i.e. 12 AVX2 accumulators. A task is kBlockQ query rows of one (sample, head); it
// streams kBlockK keys at a time, so the key and value blocks (d x kBlockK each) stay in L1/L2
// while every strip of kMr rows passes over them.
constexpr int64_t kMr = 6;
constexpr int64_t kNr = 16;
constexpr int64_t kBlockQ = 96;   // multiple of kMr
constexpr int64_t kBlockK = 128;  // multiple of kNr
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The three inner loops, in a portable and an AVX2+FMA flavour chosen once at run time.
struct Kernels {
  // C[kMr x kNr] = (accumulate ? C : 0) + A[kMr x kk] B[kk x kNr]; rows lda, ldb, ldc apart.
  void (*gemm)(int64_t kk, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
               int64_t ldc, bool accumulate);
  // Largest of x[0, n), n a multiple of kNr.
  float (*max)(const float* x, int64_t n);
  // x[i] = exp(x[i] - m) for i < n (a multiple of kNr), exp(-inf) = 0; returns the sum.
  float (*exp_sum)(float* x, int64_t n, float m);
};

void GemmPortable(int64_t kk, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                  int64_t ldc, bool accumulate) {
  float acc[kMr][kNr];
  for (int64_t r = 0; r < kMr; ++r) {
    for (int64_t j = 0; j < kNr; ++j) acc[r][j] = accumulate ? c[r * ldc + j] : 0.f;
  }
  for (int64_t p = 0; p < kk; ++p) {
    const float* bp = b + p * ldb;
    for (int64_t r = 0; r < kMr; ++r) {
      const float ar = a[r * lda + p];
      for (int64_t j = 0; j < kNr; ++j) acc[r][j] += ar * bp[j];
    }
  }
  for (int64_t r = 0; r < kMr; ++r) {
    for (int64_t j = 0; j < kNr; ++j) c[r * ldc + j] = acc[r][j];
  }
}

float MaxPortable(const float* x, int64_t n) {
  float m = kNegInf;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

float ExpSumPortable(float* x, int64_t n, float m) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  return s;
}

#if defined(__x86_64__)
#define VF_AVX2 __attribute__((target("avx2,fma")))

VF_AVX2 void GemmAvx2(int64_t kk, const float* a, int64_t lda, const float* b, int64_t ldb,
                      float* c, int64_t ldc, bool accumulate) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (accumulate) {
    c00 = _mm256_loadu_ps(c + 0 * ldc), c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
    c10 = _mm256_loadu_ps(c + 1 * ldc), c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
    c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
    c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
    c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
    c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
  const float* a0 = a;
  const float* a1 = a + lda;
  const float* a2 = a + 2 * lda;
  const float* a3 = a + 3 * lda;
  const float* a4 = a + 4 * lda;
  const float* a5 = a + 5 * lda;
  for (int64_t p = 0; p < kk; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb);
    const __m256 b1 = _mm256_loadu_ps(b + p * ldb + 8);
    __m256 ar = _mm256_broadcast_ss(a0 + p);
    c00 = _mm256_fmadd_ps(ar, b0, c00), c01 = _mm256_fmadd_ps(ar, b1, c01);
    ar = _mm256_broadcast_ss(a1 + p);
    c10 = _mm256_fmadd_ps(ar, b0, c10), c11 = _mm256_fmadd_ps(ar, b1, c11);
    ar = _mm256_broadcast_ss(a2 + p);
    c20 = _mm256_fmadd_ps(ar, b0, c20), c21 = _mm256_fmadd_ps(ar, b1, c21);
    ar = _mm256_broadcast_ss(a3 + p);
    c30 = _mm256_fmadd_ps(ar, b0, c30), c31 = _mm256_fmadd_ps(ar, b1, c31);
    ar = _mm256_broadcast_ss(a4 + p);
    c40 = _mm256_fmadd_ps(ar, b0, c40), c41 = _mm256_fmadd_ps(ar, b1, c41);
    ar = _mm256_broadcast_ss(a5 + p);
    c50 = _mm256_fmadd_ps(ar, b0, c50), c51 = _mm256_fmadd_ps(ar, b1, c51);
  }
  _mm256_storeu_ps(c + 0 * ldc, c00), _mm256_storeu_ps(c + 0 * ldc + 8, c01);
  _mm256_storeu_ps(c + 1 * ldc, c10), _mm256_storeu_ps(c + 1 * ldc + 8, c11);
  _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
  _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
  _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
  _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

VF_AVX2 inline float HorizontalMax(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
  return _mm_cvtss_f32(x);
}

VF_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
  return _mm_cvtss_f32(x);
}

// exp for x <= 88 (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-5 polynomial; ~1 ulp);
// anything below -87 (including -inf) gives exactly 0.
VF_AVX2 inline __m256 Exp(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.f)), _mm256_set1_ps(88.f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, y);
}

VF_AVX2 float MaxAvx2(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(kNegInf), m1 = m0;
  for (int64_t i = 0; i < n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  return HorizontalMax(_mm256_max_ps(m0, m1));
}

VF_AVX2 float ExpSumAvx2(float* x, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  for (int64_t i = 0; i < n; i += 16) {
    const __m256 e0 = Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    const __m256 e1 = Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv));
    _mm256_storeu_ps(x + i, e0);
    _mm256_storeu_ps(x + i + 8, e1);
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
  }
  return HorizontalSum(_mm256_add_ps(s0, s1));
}
#undef VF_AVX2
#endif  // __x86_64__

constexpr Kernels kPortable{GemmPortable, MaxPortable, ExpSumPortable};

const Kernels& PickKernels() {
  static const Kernels kernels = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return Kernels{GemmAvx2, MaxAvx2, ExpSumAvx2};
    }
#endif
    return kPortable;
  }();
  return kernels;
}

// One attention call: sizes, and element strides of every operand.
struct Problem {
  int64_t heads, lq, lk, d, dv;
  int64_t dvp;  // dv rounded up to kNr
  int64_t lkw;  // packed key width: full blocks plus the last one rounded up to kNr
  float scale;
  const float* q;
  int64_t q0, q1, q2;
  const float* k;
  int64_t k0, k1, k2;
  const float* v;
  int64_t v0, v1, v2;
  const float* bias;  // undefined: nullptr
  int64_t b0, b1, b2, b3;
  float* out;  // element (n, h, i, c) at n * o0 + h * o1 + i * o2 + c
  int64_t o0, o1, o2;
};

int64_t QueryBlocks(const Problem& p) { return (p.lq + kBlockQ - 1) / kBlockQ; }

// One slice's keys -> blocks [d][width] (keys zero-padded to the width), its values ->
// [lk][dvp] (features zero-padded), so both micro-kernels read whole 16-wide rows.
void PackKeysValues(const Problem& p, int64_t slice, float* kt, float* vp) {
  const int64_t n = slice / p.heads, h = slice % p.heads;
  const float* ks = p.k + n * p.k0 + h * p.k1;
  for (int64_t j0 = 0; j0 < p.lk; j0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, p.lk - j0), width = RoundUp(nk, kNr);
    float* blk = kt + j0 * p.d;
    for (int64_t c = 0; c < p.d; ++c) std::fill(blk + c * width + nk, blk + (c + 1) * width, 0.f);
    for (int64_t j = 0; j < nk; ++j) {
      const float* row = ks + (j0 + j) * p.k2;
      for (int64_t c = 0; c < p.d; ++c) blk[c * width + j] = row[c];
    }
  }
  const float* vs = p.v + n * p.v0 + h * p.v1;
  for (int64_t j = 0; j < p.lk; ++j) {
    std::memcpy(vp + j * p.dvp, vs + j * p.v2, sizeof(float) * p.dv);
    std::fill(vp + j * p.dvp + p.dv, vp + (j + 1) * p.dvp, 0.f);
  }
}

// Tasks [begin, end) of (slice, query block).
void RunTasks(const Problem& p, const Kernels& kern, int64_t begin, int64_t end) {
  const int64_t nqb = QueryBlocks(p);
  const int64_t max_rows = std::min(kBlockQ, RoundUp(p.lq, kMr));
  std::vector<float> qbuf(max_rows * p.d), sbuf(kMr * kBlockK), obuf(max_rows * p.dvp);
  std::vector<float> mrow(max_rows), lrow(max_rows);
  // Consecutive tasks share a slice, so each thread packs a slice's keys and values once.
  std::vector<float> ktbuf(p.d * p.lkw), vbuf(p.lk * p.dvp);
  int64_t packed = -1;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t slice = t / nqb, i0 = (t % nqb) * kBlockQ;
    const int64_t n = slice / p.heads, h = slice % p.heads;
    const int64_t rows = std::min(kBlockQ, p.lq - i0), prows = RoundUp(rows, kMr);
    const float* qs = p.q + n * p.q0 + h * p.q1 + i0 * p.q2;
    for (int64_t r = 0; r < prows; ++r) {
      float* dst = qbuf.data() + r * p.d;
      if (r < rows) {
        for (int64_t c = 0; c < p.d; ++c) dst[c] = qs[r * p.q2 + c] * p.scale;
      } else {
        std::fill(dst, dst + p.d, 0.f);
      }
    }
    std::fill(obuf.begin(), obuf.begin() + prows * p.dvp, 0.f);
    std::fill(mrow.begin(), mrow.end(), kNegInf);
    std::fill(lrow.begin(), lrow.end(), 0.f);
    if (slice != packed) PackKeysValues(p, slice, ktbuf.data(), vbuf.data());
    packed = slice;
    const float* kt = ktbuf.data();
    const float* vs = vbuf.data();
    const float* bs = p.bias != nullptr ? p.bias + n * p.b0 + h * p.b1 : nullptr;
    for (int64_t j0 = 0; j0 < p.lk; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, p.lk - j0), width = RoundUp(nk, kNr);
      const float* ktb = kt + j0 * p.d;  // earlier blocks are d x kBlockK each
      const float* vb = vs + j0 * p.dvp;
      for (int64_t s0 = 0; s0 < prows; s0 += kMr) {
        for (int64_t c0 = 0; c0 < width; c0 += kNr) {
          kern.gemm(p.d, qbuf.data() + s0 * p.d, p.d, ktb + c0, width, sbuf.data() + c0, kBlockK,
                    false);
        }
        for (int64_t r = 0; r < kMr; ++r) {
          float* srow = sbuf.data() + r * kBlockK;
          std::fill(srow + nk, srow + width, kNegInf);
          const int64_t i = s0 + r;
          if (bs != nullptr && i < rows) {
            const float* brow = bs + (i0 + i) * p.b2 + j0 * p.b3;
            if (p.b3 == 1) {
              for (int64_t j = 0; j < nk; ++j) srow[j] += brow[j];
            } else {
              for (int64_t j = 0; j < nk; ++j) srow[j] += brow[j * p.b3];
            }
          }
          // Online softmax: rescale what this row has so far to the new running max.
          const float m_new = std::max(mrow[i], kern.max(srow, width));
          if (m_new == kNegInf) {  // every key so far masked: contributes nothing yet
            std::fill(srow, srow + width, 0.f);
            continue;
          }
          // 0 on the first unmasked block; exactly 1 (and no exp) while the max holds.
          const float alpha = mrow[i] == m_new     ? 1.f
                              : mrow[i] == kNegInf ? 0.f
                                                   : std::exp(mrow[i] - m_new);
          lrow[i] = lrow[i] * alpha + kern.exp_sum(srow, width, m_new);
          mrow[i] = m_new;
          if (alpha != 1.f) {
            float* orow = obuf.data() + i * p.dvp;
            for (int64_t c = 0; c < p.dvp; ++c) orow[c] *= alpha;
          }
        }
        for (int64_t c0 = 0; c0 < p.dvp; c0 += kNr) {
          kern.gemm(nk, sbuf.data(), kBlockK, vb + c0, p.dvp, obuf.data() + s0 * p.dvp + c0, p.dvp,
                    true);
        }
      }
    }
    // A row with every key masked has l = 0 and o = 0, giving 0 * inf = NaN as softmax over
    // -inf does.
    float* out = p.out + n * p.o0 + h * p.o1 + i0 * p.o2;
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.f / lrow[r];
      for (int64_t c = 0; c < p.dv; ++c) out[r * p.o2 + c] = obuf[r * p.dvp + c] * inv;
    }
  }
}

bool IsCpuFloat(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.dim() == 4;
}

}  // namespace

bool UseFusedAttentionCpu(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& bias, const torch::Tensor& mask) {
  if (!IsCpuFloat(q) || !IsCpuFloat(k) || !IsCpuFloat(v)) return false;
  if (torch::GradMode::is_enabled() &&
      (q.requires_grad() || k.requires_grad() || v.requires_grad() ||
       (bias.defined() && bias.requires_grad()))) {
    return false;  // no backward here
  }
  if (k.size(0) != q.size(0) || k.size(1) != q.size(1) || v.size(0) != q.size(0) ||
      v.size(1) != q.size(1) || v.size(2) != k.size(2) || k.size(3) != q.size(3)) {
    return false;
  }
  if (q.numel() == 0 || k.numel() == 0 || v.numel() == 0) return false;
  if (bias.defined() && (!bias.device().is_cpu() || !bias.is_floating_point())) return false;
  if (mask.defined() && (!mask.device().is_cpu() || mask.scalar_type() != torch::kBool)) {
    return false;
  }
  return true;
}

torch::Tensor FusedAttentionCpu(const torch::Tensor& q_in, const torch::Tensor& k_in,
                                const torch::Tensor& v_in, const torch::Tensor& bias,
                                const torch::Tensor& mask, bool portable_only) {
  // Rows may be strided (q, k, v are often views into one qkv projection); features may not.
  auto unit_rows = [](const torch::Tensor& t) { return t.stride(3) == 1 ? t : t.contiguous(); };
  const auto q = unit_rows(q_in), k = unit_rows(k_in), v = unit_rows(v_in);
  Problem p{};
  const int64_t n = q.size(0);
  p.heads = q.size(1), p.lq = q.size(2), p.lk = k.size(2), p.d = q.size(3), p.dv = v.size(3);
  p.dvp = RoundUp(p.dv, kNr);
  p.lkw = (p.lk - 1) / kBlockK * kBlockK + RoundUp((p.lk - 1) % kBlockK + 1, kNr);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.d)));
  p.q = q.data_ptr<float>(), p.q0 = q.stride(0), p.q1 = q.stride(1), p.q2 = q.stride(2);

  // Bias and mask become one additive term, -inf where masked.
  torch::Tensor add;
  if (mask.defined()) {
    const auto base = bias.defined() ? bias.to(torch::kFloat) : torch::zeros({}, q.options());
    add = torch::where(mask, base, torch::full({}, kNegInf, q.options()));
  } else if (bias.defined()) {
    add = bias.to(torch::kFloat);
  }
  if (add.defined()) {
    add = add.expand({n, p.heads, p.lq, p.lk});
    p.bias = add.data_ptr<float>();
    p.b0 = add.stride(0), p.b1 = add.stride(1), p.b2 = add.stride(2), p.b3 = add.stride(3);
  }

  p.k = k.data_ptr<float>(), p.k0 = k.stride(0), p.k1 = k.stride(1), p.k2 = k.stride(2);
  p.v = v.data_ptr<float>(), p.v0 = v.stride(0), p.v1 = v.stride(1), p.v2 = v.stride(2);

  const int64_t slices = n * p.heads;
  // Stored [N,Lq,h,dv]: the spatial and cross-attention callers move the heads next to the
  // features next, which is then a free view instead of a copy of the whole output.
  auto out = torch::empty({n, p.lq, p.heads, p.dv}, q.options()).permute({0, 2, 1, 3});
  p.out = out.data_ptr<float>(), p.o0 = out.stride(0), p.o1 = out.stride(1), p.o2 = out.stride(2);
  const Kernels& kern = portable_only ? kPortable : PickKernels();
  at::parallel_for(0, slices * QueryBlocks(p), 1,
                   [&](int64_t begin, int64_t end) { RunTasks(p, kern, begin, end); });
  return out;
}

}  // namespace vidfarm::models::ops::detail
