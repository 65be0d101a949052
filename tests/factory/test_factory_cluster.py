"""The factory on a multi-node Ray (`ray.cluster_utils.Cluster`) whose worker nodes declare a GPU.

On this CPU-only machine the GPU is a declared resource, so the scheduling path of a GPU cluster
runs: the coordinator sees GPUs, starts one actor per GPU requesting `num_gpus=1`, and Ray places
them on the GPU nodes (never on the CPU head), where JAX runs on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402


@pytest.fixture(scope="module")
def gpu_cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    gpu_nodes = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, cluster.head_node, gpu_nodes
    ray.shutdown()
    cluster.shutdown()


def test_gpu_workers_are_placed_on_gpu_nodes(gpu_cluster, tmp_path, sample_clips, tiny_config):
    from diffmimic.mocap.dataset_spec import load_dataset_spec
    from factory.distribution.catalog import build_catalog
    from factory.distribution.coordinator import Coordinator, FactoryOptions
    from factory.library import PolicyLibrary

    cluster, head, gpu_nodes = gpu_cluster
    assert ray.cluster_resources().get("GPU") == 2
    data = tmp_path / "data"
    data.mkdir()
    for name in ("squat", "wave", "march_in_place"):
        shutil.copy(sample_clips[name], data)
    spec = dataclasses.replace(load_dataset_spec("sample"), root=data, generate=None)
    library = PolicyLibrary(tmp_path / "head-local" / "lib", create=True)
    shared = tmp_path / "shared"  # as /mnt/shared in cluster.yaml
    options = FactoryOptions(
        max_attempts=1, work_dir=str(shared / "work"), publish_dir=str(shared / "lib"), max_clips_per_worker=2
    )
    summary = Coordinator(library, build_catalog(spec), tiny_config, options, progress=None).run()

    # `--clips-per-worker auto` on GPU workers: a probe task measured K = 1 (and 2) and the
    # workers took its K; the curve is kept for the next run.
    probe = summary["clips_per_worker_probe"]
    assert probe["curve"][0]["slots"] == 1 and all(p["samples_per_s"] > 0 for p in probe["curve"]), probe
    assert summary["clips_per_worker"] == probe["slots"] in (1, 2)
    assert all(c["clips_per_worker"] == probe["slots"] for c in summary["worker_counters"].values())
    assert json.loads((shared / "work" / "clips_per_worker.json").read_text())

    assert summary["workers"] == 2  # one per GPU, chosen from the cluster's resources
    assert summary["counts"] == {"best_effort": 3}
    assert len(library.query(dataset="sample", all_versions=True)) == 3
    gpu_node_ids = {node.node_id for node in gpu_nodes}
    placements = [place for clip in summary["clips"] for place in clip["nodes"]]
    assert placements and all(p["node_id"] in gpu_node_ids for p in placements), placements
    assert all(p["gpu_ids"] for p in placements)  # Ray assigned each actor a GPU
    assert head.node_id not in {p["node_id"] for p in placements}

    # Storage as on the cluster: workers wrote their scratch and status to the shared work
    # directory, never into the library; readers elsewhere get the published snapshot.
    assert sorted(p.name for p in (shared / "work" / "workers").glob("*.json")) == ["0.json", "1.json"]
    assert not (library.root / ".factory" / "workers").exists()
    reader = PolicyLibrary(shared / "lib")
    assert reader.read_only and summary["snapshot"]["rows"] == 3
    assert reader.query(all_versions=True) == library.query(all_versions=True)
    assert reader.verify(load=False).ok

    # Actors sharing a GPU each take their share of its memory, not JAX's default 75 % of it.
    from factory.distribution.worker import remote_trainer

    half = remote_trainer(num_gpus=0.5).remote(9, str(tmp_path / "work9"))
    info = ray.get(half.info.remote(), timeout=120)
    assert info["gpu_memory_fraction"] == "0.4750" and info["gpu_ids"], info
    ray.kill(half)
