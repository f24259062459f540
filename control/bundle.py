"""The policy bundle: the exported artefact that the deploy runtime runs.

A bundle is a folder:

    policy.tflite     the deterministic actor, observation normaliser baked in
    saved_model/      the same actor as a TensorFlow SavedModel
    bundle.json       what the actor expects and where it came from (below)

`bundle.json` (written by `manifest()` + `publish_bundle()`, nowhere else) is self-describing:
the format version, the robot's name and spec hash, the observation layout (names, sizes,
units, scales, the gait clock; the normaliser statistics, recorded for reference: they are
already inside the networks), the action layout (joint order, default pose, scale, clip, gait
pattern) and the control period are all deployment needs: `ObservationBuilder.from_layout` and
`ActionMapper.from_layout` rebuild the policy I/O from them. The source run and its config are
provenance only. `files` holds the sha256 of every other file, and `integrity` the sha256 of
every other manifest field (and of each key inside a mapping field), so an edit to any field
is refused with the field named.

The manifest is written last, inside a temporary folder that is renamed into place, so a folder
with a `bundle.json` is a complete bundle and a half-written one is never found under the
bundle's name.

This module reads and checks bundles; it does not import TensorFlow.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from gaitforge.robots.spec import RobotSpec

from .files import (
    STAGING_MARKER,
    NotOursError,
    fsync_dir,
    make_staging,
    remove_owned,
    remove_staging,
)

FORMAT_VERSION = 2
MANIFEST = "bundle.json"
TFLITE = "policy.tflite"
SAVED_MODEL = "saved_model"


class BundleError(ValueError):
    """A bundle is unreadable, tampered with, or does not fit the body. The message says what."""


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def field_digests(manifest: dict) -> dict[str, str]:
    """sha256 of each manifest field (but `integrity`), and of each key of a mapping field."""
    out = {}
    for key, value in manifest.items():
        if key == "integrity":
            continue
        out[key] = _digest(value)
        if isinstance(value, dict):
            out.update({f"{key}.{k}": _digest(v) for k, v in value.items()})
    return out


def _edited_fields(manifest: dict) -> list[str]:
    """Fields whose content no longer matches `integrity` (the innermost recorded name)."""
    recorded, now = manifest.get("integrity", {}), field_digests(manifest)
    tops = sorted(k for k in set(recorded) | set(now) if "." not in k
                  and recorded.get(k) != now.get(k))
    out = []
    for top in tops:
        inner = sorted(k for k in set(recorded) | set(now) if k.startswith(top + ".")
                       and recorded.get(k) != now.get(k))
        out += inner or [top]
    return out


def hash_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` except the manifest, by relative POSIX path."""
    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


@dataclass(frozen=True)
class PolicyBundle:
    path: Path
    manifest: dict

    @property
    def robot(self) -> str:
        return self.manifest["robot"]["name"]

    @property
    def control_dt_s(self) -> float:
        return float(self.manifest["control_dt_s"])

    @property
    def observation_layout(self) -> list[dict]:
        return self.manifest["observation"]["layout"]

    @property
    def obs_dim(self) -> int:
        return int(self.manifest["observation"]["size"])

    @property
    def action_layout(self) -> dict:
        return self.manifest["action"]

    @property
    def tflite_path(self) -> Path:
        return self.path / TFLITE

    @property
    def sha256(self) -> str:
        """The bundle's identity: the hash of its manifest (which holds every file's hash)."""
        return file_sha256(self.path / MANIFEST)

    def verify_files(self) -> None:
        """Recompute every file hash; raise BundleError naming a missing, extra or changed file."""
        expected = self.manifest["files"]
        actual = hash_files(self.path)
        for name in sorted(set(expected) | set(actual)):
            if name not in actual:
                raise BundleError(f"{self.path}: file '{name}' is missing")
            if name not in expected:
                raise BundleError(f"{self.path}: file '{name}' is not listed in {MANIFEST}")
            if actual[name] != expected[name]:
                raise BundleError(f"{self.path}: file '{name}' was modified (sha256 "
                                  f"{actual[name][:12]}..., {MANIFEST} says "
                                  f"{expected[name][:12]}...)")

    def check_compatible(self, spec: RobotSpec, control_dt_s: float, observation_layout: list,
                         action_layout: dict) -> None:
        """Refuse a body that differs from what the policy was trained for, naming the field."""
        robot = self.manifest["robot"]
        where = f"bundle {self.path}"
        if robot["name"] != spec.name:
            raise BundleError(f"{where} is for robot '{robot['name']}', not '{spec.name}'")
        if robot["spec_sha256"] != spec.sha256:
            raise BundleError(f"{where}: robot spec of '{spec.name}' changed since export "
                              f"(spec sha256 {spec.sha256[:12]}..., bundle has "
                              f"{robot['spec_sha256'][:12]}...)")
        if abs(self.control_dt_s - control_dt_s) > 1e-12:
            raise BundleError(f"{where}: control period {self.control_dt_s} s, the body runs "
                              f"at {control_dt_s} s")
        theirs, ours = self.action_layout, json.loads(json.dumps(action_layout))
        if theirs["joint_order"] != ours["joint_order"]:
            diff = [f"{i}: {a} != {b}" for i, (a, b) in
                    enumerate(zip(theirs["joint_order"], ours["joint_order"], strict=False))
                    if a != b]
            raise BundleError(f"{where}: joint order differs from the body's "
                              f"(position {', '.join(diff) or 'count'}; bundle "
                              f"{theirs['joint_order']})")
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                raise BundleError(f"{where}: action.{key} is {theirs.get(key)!r}, the deploy "
                                  f"side has {ours.get(key)!r}")
        mine = json.loads(json.dumps(observation_layout))
        for a, b in zip(self.observation_layout, mine, strict=False):
            if a != b:
                raise BundleError(f"{where}: observation term '{a['name']}' is {a}, the deploy "
                                  f"side builds {b}")
        if len(self.observation_layout) != len(mine):
            raise BundleError(f"{where}: observation has terms "
                              f"{[t['name'] for t in self.observation_layout]}, the deploy side "
                              f"builds {[t['name'] for t in mine]}")


