"""Link inertias from collision shapes, for a description whose own inertias are placeholders
(the Minitaur URDF gives every link 1 kg m^2, a hundred to ten thousand times too much): the
spec's `inertia_from: collision`.

A link's mass (the description's) is spread over its collision shapes (a link without any:
its visual shapes) in proportion to their volumes; each shape's inertia about its own centre
(solid box, cylinder along its z axis, sphere; a Wavefront .obj mesh counts as its bounding
box) is turned into the link frame and moved to the link's centre of mass (the
description's) by the parallel-axis rule:

    I = sum_s [ R_s I_s R_s^T + m_s (|d_s|^2 E - d_s d_s^T) ],   d_s = shape centre - COM

The tensor is in the link frame, about the centre of mass. Both engines take it from here, so
they simulate the same bodies.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .kinematics import rpy_matrix


def _vector(text: str | None, default) -> np.ndarray:
    return np.array([float(v) for v in text.split()] if text else default, dtype=np.float64)


def _box(x: float, y: float, z: float) -> tuple[float, np.ndarray]:
    return x * y * z, np.diag([y * y + z * z, x * x + z * z, x * x + y * y]) / 12.0


def _mesh_box(mesh: ET.Element, folder: Path, link: str) -> tuple[np.ndarray, np.ndarray]:
    """(size (3,), centre (3,)) of an .obj mesh's bounding box, scaled, in the shape frame."""
    path = folder / mesh.get("filename", "")
    if path.suffix.lower() != ".obj" or not path.is_file():
        raise ValueError(f"link '{link}': mesh '{path}' is not a readable .obj file")
    vertices = np.array([[float(v) for v in line.split()[1:4]]
                         for line in path.read_text().splitlines() if line.startswith("v ")])
    vertices *= _vector(mesh.get("scale"), (1, 1, 1))
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    return high - low, (high + low) / 2


def _shape(geometry: ET.Element, link: str, folder: Path
           ) -> tuple[float, np.ndarray, np.ndarray]:
    """(volume m^3, inertia per unit mass about the centre (3, 3) m^2, centre in the shape
    frame (3,) m) of a shape."""
    box, cylinder, sphere, mesh = (geometry.find(k) for k in ("box", "cylinder", "sphere",
                                                               "mesh"))
    if box is not None:
        return (*_box(*_vector(box.get("size"), (0, 0, 0))), np.zeros(3))
    if mesh is not None:
        size, centre = _mesh_box(mesh, folder, link)
        return (*_box(*size), centre)
    if cylinder is not None:
        r, h = float(cylinder.get("radius")), float(cylinder.get("length"))
        side = (3 * r * r + h * h) / 12.0
        return math.pi * r * r * h, np.diag([side, side, r * r / 2.0]), np.zeros(3)
    if sphere is not None:
        r = float(sphere.get("radius"))
        return 4.0 / 3.0 * math.pi * r ** 3, np.eye(3) * 0.4 * r * r, np.zeros(3)
    kind = next((child.tag for child in geometry), "nothing")
    raise ValueError(f"link '{link}': a {kind} shape has no inertia formula here "
                     "(boxes, cylinders, spheres and .obj meshes only)")


def link_inertia(link: ET.Element, folder: Path) -> np.ndarray | None:
    """(3, 3) inertia (kg m^2) of a URDF <link> about its centre of mass, link frame, from its
    collision shapes (or visual ones); None for a link without mass or without shapes. Mesh
    files are found relative to `folder`."""
    inertial = link.find("inertial")
    mass_el = None if inertial is None else inertial.find("mass")
    shapes = [c for c in link.findall("collision") if c.find("geometry") is not None]
    shapes = shapes or [v for v in link.findall("visual") if v.find("geometry") is not None]
    if mass_el is None or not shapes or float(mass_el.get("value", 0)) <= 0:
        return None
    origin = inertial.find("origin")
    com = _vector(None if origin is None else origin.get("xyz"), (0, 0, 0))
    parts = []
    for shape in shapes:
        volume, unit, offset = _shape(shape.find("geometry"), link.get("name"), folder)
        where = shape.find("origin")
        rot = rpy_matrix(_vector(None if where is None else where.get("rpy"), (0, 0, 0)))
        centre = _vector(None if where is None else where.get("xyz"), (0, 0, 0)) + rot @ offset
        parts.append((volume, rot @ unit @ rot.T, centre - com))
    total = sum(v for v, _, _ in parts)
    mass = float(mass_el.get("value"))
    out = np.zeros((3, 3))
    for volume, unit, d in parts:
        m = mass * (volume / total if total > 0 else 1.0 / len(parts))
        out += m * unit + m * (d @ d * np.eye(3) - np.outer(d, d))
    return out


def collision_inertias(path: str | Path) -> dict[str, np.ndarray]:
    """Link name -> its inertia from its shapes, for the URDF at `path` (links without mass or
    shapes are left out)."""
    path = Path(path)
    out = {}
    for link in ET.parse(path).getroot().findall("link"):
        inertia = link_inertia(link, path.parent)
        if inertia is not None:
            out[link.get("name")] = inertia
    return out


def write_inertias(urdf: ET.Element, inertias: dict[str, np.ndarray]) -> None:
    """Put `inertias` (link frame, about the centre of mass) into a parsed URDF, in place: the
    <inertial> origin keeps its position and loses its rotation."""
    for link in urdf.findall("link"):
        tensor = inertias.get(link.get("name"))
        if tensor is None:
            continue
        inertial = link.find("inertial")
        origin = inertial.find("origin")
        if origin is not None:
            origin.set("rpy", "0 0 0")
        element = inertial.find("inertia")
        if element is None:
            element = ET.SubElement(inertial, "inertia")
        for key, (i, j) in {"ixx": (0, 0), "iyy": (1, 1), "izz": (2, 2), "ixy": (0, 1),
                            "ixz": (0, 2), "iyz": (1, 2)}.items():
            element.set(key, repr(float(tensor[i, j])))
