"""The public API: a small top level, errors in hyperinit.errors, old names still resolving."""

from __future__ import annotations

import inspect

import pytest

import hyperinit
from hyperinit import errors


def test_top_level_holds_only_what_a_user_calls():
    assert len(hyperinit.__all__) <= 15
    for name in hyperinit.__all__:
        assert getattr(hyperinit, name) is not None


def test_every_error_is_a_hyperinit_error_and_lives_in_errors():
    classes = [getattr(errors, n) for n in errors.__all__]
    assert all(inspect.isclass(c) and issubclass(c, hyperinit.HyperInitError) for c in classes)
    assert not [n for n in hyperinit.__all__ if n.endswith("Error") and n != "HyperInitError"]


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("TraceError", "hyperinit.errors"),
        ("MODALITIES", "hyperinit.modalities"),
        ("default_example_input", "hyperinit.graph"),
        ("register_objective", "hyperinit.training"),
    ],
)
def test_moved_names_still_resolve_with_a_warning_that_names_the_new_home(name, module):
    new_home = getattr(__import__(module, fromlist=[name]), name)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name}"):
        assert getattr(hyperinit, name) is new_home


def test_unknown_names_are_still_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'initialise'"):
        hyperinit.initialise  # noqa: B018
