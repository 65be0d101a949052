"""The factory's knobs, `FactoryOptions`, apart from the coordinator (which imports Ray and JAX):
`factory/run.py` takes its flags' defaults and help from these fields, and its `--help` stays light."""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, help: str) -> Any:
    """A dataclass field with its default and what it does (`field.metadata["help"]`)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class FactoryOptions:
    """The coordinator's knobs (`factory.distribution.coordinator.Coordinator`); each field's help
    says what it does."""

    target_pose_error_m: float = option(0.04, "convergence target: the evaluation's pose error (m), without a fall")
    max_attempts: int = option(
        3, "training attempts per clip (escalating: `factory.distribution.coordinator.escalate`)"
    )
    retry_fragile: bool = option(
        False,
        "train again a clip whose policy tracks it (no fall, pose error within the target) but fails the "
        "perturbed-rollout check: off, it is stored as best_effort (fragile) at once and serves as a warm "
        "start; more attempts did not make such policies robust (docs/training.md)",
    )
    force: bool = option(False, "train clips the library already has")
    retry_failed: bool = option(False, "train the clips whose newest library version failed (the others are skipped)")
    workers: int | None = option(
        None,
        "actors to start (default: one per `gpus_per_worker` GPUs of the cluster, or one per "
        "`cpus_per_worker` CPUs on a cluster without GPUs)",
    )
    gpus_per_worker: float | None = option(
        None,
        "GPUs per actor; fractions pack actors on a GPU (default: 1 when the cluster has GPUs, else 0: "
        "CPU actors). Set it on an autoscaling cluster whose GPU nodes are not up yet",
    )
    cpus_per_worker: float = option(1.0, "CPUs per actor")
    pin_cpus: bool = option(
        True,
        "pin each CPU actor (no GPU) to `cpus_per_worker` cores of its own on its node "
        "(`factory.distribution.affinity`): unpinned, XLA spreads every actor over all cores, and two "
        "workers on two cores each ran a train step ~1.5x slower",
    )
    tasks_per_worker: int = option(
        2,
        "calls queued per actor (2: the next clip waits in the actor's queue). With `warm_start_similar` "
        "one: a call's donors are fixed when it is sent, so a clip sent ahead would miss the policies of "
        "the clips converging while it waits (the round trip saved is milliseconds against minutes)",
    )
    clips_per_worker: int = option(
        0,
        "K clips trained at once by each actor in one compiled step (`diffmimic.multiclip`): K calls in "
        "flight per actor. 0 (auto): 1 on CPU workers; on GPU workers the K past which the batched "
        "step's samples/s stop growing by 10 % (or memory runs short), measured once on the first "
        "queued clip by a probe task on a worker's resources and kept in "
        "`work_dir/clips_per_worker.json` for later runs of the same config, bucket and resources "
        "(`factory.distribution.worker.probe_clips_per_worker`)",
    )
    max_clips_per_worker: int = option(64, "the largest K the auto probe of `clips_per_worker` tries")
    checkpoint_every: int = option(50, "iterations between a worker's scratch checkpoints (0: none)")
    max_lost: int = option(3, "times a clip may lose its worker before it is failed")
    progress_every_s: float = option(30.0, "seconds between progress lines (one is also printed per finished clip)")
    compile_cache_dir: str | None = option(
        None,
        "JAX compilation cache for the workers (None: the driver's, else $DIFFMIMIC_JAX_CACHE, else "
        "~/.cache/diffmimic/jax on each node)",
    )
    worker_resources: dict | None = option(None, "extra Ray custom resources per actor")
    warm_start_similar: bool = option(
        True,
        "start a clip's first attempt from the policy of the most similar clip that tracks its own (converged, "
        "or best_effort only for fragility; library policies of the same network, backend and action mode, "
        "and clips finished earlier in the run; the worker picks it by `diffmimic.warmstart.motion_signature`)",
    )
    donor_pool_size: int = option(
        256,
        "converged policies kept as donors (the most spread-out ones when more converge; each is one "
        "policy's parameters in Ray's object store)",
    )
    max_donor_distance_m: float | None = option(
        None,
        "donors farther than this signature distance are not used (None: `diffmimic.warmstart.MAX_DONOR_DISTANCE_M`)",
    )
    work_dir: str | None = option(
        None,
        "workers' scratch checkpoints and status files (None: LIB/.factory). On a cluster, shared "
        "storage every node mounts; the library itself stays on the head's local disk",
    )
    publish_dir: str | None = option(
        None,
        "publish a read-only snapshot of the library there (`factory.library.snapshot`) every "
        "`publish_every_s` seconds while clips finish, and at the end; None: no snapshots",
    )
    publish_every_s: float = option(300.0, "seconds between snapshots while clips finish")
