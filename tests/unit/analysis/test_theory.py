"""The test-set agreements the decision map prints next to the agreement on its plane."""

from __future__ import annotations

from pertlearn.analysis.theory import agreements_on_test


def test_agreements_on_test_are_found_at_any_depth_and_in_either_order() -> None:
    theory = {
        "run": "x",
        "neurips": {"agree_f_g": 0.524, "agree_fhat_ghat": 0.534, "scenario_b": {}},
        "iclr": {"g_surrogate": {"agree_gtilde_ftilde": 0.505, "agree_gtilde_g": 0.8}},
    }
    pairs = [["f", "g"], ["fhat", "ghat"], ["ftilde", "gtilde"], ["f", "ftilde"]]
    assert agreements_on_test(theory, pairs) == {
        ("f", "g"): 0.524,
        ("fhat", "ghat"): 0.534,
        ("ftilde", "gtilde"): 0.505,
    }
