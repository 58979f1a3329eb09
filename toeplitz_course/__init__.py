"""Convolution as Toeplitz matrices: course machinery."""
