"""The default training method on real motion: a short real segment (from ../shared) trains.

The real figures (whole clips, the dev set) are the benchmark's (`scripts/bench_real.py`); this
only checks, in CI time, that the shipped `cpu` preset (its horizon, adaptive starts, replay)
really improves a policy on real mocap.
"""

from __future__ import annotations

import pytest

from diffmimic.mocap.retarget import load_reference
from diffmimic.train import make_config, train

CLIP = "amass_dev/ACCAD/Male2Walk_c3d/B1_stand_to_walk_stageii.npz"


@pytest.mark.slow
def test_default_preset_beats_the_untrained_policy_on_a_real_walk(mocap_fixtures):
    # 2 s of a real stand-to-walk, from where the walk starts.
    reference = load_reference(mocap_fixtures / CLIP, fps=30.0, start_s=2.0, duration_s=2.0)
    config = make_config("cpu", iterations=30, eval_every=10)
    result = train(reference, config, progress=None)
    initial, best = result.initial_metrics, result.metrics
    assert result.skipped_updates < result.iterations
    # Better by the convergence ranking (no fall first, then the latest fall, then pose error)...
    assert best.rank() < initial.rank()
    # ... and by a clear margin in pose error or in how long it stays up.
    went_further = initial.fell and (not best.fell or best.fell_at_s > initial.fell_at_s + 0.3)
    assert best.pose_error_m < 0.7 * initial.pose_error_m or went_further, (initial, best)
    assert [r["iteration"] for r in result.history][:3] == [10, 20, 30]
