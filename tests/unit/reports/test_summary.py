"""The run summary explains metrics that look like failures, and warns about real ones."""

from __future__ import annotations

from pertlearn.reports.summary import format_stage_seconds, format_summary, reading_notes


def test_tiny_eps_binary_run_gets_notes_not_warnings() -> None:
    notes = reading_notes({"f_acc_train": 1.0, "fooling_rate": 0.508, "g_fit_acc": 0.5})
    assert len(notes) == 2 and all(n.startswith("note:") for n in notes)
    fit_note = notes[1]  # binary metrics do not say the scenario: the note reads for both
    assert "in scenario a the perturbations alone" in fit_note
    assert "in scenario b natural inputs" in fit_note


def test_images_run_with_a_low_hit_rate_is_warned() -> None:
    metrics = {"f_acc_train": 0.98, "fooling_rate": 0.3, "num_classes": 10, "chance": 0.1}
    (note,) = reading_notes(metrics)
    assert note.startswith("warning: only 30% of the adversarial examples reach their target")


def test_a_construction_f_does_not_label_as_matched_is_warned() -> None:
    metrics = {"f_acc_train": 0.98, "fooling_rate": 0.3, "num_classes": 10, "scenario": "robust"}
    (note,) = reading_notes(metrics)
    assert note.startswith("warning: f gives only 30% of the constructed images the label")
    assert "construction.steps" in note


def test_the_summary_lists_the_leakage_control_beside_g() -> None:
    text = format_summary({"g_acc_test": 0.9, "mislabeled_clean_acc_test": 0.01})
    lines = text.splitlines()
    assert any(line.startswith("mislabeled_clean_acc_test") and "0.0100" in line for line in lines)


def test_an_f_near_chance_is_warned() -> None:
    notes = reading_notes({"f_acc_train": 0.52, "fooling_rate": 0.9, "g_fit_acc": 1.0})
    assert notes == [notes[0]] and "f is near chance" in notes[0]


def test_the_summary_prints_clean_numbers() -> None:
    text = format_summary({"g_acc_test": 0.998, "seconds": 1.234})
    assert "0.9980" in text and "1.2" in text


def test_g_at_chance_while_f_is_not_is_warned() -> None:
    notes = reading_notes({"f_acc_train": 1.0, "f_acc_test": 0.997, "g_acc_test": 0.505})
    assert any(n.startswith("warning: g is at chance") for n in notes)


def test_a_closed_pipe_prints_no_error() -> None:
    import subprocess
    import sys

    command = f"{sys.executable} -m pertlearn presets | head -1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("quickstart") and done.stderr == ""


def test_stage_times_are_one_line_in_run_order() -> None:
    line = format_stage_seconds({"data": 0.04, "train_f": 1.25, "craft": 0.3, "evaluate": 0.0})
    assert line == "stages: data 0.0s · train f 1.2s · craft 0.3s · evaluate 0.0s"
    assert format_stage_seconds({}) == ""


def test_the_values_of_long_metric_names_stay_in_one_column() -> None:
    metrics = {
        "g_acc_test": 0.9,
        "orthogonality_condition": False,
        "mislabeled_clean_best_acc_test": 0.0775,
        "fooling_rate_per_class": {"0": 1.0},
    }
    rows = [line for line in format_summary(metrics).splitlines()[3:] if line[:1].isalpha()]
    rows = [row for row in rows if not row.startswith("fooling_rate_per_class")]
    assert len(rows) == 3
    assert len({len(row) for row in rows}) == 1  # every value ends in the same column
    assert all(" " in row[len("mislabeled_clean_best_acc_test") :] for row in rows)
