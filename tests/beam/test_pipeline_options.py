"""beam/pipeline_options.py: the runner the jobs get for each --runner."""

from beam.pipeline_options import make_pipeline_options, options_for_manifest


def test_the_local_runner_is_never_prism_and_other_runners_are_left_to_beam():
    options, runner = make_pipeline_options(["--runner", "DirectRunner", "--project", "p"])
    assert type(runner).__name__ == "FnApiRunner"  # never Prism
    assert options_for_manifest(options)["project"] == "p"
    _, runner = make_pipeline_options(["--runner", "DataflowRunner"])
    assert runner is None
    _, runner = make_pipeline_options(None)
    assert type(runner).__name__ == "FnApiRunner"
