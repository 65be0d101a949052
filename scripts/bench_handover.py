"""Benchmark: how far a hand-over between two clips puts the body from the clip it enters,
against the robustness check's perturbation sizes (no training, about 1 min on a CPU).

    python scripts/bench_handover.py [ROOT] [--out bench/handover_gap.json]

For every ordered pair of clips under ROOT (default: the ACCAD dev set,
../shared/data/mocap/amass_dev), the switch from clip A to clip B is chosen as composition
chooses it (`factory.compose.entry_costs`, the `state` rule: pose, velocity and planted feet) from
A's reference state, at two exits:

- `end`: A's last frame (a composition that plays each clip to its end, as `bench_compose.py`'s
  pairs do),
- `best`: A's cheapest exit (the transition graph's first candidate, `exit_candidates`).

The gap is B's reference state at the entry minus A's at the exit, in each one's heading frame
(the composer re-anchors B's clip there): RMS over hinges of the joint angles (rad) and joint
velocities (rad/s), RMS over axes of the root's linear (m/s) and angular (rad/s) velocity, and the
root height (m). A composed policy starts B from A's *simulated* state, which adds A's tracking
error: these gaps are lower bounds of what B's policy meets. The check (`MimicEnv.perturb`)
draws Gaussian noise of `EnvConfig.perturb_*` standard deviations (their RMS), so each gap is
reported beside its perturbation size and as a ratio to it.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

MOCAP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap"
QUANTILES = (0.1, 0.5, 0.9)


def state_gap(a, exit: int, b, entry: int) -> dict:
    """The gap (see the module doc) between reference `a` at `exit` and `b` at `entry`."""
    from diffmimic.geometry import heading_yaw, rotate_z

    def root(reference, frame):
        yaw = heading_yaw(np.asarray(reference.body_rot[frame, 0], np.float64))
        velocity = rotate_z(np.asarray(reference.body_vel[frame, 0], np.float64), -yaw)
        spin = rotate_z(np.asarray(reference.body_ang[frame, 0], np.float64), -yaw)
        return velocity, spin, float(reference.body_pos[frame, 0, 2])

    (va, wa, za), (vb, wb, zb) = root(a, exit), root(b, entry)
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))
    return {
        "joint_rad": rms(np.asarray(b.qpos[entry, 7:]) - np.asarray(a.qpos[exit, 7:])),
        "joint_vel_radps": rms(np.asarray(b.qvel[entry, 6:]) - np.asarray(a.qvel[exit, 6:])),
        "root_vel_mps": rms(vb - va),
        "root_ang_vel_radps": rms(wb - wa),
        "root_height_m": abs(zb - za),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=MOCAP / "amass_dev")
    parser.add_argument("--out", type=Path, default=Path("bench/handover_gap.json"))
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root}: no such directory", file=sys.stderr)
        return 2
    clips = sorted(args.root.rglob("*.npz"))
    if len(clips) < 2:
        print(f"error: {args.root}: fewer than two .npz clips", file=sys.stderr)
        return 2

    from diffmimic import atomic
    from diffmimic.config import EnvConfig, make_config
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.step import simulated_character
    from factory.compose import entry_costs

    config = make_config("cpu")
    character = simulated_character(config)
    print(f"{len(clips)} clips: retargeting ...", flush=True)
    references = {p.stem: load_reference(p, fps=config.env.control_hz, character=character) for p in clips}
    env = EnvConfig()
    # The check's sizes, as the RMS of the noise it draws (root velocity: per axis; angular: 2x).
    check = {
        "joint_rad": env.perturb_joint_rad,
        "joint_vel_radps": env.perturb_joint_vel_radps,
        "root_vel_mps": env.perturb_root_vel_mps,
        "root_ang_vel_radps": 2.0 * env.perturb_root_vel_mps,
        "root_height_m": env.perturb_root_m / 2.0,  # uniform lift in [0, perturb_root_m]: mean
    }
    rows = []
    for name_a, a in references.items():
        for name_b, b in references.items():
            if name_a == name_b:
                continue
            last_entry = max(0, b.num_frames - 1 - int(round(config.env.control_hz)))
            best = None
            for exit in range(1, a.num_frames):
                costs = entry_costs(a.body_pos[exit], a.body_rot[exit], a.body_vel[exit], b)[: last_entry + 1]
                entry = int(np.argmin(costs))
                option = (float(costs[entry]), exit, entry)
                best = option if best is None or option < best else best
                if exit == a.num_frames - 1:
                    end = option
            for rule, (cost, exit, entry) in (("end", end), ("best", best)):
                rows.append(
                    {"from": name_a, "to": name_b, "exit_rule": rule, "exit": exit, "entry": entry,
                     "cost_m": round(cost, 4), **{k: round(v, 4) for k, v in state_gap(a, exit, b, entry).items()}}
                )  # fmt: skip
    summary = {}
    for rule in ("end", "best"):
        chosen = [r for r in rows if r["exit_rule"] == rule]
        summary[rule] = {}
        for key, size in check.items():
            values = np.array([r[key] for r in chosen])
            spread = {f"p{int(q * 100)}": round(float(np.quantile(values, q)), 4) for q in QUANTILES}
            summary[rule][key] = {**spread, "check_size": size, "median_over_check": round(spread["p50"] / size, 2)}
    heads = " | ".join(f"{rule} exit p10 / p50 / p90 (p50 / check)" for rule in summary)
    print(f"{'gap (RMS)':20s} {'check':>7s} | {heads}")
    for key, size in check.items():
        cells = [
            f"{s[key]['p10']:.3f} / {s[key]['p50']:.3f} / {s[key]['p90']:.3f} ({s[key]['median_over_check']:.1f}x)"
            for s in summary.values()
        ]
        print(f"{key:20s} {size:7.3f} | " + " | ".join(cells))
    result = {
        "command": " ".join(["python", "scripts/bench_handover.py", *(argv if argv is not None else sys.argv[1:])]),
        "root": str(args.root),
        "clips": sorted(references),
        "pairs": len(rows) // 2,
        "check_sizes": check,
        "summary": summary,
        "rows": rows,
        "machine": {"platform": platform.platform()},
    }
    atomic.write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
