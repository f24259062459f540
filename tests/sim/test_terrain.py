"""Terrain: the rough heightfield from one seed, its bilinear height, and the same ground in both
engines (rays cast straight down hit Heightfield.height_at)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from gaitforge.sim.config import TerrainConfig
from gaitforge.sim.terrain import Heightfield, ground_height, make_heightfield

# A small field keeps the engines quick: 2 m square, 10 cm cells -> 21 x 21 samples,
# grid nodes at x, y = -1.0, -0.9, ..., 1.0.
ROUGH = TerrainConfig(kind="rough", rough_size_m=2.0, rough_cell_m=0.1, rough_amplitude_m=0.05,
                      rough_seed=3)

# Probe points away from the robot (it stands at the origin, within ±0.2 m): grid nodes, and
# midpoints of cell edges. Along a cell edge the bilinear height is linear, and so is any
# triangulation (edges are shared by the triangles), so both engines must match there too.
NODES = [(0.5, 0.3), (-0.6, 0.7), (0.8, -0.4), (-0.9, -0.9), (0.3, -0.7), (0.0, 0.9)]
EDGE_MIDPOINTS = [(0.55, 0.3), (0.5, 0.35), (-0.6, 0.75), (-0.85, -0.9)]
RAY_TOLERANCE_M = 1e-3  # stated: 1 mm (measured: below 1e-6 m in both engines)


def test_flat_has_no_field():
    assert make_heightfield(TerrainConfig()) is None
    assert ground_height(None, 1.0, -2.0) == 0.0


def test_rough_field_shape_range_edges_and_seed():
    field = make_heightfield(TerrainConfig(kind="rough", rough_amplitude_m=0.02))
    # default size 8 m / cell 0.1 m = 80 cells -> 81 samples a side
    assert field.heights.shape == (81, 81)
    assert field.cell_m == 0.1 and field.half_extent_m == pytest.approx(4.0)
    assert field.heights.min() >= 0.0 and field.heights.max() <= 0.02
    assert field.heights.max() > 0.019  # 6400 uniform draws reach close to the amplitude
    h = field.heights
    assert not (h[0].any() or h[-1].any() or h[:, 0].any() or h[:, -1].any())  # edges at 0
    again = make_heightfield(TerrainConfig(kind="rough", rough_amplitude_m=0.02))
    np.testing.assert_array_equal(again.heights, h)
    other = make_heightfield(TerrainConfig(kind="rough", rough_amplitude_m=0.02, rough_seed=1))
    assert not np.array_equal(other.heights, h)


def test_height_at_is_bilinear():
    """heights[iy, ix] on a 2 x 2 grid, 1 m cell, centred: nodes at x, y = ±0.5.
         y = +0.5:  0.2  0.4
         y = -0.5:  0.0  0.1      (x = -0.5, +0.5)"""
    field = Heightfield(heights=np.array([[0.0, 0.1], [0.2, 0.4]]), cell_m=1.0)
    assert field.half_extent_m == 0.5
    assert field.height_at(-0.5, -0.5) == 0.0
    assert field.height_at(0.5, -0.5) == pytest.approx(0.1)  # x moves along a row
    assert field.height_at(-0.5, 0.5) == pytest.approx(0.2)  # y moves between rows
    assert field.height_at(0.5, 0.5) == pytest.approx(0.4)
    assert field.height_at(0.0, -0.5) == pytest.approx(0.05)  # edge midpoint
    assert field.height_at(0.0, 0.0) == pytest.approx(0.175)  # centre: mean of the 4
    # (0.25, 0): tx 0.75, ty 0.5 -> 0.5 * (0.75 * 0.1) + 0.5 * (0.25 * 0.2 + 0.75 * 0.4)
    #          = 0.0375 + 0.175 = 0.2125
    assert field.height_at(0.25, 0.0) == pytest.approx(0.2125)
    assert field.height_at(0.6, 0.0) == 0.0  # outside the patch
    assert field.height_at(0.0, -0.51) == 0.0
    assert ground_height(field, 0.5, 0.5) == pytest.approx(0.4)


def test_max_height_near():
    field = make_heightfield(ROUGH)
    h = field.heights
    # square x 0.42..0.62, y 0.23..0.43 around (0.52, 0.33): it touches the cells between nodes
    # x 0.4..0.7 (ix = floor(14.2) .. ceil(16.2) = 14..17) and y 0.2..0.5 (iy 12..15), and the
    # result is the highest of those samples (conservative for spawning)
    assert field.max_height_near(0.52, 0.33, 0.1) == h[12:16, 14:18].max()
    assert field.max_height_near(0.0, 0.0, 5.0) == pytest.approx(h.max())


def pybullet_ground_z(body, x, y) -> float:
    hit = body.client.rayTest([x, y, 1.0], [x, y, -1.0])[0]
    assert hit[0] == body.ground, f"ray at ({x}, {y}) hit object {hit[0]}, not the ground"
    return hit[3][2]


def mujoco_ground_z(body, x, y) -> float:
    geom = np.array([-1], dtype=np.int32)
    dist = mujoco.mj_ray(body.model, body.data, np.array([x, y, 1.0]), np.array([0.0, 0.0, -1.0]),
                         None, 1, -1, geom)
    assert geom[0] == body._ground_geom, f"ray at ({x}, {y}) hit geom {geom[0]}, not the ground"
    return 1.0 - dist


@pytest.fixture(scope="module")
def rough_bodies(request):
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.config import SimConfig
    from gaitforge.sim.env import make_body

    spec = load_robot_spec("servo_dog")
    bodies = {e: make_body(spec, SimConfig(engine=e, terrain=ROUGH)) for e in ("pybullet",
                                                                                  "mujoco")}
    yield bodies
    for b in bodies.values():
        b.close()


@pytest.mark.parametrize(("x", "y"), NODES + EDGE_MIDPOINTS)
def test_both_engines_put_the_ground_at_height_at(rough_bodies, x, y):
    field = rough_bodies["pybullet"].terrain
    expected = field.height_at(x, y)
    assert rough_bodies["mujoco"].terrain.height_at(x, y) == expected  # one field, two engines
    assert pybullet_ground_z(rough_bodies["pybullet"], x, y) == pytest.approx(
        expected, abs=RAY_TOLERANCE_M)
    assert mujoco_ground_z(rough_bodies["mujoco"], x, y) == pytest.approx(
        expected, abs=RAY_TOLERANCE_M)


def test_probe_points_are_not_trivial(rough_bodies):
    """The probes must see real relief, else the ray test could pass on a flat floor."""
    field = rough_bodies["pybullet"].terrain
    heights = [field.height_at(x, y) for x, y in NODES]
    assert np.ptp(heights) > 0.02


@pytest.mark.parametrize(("x", "y"), [(0.55, 0.35), (-0.45, 0.65), (0.72, -0.43)])
def test_inside_a_cell_each_engine_stays_between_the_corners(rough_bodies, x, y):
    """Inside a cell the engines triangulate differently (PyBullet and MuJoCo split the square
    along different diagonals, so they may disagree by up to the amplitude there); each must
    still lie within the range of the cell's four corner heights."""
    field = rough_bodies["pybullet"].terrain
    ix = int((x + field.half_extent_m) / field.cell_m)
    iy = int((y + field.half_extent_m) / field.cell_m)
    corners = field.heights[iy:iy + 2, ix:ix + 2]
    for z in (pybullet_ground_z(rough_bodies["pybullet"], x, y),
              mujoco_ground_z(rough_bodies["mujoco"], x, y)):
        assert corners.min() - 1e-6 <= z <= corners.max() + 1e-6


def test_spawn_height_on_rough_ground(rough_bodies):
    body = rough_bodies["mujoco"]
    # highest sample within ±0.3 m of the origin, plus servo_dog's standing height 0.13 m
    expected = body.terrain.max_height_near(0.0, 0.0, 0.3) + 0.13
    assert body.spawn_height() == pytest.approx(expected)
    assert body.spawn_height() > 0.13
