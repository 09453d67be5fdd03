"""The plug-in loader in this process: fake installed distributions (``tests/plugin_support.py``)
on ``sys.path``, found through ``importlib.metadata`` as installed ones are. Each test starts
with no plug-in loaded and leaves the registries, the loader and ``sys.modules`` as it found
them; the command line and spawned workers are tested in ``tests/integration/test_plugins.py``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from image_data_support import tiny_images
from pertlearn import plugins
from pertlearn.attacks import ATTACKS, attack_names, make_attack
from pertlearn.errors import ConfigError, PluginError
from pertlearn.experiments.pipeline import PIPELINES, pipeline_names
from pertlearn.experiments.pipelines import validate_config
from pertlearn.models import image_model_names
from pertlearn.models.cnn import NETWORKS
from pertlearn.plugins import DISABLE_VARIABLE, Plugin, load_plugins, plugin_report
from plugin_support import LOG_VARIABLE, write_plugin

Install = Callable[..., Path]


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Install]:
    """``install(source=..., **write_plugin options)``: a fake distribution put on
    ``sys.path``; nothing is loaded before the test's first look-up. Afterwards the loader's
    state, the registries and the modules imported from ``tmp_path`` are restored."""
    monkeypatch.setattr(plugins, "_loaded", None)
    monkeypatch.delenv(DISABLE_VARIABLE, raising=False)
    monkeypatch.setenv(LOG_VARIABLE, str(tmp_path / "plugin.log"))
    saved = [(registry, dict(registry)) for registry in (ATTACKS, NETWORKS, PIPELINES)]
    count = 0

    def _install(*args: Any, **options: Any) -> Path:
        nonlocal count
        count += 1
        site = write_plugin(tmp_path / f"site{count}", *args, **options)
        monkeypatch.syspath_prepend(str(site))
        return site

    yield _install
    for registry, before in saved:
        registry.clear()
        registry.update(before)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def imports(tmp_path: Path) -> int:
    """How often the test plug-in was imported (its log)."""
    log = tmp_path / "plugin.log"
    return log.read_text().split().count("import") if log.exists() else 0


def test_plugins_load_once_on_the_first_lookup(install: Install, tmp_path: Path) -> None:
    install()
    assert "plug_fgsm" not in ATTACKS and imports(tmp_path) == 0  # installed, not looked up
    assert "plug_fgsm" in attack_names()
    assert "plug_net" in image_model_names()
    make_attack("plug_fgsm", 0.1)
    assert imports(tmp_path) == 1
    assert load_plugins() == (
        Plugin(
            name="myplug",
            value="myplug_mod",
            distribution="myplug",
            version="0.1",
            registered=(("attack", "plug_fgsm"), ("network", "plug_net")),
        ),
    )
    assert imports(tmp_path) == 1


def test_a_config_names_a_plugin_network_with_its_options(install: Install) -> None:
    install()
    tree = tiny_images()
    tree["model"] = {"name": "plug_net", "options": {"hidden": 8}}
    tree["attack"] = {"name": "plug_fgsm", "eps": 0.2}
    config = validate_config(tree)
    assert config.model.name == "plug_net" and config.attack.name == "plug_fgsm"
    tree["model"] = {"name": "plug_net", "options": {"width": 8}}
    with pytest.raises(ConfigError, match=r"options\.width is not an option of model 'plug_net' "):
        validate_config(tree)
    tree["model"] = {"name": "lenet"}
    with pytest.raises(ConfigError, match=r"model\.name: unknown image model 'lenet'") as info:
        validate_config(tree)
    assert "small_cnn, mlp, iclr_resnet, wide_resnet, custom (built in)" in str(info.value)
    assert "or plug_net (registered" in str(info.value)


PIPELINE_PLUGIN = """
from typing import Literal

from pertlearn.attacks import attack_names
from pertlearn.experiments import ExperimentConfig, Pipeline, register_pipeline

LOOKED_UP = attack_names()  # a look-up while the plug-ins load: what has loaded so far


class EchoConfig(ExperimentConfig):
    pipeline: Literal["echo"] = "echo"


def run_echo(config, *, progress=False):
    raise NotImplementedError


def register():
    register_pipeline(Pipeline("echo", EchoConfig, run_echo, "a test pipeline"))
"""


def test_an_entry_point_naming_a_function_calls_it(install: Install) -> None:
    """``value = "module:function"``: the module is imported and the function called; here it
    registers a pipeline (and the module looks an attack up while the plug-ins load)."""
    install(PIPELINE_PLUGIN, distribution="echo", module="echo_mod", value="echo_mod:register")
    assert "echo" in pipeline_names()
    assert validate_config({"pipeline": "echo"}).pipeline == "echo"
    (plugin,) = load_plugins()
    assert plugin.value == "echo_mod:register" and plugin.registered == (("pipeline", "echo"),)
    assert "pgd_l2" in sys.modules["echo_mod"].LOOKED_UP


def test_a_failed_plugin_fails_every_lookup_in_one_line(install: Install) -> None:
    install()
    install("import no_such_module_for_pertlearn\n", distribution="bad", entry="bad", module="bad")
    for _ in range(2):  # the same error on every look-up, the plug-in not imported again
        with pytest.raises(PluginError) as info:
            make_attack("pgd_l2", 1.0)
        message = str(info.value)
        assert message.startswith("plug-in 'bad' (entry point bad = bad of bad 0.1) failed to load")
        assert "ModuleNotFoundError: No module named 'no_such_module_for_pertlearn'" in message
        assert "pip uninstall bad" in message and "\n" not in message
    with pytest.raises(PluginError):
        validate_config({"pipeline": "neurips"})  # raised through pydantic unchanged
    found, disabled = plugin_report()
    assert [p.name for p in found] == ["bad", "myplug"] and not disabled
    assert found[0].error is not None and found[1].error is None  # the healthy one loaded
    assert "plug_fgsm" in ATTACKS


def test_a_plugin_registering_a_taken_name_is_refused(install: Install) -> None:
    clash = "from pertlearn.models import register_network\nregister_network('mlp', print)\n"
    install(clash, distribution="clash", entry="clash", module="clash_mod")
    with pytest.raises(PluginError, match=r"ValueError: network name 'mlp' is a built-in"):
        attack_names()


def test_plugins_can_be_disabled(install: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    install("raise RuntimeError('must not load')\n", distribution="bad", module="bad")
    monkeypatch.setenv(DISABLE_VARIABLE, "1")
    assert "pgd_l2" in attack_names()
    assert plugin_report() == ((), True)
    with pytest.raises(ValueError, match=r"unknown attack 'plug_fgsm'.*'pertlearn\.plugins'"):
        make_attack("plug_fgsm", 0.1)


def test_a_run_of_a_plugin_pipeline_loads_the_plugins_to_find_it(
    install: Install, tmp_path: Path
) -> None:
    """``load_run`` of a run whose pipeline a plug-in registers, before any other look-up in
    the process: the plug-ins are loaded to find it (the echo pipeline builds no networks, so
    loading stops there, naming that and not an unknown pipeline)."""
    import json

    from pertlearn.errors import RunDirError
    from pertlearn.experiments.loading import load_run

    install(PIPELINE_PLUGIN, distribution="echo", module="echo_mod", value="echo_mod:register")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"config": {"pipeline": "echo"}}))
    (run_dir / "metrics.json").write_text("{}")
    with pytest.raises(RunDirError, match="registers no networks function"):
        load_run(run_dir)
