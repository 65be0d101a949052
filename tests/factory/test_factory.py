"""The Ray factory on a local Ray (real actors, real training with the tiny config).

One Ray for the module (2 CPUs). Workers load the tiny config's compiled steps from the JAX
persistent compilation cache that tests/conftest.py configures (the coordinator hands the
driver's cache directory to the actors), so each new actor traces and loads in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def sample_spec(root: Path):
    from diffmimic.mocap.dataset_spec import load_dataset_spec

    return dataclasses.replace(load_dataset_spec("sample"), root=Path(root), generate=None)


def copy_clips(sample_clips, names, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(sample_clips[name], directory / sample_clips[name].name)
    return directory


def kill_worker_when(library_root: Path, condition, timeout_s: float = 240.0):
    """Starts a thread that SIGKILLs worker 0 once its status file meets `condition`; returns
    (the status it was killed in, filled then; the thread)."""
    status_file = Path(library_root) / ".factory" / "workers" / "0.json"
    killed: dict = {}

    def killer():
        deadline = time.time() + timeout_s
        while time.time() < deadline and not killed:
            try:
                status = json.loads(status_file.read_text())
            except (OSError, ValueError):
                status = {}
            if condition(status):
                os.kill(status["pid"], signal.SIGKILL)
                killed.update(status)
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return killed, thread


def run_factory(library_root, spec, config, progress=None, train_fn=None, **options):
    from factory.distribution.catalog import build_catalog
    from factory.distribution.coordinator import Coordinator, FactoryOptions
    from factory.library import PolicyLibrary

    library = PolicyLibrary(library_root, create=True)
    catalog = build_catalog(spec)
    opts = FactoryOptions(**{"workers": 1, "max_attempts": 2, "progress_every_s": 5.0, **options})
    lines = []
    summary = Coordinator(library, catalog, config, opts, progress=progress or lines.append, train_fn=train_fn).run()
    return library, summary, lines


def test_sample_dataset_end_to_end(local_ray, tmp_path, sample_clips, tiny_config):
    data = copy_clips(sample_clips, ["squat", "wave", "idle_sway"], tmp_path / "data")
    library, summary, lines = run_factory(tmp_path / "lib", sample_spec(data), tiny_config, workers=2)

    rows = library.query(dataset="sample", all_versions=True)
    assert sorted(r.clip_id for r in rows) == ["sample/idle_sway_poses", "sample/squat_poses", "sample/wave_poses"]
    for row in rows:
        # Two iterations cannot reach 4 cm: every clip ran both (escalated) attempts.
        assert row.status == "best_effort" and row.attempts == 2
        assert row.pose_error_m is not None and np.isfinite(row.pose_error_m)
        assert library.load_policy(row.clip_id).act(np.zeros((1, 794), np.float32)).shape == (1, 69)
    assert summary["counts"] == {"best_effort": 3} and summary["lost_calls"] == 0
    # One compile (or cache load) of the train step per worker: attempt 2 only changes data.
    for counters in summary["worker_counters"].values():
        assert counters["train_step_compiles"] == 1, summary["worker_counters"]
    # `--clips-per-worker auto` (the default) on CPU workers: one clip at a time, nothing measured.
    assert summary["clips_per_worker"] == 1 and summary["clips_per_worker_probe"] is None
    # Attempt 2 started from attempt 1's policy, not from scratch.
    for clip in summary["clips"]:
        assert clip["warm_starts"] == [[2, "attempt 1"]], clip
    progress = [line for line in lines if "clips/h" in line]
    assert progress and all(k in progress[-1] for k in ("done 3/3", "best_effort 3", "ETA", "median pose error"))

    report = json.loads((tmp_path / "lib" / "reports" / "sample.json").read_text())
    assert report["counts"] == {"converged": 0, "best_effort": 3, "failed": 0}
    assert (tmp_path / "lib" / "reports" / "sample.md").read_text().startswith("# Factory report: sample")
    assert (tmp_path / "lib" / "reports" / "sample_pose_error.png").stat().st_size > 1000

    # Run again: nothing to do, nothing duplicated.
    _, again, _ = run_factory(tmp_path / "lib", sample_spec(data), tiny_config)
    assert again["skipped_done"] == 3 and again["written"] == 0 and again["workers"] == 0
    assert len(library.query(dataset="sample", all_versions=True)) == 3


def test_bad_clips_fail_with_reasons_and_good_ones_train(local_ray, tmp_path, sample_clips, tiny_config):
    data = copy_clips(sample_clips, ["squat", "wave"], tmp_path / "data")
    with np.load(sample_clips["squat"]) as npz:
        arrays = {key: npz[key] for key in npz.files}
    (data / "corrupt_poses.npz").write_bytes(b"PK\x03\x04 not really a zip archive" + bytes(range(200)))
    nan = {**arrays, "poses": arrays["poses"].copy()}
    nan["poses"][10, 5] = np.nan
    np.savez(data / "nan_poses.npz", **nan)
    np.savez(data / "one_frame_poses.npz", **{**arrays, "poses": arrays["poses"][:1], "trans": arrays["trans"][:1]})

    library, summary, _ = run_factory(tmp_path / "lib", sample_spec(data), tiny_config, max_attempts=3)

    rows = {r.clip_id.rsplit("/", 1)[-1]: r for r in library.query(dataset="sample", all_versions=True)}
    assert sorted(rows) == ["corrupt_poses", "nan_poses", "one_frame_poses", "squat_poses", "wave_poses"]
    for name in ("squat_poses", "wave_poses"):
        assert rows[name].status == "best_effort" and rows[name].attempts == 3
    # Attempt 3 halves the replay threshold and doubles the run: data, not a recompile.
    for counters in summary["worker_counters"].values():
        assert counters["train_step_compiles"] == 1, summary["worker_counters"]
    for name, words in (("corrupt_poses", "corrupt"), ("nan_poses", "NaN"), ("one_frame_poses", "at least 2 frames")):
        row = rows[name]
        assert row.status == "failed" and row.attempts == 1, (name, row.attempts)  # data errors: never retried
        assert words in row.error and name in row.error, row.error
    report = json.loads((tmp_path / "lib" / "reports" / "sample.json").read_text())
    assert sorted(f["clip_id"] for f in report["failures"]) == [
        "sample/corrupt_poses",
        "sample/nan_poses",
        "sample/one_frame_poses",
    ]

    # The NaN clip fixed on disk: a rerun skips it (the library has it), --retry-failed retrains
    # the failed clips (the two still broken fail again, as a new version).
    np.savez(data / "nan_poses.npz", **arrays)
    _, again, _ = run_factory(tmp_path / "lib", sample_spec(data), tiny_config, max_attempts=1)
    assert again["written"] == 0 and again["skipped_done"] == 5
    _, again, _ = run_factory(tmp_path / "lib", sample_spec(data), tiny_config, max_attempts=1, retry_failed=True)
    assert {c["clip_id"]: c["status"] for c in again["clips"]} == {
        "sample/nan_poses": "best_effort",
        "sample/corrupt_poses": "failed",
        "sample/one_frame_poses": "failed",
    }
    assert library.get("nan_poses").version == 2 and library.get("squat_poses").version == 1


def test_worker_killed_mid_clip_requeues_and_resumes(local_ray, tmp_path, sample_clips, tiny_config):
    data = copy_clips(sample_clips, ["squat", "wave"], tmp_path / "data")
    # A longer run of the same compiled step (iterations are data), checkpointed every 10.
    config = dataclasses.replace(tiny_config, iterations=60, eval_every=10)
    # (the status is also written at evaluations: wait for the checkpoint of iteration 20)
    killed, thread = kill_worker_when(tmp_path / "lib", lambda s: s.get("checkpointed") and s.get("iteration", 0) >= 20)
    library, summary, lines = run_factory(
        tmp_path / "lib", sample_spec(data), config, max_attempts=1, checkpoint_every=10, target_pose_error_m=0.0
    )
    thread.join(timeout=5)

    assert killed, "the worker was never seen training"
    assert summary["lost_calls"] >= 1
    rows = library.query(dataset="sample", all_versions=True)
    assert sorted(r.clip_id for r in rows) == ["sample/squat_poses", "sample/wave_poses"]  # each exactly once
    clips = {c["clip_id"]: c for c in summary["clips"]}
    victim = clips[killed["clip_id"]]
    assert victim["lost"] == 1 and victim["attempts"] == 1  # the lost call was not an attempt
    assert victim["resumed_from"] and victim["resumed_from"][0] >= 20  # resumed from its checkpoint
    assert victim["iterations"] == 60
    assert any("requeued" in line for line in lines)
    assert not list((tmp_path / "lib" / ".factory" / "checkpoints").glob("*.msgpack"))  # cleaned up


def test_escalation_changes_starts_threshold_and_run_length_but_not_the_compiled_step(tiny_config):
    from diffmimic.train import compile_key
    from factory.distribution.coordinator import ESCALATED_FOCUS_SHARE, escalate

    first, second, third = (escalate(tiny_config, attempt) for attempt in (1, 2, 3))
    assert first == tiny_config
    assert second.seed != first.seed and second.focus_share == ESCALATED_FOCUS_SHARE
    assert second.start_sampling == "adaptive" and second.iterations == first.iterations
    assert third.env.replay_threshold_m == pytest.approx(first.env.replay_threshold_m / 2)
    assert third.iterations == 2 * first.iterations and third.seed not in (first.seed, second.seed)
    assert compile_key(first) == compile_key(second) == compile_key(third)


def _evaluation(pose_error_m: float, fell: bool = False, survived: int | None = None):
    from diffmimic.metrics import EvalMetrics
    from diffmimic.robustness import Robustness

    robustness = {}
    if survived is not None:
        robustness = Robustness(10, survived, (1.0,) * (10 - survived), (pose_error_m,) * 10, 0.9).to_dict()
    return EvalMetrics(pose_error_m, 0.1, fell, 1.5 if fell else None, {}, 0, 100, robustness=robustness)


def test_a_tracking_but_fragile_policy_is_stored_at_once_not_retried():
    """Issue 27: a policy that tracks its clip but fails the perturbed-rollout check is best_effort
    (fragile) without more attempts, unless `retry_fragile`; one that does not track is retried."""
    from factory.distribution.coordinator import FactoryOptions, next_step

    options = FactoryOptions(max_attempts=3)
    robust, fragile = _evaluation(0.03, survived=10), _evaluation(0.03, survived=2)
    falling, off = _evaluation(0.3, fell=True), _evaluation(0.06)
    assert next_step(robust, robust, 1, options, 10) == "converged"
    assert next_step(fragile, fragile, 1, options, 10) == "fragile"
    assert next_step(fragile, fragile, 1, FactoryOptions(max_attempts=3, retry_fragile=True), 10) == "retry"
    # Without the check (robust_rollouts 0) tracking is converging, as before issue 27.
    assert next_step(fragile, fragile, 1, options, 0) == "converged"
    # Not tracking: retried until the attempts are used up, then the best is kept.
    assert next_step(falling, falling, 1, options, 10) == "retry"
    assert next_step(off, off, 2, options, 10) == "retry"
    assert next_step(off, off, 3, options, 10) == "best_effort"
    # An attempt that raised after a fragile tracking one: that one is stored.
    assert next_step(None, fragile, 2, options, 10) == "fragile"
    assert next_step(None, None, 3, options, 10) == "failed"


def test_a_similar_converged_library_policy_warm_starts_a_clip(
    local_ray, tmp_path, sample_clips, tiny_config, trained, put_trained
):
    from diffmimic.env import ref_arrays
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.train import compiled_functions, evaluate_policy
    from diffmimic.warmstart import reference_signature, signature_distance
    from factory.library import PolicyLibrary

    library = PolicyLibrary(tmp_path / "lib", create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    put_trained(library, "sample/wave_poses", trained["wave"], status="best_effort")  # not a donor
    data = copy_clips(sample_clips, ["idle_sway", "squat"], tmp_path / "data")
    _, summary, lines = run_factory(
        tmp_path / "lib", sample_spec(data), tiny_config, max_attempts=1, max_donor_distance_m=10.0, force=True
    )
    assert any("warm starts: 1 converged library policy" in line for line in lines), lines
    clips = {clip["clip_id"]: clip for clip in summary["clips"]}
    [(attempt, origin, distance)] = clips["sample/idle_sway_poses"]["warm_starts"]
    assert attempt == 1 and origin == "similar clip sample/squat_poses"
    idle_sway = load_reference(data / "idle_sway_poses.npz", fps=tiny_config.env.control_hz)
    assert distance == pytest.approx(
        signature_distance(reference_signature(idle_sway), reference_signature(trained["squat"].reference)), abs=1e-4
    )
    assert "warm_starts" not in clips["sample/squat_poses"]  # a clip is never its own donor
    # With warm starts a clip goes only to a free worker (its donors are fixed when it is sent, and
    # clips converging meanwhile must be among them): the one worker finished one clip first.
    first, second = sorted(summary["clips"], key=lambda clip: clip["sent_s"])
    assert second["sent_s"] >= first["finished_s"] - 1e-3, summary["clips"]
    # The donor's policy is where training began: its evaluation on the clip is the clip's initial one.
    donor = library.load_policy("sample/squat_poses", version=1)
    on_clip = evaluate_policy(compiled_functions(tiny_config), donor.params, donor.normaliser, ref_arrays(idle_sway))
    assert library.get("sample/idle_sway_poses").initial_pose_error_m == pytest.approx(on_clip.pose_error_m, rel=1e-4)

    # Without the option (--no-similar-warm-start) every clip starts from random weights.
    _, summary, lines = run_factory(
        tmp_path / "lib",
        sample_spec(data),
        tiny_config,
        max_attempts=1,
        force=True,
        max_donor_distance_m=10.0,
        warm_start_similar=False,
    )
    assert all("warm_starts" not in clip for clip in summary["clips"])
    assert not any("warm starts:" in line for line in lines)
    # Without them the next clip waits in the worker's queue (tasks_per_worker 2): both sent at once.
    first, second = sorted(summary["clips"], key=lambda clip: clip["sent_s"])
    assert second["sent_s"] < first["finished_s"], summary["clips"]


def test_the_clips_per_worker_probe_measures_the_batched_steps_throughput_in_a_ray_task(
    local_ray, sample_clips, tiny_config
):
    """The probe behind `--clips-per-worker auto` on GPU workers, run here on a CPU: a Ray task
    compiles and times the K-slot step for K = 1, 2 and picks K from that curve."""
    from diffmimic.multiclip import choose_slots
    from factory.distribution.worker import remote_probe

    task = {"clip_id": "sample/squat_poses", "path": str(sample_clips["squat"]), "config": tiny_config.to_dict()}
    out = ray.get(remote_probe(num_gpus=0, num_cpus=1).remote(task, jax_cache(), 2), timeout=900)
    curve = out["curve"]
    assert curve[0]["slots"] == 1 and [p["slots"] for p in curve] in ([1], [1, 2]), curve
    for point in curve:  # really timed: an iteration takes time, and K slots step K x the samples
        assert point["iteration_s"] > 0 and point["compile_s"] > 0
        expected = point["slots"] * tiny_config.num_envs * tiny_config.horizon / point["iteration_s"]
        assert point["samples_per_s"] == pytest.approx(expected, rel=1e-2)
    assert out["slots"] == choose_slots(curve) and out["clip_id"] == task["clip_id"] and out["device"]


def jax_cache() -> str:
    import jax

    return jax.config.jax_compilation_cache_dir


def test_a_worker_trains_k_clips_at_once_in_one_compiled_step(local_ray, tmp_path, sample_clips, tiny_config):
    data = copy_clips(sample_clips, ["squat", "wave", "idle_sway"], tmp_path / "data")
    library, summary, lines = run_factory(
        tmp_path / "lib", sample_spec(data), tiny_config, max_attempts=1, clips_per_worker=2, warm_start_similar=False
    )
    rows = library.query(dataset="sample")
    assert len(rows) == 3 and all(r.status == "best_effort" and np.isfinite(r.pose_error_m) for r in rows)
    assert all(r.iterations == tiny_config.iterations and r.samples for r in rows)
    [counters] = summary["worker_counters"].values()
    # The two slots share one compile of the batched step; the third clip refilled a slot.
    assert counters["clips_per_worker"] == 2 and counters["train_step_batch_compiles"] == 1, counters
    assert counters["train_step_compiles"] == 0 and counters["clips"] == 3
    # Two clips trained at once: both sent before either finished.
    first, second, third = sorted(summary["clips"], key=lambda clip: clip["sent_s"])
    assert second["sent_s"] < min(first["finished_s"], second["finished_s"]), summary["clips"]
    assert third["sent_s"] >= min(first["finished_s"], second["finished_s"]) - 1e-3


def test_cpu_workers_pin_to_cores_of_their_own_and_a_killed_one_frees_its_core(local_ray, tmp_path):
    from factory.distribution.affinity import LOCK_DIR_ENV
    from factory.distribution.worker import ClipTrainer

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    env = {"env_vars": {LOCK_DIR_ENV: str(tmp_path / "locks")}}
    trainer = ray.remote(ClipTrainer).options(num_cpus=1, max_restarts=0, runtime_env=env)
    first, second = (trainer.remote(i, str(tmp_path / "work"), None, 0, None, 1) for i in range(2))
    a, b = ray.get([first.info.remote(), second.info.remote()])
    assert len(a["cores"]) == len(b["cores"]) == 1 and a["cores"] != b["cores"]
    assert a["affinity"] == a["cores"] and b["affinity"] == b["cores"]  # every thread, JAX's included
    ray.kill(first, no_restart=True)
    # The dead worker's lock went with its process: a new worker gets its core.
    deadline = time.time() + 30
    while True:
        third = trainer.remote(2, str(tmp_path / "work"), None, 0, None, 1)
        c = ray.get(third.info.remote())
        if c["cores"] == a["cores"] or time.time() > deadline:
            break
        ray.kill(third, no_restart=True)
        time.sleep(1)
    assert c["cores"] == a["cores"]
    for actor in (second, third):
        ray.kill(actor, no_restart=True)
    # Unpinned (pin_cores 0), a worker keeps every core.
    free = trainer.remote(3, str(tmp_path / "work"), None, 0, None, 0)
    info = ray.get(free.info.remote())
    assert info["cores"] == [] and info["affinity"] == cores
    ray.kill(free, no_restart=True)


def test_a_killed_k_slot_worker_requeues_every_clip_it_held_and_each_resumes(
    local_ray, tmp_path, sample_clips, tiny_config
):
    data = copy_clips(sample_clips, ["squat", "wave"], tmp_path / "data")
    config = dataclasses.replace(tiny_config, iterations=60, eval_every=10)

    def both_checkpointed(status: dict) -> bool:  # both clips in their slots, at iteration 20 or later
        slots = status.get("slots", [])
        return len(slots) == 2 and all(s.get("checkpointed") and s.get("iteration", 0) >= 20 for s in slots)

    killed, thread = kill_worker_when(tmp_path / "lib", both_checkpointed)
    library, summary, lines = run_factory(
        tmp_path / "lib",
        sample_spec(data),
        config,
        max_attempts=1,
        checkpoint_every=10,
        target_pose_error_m=0.0,
        clips_per_worker=2,
        warm_start_similar=False,
    )
    thread.join(timeout=5)

    assert killed, "the worker was never seen training both clips"
    assert summary["lost_calls"] >= 2  # both calls in flight on the killed actor
    rows = library.query(dataset="sample", all_versions=True)
    assert sorted(r.clip_id for r in rows) == ["sample/squat_poses", "sample/wave_poses"]  # each exactly once
    for clip in summary["clips"]:
        assert clip["lost"] == 1 and clip["attempts"] == 1, clip
        assert clip["resumed_from"] and clip["resumed_from"][0] >= 20, clip  # from its own checkpoint
        assert clip["iterations"] == 60
    assert not list((tmp_path / "lib" / ".factory" / "checkpoints").glob("*.msgpack"))  # cleaned up


def test_a_k_slot_worker_says_it_is_idle_before_its_first_clip(tmp_path):
    from factory.distribution.worker import ClipTrainer

    ClipTrainer(3, str(tmp_path), clips_per_worker=2)
    status = json.loads((tmp_path / "workers" / "3.json").read_text())
    assert status["state"] == "idle" and status["slots"] == [] and status["pid"] == os.getpid()
