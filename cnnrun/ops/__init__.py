"""Array kernels shared by several layers (shape arithmetic, padding, convolution, pooling,
threads)."""
