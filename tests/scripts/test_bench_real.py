"""scripts/bench_real.py's tabulation: kinds from a glob file, format, worker-minutes per
clip-second, the per-kind summary, and `--source` pairs; read from a real library."""

from __future__ import annotations

import json

import pytest

from diffmimic.mocap.retarget import load_reference
from diffmimic.mocap.sample import write_sample_dataset
from factory.library import PolicyLibrary


@pytest.fixture(scope="module")
def bench_real(load_script):
    return load_script("bench_real")


def test_kinds_match_clip_ids_or_file_names(bench_real):
    kinds = {"cmu/90/*": "acrobatics", "*jack*": "jumps", "B*walk*": "walk"}
    assert bench_real.kind_of("cmu/90/90_05", kinds) == "acrobatics"
    assert bench_real.kind_of("bvh/m21/jumping-jack", kinds) == "jumps"
    assert bench_real.kind_of("amass/ACCAD/Male2Walk_c3d/B10_walk_turn_left_45_stageii", kinds) == "walk"
    assert bench_real.kind_of("cmu/02/02_01", kinds) is None


def test_sources_pair_datasets_with_roots(bench_real):
    args = bench_real._parser().parse_args(["--source", "cmu=/a/cmu", "--source", "bvh=/a/bvh"])
    assert bench_real.sources(args) == [("cmu", "/a/cmu"), ("bvh", "/a/bvh")]
    args = bench_real._parser().parse_args(["--data-root", "/d"])
    assert bench_real.sources(args) == [("amass", "/d")]
    with pytest.raises(SystemExit):
        bench_real.sources(bench_real._parser().parse_args(["--source", "cmu"]))


def test_from_library_tabulates_kinds_formats_and_cost(bench_real, tmp_path, capsys):
    clips = write_sample_dataset(tmp_path / "clips")[:3]
    library = PolicyLibrary(tmp_path / "lib", create=True)
    for clip in clips:  # failed records carry the clip's duration and source as a trained one does
        library.put_failure(f"sample/{clip.stem}", "did not converge", reference=load_reference(clip), source_path=clip)
    kinds = tmp_path / "kinds.json"
    kinds.write_text(json.dumps({f"*{clips[0].stem}*": "squat-like", "sample/*": "other"}))
    out = tmp_path / "real.json"
    code = bench_real.main(
        ["--from-library", "--library", str(tmp_path / "lib"), "--kinds", str(kinds), "--out", str(out)]
    )
    assert code == 0
    result = json.loads(out.read_text())
    rows = {r["clip"]: r for r in result["clips"]}
    assert rows[clips[0].stem]["kind"] == "squat-like" and rows[clips[1].stem]["kind"] == "other"
    assert {r["format"] for r in rows.values()} == {"AMASS npz"}
    assert all(r["duration_s"] > 0 and r["minutes_per_clip_second"] == 0 for r in rows.values())
    assert result["summary"]["by_kind"]["other"]["clips"] == 2
    assert result["summary"]["by_kind"]["squat-like"]["converged"] == 0
    table = (tmp_path / "real.md").read_text()
    assert "worker min per clip-s" in table and "squat-like" in table and "AMASS npz" in table
    # A kinds file that is not a glob: kind object is refused with exit 2 and one line.
    kinds.write_text("[1, 2]")
    assert bench_real.main(["--from-library", "--library", str(tmp_path / "lib"), "--kinds", str(kinds)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
