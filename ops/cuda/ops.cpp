// Python bindings of the CUDA plugin. Each op has a pure-PyTorch reference beside it in ops/*.py,
// which the tests compare against.
#include <torch/extension.h>

at::Tensor bias_lrelu(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& ref, double slope,
                      double scale);
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& kernel, int64_t up, int64_t down, int64_t px0,
                     int64_t px1, int64_t py0, int64_t py1);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_lrelu", &bias_lrelu,
        "lrelu(x + bias) * scale, or with `ref` non-empty: x * (ref > 0 ? scale : scale * slope)");
  m.def("upfirdn2d", &upfirdn2d, "upsample (zero insertion), pad, FIR (true convolution), downsample");
}
