"""User documents (contracts, feature views) are read within bounds: a kilobyte of nested YAML anchors is
refused at once instead of expanding into megabytes, and so are oversized, too deep and recursive ones."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.documents import MAX_DOCUMENT_BYTES, MAX_EXPANDED_NODES, DocumentTooLargeError, load_yaml
from shared.errors import ContractError

pytestmark = pytest.mark.unit


def laughs(levels: int, width: int = 9) -> str:
    """The billion-laughs document: each anchor is a list of ``width`` aliases to the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [6, 9, 12])
def test_nested_anchors_are_refused_before_anything_is_built(levels: int) -> None:
    """Given a YAML of a few hundred bytes whose anchors expand to 9**levels values
    When it is read as a contract
    Then it is refused in milliseconds with the expansion bound, as a ContractError (the CLI's exit 2)."""
    document = laughs(levels)
    assert len(document) < 1500
    started = time.perf_counter()
    with pytest.raises(DocumentTooLargeError, match=f"more than {MAX_EXPANDED_NODES:,} values") as refused:
        load_yaml(document, what="contract bomb.yaml")
    assert time.perf_counter() - started < 0.5
    assert isinstance(refused.value, ContractError)
    assert "contract bomb.yaml" in str(refused.value)


def test_a_few_aliases_are_still_allowed() -> None:
    assert load_yaml(laughs(3), what="c")["l2"] == [[["lol"] * 9] * 9] * 9


@pytest.mark.parametrize(
    ("document", "bound"),
    [
        ("x" * (MAX_DOCUMENT_BYTES + 1), "bytes"),
        ("[" * 100 + "]" * 100, "levels deep"),
        ("[" * 200_000, "levels deep"),  # deeper than PyYAML's own recursion can compose
        ("a: &a [*a]\n", "recursive"),
    ],
    ids=["oversized", "deep", "deeper-than-the-stack", "recursive"],
)
def test_oversized_deep_and_recursive_documents_are_refused(document: str, bound: str) -> None:
    with pytest.raises(DocumentTooLargeError, match=bound):
        load_yaml(document, what="view profile.yaml")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
        ),
        max_leaves=40,
    )
)
def test_an_ordinary_document_reads_as_safe_load_reads_it(value: object) -> None:
    import yaml

    text = yaml.safe_dump(value)
    assert load_yaml(text, what="d") == yaml.safe_load(text)
