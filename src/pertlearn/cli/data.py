"""``pertlearn data``: fetch and inspect the image data sets (MNIST, Fashion-MNIST, CIFAR-10)."""

from __future__ import annotations

from pathlib import Path

import click

from pertlearn.cli.errors import friendly_errors
from pertlearn.data.catalogue import DATASETS

DATA_DIR_HELP = "Data directory (default: $PERTLEARN_DATA, else ~/.cache/pertlearn/data)."


@click.group("data")
def data_group() -> None:
    """Image data sets: where they are read from, and how to download them."""


@data_group.command("download")
@click.argument("name", type=click.Choice(list(DATASETS)))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@friendly_errors
def download_command(name: str, data_dir: Path | None, quiet: bool) -> None:
    """Download the official files of NAME and verify their SHA-256 checksums."""
    from pertlearn.data.download import download

    folder = download(
        name, data_dir, progress=not quiet, echo=lambda line: click.echo(line, err=True)
    )
    click.echo(f"{name}: verified files in {folder}")


@data_group.command("info")
@click.argument("name", type=click.Choice(list(DATASETS)))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP)
@friendly_errors
def info_command(name: str, data_dir: Path | None) -> None:
    """Load and validate NAME; print where it was found and its class counts."""
    from pertlearn.data.raw_images import read_dataset  # lazy: only `data info` reads images

    data = read_dataset(name, data_dir)
    click.echo(
        f"{data.info.title}: {data.x.shape[0]} images {tuple(data.x.shape[1:])}, "
        f"parts {', '.join(data.parts)}"
    )
    for path in data.sources:
        click.echo(f"  {path}")
    counts = data.class_counts()
    for k, (label, count) in enumerate(zip(data.info.class_names, counts, strict=True)):
        click.echo(f"  class {k} ({label}): {count}")
