// Fused CPU kernels for the partial convolution's memory-bound passes (see pconv/fused.py).
//
// Two layouts, P pixels per image: "rows", a channels_last (B, C, H, W) tensor seen as a contiguous
// (B*H*W, C) matrix, one row of C channels per pixel; and "planes", a contiguous NCHW tensor seen as
// (B, C, P). Each kernel reads its inputs once and writes its outputs once, where the
// same work as separate PyTorch ops reads or writes a full-size tensor two or three times. Results equal
// the separate ops': products and float32 sums of exact 0/1 masks, bf16 rounded to nearest even.
//
// Compiled on the machine that runs it with -march=native; needs AVX-512 F/BW/VL and AVX-512 BF16.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

#if !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512BF16__))
#error "pconv's fused kernels need AVX-512 F, BW, VL and BF16"
#endif

namespace {

constexpr int64_t kLanes = 16;

inline __mmask16 tail_mask(int64_t n) { return n >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

inline __m512 load(const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }
inline __m512 load(const at::BFloat16* p, __mmask16 k) {
  __m256i v = _mm256_maskz_loadu_epi16(k, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}
inline void store(float* p, __m512 v, __mmask16 k) { _mm512_mask_storeu_ps(p, k, v); }
inline void store(at::BFloat16* p, __m512 v, __mmask16 k) {
  _mm256_mask_storeu_epi16(p, k, (__m256i)_mm512_cvtneps_pbh(v));  // round to nearest even
}

void check_rows(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 2 && t.is_contiguous(), name,
              " must be a contiguous CPU (P, C) matrix");
}

// out = x * m (in out's dtype), count[p] = sum_c m[p, c].
template <typename Out>
void mask_count_impl(const float* x, const float* m, Out* out, float* count, int64_t P, int64_t C) {
  at::parallel_for(0, P, 512, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* xr = x + p * C;
      const float* mr = m + p * C;
      Out* orow = out + p * C;
      __m512 sum = _mm512_setzero_ps();
      for (int64_t c = 0; c < C; c += kLanes) {
        __mmask16 k = tail_mask(C - c);
        __m512 mv = load(mr + c, k);
        store(orow + c, _mm512_mul_ps(load(xr + c, k), mv), k);
        sum = _mm512_add_ps(sum, mv);
      }
      count[p] = _mm512_reduce_add_ps(sum);
    }
  });
}

// out = g * m in float32.
template <typename G>
void mask_grad_impl(const G* g, const float* m, float* out, int64_t n) {
  at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i += kLanes) {
      __mmask16 k = tail_mask(end - i);
      store(out + i, _mm512_mul_ps(load(g + i, k), load(m + i, k)), k);
    }
  });
}

// out[p, :] = g[p, :] * scale[p]; bias_grad[c] = sum_p g[p, c] * weight[p] (float32 partial sums per chunk).
template <typename G>
void scale_grad_impl(const G* g, const float* scale, const float* weight, G* out, float* partial, int64_t P,
                     int64_t C, int64_t chunk) {
  at::parallel_for(0, (P + chunk - 1) / chunk, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t ci = cb; ci < ce; ++ci) {
      float* acc = partial + ci * C;
      int64_t p0 = ci * chunk, p1 = std::min(P, p0 + chunk);
      for (int64_t c0 = 0; c0 < C; c0 += 4 * kLanes) {  // four accumulators in registers per row block
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        int64_t blocks = std::min<int64_t>(4, (C - c0 + kLanes - 1) / kLanes);
        for (int64_t p = p0; p < p1; ++p) {
          __m512 s = _mm512_set1_ps(scale[p]), w = _mm512_set1_ps(weight[p]);
          const G* gr = g + p * C + c0;
          G* orow = out + p * C + c0;
          for (int64_t b = 0; b < blocks; ++b) {
            __mmask16 k = tail_mask(C - c0 - b * kLanes);
            __m512 v = load(gr + b * kLanes, k);
            store(orow + b * kLanes, _mm512_mul_ps(v, s), k);
            a[b] = _mm512_fmadd_ps(v, w, a[b]);
          }
        }
        for (int64_t b = 0; b < blocks; ++b) store(acc + c0 + b * kLanes, a[b], tail_mask(C - c0 - b * kLanes));
      }
    }
  });
}

