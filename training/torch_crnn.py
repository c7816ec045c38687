"""The CRNN of ``training.model`` in PyTorch, for training on a GPU machine that has no TensorFlow.

``TorchCRNN(config, num_classes)`` computes what ``build_model(config, num_classes)`` computes, layer for
layer and with the Keras layer names (``stem0_conv``, ``bilstm1``, ...), so weights move between the two
by name (``copy_keras_to_torch`` / ``copy_torch_to_keras``) and a run trained here is exported and
evaluated as any Keras checkpoint (``training.torch_to_keras``). What has to match Keras exactly:

- 'same' padding of strided convolutions is TensorFlow's (the extra pixel after, not before);
- BatchNormalization: eps 1e-3, moving averages with momentum 0.99 of the batch's *biased* variance;
- padding is invisible as in Keras: columns past each line are zeroed after every block, and each LSTM
  direction reads only the line's own frames: the forward one runs on the padded batch (what follows a
  line's last frame cannot reach it), the backward one on each line reversed within its own length (so it
  starts at the line's last frame). That is what packed sequences compute, without them: a packed LSTM
  leaves oneDNN's kernels on the CPU and costs 3x (on a GPU, cuDNN takes packed sequences as they are, and
  they are kept there). The frames past a line then hold values that mean nothing: the CTC loss, validation's
  decoding and ``torch_to_keras``' check read each line's first ceil(width / 4) frames only, and so must any
  other reader;
- frames are (width, height * channels) in Keras' height-major order;
- Keras' LSTM gates i, f, c, o are torch's i, f, g, o; its one bias is torch's ``bias_ih`` (``bias_hh`` 0);
- initialisation as Keras' (glorot uniform kernels, orthogonal recurrent kernels, forget bias 1).

No Keras import here: ``training.train_torch`` loads this module on machines without TensorFlow; the copy
functions take Keras models built elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .model import WIDTH_STRIDE, ModelConfig, final_height

BN_EPSILON = 1e-3      # Keras BatchNormalization's default
BN_MOMENTUM = 0.99     # Keras': moving = momentum * moving + (1 - momentum) * batch


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after), the odd pixel after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    top, bottom = same_padding(x.shape[2], kh, sh)
    left, right = same_padding(x.shape[3], kw, sw)
    return conv(F.pad(x, (left, right, top, bottom)))


def column_mask(x: torch.Tensor, widths: torch.Tensor, stride: int) -> torch.Tensor:
    """Keras' ColumnMask: zero the columns (last axis of NCHW) past ceil(width / stride)."""
    valid = (widths + (stride - 1)) // stride
    keep = torch.arange(x.shape[3], device=x.device)[None, :] < valid[:, None]
    return x * keep[:, None, None, :].to(x.dtype)


