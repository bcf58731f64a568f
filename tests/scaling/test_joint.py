"""Joint fit L(N, D) = E + A N^-alpha + B D^-beta: recovery, robustness, compute-optimal readout,
input errors, and the per-group / per-metric collector on hand-made runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tsfm.scaling.joint import compute_optimal, fit_joint, optimal_allocation
from tsfm.scaling.joint_report import analyze_joint, format_joint_markdown
from tsfm.scaling.report import analyze, write_report
from tsfm.scaling.results import Run, _final_eval

TRUE = {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
FAST = {"grid": "small", "top_k": 20, "boot_starts": 2}  # a quick start grid for tests


def _law(n, d, E=1.7, A=400.0, B=410.0, alpha=0.34, beta=0.28):
    return E + A * np.asarray(n, float) ** -alpha + B * np.asarray(d, float) ** -beta


def _grid_points(seed: int = 0, noise: float = 0.01):
    n, d = (
        a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e9, 6), np.geomspace(1e8, 1e11, 5), indexing="ij")
    )
    rng = np.random.default_rng(seed)
    return n, d, _law(n, d) * np.exp(rng.normal(0.0, noise, n.size))


@pytest.fixture(scope="module")
def noisy_fit():
    n, d, loss = _grid_points()
    return fit_joint(n, d, loss, n_boot=50, seed=0, **FAST)


def test_recovers_known_parameters_with_cis_covering_them(noisy_fit):
    fit = noisy_fit
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit.beta == pytest.approx(TRUE["beta"], abs=0.05)
    assert fit.E == pytest.approx(TRUE["E"], rel=0.05)
    assert (fit.num_points, fit.n_levels, fit.d_levels) == (30, 6, 5)
    assert fit.bootstrap_used + fit.bootstrap_skipped == 50 and fit.bootstrap_used >= 45
    for name, true in TRUE.items():
        lo, hi = fit.ci[name]
        assert lo <= true <= hi, f"{name}: {true} not in [{lo}, {hi}]"
    assert fit.rmse_log < 0.02  # 1% noise
    assert set(fit.to_dict()) >= {"E", "A", "B", "alpha", "beta", "ci", "huber_loss"}
    assert "bootstrap" not in fit.to_dict()


def test_exact_data_is_fitted_exactly():
    n, d, _ = _grid_points()
    fit = fit_joint(n, d, _law(n, d), n_boot=0, **FAST)
    assert (fit.alpha, fit.beta, fit.E) == (
        pytest.approx(0.34, abs=1e-3),
        pytest.approx(0.28, abs=1e-3),
        pytest.approx(1.7, rel=1e-3),
    )
    assert fit.rmse_log < 1e-4


def test_huber_is_robust_to_a_few_corrupted_points():
    n, d, loss = _grid_points()
    loss[[3, 17]] *= 3.0  # two broken runs
    fit = fit_joint(n, d, loss, n_boot=0, **FAST)
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.07)
    assert fit.beta == pytest.approx(TRUE["beta"], abs=0.07)
    squares = fit_joint(n, d, loss, n_boot=0, huber_delta=10.0, **FAST)  # delta >> residuals: least squares
    assert abs(squares.alpha - TRUE["alpha"]) > 0.07 or abs(squares.beta - TRUE["beta"]) > 0.07


def test_compute_optimal_is_on_the_budget_and_minimises_the_loss(noisy_fit):
    fit = noisy_fit
    budgets = np.array([1e18, 1e20, 1e22])
    for k in (6.0, 8.0):
        rows = compute_optimal(fit, budgets, flops_per_param_token=k)
        for row in rows:
            c = row["C"]
            assert k * row["N"] * row["D"] == pytest.approx(c, rel=1e-9)
            assert row["loss"] == pytest.approx(float(fit.predict(row["N"], row["D"])), rel=1e-12)
            # dense search along the budget line N D = C / k
            n_line = np.geomspace(row["N"] / 1e3, row["N"] * 1e3, 200_001)
            losses = fit.predict(n_line, c / k / n_line)
            assert losses.min() >= row["loss"] - 1e-12
            assert n_line[losses.argmin()] == pytest.approx(row["N"], rel=1e-3)
            lo, hi = row["ci"]["N"]
            assert lo <= row["N"] <= hi and row["ci"]["loss"][0] <= row["loss"] <= row["ci"]["loss"][1]
    # closed form: N* = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1 / (a + b))
    n_opt, d_opt, _ = optimal_allocation(fit.E, fit.A, fit.B, a, b, 1e21)
    assert n_opt == pytest.approx(g * (1e21 / 6) ** (b / (a + b)))
    assert d_opt == pytest.approx((1e21 / 6) ** (a / (a + b)) / g)
    assert np.isnan(optimal_allocation(1.0, 1.0, 1.0, 0.0, 0.3, 1e21)[0])  # no interior optimum


@pytest.mark.parametrize(
    "n, d, loss, msg",
    [
        (
            [1e6, 1e7, 1e6, 1e7],
            [1e8, 1e8, 1e9, 1e9],
            [3.0, 2.0, 2.5, 1.9],
            r"at least 5 points.*got 4 points",
        ),
        ([1e6] * 6, [1e8, 1e9, 1e10] * 2, [3.0, 2.5, 2.2, 3.0, 2.5, 2.2], r"2 distinct N.*1 N level"),
        ([1e6, 1e7, 1e8] * 2, [1e9] * 6, [3.0, 2.5, 2.2, 3.0, 2.5, 2.2], r"1 D level"),
        (
            [1e6, 1e7, 1e8] * 2,
            [1e8] * 3 + [1e9] * 3,
            [3.0, -0.5, 2.2, 0.0, 2.5, 2.2],
            r"#1 \(L=-0.5\), #3 \(L=0\)",
        ),
        (
            [1e6, 1e7, 1e8] * 2,
            [1e8] * 3 + [1e9] * 3,
            [3.0, 2.5, np.nan, 3.0, np.inf, 2.2],
            r"#2 \(L=nan\), #4 \(L=inf\)",
        ),
        ([1e6, 0.0, 1e8] * 2, [1e8] * 3 + [1e9] * 3, [3.0, 2.5, 2.2] * 2, r"N must be positive.*#1 \(N=0\)"),
        ([1e6, 1e7], [1e8, 1e8, 1e9], [3.0, 2.0], "equal length"),
    ],
)
def test_bad_input_is_rejected(n, d, loss, msg):
    with pytest.raises(ValueError, match=msg):
        fit_joint(n, d, loss, n_boot=0, **FAST)


def test_negative_losses_fit_with_a_shift():
    n, d, _ = _grid_points()
    loss = _law(n, d) - 2.5  # an NLL below zero
    fit = fit_joint(n, d, loss, n_boot=0, shift=float(1 - loss.min()), **FAST)
    assert fit.E == pytest.approx(1.7 - 2.5, abs=0.02) and fit.alpha == pytest.approx(0.34, abs=0.01)


# ----------------------------------------------------------------------------- the collector


def _run(job, family, arch, n, steps_max, law, ood=None, tokens_per_step=1000):
    steps = np.linspace(steps_max / 4, steps_max, 4)
    return Run(
        job=job, architecture=arch, objective="all" if arch == "decoder" else "horizon", params=int(n),
        tokens_per_step=tokens_per_step, steps=steps, val_loss=law(n, steps * tokens_per_step),
        family=family, final_eval=ood(n, steps_max * tokens_per_step) if ood else {},
    )  # fmt: skip


def _fake_runs() -> list[Run]:
    rng = np.random.default_rng(3)
    runs = []
    id_law = {"encoder": (0.30, 0.25), "decoder": (0.40, 0.30), "moirai": (0.35, 0.20)}
    for fam, arch in (("baseline", "encoder"), ("baseline", "decoder"), ("moirai", "encoder")):
        alpha, beta = id_law["moirai" if fam == "moirai" else arch]

        def law(n, d, alpha=alpha, beta=beta):
            return _law(n, d, E=0.5, A=60.0, B=300.0, alpha=alpha, beta=beta) * np.exp(
                rng.normal(0, 0.003, np.size(d))
            )

        ood = None
        if arch == "encoder":  # OOD scores only for the encoders: a shallower N exponent

            def ood(n, d, alpha=alpha, beta=beta):
                return {
                    "rel_wql": float(_law(n, d, E=0.6, A=30.0, B=200.0, alpha=alpha - 0.1, beta=beta)),
                    "rel_mase": float(_law(n, d, E=0.7, A=30.0, B=200.0, alpha=alpha - 0.1, beta=beta)),
                    "num_datasets": 12,
                }

        for n in (1e4, 1e5, 1e6, 1e7):
            for steps in (200, 800, 3200):
                runs.append(_run(f"{fam}-{arch}-{n:g}-{steps}", fam, arch, n, steps, law, ood))
    # a worse duplicate (e.g. another learning rate) that must be dropped
    runs.append(_run("dup", "baseline", "decoder", 1e4, 200, lambda n, d: _law(n, d, E=5.0)))
    # a family with a single size: reported as not fitted
    runs.append(_run("chronos2-0", "chronos2", "encoder", 1e5, 800, lambda n, d: _law(n, d)))
    return runs


def test_collector_fits_every_group_and_metric(tmp_path):
    runs = _fake_runs()
    joint = analyze_joint(runs, n_boot=20, seed=0, grid="small", top_k=8, boot_starts=1)
    groups = joint["groups"]
    assert set(groups) == {"encoder", "decoder", "moirai-encoder", "chronos2-encoder"}
    assert groups["decoder"]["runs"] == 12  # the worse duplicate counts once
    for label, (alpha, beta) in (
        ("encoder", (0.30, 0.25)),
        ("decoder", (0.40, 0.30)),
        ("moirai-encoder", (0.35, 0.20)),
    ):
        fit = groups[label]["metrics"]["val/loss"]["fit"]
        assert (fit["alpha"], fit["beta"]) == (pytest.approx(alpha, abs=0.05), pytest.approx(beta, abs=0.05))
        assert fit["num_points"] == 48 and fit["bootstrap_used"] == 20
        assert len(groups[label]["metrics"]["val/loss"]["compute_optimal"]) == 4
    # OOD: fitted where present, with a paired OOD - ID difference close to the planted -0.1
    for label in ("encoder", "moirai-encoder"):
        for metric in ("final_eval/rel_wql", "final_eval/rel_mase"):
            assert groups[label]["metrics"][metric]["fit"]["num_points"] == 12
            diff = groups[label]["ood_minus_id"][metric]["alpha"]
            assert diff["value"] == pytest.approx(-0.1, abs=0.03)
            assert diff["ci"][0] <= diff["value"] <= diff["ci"][1] and diff["pairs"] > 10
    assert (
        "no run of decoder has final_eval/rel_wql"
        in groups["decoder"]["metrics"]["final_eval/rel_wql"]["skipped"]
    )
    assert groups["decoder"]["ood_minus_id"] == {}
    assert "1 N level" in groups["chronos2-encoder"]["metrics"]["val/loss"]["error"]
    assert joint["notes"] == []

    md = format_joint_markdown(joint)
    for label in ("encoder", "decoder", "moirai-encoder"):
        assert f"| {label} | val/loss | 48 (4 x 10) |" in md
    assert "| encoder | final_eval/rel_wql vs val/loss |" in md
    assert "| moirai-encoder | final_eval/rel_mase vs val/loss |" in md
    assert "chronos2-encoder, val/loss: the joint fit" in md

    result = analyze(runs, n_boot=0) | {"joint": joint}  # the 1-D fits and the joint ones, as the CLI does
    paths = write_report(result, tmp_path)
    assert [p.name for p in paths] == [
        "scaling_fit.json",
        "scaling_fit.md",
        "scaling_fit.png",
        "scaling_joint.png",
    ]
    assert json.loads(paths[0].read_text())["joint"]["groups"]["encoder"]["ood_minus_id"]
    assert "Exponent difference OOD - ID" in paths[1].read_text()
    assert paths[3].stat().st_size > 10_000


def test_collector_without_ood_scores_says_so():
    runs = [r for r in _fake_runs() if r.label == "decoder"]
    joint = analyze_joint(runs, n_boot=0, grid="small", top_k=8)
    assert "fit" in joint["groups"]["decoder"]["metrics"]["val/loss"]
    assert any("final_eval=null" in note for note in joint["notes"])
    # final validations only: the fake runs have 3 budgets, so there are still 3 D levels
    final = analyze_joint(runs, n_boot=0, grid="small", top_k=8, points="final")
    assert final["groups"]["decoder"]["metrics"]["val/loss"]["fit"]["num_points"] == 12


def test_points_below_a_tokens_per_param_ratio_are_left_out_and_counted():
    """Final D = 2e5 / 8e5 / 3.2e6 per N = 1e4 ... 1e7: at D/N >= 2, 3 + 3 + 1 + 0 of the 12 runs stay."""
    runs = [r for r in _fake_runs() if r.label in ("encoder", "decoder")]
    joint = analyze_joint(
        runs, n_boot=30, grid="small", top_k=8, points="final", min_tokens_per_param=2, boot_starts=1
    )
    for label in ("encoder", "decoder"):  # the bootstrap resamples the 7 runs that keep a point, not all 12
        assert (joint["groups"][label]["runs"], joint["groups"][label]["runs_left_out"]) == (7, 5)
        assert joint["groups"][label]["metrics"]["val/loss"]["fit"]["bootstrap_used"] >= 28
    assert joint["groups"]["encoder"]["ood_minus_id"]["final_eval/rel_wql"]["alpha"]["pairs"] >= 28
    for label, metrics in (("decoder", ("val/loss",)), ("encoder", ("val/loss", "final_eval/rel_wql"))):
        for metric in metrics:
            m = joint["groups"][label]["metrics"][metric]
            n, d = np.array(m["points"]["N"]), np.array(m["points"]["D"])
            assert len(n) == 7 and (d / n >= 2).all() and sorted(set(n)) == [1e4, 1e5, 1e6]
            assert m["left_out"] == "5 point(s) with D/N < 2" and m["fit"]["num_points"] == 7
    assert joint["method"]["min_tokens_per_param"] == 2
    md = format_joint_markdown(joint)
    assert "D/N >= 2 only" in md and "; 5 point(s) with D/N < 2 left out |" in md
    # too strict: the fit has too few points and says how many were left out
    strict = analyze_joint(runs, n_boot=0, grid="small", top_k=8, points="final", min_tokens_per_param=50)
    err = strict["groups"]["decoder"]["metrics"]["val/loss"]["error"]
    assert "needs at least 5 points" in err and "(10 point(s) with D/N < 50 left out)" in err
    with pytest.raises(ValueError, match="min_tokens_per_param=-1"):
        analyze_joint(runs, n_boot=0, min_tokens_per_param=-1)


def test_final_eval_scores_are_read_from_results_json_or_metrics_csv(tmp_path):
    job = tmp_path / "job"
    (job / "final_eval").mkdir(parents=True)
    assert _final_eval(job) == {}
    (job / "final_eval" / "results.json").write_text(
        json.dumps(
            {
                "model": "this run",
                "aggregate": {"this run": {"rel_wql": 0.8, "rel_mase": 0.9, "num_datasets": 5}},
            }
        )
    )
    assert _final_eval(job) == {"rel_wql": 0.8, "rel_mase": 0.9}
    (job / "final_eval" / "results.json").unlink()
    csv = job / "csv" / "version_0"
    csv.mkdir(parents=True)
    (csv / "metrics.csv").write_text("step,val/loss,final_eval/rel_wql\n99,1.0,\n199,0.9,0.75\n")
    assert _final_eval(job) == {"rel_wql": 0.75}
