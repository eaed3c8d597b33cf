"""Hypothesis strategies that break valid documents the way files get broken: keys deleted, values of
another type, NaN and infinities, text cut short. Used by the readers' and the config's fuzz tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

# What a mutation may put in place of a value.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.just([]),
    st.just({}),
    st.lists(st.one_of(st.floats(-10, 100), st.just(float("nan"))), max_size=7),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in a JSON document: the keys and indices leading to it."""
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """A copy of ``doc`` after one to three deletions or replacements of its keys and items."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths(doc))
        if not places:
            break
        *parents, last = draw(st.sampled_from(places))
        parent = doc
        for key in parents:
            parent = parent[key]
        if draw(st.booleans()):
            del parent[last]
        else:
            parent[last] = draw(VALUES)
    return doc


@st.composite
def cut_short(draw: st.DrawFn, text: str) -> str:
    """``text``, or one time in ten its beginning only (a file whose writing was interrupted)."""
    return text[: draw(st.integers(0, len(text)))] if draw(st.integers(0, 9)) == 0 else text


@st.composite
def mutated_json(draw: st.DrawFn, doc: Any) -> str:
    """``doc`` mutated, as JSON text, maybe cut short."""
    # NaN and Infinity as JavaScript writes them, which Python's json reads.
    return draw(cut_short(json.dumps(draw(mutated(doc)))))
