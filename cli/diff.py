"""``flywheel diff MODEL:A MODEL:B``: what differs between two registered versions of one model.

Code (digests, the files that changed and their diff), parameters, the datasets each was trained on,
metrics, serving flavour and serving figures. Each version's recorded metrics were measured on its own
run's holdout, so they do not compare; the diff also scores both versions on one holdout, B's (the version
named second), loading each model as the pipeline does (its bytes and its code checked against their
sha256) and scoring it as Evaluate scores a candidate against production.

The action is a function over :class:`Services`, like ``cli/actions.py``; its text and the click command
follow, and ``COMMANDS`` is what ``cli/main.py`` adds to ``flywheel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import click
from pydantic import BaseModel

from cli import render
from cli.actions import trained_on
from cli.common import Context, json_option, pass_context, reported, version_reference
from shared.data.datasets import read_parquet
from shared.errors import ContractError, IntegrityError, NotFoundError, TransientError
from shared.featurestore.contracts import load_training_contract
from shared.layout import RunArtifact
from shared.ml.evaluation import Evaluation
from shared.ml.projects import FileChange, changed_files
from shared.pipeline.steps import load_model, model_code, score_or_note
from shared.registry import ModelVersion
from shared.services import Services

# What Verify records on a version (shared.pipeline.verification), in the order people read them.
SERVING_FIGURES: Final = ("p50_ms", "p95_ms", "p99_ms", "load_seconds", "error_rate")
DIFF_LINES: Final = 200

# --- the comparison ---------------------------------------------------------------------------------------


class VersionSummary(BaseModel):
    version: int
    stage: str
    run_id: str
    registered_at: datetime


class VersionCode(BaseModel):
    digest: str
    uri: str
    commit: str | None = None


class ValueChange(BaseModel):
    key: str
    a: Any = None
    b: Any = None


class KeyChanges(BaseModel):
    """Keys whose value differs, keys only B has (``added``) and keys only A has (``removed``)."""

    changed: list[ValueChange] = []
    added: list[ValueChange] = []
    removed: list[ValueChange] = []


class CodeComparison(BaseModel):
    a: VersionCode | None
    b: VersionCode | None
    same: bool
    files: list[FileChange] = []
    diff: list[str] = []
    diff_lines_cut: int = 0
    code_version: ValueChange
    code_commit: ValueChange


class DatasetsComparison(BaseModel):
    both: list[str]
    only_a: list[dict[str, Any]]
    only_b: list[dict[str, Any]]
    source_files_only_a: list[str]
    source_files_only_b: list[str]


class Holdout(BaseModel):
    version: int
    run_id: str
    uri: str
    sha256: str
    rows: int


class MetricsComparison(BaseModel):
    """``recorded``: each version's metrics at registration, on its own holdout (not comparable).
    ``a`` and ``b``: both versions scored now on one ``holdout`` (B's)."""

    recorded: dict[str, dict[str, Any]]
    holdout: Holdout | None
    a: Evaluation | None
    b: Evaluation | None
    notes: list[str] = []


class Flavour(BaseModel):
    flavor: str
    reason: str = ""


class Figure(BaseModel):
    figure: str
    a: float | None
    b: float | None
    difference: float | None


class Comparison(BaseModel):
    model: str
    a: VersionSummary
    b: VersionSummary
    code: CodeComparison
    params: KeyChanges
    datasets: DatasetsComparison
    metrics: MetricsComparison
    flavour: dict[str, Flavour]
    serving: list[Figure]


def compare(svc: Services, a: ModelVersion, b: ModelVersion, max_diff_lines: int = DIFF_LINES) -> Comparison:
    """Everything that differs between versions ``a`` and ``b`` of one model, with both scored on B's
    holdout."""
    return Comparison(
        model=b.name,
        a=_summary(a),
        b=_summary(b),
        code=compare_code(svc, a, b, max_diff_lines),
        params=key_changes(a.params, b.params),
        datasets=compare_datasets(trained_on(svc, a), trained_on(svc, b)),
        metrics=score_on_one_holdout(svc, a, b),
        flavour={
            "a": Flavour(flavor=a.serving_flavor.value, reason=a.flavor_reason),
            "b": Flavour(flavor=b.serving_flavor.value, reason=b.flavor_reason),
        },
        serving=serving_figures(a.runtime_metrics, b.runtime_metrics),
    )


def compare_code(svc: Services, a: ModelVersion, b: ModelVersion, max_diff_lines: int) -> CodeComparison:
    """The two versions' code digests and, when both are model projects with different code, the files
    that changed (both archives read from S3 and checked against their recorded sha256)."""
    compared = CodeComparison(
        a=_code(a),
        b=_code(b),
        same=_digest(a) == _digest(b),
        code_version=ValueChange(key="code_version", a=a.code_version, b=b.code_version),
        code_commit=ValueChange(key="code_commit", a=a.code_commit, b=b.code_commit),
    )
    if compared.same:
        return compared
    old = model_code(svc, a.code_artifact, a.name)
    new = model_code(svc, b.code_artifact, b.name)
    if old is None or new is None:  # a built-in estimator has no code to compare files with
        return compared
    changes = changed_files(old, new, max_lines=max_diff_lines)
    return compared.model_copy(
        update={"files": list(changes.files), "diff": list(changes.diff), "diff_lines_cut": changes.lines_cut}
    )


def key_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> KeyChanges:
    """How mapping ``b`` differs from ``a``, key by key (sorted)."""
    changes = KeyChanges()
    for key in sorted(a.keys() | b.keys()):
        if key not in a:
            changes.added.append(ValueChange(key=key, b=b[key]))
        elif key not in b:
            changes.removed.append(ValueChange(key=key, a=a[key]))
        elif a[key] != b[key]:
            changes.changed.append(ValueChange(key=key, a=a[key], b=b[key]))
    return changes


def compare_datasets(a: Mapping[str, Any], b: Mapping[str, Any]) -> DatasetsComparison:
    """Which datasets (and source files) both versions trained on, and which only one did; ``a`` and ``b``
    are what :func:`cli.actions.trained_on` says of each."""
    ids_a = {d["dataset_id"] for d in a["datasets"]}
    ids_b = {d["dataset_id"] for d in b["datasets"]}
    return DatasetsComparison(
        both=sorted(ids_a & ids_b),
        only_a=[d for d in a["datasets"] if d["dataset_id"] not in ids_b],
        only_b=[d for d in b["datasets"] if d["dataset_id"] not in ids_a],
        source_files_only_a=[f for f in a["source_files"] if f not in b["source_files"]],
        source_files_only_b=[f for f in b["source_files"] if f not in a["source_files"]],
    )


def score_on_one_holdout(svc: Services, a: ModelVersion, b: ModelVersion) -> MetricsComparison:
    """Both versions scored on B's holdout with the model's contract as the pipeline reads it today, beside
    the metrics each recorded on its own holdout. What cannot be scored is a note, not a failure; bytes that
    do not match their sha256 are (:class:`~shared.errors.IntegrityError`)."""
    recorded = {"a": a.metrics, "b": b.metrics}
    try:
        artifact = svc.metadata.get_artifact(f"{b.run_id}/{RunArtifact.HOLDOUT}")
        contract = load_training_contract(svc.objects, svc.settings, b.name).contract
    except (NotFoundError, ContractError) as exc:
        note = f"v{b.version}'s holdout cannot be scored ({type(exc).__name__}: {exc})"
        return MetricsComparison(recorded=recorded, holdout=None, a=None, b=None, notes=[note])
    frame = read_parquet(svc.objects, artifact.uri, artifact.sha256)
    holdout = Holdout(
        version=b.version, run_id=b.run_id, uri=artifact.uri, sha256=artifact.sha256, rows=len(frame)
    )
    scores: dict[str, Evaluation | None] = {}
    notes: list[str] = []
    for side, version in (("a", a), ("b", b)):
        try:
            pipeline = load_model(svc, version.artifact, version.code_artifact, model=version.name)
        except (IntegrityError, TransientError):
            raise  # altered bytes are never a footnote, and a hiccup is worth trying again
        # Anything else (an old version's code that no longer imports here, say) is a note: compare the rest.
        except Exception as exc:
            scores[side] = None
            notes.append(f"v{version.version} could not be loaded ({type(exc).__name__}: {exc})")
            continue
        scores[side], noted = score_or_note(pipeline, frame, contract, f"v{version.version}")
        notes += noted
    return MetricsComparison(recorded=recorded, holdout=holdout, a=scores["a"], b=scores["b"], notes=notes)


def serving_figures(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Figure]:
    """The figures Verify recorded on each version's serving path, and B's minus A's."""

    def number(figures: Mapping[str, Any], name: str) -> float | None:
        value = figures.get(name)
        return float(value) if isinstance(value, int | float) else None

    figures = []
    for name in SERVING_FIGURES:
        first, second = number(a, name), number(b, name)
        difference = second - first if first is not None and second is not None else None
        figures.append(Figure(figure=name, a=first, b=second, difference=difference))
    return figures


def _summary(version: ModelVersion) -> VersionSummary:
    return VersionSummary(
        version=version.version,
        stage=version.stage.value,
        run_id=version.run_id,
        registered_at=version.created_at,
    )


def _code(version: ModelVersion) -> VersionCode | None:
    ref = version.code_artifact
    return VersionCode(digest=ref.sha256, uri=ref.uri, commit=version.code_commit) if ref else None


def _digest(version: ModelVersion) -> str | None:
    return version.code_artifact.sha256 if version.code_artifact else None


# --- text -------------------------------------------------------------------------------------------------


def comparison_text(view: Comparison, show_code: bool = False) -> str:
    """The comparison for people: one section per aspect, the two versions side by side."""
    a, b = f"v{view.a.version}", f"v{view.b.version}"
    lines = [
        f"{view.model}: {a} against {b}",
        _indented(
            render.table(
                ["", a, b],
                [
                    ("stage", view.a.stage, view.b.stage),
                    ("registered", view.a.registered_at, view.b.registered_at),
                    ("run", view.a.run_id, view.b.run_id),
                ],
            )
        ),
        "",
        *_code_lines(view.code, a, b, show_code),
        "",
        "parameters",
        *_key_change_lines(view.params, a, b),
        "",
        *_dataset_lines(view.datasets, a, b),
        "",
        *_metric_lines(view.metrics, a, b),
        "",
        "serving flavour",
        *(
            f"  {label:<4} {flavour.flavor:<8} {_short(flavour.reason)}".rstrip()
            for label, flavour in ((a, view.flavour["a"]), (b, view.flavour["b"]))
        ),
        "",
        "serving figures (recorded by Verify)",
        _indented(
            render.table(
                ["figure", a, b, "change"],
                [
                    (
                        f.figure,
                        _figure(f.figure, f.a),
                        _figure(f.figure, f.b),
                        _figure(f.figure, f.difference, True),
                    )
                    for f in view.serving
                ],
            )
        ),
    ]
    return "\n".join(lines)


def _code_lines(code: CodeComparison, a: str, b: str, show_code: bool) -> list[str]:
    def digest(side: VersionCode | None) -> str:
        return side.digest[:16] if side else "none (built-in estimator)"

    lines = ["code", f"  digest        {a} {digest(code.a)}", f"                {b} {digest(code.b)}"]
    for change in (code.code_version, code.code_commit):
        if change.a != change.b:
            lines.append(f"  {change.key:<13} {change.a or '-'} -> {change.b or '-'}")
    if code.a is None or code.b is None:
        return lines
    if code.same:
        return [*lines, "  the same code"]
    for file in code.files:
        lines.append(f"  {file.change:<9} {file.path}  +{file.lines_added} -{file.lines_removed}")
    if not show_code:
        total = len(code.diff) + code.diff_lines_cut
        return [*lines, f"  (--show-code prints the diff: {total} lines)"]
    lines += [f"    {line}" for line in code.diff]
    if code.diff_lines_cut:
        lines.append(f"    ... {code.diff_lines_cut} more lines cut (--max-lines to see more)")
    return lines


def _key_change_lines(changes: KeyChanges, a: str, b: str) -> list[str]:
    rows = [
        *((c.key, _param(c.a), _param(c.b), "changed") for c in changes.changed),
        *((c.key, None, _param(c.b), "added") for c in changes.added),
        *((c.key, _param(c.a), None, "removed") for c in changes.removed),
    ]
    if not rows:
        return ["  the same"]
    return [_indented(render.table(["key", a, b, ""], rows))]


def _dataset_lines(datasets: DatasetsComparison, a: str, b: str) -> list[str]:
    lines = ["datasets"]
    if datasets.both:
        shown = ", ".join(datasets.both[:3]) + (
            f" and {len(datasets.both) - 3} more" if len(datasets.both) > 3 else ""
        )
        lines.append(f"  both      {len(datasets.both)}: {shown}")
    for label, only in ((a, datasets.only_a), (b, datasets.only_b)):
        for dataset in only:
            span = dataset.get("time_range") or {}
            lines.append(
                f"  {label + ' only':<9} {dataset['dataset_id']}  {dataset['rows']} rows  "
                f"{(span.get('start') or '')[:10]}..{(span.get('end') or '')[:10]}"
            )
    for label, files in ((a, datasets.source_files_only_a), (b, datasets.source_files_only_b)):
        if files:
            lines.append(f"  {len(files)} source file(s) only {label} read, e.g. {files[0]}")
    return lines


def _metric_lines(metrics: MetricsComparison, a: str, b: str) -> list[str]:
    lines = []
    if metrics.holdout is not None:
        held = metrics.holdout
        scored_a = metrics.a.metrics if metrics.a else {}
        scored_b = metrics.b.metrics if metrics.b else {}
        names = sorted(scored_a.keys() | scored_b.keys())
        lines += [
            f"metrics on one holdout: v{held.version}'s ({held.rows} rows, run {held.run_id})",
            f"  {held.uri}",
            _indented(
                render.table(
                    ["metric", a, b, "change"],
                    [
                        (
                            m,
                            _number(scored_a.get(m)),
                            _number(scored_b.get(m)),
                            _signed(_minus(scored_b, scored_a, m)),
                        )
                        for m in names
                    ],
                )
            ),
        ]
    lines += [f"  note: {note}" for note in metrics.notes]
    recorded_a, recorded_b = metrics.recorded["a"], metrics.recorded["b"]
    lines += [
        "metrics recorded at registration, each on its own run's holdout",
        _indented(
            render.table(
                ["metric", a, b],
                [
                    (m, _number(recorded_a.get(m)), _number(recorded_b.get(m)))
                    for m in sorted(recorded_a.keys() | recorded_b.keys())
                ],
            )
        ),
    ]
    return lines


def _param(value: Any) -> str:
    # As written in the contract: render.table would round a float (a tolerance of 1e-4 is not 0.000).
    return "-" if value is None else str(value)


def _figure(name: str, value: float | None, signed: bool = False) -> str | None:
    if value is None:
        return None
    sign = "+" if signed else ""
    if name == "error_rate":
        return f"{value:{sign}.2%}"
    return f"{value:{sign}.1f}" if name.endswith("_ms") else f"{value:{sign}.3f}"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _minus(b: Mapping[str, float], a: Mapping[str, float], name: str) -> float | None:
    return b[name] - a[name] if name in a and name in b else None


def _number(value: Any) -> str | None:
    return f"{value:.4f}" if isinstance(value, int | float) else None


def _signed(value: float | None) -> str | None:
    return f"{value:+.4f}" if value is not None else None


def _indented(text: str) -> str:
    return "\n".join(f"  {line}".rstrip() for line in text.splitlines())


# --- the command ------------------------------------------------------------------------------------------


def one_model(first: str, second: str) -> tuple[str, tuple[int, int]]:
    """The model and the two version numbers ``MODEL:A`` and ``MODEL:B`` name; a usage error (exit 2) when
    either is not a reference or they name two models."""
    name, number_a = version_reference(first, "'MODEL:A'")
    other, number_b = version_reference(second, "'MODEL:B'")
    if other != name:
        raise click.BadParameter(
            f"compare two versions of one model: {first!r} and {second!r} name {name!r} and {other!r}",
            param_hint="'MODEL:B'",
        )
    return name, (number_a, number_b)


def registered(svc: Services, name: str, numbers: tuple[int, int]) -> tuple[ModelVersion, ModelVersion]:
    """The two versions; a usage error (exit 2) naming the reference when one is not registered."""
    found = []
    for number, hint in zip(numbers, ("'MODEL:A'", "'MODEL:B'"), strict=True):
        try:
            found.append(svc.registry.get_model_version(name, number))
        except NotFoundError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from exc
    return found[0], found[1]


@click.command("diff")
@click.argument("first", metavar="MODEL:A")
@click.argument("second", metavar="MODEL:B")
@click.option("--show-code", is_flag=True, help="Print the unified diff of the model code's files.")
@click.option(
    "--max-lines",
    type=click.IntRange(min=1),
    default=DIFF_LINES,
    show_default=True,
    help="Cut the diff here.",
)
@json_option
@pass_context
@reported
def diff_command(
    ctx: Context, first: str, second: str, show_code: bool, max_lines: int, as_json: bool
) -> None:
    """What differs between two versions of one model: code, params, datasets, metrics on B's holdout,
    flavour and serving figures."""
    name, numbers = one_model(first, second)
    a, b = registered(ctx.services, name, numbers)
    view = compare(ctx.services, a, b, max_lines)
    click.echo(render.as_json(view) if as_json else comparison_text(view, show_code))


COMMANDS = (diff_command,)