// Planes: out[b, c, :] = x[b, c, :] * m[b, c, :], count[b, :] = sum_c m[b, c, :], per block of pixels.
template <typename Out>
void mask_count_planes_impl(const float* x, const float* m, Out* out, float* count, int64_t B, int64_t C,
                            int64_t P) {
  constexpr int64_t kBlock = 1024;  // a block's counts stay in L1 while the channels stream past
  int64_t blocks = (P + kBlock - 1) / kBlock;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t b = i / blocks, p0 = (i % blocks) * kBlock, n = std::min(kBlock, P - p0);
      float* cnt = count + b * P + p0;
      std::fill(cnt, cnt + n, 0.0f);
      for (int64_t c = 0; c < C; ++c) {
        int64_t off = (b * C + c) * P + p0;
        for (int64_t j = 0; j < n; j += kLanes) {
          __mmask16 k = tail_mask(n - j);
          __m512 mv = load(m + off + j, k);
          store(out + off + j, _mm512_mul_ps(load(x + off + j, k), mv), k);
          store(cnt + j, _mm512_add_ps(load(cnt + j, k), mv), k);
        }
      }
    }
  });
}

// Planes: out[b, c, :] = g[b, c, :] * scale[b, :]; partial[b, c] = sum_p g[b, c, p] * weight[b, p].
template <typename G>
void scale_grad_planes_impl(const G* g, const float* scale, const float* weight, G* out, float* partial, int64_t B,
                            int64_t C, int64_t P) {
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* s = scale + (i / C) * P;
      const float* w = weight + (i / C) * P;
      const G* gr = g + i * P;
      G* orow = out + i * P;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t p = 0; p < P; p += kLanes) {
        __mmask16 k = tail_mask(P - p);
        __m512 v = load(gr + p, k);
        store(orow + p, _mm512_mul_ps(v, load(s + p, k)), k);
        acc = _mm512_fmadd_ps(v, load(w + p, k), acc);
      }
      partial[i] = _mm512_reduce_add_ps(acc);
    }
  });
}

}  // namespace

// (x * m as out_dtype, per-row sum of m) for float32 x and m.
std::vector<torch::Tensor> mask_count(torch::Tensor x, torch::Tensor m, bool bf16_out) {
  check_rows(x, "x");
  check_rows(m, "m");
  TORCH_CHECK(x.scalar_type() == torch::kFloat && m.scalar_type() == torch::kFloat && x.sizes() == m.sizes(),
              "x and m must be float32 matrices of one shape");
  int64_t P = x.size(0), C = x.size(1);
  auto out = torch::empty({P, C}, x.options().dtype(bf16_out ? torch::kBFloat16 : torch::kFloat));
  auto count = torch::empty({P}, x.options());
  if (bf16_out)
    mask_count_impl(x.data_ptr<float>(), m.data_ptr<float>(), out.data_ptr<at::BFloat16>(), count.data_ptr<float>(), P,
                    C);
  else
    mask_count_impl(x.data_ptr<float>(), m.data_ptr<float>(), out.data_ptr<float>(), count.data_ptr<float>(), P, C);
  return {out, count};
}

// g * m in float32, for float32 or bf16 g and float32 m of g's shape, both contiguous (either layout:
// the product is element by element).
torch::Tensor mask_grad(torch::Tensor g, torch::Tensor m) {
  TORCH_CHECK(g.device().is_cpu() && g.is_contiguous() && m.is_contiguous(), "g and m must be contiguous CPU tensors");
  TORCH_CHECK(m.scalar_type() == torch::kFloat && g.sizes() == m.sizes(), "m must be float32 of g's shape");
  auto out = torch::empty(g.sizes(), g.options().dtype(torch::kFloat));
  if (g.scalar_type() == torch::kBFloat16)
    mask_grad_impl(g.data_ptr<at::BFloat16>(), m.data_ptr<float>(), out.data_ptr<float>(), g.numel());
  else if (g.scalar_type() == torch::kFloat)
    mask_grad_impl(g.data_ptr<float>(), m.data_ptr<float>(), out.data_ptr<float>(), g.numel());
  else
    TORCH_CHECK(false, "g must be float32 or bfloat16");
  return out;
}