def reversal_index(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch, frames) index that reverses each line's first ``lengths`` frames and leaves its padding in place."""
    t = torch.arange(frames, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def bidirectional_lstm(lstm: nn.LSTM, x: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
    """A bidirectional ``lstm`` (batch_first, one layer) over lines padded at their end: each line's frames
    give what a packed sequence would; the frames past a line hold values nobody reads."""
    h0 = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    index = reverse[:, :, None].expand(-1, -1, x.shape[2])
    forward, _, _ = torch.lstm(x, (h0, h0), [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0,
                                             lstm.bias_hh_l0], True, 1, 0.0, lstm.training, False, True)
    backward, _, _ = torch.lstm(x.gather(1, index), (h0, h0),
                                [lstm.weight_ih_l0_reverse, lstm.weight_hh_l0_reverse, lstm.bias_ih_l0_reverse,
                                 lstm.bias_hh_l0_reverse], True, 1, 0.0, lstm.training, False, True)
    index = reverse[:, :, None].expand(-1, -1, backward.shape[2])
    return torch.cat([forward, backward.gather(1, index)], dim=2)


class KerasBatchNorm(nn.Module):
    """BatchNorm2d as Keras computes it: batch statistics in training, and moving averages of the biased
    variance (torch's own BatchNorm2d averages the unbiased one)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                BN_EPSILON)
        # The batch's statistics from batch_norm's own pass (momentum 1 writes them into the scratch buffers):
        # a separate var_mean over N, H, W cost a sixth of a training step on the CPU. batch_norm hands back
        # the unbiased variance; Keras averages the biased one.
        mean, var = torch.zeros_like(self.running_mean), torch.zeros_like(self.running_var)
        y = F.batch_norm(x, mean, var, self.weight, self.bias, True, 1.0, BN_EPSILON)
        with torch.no_grad():
            count = x.numel() // x.shape[1]
            self.running_mean.mul_(BN_MOMENTUM).add_(mean, alpha=1 - BN_MOMENTUM)
            self.running_var.mul_(BN_MOMENTUM).add_(var * ((count - 1) / max(count, 1)), alpha=1 - BN_MOMENTUM)
        return y


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (3x3, depth multiplier 1, 'same', no bias): depthwise then pointwise."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(same_conv(self.depthwise, x))


class TorchCRNN(nn.Module):
    """(images (batch, height, width, 1) float, widths (batch,) int) -> logits (batch, frames, classes).

    ``probs`` is the softmax the Keras model outputs; training takes the logits for the CTC loss.
    """

    def __init__(self, config: ModelConfig, num_classes: int):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        layers: dict[str, nn.Module] = {}
        channels = 1
        for i, out in enumerate(config.stem_channels):
            layers[f"stem{i}_conv"] = nn.Conv2d(channels, out, 3, stride=2, bias=False)
            layers[f"stem{i}_bn"] = KerasBatchNorm(out)
            channels = out
        if 2 ** len(config.stem_channels) != WIDTH_STRIDE:
            raise ValueError(f"{len(config.stem_channels)} stride-2 stems do not give stride {WIDTH_STRIDE}")
        for i, out in enumerate(config.block_channels):
            layers[f"block{i}_conv"] = SeparableConv(channels, out)
            layers[f"block{i}_bn"] = KerasBatchNorm(out)
            channels = out
        features = final_height(config) * config.block_channels[-1]
        if config.projection:
            layers["projection"] = nn.Linear(features, config.projection)
            features = config.projection
        for i, units in enumerate(config.lstm_units):
            layers[f"bilstm{i}"] = nn.LSTM(features, units, batch_first=True, bidirectional=True)
            features = 2 * units
        layers["logits"] = nn.Linear(features, num_classes)
        self.layers = nn.ModuleDict(layers)
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' initialisers, so that a run here starts as train.py's would (in distribution)."""
        for module in self.layers.values():
            if isinstance(module, nn.LSTM):
                units = module.hidden_size
                for pname, p in module.named_parameters():
                    if pname.startswith("weight_ih"):
                        nn.init.xavier_uniform_(p)
                    elif pname.startswith("weight_hh"):
                        # Keras draws a (units, 4 units) orthogonal matrix; torch holds its transpose.
                        p.data.copy_(nn.init.orthogonal_(torch.empty(units, 4 * units)).T)
                    else:
                        nn.init.zeros_(p)
                        if pname.startswith("bias_ih"):
                            p.data[units: 2 * units] = 1.0  # unit_forget_bias
            elif isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, SeparableConv):
                nn.init.xavier_uniform_(module.depthwise.weight)
                nn.init.xavier_uniform_(module.pointwise.weight)

    def forward(self, images: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        config, layers = self.config, self.layers
        x = images.permute(0, 3, 1, 2)  # NHWC (Keras) -> NCHW
        widths = widths.to(device=x.device, dtype=torch.int64)
        stride = 1
        for i in range(len(config.stem_channels)):
            x = F.relu(layers[f"stem{i}_bn"](same_conv(layers[f"stem{i}_conv"], x)))
            stride *= 2
            x = column_mask(x, widths, stride)
        for i, pool in enumerate(config.block_pools):
            x = F.relu(layers[f"block{i}_bn"](layers[f"block{i}_conv"](x)))
            x = column_mask(x, widths, stride)
            if pool > 1:
                x = F.max_pool2d(x, (pool, 1))
        batch, channels, height, frames = x.shape
        x = x.permute(0, 3, 2, 1).reshape(batch, frames, height * channels)  # Keras: height-major, then channels
        if config.projection:
            x = F.relu(layers["projection"](x))
        lengths = ((widths + (WIDTH_STRIDE - 1)) // WIDTH_STRIDE).clamp(1, frames)
        reverse = None if x.is_cuda else reversal_index(lengths, frames)
        for i in range(len(config.lstm_units)):
            lstm = layers[f"bilstm{i}"]
            if reverse is None:  # cuDNN: packed sequences cost nothing there, and its weights stay one flat buffer
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                x = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=frames)[0]
            else:
                x = bidirectional_lstm(lstm, x, reverse)
            x = self.dropout(x)
        return layers["logits"](x)

    def probs(self, images: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        """Per frame; a line's first ceil(width / 4) frames are its reading, the rest mean nothing."""
        return torch.softmax(self(images, widths), dim=-1)


# -- weights between Keras and torch, by layer name --------------------------------------------------

def _keras_arrays(module: nn.Module) -> list[np.ndarray]:
    """A torch layer's weights in the order and layout of the Keras layer's ``get_weights()``."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    if isinstance(module, nn.Conv2d):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [arr(module.weight).transpose(2, 3, 1, 0)]
    if isinstance(module, SeparableConv):  # depthwise (in, 1, kh, kw) -> (kh, kw, in, 1)
        return [arr(module.depthwise.weight).transpose(2, 3, 0, 1), arr(module.pointwise.weight).transpose(2, 3, 1, 0)]
    if isinstance(module, KerasBatchNorm):
        return [arr(module.weight), arr(module.bias), arr(module.running_mean), arr(module.running_var)]
    if isinstance(module, nn.Linear):
        return [arr(module.weight).T, arr(module.bias)]
    if isinstance(module, nn.LSTM):
        out = []
        for suffix in ("l0", "l0_reverse"):  # Bidirectional: forward layer's weights, then backward's
            out += [arr(getattr(module, f"weight_ih_{suffix}")).T, arr(getattr(module, f"weight_hh_{suffix}")).T,
                    arr(getattr(module, f"bias_ih_{suffix}")) + arr(getattr(module, f"bias_hh_{suffix}"))]
        return out
    raise TypeError(f"no Keras layout for {type(module).__name__}")


@torch.no_grad()
def _set_from_keras(module: nn.Module, weights: list[np.ndarray]) -> None:
    def put(param: torch.Tensor, value: np.ndarray) -> None:
        value = torch.as_tensor(np.ascontiguousarray(value), dtype=param.dtype)
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"shape {tuple(value.shape)} does not fit {tuple(param.shape)}")
        param.copy_(value)

    if isinstance(module, nn.Conv2d):
        put(module.weight, weights[0].transpose(3, 2, 0, 1))
    elif isinstance(module, SeparableConv):
        put(module.depthwise.weight, weights[0].transpose(2, 3, 0, 1))
        put(module.pointwise.weight, weights[1].transpose(3, 2, 0, 1))
    elif isinstance(module, KerasBatchNorm):
        for target, value in zip((module.weight, module.bias, module.running_mean, module.running_var), weights):
            put(target, value)
    elif isinstance(module, nn.Linear):
        put(module.weight, weights[0].T)
        put(module.bias, weights[1])
    elif isinstance(module, nn.LSTM):
        for k, suffix in enumerate(("l0", "l0_reverse")):
            kernel, recurrent, bias = weights[3 * k: 3 * k + 3]
            put(getattr(module, f"weight_ih_{suffix}"), kernel.T)
            put(getattr(module, f"weight_hh_{suffix}"), recurrent.T)
            put(getattr(module, f"bias_ih_{suffix}"), bias)
            put(getattr(module, f"bias_hh_{suffix}"), np.zeros_like(bias))
    else:
        raise TypeError(f"no Keras layout for {type(module).__name__}")


def copy_keras_to_torch(keras_model, torch_model: TorchCRNN) -> None:
    """Every weight of the Keras model (BatchNorm moving statistics included) into the torch one, by name."""
    for name, module in torch_model.layers.items():
        _set_from_keras(module, keras_model.get_layer(name).get_weights())


def copy_torch_to_keras(torch_model: TorchCRNN, keras_model) -> None:
    """Every weight of the torch model into the Keras one, by name (torch's two LSTM biases summed)."""
    for name, module in torch_model.layers.items():
        keras_model.get_layer(name).set_weights(_keras_arrays(module))
