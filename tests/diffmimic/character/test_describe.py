"""`python -m diffmimic.character describe`: the character as each backend simulates it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffmimic.character.__main__ import main
from diffmimic.character.describe import describe
from diffmimic.physics import backend_character


@pytest.mark.parametrize("backend", ["spring", "mjx"])
def test_describe_reports_masses_inertias_and_hinges_as_simulated(backend):
    character = backend_character(backend)
    description = describe(character, backend)
    assert len(description.bodies) == 24 and len(description.hinges) == 69
    assert description.model_total_mass_kg == pytest.approx(character.config.total_mass_kg, rel=1e-3)
    model = character.sys.mj_model
    hand = next(b for b in description.bodies if b.name == "L_Hand")
    geometry = np.asarray(model.body_inertia[model.body("L_Hand").id])
    assert hand.model_inertia_kg_m2 == pytest.approx(tuple(geometry))
    if backend == "spring":  # brax's spring pipeline steps inertia ** (1 - spring_inertia_scale)
        scale = float(character.sys.spring_inertia_scale)
        assert scale > 0 and hand.inertia_kg_m2 == pytest.approx(tuple(geometry ** (1 - scale)), rel=1e-6)
    else:
        assert hand.inertia_kg_m2 == pytest.approx(tuple(geometry))
    knee = next(h for h in description.hinges if h.name == "L_Knee_y")
    kp, kd = character.config.gains()["L_Knee"]
    assert knee.kp_nm_per_rad == pytest.approx(kp) and knee.kd_nm_s_per_rad == pytest.approx(
        kd + character.config.joint_damping
    )
    assert knee.torque_limit_nm == pytest.approx(character.config.torque_limit_nm)
    assert knee.armature_kg_m2 == pytest.approx(character.config.armature)


def test_describe_cli_prints_tables_and_json(capsys):
    assert main(["describe", "--backend", "spring"]) == 0
    text = capsys.readouterr().out
    assert "backend spring" in text and "L_Knee_y" in text and "Pelvis" in text
    assert main(["describe", "--backend", "spring", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "spring" and len(data["hinges"]) == 69
