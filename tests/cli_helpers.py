import types

from typer.testing import CliRunner

from vpbench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def plugin_object(*, models=(), datasets=(), metrics=()) -> types.SimpleNamespace:
    """A plugin whose hooks register these models (classes), datasets (classes) and metrics (objects)."""
    import vpbench

    @vpbench.hookimpl
    def vpbench_register_models(register):
        for cls in models:
            register(cls)

    @vpbench.hookimpl
    def vpbench_register_datasets(register):
        for cls in datasets:
            register(cls)

    @vpbench.hookimpl
    def vpbench_register_metrics(register):
        for metric in metrics:
            register(metric)

    return types.SimpleNamespace(vpbench_register_models=vpbench_register_models,
                                 vpbench_register_datasets=vpbench_register_datasets,
                                 vpbench_register_metrics=vpbench_register_metrics)


def register(plugin: str, *, models=(), datasets=(), metrics=()) -> None:
    """Register test models, datasets and metrics once, as the plugin ``plugin``, in the
    process-wide harness the CLI uses."""
    from vpbench.plugins import PluginRecord, get_harness

    h = get_harness()
    if any(p.name == plugin for p in h.records):
        return
    h.add_plugin(plugin_object(models=models, datasets=datasets, metrics=metrics),
                 PluginRecord(plugin, f"vpbench-{plugin}", "0.3"))
