"""Beam pipeline options and the runner both jobs use, and running a pipeline to the end.

    options, runner = make_pipeline_options(pipeline_args)  # no Prism download; --runner dask
    p = beam.Pipeline(runner=runner, options=options)
    ...
    counters = run_pipeline(p)                              # {counter: value} of sinks.NAMESPACE

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam.sinks import NAMESPACE

# Runner names that mean "run locally in this process".
_LOCAL_RUNNERS = {None, "", "DirectRunner", "direct", "SwitchingDirectRunner", "FnApiRunner"}
# ``--runner dask`` is a shorthand for Beam's DaskRunner (the ``dask`` extra); with
# ``--dask_client_address HOST:PORT`` it runs on that dask.distributed cluster.
_DASK_RUNNERS = {"dask", "DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"}


def make_pipeline_options(pipeline_args: Iterable[str] | None) -> tuple[PipelineOptions, Any]:
    """PipelineOptions from unparsed CLI args, plus the runner object to use.

    Every Beam/Dataflow/Flink/Spark flag passes through unchanged (``--runner``,
    ``--project``, ``--region``, ``--temp_location``, ``--setup_file ./setup.py``,
    ``--flink_master``, ``--direct_num_workers`` ...). ``--runner dask`` (or the
    DaskRunner's full name) returns Beam's DaskRunner; ``--dask_client_address`` names
    the dask.distributed scheduler (default: a new local cluster). When the runner is unset or
    ``DirectRunner``, the in-process FnApiRunner is returned explicitly: Beam's
    DirectRunner would otherwise first try the Prism runner, which downloads a binary
    (impossible offline). ``--direct_num_workers N --direct_running_mode
    multi_processing`` still apply. For any other runner ``None`` is returned and
    Beam picks it from the options.
    """
    options = PipelineOptions(list(pipeline_args or []))
    name = options.view_as(StandardOptions).runner
    if name in _LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        return options, fn_runner.FnApiRunner()
    if name in _DASK_RUNNERS:
        try:
            from apache_beam.runners.dask.dask_runner import DaskRunner  # also registers --dask_* options
        except ImportError:
            raise ValueError(f"--runner {name}: needs dask; pip install 'tags-tf[dask]'") from None
        return options, DaskRunner()
    return options, None


def options_for_manifest(options: PipelineOptions) -> dict:
    """The options that were set explicitly, JSON-safe (the manifest's ``pipeline_options``)."""
    out = {}
    for k, v in sorted(options.get_all_options(drop_default=True).items()):
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out


def pipeline_counters(result) -> dict[str, int]:
    """{counter name: value} of the ``NAMESPACE`` counters of a finished pipeline.

    Empty when the runner does not report metrics.
    """
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # some runners do not support metric queries
        return {}
    out: dict[str, int] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


def run_pipeline(pipeline) -> dict[str, int]:
    """Runs ``pipeline`` to the end; returns its counters (pipeline_counters).

    Closes the DaskRunner's client, which the runner leaves open.
    """
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
    return pipeline_counters(result)
