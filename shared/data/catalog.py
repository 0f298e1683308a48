"""Where a stack keeps its YAML documents — data contracts and feature views — and how they are read back.

A document lives in the data bucket as ``<prefix><name>.yaml`` (``contracts/churn.yaml``,
``feature-views/customer_profile.yaml``), stored as the YAML of its parsed form; the bucket keeps every
earlier version. A :class:`Shelf` is one kind of document: it reads one back (parsed, and refused when it
names another document than its key does), stores one, and lists them — the same way for every kind.

Checking a contract completely before it is stored (its estimator's parameters, the feature views it lists)
needs more than the contract itself: :func:`shared.featurestore.contracts.put_contract` does it. Imports
neither pandas nor boto3, so the trigger reads contracts without paying for either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.data.contract import DataContract, parse_contract
from shared.errors import ContractError, FlywheelError, NotFoundError
from shared.layout import DataPrefix
from shared.settings import Settings
from shared.storage import ObjectRef, ObjectStore

SUFFIX = ".yaml"


class Document(Protocol):
    def to_yaml(self) -> str: ...


@dataclass(frozen=True)
class Shelf[D: Document]:
    """One kind of YAML document kept under ``prefix`` in the data bucket."""

    prefix: DataPrefix
    field: str  # the document's field that names it: "model", "view"
    parse: Callable[[str | bytes], D]
    kind: str  # how messages call one, before its name: "data contract for model", "feature view"
    put_command: str  # the flywheel command that stores one: "contract put"
    missing: type[FlywheelError] = NotFoundError  # what reading one that is not there raises
    name_pattern: str | None = None  # a name that cannot be a document's is not looked up

    def name_of(self, document: D) -> str:
        return str(getattr(document, self.field))

    def ref(self, bucket: str, name: str) -> ObjectRef:
        return ObjectRef(bucket, f"{self.prefix}{name}{SUFFIX}")

    def load(self, objects: ObjectStore, bucket: str, name: str) -> D:
        """The stored document, parsed; :attr:`missing` when there is none, :class:`ContractError` when it
        no longer parses or names another document than its key."""
        if self.name_pattern is not None and not re.match(self.name_pattern, name):
            raise self.missing(f"there is no {self.kind} {name!r}: not a {self.field} name")
        try:
            stored = objects.get(self.ref(bucket, name))
        except NotFoundError as exc:
            hint = f"put one with `flywheel {self.put_command} FILE`"
            raise self.missing(f"there is no {self.kind} {name!r}; {hint}") from exc
        document = self.parse(stored.body)
        found = self.name_of(document)
        if found != name:
            raise ContractError(f"{self.prefix}{name}{SUFFIX} declares {self.field} {found!r}, not {name!r}")
        return document

    def put(self, objects: ObjectStore, bucket: str, document: D) -> ObjectRef:
        """Store ``document`` (already checked) as the YAML of its parsed form."""
        return objects.put(
            self.ref(bucket, self.name_of(document)), document.to_yaml().encode(), "application/yaml"
        )

    def names(self, objects: ObjectStore, bucket: str) -> list[str]:
        """Every stored document's name."""
        prefix = str(self.prefix)
        return sorted(
            o.ref.key.removeprefix(prefix).removesuffix(SUFFIX)
            for o in objects.list(bucket, prefix)
            if o.ref.key.endswith(SUFFIX) and "/" not in o.ref.key.removeprefix(prefix)
        )


CONTRACTS = Shelf(
    DataPrefix.CONTRACTS, "model", parse_contract, "data contract for model", "contract put", ContractError
)


def contract_ref(settings: Settings, model: str) -> ObjectRef:
    return CONTRACTS.ref(settings.data_bucket, model)


def load_contract(objects: ObjectStore, settings: Settings, model: str) -> DataContract:
    """The model's contract; :class:`ContractError` when there is none (or it no longer parses)."""
    return CONTRACTS.load(objects, settings.data_bucket, model)


def contract_models(objects: ObjectStore, settings: Settings) -> list[str]:
    """Every model that has a contract."""
    return CONTRACTS.names(objects, settings.data_bucket)
