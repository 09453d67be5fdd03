"""The images pipeline's feature-study options: band-limited perturbations
(``perturbation_filter``) and the transfer rate (``transfer_eval``), on real MNIST digits at a
tiny size (the in-repo subset)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import pertlearn
from image_data_support import tiny_images
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.pipelines import validate_config
from pertlearn.features import radial_power_spectrum, transfer_rate
from pertlearn.features.spectra import radial_bins


def tiny(**extra: Any) -> dict[str, Any]:
    return tiny_images("natural_rand", n_train=120, craft_batch_size=50, **extra)


def test_low_and_high_passed_perturbations_add_up_to_the_crafted_one() -> None:
    runs = {
        kind: pertlearn.run(
            validate_config(tiny(perturbation_filter={"kind": kind, "cutoff": 4} if kind else None))
        )
        for kind in ("low_pass", "high_pass", None)
    }
    x = runs[None].tensors["x_train"]
    full = runs[None].tensors["x_adv"] - x
    low = runs["low_pass"].tensors["x_adv"] - x
    high = runs["high_pass"].tensors["x_adv"] - x
    assert torch.equal(runs["low_pass"].tensors["x_train"], x)
    assert full.flatten(1).norm(dim=1).min() > 0.5  # the attack moved every image
    torch.testing.assert_close(low + high, full, atol=1e-5, rtol=0)
    # each part keeps only its band: no power above (below) the cut-off
    bins = radial_bins(28, 28)
    spectrum_low = torch.fft.fft2(low.double(), norm="ortho").abs().pow(2).sum(dim=(0, 1))
    spectrum_high = torch.fft.fft2(high.double(), norm="ortho").abs().pow(2).sum(dim=(0, 1))
    assert spectrum_low[bins > 4].sum() < 1e-8 * spectrum_low.sum()
    assert spectrum_high[bins <= 4].sum() < 1e-8 * spectrum_high.sum()
    # the energy split is reported, and both parts are a real share of it
    kept_low = runs["low_pass"].metrics["perturbation_energy_kept"]
    kept_high = runs["high_pass"].metrics["perturbation_energy_kept"]
    assert kept_low + kept_high == pytest.approx(1.0, abs=1e-6)
    assert 0.05 < kept_low < 0.95
    power = radial_power_spectrum(full).sum(dim=0)
    assert kept_low == pytest.approx(float(power[:5].sum() / power.sum()), rel=1e-4)
    # fooling rates: on the filtered set, and on the crafted one (= the unfiltered run's)
    for kind in ("low_pass", "high_pass"):
        m = runs[kind].metrics
        assert m["fooling_rate_unfiltered"] == pytest.approx(runs[None].metrics["fooling_rate"])
    assert "fooling_rate_unfiltered" not in runs[None].metrics


def test_filter_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="kind"):
        validate_config(tiny(perturbation_filter={"kind": "band_pass", "cutoff": 3}))
    with pytest.raises(ConfigError, match="cutoff"):
        validate_config(tiny(perturbation_filter={"kind": "low_pass", "cutoff": -1}))
    with pytest.raises(ConfigError, match="width"):
        validate_config(tiny(perturbation_filter={"kind": "low_pass", "cutoff": 3, "width": 1}))


def test_transfer_rate_is_scored_by_an_independent_model_of_gs_architecture() -> None:
    result = pertlearn.run(
        validate_config(tiny(transfer_eval=True, model_g={"name": "mlp", "options": {}}))
    )
    m, t = result.metrics, result.tensors
    independent = result.models["transfer_model"]
    assert type(independent) is type(result.models["g"])
    assert type(independent) is not type(result.models["f"])
    assert m["transfer_rate"] == pytest.approx(transfer_rate(independent, t["x_adv"], t["y_adv"]))
    assert 0.0 <= m["transfer_model_acc_test"] <= 1.0
    assert m["transfer_model_acc_test"] > 0.6  # it learned the clean task (3 classes)


def test_the_independent_model_is_not_f_for_the_same_architecture() -> None:
    result = pertlearn.run(validate_config(tiny(transfer_eval=True)))
    f, independent = result.models["f"], result.models["transfer_model"]
    assert type(f) is type(independent)
    assert not all(
        torch.equal(a, b) for a, b in zip(f.parameters(), independent.parameters(), strict=True)
    )
