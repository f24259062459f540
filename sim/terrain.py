"""Terrain shared by both engines: flat ground, or one rough heightfield built from a seed.

Heights are a (n, n) grid `heights[iy, ix]` in metres on a square patch centred on the origin,
so both engines load the same numbers (row-major, x fastest: what PyBullet and MuJoCo expect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TerrainConfig


@dataclass(frozen=True)
class Heightfield:
    heights: np.ndarray  # (n, n) metres, heights[iy, ix]
    cell_m: float

    @property
    def n(self) -> int:
        return self.heights.shape[0]

    @property
    def half_extent_m(self) -> float:
        return (self.n - 1) * self.cell_m / 2

    def height_at(self, x: float, y: float) -> float:
        """Ground height (m) at (x, y), bilinear between samples; 0 outside the patch."""
        fx = (x + self.half_extent_m) / self.cell_m
        fy = (y + self.half_extent_m) / self.cell_m
        if not (0 <= fx <= self.n - 1 and 0 <= fy <= self.n - 1):
            return 0.0
        ix, iy = min(int(fx), self.n - 2), min(int(fy), self.n - 2)
        tx, ty = fx - ix, fy - iy
        h = self.heights
        return float(
            (1 - ty) * ((1 - tx) * h[iy, ix] + tx * h[iy, ix + 1])
            + ty * ((1 - tx) * h[iy + 1, ix] + tx * h[iy + 1, ix + 1])
        )

    def max_height_near(self, x: float, y: float, radius_m: float) -> float:
        """Highest sample within a square of half-side radius_m around (x, y)."""
        lo = np.floor((np.array([x, y]) - radius_m + self.half_extent_m) / self.cell_m)
        hi = np.ceil((np.array([x, y]) + radius_m + self.half_extent_m) / self.cell_m)
        lo = np.clip(lo, 0, self.n - 1).astype(int)
        hi = np.clip(hi, 0, self.n - 1).astype(int)
        patch = self.heights[lo[1]: hi[1] + 1, lo[0]: hi[0] + 1]
        return float(patch.max()) if patch.size else 0.0


def make_heightfield(config: TerrainConfig) -> Heightfield | None:
    """None for flat ground; else uniform random heights in [0, amplitude], edges at 0."""
    if config.kind == "flat":
        return None
    n = int(round(config.rough_size_m / config.rough_cell_m)) + 1
    rng = np.random.default_rng(config.rough_seed)
    heights = rng.uniform(0.0, config.rough_amplitude_m, size=(n, n))
    heights[0, :] = heights[-1, :] = heights[:, 0] = heights[:, -1] = 0.0
    return Heightfield(heights=heights, cell_m=config.rough_cell_m)


def ground_height(field: Heightfield | None, x: float, y: float) -> float:
    return 0.0 if field is None else field.height_at(x, y)
