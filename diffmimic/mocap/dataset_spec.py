"""Dataset specs: the YAML files in the repository's ``datasets/`` directory.

A spec names a mocap dataset, the reader for its files, where the files live (``root``, with
``${ENV_VAR:-default}`` expansion and ``~``), which files to take (``include`` globs, ``subsets``,
``exclude`` rules with reasons, a duration range), the control rate (``fps``) and how to obtain
the data (``obtain``). BVH datasets may add ``joint_map`` (SMPL joint name -> the file's joint
name, for a rig the built-in maps do not know), ``units`` and ``up_axis`` (see
`diffmimic.mocap.bvh`); they reach the reader as `DatasetSpec.reader_options`. ``generate``
names a module that produces the root by code (the embedded sample dataset); the module must
have a ``generate(out_dir)`` function.

Example::

    spec = load_dataset_spec("amass")        # datasets/amass.yaml
    spec = load_dataset_spec("my/spec.yaml")  # any YAML file
    for path in spec.files(): ...
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from diffmimic.character.skeleton import SMPL_JOINT_NAMES

READERS = ("amass_smplh", "amass_smplx", "aistpp", "cmu", "bvh", "auto")
DATASETS_DIR_ENV = "DIFFMIMIC_DATASETS_DIR"

_REQUIRED = ("name", "reader", "root", "include", "fps", "obtain")
_OPTIONAL = ("generate", "exclude", "subsets", "min_duration_s", "max_duration_s", "joint_map", "units", "up_axis")
_BVH_UNITS = ("auto", "m", "cm", "mm", "inch", "cmu")
_UP_AXES = ("auto", "x", "y", "z", "-x", "-y", "-z")
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class DatasetSpecError(ValueError):
    """A dataset spec is missing or invalid. The message names the YAML file and the field."""

    def __init__(self, path: str | os.PathLike, field: str | None, problem: str):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: field {field!r}" if field else self.path
        super().__init__(f"{where}: {problem}")


def path_matches(relative_path: str, pattern: str) -> bool:
    """Whether a root-relative POSIX path matches a spec's glob, case-insensitively. ``*`` also
    matches ``/``; ``**/`` matches zero or more folders, so ``**/*.amc`` takes the files directly
    under the root as well as those in folders below it."""
    path, pattern = relative_path.lower(), pattern.lower()
    return fnmatch.fnmatchcase(path, pattern) or (
        "**/" in pattern and fnmatch.fnmatchcase(path, pattern.replace("**/", ""))
    )


