"""Offscreen frames of a simulated body, with no display and no GPU.

PyBullet renders with its built-in TinyRenderer (CPU). MuJoCo needs an OpenGL context
(MUJOCO_GL=egl or osmesa); where none exists we say so rather than return a blank frame.
"""

from __future__ import annotations

import numpy as np

from .body import SimBody

WIDTH, HEIGHT = 320, 240


def render_rgb(body: SimBody, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """(height, width, 3) uint8 frame from a camera that follows the trunk."""
    target = body.read().privileged.base_pos_m
    distance = 4.0 * body.spec.standing_height_m + 0.3
    if body.engine == "pybullet":
        import pybullet

        p = body.client
        view = p.computeViewMatrixFromYawPitchRoll(target.tolist(), distance, 30.0, -20.0, 0, 2)
        proj = p.computeProjectionMatrixFOV(60.0, width / height, 0.01, 20.0)
        _, _, rgba, _, _ = p.getCameraImage(width, height, view, proj,
                                            renderer=pybullet.ER_TINY_RENDERER)
        return np.reshape(np.asarray(rgba, dtype=np.uint8), (height, width, 4))[:, :, :3]
    import mujoco

    try:
        renderer = body.__dict__.setdefault("_renderer", mujoco.Renderer(body.model, height,
                                                                         width))
    except Exception as err:  # no GL context on this machine
        raise RuntimeError(
            "MuJoCo rendering needs an OpenGL context (set MUJOCO_GL=egl or osmesa); "
            f"use --engine pybullet for video on this machine ({err})") from err
    camera = mujoco.MjvCamera()
    camera.lookat[:], camera.distance, camera.azimuth, camera.elevation = target, distance, 120, -20
    renderer.update_scene(body.data, camera)
    return renderer.render()
