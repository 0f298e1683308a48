"""Drift: how far a window of live traffic has moved from the reference profile stored at training time.

Owns the drift statistics and the rule that calls one feature drifted. Pure and vectorised: a window of
raw captured rows (:func:`capture_frames`) and the model's reference profile
(:func:`shared.ml.training.reference_profile`) in, a :class:`DriftReport` out; no AWS, no files.

Per feature:

- **numeric**: PSI over the reference's quantile bins (live values binned by the very function training
  used, :func:`shared.ml.training.bin_shares`), and the two-sample Kolmogorov-Smirnov test of the present live
  values against the profile's ``sample`` (the statistic and p-value of :func:`scipy.stats.ks_2samp`,
  computed here without sorting the window once it is too large for scipy's exact mode; see :func:`_ks`);
- **boolean**: two bins, false and true, whose reference shares come from the profile's ``mean`` (the
  share of true among present values; the profile's deciles of 0/1 values put both values in one bin
  when over 90% are true), and a chi-square test;
- **categorical**: PSI over the reference's categories plus the missing sentinel and one *unseen* bucket
  for every category training never saw (reference share 0), and a chi-square test;
- **every kind**: the change in missing rate.

The chi-square test is two-sample, like KS: Pearson's test of homogeneity of the training rows' counts
(reference share * the profile's ``rows``) and the window's counts (:func:`scipy.stats.chi2_contingency`,
no continuity correction). Testing the window against the reference shares as if they were exact (a
one-sample ``chisquare``) mistakes the training sample's own noise for drift once the window is large: on
undrifted data with a 200,000-row reference, it flags 3 of 10 categorical features at 200,000 rows and all
10 at 1,000,000 (``bench/drift.py``'s generator), where the two-sample test flags none.

The epsilon rule of PSI, the same for features and predictions: a bucket empty on both sides is dropped;
every remaining share (reference and live) is raised to at least :data:`EPSILON` (1e-4) and the shares
are rescaled to sum to 1. So an empty bin or an unseen category costs a finite amount, and identical
distributions give a PSI of 0 (to rounding). The chi-square test needs no floor: its expected counts
are pooled from both sides, so a bucket either side uses expects more than zero.

A feature has drifted when its PSI reaches ``policy.psi``, when its test's p-value is below
``policy.ks_p_value / n`` with ``n`` the number of profiled features (Bonferroni: ``ks_p_value`` bounds
the chance that any feature of an undrifted window is flagged by its test), or when its missing rate moved
by more than ``policy.max_missing_rate_change``. A statistic that cannot be computed (an empty window, no
value present, a one-bucket comparison) is ``None`` with a note, and never counts as drift.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import stats

from shared.data.contract import DataContract, MonitoringPolicy, Task
from shared.ml.features import MISSING, boolean_text, is_missing
from shared.ml.training import PROBABILITY_PREFIX, bin_shares
from shared.serving.capture import CaptureRecord

__all__ = [
    "EPSILON",
    "UNSEEN",
    "DriftReport",
    "FeatureDrift",
    "PredictionDistribution",
    "PredictionDrift",
    "capture_frames",
    "compute_drift",
    "population_stability_index",
]

# Floor of a share in PSI (the epsilon rule of the module docstring).
EPSILON = 1e-4
# The bucket of categories (and predicted classes) the reference never saw.
UNSEEN = "__unseen__"
# scipy's ks_2samp computes an exact p-value when neither sample is larger than this (its 'auto' mode);
# up to it, scipy itself is called, above it the same statistic is computed without sorting the window.
_KS_EXACT_MAX = 10_000
# Bars per chart: a high-cardinality categorical keeps its largest categories and one "(other)" bar.
_PLOT_BUCKETS = 20
_BOOLEAN_EDGES = (-math.inf, 0.0, math.inf)
_BOOLEAN_BINS = ("false", "true")

FeatureKind = Literal["numeric", "boolean", "categorical"]
# A test's name, statistic and p-value.
_Test = tuple[Literal["ks", "chi2"], float, float]


class FeatureDrift(BaseModel):
    """One feature's drift statistics. ``bins`` / ``reference_shares`` / ``live_shares`` are for plotting
    (present values for numeric and boolean features; every row for categorical ones)."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: FeatureKind
    psi: float | None
    ks_statistic: float | None = None
    chi2_statistic: float | None = None
    p_value: float | None = None
    test: Literal["ks", "chi2"] | None = None
    missing_rate_reference: float
    missing_rate_live: float | None
    missing_rate_change: float | None
    live_rows: int
    values_present: int
    drifted: bool
    reasons: list[str] = []
    notes: list[str] = []
    bins: list[str] = []
    reference_shares: list[float] = []
    live_shares: list[float] = []


