"""Where a stack keeps its feature views: ``feature-views/<view>.yaml`` in the data bucket.

:func:`put_view` checks a view completely (:func:`~shared.featurestore.view.parse_feature_view`, every
problem listed) and stores it; :func:`load_view` and :func:`load_views` read them back, for the ``features``
function, the pipeline's steps and ``flywheel features show``. Views are kept on a
:class:`~shared.data.catalog.Shelf`, as contracts are: stored as the YAML of their parsed form, read back the
same way, every earlier version kept by the bucket.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.data.catalog import Shelf
from shared.errors import NotFoundError
from shared.featurestore.view import FeatureView, parse_feature_view
from shared.layout import DataPrefix
from shared.naming import VIEW_NAME
from shared.storage import ObjectRef, ObjectStore

VIEWS = Shelf(
    DataPrefix.FEATURE_VIEWS,
    "view",
    parse_feature_view,
    "feature view",
    "features put",
    name_pattern=VIEW_NAME,
)


def view_ref(bucket: str, view: str) -> ObjectRef:
    return VIEWS.ref(bucket, view)


def put_view(objects: ObjectStore, bucket: str, text: str | bytes) -> tuple[FeatureView, ObjectRef]:
    """Check a feature view (:class:`ContractError` lists every problem) and store it."""
    view = parse_feature_view(text)
    return view, VIEWS.put(objects, bucket, view)


def load_view(objects: ObjectStore, bucket: str, view: str) -> FeatureView:
    """The stored view; :class:`NotFoundError` when there is none (or the name cannot be one)."""
    return VIEWS.load(objects, bucket, view)


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
    return VIEWS.names(objects, bucket)