def load_bundle(path: str | os.PathLike, *, verify: bool = True) -> PolicyBundle:
    """Read `bundle.json` and (by default) check every file's hash."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{folder}: not a policy bundle (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"{manifest_path}: unreadable ({e})") from e
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: not a bundle manifest (a JSON object)")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        run = (manifest.get("source") or {}).get("run") or "RUN"
        older = isinstance(version, int) and version < FORMAT_VERSION
        raise BundleError(
            f"{manifest_path}: bundle format {version!r}, this gaitforge reads "
            f"{FORMAT_VERSION}" + (f"; it was written by an older gaitforge: re-export it "
                                   f"with `gaitforge export {run} --overwrite`" if older else ""))
    for key in ("robot", "observation", "action", "control_dt_s", "files", "integrity"):
        if key not in manifest:
            raise BundleError(f"{manifest_path}: missing field '{key}'")
    if edited := _edited_fields(manifest):
        raise BundleError(f"{manifest_path}: field {', '.join(repr(f) for f in edited)} was "
                          "edited after export (its sha256 no longer matches 'integrity'); "
                          "re-export the bundle instead of editing it")
    bundle = PolicyBundle(folder, manifest)
    if verify:
        bundle.verify_files()
    return bundle


def manifest(*, spec: RobotSpec, observation_layout: list, normalizer: dict,
             action_layout: dict, control_dt_s: float, source: dict, parity: dict | None = None,
             lineage: dict | None = None) -> dict:
    """The manifest fields of a bundle (publish_bundle adds format, files and integrity).

    source: provenance (run, checkpoint, agent, resolved config), never read to deploy.
    lineage: where a fine-tuned policy came from (parent bundle, logs, dynamics file)."""
    out = {"robot": {"name": spec.name, "spec_sha256": spec.sha256},
           "observation": {"size": sum(t["size"] for t in observation_layout),
                           "layout": observation_layout, "normalizer": normalizer},
           "action": action_layout, "control_dt_s": float(control_dt_s), "source": source,
           "parity": parity or {},
           "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    if lineage:
        out["lineage"] = lineage
    return json.loads(json.dumps(out))  # plain JSON types, as they will read back


def publish_bundle(staging: Path, out: Path, manifest: dict, *, overwrite: bool) -> PolicyBundle:
    """Hash the files in `staging`, write the manifest last, and rename the folder to `out`.

    An existing `out` is replaced only with `overwrite`, and only if it is a bundle gaitforge
    wrote (its `bundle.json` is there and every entry is one a bundle holds): anything else is
    refused naming the path (`files.NotOursError`) and left as it was. The old bundle is moved
    aside first and removed after the rename, so at every instant `out` is either the old
    bundle or the new one.
    """
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise BundleError(f"{out} exists (pass --overwrite to replace it)")
        check_replaceable(out)
    (staging / STAGING_MARKER).unlink(missing_ok=True)
    manifest = {**manifest, "format_version": FORMAT_VERSION, "files": hash_files(staging)}
    manifest["integrity"] = field_digests(manifest)
    tmp = staging / f".{MANIFEST}.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, staging / MANIFEST)
    aside = None
    if out.exists():
        aside = make_staging(out.parent, out.name)
        os.replace(out, aside / out.name)
    os.replace(staging, out)
    fsync_dir(out.parent)
    if aside is not None:
        remove_owned(aside / out.name, marker=MANIFEST, allowed=_bundle_entries(aside / out.name))
        remove_staging(aside)
    return load_bundle(out)


def _bundle_entries(folder: Path) -> set[str]:
    """Top-level names a bundle in `folder` may hold: what its manifest lists, and the models."""
    names = {TFLITE, SAVED_MODEL, f".{MANIFEST}.tmp"}
    try:
        listed = json.loads((folder / MANIFEST).read_text()).get("files", {})
        names |= {name.split("/", 1)[0] for name in listed}
    except (OSError, ValueError, AttributeError):
        pass
    return names


def check_replaceable(out: Path) -> None:
    """NotOursError unless `out` is a folder holding a bundle gaitforge wrote, and only that."""
    if out.is_symlink() or not out.is_dir() or not (out / MANIFEST).is_file():
        raise NotOursError(f"{out} is not a policy bundle (no {MANIFEST}): refusing to replace "
                           "it; choose another --out, or move it away yourself")
    allowed = _bundle_entries(out)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed | {MANIFEST})
    if foreign:
        raise NotOursError(f"{out} holds '{foreign[0]}', which is not part of a bundle: "
                           "refusing to replace it; move that file out or choose another --out")
