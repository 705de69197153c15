# ruff: noqa
# fmt: off
"""The original educational NumPy convolution layer that xpconv grew from.

Kept verbatim (comments shortened) apart from the repairs of the tokens lost in
the copy that reached us (marked ``# repaired``) and the ``sigmoid`` it needs.
The documentation runs it beside :class:`xpconv.ConvolutionLayer` to show that
both give the same results.
"""

import numpy as np


def sigmoid(z):  # repaired: the original relied on a module-level sigmoid
    return 1 / (1 + np.exp(-z))


class ConvolutionLayer:
    def __init__(self, in_channels, filter_size, numfilters, stride):
        # in_channels - list of 3 elements denoting size of input for convolution layer
        # filter_size - list of 2 elements denoting size of kernel weights for convolution layer
        # numfilters - number of feature maps (denoting output depth)
        # stride - stride to used during convolution forward pass
        self.in_depth, self.in_row, self.in_col = in_channels
        self.filter_row, self.filter_col = filter_size
        self.stride = stride

        self.out_depth = numfilters
        self.out_row = int((self.in_row - self.filter_row)/self.stride + 1)
        self.out_col = int((self.in_col - self.filter_col)/self.stride + 1)

        # Initializes the Weights and Biases using a Normal Distribution with Mean 0 and Standard Deviation 0.1
        self.weights = np.random.normal(0,0.1, (self.out_depth, self.in_depth, self.filter_row, self.filter_col))
        self.biases = np.random.normal(0,0.1,self.out_depth)

        # k, i, j are indices of X [(depth, row, col)] accessed in row-major order of each convolution
        i_filter_indices = np.tile(np.repeat(np.arange(self.filter_row), self.filter_col), self.in_depth).reshape(-1, 1).astype(int)
        i_convolve_indices = self.stride * np.repeat(np.arange(self.out_row), self.out_col).reshape(1, -1).astype(int)
        self.i = i_filter_indices + i_convolve_indices

        j_filter_indices = np.tile(np.arange(self.filter_col), self.filter_row * self.in_depth).reshape(-1, 1).astype(int)
        j_convolve_indices = self.stride * np.tile(np.arange(self.out_col), self.out_row).reshape(1, -1).astype(int)
        self.j = j_filter_indices + j_convolve_indices

        self.k = np.repeat(np.arange(self.in_depth), self.filter_row * self.filter_col).reshape(-1, 1).astype(int)

    def forwardpass(self, X):
        n = X.shape[0] # batch size
        # im2col by fancy indexing: every receptive field becomes a column
        X_flattened = X[:, self.k, self.i, self.j].transpose(1, 2, 0).reshape(self.in_depth * self.filter_row * self.filter_col, -1)
        W_flattened = self.weights.reshape(self.out_depth, -1)
        out_activation = sigmoid(W_flattened @ X_flattened + self.biases.reshape(-1, 1))

        out_activation = out_activation.reshape(self.out_depth, self.out_row, self.out_col, n).transpose(3, 0, 1, 2)
        self.cache = (out_activation, X_flattened)  # repaired
        return out_activation

    def backwardpass(self, lr, activation_prev, delta):
        n = activation_prev.shape[0] # batch size
        out_activation, X_flattened = self.cache  # repaired
        del_in = delta * out_activation * (1 - out_activation)

        del_in_flattened = del_in.transpose(1, 2, 3, 0).reshape(self.out_depth, -1)
        W_flattened = self.weights.reshape(self.out_depth, -1)
        new_delta_flattened = W_flattened.T @ del_in_flattened
        new_delta_flattened = new_delta_flattened.reshape(self.in_depth * self.filter_row * self.filter_col, -1, n).transpose(2, 0, 1)

        # col2im: np.add.at adds the contributions of (k, i, j) tuples that appear more than once
        new_delta = np.zeros((n, self.in_depth, self.in_row, self.in_col), dtype=new_delta_flattened.dtype)
        np.add.at(new_delta, (slice(None), self.k, self.i, self.j), new_delta_flattened)  # repaired

        self.biases -= lr * np.sum(del_in, axis=(0, 2, 3))
        self.weights -= lr * (del_in_flattened @ X_flattened.T).reshape(self.weights.shape)
        return new_delta
