"""The catalog: a dataset spec turned into the list of clips to train, cheaply.

Only file headers are read (`diffmimic.mocap.readers.inspect_motion`: the ``.npy`` headers of an
AMASS ``.npz``, the header of a CMU file), in a thread pool, and the answers are cached by
(path, size, mtime) in a JSON file, so cataloguing a dataset again costs one directory walk.

Three outcomes per file that the spec's include patterns match:

- a `CatalogEntry` without `error`: a clip to train;
- a `CatalogEntry` with `error`: the header could not be read, or the clip has fewer than two
  frames (a `MocapError`); the factory records it as `failed` without training it;
- a `Skipped` file: excluded by the spec (an exclude rule, a subset, the duration range), with the
  reason. Skipped files are reported, never put into the library.

Files that match no include pattern (READMEs, CMU ``.asf`` skeletons...) are not mentioned.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import json
import os
from pathlib import Path
from typing import Iterable

from diffmimic import atomic
from diffmimic.mocap.dataset_spec import DatasetSpec
from diffmimic.mocap.motion import MocapError, retry_transient
from diffmimic.mocap.readers import inspect_motion
from factory.library import clip_id_for

CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One clip of the dataset.

    Attributes:
      clip_id: the library's clip id (`dataset/relative/path`, no extension).
      path: the mocap file.
      format, frames, fps, duration_s: from the header (None when it could not be read).
      error: why the clip cannot be trained (a `MocapError` message), or None.
      transient: the error was the operating system failing the read (retried with backoff and
        still failing), not the file's content: the clip is queued anyway (its worker reads it
        again) and the header is not cached.
    """

    clip_id: str
    path: str
    format: str | None = None
    frames: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    error: str | None = None
    transient: bool = False


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A file of the dataset left out by its spec, and why."""

    path: str
    reason: str


@dataclasses.dataclass
class Catalog:
    """The clips of one dataset: `entries` in scheduling order (longest first, then by path)."""

    dataset: str
    root: Path
    entries: list[CatalogEntry]
    skipped: list[Skipped]
    header_reads: int = 0  # headers read (not found in the cache)
    reader_options: dict = dataclasses.field(default_factory=dict)  # the spec's (BVH joint_map, units...)

    def __len__(self) -> int:
        return len(self.entries)


def _inspect(path: str) -> dict:
    try:
        info = retry_transient(inspect_motion, path)
    except MocapError as err:
        return {"error": str(err), **({"transient": True} if err.transient else {})}
    except Exception as err:  # noqa: BLE001 - an unreadable header is a data error of that file
        return {"error": f"{path}: cannot read header: {type(err).__name__}: {err}"}
    return {
        "format": info["format"],
        "frames": int(info["frames"]),
        "fps": float(info["fps"]),
        "duration_s": float(info["duration_s"]),
    }


def _load_cache(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if data.get("version") == CACHE_VERSION else {}


def _save_cache(path: Path | None, files: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {"version": CACHE_VERSION, "files": files}, indent=None, durable=False)


def walk(spec: DatasetSpec) -> tuple[list[Path], list[Skipped]]:
    """The files under the spec's root that its include patterns match: (kept, skipped by rule)."""
    if not spec.root.is_dir():
        spec.files()  # raises FileNotFoundError with the spec's instructions
    kept, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(spec.root):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            relative = spec.relative(path)
            if not spec.includes(relative):
                continue
            reason = spec.exclusion_reason(relative)
            if reason is None:
                kept.append(path)
            else:
                skipped.append(Skipped(str(path), reason))
    return kept, skipped


def build_catalog(
    spec: DatasetSpec,
    clips: str | None = None,
    max_clips: int | None = None,
    cache_path: str | os.PathLike | None = None,
    threads: int = 8,
) -> Catalog:
    """The catalog of `spec`'s dataset.

    Args:
      clips: a shell pattern over the clip id or the root-relative path (`*squat*`); None: all.
      max_clips: keep the first N clips by path (deterministic, so a re-run picks the same ones).
      cache_path: a JSON file caching headers by (path, size, mtime); None: no cache.
      threads: header-reading threads.
    """
    files, skipped = walk(spec)
    root = spec.root
    chosen: list[tuple[Path, str]] = []
    for path in files:
        clip_id = clip_id_for(spec.name, root, path)
        if clips is not None:
            relative = spec.relative(path)
            if not (
                fnmatch.fnmatchcase(clip_id, clips)
                or fnmatch.fnmatchcase(relative, clips)
                or fnmatch.fnmatchcase(clip_id.rsplit("/", 1)[-1], clips)
            ):
                continue
        chosen.append((path, clip_id))

    cache_file = Path(cache_path) if cache_path is not None else None
    cache = _load_cache(cache_file)
    infos: dict[str, dict] = {}
    to_read: list[tuple[str, str]] = []
    for path, _ in chosen:
        stat = path.stat()
        key = f"{stat.st_size}:{stat.st_mtime_ns}"
        cached = cache.get(str(path))
        if cached is not None and cached.get("key") == key:
            infos[str(path)] = cached["info"]
        else:
            to_read.append((str(path), key))
    if to_read:
        with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
            for (path, key), info in zip(to_read, pool.map(_inspect, [p for p, _ in to_read])):
                infos[path] = info
                if not info.get("transient"):  # an I/O failure says nothing about the file: read it again next run
                    cache[path] = {"key": key, "info": info}
        _save_cache(cache_file, cache)

    entries: list[CatalogEntry] = []
    for path, clip_id in chosen:
        info = infos[str(path)]
        if "error" not in info and not spec.accepts_duration(info["duration_s"]):
            limit = (
                f"{spec.min_duration_s:g}-{spec.max_duration_s:g} s"
                if spec.max_duration_s
                else f">= {spec.min_duration_s:g} s"
            )
            skipped.append(Skipped(str(path), f"duration {info['duration_s']:.2f} s outside the spec's {limit}"))
            continue
        entries.append(CatalogEntry(clip_id=clip_id, path=str(path), **info))
    if max_clips is not None:
        entries = entries[:max_clips]  # `chosen` is sorted by path
    entries.sort(key=lambda e: (-(e.duration_s or 0.0), e.path))  # long clips first
    return Catalog(
        dataset=spec.name,
        root=root,
        entries=entries,
        skipped=skipped,
        header_reads=len(to_read),
        reader_options=dict(spec.reader_options),
    )


def summarize(catalog: Catalog) -> dict:
    """Counts and total duration of a catalog, as JSON-ready data."""
    trainable = [e for e in catalog.entries if e.error is None]
    return {
        "dataset": catalog.dataset,
        "root": str(catalog.root),
        "clips": len(trainable),
        "unreadable": len(catalog.entries) - len(trainable),
        "skipped": len(catalog.skipped),
        "hours": round(sum(e.duration_s or 0.0 for e in trainable) / 3600, 3),
    }


def skipped_reasons(skipped: Iterable[Skipped]) -> dict[str, int]:
    """How many files each exclusion reason skipped."""
    counts: dict[str, int] = {}
    for item in skipped:
        reason = item.reason.split(":", 1)[0] if item.reason.startswith("excluded by") else item.reason
        if reason.startswith("duration"):
            reason = "duration outside the spec's range"
        counts[reason] = counts.get(reason, 0) + 1
    return counts
