"""RGB-pretrained first convolutions for inputs of any channel count (as timm's adapt_input_conv).

A pretrained encoder's first conv has a (kh, kw, 3, F) kernel W_R, W_G, W_B; an input of
N channels needs (kh, kw, N, F):

  N = 1: the RGB kernels summed, W_c weighted by std/std_c (the input normalisation,
      `kseg.models.layers.imagenet_stats`: 1 for Xception's [-1, 1], ~1 for ImageNet's).
      On a grey image this is the RGB network on that grey repeated to R, G and B: with
      x_c = (g/255 - m_c)/s_c and x = (g/255 - m)/s, x_c = (s/s_c) x + (m - m_c)/s_c, so
      sum_c W_c * x_c = W * x + delta, delta (F,) = sum_c (m - m_c)/s_c sum_hw W_c:
      zero for Xception; for ImageNet's per-channel statistics `adapt_kernel` returns
      it, and the ResNet loader subtracts it from the first BN's moving mean. Pixels
      whose window reaches into the zero padding of the border see part of delta only,
      so there the two differ slightly.
  N = 2 or N > 3: channel i gets W_{i mod 3}, scaled by 3/N so that N channels of
      similar statistics give activations of the RGB network's size.
"""

import numpy as np


def adapt_kernel(kernel, channels, mean=None, std=None):
    """`(kernel (kh, kw, channels, F), delta (F,))` from an RGB `kernel` (kh, kw, 3, F).

    mean, std: the input normalisation per RGB channel (None: the same for all three,
    as Xception's x/127.5 - 1). A kernel that is not RGB, or already has `channels`
    inputs, comes back unchanged (the weight loaders then report the shape).
    """
    kernel = np.asarray(kernel)
    f = kernel.shape[-1]
    if kernel.ndim != 4 or kernel.shape[2] != 3 or channels == 3:
        return kernel, np.zeros(f, kernel.dtype)
    if channels == 1:
        if std is None:
            return kernel.sum(axis=2, keepdims=True), np.zeros(f, kernel.dtype)
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        m, s = mean.mean(), std.mean()  # the grey channel's statistics (imagenet_stats(1))
        w = kernel.astype(np.float64)
        adapted = (w * (s / std)[:, None]).sum(axis=2, keepdims=True)  # (kh, kw, 1, F)
        delta = np.einsum("hwcf,c->f", w, (m - mean) / std)
        return adapted.astype(kernel.dtype), delta.astype(kernel.dtype)
    repeated = kernel[:, :, [i % 3 for i in range(channels)], :]  # R, G, B, R, ...
    return (repeated * (3 / channels)).astype(kernel.dtype), np.zeros(f, kernel.dtype)
