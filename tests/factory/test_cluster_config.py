"""cluster.yaml passes Ray's own cluster-launcher validation (the schema `ray up` applies)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

pytest.importorskip("jsonschema")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_is_valid_for_ray(cluster_config):
    validate_config(prepare_config(copy.deepcopy(cluster_config)))  # raises on any schema error


def test_cluster_yaml_has_cpu_head_gpu_workers_and_shared_library(cluster_config):
    types = cluster_config["available_node_types"]
    head = types[cluster_config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = [t for name, t in types.items() if name != cluster_config["head_node_type"]]
    assert gpu_types and all(
        t["resources"]["GPU"] >= 1 and t["min_workers"] == 0 and t["max_workers"] > 0 for t in gpu_types
    )  # autoscaling GPU workers
    setup = "\n".join(cluster_config["setup_commands"])
    assert "pip install" in setup and "[cuda]" in setup and "/mnt/shared" in setup
    # The index on the head's local disk, never on NFS; scratch and the published snapshot shared.
    assert "DIFFMIMIC_LIBRARY=$HOME/" in setup and "DIFFMIMIC_LIBRARY=/mnt/" not in setup
    assert "DIFFMIMIC_WORK_DIR=/mnt/shared/" in setup and "DIFFMIMIC_PUBLISH=/mnt/shared/" in setup


def test_validation_catches_a_broken_config(cluster_config):
    broken = copy.deepcopy(cluster_config)
    broken["available_node_types"]["worker.gpu"]["min_wrokers"] = 1  # a typo
    with pytest.raises(Exception, match="min_wrokers"):
        validate_config(prepare_config(broken))
