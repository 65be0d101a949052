"""The BVH reader against the `bvhio` package: read time and joint positions, per file.

    python scripts/bench_bvh.py ../shared/data/mocap/varied_dev/bvh/m21/*.bvh

`bvhio` (pip install bvhio; not a dependency of this project) is timed reading the file
(`readAsBvh`: the parsed keyframes) and building its pose hierarchy (`readAsHierarchy`); this
project's reader is timed parsing the frame lines (`read_bvh`), with its forward kinematics of
every frame (`forward_kinematics`), and the whole load onto SMPL (`load_bvh`). Positions are
compared at the first, middle and last frames (`bvhio`'s world positions against ours, file units).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    import bvhio

    from diffmimic.mocap.bvh import forward_kinematics, load_bvh, read_bvh

    print(
        f"{'file':<22} {'frames':>6} {'bvhio read':>10} {'bvhio tree':>10} {'ours read':>9} "
        f"{'ours +FK':>8} {'ours load':>9}  max position difference (file units)"
    )
    for path in args.files:
        start = time.perf_counter()
        bvhio.readAsBvh(path)
        bvhio_read = time.perf_counter() - start
        start = time.perf_counter()
        root = bvhio.readAsHierarchy(path)
        bvhio_tree = time.perf_counter() - start
        start = time.perf_counter()
        header, values = read_bvh(path)
        ours_read = time.perf_counter() - start
        _, positions = forward_kinematics(header, values)
        ours_fk = time.perf_counter() - start
        start = time.perf_counter()
        load_bvh(path)
        ours_load = time.perf_counter() - start
        joints = {joint.Name: joint for joint, _, _ in root.layout()}
        worst = 0.0
        for frame in (0, header.frames // 2, header.frames - 1):
            root.loadPose(frame)
            for index, name in enumerate(header.names):
                theirs = np.array(joints[name].PositionWorld)
                worst = max(worst, float(np.abs(theirs - positions[frame, index]).max()))
        print(
            f"{path.rsplit('/', 1)[-1]:<22} {header.frames:>6} {bvhio_read:>9.3f}s {bvhio_tree:>9.3f}s "
            f"{ours_read:>8.3f}s {ours_fk:>7.3f}s {ours_load:>8.3f}s  {worst:.2e}"
        )


if __name__ == "__main__":
    main()
