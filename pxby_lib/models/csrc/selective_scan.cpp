// Fused selective scan of Mamba-1 on the CPU (pxby_lib/models/scan_native.py builds and
// loads this file; the maths and the names are those of pxby_lib/models/scan.py):
//   h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,   y_t = C_t h_t + D u_t
// Shapes (row-major, contiguous): u, delta, y, dy, du, ddelta (B, L, ED); A (ED, N);
// Bm, Cm, dB, dC (B, L, N); D (ED); h_last (B, ED, N); dA_rows (B, ED, N).
//
// Why it is fast: one (row b, channel d) pair is scanned at a time, so its state h (N
// floats) lives in registers and nothing (B, L, ED, N)-sized is ever written. The backward
// recomputes the pair's states into a thread-local (L, N) buffer (32 KiB at L 128, N 64:
// it stays in L1/L2), then runs the reverse-time loop. The inner loops over n are
// vectorised (#pragma omp simd with -fopenmp-simd, an exp the compiler can vectorise).
//
// Denormals are flushed to zero during the calls (FTZ/DAZ, x86): the gradient dh decays
// geometrically from the one supervised position back through the sequence, and the
// subnormal tail costs ~100x per operation on Intel cores (2.7x on the whole backward
// seen) while adding nothing above 1e-38.
//
// Determinism: every output element is written by one call in a fixed order. dB and dC are
// summed over d inside a row (rows never split across threads); dA is returned per row
// (dA_rows) and summed over rows by the caller in a fixed order, so the bytes do not
// depend on the number of threads.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace {

// Flush-to-zero and denormals-are-zero for the lifetime of the object (this thread only).
struct FlushDenormals {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// exp for float that gcc/clang vectorise (no libm call), 15 vector operations: the exp is
// most of the kernel's arithmetic (one per state element and step, twice with the
// backward's recomputation). k = round(x / ln 2) by the 1.5 * 2^23 trick, r = x - k ln 2
// with ln 2 split in two (Cody-Waite, as Cephes' expf), e^r on [-ln2/2, ln2/2] by a
// degree-5 polynomial (fitted to the relative error on Chebyshev nodes with numpy), times
// 2^k built in the exponent bits. Max relative error 2.0e-7 (1.7 ulp) over [-87.3, 88];
// 20% faster than Cephes' degree-7 expf (7.6e-8). Inputs outside are clamped (exp(-87.3)
// ~ 1e-38 stands in for what is below; delta A <= 0 in the model).
inline float exp_vec(float x) {
  x = x < -87.3365f ? -87.3365f : x;
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f;
  const float k = (x * 1.4426950216293335f + magic) - magic;
  float r = x - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  float p = 0.008297652937471867f;
  p = p * r + 0.04191538318991661f;
  p = p * r + 0.16667574644088745f;
  p = p * r + 0.49998894333839417f;
  p = p * r + 0.9999997019767761f;
  p = p * r + 1.0000001192092896f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline double exp_vec(double x) { return std::exp(x); }  // float64: tests only

template <typename T>
void forward_rows(const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                  const T* D, T* y, T* h_last, int64_t b0, int64_t b1, int64_t L, int64_t ED,
                  int64_t N) {
  std::vector<T> h(N);
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t d = 0; d < ED; ++d) {
      const T* a = A + d * N;
      T* hp = h.data();
      for (int64_t n = 0; n < N; ++n) hp[n] = 0;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (b * L + l) * ED + d;
        const T dt = delta[i], du = dt * u[i];
        const T* bl = Bm + (b * L + l) * N;
        const T* cl = Cm + (b * L + l) * N;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {
          const T hn = exp_vec(dt * a[n]) * hp[n] + du * bl[n];
          hp[n] = hn;
          acc += hn * cl[n];
        }
        y[i] = acc + D[d] * u[i];
      }
      if (h_last) std::memcpy(h_last + (b * ED + d) * N, hp, N * sizeof(T));
    }
  }
}

