import types

from typer.testing import CliRunner

from vpbench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def register(plugin: str, *, models=(), datasets=(), metrics=()) -> None:
    """Register test models (classes), datasets (classes) and metrics (objects) once, as the
    plugin ``plugin``, in the process-wide harness the CLI uses."""
    import vpbench
    from vpbench.plugins import PluginRecord, get_harness

    h = get_harness()
    if any(p.name == plugin for p in h.records):
        return

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

    h.add_plugin(types.SimpleNamespace(vpbench_register_models=vpbench_register_models,
                                       vpbench_register_datasets=vpbench_register_datasets,
                                       vpbench_register_metrics=vpbench_register_metrics),
                 PluginRecord(plugin, f"vpbench-{plugin}", "0.3"))
