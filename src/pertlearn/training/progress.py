"""Progress bars of the trainers (tqdm on stderr), closed at the true end of a training."""

from __future__ import annotations

from tqdm.auto import tqdm


def finish_bar(bar: tqdm, epochs_run: int, epochs: int, *, per_epoch: int = 1) -> None:
    """Close the training ``bar`` (``per_epoch`` bar steps per epoch). A training that stopped
    before its last epoch (``stop_tol``) ends its bar at 100% of the epochs it ran, labelled
    ``stopped early at epoch k``, instead of leaving it part-way."""
    if not bar.disable and 0 < epochs_run < epochs:
        bar.total = epochs_run * per_epoch
        bar.n = epochs_run * per_epoch
        bar.set_postfix_str(f"stopped early at epoch {epochs_run} of {epochs}", refresh=False)
        bar.refresh()
    bar.close()
