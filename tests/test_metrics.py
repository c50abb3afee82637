"""Episode metrics: improvement_over_random closes the random-to-oracle gap, and no ratio explodes."""

import numpy as np
import pandas as pd
import pytest

from workflow_src.report.metrics import episode_metrics, step_curves


def episode(method: str, expected, *, mu=0.0, oracle=-10.0, random=-2.0, scm="s0", target=None) -> pd.DataFrame:
    """One episode's rows of the long table (only the columns the metrics read)."""
    expected = np.asarray(expected, dtype=float)
    n = len(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = (mu - expected) / (mu - oracle)
    return pd.DataFrame({
        "config": None, "seed": None, "suite": "s", "scm_id": scm, "family": "chain", "level": 1,
        "method": method, "episode": 0, "step": np.arange(n), "variable": "X0", "value": 0.0,
        "is_parent": True, "is_optimal_variable": False, "range_utilization": 0.5,
        "target": expected if target is None else np.asarray(target, dtype=float),
        "expected_target": expected, "oracle_target": oracle, "random_target": random, "mu_target": mu,
        "norm_improvement": norm, "f1": 1.0,
    })


def by_method(frames) -> pd.DataFrame:
    return episode_metrics(pd.concat(frames, ignore_index=True)).set_index(["scm_id", "method"])


def test_improvement_over_random_is_the_share_of_the_gap_closed_on_exact_values():
    m = by_method([
        episode("oracle", [-10.0] * 4, target=[-13.0] * 4),  # lucky noise: sampled below y*
        episode("random", [-2.0] * 4),
        episode("half", [-6.0] * 4),
        episode("worse", [3.0] * 4),
    ])["improvement_over_random"]
    assert m[("s0", "oracle")] == pytest.approx(100.0)  # exact values: noise cannot push it past 100
    assert m[("s0", "random")] == pytest.approx(0.0)
    assert m[("s0", "half")] == pytest.approx(50.0)
    assert m[("s0", "worse")] == pytest.approx(-62.5)


def test_a_random_value_near_zero_does_not_blow_up_improvement_over_random():
    # the old definition divided by |random|: here it would have read 1e6 %
    m = by_method([episode("oracle", [-1.0] * 3, random=1e-6, oracle=-1.0)])
    assert m.loc[("s0", "oracle"), "improvement_over_random"] == pytest.approx(100.0)


def test_ratios_with_a_zero_or_negative_denominator_are_undefined_not_huge():
    frames = [
        # random == oracle (no action has any effect): improvement over random is undefined
        episode("m", [5.0] * 3, mu=5.0, oracle=5.0, random=5.0, scm="flat"),
        # y* above mu_Y (every intervention is worse than doing nothing): the normalized scale is undefined
        episode("m", [9.0, 8.0, 8.5], mu=7.0, oracle=8.0, random=9.5, scm="uphill"),
        episode("m", [-6.0, -10.0, -3.0], scm="fine"),
    ]
    m = by_method(frames)
    assert np.isnan(m.loc[("flat", "m"), "improvement_over_random"])
    for scm in ("flat", "uphill"):
        for metric in ("norm_improvement_mean", "norm_improvement_best", "simple_regret", "optimum_found"):
            assert np.isnan(m.loc[(scm, "m"), metric]), (scm, metric)
    assert m.loc[("uphill", "m"), "improvement_over_random"] == pytest.approx((9.5 - 8.5) / 1.5 * 100)
    fine = m.loc[("fine", "m")]
    assert fine["norm_improvement_best"] == pytest.approx(1.0) and fine["optimum_found"] == 1.0
    curves = step_curves(pd.concat(frames, ignore_index=True))
    assert curves[curves.scm_id != "fine"].best_so_far.isna().all()
    assert curves[curves.scm_id == "fine"].best_so_far.tolist() == pytest.approx([0.6, 1.0, 1.0])


def test_best_after_ten_counts_only_the_first_ten_interventions():
    late = [-1.0] * 10 + [-10.0, -2.0]  # the optimum is found at the 11th intervention
    short = [-5.0, -10.0, -1.0]  # shorter episodes count all their interventions
    m = by_method([episode("late", late), episode("short", short)])
    assert m.loc[("s0", "late"), "norm_improvement_best_10"] == pytest.approx(0.1)
    assert m.loc[("s0", "late"), "norm_improvement_best"] == pytest.approx(1.0)
    assert m.loc[("s0", "short"), "norm_improvement_best_10"] == pytest.approx(1.0)


def test_range_utilization_is_a_share_in_every_stage():
    """The per-step column, the episode metric and the training log use one unit: a share of the half-range
    (0 = the range's centre, 1 = an end), from one definition (``core.step_metrics``)."""
    import jax.numpy as jnp

    from workflow_src.core.problem import Problem
    from workflow_src.core.step_metrics import StepMetrics, range_utilization
    from workflow_src.evaluate.rollout import StepRecord

    problem = Problem(lo=jnp.array([-2.0, 0.0]), hi=jnp.array([2.0, 4.0]), intervenable=jnp.array([True, True]),
                      node_mask=jnp.array([True, True]), target=jnp.int32(1))
    share = range_utilization(problem, jnp.array([0, 0, 1, 1]), jnp.array([0.0, 2.0, 3.0, 0.0]))
    assert share.tolist() == pytest.approx([0.0, 1.0, 0.5, 1.0])
    assert by_method([episode("m", [-6.0] * 3)]).loc[("s0", "m"), "range_utilization"] == pytest.approx(0.5)
    # evaluation records the shared metrics as they are, after the action and the sampled target
    assert StepRecord._fields == ("variable", "value", "target", *StepMetrics._fields)
