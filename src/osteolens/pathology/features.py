"""Tile features: ImageNet EfficientNet-Lite0 (from its PyPI package) on stain-normalised tiles.

Each tile is resized to 256 x 256 (about 2.5 um per pixel for a 1024-px tile at 10x), Macenko
normalised, and described by the encoder's globally averaged last feature map (1,280 values)
plus six colour statistics of the normalised tile (mean and standard deviation of optical
density per channel).
"""

from __future__ import annotations

import numpy as np

from osteolens.pathology.stain import macenko_normalise
from osteolens.transforms.preprocess import IMAGENET_MEAN, IMAGENET_STD

TILE_INPUT = 256


def prepare_tile(rgb: np.ndarray, size: int = TILE_INPUT) -> np.ndarray:
    """Resize (area) to ``size`` and stain-normalise an RGB uint8 tile."""
    import cv2

    if rgb.shape[:2] != (size, size):
        rgb = cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=cv2.INTER_AREA)
    return macenko_normalise(rgb)[0]


def colour_stats(rgb: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of optical density per RGB channel."""
    od = -np.log((rgb.astype(np.float32) + 1) / 256.0).reshape(-1, 3)
    return np.concatenate([od.mean(0), od.std(0)]).astype(np.float32)


class TileFeatureExtractor:
    """ImageNet EfficientNet-Lite0 features of prepared tiles, on the CPU.

    Args:
        threads: torch intra-op threads.
    """

    def __init__(self, threads: int = 2):
        import torch

        from osteolens.models.backbone import LiteEncoder

        torch.set_num_threads(threads)
        self.torch = torch
        self.encoder = LiteEncoder(TILE_INPUT).eval()  # ImageNet weights from the installed package file
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __call__(self, tiles: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """``(N, 1286)`` features of prepared (resized, normalised) RGB uint8 tiles."""
        torch = self.torch
        out = []
        with torch.no_grad():
            for i in range(0, len(tiles), batch_size):
                chunk = np.stack(tiles[i:i + batch_size]).astype(np.float32) / 255.0
                x = (torch.from_numpy(chunk).permute(0, 3, 1, 2) - self.mean) / self.std
                deep = self.encoder(x)[-1].mean(dim=(2, 3)).numpy()
                colour = np.stack([colour_stats(t) for t in tiles[i:i + batch_size]])
                out.append(np.concatenate([deep, colour], axis=1))
        return np.concatenate(out) if out else np.zeros((0, 1286), np.float32)
