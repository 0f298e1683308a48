"""``flywheel features put | show | list | push``: feature views in, feature files in, what a view holds.

The actions are functions over :class:`Services`, like ``cli/actions.py``, so tests and the demo call them
too; their texts and the click commands follow, and ``COMMANDS`` is what ``cli/main.py`` adds to ``flywheel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel, Field

from cli import render
from cli.common import Context, json_option, pass_context, report_push, reported
from cli.uploads import upload, wait_for_verdict
from shared.data.quarantine import FileKind, Refusal, quarantine_ref
from shared.data.validation import source_id_of
from shared.featurestore.catalog import load_view, put_view, view_names
from shared.featurestore.offline import offline_files, offline_prefix
from shared.featurestore.view import FeatureView
from shared.layout import DataPrefix
from shared.services import Services
from shared.storage import ObjectRef

# --- actions ----------------------------------------------------------------------------------------------


class ViewSummary(BaseModel):
    view: FeatureView
    uri: str
    offline_objects: int = 0


class FeaturePush(BaseModel):
    view: str
    uri: str
    version_id: str | None
    digest: str  # names the offline objects the file becomes (shared.featurestore.offline)


class FeatureArrival(BaseModel):
    """What the features function made of an upload: the offline objects holding its rows, or its
    quarantine report."""

    view: str
    source: str
    status: Literal["ingested", "quarantined"]
    offline: list[str] = Field(default_factory=list)
    quarantined_as: str | None = None
    problems: list[dict[str, Any]] = Field(default_factory=list)


def put(svc: Services, path: Path) -> tuple[FeatureView, str | None]:
    """Check a feature view (refused with every problem listed) and store it."""
    view, stored = put_view(svc.objects, svc.settings.data_bucket, path.read_bytes())
    return view, stored.version_id


def show(svc: Services, name: str) -> ViewSummary:
    bucket = svc.settings.data_bucket
    view = load_view(svc.objects, bucket, name)
    return ViewSummary(
        view=view,
        uri=f"s3://{bucket}/{DataPrefix.FEATURE_VIEWS}{name}.yaml",
        offline_objects=len(offline_files(svc.objects, bucket, name)),
    )


def list_views(svc: Services) -> list[str]:
    return view_names(svc.objects, svc.settings.data_bucket)


def push(svc: Services, path: Path, view: str, name: str | None = None) -> FeaturePush:
    """Upload a feature-source file under ``feature-sources/<view>/``; its arrival invokes the features
    function."""
    load_view(
        svc.objects, svc.settings.data_bucket, view
    )  # refuse early, with the reason, when there is none
    stored = upload(svc, path, f"{DataPrefix.FEATURE_SOURCES}{view}/{name or path.name}")
    return FeaturePush(
        view=view, uri=stored.uri, version_id=stored.version_id, digest=source_id_of(path.read_bytes())
    )


def wait_for_features(svc: Services, pushed: FeaturePush, timeout_s: float = 120.0) -> FeatureArrival:
    """Wait until the upload's rows are in the offline store, or its quarantine report is written."""
    source = ObjectRef.parse(pushed.uri, pushed.version_id)
    relative = source.key.removeprefix(f"{DataPrefix.FEATURE_SOURCES}{pushed.view}/")

    def ingested() -> FeatureArrival | None:
        offline = [
            o.ref.uri
            for o in svc.objects.list(source.bucket, offline_prefix(pushed.view))
            if o.ref.key.endswith(f"/{pushed.digest}.parquet")
        ]
        if not offline:
            return None
        return FeatureArrival(view=pushed.view, source=pushed.uri, status="ingested", offline=offline)

    def quarantined(refusal: Refusal) -> FeatureArrival:
        return FeatureArrival(
            view=pushed.view,
            source=pushed.uri,
            status="quarantined",
            quarantined_as=refusal.quarantined_as,
            problems=refusal.problems,
        )

    refused_at = quarantine_ref(FileKind.FEATURE_SOURCE, source.bucket, pushed.view, relative)
    unfinished = f"the feature file {pushed.uri} was not ingested"
    return wait_for_verdict(svc, source, refused_at, ingested, quarantined, unfinished, timeout_s)


