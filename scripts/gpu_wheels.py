"""Prepare what an offline GPU machine needs to run `scripts/bench_gpu.py` (docs/gpu.md).

    python scripts/gpu_wheels.py [--dir .gpu] [--clips 3] [--data-root DIR] [--with-ray] [--print-only]

The GPU machines this project is lent have JAX, Flax, Optax, Orbax and many common packages
installed, no network, and no Brax, MuJoCo or MJX. This writes, under `--dir` (ignored by git):
  wheels/  the wheels of the packages the benchmark imports that the machine lacks, at the exact
           versions of the tested set (`constraints.txt`, else this venv), for its Python
           (`--python-version`, CPython, manylinux x86-64), without dependencies: the dependency
           closure of brax, mujoco and mujoco-mjx is walked here (`scripts/lock_deps.py`) and
           what the machine already has (`DEVICE_HAS`, or `--device-has FILE` from its `pip list
           --format=freeze`) or the benchmark never imports (`NOT_NEEDED`) is left out;
  mocap/   the `--clips` shortest dev clips (their layout under `--data-root` kept).
It prints the `pip download` commands it runs, the sizes against the device tool's 64 MiB carry
limit (the repository's tracked files count too), and the one command to run there.
`--print-only` prints the commands without downloading or copying anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mocap" / "amass_dev"
CARRY_LIMIT_MB = 64.0  # MiB: the working tree and carried paths of one device command, together
ROOTS = ("brax", "mujoco", "mujoco-mjx")  # what the benchmark needs beyond the machine's packages
# Never carried: ffmpeg for videos (68 MB, the benchmark renders nothing) and Ray (a wheel larger
# than the carry limit by itself: `bench_gpu.py --factory` skips without it).
NOT_NEEDED = ("imageio-ffmpeg", "ray")
# The GPU image's Python packages as the device notes listed them (2026-11-17): carried only for
# another version. `--device-has` replaces this with the machine's own `pip list --format=freeze`.
_DEVICE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax
fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil
pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
"""
DEVICE_HAS = frozenset(_DEVICE_LIST.split())
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def _lock_deps():
    spec = importlib.util.spec_from_file_location("lock_deps", REPO / "scripts" / "lock_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tested_versions() -> dict[str, str]:
    """name -> version pinned in constraints.txt (the tested set); empty without the file."""
    path = REPO / "constraints.txt"
    if not path.exists():
        return {}
    lock = _lock_deps()
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[lock.canonical(name)] = version.strip()
    return pins


def wanted(device_has: frozenset[str], with_ray: bool) -> dict[str, str]:
    """name -> version of every package to carry: the closure of `ROOTS` (and Ray's with
    `with_ray`) in this venv, less what the machine has and what the benchmark never imports;
    versions from constraints.txt where it pins them."""
    lock = _lock_deps()
    found: dict[str, str] = {}
    for root in (*ROOTS, *(["ray"] if with_ray else [])):
        found.update(lock.closure(root, []))
        found[lock.canonical(root)] = metadata.version(root)
    pins = tested_versions()
    skip = {lock.canonical(n) for n in device_has} | {n for n in NOT_NEEDED if not (with_ray and n == "ray")}
    return {name: pins.get(name, version) for name, version in sorted(found.items()) if name not in skip}


def download_command(packages: dict[str, str], dest: Path, python_version: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        str(dest),
    ]
    for platform_tag in PLATFORMS:
        command += ["--platform", platform_tag]
    return command + [f"{name}=={version}" for name, version in packages.items()]


def shortest_clips(data_root: Path, count: int) -> list[Path]:
    sys.path.insert(0, str(REPO))
    from diffmimic.mocap.readers import inspect_motion

    clips = sorted(data_root.rglob("*.npz"))
    return sorted(clips, key=lambda p: (inspect_motion(p)["duration_s"], str(p)))[:count]


def _mb(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1024**2


def tracked_mb() -> float:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return _mb(REPO / f.decode() for f in files if f)


def device_command(folder: str, budget_s: int) -> str:
    """The one command for the device tool's `run` (carry: [folder])."""
    return (
        f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "
        f"{folder}/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; "
        f"python3 scripts/bench_gpu.py --budget-s {budget_s} --data-root {folder}/mocap --out $OUT "
        f"--cache-dir /tmp/jax-cache 2>&1 | tee $OUT/bench_gpu.log"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_wheels.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".gpu", help="the folder to carry, under the repository (default .gpu)")
    parser.add_argument("--clips", type=int, default=3, help="dev clips to carry, the shortest (default 3)")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA))
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--device-has", help="the machine's `pip list --format=freeze` output, instead of DEVICE_HAS")
    parser.add_argument("--with-ray", action="store_true", help="carry Ray too (its wheel alone passes 64 MiB)")
    parser.add_argument("--budget-s", type=int, default=480, help="bench_gpu.py's budget in the printed command")
    parser.add_argument("--print-only", action="store_true", help="print the commands; download and copy nothing")
    args = parser.parse_args(argv)

    device_has = DEVICE_HAS
    if args.device_has:
        device_has = frozenset(
            line.split("==")[0].strip()
            for line in Path(args.device_has).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        )
    packages = wanted(device_has, args.with_ray)
    folder = Path(args.dir)
    root = folder if folder.is_absolute() else REPO / folder
    download = download_command(packages, root / "wheels", args.python_version)
    print("# packages to carry (" + ", ".join(f"{n} {v}" for n, v in packages.items()) + ")")
    print("# here:")
    print(shlex.join(download))
    print("# there (the device tool's `run`, carry: [" + repr(str(folder)) + "]):")
    print(device_command(str(folder), args.budget_s))
    if args.print_only:
        return 0

    (root / "wheels").mkdir(parents=True, exist_ok=True)
    for stale in (root / "wheels").glob("*.whl"):
        stale.unlink()  # one version of each: two stop the whole install there
    subprocess.run(download, check=True)
    data_root = Path(args.data_root).expanduser()
    mocap = root / "mocap"
    shutil.rmtree(mocap, ignore_errors=True)
    clips = shortest_clips(data_root, args.clips) if data_root.is_dir() else []
    for clip in clips:
        target = mocap / clip.relative_to(data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clip, target)
    if not clips:
        print(f"# no dev clips under {data_root}: bench_gpu.py will measure stages 1-2 on the sample clip and skip 3")
    wheels_mb, clips_mb, tree_mb = _mb((root / "wheels").glob("*.whl")), _mb(mocap.rglob("*")), tracked_mb()
    total = wheels_mb + clips_mb + tree_mb
    print(
        f"# sizes: wheels {wheels_mb:.1f} MiB, {len(clips)} clips {clips_mb:.1f} MiB, tracked files {tree_mb:.1f} MiB: "
        f"{total:.1f} MiB of the {CARRY_LIMIT_MB:.0f} MiB carry limit"
        + ("" if total <= CARRY_LIMIT_MB else " -- TOO LARGE: carry fewer clips, or leave --with-ray out")
    )
    for wheel in sorted((root / "wheels").glob("*.whl"), key=lambda p: -p.stat().st_size):
        print(f"#   {wheel.stat().st_size / 1024**2:6.1f} MiB  {wheel.name}")
    return 0 if total <= CARRY_LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
