"""The int64 reference evaluator (tests only): the integer forward pass written the plain way.

numpy int64 throughout (numpy's integer matmul is its own exact loop, no BLAS, no floats),
torch's (n, c, h, w) layout, im2col by stacking shifted slices, ReLU as its own pass. The
consensus evaluator (miner/integer_eval.py) computes its products in float64 BLAS, holds image
activations batch-last, (c, h, w, n), and folds ReLU into the saturation; the tests check
that it equals this function bit for bit.
"""

from __future__ import annotations

import numpy as np

from miner.integer_model import ACTIVATION_BOUND, IntegerConv2d, IntegerDense, IntegerModel
from miner.model_spec import Flatten, MaxPool2d, ReLU
from miner.sml import SML


def requantize(acc: np.ndarray, shift: int) -> np.ndarray:
    if shift:
        acc = (acc + np.int64(1 << (shift - 1))) >> np.int64(shift)
    return np.clip(acc, -ACTIVATION_BOUND, ACTIVATION_BOUND - 1)


def dense(x, weight, bias, shift):
    return requantize(x.astype(np.int64) @ weight.astype(np.int64).T + bias.astype(np.int64), shift)


def conv2d(x, weight, bias, shift, padding):
    n, c, h, w = x.shape
    o, _, k, _ = weight.shape
    if padding == "same":
        p = k // 2
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out_h, out_w = x.shape[2] - k + 1, x.shape[3] - k + 1
    patches = np.stack(
        [x[:, :, dy : dy + out_h, dx : dx + out_w] for dy in range(k) for dx in range(k)], axis=2
    ).reshape(n, c * k * k, out_h * out_w).astype(np.int64)
    acc = weight.astype(np.int64).reshape(o, c * k * k) @ patches + bias.astype(np.int64)[None, :, None]
    return requantize(acc, shift).reshape(n, o, out_h, out_w)


def maxpool2d(x, size):
    n, c, h, w = x.shape
    oh, ow = h // size, w // size
    return x[:, :, : oh * size, : ow * size].reshape(n, c, oh, size, ow, size).max(axis=(3, 5))


def sml_int64(sml: SML, features: np.ndarray) -> np.ndarray:
    return np.maximum(features.astype(np.int64) @ sml.matrix.astype(np.int64).T, 0)


def reference_forward(model: IntegerModel, sml: SML | None, features: np.ndarray) -> np.ndarray:
    """features (n, d) -> logits (n, classes) int64; sml None: features are the model input."""
    x = features.astype(np.int64) if sml is None else sml_int64(sml, features)
    x = x.reshape((x.shape[0],) + model.spec.input_shape)
    for layer in model.layers:
        if isinstance(layer, IntegerDense):
            x = dense(x, layer.weight, layer.bias, layer.shift)
        elif isinstance(layer, IntegerConv2d):
            x = conv2d(x, layer.weight, layer.bias, layer.shift, layer.padding)
        elif isinstance(layer, ReLU):
            x = np.maximum(x, 0)
        elif isinstance(layer, MaxPool2d):
            x = maxpool2d(x, layer.size)
        elif isinstance(layer, Flatten):
            x = x.reshape(x.shape[0], -1)
        else:
            raise AssertionError(layer)
    return x