class PredictionDistribution(BaseModel):
    """One distribution of the model's outputs, reference (holdout) against live, for PSI and plots."""

    model_config = ConfigDict(frozen=True)

    title: str
    psi: float | None
    bins: list[str]
    reference_shares: list[float]
    live_shares: list[float]


class PredictionDrift(BaseModel):
    """Drift of what the model answers. Classification compares the predicted classes' shares and the
    histogram of the positive-class (binary) or largest (multiclass) probability; regression the
    predictions' quantile bins. ``psi`` is the largest of the distributions' PSIs."""

    model_config = ConfigDict(frozen=True)

    task: Task
    rows: int
    psi: float | None
    drifted: bool
    distributions: list[PredictionDistribution]
    reasons: list[str] = []
    notes: list[str] = []


class DriftReport(BaseModel):
    """Drift of one window against the reference profile, with the thresholds it was judged by.

    ``drift_share`` is the share of profiled features that drifted; ``p_value_threshold`` is the
    Bonferroni-corrected ``ks_p_value / len(features)``; ``absent_features`` are features no live row
    carries (counted as missing in every row, as serving treats an absent feature).
    """

    model_config = ConfigDict(frozen=True)

    rows: int
    features: list[FeatureDrift]
    prediction: PredictionDrift | None
    drift_share: float
    drifted_features: list[str]
    absent_features: list[str] = []
    psi_threshold: float
    p_value_threshold: float
    max_missing_rate_change: float
    epsilon: float = EPSILON
    notes: list[str] = []


# --- the statistics -------------------------------------------------------------------------------------


def _floored(shares: np.ndarray) -> np.ndarray:
    raised = np.maximum(shares, EPSILON)
    result: np.ndarray = raised / raised.sum()
    return result


