"""The radiograph network: one encoder, a U-Net decoder and two classification heads.

Outputs, for a batch of ``(B, 3, S, S)`` images (and ``(B, C)`` clinical vectors):

- ``class_logits`` ``(B, 3)``: normal / benign / malignant;
- ``subtype_logits`` ``(B, 9)``: the BTXRD subtypes (meaningful for tumour images);
- ``mask_logits`` ``(B, 1, S, S)``: tumour segmentation;
- ``cam`` ``(B, 3, S/32, S/32)``: class activation maps of the class head.

The class head is linear on globally averaged encoder features (plus the clinical vector), so
its class activation map equals Grad-CAM's map exactly (for a linear head on average-pooled
features Grad-CAM's channel weights are the head's weights); it is computed in the graph so that
the exported ONNX model gives the saliency without back-propagation.

With ``lesion_pooling`` the heads also see the encoder features averaged with the network's own
tumour-mask probability as weights (detached: the classes do not train the mask). A lesion that
covers one cell of the encoder's grid is then not diluted by the other hundred. The head stays
linear in the features at each location, so ``cam`` stays an exact split of the class logit over
locations (its mean over the grid is the logit less the bias and the clinical terms); it is no
longer Grad-CAM's map, which would drop the mask weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from osteolens.models.backbone import ENCODER_CHANNELS, LiteEncoder


#: channels of the decoder's stages (stride 16, 8, 4, 2) in the shipped models
DECODER_WIDTHS = (96, 64, 32, 16)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    """Upsample from stride 32 to full size, joining the encoder's skip features."""

    def __init__(self, channels=ENCODER_CHANNELS, widths=DECODER_WIDTHS):
        super().__init__()
        skips = list(channels[:-1])[::-1]  # 112, 40, 24, 16
        self.reduce = nn.Conv2d(channels[-1], widths[0], 1)
        self.stages = nn.ModuleList()
        cin = widths[0]
        for skip, w in zip(skips, widths):
            self.stages.append(_conv_bn(cin + skip, w))
            cin = w
        self.final = nn.Conv2d(cin, 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Decode to stride 2 (the last skip), then upsample the logits to the input size.

        Stopping at stride 2 halves the decoder's cost on the CPU; the bilinear upsampling of
        logits loses little for lesions of tens of pixels.
        """
        x = self.reduce(feats[-1])
        for stage, skip in zip(self.stages, feats[-2::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        return F.interpolate(self.final(x), scale_factor=2, mode="bilinear", align_corners=False)


class RadiographNet(nn.Module):
    """Multitask network for bone-tumour radiographs.

    Args:
        image_size: square input size.
        n_classes: 3 (normal, benign, malignant).
        n_subtypes: 9.
        n_clinical: length of the clinical vector (0: image only).
        pretrained: start the encoder from the packaged ImageNet weights.
        dropout: dropout before the heads.
        lesion_pooling: give the heads the mask-weighted average of the encoder features beside
            the global average (see the module's docstring).
        decoder_widths: channels of the decoder's four stages, from stride 16 to stride 2.
    """

    #: stride of the encoder's last feature map
    STRIDE = 32
    #: added to the sum of the mask weights: an image without a lesion pools to about zero
    LESION_POOL_EPS = 1.0

    def __init__(self, image_size: int = 256, n_classes: int = 3, n_subtypes: int = 9, n_clinical: int = 0,
                 pretrained: bool = True, dropout: float = 0.3, lesion_pooling: bool = False,
                 decoder_widths: tuple[int, int, int, int] = DECODER_WIDTHS):
        super().__init__()
        self.encoder = LiteEncoder(image_size, pretrained=pretrained)
        self.decoder = UNetDecoder(widths=tuple(decoder_widths))
        feat = ENCODER_CHANNELS[-1] * (2 if lesion_pooling else 1)
        self.lesion_pooling = lesion_pooling
        self.n_clinical = n_clinical
        self.dropout = nn.Dropout(dropout)
        self.class_head = nn.Linear(feat + n_clinical, n_classes)
        self.subtype_head = nn.Sequential(nn.Linear(feat + n_clinical, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                          nn.Linear(128, n_subtypes))

    def forward(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        feats = self.encoder(image)
        top = feats[-1]
        mask_logits = self.decoder(feats)
        pooled = top.mean(dim=(2, 3))
        n_feat = top.shape[1]
        if self.lesion_pooling:
            weight = F.avg_pool2d(torch.sigmoid(mask_logits.detach().float()), self.STRIDE)  # (B, 1, h, w)
            total = weight.sum(dim=(2, 3)) + self.LESION_POOL_EPS  # (B, 1)
            pooled = torch.cat([pooled, (top * weight).sum(dim=(2, 3)) / total], dim=1)
        if self.n_clinical:
            if clinical is None:
                raise ValueError(f"this model needs a clinical vector of length {self.n_clinical}")
            pooled = torch.cat([pooled, clinical], dim=1)
        h = self.dropout(pooled)
        class_logits = self.class_head(h)
        w = self.class_head.weight
        cam = torch.einsum("kc,bchw->bkhw", w[:, :n_feat], top)
        if self.lesion_pooling:
            # the lesion term's share of each location, scaled so that the grid's mean is the term
            share = weight * (weight.shape[-2] * weight.shape[-1]) / total[:, :, None, None]
            cam = cam + torch.einsum("kc,bchw->bkhw", w[:, n_feat: 2 * n_feat], top) * share
        return {
            "class_logits": class_logits,
            "subtype_logits": self.subtype_head(h),
            "mask_logits": mask_logits,
            "cam": cam,
        }
