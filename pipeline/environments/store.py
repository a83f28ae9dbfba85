"""Environment sets on disk: one tensor file per environment plus ``manifest.json``.

Environments are generated once (``make-envs``) and every run loads the same files, checked
against the sha256 in the manifest, so two runs can never silently see different data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.errors import ConfigError
from pipeline.outputs import write_json

MANIFEST = "manifest.json"
POOL = "pool.pt"  # what a dataset that can redraw its environments redraws them from


@dataclass
class Environment:
    """One environment: inputs ``x``, float labels ``y`` and optional extra tensors."""

    name: str
    role: str  # "train" or "test"
    x: torch.Tensor
    y: torch.Tensor
    params: dict = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        """Examples per environment: y's last axis (leading axes, in ``sem``, are repetitions)."""
        return self.y.shape[-1]


@dataclass
class EnvSet:
    """A loaded environment set with its manifest (and the manifest file's sha256)."""

    envs: list[Environment]
    manifest: dict
    manifest_sha256: str = ""
    path: Path | None = None

    @property
    def train(self) -> list[Environment]:
        return [e for e in self.envs if e.role == "train"]

    @property
    def test(self) -> list[Environment]:
        return [e for e in self.envs if e.role == "test"]

    @property
    def pixel_scale(self) -> float | None:
        return self.manifest.get("pixel_scale")

    def head(self, n: int) -> EnvSet:
        """The first ``n`` examples of every environment (they are already shuffled)."""
        envs = [Environment(e.name, e.role, e.x[:n], e.y[:n], e.params,
                            {k: v[:n] for k, v in e.extra.items()}) for e in self.envs]
        # a slice has no pool of its own: a redraw would silently give the full data
        manifest = {k: v for k, v in self.manifest.items() if k != "pool"}
        return EnvSet(envs, manifest, self.manifest_sha256, self.path)

    def pool(self) -> dict[str, torch.Tensor]:
        """The images a redraw starts from (``pool.pt``), checked against the manifest."""
        entry = self.manifest.get("pool")
        if entry is None or self.path is None:
            raise ConfigError(
                f"the environments at {self.path} hold no pool to redraw from: dataset "
                f"{self.manifest.get('dataset')!r} cannot redraw per seed, or the set was built "
                "before data_draw existed (rebuild it with make-envs)")
        file = Path(self.path) / entry["file"]
        if not file.exists() or sha256_file(file) != entry["sha256"]:
            raise ConfigError(f"{file} is missing or differs from its sha256 in the manifest; "
                              "regenerate the environments with make-envs")
        return torch.load(file, weights_only=True)

    def inputs(self, env: Environment, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The environment's inputs as floats (uint8 images are divided by the pixel scale)."""
        x = env.x.to(dtype)
        return x / self.pixel_scale if self.pixel_scale else x


def _read_manifest(path: Path) -> dict:
    """The manifest, with every field the loader reads checked (an error names the file)."""
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["environments"]
        for entry in entries:
            for key, kind in (("name", str), ("role", str), ("file", str), ("sha256", str),
                              ("size", int), ("params", dict)):
                if not isinstance(entry[key], kind):
                    raise TypeError(f"environment field {key!r} = {entry[key]!r}")
            if "/" in entry["file"] or entry["file"].startswith("."):
                raise ValueError(f"file {entry['file']!r} is not a file of this directory")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path} is not a valid manifest ({type(exc).__name__}: {exc}); "
                          "regenerate the environments with make-envs") from None
    return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_envset(envs: list[Environment], manifest: dict, out_dir: Path,
                pool: dict[str, torch.Tensor] | None = None) -> Path:
    """Write each environment and a manifest with sizes, parameters and file hashes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for env in envs:
        file = out_dir / f"{env.name}.pt"
        torch.save({"x": env.x.contiguous(), "y": env.y.contiguous(),
                    **{k: v.contiguous() for k, v in env.extra.items()}}, file)
        entries.append({"name": env.name, "role": env.role, "size": len(env),
                        "params": env.params, "file": file.name, "sha256": sha256_file(file)})
    manifest = {**manifest, "environments": entries}
    if pool is not None:
        torch.save({k: v.contiguous() for k, v in pool.items()}, out_dir / POOL)
        manifest["pool"] = {"file": POOL, "sha256": sha256_file(out_dir / POOL),
                            "what": "the uncoloured images each draw starts from (uint8), "
                                    "for data_draw = per_seed"}
    return write_json(out_dir / MANIFEST, manifest, indent=2, sort_keys=True)


def load_envset(path: Path | str) -> EnvSet:
    """Load an environment set written by :func:`save_envset`, verifying every file's sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        existing = sorted(p.parent.name for p in path.parent.glob(f"*/{MANIFEST}"))
        raise ConfigError(
            f"no environments at {path} (missing {MANIFEST}); saved environment sets in "
            f"{path.parent}: {', '.join(existing) or 'none'}. Create one with "
            f"`python -m pipeline make-envs --dataset DATASET --out {path}`")
    manifest = _read_manifest(manifest_path)
    envs = []
    for entry in manifest["environments"]:
        file = path / entry["file"]
        if not file.exists() or sha256_file(file) != entry["sha256"]:
            raise ConfigError(f"{file} is missing or differs from its sha256 in {manifest_path} "
                              "(truncated or changed since it was built); regenerate the "
                              "environments with make-envs")
        try:
            data = torch.load(file, weights_only=True)
            x, y = data.pop("x"), data.pop("y")
        except Exception as exc:  # a file whose sha256 was edited into the manifest with it
            raise ConfigError(f"{file} is not an environment file ({type(exc).__name__}: "
                              f"{exc}); regenerate the environments with make-envs") from None
        env = Environment(entry["name"], entry["role"], x, y, entry["params"], data)
        if len(env) != entry["size"] or tuple(x.shape[:y.ndim]) != tuple(y.shape):
            raise ConfigError(f"{manifest_path} says {entry['name']} holds {entry['size']} "
                              f"examples but {file} holds inputs {tuple(x.shape)} and labels "
                              f"{tuple(y.shape)}: the manifest (or the file) was edited; "
                              "regenerate the environments with make-envs")
        envs.append(env)
    return EnvSet(envs, manifest, sha256_file(manifest_path), path)