def _comparable(reference: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both distributions over the buckets either side uses, floored and rescaled (the epsilon rule)."""
    used = (reference > 0) | (live > 0)
    return _floored(reference[used]), _floored(live[used])


def population_stability_index(
    reference: Sequence[float] | np.ndarray, live: Sequence[float] | np.ndarray
) -> float:
    """PSI = sum of (live - reference) * ln(live / reference) over shares of the same buckets, after the
    epsilon rule (a bucket empty on both sides is dropped; shares floored at :data:`EPSILON`, rescaled)."""
    expected, actual = _comparable(np.asarray(reference, dtype="float64"), np.asarray(live, dtype="float64"))
    if expected.size == 0:
        return 0.0
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _chi_square(reference_counts: np.ndarray, live_counts: np.ndarray) -> tuple[float, float] | None:
    """Pearson's chi-square test of homogeneity of the reference's and the window's counts over the same
    buckets (the 2 x k table, no continuity correction: :func:`scipy.stats.chi2_contingency` with
    ``correction=False``); buckets empty on both sides are dropped. None when fewer than two remain or a
    side is empty."""
    used = (reference_counts > 0) | (live_counts > 0)
    if int(used.sum()) < 2 or not reference_counts.sum() or not live_counts.sum():
        return None
    table = np.vstack([reference_counts[used], live_counts[used]])
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def _ks(live: np.ndarray, sample: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS of ``live`` against ``sample`` (both without NaN): the statistic and
    p-value :func:`scipy.stats.ks_2samp` returns for them in its default 'auto' mode.

    Up to :data:`_KS_EXACT_MAX` values a side, scipy is called (its exact p-value). Above, scipy evaluates
    both empirical CDFs at every value of both samples after sorting them; the largest gap between two
    step functions is reached at a value of one of them, and between two consecutive distinct sample values
    the sample's CDF is flat while the window's rises, so the gap is extreme either at a sample value or
    just below the next one. Counting the window's values at and below each distinct sample value (a
    search in the small sorted sample, no sort of the window) gives the same differences, computed as
    scipy computes them (count / size, subtracted), hence the same statistic, and the p-value comes from
    the same asymptotic distribution (``kstwo`` with ``round(m·n / (m + n))``).
    """
    n_live, n_ref = live.size, sample.size
    if max(n_live, n_ref) <= _KS_EXACT_MAX:
        result = stats.ks_2samp(live, sample)
        return float(result.statistic), float(result.pvalue)
    points, ref_counts = np.unique(sample, return_counts=True)
    ref_at_or_below = np.cumsum(ref_counts)
    ref_below = ref_at_or_below - ref_counts
    position = np.searchsorted(points, live, side="left")  # points[position - 1] < value <= points[position]
    at_point = points[np.minimum(position, points.size - 1)] == live
    live_at_or_below = np.cumsum(np.bincount(position, minlength=points.size + 1)[: points.size])
    live_below = live_at_or_below - np.bincount(position[at_point], minlength=points.size)
    differences = np.concatenate(
        [live_at_or_below / n_live - ref_at_or_below / n_ref, live_below / n_live - ref_below / n_ref]
    )
    statistic = max(float(differences.max()), float(np.clip(-differences.min(), 0, 1)), 0.0)
    larger, smaller = sorted([float(n_live), float(n_ref)], reverse=True)
    effective = larger * smaller / (larger + smaller)
    p_value = float(np.clip(stats.kstwo.sf(statistic, np.round(effective)), 0, 1))
    return statistic, p_value


# --- reading live columns -------------------------------------------------------------------------------


def _category_text(value: Any) -> str:
    # The serving rule (shared.ml.features.prepare_row): a category is compared as text.
    return MISSING if is_missing(value) else str(value)


def _boolean_value(value: Any) -> float:
    if is_missing(value):
        return math.nan
    if isinstance(value, str):
        parsed = boolean_text(value)
        return math.nan if parsed is None else parsed
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _as_float(column: pd.Series, kind: FeatureKind) -> tuple[np.ndarray, int]:
    """The column as float64 (NaN when missing), and how many present values could not be read."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan), 0
    if kind == "boolean":
        # Few distinct values: read each once (true/false, yes/no, 1/0 in any case, as serving reads them).
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        table = np.array([*(_boolean_value(u) for u in uniques), math.nan], dtype="float64")
        values = table[codes]  # code -1 (missing) picks the trailing NaN
        return values, int(np.isnan(values[codes >= 0]).sum())
    try:
        # Numbers and None in an object column (what captures hold): the fast conversion.
        return column.astype("float64").to_numpy(), 0
    except (TypeError, ValueError):
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return values, int(np.isnan(values).sum() - column.isna().sum())


def _category_counts(column: pd.Series) -> dict[str, int]:
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    counts = np.bincount(codes + 1, minlength=len(uniques) + 1)
    totals: dict[str, int] = {}
    if counts[0]:
        totals[MISSING] = int(counts[0])
    for value, count in zip(uniques, counts[1:], strict=True):
        if count:
            text = _category_text(value)
            totals[text] = totals.get(text, 0) + int(count)
    return totals


# --- features -------------------------------------------------------------------------------------------


def _edge_label(value: float) -> str:
    return f"{value:.4g}"


def _bin_labels(edges: Sequence[float]) -> list[str]:
    # bin_shares counts a value below the first edge in the first bin and above the last in the last, so
    # the end bins are open whatever their outer edges say.
    if len(edges) == 2:
        return ["all values"]
    pairs = list(itertools.pairwise(edges))
    inner = [f"({_edge_label(low)}, {_edge_label(high)}]" for low, high in pairs[1:-1]]
    return [f"≤ {_edge_label(pairs[0][1])}", *inner, f"> {_edge_label(pairs[-1][0])}"]


def _short(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


def _p_text(value: float) -> str:
    return "< 1e-300" if value == 0 else f"{value:.2g}"


class _Limits:
    """The thresholds a feature is judged by, with the Bonferroni-corrected p-value, and the number of
    training rows the profile describes (the reference side of the chi-square tests)."""

    def __init__(self, policy: MonitoringPolicy, features: int, reference_rows: int) -> None:
        self.reference_rows = reference_rows
        self.psi = policy.psi
        self.alpha = policy.ks_p_value
        self.features = max(features, 1)
        self.p_value = policy.ks_p_value / self.features
        self.missing = policy.max_missing_rate_change


def _judge(
    *,
    name: str,
    kind: FeatureKind,
    rows: int,
    present: int,
    missing_reference: float,
    psi: float | None,
    test: _Test | None,
    distribution: tuple[list[str], list[float], list[float]],
    notes: list[str],
    limits: _Limits,
) -> FeatureDrift:
    missing_live = (1 - present / rows) if rows else None
    change = (missing_live - missing_reference) if missing_live is not None else None
    reasons: list[str] = []
    if psi is not None and psi >= limits.psi:
        reasons.append(f"PSI {_short(psi)} ≥ {_short(limits.psi)}")
    kind_of_test, statistic, p_value = test if test else (None, None, None)
    if kind_of_test is not None and p_value is not None and p_value < limits.p_value:
        label = "KS" if kind_of_test == "ks" else "chi-square"
        reasons.append(f"{label} p {_p_text(p_value)} < {limits.p_value:.2g}")
    if change is not None and missing_live is not None and abs(change) > limits.missing:
        reasons.append(
            f"missing rate {missing_reference:.2f} → {missing_live:.2f} "
            f"(change {abs(change):.2f} > {limits.missing:.2f})"
        )
    bins, reference_shares, live_shares = distribution
    return FeatureDrift(
        name=name,
        kind=kind,
        psi=psi,
        ks_statistic=statistic if kind_of_test == "ks" else None,
        chi2_statistic=statistic if kind_of_test == "chi2" else None,
        p_value=p_value,
        test=kind_of_test,
        missing_rate_reference=missing_reference,
        missing_rate_live=missing_live,
        missing_rate_change=change,
        live_rows=rows,
        values_present=present,
        drifted=bool(reasons),
        reasons=reasons,
        notes=notes,
        bins=bins,
        reference_shares=reference_shares,
        live_shares=live_shares,
    )


def _numeric_drift(
    name: str,
    kind: FeatureKind,
    column: pd.Series | None,
    rows: int,
    reference: Mapping[str, Any],
    limits: _Limits,
) -> FeatureDrift:
    notes: list[str] = []
    values, unreadable = _as_float(column, kind) if column is not None else (np.full(rows, np.nan), 0)
    if unreadable:
        notes.append(f"{unreadable} value(s) could not be read as {kind}; counted as missing")
    present_values = values[~np.isnan(values)]
    present = int(present_values.size)
    if kind == "boolean":
        edges: Sequence[float] = _BOOLEAN_EDGES
        labels = list(_BOOLEAN_BINS)
        mean = reference.get("mean")
        reference_shares = [1.0 - float(mean), float(mean)] if mean is not None else [0.0, 0.0]
    else:
        edges = [float(e) for e in reference["edges"]]
        labels = _bin_labels(edges)
        reference_shares = [float(s) for s in reference["shares"]]
        if reference.get("std") == 0 and reference.get("mean") is not None:
            notes.append(
                f"the reference is constant ({_edge_label(float(reference['mean']))}): values below it "
                "share its bin, so PSI sees only values above it; the KS test sees both"
            )
    live_shares = bin_shares(present_values, edges)
    reference_array = np.asarray(reference_shares, dtype="float64")
    psi: float | None = None
    test: _Test | None = None
    if rows == 0:
        notes.append("the window has no rows")
    elif present == 0:
        notes.append("no live value is present: PSI and the test are not computed")
    elif not reference_array.sum():
        notes.append("the reference has no present value: PSI and the test are not computed")
    else:
        psi = population_stability_index(reference_array, live_shares)
        test = _numeric_test(kind, present_values, reference_array, live_shares, reference, limits, notes)
    return _judge(
        name=name,
        kind=kind,
        rows=rows,
        present=present,
        missing_reference=float(reference.get("missing_rate", 0.0)),
        psi=psi,
        test=test,
        distribution=(labels, reference_shares, live_shares),
        notes=notes,
        limits=limits,
    )


def _reference_counts(
    shares: np.ndarray, reference: Mapping[str, Any], rows: int, *, present_only: bool
) -> np.ndarray:
    """The training rows behind ``shares`` (shares of all ``rows``, or of the present values only)."""
    total = float(rows)
    if present_only:
        total = float(np.rint(total * (1 - float(reference.get("missing_rate", 0.0)))))
    counts: np.ndarray = np.rint(shares * total)
    return counts


def _numeric_test(
    kind: FeatureKind,
    present_values: np.ndarray,
    reference_shares: np.ndarray,
    live_shares: list[float],
    reference: Mapping[str, Any],
    limits: _Limits,
    notes: list[str],
) -> _Test | None:
    if kind == "boolean":
        counts = np.rint(np.asarray(live_shares) * present_values.size)
        chi = _chi_square(
            _reference_counts(reference_shares, reference, limits.reference_rows, present_only=True), counts
        )
        if chi is None:
            notes.append("one value on both sides: no chi-square test")
            return None
        return ("chi2", *chi)
    sample = np.asarray(reference.get("sample") or [], dtype="float64")
    if not sample.size:
        notes.append("the reference profile has no sample: no KS test")
        return None
    return ("ks", *_ks(present_values, sample))


def _plotted(
    buckets: list[str], reference: np.ndarray, live: np.ndarray
) -> tuple[list[str], list[float], list[float]]:
    """The buckets to draw: those in use, largest first when too many, the rest summed as "(other)"."""
    used = np.flatnonzero((reference > 0) | (live > 0))
    if used.size > _PLOT_BUCKETS:
        order = used[np.argsort(-np.maximum(reference[used], live[used]), kind="stable")]
        kept = np.sort(order[: _PLOT_BUCKETS - 1])
        rest = order[_PLOT_BUCKETS - 1 :]
        labels = [buckets[i] for i in kept] + [f"(other: {rest.size})"]
        return (
            labels,
            [*(float(reference[i]) for i in kept), float(reference[rest].sum())],
            [*(float(live[i]) for i in kept), float(live[rest].sum())],
        )
    return [buckets[i] for i in used], [float(reference[i]) for i in used], [float(live[i]) for i in used]


def _categorical_drift(
    name: str, column: pd.Series | None, rows: int, reference: Mapping[str, Any], limits: _Limits
) -> FeatureDrift:
    notes: list[str] = []
    frequencies: dict[str, float] = {str(k): float(v) for k, v in reference.get("frequencies", {}).items()}
    counts = _category_counts(column) if column is not None else ({MISSING: rows} if rows else {})
    buckets = [*frequencies, *([] if MISSING in frequencies else [MISSING]), UNSEEN]
    unseen = {k: v for k, v in counts.items() if k not in frequencies and k != MISSING}
    live_counts = np.asarray(
        [*(counts.get(b, 0) for b in buckets[:-1]), sum(unseen.values())], dtype="float64"
    )
    reference_shares = np.asarray([frequencies.get(b, 0.0) for b in buckets], dtype="float64")
    live_shares = live_counts / rows if rows else np.zeros_like(live_counts)
    if unseen:
        top = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))[:5]
        shown = ", ".join(f"{k!r} ({v})" for k, v in top)
        more = f" and {len(unseen) - len(top)} more" if len(unseen) > len(top) else ""
        notes.append(f"{sum(unseen.values())} row(s) hold {len(unseen)} unseen categories: {shown}{more}")
    if len(frequencies) == 1:
        notes.append(f"the reference is constant ({next(iter(frequencies))!r})")
    psi: float | None = None
    test: _Test | None = None
    present = rows - counts.get(MISSING, 0)
    if rows == 0:
        notes.append("the window has no rows")
    elif not frequencies:
        notes.append("the reference has no categories: PSI and the test are not computed")
    else:
        psi = population_stability_index(reference_shares, live_shares)
        chi = _chi_square(
            _reference_counts(reference_shares, reference, limits.reference_rows, present_only=False),
            live_counts,
        )
        if chi is None:
            notes.append("one category on both sides: no chi-square test")
        else:
            test = ("chi2", *chi)
    labels = ["(missing)" if b == MISSING else "(unseen)" if b == UNSEEN else b for b in buckets]
    return _judge(
        name=name,
        kind="categorical",
        rows=rows,
        present=present,
        missing_reference=float(reference.get("missing_rate", frequencies.get(MISSING, 0.0))),
        psi=psi,
        test=test,
        distribution=_plotted(labels, reference_shares, live_shares),
        notes=notes,
        limits=limits,
    )


# --- predictions ----------------------------------------------------------------------------------------


def _distribution(
    title: str, buckets: list[str], reference: np.ndarray, live: np.ndarray, rows: int
) -> PredictionDistribution:
    psi = population_stability_index(reference, live) if rows and reference.sum() else None
    bins, reference_shares, live_shares = _plotted(buckets, reference, live)
    return PredictionDistribution(
        title=title, psi=psi, bins=bins, reference_shares=reference_shares, live_shares=live_shares
    )


def _prediction_drift(
    predictions: pd.DataFrame, reference: Mapping[str, Any], task: Task, limits: _Limits
) -> PredictionDrift:
    rows = len(predictions)
    notes: list[str] = []
    distributions: list[PredictionDistribution] = []
    if rows == 0:
        notes.append("the window has no predictions")
    if "prediction" not in predictions.columns:
        notes.append("the predictions have no 'prediction' column")
    elif task is Task.REGRESSION:
        edges = [float(e) for e in reference["edges"]]
        values, _ = _as_float(predictions["prediction"], "numeric")
        shares = np.asarray(bin_shares(values, edges))
        ref = np.asarray(reference["shares"], dtype="float64")
        distributions.append(_distribution("prediction", _bin_labels(edges), ref, shares, rows))
    else:
        classes = [str(c) for c in reference.get("classes", [])]
        counts = _category_counts(predictions["prediction"])
        buckets = [*classes, UNSEEN]
        live_counts = [
            *(counts.get(c, 0) for c in classes),
            sum(v for k, v in counts.items() if k not in classes),
        ]
        live = np.asarray(live_counts, dtype="float64") / rows if rows else np.zeros(len(buckets))
        ref = np.asarray([reference["class_shares"].get(c, 0.0) for c in classes] + [0.0], dtype="float64")
        labels = [*classes, "(unseen)"]
        distributions.append(_distribution("predicted class", labels, ref, live, rows))
        block = reference.get("probability") or {}
        score, why = _probability_score(predictions, block, classes)
        if score is None:
            notes.append(why)
        else:
            edges = [float(e) for e in block["edges"]]
            shares = np.asarray(bin_shares(score, edges))
            title = (
                f"P({block['positive_class']})"
                if block.get("kind") == "positive_class"
                else "max probability"
            )
            ref_hist = np.asarray(block["shares"], dtype="float64")
            distributions.append(_distribution(title, _bin_labels(edges), ref_hist, shares, rows))
    computed = [d.psi for d in distributions if d.psi is not None]
    psi = max(computed) if computed else None
    reasons = [
        f"{d.title} PSI {_short(d.psi)} ≥ {_short(limits.psi)}"
        for d in distributions
        if d.psi is not None and d.psi >= limits.psi
    ]
    return PredictionDrift(
        task=task,
        rows=rows,
        psi=psi,
        drifted=bool(reasons),
        distributions=distributions,
        reasons=reasons,
        notes=notes,
    )


def _probability_score(
    predictions: pd.DataFrame, block: Mapping[str, Any], classes: list[str]
) -> tuple[np.ndarray | None, str]:
    if not block:
        return None, "the reference profile has no probability histogram"
    if block.get("kind") == "positive_class":
        column = f"{PROBABILITY_PREFIX}{block.get('positive_class')}"
        if column not in predictions.columns:
            return None, f"no {column!r} column: the probability histogram is not compared"
        return predictions[column].to_numpy(dtype="float64", na_value=np.nan), ""
    columns = [f"{PROBABILITY_PREFIX}{c}" for c in classes]
    absent = [c for c in columns if c not in predictions.columns]
    if absent:
        return None, f"no {absent} column(s): the probability histogram is not compared"
    matrix = predictions[columns].to_numpy(dtype="float64", na_value=np.nan)
    return (matrix.max(axis=1) if matrix.size else np.zeros(0)), ""


# --- the window -----------------------------------------------------------------------------------------


def compute_drift(
    live: pd.DataFrame,
    predictions: pd.DataFrame | None,
    profile: Mapping[str, Any],
    contract: DataContract,
    thresholds: MonitoringPolicy | None = None,
) -> DriftReport:
    """Drift of the window ``live`` (raw captured feature columns: numbers, text, booleans, None) against
    the reference ``profile``, judged by ``thresholds`` (the contract's ``monitoring_policy`` by default).

    ``predictions`` are the window's outputs, row for row, in :func:`shared.ml.training.predict_frame`'s
    columns (``prediction`` and, for classification, ``proba_<class>``; :func:`capture_frames` builds
    both frames from captures); None leaves prediction drift out. Features are those of the profile (what
    the model was trained on); one no live row carries is counted missing in every row and listed in
    ``absent_features``.
    """
    policy = thresholds or contract.monitoring_policy
    described: Mapping[str, Mapping[str, Any]] = profile.get("features", {})
    limits = _Limits(policy, len(described), int(profile.get("rows") or 0))
    rows = len(live)
    notes: list[str] = []
    absent = [name for name in described if name not in live.columns]
    unprofiled = [name for name in contract.features if name not in described]
    if unprofiled:
        notes.append(
            f"feature(s) {unprofiled} are in the contract but not in the reference profile: not compared"
        )
    if rows == 0:
        notes.append("the window is empty: nothing is compared")
    features: list[FeatureDrift] = []
    for name, reference in described.items():
        column = live[name] if name in live.columns else None
        kind: FeatureKind = reference.get("type", "numeric")
        if kind == "categorical":
            drift = _categorical_drift(name, column, rows, reference, limits)
        else:
            drift = _numeric_drift(name, kind, column, rows, reference, limits)
        if column is None:
            note = "absent from every live row: counted as missing, as serving treats an absent feature"
            drift = drift.model_copy(update={"notes": [note, *drift.notes]})
        features.append(drift)
    prediction = None
    if predictions is not None and "predictions" in profile:
        task = Task(profile.get("task", contract.task.value))
        prediction = _prediction_drift(predictions, profile["predictions"], task, limits)
    drifted = [f.name for f in features if f.drifted]
    return DriftReport(
        rows=rows,
        features=features,
        prediction=prediction,
        drift_share=len(drifted) / len(features) if features else 0.0,
        drifted_features=drifted,
        absent_features=absent,
        psi_threshold=limits.psi,
        p_value_threshold=limits.p_value,
        max_missing_rate_change=limits.missing,
        notes=notes,
    )


def capture_frames(
    records: Iterable[CaptureRecord | Mapping[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``(inputs, predictions)`` frames :func:`compute_drift` reads, from capture records (or their
    JSON objects): one row per capture, inputs as sent (object columns, values untouched), and
    ``prediction`` plus ``proba_<class>``."""
    inputs: list[Mapping[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for record in records:
        data = record.model_dump() if isinstance(record, CaptureRecord) else record
        inputs.append(data.get("inputs") or {})
        answer = data.get("outputs") or {}
        row = {"prediction": answer.get("prediction")}
        for label, probability in (answer.get("probabilities") or {}).items():
            row[f"{PROBABILITY_PREFIX}{label}"] = probability
        outputs.append(row)
    index = pd.RangeIndex(len(inputs))
    # Object columns keep each value as it was sent: inferring dtypes would turn a categorical 1 next to a
    # None into 1.0, which compares as the text "1.0", not the "1" that serving compared.
    return pd.DataFrame(inputs, index=index, dtype=object), pd.DataFrame(outputs, index=index, dtype=object)
