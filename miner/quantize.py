"""Export a trained float model to an IntegerModel (miner side; not consensus-critical).

Fixed point with power-of-two scales. Every activation tensor a is held as integers
A = a * 2**f, f its number of fraction bits:
  - the SML output is relu(S x) and the float model sees it divided by 2**sml.output_shift, so
    the first layer's input has f = sml.output_shift, exactly;
  - a dense/conv layer with weights W and bias b gets w fraction bits, the largest such that
    round(W * 2**w) fits int8 (or int16): Wq = round(W * 2**w). Its integer accumulator
    Wq @ A + bq holds (W @ a + b) * 2**(f + w) with bq = round(b * 2**(f + w)) (int32; w is
    lowered if a bias would not fit);
  - the layer's output gets f_out fraction bits, chosen on calibration data (the training
    inputs) so that the largest output is about 2**15; the layer stores
    shift = f + w - f_out (clamped to 0..MAX_SHIFT) and the evaluator computes
    round(acc / 2**shift), saturated to int32;
  - relu, max-pooling and flatten keep f.
The integer network computes the float network up to rounding; the evaluator in
miner/integer_eval.py defines exactly what it computes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from miner.integer_model import MAX_SHIFT, IntegerConv2d, IntegerDense, IntegerModel
from miner.model_spec import Conv2d, Dense, ModelSpec

ACTIVATION_TARGET = 1 << 15  # calibrated largest |activation| per layer, as an integer
INT32_MAX = (1 << 31) - 1


def quantize_model(
    spec: ModelSpec,
    float_model: nn.Sequential,
    calibration_inputs: torch.Tensor,
    input_frac_bits: int,
    *,
    weight_bits: int = 8,
) -> IntegerModel:
    """float_model: the nn.Sequential from training.build_torch_model(spec), one module per
    spec layer. calibration_inputs: (n, *spec.input_shape) float32, what the float model saw.
    input_frac_bits: sml.output_shift. weight_bits: 8 or 16."""
    if weight_bits not in (8, 16):
        raise ValueError(f"weight_bits must be 8 or 16, got {weight_bits}")
    modules = list(float_model)
    if len(modules) != len(spec.layers):
        raise ValueError(f"float model has {len(modules)} modules, spec {len(spec.layers)} layers")
    out_max = _output_maxima(modules, calibration_inputs)
    layers = []
    frac = input_frac_bits
    for spec_layer, module, largest in zip(spec.layers, modules, out_max):
        if isinstance(spec_layer, (Dense, Conv2d)):
            weight, bias, shift, frac = _quantize_affine(
                module.weight.detach().double().numpy(),
                module.bias.detach().double().numpy(),
                frac,
                largest,
                weight_bits,
            )
            if isinstance(spec_layer, Dense):
                layers.append(IntegerDense(weight, bias, shift))
            else:
                layers.append(IntegerConv2d(weight, bias, shift, spec_layer.padding))
        else:
            layers.append(spec_layer)
    return IntegerModel(spec, tuple(layers))


#: Samples per forward pass of the calibration (and of training's end-of-epoch accuracy):
#: a whole-set batch of a 28x28 cnn ran at half the speed of batches of 64-512 (cache).
FORWARD_CHUNK = 256


def _output_maxima(modules: list[nn.Module], inputs: torch.Tensor) -> list[float]:
    """max |output| of every module over all inputs, the forward pass in FORWARD_CHUNK
    sample chunks (deterministic for a given chunk size, as the training it follows)."""
    maxima = [0.0] * len(modules)
    with torch.no_grad():
        for start in range(0, inputs.shape[0], FORWARD_CHUNK):
            x = inputs[start : start + FORWARD_CHUNK]
            for i, module in enumerate(modules):
                x = module(x)
                if x.numel():
                    maxima[i] = max(maxima[i], float(x.abs().max()))
    return maxima


class TrainingDiverged(ValueError):
    """The float model holds NaN or infinity: there is no integer model to export."""


def _quantize_affine(
    weight: np.ndarray, bias: np.ndarray, in_frac: int, out_max: float, weight_bits: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """-> (integer weights, int32 bias, right shift, output fraction bits)."""
    qmax = (1 << (weight_bits - 1)) - 1
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise TrainingDiverged("weights or biases are not finite: training diverged")
    largest = float(np.abs(weight).max()) if weight.size else 0.0
    w_frac = math.floor(math.log2(qmax / largest)) if largest > 0 else weight_bits - 1
    while True:
        q_weight = np.clip(np.rint(np.ldexp(weight, w_frac)), -qmax, qmax)
        q_bias = np.rint(np.ldexp(bias, in_frac + w_frac))
        if q_bias.size == 0 or np.abs(q_bias).max() <= INT32_MAX:
            break
        w_frac -= 1
    acc_frac = in_frac + w_frac
    out_frac = math.floor(math.log2(ACTIVATION_TARGET / out_max)) if out_max > 0 else acc_frac
    shift = min(max(acc_frac - out_frac, 0), MAX_SHIFT)
    out_frac = acc_frac - shift
    dtype = np.int8 if weight_bits == 8 else np.int16
    return q_weight.astype(dtype), q_bias.astype(np.int32), int(shift), out_frac
