"""Reading the YAML documents users send (data contracts, feature views) within bounds.

YAML's anchors and aliases let a kilobyte name a document of gigabytes: each alias is a reference to a
node, so ``a: &a [x, x]`` / ``b: &b [*a, *a]`` / … doubles with every line. PyYAML composes such a document
as a small graph of shared nodes (cheap); it is what comes after — pydantic validating every element,
``model_dump_json`` writing it out, DynamoDB storing it — that pays for the whole expansion. So the graph is
measured before anything is built from it: the text's size, its nesting depth, how many aliases it uses,
and how many nodes it would be once every alias is expanded (counted on the graph, each shared node once,
so the count itself costs nothing). A document past any bound is refused with the bound it broke.
"""

from __future__ import annotations

from typing import Any

import yaml

from shared.errors import ContractError

# A real contract is a few KB with a few hundred nodes and no aliases; these leave two orders of margin.
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_EXPANDED_NODES = 50_000
MAX_DEPTH = 64
MAX_ALIASES = 1_000


class DocumentTooLargeError(ContractError):
    """A YAML document past a size, depth or alias-expansion bound; nothing of it was built."""


def load_yaml(text: str, *, what: str) -> Any:
    """``text`` as Python data, like ``yaml.safe_load``, refused past the bounds above (``what`` names the
    document in the error: ``contract churn.yaml``)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLargeError(
            f"{what}: {size:,} bytes; a document may have at most {MAX_DOCUMENT_BYTES:,}"
        )
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # PyYAML composes recursively: a document deeper than Python's stack
            raise DocumentTooLargeError(f"{what}: nested more than {MAX_DEPTH} levels deep") from None
        if node is None:
            return None
        _measure(node, what)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _measure(root: yaml.Node, what: str) -> None:
    """Refuse a graph whose expansion, depth or alias count is past the bounds (iteratively: a deep
    document must not exhaust Python's stack while being measured)."""
    expanded: dict[int, int] = {}  # node id -> nodes it expands to
    on_path: set[int] = set()
    references = 0
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in _children(node))
            if expanded[key] > MAX_EXPANDED_NODES:
                raise DocumentTooLargeError(
                    f"{what}: its aliases expand to more than {MAX_EXPANDED_NODES:,} values; "
                    "write the document out instead of nesting anchors"
                )
            continue
        if key in on_path:
            raise DocumentTooLargeError(
                f"{what}: an alias refers to the node it is inside (a recursive document)"
            )
        if key in expanded:  # an alias to a node measured already
            references += 1
            if references > MAX_ALIASES:
                raise DocumentTooLargeError(f"{what}: more than {MAX_ALIASES:,} aliases")
            continue
        if depth > MAX_DEPTH:
            raise DocumentTooLargeError(f"{what}: nested more than {MAX_DEPTH} levels deep")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(_children(node)))