# --- texts ------------------------------------------------------------------------------------------------


def view_text(summary: ViewSummary) -> str:
    view = summary.view
    lines = [
        f"{view.view}: {len(view.features)} feature(s) of {view.entity!r} by {view.event_time!r}, "
        f"valid for {view.ttl_days:g} day(s); {summary.offline_objects} offline object(s)",
        f"  stored  {summary.uri}",
    ]
    if view.description:
        lines.append(f"  {view.description}")
    rows = [
        (
            name,
            feature.type.value,
            "yes" if feature.nullable else "no",
            _range(feature.min, feature.max),
            ", ".join(feature.allowed) if feature.allowed else None,
        )
        for name, feature in view.features.items()
    ]
    return "\n".join([*lines, render.table(["feature", "type", "nullable", "range", "allowed"], rows)])


def arrival_text(arrival: FeatureArrival) -> str:
    if arrival.status == "ingested":
        shown = arrival.offline[:3]
        more = len(arrival.offline) - len(shown)
        return "\n".join(
            [
                f"{arrival.source} ingested into {arrival.view} "
                f"({len(arrival.offline)} offline object(s), one per event date)",
                *(f"  offline {uri}" for uri in shown),
                *([f"  ... and {more} more under the same view"] if more else []),
            ]
        )
    rows = [(p.get("rule"), p.get("column"), p.get("count"), p.get("message")) for p in arrival.problems]
    return "\n".join(
        [
            f"the feature file was refused and quarantined as {arrival.quarantined_as}",
            render.table(["rule", "column", "rows", "problem"], rows),
        ]
    )


def _range(low: float | None, high: float | None) -> str | None:
    if low is None and high is None:
        return None
    return f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"


# --- the commands ---------------------------------------------------------------------------------------


@click.group("features")
def features_group() -> None:
    """Feature views: shared features, offline for training and online for serving."""


@features_group.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_context
@reported
def features_put(ctx: Context, file: Path, as_json: bool) -> None:
    """Check a feature view and store it (refused with every problem listed)."""
    view, version = put(ctx.services, file)
    if as_json:
        click.echo(render.as_json({"view": view.view, "version_id": version, "definition": view}))
        return
    click.echo(
        f"feature view {view.view!r} stored ({len(view.features)} features of {view.entity!r}, "
        f"TTL {view.ttl_days:g} days); drop its files under {DataPrefix.FEATURE_SOURCES}{view.view}/"
    )


@features_group.command("show")
@click.argument("view")
@json_option
@pass_context
@reported
def features_show(ctx: Context, view: str, as_json: bool) -> None:
    """Print a feature view (its features, types and rules) and how many offline objects it has."""
    summary = show(ctx.services, view)
    if as_json:
        click.echo(render.as_json(summary))
        return
    click.echo(view_text(summary))


@features_group.command("list")
@json_option
@pass_context
@reported
def features_list(ctx: Context, as_json: bool) -> None:
    """Every stored feature view."""
    names = list_views(ctx.services)
    click.echo(render.as_json(names) if as_json else ("\n".join(names) or "no feature views yet"))


@features_group.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--view", required=True, help="The feature view the file's rows belong to.")
@click.option("--wait", is_flag=True, help="Wait for the ingestion; exit 2 if the file is refused.")
@json_option
@pass_context
@reported
def features_push(ctx: Context, file: Path, view: str, wait: bool, as_json: bool) -> None:
    """Upload a feature file (CSV or Parquet) under feature-sources/<view>/."""
    pushed = push(ctx.services, file, view)

    def verdict() -> tuple[FeatureArrival, str, bool]:
        arrival = wait_for_features(ctx.services, pushed)
        return arrival, arrival_text(arrival), arrival.status == "ingested"

    report_push(pushed, wait, as_json, verdict)


COMMANDS = (features_group,)
