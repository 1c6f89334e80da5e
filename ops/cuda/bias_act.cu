// Fused bias + leaky-ReLU + gain. Reference: ops/bias_act.py::fused_leaky_relu_ref.
//   ref empty:     out = lrelu(x + bias[c], slope) * scale        (bias may be empty: no bias)
//   ref non-empty: out = x * (ref > 0 ? scale : scale * slope)   (gradient through the activation,
//                  `ref` = the forward output, whose sign is the sign of x + bias)
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

template <typename scalar_t>
__global__ void bias_lrelu_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                  const scalar_t* __restrict__ bias, const scalar_t* __restrict__ ref,
                                  int64_t n, int64_t channels, int64_t inner, float slope, float scale) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    acc_t v = static_cast<acc_t>(x[i]);
    if (ref != nullptr) {
      out[i] = static_cast<scalar_t>(v * (static_cast<acc_t>(ref[i]) > acc_t(0) ? scale : scale * slope));
    } else {
      if (bias != nullptr) v += static_cast<acc_t>(bias[(i / inner) % channels]);
      out[i] = static_cast<scalar_t>((v > acc_t(0) ? v : v * slope) * scale);
    }
  }
}

at::Tensor bias_lrelu(const at::Tensor& x_, const at::Tensor& bias_, const at::Tensor& ref_, double slope,
                      double scale) {
  TORCH_CHECK(x_.is_cuda(), "bias_lrelu: x must be a CUDA tensor");
  const c10::cuda::OptionalCUDAGuard guard(x_.device());
  at::Tensor x = x_.contiguous();
  const bool has_bias = bias_.numel() > 0, has_ref = ref_.numel() > 0;
  at::Tensor bias = has_bias ? bias_.to(x.scalar_type()).contiguous() : bias_;
  at::Tensor ref = has_ref ? ref_.to(x.scalar_type()).contiguous() : ref_;
  TORCH_CHECK(!has_ref || ref.sizes() == x.sizes(), "bias_lrelu: ref must have the shape of x");
  TORCH_CHECK(!has_bias || (x.dim() >= 2 && bias.dim() == 1 && bias.size(0) == x.size(1)),
              "bias_lrelu: bias must be (C,) with C = x.shape[1]");
  at::Tensor out = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return out;
  const int64_t channels = x.dim() >= 2 ? x.size(1) : 1;
  const int64_t inner = x.dim() >= 2 ? n / (x.size(0) * channels) : 1;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_lrelu", [&] {
    bias_lrelu_kernel<scalar_t><<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), has_bias ? bias.data_ptr<scalar_t>() : nullptr,
        has_ref ? ref.data_ptr<scalar_t>() : nullptr, n, channels, inner, static_cast<float>(slope),
        static_cast<float>(scale));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
