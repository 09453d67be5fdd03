"""The ``pertlearn`` command line: a thin layer over the Python API.

Errors in configs, files or training print one line ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from pertlearn.cli.data import data_group
from pertlearn.cli.errors import fail, friendly_errors
from pertlearn.experiments.config_tree import RUN_CONFIG_FILE
from pertlearn.experiments.presets import PRESETS, SCALES, load_config, preset_tree, sweep_presets
from pertlearn.reports.summary import format_stage_seconds, format_summary
from pertlearn.signals import sigint_held_back


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="pertlearn")
def cli() -> None:
    """Perturbation learning: train f, craft adversarial examples with wrong target labels,
    train a fresh g only on them, and measure g on clean data and its agreement with f."""


TRACKER_CHOICES = ("tensorboard", "mlflow")
"""The ``--log`` choices (:mod:`pertlearn.reports.tracking`; kept here so that ``--help`` does
not import it)."""


def log_options(command: Any) -> Any:
    """``--log NAME`` (repeatable) and ``--log-dir DIR`` of ``run`` and ``sweep``."""
    command = click.option(
        "--log-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Where --log writes tensorboard/ and mlruns/ (default: the output directory).",
    )(command)
    return click.option(
        "--log",
        "trackers",
        multiple=True,
        type=click.Choice(TRACKER_CHOICES),
        help="Also export config, curves and metrics to tensorboard or mlflow (repeatable; "
        "needs pip install 'pertlearn[tensorboard]' / 'pertlearn[mlflow]').",
    )(command)


def echo_log_hints(trackers: tuple[str, ...], log_dir: Path) -> None:
    """How to look at what ``--log`` wrote, on stderr."""
    if "tensorboard" in trackers:
        click.echo(f"tensorboard: tensorboard --logdir {log_dir / 'tensorboard'}", err=True)
    if "mlflow" in trackers:
        click.echo(
            f"mlflow: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri "
            f"{log_dir / 'mlruns'}",
            err=True,
        )


@cli.command("run")
@click.argument("config_file", required=False, type=click.Path(path_type=Path))
@click.option("--preset", help="Base preset (default: quickstart when no CONFIG_FILE is given).")
@click.option("--scale", type=click.Choice(SCALES), help="Preset scale (default: cpu).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set model.width=1000 (repeatable).",
)
@click.option("--seed", type=int, help="Run seed (same as --set seed=N).")
@click.option("--device", help="cpu, cuda, cuda:N or auto (same as --set device=...).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory to create (default: runs/NAME-seedN-TIMESTAMP).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Image data directory (same as --set data.data_dir=...; default $PERTLEARN_DATA).",
)
@click.option("--theory", is_flag=True, help="Also write theory.json and decision maps.")
@log_options
@friendly_errors
def run_command(
    config_file: Path | None,
    preset: str | None,
    scale: str | None,
    overrides: tuple[str, ...],
    seed: int | None,
    device: str | None,
    out: Path | None,
    overwrite: bool,
    quiet: bool,
    data_dir: Path | None = None,
    theory: bool = False,
    trackers: tuple[str, ...] = (),
    log_dir: Path | None = None,
) -> None:
    """Run one experiment from a preset and/or CONFIG_FILE (TOML or JSON, or a run directory
    to run its config.json again), and write its run directory."""
    # lazy: the pipelines and the run directory import torch; --help and presets must not
    from pertlearn.experiments.pipelines import run
    from pertlearn.experiments.rundir import changed_data_note, check_rerunnable, check_target

    extra = [*overrides]
    if seed is not None:
        extra.append(f"seed={seed}")
    if device is not None:
        extra.append(f"device={device}")
    if data_dir is not None:
        extra.append(f"data.data_dir={json.dumps(str(data_dir))}")
    config = load_config(config_file, preset=preset, scale=scale, overrides=extra)
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{config.name}-seed{config.seed}-{stamp}"
    check_target(out, overwrite)
    if trackers:
        # lazy: the exporter reads run directories (torch); checked before the run
        from pertlearn.reports.tracking import check_trackers, export_run

        check_trackers(trackers)
    if theory:
        # lazy: the theory imports matplotlib; a run without --theory does not need it
        from pertlearn.analysis.theory import check_theory_applies, write_theory

        check_theory_applies(config)
    if config_file is not None:
        check_rerunnable(config_file)
    crafting = f"ε = {config.eps:g}" if config.crafts_with_attack else "constructed set"
    click.echo(f"running {config.name} (seed {config.seed}, {crafting}) -> {out}", err=True)
    result = run(config, progress=not quiet)
    if config_file is not None:  # a rerun: the data file it read, hashed by the pipeline
        data_file = str(getattr(getattr(config, "data", None), "path", None))
        changed = changed_data_note(config_file, data_file, result.metrics.get("data_sha256"))
        if changed:
            click.echo(f"warning: {changed}", err=True)
    result.save(out, overwrite=overwrite)
    if theory:
        result.metrics.update(write_theory(out))
    click.echo(format_summary(result.metrics, result.class_names))
    stages = format_stage_seconds(result.stage_seconds)
    if stages:
        click.echo(stages)
    if trackers:
        export_run(out, trackers, log_dir=log_dir)
        echo_log_hints(trackers, log_dir or out)
    click.echo(f"\nrun directory: {out}")


@cli.command("presets")
@click.option("--show", metavar="NAME", help="Print the full config of one preset as JSON.")
@click.option(
    "--scale",
    type=click.Choice(SCALES),
    default="cpu",
    show_default=True,
    help="Scale of the config --show prints.",
)
@friendly_errors
def presets_command(show: str | None, scale: str) -> None:
    """List presets with one line each (or show one)."""
    if show is not None:
        config = load_config(preset=show, scale=scale)
        click.echo(config.model_dump_json(indent=2))
        return
    width = max(len(name) for name in PRESETS)
    for name, preset in PRESETS.items():
        preset_tree(name, scale)  # every listed preset builds
        click.echo(f"{name:<{width}}  {preset.summary}")


@contextmanager
def damaged_run_hint(run_dir: Path) -> Iterator[None]:
    """A damaged file of the run directory ``run_dir`` other than its config fails with how to
    make the run again from that config (a sweep's damaged runs are rerun by the sweep)."""
    from pertlearn.experiments.rundir import CorruptFileError

    try:
        yield
    except CorruptFileError as err:
        # a file of another run (a sweep's), or the config itself: nothing to rerun from
        not_rerunnable = (
            err.path.parent.resolve() != run_dir.resolve()
            or err.path.name == RUN_CONFIG_FILE
            or not (run_dir / RUN_CONFIG_FILE).is_file()
        )
        if not_rerunnable:
            raise
        fail(f"{err}; make the run again from its config: pertlearn run {run_dir} --out NEW_DIR")


def stopped_by_ctrl_c() -> NoReturn:
    """Exit like a sweep stopped by SIGINT (status 130), not with click's "Aborted!" and status
    1, which a sweep gives for failed configurations."""
    click.echo("error: sweep stopped by SIGINT; rerun the same command to continue", err=True)
    sys.exit(128 + signal.SIGINT)


@cli.command("sweep")
@click.argument("spec", required=False)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Sweep directory (default: runs/sweep-NAME-SCALE); rerun with the same --out to resume.",
)
@click.option("--scale", type=click.Choice(SCALES), help="Scale of a sweep preset (default: cpu).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a base key.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local")
@click.option(
    "--workers",
    type=int,
    default=1,
    help="Local processes (ray executor without --address: the local instance's CPUs).",
)
@click.option(
    "--threads",
    type=int,
    help="Torch threads per local worker (default: torch's for 1 worker, else "
    "cpu_count // workers).",
)
@click.option("--address", help="Ray cluster address (ray executor; default: a local instance).")
@click.option("--cpus-per-task", type=float, default=1.0, help="Ray CPUs/task.")
@click.option("--gpus-per-task", type=float, default=0.0, help="Ray GPUs/task.")
@click.option("--shared-fs", is_flag=True, help="Ray workers write into --out themselves.")
@click.option("--retry-failed", is_flag=True, help="Rerun configurations that failed before.")
@click.option(
    "--batch-size",
    type=int,
    default=10,
    help="Run up to this many same-shape configurations as one batched computation.",
)
@click.option("--no-batch", is_flag=True, help="Run every configuration on its own.")
@click.option("--dry-run", is_flag=True, help="Validate and list the configurations; run nothing.")
@click.option("--list", "list_presets", is_flag=True, help="List the sweep presets.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@log_options
@friendly_errors
def sweep_command(
    spec: str | None,
    out: Path | None,
    scale: str | None,
    overrides: tuple[str, ...],
    batch_size: int,
    no_batch: bool,
    dry_run: bool,
    list_presets: bool,
    quiet: bool,
    trackers: tuple[str, ...] = (),
    log_dir: Path | None = None,
    **executor_options: Any,
) -> None:
    """Run the sweep SPEC (a TOML file or a sweep preset name) into a resumable directory.

    Exit status: 0 when every configuration is complete; 1 when some failed (now, or earlier
    and skipped: --retry-failed reruns them) or could not run; 2 for bad input; 128 + N when
    stopped by signal N (130 for Ctrl-C), finished runs kept."""
    if list_presets:
        presets = sweep_presets()
        width = max(len(name) for name in presets)
        for name, preset in presets.items():
            click.echo(f"{name:<{width}}  {preset.summary}")
        return
    if spec is None:
        fail("give a sweep SPEC (a .toml file or a preset name; `pertlearn sweep --list`)")
        return
    try:
        # a KeyboardInterrupt inside torch's import can be swallowed there (torch goes on with
        # NumPy half imported), and every configuration would then fail and be recorded
        with sigint_held_back():
            # lazy: the sweep machinery imports torch; `sweep --list` must not
            from pertlearn.experiments.execution import SweepInterrupted, run_sweep
            from pertlearn.experiments.sweeps import load_sweep

        sweep = load_sweep(spec, scale=scale, overrides=list(overrides))
    except KeyboardInterrupt:
        stopped_by_ctrl_c()
    if trackers:
        # lazy: only --log needs the exporter; checked before any run
        from pertlearn.reports.tracking import check_trackers, export_sweep

        check_trackers(trackers)
    if dry_run:
        points = sweep.points()
        for point in points:
            click.echo(f"{point.run_id}  {point.describe()}")
        click.echo(f"{len(points)} configurations, all valid (fingerprint {sweep.fingerprint})")
        return
    if out is None:
        scale_tag = f"-{sweep.spec['scale']}" if sweep.spec.get("scale") else ""
        out = Path("runs") / f"sweep-{sweep.name}{scale_tag}"
    try:
        summary = run_sweep(
            sweep,
            out,
            batch_size=1 if no_batch else batch_size,
            progress=not quiet,
            echo=lambda message: click.echo(message, err=True),
            **executor_options,  # executor, workers, threads, address, ..., retry_failed
        )
    except SweepInterrupted as stop:
        then = (
            "rerun the same command for the summary"
            if stop.complete == stop.total
            else "rerun the same command to continue"
        )
        click.echo(
            f"error: sweep stopped by {stop}: {stop.complete} of {stop.total} configurations "
            f"are complete in {out}; {then}",
            err=True,
        )
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:  # while it validated, before it took the sweep directory
        stopped_by_ctrl_c()
    click.echo(summary.line())
    if trackers:
        exported = export_sweep(out, trackers, log_dir=log_dir, experiment=sweep.name)
        click.echo(f"exported {exported} run(s) to {', '.join(trackers)}", err=True)
        echo_log_hints(trackers, log_dir or out)
    click.echo(f"sweep directory: {out}  (pertlearn results {out}; pertlearn report {out})")
    if summary.skipped_failed:
        click.echo(
            f"error: {summary.skipped_failed} configuration(s) failed in an earlier run and were "
            f"not retried (errors in {out / 'failed'}); rerun with --retry-failed to retry them",
            err=True,
        )
    if summary.failed or summary.not_run or summary.skipped_failed:
        sys.exit(1)


@cli.command("results")
@click.argument("sweep_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--all", "all_columns", is_flag=True, help="Print every column, not the headline.")
@friendly_errors
def results_command(sweep_dir: Path, all_columns: bool) -> None:
    """Print the aggregated table of a sweep and write results.csv and results.parquet."""
    # lazy: the store imports torch and pyarrow; --help must not
    from pertlearn.experiments.store import (
        SweepStore,
        columns_of,
        display_columns,
        format_table,
        write_results,
    )

    rows, swept, paths = write_results(sweep_dir)
    columns = columns_of(rows) if all_columns else display_columns(rows, swept)
    click.echo(format_table(rows, columns))
    store = SweepStore(sweep_dir)
    failed = store.failed_unfinished([row["run_id"] for row in rows])
    if failed:
        click.echo(f"\n{len(failed)} configuration(s) failed; see {sweep_dir / 'failed'}")
    unreadable = [*store.broken_runs().values(), *store.corrupt_failures().values()]
    for problem in unreadable:
        click.echo(f"warning: left out {problem}", err=True)
    if unreadable:
        click.echo(
            f"warning: {len(unreadable)} unreadable file(s) left out; rerunning the sweep "
            "moves them into corrupt/ and reruns their configurations",
            err=True,
        )
    manifest = store.read_manifest() or {}
    missing = len(manifest.get("points", [])) - len(rows) - len(failed)
    if missing > 0:
        click.echo(
            f"\n{missing} configuration(s) have no finished run (not run yet, stopped, or their "
            "run directory was removed); rerun the sweep command to run them"
        )
    click.echo(f"\n{len(rows)} runs -> {', '.join(str(p) for p in paths)}")


@cli.command("compare")
@click.argument(
    "runs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option("--all", "all_columns", is_flag=True, help="Print every column, not the headline.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every column to this CSV file.",
)
@friendly_errors
def compare_command(runs: tuple[Path, ...], all_columns: bool, csv_path: Path | None) -> None:
    """Print run directories side by side: the config keys in which they differ, the seed and
    the headline metrics. Each RUN_DIR is a run directory or a folder of them (e.g. runs/)."""
    # lazy: reading run directories imports torch; --help must not
    from pertlearn.experiments.store import columns_of, format_table
    from pertlearn.reports.compare import (
        compare_runs,
        comparison_columns,
        write_comparison_csv,
    )

    rows, differing = compare_runs(list(runs))
    columns = columns_of(rows) if all_columns else comparison_columns(rows, differing)
    click.echo(format_table(rows, columns))
    if not differing and len(rows) > 1:
        click.echo("\nthe runs have the same config")
    if csv_path is not None:
        write_comparison_csv(rows, csv_path)
        click.echo(f"\n{len(rows)} runs -> {csv_path}")


@cli.command("report")
@click.argument(
    "run_dir", metavar="DIR", type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: DIR/report.html"
)
@friendly_errors
def report_command(run_dir: Path, out: Path | None) -> None:
    """Write one self-contained report.html for a sweep directory or a single run directory."""
    from pertlearn.reports import write_report  # lazy: reports import matplotlib and torch

    with damaged_run_hint(run_dir):
        path = write_report(run_dir, out)
    click.echo(f"report: {path}")


@cli.command("export")
@click.argument("path", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--to",
    "trackers",
    multiple=True,
    required=True,
    type=click.Choice(TRACKER_CHOICES),
    help="Tracker to export to (repeatable).",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write tensorboard/ and mlruns/ (default: PATH).",
)
@friendly_errors
def export_command(path: Path, trackers: tuple[str, ...], log_dir: Path | None) -> None:
    """Export a finished run directory, or every complete run of a sweep directory, to
    TensorBoard and/or MLflow: config, per-epoch curves and final metrics."""
    from pertlearn.reports.tracking import check_trackers, export_any

    check_trackers(trackers)
    count = export_any(path, trackers, log_dir=log_dir)
    click.echo(f"exported {count} run(s) to {', '.join(trackers)}")
    echo_log_hints(trackers, log_dir or path)


cli.add_command(data_group)  # `pertlearn data download|info`


PLUGIN_KINDS = (("attack", "attacks"), ("network", "networks"), ("pipeline", "pipelines"))
"""What a plug-in registers, as :class:`pertlearn.plugins.Plugin` records it and as listed."""


@cli.command("plugins")
@friendly_errors
def plugins_command() -> None:
    """List the installed plug-ins (entry points of the group pertlearn.plugins) with their
    distribution and the attacks, image networks and pipelines each registered; exit status 2
    when one fails to load."""
    from pertlearn.plugins import DISABLE_VARIABLE, GROUP, load_plugins, plugin_report

    found, disabled = plugin_report()
    if disabled:
        click.echo(f"plug-ins are disabled ({DISABLE_VARIABLE} is set)")
        return
    if not found:
        click.echo(
            f"no plug-ins installed (entry-point group {GROUP}; see docs/architecture.md, "
            "'Your own attack, network and data')"
        )
        return
    for plugin in found:
        click.echo(f"{plugin.name} = {plugin.value}  ({plugin.source})")
        if plugin.error is not None:
            click.echo(f"  failed: {plugin.error}")
            continue
        for kind, label in PLUGIN_KINDS:
            names = plugin.names(kind)
            if names:
                click.echo(f"  {label}: {', '.join(names)}")
        if not plugin.registered:
            click.echo("  registered nothing new")
    load_plugins()  # a failed plug-in: its one-line error, exit status 2


@cli.command("theory")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--no-maps", is_flag=True, help="Skip the decision-map figure.")
@click.option(
    "--resolution",
    type=click.IntRange(min=2),
    default=81,
    help="Decision-map grid points per axis.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=1024,
    help="Rows per kernel block (bounds memory).",
)
@friendly_errors
def theory_command(run_dir: Path, no_maps: bool, resolution: int, chunk_size: int) -> None:
    """Write theory.json and decision_map.{png,pdf,svg} into RUN_DIR and add the theory
    metrics to its metrics.json: the NeurIPS24 kernel predictions (and for one-hidden-layer
    networks the ICLR24 condition and surrogate) next to what f and g did."""
    from pertlearn.analysis.theory import write_theory

    with damaged_run_hint(run_dir):
        metrics = write_theory(
            run_dir, chunk_size=chunk_size, maps=not no_maps, resolution=resolution
        )
    click.echo(format_summary(metrics))
    click.echo(f"\ntheory written to {run_dir / 'theory.json'}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pertlearn")


if __name__ == "__main__":
    main()
