"""`arena simulate`: the table, --json with provenance, the plotly figure, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from arena.cli.main import app

SMALL = ["-n", "8", "--seeds", "2", "--max-votes", "300", "--kinds", "fixed=1,ffa=1"]


def test_json_reports_each_strategy_with_its_configuration(tmp_path: Path) -> None:
    plot = tmp_path / "tau.html"
    result = CliRunner().invoke(
        app, ["simulate", *SMALL, "-s", "uniform", "-s", "active", "--json", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["arms"]) == {"uniform + bt", "active + bt"}
    arm = report["arms"]["active + bt"]
    assert arm["config"]["strategy"] == "active"
    assert arm["config"]["kinds"] == {"fixed": 1.0, "ffa": 1.0}
    assert arm["seeds"] == [0, 1]
    assert len(arm["curve"]["votes"]) == len(arm["curve"]["tau_median"]) > 0
    assert all(-1.0 <= t <= 1.0 for t in arm["curve"]["tau_median"])
    page = plot.read_text()
    assert "plotly" in page and "uniform + bt" in page and "active + bt" in page


def test_table_output_names_the_target() -> None:
    result = CliRunner().invoke(app, ["simulate", *SMALL, "-s", "balanced", "-r", "elo"])
    assert result.exit_code == 0, result.output
    assert "Kendall tau >= 0.9" in result.stdout
    assert "balanced + elo: tau held" in result.stdout


def test_bad_input_is_one_line() -> None:
    for args in (["-s", "greedy"], ["--kinds", "duel"], ["--lapse", "2"], ["--kinds", "ffa=x"]):
        result = CliRunner().invoke(app, ["simulate", *SMALL, *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1


def test_benchmark_prints_the_arms_ratios_and_the_information_limit() -> None:
    result = CliRunner().invoke(app, ["simulate", "--benchmark", "-n", "12", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for arm in ("a: uniform duels + Elo K=4", "b: uniform duels + Bradley-Terry",
                "c: active four-way + Bradley-Terry"):
        assert f"{arm}: tau held" in out
    assert "ratio_a_over_c (votes_to_tau" in out
    limits = [line for line in out.splitlines() if line.startswith("information limit")]
    assert len(limits) == 2
    four, duel = (float(line.split("at least ")[1].split()[0]) for line in limits)
    assert 0 < four < duel  # a four-way ranking carries more than a duel


def test_an_attack_reports_both_boards() -> None:
    args = ["simulate", "-n", "12", "--seeds", "1", "--max-votes", "1500", "--kinds",
            "fixed=1,ffa=1", "-s", "active", "--random-voters", "0.15", "--skip-rate", "0.05",
            "--attack-share", "0.1", "--target-place", "8", "--recognition", "0.8"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["config"]["attack"]["share"] == 0.1 and row["target_place"] == 8
    outcome = row["outcomes"][0]
    assert outcome["attacker_votes"] > 0 and outcome["honest_voters"] > 0
    assert row["gain_plain"] > row["gain_robust"]  # the attack moves plain BT more
    text = CliRunner().invoke(app, args)
    assert "median places gained: plain Bradley-Terry" in text.stdout
    for bad in (["--attack-share", "1.5"], ["--attack-strategy", "everywhere"],
                ["--target-place", "99"]):
        result = CliRunner().invoke(app, [*args, *bad])
        assert result.exit_code == 2, (bad, result.output)
        assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1
