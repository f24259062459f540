"""Terrain: the rough heightfield from one seed, its bilinear height, and the same ground in both
engines (rays cast straight down hit Heightfield.height_at); terrain levels: the level's field
worked out by hand, the curriculum's rule, a new field loaded into both engines where their
rays find it, and the env moving its level."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from gaitforge.sim.config import SimConfig, TerrainConfig
from gaitforge.sim.env import EnvConfig, make_body, make_env
from gaitforge.sim.tasks import TaskConfig
from gaitforge.sim.terrain import (
    Heightfield,
    TerrainCurriculum,
    ground_height,
    level_heightfield,
    make_heightfield,
)

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


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_the_ground_goes_on_at_0_around_the_patch_and_a_robot_stands_there(rough_bodies,
                                                                           engine):
    """The 2 m patch ends at x = 1 m; at x = 1.5 m a ray finds the ground at 0 and a robot
    dropped there from its standing height (0.13 m) stands on its four feet."""
    body = rough_bodies[engine]
    if engine == "pybullet":
        hit = body.client.rayTest([1.5, 0.3, 1.0], [1.5, 0.3, -1.0])[0]
        assert hit[0] in body._grounds
        z = hit[3][2]
    else:
        geom = np.array([-1], dtype=np.int32)
        z = 1.0 - mujoco.mj_ray(body.model, body.data, np.array([1.5, 0.3, 1.0]),
                                np.array([0.0, 0.0, -1.0]), None, 1, -1, geom)
        assert geom[0] in body._ground_geoms
    assert z == pytest.approx(0.0, abs=RAY_TOLERANCE_M)
    body.reset(base_pos_m=[1.5, 0.3, 0.13], base_quat_wxyz=[1, 0, 0, 0],
               joint_pos_rad=body.spec.default_pose_rad)
    for _ in range(round(0.5 / body.sim.sim_dt_s)):
        body.step()
    state = body.read()
    assert state.privileged.base_pos_m[2] == pytest.approx(0.13, abs=0.03)
    assert set(body.spec.feet) <= body.link_contacts()


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


# 8 m patch, 1 m cells: nodes at -4 .. 4, the ridge at 2 m from the centre.
SMOOTH = TerrainConfig(kind="levels", levels=3, slope=0.1, rough_amplitude_m=0.0,
                       rough_cell_m=1.0)


def test_the_top_level_is_a_ridge_climbed_then_descended():
    field = level_heightfield(SMOOTH, 2, np.random.default_rng(0))
    # rings at max(|x|, |y|) = 0, 1, 2, 3, 4 m: 0.1 * (2 - |2 - r|) = 0, 0.1, 0.2, 0.1, 0 (edge)
    np.testing.assert_allclose(field.heights[4, 4:], [0.0, 0.1, 0.2, 0.1, 0.0], atol=1e-12)
    assert field.heights[1, 6] == pytest.approx(0.1)  # (x 2, y -3): ring 3
    assert field.top_m == pytest.approx(0.2) and field.bound_m == pytest.approx(0.2)


def test_a_middle_level_has_that_fraction_of_slope_and_roughness():
    half = level_heightfield(SMOOTH, 1, np.random.default_rng(0))
    np.testing.assert_allclose(half.heights[4, 4:], [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-12)
    assert not level_heightfield(SMOOTH, 0, np.random.default_rng(0)).heights.any()
    rough = TerrainConfig(kind="levels", levels=3, slope=0.1, rough_amplitude_m=0.04,
                          rough_cell_m=1.0)
    bumps = level_heightfield(rough, 1, np.random.default_rng(0)).heights - half.heights
    assert bumps.min() >= 0.0 and 0.015 < bumps.max() <= 0.02  # roughness in [0, 0.04 * 1/2]
    # the bound covers the top level's ridge plus its full roughness: 0.1 * 2 + 0.04
    assert level_heightfield(rough, 0, np.random.default_rng(0)).bound_m == pytest.approx(0.24)


def test_the_curriculum_moves_up_on_success_and_down_on_falls():
    levels = TerrainCurriculum(TerrainConfig(kind="levels", levels=3, level=1))
    levels.episode_end(fell=False, distance_m=3.0, commanded_m=6.0)  # half the distance: up
    assert levels.level == 2
    levels.episode_end(fell=False, distance_m=6.0, commanded_m=6.0)  # at the top it stays
    assert levels.level == 2
    levels.episode_end(fell=False, distance_m=2.9, commanded_m=6.0)  # too short: stays
    assert levels.level == 2
    levels.episode_end(fell=True, distance_m=9.0, commanded_m=6.0)
    levels.episode_end(fell=True, distance_m=9.0, commanded_m=6.0)
    levels.episode_end(fell=True, distance_m=9.0, commanded_m=6.0)  # not below 0
    assert levels.level == 0
    levels.episode_end(fell=False, distance_m=0.0, commanded_m=0.0)  # standing still: stays
    levels.episode_end(fell=False, distance_m=1.9, commanded_m=3.0)  # short of the crest (2 m)
    assert levels.level == 0
    levels.episode_end(fell=False, distance_m=2.0, commanded_m=3.0)  # over the 8 m field's
    assert levels.level == 1  # crest, 8 / 4 = 2 m out, and half its command: up
    fixed = TerrainCurriculum(TerrainConfig(kind="levels", levels=3, level=2, curriculum=False))
    fixed.episode_end(fell=True, distance_m=0.0, commanded_m=6.0)
    assert fixed.level == 2


def test_levels_config_is_checked():
    with pytest.raises(ValueError, match="level must be in"):
        TerrainConfig(kind="levels", levels=3, level=3)
    with pytest.raises(ValueError, match="slope"):
        TerrainConfig(kind="levels", slope=-0.1)
    with pytest.raises(ValueError, match="kind"):
        TerrainConfig(kind="stairs")


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_a_new_field_is_where_both_engines_find_it_after_a_reset(engine):
    from gaitforge.robots.spec import load_robot_spec

    config = TerrainConfig(kind="levels", levels=4, slope=0.1, rough_amplitude_m=0.03,
                           rough_size_m=4.0)
    body = make_body(load_robot_spec("servo_dog"), SimConfig(engine=engine, terrain=config))
    ground_z = pybullet_ground_z if engine == "pybullet" else mujoco_ground_z
    try:
        assert not body.terrain.heights.any()  # built at level 0: flat
        top = level_heightfield(config, 3, np.random.default_rng(7))
        body.set_terrain(top)
        body.reset_standing()  # PyBullet restores its saved state: the new field must stay
        # probes on the ridge (1 m out, 0.1 m up) and between it and the edge
        for x, y in [(1.0, 0.0), (0.0, -1.0), (1.5, 0.5), (-0.5, 1.7), (0.3, 0.2)]:
            assert ground_z(body, x, y) == pytest.approx(top.height_at(x, y),
                                                         abs=RAY_TOLERANCE_M)
        assert top.height_at(1.0, 0.0) > 0.1
        with pytest.raises(ValueError, match="size, cell and height bound"):
            body.set_terrain(make_heightfield(TerrainConfig(kind="rough", rough_size_m=4.0)))
    finally:
        body.close()


def test_an_env_that_stood_its_episode_stays_and_a_promoted_one_gets_a_new_field():
    """Told to stand (commanded distance 0), servo_dog holds its pose for a whole 0.2 s
    episode on level 0 (flat): not promoted, it never reached the crest 1 m out. Promoted
    (an episode over the crest), the next episode is on level 1, with a new field."""
    terrain = TerrainConfig(kind="levels", levels=3, slope=0.1, rough_size_m=4.0)
    env = make_env(EnvConfig(sim=SimConfig(terrain=terrain),
                             task=TaskConfig(episode_length_s=0.2)))
    try:
        env.set_command([0.0, 0.0, 0.0])
        _, info = env.reset(seed=0)
        assert info["terrain_level"] == 0.0 and not env.body.terrain.heights.any()
        truncated = False
        while not truncated:
            _, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
            assert not terminated
        assert info["terrain_level"] == 0.0  # the step info names the episode's own level
        _, info = env.reset()
        assert info["terrain_level"] == 0.0
        env.curriculum.episode_end(fell=False, distance_m=1.0, commanded_m=1.2)
        _, info = env.reset()
        assert info["terrain_level"] == 1.0
        assert env.body.terrain.heights.max() > 0.05  # ridge 0.05 * 1 m, roughness on top
    finally:
        env.close()