template <typename T>
void backward_rows(const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                   const T* D, const T* dy, T* du, T* ddelta, T* dA_rows, T* dB, T* dC,
                   int64_t b0, int64_t b1, int64_t L, int64_t ED, int64_t N) {
  std::vector<T> hs((L + 1) * N), decay(L * N), dh(N);  // hs[0] = h_0 = 0
  for (int64_t n = 0; n < N; ++n) hs[n] = 0;
  for (int64_t b = b0; b < b1; ++b) {
    std::memset(dB + b * L * N, 0, L * N * sizeof(T));
    std::memset(dC + b * L * N, 0, L * N * sizeof(T));
    for (int64_t d = 0; d < ED; ++d) {
      const T* a = A + d * N;
      // forward again: the states h_1..h_L and decays of this (b, d) pair
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (b * L + l) * ED + d;
        const T dt = delta[i], dtu = dt * u[i];
        const T* bl = Bm + (b * L + l) * N;
        const T* prev = hs.data() + l * N;
        T* cur = hs.data() + (l + 1) * N;
        T* e = decay.data() + l * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) {
          e[n] = exp_vec(dt * a[n]);
          cur[n] = e[n] * prev[n] + dtu * bl[n];
        }
      }
      // reverse time: dh = dL/dh_t, carried back through the decays
      T* g_a = dA_rows + (b * ED + d) * N;
      T* dhp = dh.data();
      for (int64_t n = 0; n < N; ++n) dhp[n] = 0, g_a[n] = 0;
      for (int64_t l = L - 1; l >= 0; --l) {
        const int64_t i = (b * L + l) * ED + d;
        const T dt = delta[i], ut = u[i], dyt = dy[i], dtu = dt * ut;
        const T* bl = Bm + (b * L + l) * N;
        const T* cl = Cm + (b * L + l) * N;
        T* dbl = dB + (b * L + l) * N;
        T* dcl = dC + (b * L + l) * N;
        const T* h = hs.data() + (l + 1) * N;
        const T* prev = hs.data() + l * N;
        const T* e = decay.data() + l * N;
        T s = 0, ga = 0;
#pragma omp simd reduction(+ : s, ga)
        for (int64_t n = 0; n < N; ++n) {
          const T dhn = dhp[n] + dyt * cl[n];  // dL/dh_t
          dcl[n] += dyt * h[n];
          const T g = dhn * e[n] * prev[n];  // dL/d(delta_t A)
          g_a[n] += g * dt;
          ga += g * a[n];
          s += dhn * bl[n];  // dL/d(delta_t u_t)
          dbl[n] += dhn * dtu;
          dhp[n] = dhn * e[n];
        }
        ddelta[i] = ga + s * ut;
        du[i] = s * dt + dyt * D[d];
      }
    }
  }
}

}  // namespace

extern "C" {

// dtype: 0 float32, 1 float64. Rows [b0, b1) of the batch; h_last may be null.
void pxby_scan_forward(int dtype, const void* u, const void* delta, const void* A,
                       const void* Bm, const void* Cm, const void* D, void* y, void* h_last,
                       int64_t b0, int64_t b1, int64_t L, int64_t ED, int64_t N) {
  FlushDenormals ftz;
  if (dtype == 0)
    forward_rows<float>((const float*)u, (const float*)delta, (const float*)A,
                        (const float*)Bm, (const float*)Cm, (const float*)D, (float*)y,
                        (float*)h_last, b0, b1, L, ED, N);
  else
    forward_rows<double>((const double*)u, (const double*)delta, (const double*)A,
                         (const double*)Bm, (const double*)Cm, (const double*)D, (double*)y,
                         (double*)h_last, b0, b1, L, ED, N);
}

void pxby_scan_backward(int dtype, const void* u, const void* delta, const void* A,
                        const void* Bm, const void* Cm, const void* D, const void* dy,
                        void* du, void* ddelta, void* dA_rows, void* dB, void* dC, int64_t b0,
                        int64_t b1, int64_t L, int64_t ED, int64_t N) {
  FlushDenormals ftz;
  if (dtype == 0)
    backward_rows<float>((const float*)u, (const float*)delta, (const float*)A,
                         (const float*)Bm, (const float*)Cm, (const float*)D,
                         (const float*)dy, (float*)du, (float*)ddelta, (float*)dA_rows,
                         (float*)dB, (float*)dC, b0, b1, L, ED, N);
  else
    backward_rows<double>((const double*)u, (const double*)delta, (const double*)A,
                          (const double*)Bm, (const double*)Cm, (const double*)D,
                          (const double*)dy, (double*)du, (double*)ddelta, (double*)dA_rows,
                          (double*)dB, (double*)dC, b0, b1, L, ED, N);
}

}  // extern "C"
