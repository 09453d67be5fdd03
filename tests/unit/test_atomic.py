"""Atomic writes reach the disk before their final name: the written files are flushed
(``fsync``) before the rename, and the folder after it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pertlearn.atomic import sync_dir, write_json

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the flushed paths from /proc/self/fd"
)

Event = tuple[str, str]


@pytest.fixture
def disk_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Event]]:
    """Record ``("fsync", path)``, ``("rename", destination)`` and ``("replace", destination)``
    in the order they happen (the real calls still run)."""
    events: list[Event] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: str | Path, dst: str | Path) -> None:
        real_rename(src, dst)
        events.append(("rename", str(Path(dst).resolve())))

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        events.append(("replace", str(Path(dst).resolve())))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    yield events


def test_an_atomic_file_is_flushed_before_its_rename_and_the_folder_after(
    tmp_path: Path, disk_events: list[Event]
) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    kinds = [kind for kind, _ in disk_events]
    assert kinds == ["fsync", "replace", "fsync"]
    flushed_file, renamed, flushed_dir = (path for _, path in disk_events)
    assert Path(flushed_file).parent == tmp_path.resolve()
    assert Path(flushed_file).name.startswith(".metrics.json.")  # the temporary
    assert renamed == str(target.resolve())
    assert flushed_dir == str(tmp_path.resolve())


def test_every_file_of_a_run_directory_is_flushed_before_the_directory_gets_its_name(
    tmp_path: Path, disk_events: list[Event]
) -> None:
    import pertlearn

    config = pertlearn.load_config(
        preset="quickstart",
        overrides=["train_f.epochs=3", "train_g.epochs=3", "data.n_train=20", "data.n_test=20"],
    )
    out = tmp_path / "run"
    pertlearn.run(config).save(out)
    final = str(out.resolve())
    renamed_at = next(
        i for i, (kind, path) in enumerate(disk_events) if kind == "rename" and path == final
    )
    flushed_before = {Path(path).name for kind, path in disk_events[:renamed_at] if kind == "fsync"}
    written = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.json", "f.safetensors", "tensors.safetensors"} <= written
    assert written <= flushed_before
    assert ("fsync", str(tmp_path.resolve())) in disk_events[renamed_at:]


def test_a_folder_that_cannot_be_opened_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError("folders cannot be opened here")

    monkeypatch.setattr(os, "open", refuse)
    sync_dir(tmp_path)  # no error: nothing to flush where folders cannot be opened


def test_a_sweep_run_is_flushed_before_it_is_published(
    tmp_path: Path, disk_events: list[Event]
) -> None:
    from pertlearn.experiments.store import SweepStore

    store = SweepStore(tmp_path / "sweep")
    written = store.staging_dir("abc") / "run"
    written.mkdir()
    (written / "metrics.json").write_text("{}")
    assert store.publish("abc", written)
    final = str(store.run_dir("abc").resolve())
    renamed_at = disk_events.index(("rename", final))
    flushed_before = [Path(path).name for kind, path in disk_events[:renamed_at] if kind == "fsync"]
    assert "metrics.json" in flushed_before
    assert ("fsync", str(store.runs.resolve())) in disk_events[renamed_at:]
