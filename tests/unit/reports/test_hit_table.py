"""Per-class target-hit tables with the classes below the threshold highlighted."""

from __future__ import annotations

import re

from pertlearn.reports.hit_table import LOW_STYLE, run_hit_table, sweep_hit_table


def _highlighted(page: str) -> list[str]:
    return re.findall(rf'<td style="{re.escape(LOW_STYLE)}">([^<]*)</td>', page)


def test_run_table_highlights_the_classes_below_the_threshold() -> None:
    metrics = {"fooling_rate": 0.6, "fooling_rate_per_class": {"0": 0.9, "1": 0.2, "2": 0.49}}
    page = run_hit_table(metrics)
    assert "<h2>Target hits per class</h2>" in page
    assert _highlighted(page) == ["0.2", "0.49"]
    assert "<td>0.9</td>" in page and "<td>0.6</td>" in page  # the overall row, not low
    assert "(2 cell(s))" in page
    assert _highlighted(run_hit_table(metrics, threshold=0.1)) == []


def test_run_table_names_each_class_with_its_index() -> None:
    metrics = {"fooling_rate_per_class": {"0": 0.9, "1": 0.2}}
    rows = re.findall(
        r'<td class="l">([^<]*)</td>', run_hit_table(metrics, class_names=["a&b", "1"])
    )
    assert rows == ["a&amp;b (0)", "1"]  # a name that is its index is shown once
    assert re.findall(r'<td class="l">([^<]*)</td>', run_hit_table(metrics)) == ["0", "1"]


def test_run_table_is_empty_without_per_class_rates() -> None:
    assert run_hit_table({"fooling_rate": 0.3}) == ""


def test_sweep_table_has_a_row_per_run_and_a_column_per_class() -> None:
    rows = [
        {
            "run_id": "a",
            "attack.eps": 1.0,
            "seed": 0,
            "fooling_rate": 0.3,
            **{f"fooling_rate_per_class.{k}": v for k, v in enumerate([0.1, 0.8] + [0.7] * 9)},
        },
        {"run_id": "b", "attack.eps": 2.0, "seed": 0, "fooling_rate": 0.9},
    ]
    page = sweep_hit_table(rows, ["attack.eps"])
    head = re.findall(r"<th>([^<]*)</th>", page)
    assert head == ["run_id", "attack.eps", "seed", *[str(k) for k in range(11)], "all"]
    assert page.count("<tr>") == 3  # header and two runs
    assert _highlighted(page) == ["0.1", "0.3"]
    assert sweep_hit_table([{"run_id": "a", "fooling_rate": 0.2}], []) == ""


def test_sweep_table_names_the_classes_its_runs_share() -> None:
    rows = [
        {"run_id": "a", "seed": 0, "fooling_rate_per_class.0": 0.9, "fooling_rate_per_class.1": 0.2}
    ]
    page = sweep_hit_table(rows, [], class_names=["cat", "dog"])
    head = re.findall(r"<th>([^<]*)</th>", page)
    assert head == ["run_id", "seed", "cat (0)", "dog (1)", "all"]
