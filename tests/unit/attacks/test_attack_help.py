"""``help()`` of every built-in attack shows its options (the keyword arguments of its
constructor, which configs pass as ``attack.options``), not "Initialize self"."""

from __future__ import annotations

import inspect
import pydoc

import pytest

from pertlearn.attacks import attack_class, attack_names


@pytest.mark.parametrize("name", attack_names())
def test_help_of_an_attack_names_its_options(name: str) -> None:
    cls = attack_class(name)
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "Initialize self" not in text
    options = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    described = inspect.getdoc(cls.__init__) or ""  # what help() prints under __init__
    for option in ["eps", *options]:
        assert f"{option}" in described, (name, option)