// (g * scale per row, in g's dtype; sum over rows of g * weight per row, float32).
std::vector<torch::Tensor> scale_grad(torch::Tensor g, torch::Tensor scale, torch::Tensor weight) {
  check_rows(g, "g");
  int64_t P = g.size(0), C = g.size(1);
  TORCH_CHECK(scale.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat && scale.is_contiguous() &&
                  weight.is_contiguous() && scale.numel() == P && weight.numel() == P,
              "scale and weight must be contiguous float32 vectors with one value per row");
  const int64_t chunk = 2048;
  auto out = torch::empty_like(g);
  auto partial = torch::empty({(P + chunk - 1) / chunk, C}, g.options().dtype(torch::kFloat));
  if (g.scalar_type() == torch::kBFloat16)
    scale_grad_impl(g.data_ptr<at::BFloat16>(), scale.data_ptr<float>(), weight.data_ptr<float>(),
                    out.data_ptr<at::BFloat16>(), partial.data_ptr<float>(), P, C, chunk);
  else if (g.scalar_type() == torch::kFloat)
    scale_grad_impl(g.data_ptr<float>(), scale.data_ptr<float>(), weight.data_ptr<float>(), out.data_ptr<float>(),
                    partial.data_ptr<float>(), P, C, chunk);
  else
    TORCH_CHECK(false, "g must be float32 or bfloat16");
  return {out, partial.sum(0)};
}

void check_planes(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 3 && t.is_contiguous(), name,
              " must be a contiguous CPU (B, C, P) tensor");
}

// Planes: (x * m as out_dtype, (B, P) sum of m over the channels) for float32 x and m.
std::vector<torch::Tensor> mask_count_planes(torch::Tensor x, torch::Tensor m, bool bf16_out) {
  check_planes(x, "x");
  check_planes(m, "m");
  TORCH_CHECK(x.scalar_type() == torch::kFloat && m.scalar_type() == torch::kFloat && x.sizes() == m.sizes(),
              "x and m must be float32 tensors of one shape");
  int64_t B = x.size(0), C = x.size(1), P = x.size(2);
  auto out = torch::empty(x.sizes(), x.options().dtype(bf16_out ? torch::kBFloat16 : torch::kFloat));
  auto count = torch::empty({B, P}, x.options());
  if (bf16_out)
    mask_count_planes_impl(x.data_ptr<float>(), m.data_ptr<float>(), out.data_ptr<at::BFloat16>(),
                           count.data_ptr<float>(), B, C, P);
  else
    mask_count_planes_impl(x.data_ptr<float>(), m.data_ptr<float>(), out.data_ptr<float>(), count.data_ptr<float>(),
                           B, C, P);
  return {out, count};
}

// Planes: (g * scale[b, p], in g's dtype; per-channel sum of g * weight[b, p], float32).
std::vector<torch::Tensor> scale_grad_planes(torch::Tensor g, torch::Tensor scale, torch::Tensor weight) {
  check_planes(g, "g");
  int64_t B = g.size(0), C = g.size(1), P = g.size(2);
  TORCH_CHECK(scale.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat && scale.is_contiguous() &&
                  weight.is_contiguous() && scale.numel() == B * P && weight.numel() == B * P,
              "scale and weight must be contiguous float32 tensors with one value per pixel");
  auto out = torch::empty_like(g);
  auto partial = torch::empty({B, C}, g.options().dtype(torch::kFloat));
  if (g.scalar_type() == torch::kBFloat16)
    scale_grad_planes_impl(g.data_ptr<at::BFloat16>(), scale.data_ptr<float>(), weight.data_ptr<float>(),
                           out.data_ptr<at::BFloat16>(), partial.data_ptr<float>(), B, C, P);
  else if (g.scalar_type() == torch::kFloat)
    scale_grad_planes_impl(g.data_ptr<float>(), scale.data_ptr<float>(), weight.data_ptr<float>(),
                           out.data_ptr<float>(), partial.data_ptr<float>(), B, C, P);
  else
    TORCH_CHECK(false, "g must be float32 or bfloat16");
  return {out, partial.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("mask_count", &mask_count, "x*m and the per-row sum of m, in one pass");
  module.def("mask_count_planes", &mask_count_planes, "x*m and the sum of m over the channels, NCHW, in one pass");
  module.def("scale_grad_planes", &scale_grad_planes, "g*scale per pixel and the weighted per-channel sums, NCHW");
  module.def("mask_grad", &mask_grad, "g*m in float32, in one pass");
  module.def("scale_grad", &scale_grad, "g*scale per row and the weighted column sums of g, in one pass");
}