@dataclasses.dataclass(frozen=True)
class ExcludeRule:
    """Files whose root-relative path matches ``pattern`` (case-insensitive glob) are skipped."""

    pattern: str
    reason: str

    def matches(self, relative_path: str) -> bool:
        return path_matches(relative_path, self.pattern)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A parsed, validated dataset spec.

    Attributes:
      name: the dataset's name.
      reader: ``amass_smplh``, ``amass_smplx``, ``aistpp``, ``cmu``, ``bvh`` or ``auto`` (by file).
      root: the data directory, environment variables and ``~`` expanded.
      include: glob patterns of the files to take, matched case-insensitively against the
        root-relative POSIX path (`path_matches`: ``*`` also matches ``/``; ``**/`` matches
        zero or more folders).
      exclude: rules for files to skip, each with its reason.
      subsets: allowed first-level folders under ``root`` (case-insensitive); empty: any.
      min_duration_s, max_duration_s: clips outside this range are skipped (max None: no limit).
      fps: the control rate clips are resampled to.
      obtain: how to obtain the data.
      generate: module whose ``generate(out_dir)`` produces ``root``, or None.
      source: the YAML file.
      reader_options: the reader's settings from the spec (BVH: ``joint_map``, ``units``,
        ``up_axis``); empty when it gives none.
    """

    name: str
    reader: str
    root: Path
    include: tuple[str, ...]
    fps: float
    obtain: str
    exclude: tuple[ExcludeRule, ...] = ()
    subsets: tuple[str, ...] = ()
    min_duration_s: float = 0.0
    max_duration_s: float | None = None
    generate: str | None = None
    source: Path | None = None
    reader_options: dict = dataclasses.field(default_factory=dict)

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to ``root`` as a POSIX string (``path`` may already be relative)."""
        path = Path(path)
        if path.is_absolute():
            path = path.relative_to(self.root)
        return path.as_posix()

    def includes(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` (under ``root``) matches one of the include patterns."""
        rel = self.relative(path)
        return any(path_matches(rel, pattern) for pattern in self.include)

    def exclusion_reason(self, path: str | os.PathLike) -> str | None:
        """Why ``path`` (under ``root``) is not part of the dataset, or None when it is."""
        rel = self.relative(path)
        if not self.includes(rel):
            return f"matches no include pattern {list(self.include)}"
        if self.subsets:
            first = rel.split("/", 1)[0].lower()
            if "/" not in rel or first not in {subset.lower() for subset in self.subsets}:
                return f"not in the listed subsets (first folder {rel.split('/', 1)[0]!r})"
        for rule in self.exclude:
            if rule.matches(rel):
                return f"excluded by {rule.pattern!r}: {rule.reason}"
        return None

    def accepts_duration(self, duration_s: float) -> bool:
        """Whether a clip of ``duration_s`` seconds is within the spec's duration range."""
        if duration_s < self.min_duration_s:
            return False
        return self.max_duration_s is None or duration_s <= self.max_duration_s

    def files(self) -> list[Path]:
        """Sorted paths of the dataset's files under ``root`` (durations are not checked here).

        Raises FileNotFoundError, with the ``obtain`` instructions, when ``root`` is missing.
        """
        if not self.root.is_dir():
            hint = (
                f"run `python -m {self.generate} --out {self.root}` or DatasetSpec.prepare()"
                if self.generate
                else f"to obtain it:\n{self.obtain}"
            )
            raise FileNotFoundError(
                f"dataset {self.name!r} ({self.source}): root {self.root} is not a directory; {hint}"
            )
        found = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for filename in filenames:
                path = Path(dirpath) / filename
                if self.exclusion_reason(path) is None:
                    found.append(path)
        return sorted(found)

    def prepare(self) -> Path:
        """Makes sure ``root`` exists: runs the ``generate`` module when there is one.

        Returns ``root``. Without ``generate`` this only checks that ``root`` is a directory.
        """
        if self.generate:
            module = importlib.import_module(self.generate)
            producer = getattr(module, "generate", None)
            if not callable(producer):
                raise DatasetSpecError(
                    self.source or self.name, "generate", f"module {self.generate!r} has no generate(out_dir) function"
                )
            producer(self.root)
        elif not self.root.is_dir():
            raise FileNotFoundError(
                f"dataset {self.name!r} ({self.source}): root {self.root} is "
                f"not a directory; to obtain it:\n{self.obtain}"
            )
        return self.root


def datasets_dir() -> Path:
    """The directory of the bundled specs: ``$DIFFMIMIC_DATASETS_DIR`` or ``<repo>/datasets``."""
    env = os.environ.get(DATASETS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "datasets"


def list_dataset_specs() -> list[str]:
    """Names of the specs in :func:`datasets_dir`."""
    directory = datasets_dir()
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.yaml"))


def expand_env(
    text: str, path: str | os.PathLike = "<spec>", field: str = "root", environ: dict[str, str] | None = None
) -> str:
    """Expands ``${VAR}`` and ``${VAR:-default}`` (default when VAR is unset or empty)."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match) -> str:
        var, default = match.group(1), match.group(2)
        value = env.get(var)
        if value:
            return value
        if default is not None:
            return default
        raise DatasetSpecError(
            path,
            field,
            f"environment variable {var} is not set and {match.group(0)!r} gives no default (use ${{{var}:-default}})",
        )

    expanded = _ENV_PATTERN.sub(substitute, text)
    if "${" in expanded:
        raise DatasetSpecError(path, field, f"malformed ${{...}} reference in {text!r}")
    return expanded


def _resolve(name_or_path: str | os.PathLike) -> Path:
    if isinstance(name_or_path, Path):
        return name_or_path
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        return Path(text).expanduser()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        raise DatasetSpecError(text, None, "not a dataset name or a YAML path")
    path = datasets_dir() / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(list_dataset_specs()) or "none"
        raise DatasetSpecError(path, None, f"no dataset spec named {text!r} (known: {known})")
    return path


def load_dataset_spec(name_or_path: str | os.PathLike) -> DatasetSpec:
    """Loads a dataset spec by name (``datasets/<name>.yaml``) or from a YAML file path."""
    path = _resolve(name_or_path)
    if not path.is_file():
        raise DatasetSpecError(path, None, "dataset spec file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetSpecError(path, None, f"invalid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetSpecError(path, None, f"cannot read file: {exc}") from exc
    return parse_dataset_spec(data, path)


def parse_dataset_spec(data: Any, path: str | os.PathLike = "<spec>") -> DatasetSpec:
    """Validates the mapping read from a spec's YAML and builds the `DatasetSpec`."""
    if not isinstance(data, dict):
        raise DatasetSpecError(path, None, f"the top level must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in _REQUIRED + _OPTIONAL)
    if unknown:
        raise DatasetSpecError(path, unknown[0], f"unknown field (allowed: {', '.join(_REQUIRED + _OPTIONAL)})")
    for field in _REQUIRED:
        if field not in data or data[field] is None:
            raise DatasetSpecError(path, field, "missing required field")

    name = _string(data, "name", path)
    reader = _string(data, "reader", path)
    if reader not in READERS:
        raise DatasetSpecError(path, "reader", f"must be one of {', '.join(READERS)}, got {reader!r}")
    root = Path(expand_env(_string(data, "root", path), path, "root")).expanduser()
    include = _string_list(data, "include", path, allow_empty=False)
    obtain = _string(data, "obtain", path)
    fps = _number(data, "fps", path)
    if fps <= 0:
        raise DatasetSpecError(path, "fps", f"must be > 0, got {fps}")

    generate = None
    if data.get("generate") is not None:
        generate = _string(data, "generate", path)
        if not _MODULE_PATTERN.match(generate):
            raise DatasetSpecError(path, "generate", f"must be a dotted module name, got {generate!r}")
    subsets = _string_list(data, "subsets", path) if data.get("subsets") is not None else ()
    exclude = _exclude_rules(data.get("exclude"), path)

    min_duration = _number(data, "min_duration_s", path) if data.get("min_duration_s") is not None else 0.0
    if min_duration < 0:
        raise DatasetSpecError(path, "min_duration_s", f"must be >= 0, got {min_duration}")
    max_duration = None
    if data.get("max_duration_s") is not None:
        max_duration = _number(data, "max_duration_s", path)
        if max_duration <= min_duration:
            raise DatasetSpecError(
                path, "max_duration_s", f"must be > min_duration_s ({min_duration}), got {max_duration}"
            )
    return DatasetSpec(
        name=name,
        reader=reader,
        root=root,
        include=include,
        fps=fps,
        obtain=obtain,
        exclude=exclude,
        subsets=subsets,
        min_duration_s=min_duration,
        max_duration_s=max_duration,
        generate=generate,
        source=Path(path),
        reader_options=_reader_options(data, path),
    )


def _reader_options(data: dict, path) -> dict:
    """The BVH settings of a spec (``joint_map``, ``units``, ``up_axis``), checked."""
    options: dict = {}
    joint_map = data.get("joint_map")
    if joint_map is not None:
        if not isinstance(joint_map, dict) or not all(isinstance(v, str) and v.strip() for v in joint_map.values()):
            raise DatasetSpecError(path, "joint_map", "must map SMPL joint names to the file's joint names (strings)")
        unknown = [str(k) for k in joint_map if k not in SMPL_JOINT_NAMES]
        if unknown:
            raise DatasetSpecError(
                path, "joint_map", f"{unknown[0]!r} is not a SMPL joint (one of {', '.join(SMPL_JOINT_NAMES)})"
            )
        options["joint_map"] = {str(k): v.strip() for k, v in joint_map.items()}
    units = data.get("units")
    if units is not None:
        if isinstance(units, bool) or not (units in _BVH_UNITS or (isinstance(units, (int, float)) and units > 0)):
            raise DatasetSpecError(
                path,
                "units",
                f"must be one of {', '.join(_BVH_UNITS)} or metres per file unit (a number > 0), got {units!r}",
            )
        options["units"] = units
    up_axis = data.get("up_axis")
    if up_axis is not None:
        if up_axis not in _UP_AXES:
            raise DatasetSpecError(path, "up_axis", f"must be one of {', '.join(_UP_AXES)}, got {up_axis!r}")
        options["up_axis"] = up_axis
    return options


def _string(data: dict, field: str, path) -> str:
    value = data[field]
    if not isinstance(value, str):
        raise DatasetSpecError(path, field, f"must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise DatasetSpecError(path, field, "must not be empty")
    return value.strip() if field != "obtain" else value


def _string_list(data: dict, field: str, path, allow_empty: bool = True) -> tuple[str, ...]:
    value = data[field]
    if not isinstance(value, list):
        raise DatasetSpecError(path, field, f"must be a list of strings, got {type(value).__name__} {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise DatasetSpecError(path, field, f"item {i} must be a non-empty string, got {item!r}")
    if not value and not allow_empty:
        raise DatasetSpecError(path, field, "must list at least one pattern")
    return tuple(item.strip() for item in value)


def _number(data: dict, field: str, path) -> float:
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetSpecError(path, field, f"must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise DatasetSpecError(path, field, f"must be finite, got {value}")
    return float(value)


def _exclude_rules(value: Any, path) -> tuple[ExcludeRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DatasetSpecError(
            path, "exclude", f"must be a list of {{pattern, reason}} mappings, got {type(value).__name__}"
        )
    rules = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"pattern", "reason"}:
            raise DatasetSpecError(
                path,
                "exclude",
                f"item {i} must be a mapping with exactly the keys 'pattern' and 'reason', got {item!r}",
            )
        for key in ("pattern", "reason"):
            if not isinstance(item[key], str) or not item[key].strip():
                raise DatasetSpecError(
                    path, "exclude", f"item {i}: {key!r} must be a non-empty string, got {item[key]!r}"
                )
        rules.append(ExcludeRule(item["pattern"].strip(), item["reason"].strip()))
    return tuple(rules)
