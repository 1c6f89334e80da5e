// upfirdn2d on planes: x (P, H, W), kernel (kh, kw) -> (P, OH, OW). Reference:
// ops/upfirdn2d.py::upfirdn2d_ref (zero insertion, pad, conv2d with the flipped kernel, stride).
// With u = the zero-inserted, padded input (u[q] = x[(q - pad0) / up] when q - pad0 is a non-negative
// multiple of up inside the signal, else 0):
//   out[oy, ox] = sum_{j, i} u[oy * down + j, ox * down + i] * kernel[kh - 1 - j, kw - 1 - i]
// One thread per output sample; the tap loops start at the first tap that lands on a real sample
// and step by `up`, so inserted zeros cost nothing.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

__device__ __forceinline__ int first_tap(int start, int up) {
  // smallest j >= max(0, -start) with (start + j) divisible by up
  int j = start < 0 ? -start : 0;
  int r = (start + j) % up;
  return r == 0 ? j : j + (up - r);
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                 const scalar_t* __restrict__ kernel, int64_t planes, int in_h, int in_w,
                                 int out_h, int out_w, int kh, int kw, int up, int down, int px0, int py0) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = planes * out_h * out_w;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n;
       idx += (int64_t)blockDim.x * gridDim.x) {
    const int ox = idx % out_w;
    const int oy = (idx / out_w) % out_h;
    const int64_t p = idx / ((int64_t)out_w * out_h);
    const scalar_t* plane = x + p * in_h * in_w;
    const int sy = oy * down - py0, sx = ox * down - px0;
    const int jx0 = first_tap(sx, up);
    acc_t acc = 0;
    for (int j = first_tap(sy, up); j < kh; j += up) {
      const int iy = (sy + j) / up;
      if (iy >= in_h) break;
      const scalar_t* row = plane + (int64_t)iy * in_w;
      const scalar_t* krow = kernel + (kh - 1 - j) * kw + (kw - 1);
      for (int i = jx0; i < kw; i += up) {
        const int ix = (sx + i) / up;
        if (ix >= in_w) break;
        acc += static_cast<acc_t>(row[ix]) * static_cast<acc_t>(krow[-i]);
      }
    }
    out[idx] = static_cast<scalar_t>(acc);
  }
}

at::Tensor upfirdn2d(const at::Tensor& x_, const at::Tensor& kernel_, int64_t up, int64_t down, int64_t px0,
                     int64_t px1, int64_t py0, int64_t py1) {
  TORCH_CHECK(x_.is_cuda() && x_.dim() == 3, "upfirdn2d: x must be a (planes, H, W) CUDA tensor");
  TORCH_CHECK(kernel_.dim() == 2, "upfirdn2d: kernel must be (kh, kw)");
  TORCH_CHECK(up >= 1 && down >= 1, "upfirdn2d: up and down must be >= 1");
  const c10::cuda::OptionalCUDAGuard guard(x_.device());
  at::Tensor x = x_.contiguous();
  at::Tensor kernel = kernel_.to(x.device(), x.scalar_type()).contiguous();
  const int64_t planes = x.size(0), in_h = x.size(1), in_w = x.size(2);
  const int64_t kh = kernel.size(0), kw = kernel.size(1);
  const int64_t out_h = (in_h * up + py0 + py1 - kh) / down + 1;
  const int64_t out_w = (in_w * up + px0 + px1 - kw) / down + 1;
  TORCH_CHECK(out_h > 0 && out_w > 0, "upfirdn2d: empty output");
  at::Tensor out = at::empty({planes, out_h, out_w}, x.options());
  const int64_t n = out.numel();
  if (n == 0) return out;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 1 << 20);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d", [&] {
    upfirdn2d_kernel<scalar_t><<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(), planes, (int)in_h,
        (int)in_w, (int)out_h, (int)out_w, (int)kh, (int)kw, (int)up, (int)down, (int)px0, (int)py0);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
