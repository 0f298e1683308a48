"""DynamoDB tables: on-demand, encrypted, recoverable to any second of the last 35 days, and protected
from deletion where the stack says so."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions
from pulumi_aws.dynamodb import TableGlobalSecondaryIndexArgsDict, TableGlobalSecondaryIndexKeySchemaArgsDict

from infra.config import StackConfig
from infra.names import physical_name
from infra.spec import IndexSpec, TableSpec


class Tables(pulumi.ComponentResource):
    """The stack's tables, by logical name."""

    def __init__(
        self,
        name: str,
        tables: Sequence[TableSpec],
        *,
        project: str,
        stack: str,
        config: StackConfig,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:tables:Tables", name, None, opts)
        kept = ResourceOptions(parent=self, protect=config.protect, retain_on_delete=config.protect)
        self.tables: dict[str, aws.dynamodb.Table] = {
            spec.name: aws.dynamodb.Table(
                spec.name,
                name=physical_name(project, stack, spec.name),
                billing_mode="PAY_PER_REQUEST",
                hash_key=spec.partition_key.name,
                range_key=spec.sort_key.name if spec.sort_key else None,
                attributes=[{"name": key.name, "type": key.type} for key in spec.attributes()],
                global_secondary_indexes=[_index(index) for index in spec.indexes] or None,
                ttl=({"attribute_name": spec.ttl_attribute, "enabled": True} if spec.ttl_attribute else None),
                point_in_time_recovery={"enabled": True},
                server_side_encryption={"enabled": True},
                deletion_protection_enabled=config.protect,
                opts=kept,
            )
            for spec in tables
        }
        self.names: dict[str, Output[str]] = {n: t.name for n, t in self.tables.items()}
        self.register_outputs({"names": self.names})


def _index(index: IndexSpec) -> TableGlobalSecondaryIndexArgsDict:
    # key_schemas rather than hash_key/range_key, which the provider deprecates for indexes.
    keys: list[TableGlobalSecondaryIndexKeySchemaArgsDict] = [
        {"attribute_name": index.partition_key.name, "key_type": "HASH"}
    ]
    if index.sort_key is not None:
        keys.append({"attribute_name": index.sort_key.name, "key_type": "RANGE"})
    return {"name": index.name, "key_schemas": keys, "projection_type": "ALL"}
