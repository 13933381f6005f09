"""Array kernels shared by several layers (shape arithmetic, im2col, col2im)."""
