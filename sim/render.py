"""Offscreen frames of a simulated body, with no display and no GPU.

PyBullet renders with its built-in TinyRenderer (CPU). MuJoCo needs an OpenGL context
(MUJOCO_GL=egl or osmesa); where none exists we say so rather than return a blank frame.
`write_video` writes MP4 or GIF; `render_poses` renders a recorded session afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gaitforge.control.optional import require
from gaitforge.robots.configio import ConfigError

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


VIDEO_FORMATS = ("mp4", "gif")


def write_video(path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB frames to `path`: MP4 (H.264 through imageio-ffmpeg, which ships its own
    ffmpeg; optional extra `video`) or GIF, chosen by the suffix; the frames are streamed, not
    held. Returns the number of frames written."""
    import imageio.v2 as imageio

    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in VIDEO_FORMATS:
        raise ConfigError(f"{path}: a video is .mp4 or .gif, not '{path.suffix or 'no suffix'}'")
    if kind == "mp4":
        require("imageio_ffmpeg", "video", "an MP4 video")
        writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps,
                                    codec="libx264", quality=7, macro_block_size=16)
    else:
        writer = imageio.get_writer(path, format="GIF", mode="I", duration=1000.0 / fps,
                                    loop=0)
    n = 0
    try:
        for frame in frames:
            writer.append_data(frame)
            n += 1
    finally:
        writer.close()
    return n


def render_poses(body: SimBody, poses, width: int = WIDTH, height: int = HEIGHT):
    """Frames of recorded poses (`robot_adapters.Pose`: trunk position and orientation, joint
    angles), the body teleported to each in turn: a session's video, rendered afterwards so
    the real-time loop never waits for the renderer."""
    for pose in poses:
        body.reset(base_pos_m=pose.base_pos_m, base_quat_wxyz=pose.base_quat_wxyz,
                   joint_pos_rad=pose.joint_pos_rad)
        yield render_rgb(body, width, height)
