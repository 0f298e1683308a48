"""Where a stack keeps its feature views: ``feature-views/<view>.yaml`` in the data bucket.

:func:`put_view` checks a view completely (:func:`~shared.featurestore.view.parse_feature_view`, every
problem listed) and stores it; :func:`load_view` and :func:`load_views` read them back, for the ``features``
function, the pipeline's steps and ``flywheel features show``. Like contracts, a view is stored as the
YAML of its parsed form, and the bucket keeps every earlier version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from shared.errors import ContractError, NotFoundError
from shared.featurestore.view import VIEW_NAME, FeatureView, parse_feature_view
from shared.layout import DataPrefix
from shared.storage import ObjectRef, ObjectStore


def view_ref(bucket: str, view: str) -> ObjectRef:
    return ObjectRef(bucket, f"{DataPrefix.FEATURE_VIEWS}{view}.yaml")


def put_view(objects: ObjectStore, bucket: str, text: str | bytes) -> tuple[FeatureView, ObjectRef]:
    """Check a feature view (:class:`ContractError` lists every problem) and store it."""
    view = parse_feature_view(text)
    stored = objects.put(view_ref(bucket, view.view), view.to_yaml().encode(), "application/yaml")
    return view, stored


def load_view(objects: ObjectStore, bucket: str, view: str) -> FeatureView:
    """The stored view; :class:`NotFoundError` when there is none (or the name cannot be one)."""
    if not re.match(VIEW_NAME, view):
        raise NotFoundError(f"there is no feature view {view!r}: not a view name")
    try:
        stored = objects.get(view_ref(bucket, view))
    except NotFoundError as exc:
        raise NotFoundError(
            f"there is no feature view {view!r}; put one with `flywheel features put FILE`"
        ) from exc
    found = parse_feature_view(stored.body)
    if found.view != view:
        raise ContractError(
            f"{DataPrefix.FEATURE_VIEWS}{view}.yaml declares view {found.view!r}, not {view!r}"
        )
    return found


def load_views(objects: ObjectStore, bucket: str, names: Iterable[str]) -> dict[str, FeatureView | None]:
    """Each named view, or None for a name with no stored view (the caller says what that means)."""
    found: dict[str, FeatureView | None] = {}
    for name in names:
        try:
            found[name] = load_view(objects, bucket, name)
        except NotFoundError:
            found[name] = None
    return found


def view_names(objects: ObjectStore, bucket: str) -> list[str]:
    """Every stored view."""
    prefix = str(DataPrefix.FEATURE_VIEWS)
    return sorted(
        o.ref.key.removeprefix(prefix).removesuffix(".yaml")
        for o in objects.list(bucket, prefix)
        if o.ref.key.endswith(".yaml") and "/" not in o.ref.key.removeprefix(prefix)
    )
