"""Terrain shared by both engines: flat ground, one rough heightfield built from a seed, or
levels of roughness and slope with a curriculum that moves each env between them.

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
    top_m: float | None = None  # the height the engines size the field for: None, the
    # highest sample; with levels, the highest any level can reach, so a new field fits

    @property
    def bound_m(self) -> float:
        return float(self.heights.max()) if self.top_m is None else self.top_m

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
    """None for flat ground; rough: uniform random heights in [0, amplitude], edges at 0;
    levels: the start level's field from `rough_seed`."""
    if config.kind == "flat":
        return None
    if config.kind == "levels":
        return level_heightfield(config, config.level, np.random.default_rng(config.rough_seed))
    heights = _rough(config, config.rough_amplitude_m, np.random.default_rng(config.rough_seed))
    return Heightfield(heights=heights, cell_m=config.rough_cell_m)


def _rough(config: TerrainConfig, amplitude_m: float, rng: np.random.Generator) -> np.ndarray:
    n = int(round(config.rough_size_m / config.rough_cell_m)) + 1
    heights = rng.uniform(0.0, amplitude_m, size=(n, n))
    heights[0, :] = heights[-1, :] = heights[:, 0] = heights[:, -1] = 0.0
    return heights


def level_heightfield(config: TerrainConfig, level: int, rng: np.random.Generator) -> Heightfield:
    """Level `level` of `config.levels`: a square ridge around the origin at half the patch's
    half-width, its faces at the grade `slope * f` (climbed from the start, then descended to
    the patch edge), with uniform roughness in [0, rough_amplitude_m * f] on top, where
    f = level / (levels - 1). Edges stay at 0, so the field meets the flat ground around it."""
    f = level / (config.levels - 1)
    heights = _rough(config, config.rough_amplitude_m * f, rng)
    n, half = heights.shape[0], config.rough_size_m / 2
    axis = np.linspace(-half, half, n)
    r = np.maximum(np.abs(axis)[None, :], np.abs(axis)[:, None])  # square rings
    heights += config.slope * f * (half / 2 - np.abs(half / 2 - r))
    heights[0, :] = heights[-1, :] = heights[:, 0] = heights[:, -1] = 0.0
    top = config.slope * half / 2 + config.rough_amplitude_m
    return Heightfield(heights=heights, cell_m=config.rough_cell_m, top_m=max(top, 1e-6))


class TerrainCurriculum:
    """One env's level. After an episode that ran its whole length, reached the ridge's crest
    (`crest_m` from the start) and covered at least half its commanded distance, one level up;
    after a fall, one level down (legged_gym's rule, with falls in place of its too-short
    distance); else it stays. Without `curriculum` it stays put. Without the crest, episodes
    with small commands promoted a robot that stood still: servo_dog's curriculum reported a
    mean of 9.0 of 9 while the policy had not learnt the ridge."""

    def __init__(self, config: TerrainConfig):
        self.config = config
        self.level = config.level
        self.crest_m = config.rough_size_m / 4  # the ridge's top: half the half-width out

    def episode_end(self, *, fell: bool, distance_m: float, commanded_m: float) -> None:
        if not self.config.curriculum:
            return
        if fell:
            self.level = max(0, self.level - 1)
        elif distance_m >= max(self.crest_m, 0.5 * commanded_m):
            self.level = min(self.config.levels - 1, self.level + 1)

    def field(self, rng: np.random.Generator) -> Heightfield:
        return level_heightfield(self.config, self.level, rng)


def ground_height(field: Heightfield | None, x: float, y: float) -> float:
    return 0.0 if field is None else field.height_at(x, y)
