"""Dataflow checks and the ``--dry_run`` report of the Beam jobs (build_shards, extract_features).

Both mains call, right after ``pipeline_options.make_pipeline_options``::

    warnings = dataflow.check_options(options, {"--output": out, "--features": src}, dry_run=...)
    ...                                              # plan, build the graph
    if dry_run:
        return dataflow.dry_run_report(pipeline, options, "beam.build_shards", details, warnings)

:func:`check_options` does nothing for runners other than Dataflow. For Dataflow it
checks, before anything is read, listed or submitted, and without network:

* ``--project`` (a project ID), ``--region`` (e.g. us-central1, not a zone),
  ``--temp_location`` and ``--staging_location`` (``gs://BUCKET/PATH``);
* ``--machine_type`` / ``--worker_machine_type`` (a Compute Engine name such as
  n2-standard-8); for extract_features a warning when it is unset, shared-core, under
  4 vCPUs or ``highcpu`` (the encoder is CPU-bound and every SDK process holds
  TensorFlow and the model);
* how the workers get this package: ``--setup_file`` (this repository's setup.py or
  pyproject.toml; the latter needs ``python -m build`` where you launch),
  ``--extra_package`` or ``--sdk_container_image``; ``--requirements_file`` exists;
* the paths the *workers* read or write (``--output``, ``--features``, ``--videos``,
  encoder weights) are not local files;
* then Beam's own validator (``PipelineOptionsValidator``, e.g. ``--num_workers`` <=
  ``--max_num_workers``, job name form).

The first problem raises ValueError with one line naming the option and what was
expected (the mains exit 2). Warnings are returned as one-line strings.

A dry run sets Beam's ``TestOptions.dry_run`` (Beam then skips its Cloud Storage bucket
checks) and reads no remote file: remote inputs are not listed, the graph is built
without them (its transforms do not depend on the number of videos).
``apache-beam[gcp]`` is needed to submit, not for a dry run.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
from typing import Mapping, Sequence

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)

_LOG = logging.getLogger(__name__)

DATAFLOW_RUNNERS = {
    "dataflow",
    "dataflowrunner",
    "apache_beam.runners.dataflow.dataflow_runner.dataflowrunner",
}
RECOMMENDED_EXTRACT_MACHINE = "n2-standard-8"
MIN_EXTRACT_VCPUS = 4

# A project ID (Beam's pattern, which also admits "example.com:my-project"), not a number.
_PROJECT_RE = re.compile(r"^[a-z][-a-z0-9:.]+[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")  # us-central1, europe-west4, northamerica-northeast1
_ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
_MACHINE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")  # n2-standard-8, custom-8-32768, e2-small
_GCS_RE = re.compile(r"^gs://([a-z0-9][-_.a-z0-9]{1,220}[a-z0-9])(/.*)?$")
_SHARED_CORE = {"e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small"}
_SETUP_NAMES = ("setup.py", "pyproject.toml")
_GCP_HINT = "pip install 'apache-beam[gcp]==2.77.*'"
# The workers' copy of setup.cfg's [video] extra (a test keeps the two equal).
VIDEO_REQUIREMENTS_FILE = "beam/requirements-video.txt"
VIDEO_REQUIREMENTS = ("tf-models-official~=2.20.0", "av")


def is_dataflow(options: PipelineOptions) -> bool:
    """True when ``--runner`` names Beam's DataflowRunner (any spelling Beam accepts)."""
    name = options.view_as(StandardOptions).runner
    if not isinstance(name, str):
        return type(name).__name__ == "DataflowRunner"
    return name.lower() in DATAFLOW_RUNNERS


def is_local(path: str | None) -> bool:
    """A path only the launching machine can see (no ``scheme://``, or ``file://``)."""
    return bool(path) and ("://" not in path or path.startswith("file://"))


def machine_vcpus(machine_type: str) -> int | None:
    """vCPUs of a Compute Engine machine type name; 0 for shared-core, None if unknown.

    ``n2-standard-8`` -> 8, ``custom-8-32768`` / ``n2-custom-8-32768`` -> 8,
    ``e2-small`` -> 0, ``a2-highgpu-1g`` -> None.
    """
    if machine_type in _SHARED_CORE:
        return 0
    for part in machine_type.split("-")[1:]:
        if part.isdigit():
            return int(part)
    return None


def encoder_weights_path(spec: str) -> str | None:
    """The file an extract_features encoder SPEC loads on the workers (None: no weights)."""
    from beam.encoders import EncoderSpec

    s = EncoderSpec.parse(spec)
    if s.kind == "savedmodel":
        return s.name
    return s.get("checkpoint" if s.kind == "movinet" else "weights")


def _fail(option: str, value, expected: str):
    shown = "missing" if value in (None, "") else repr(value)
    raise ValueError(f"{option} {shown}: expected {expected}")


def _check_gcs(option: str, value: str | None, required: bool, need_object: bool = True) -> None:
    if value is None and not required:
        return
    m = _GCS_RE.match(value or "")
    if not m or (need_object and not (m.group(2) or "/").strip("/")):
        _fail(option, value, "a Cloud Storage path gs://BUCKET/PATH (Dataflow keeps its files there)")


def _can_build_pyproject() -> bool:
    """Whether Beam can build an sdist from a pyproject.toml here (``python -m build``)."""
    return importlib.util.find_spec("build") is not None


def _check_package(setup: SetupOptions, worker: WorkerOptions, encoder_job: bool = False) -> str:
    """Checks how the workers get this package (and, for extract_features, its video
    extra); returns a description of it."""
    if setup.setup_file is not None:
        path = setup.setup_file
        if not os.path.isfile(path):
            _fail("--setup_file", path, "an existing setup.py or pyproject.toml of this repository")
        if os.path.basename(path) not in _SETUP_NAMES:
            _fail("--setup_file", path, "a file named setup.py or pyproject.toml (Beam accepts no other name)")
        root = os.path.dirname(os.path.abspath(path))
        if not all(os.path.isdir(os.path.join(root, pkg)) for pkg in ("beam", "tags_tf")):
            _fail("--setup_file", path, "this repository's setup.py or pyproject.toml (next to beam/ and tags_tf/)")
        if os.path.basename(path) == "pyproject.toml" and not _can_build_pyproject():
            _fail(
                "--setup_file",
                path,
                "a setup.py, or 'pip install build' here: Beam builds a pyproject.toml package with "
                "'python -m build', which is not installed",
            )
        shipped = f"an sdist of {path} (built at submission, installed on every worker)"
    elif setup.extra_packages:
        shipped = f"--extra_package {', '.join(setup.extra_packages)}"
    elif worker.sdk_container_image:
        shipped = f"the worker image {worker.sdk_container_image} (must have tags-tf installed)"
    else:
        raise ValueError(
            "--setup_file missing: Dataflow workers need this package; expected --setup_file "
            "/path/to/repo/setup.py (or pyproject.toml), --extra_package DIST or --sdk_container_image IMAGE"
        )
    if setup.requirements_file is not None:
        if not os.path.isfile(setup.requirements_file):
            _fail("--requirements_file", setup.requirements_file, "an existing requirements file (pip format)")
        shipped += f", plus {setup.requirements_file} (downloaded at submission)"
    elif encoder_job and not worker.sdk_container_image:
        # An sdist installs install_requires only: without PyAV every video would be rejected.
        _fail("--requirements_file", None, f"the video extra for the workers ({' '.join(VIDEO_REQUIREMENTS)}): "
              f"--requirements_file {VIDEO_REQUIREMENTS_FILE}, or an --sdk_container_image that has them")
    return shipped


def _check_machine(worker: WorkerOptions, encoder_job: bool) -> list[str]:
    machine = worker.machine_type
    warnings = []
    if machine is not None and not _MACHINE_RE.match(machine):
        _fail("--machine_type", machine, f"a Compute Engine machine type such as {RECOMMENDED_EXTRACT_MACHINE}")
    if not encoder_job:
        return warnings
    hint = (
        f"the encoder is CPU-bound (MoViNet-A0: 7-9 clips/s measured on 2 cores) and every SDK process "
        f"(one a vCPU) holds TensorFlow and the model; {RECOMMENDED_EXTRACT_MACHINE} is recommended"
    )
    vcpus = machine_vcpus(machine) if machine else None
    if machine is None:
        warnings.append(f"--machine_type not set (Dataflow's small default): {hint}")
    elif vcpus is not None and vcpus < MIN_EXTRACT_VCPUS:
        size = f"has {vcpus} vCPUs" if vcpus else "is shared-core"
        warnings.append(f"--machine_type {machine} {size}: {hint}")
    elif "highcpu" in machine:
        warnings.append(f"--machine_type {machine} has ~1 GB a vCPU: {hint}")
    return warnings


def _beam_validator_errors(options: PipelineOptions) -> list[str] | None:
    """Beam's PipelineOptionsValidator errors for a Dataflow run (None: runner not importable)."""
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

    try:
        from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
    except ImportError:
        return None
    return PipelineOptionsValidator(options, DataflowRunner()).validate()


def gcp_client_missing() -> str | None:
    """Why this environment cannot submit to Dataflow (None: it can)."""
    try:
        importlib.import_module("apache_beam.runners.dataflow.internal.apiclient")
    except ImportError as e:
        return f"the Dataflow client is not installed ({e}); {_GCP_HINT}"
    return None


def check_options(
    options: PipelineOptions,
    worker_paths: Mapping[str, str | None] | None = None,
    *,
    dry_run: bool = False,
    encoder_job: bool = False,
) -> list[str]:
    """Checks the options of a Dataflow run (see the module docstring); returns warnings.

    ``worker_paths``: {flag: path} the workers read or write (None values skipped).
    ``encoder_job``: extract_features (machine type advice). Raises ValueError (one line,
    naming the option) at the first problem. Other runners: nothing checked, [] returned;
    with ``dry_run`` Beam's ``TestOptions.dry_run`` is set either way.
    """
    if dry_run:
        options.view_as(TestOptions).dry_run = True
    if not is_dataflow(options):
        return []
    gcp = options.view_as(GoogleCloudOptions)
    worker = options.view_as(WorkerOptions)
    if gcp.project is None or gcp.project.isdigit() or not _PROJECT_RE.match(gcp.project):
        _fail("--project", gcp.project, "a Google Cloud project ID such as my-project (not the project number)")
    if gcp.region is None or not _REGION_RE.match(gcp.region):
        zone = gcp.region is not None and _ZONE_RE.match(gcp.region)
        _fail("--region", gcp.region, "a Dataflow region such as us-central1" + (" (not a zone)" if zone else ""))
    _check_gcs("--temp_location", gcp.temp_location, required=True)
    _check_gcs("--staging_location", gcp.staging_location, required=False)
    warnings = _check_machine(worker, encoder_job)
    _check_package(options.view_as(SetupOptions), worker, encoder_job)
    for flag, path in (worker_paths or {}).items():
        if not path:
            continue
        if is_local(path) and not (flag == "--encoder" and worker.sdk_container_image):
            _fail(flag, path, "a gs://BUCKET/PATH (Dataflow workers cannot read the launching machine's files)")
        if path.startswith("gs://"):
            _check_gcs(flag, path, required=True, need_object=False)
    errors = _beam_validator_errors(options)
    if errors is None:
        warnings.append("DataflowRunner cannot be imported here: checked the option values only")
    elif errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError("Dataflow options: " + " ".join(errors[0].split()) + more)
    missing = gcp_client_missing()
    if missing and not dry_run:
        raise ValueError(f"--runner {options.view_as(StandardOptions).runner}: {missing}")
    if missing:
        warnings.append(f"submitting needs apache-beam[gcp], not installed here ({_GCP_HINT})")
    for w in warnings:
        _LOG.warning("%s", w)
    return warnings


def count_transforms(pipeline) -> tuple[int, int]:
    """(transforms, leaf transforms) of ``pipeline``'s graph, from its runner API proto.

    Composites (e.g. WriteShards) count once themselves and once per part; leaves are
    the steps a runner executes (before fusion). Pickles every DoFn on the way, so an
    unpicklable function fails here rather than at submission.
    """
    proto = pipeline.to_runner_api()
    transforms = [t for tid, t in proto.components.transforms.items() if tid not in proto.root_transform_ids]
    return len(transforms), sum(1 for t in transforms if not t.subtransforms)


def dry_run_report(
    pipeline,
    options: PipelineOptions,
    job: str,
    details: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> dict:
    """What would be submitted, without submitting: a dict whose ``summary`` is one paragraph.

    ``details``: short phrases about the inputs and output (e.g. "200 annotated
    videos", "output gs://b/shards"). Keys: dry_run (True), job, runner, project, region,
    machine_type, num_transforms, num_leaf_transforms, warnings, summary.
    """
    total, leaves = count_transforms(pipeline)
    gcp = options.view_as(GoogleCloudOptions)
    worker = options.view_as(WorkerOptions)
    dataflow = is_dataflow(options)
    runner = "DataflowRunner" if dataflow else type(pipeline.runner).__name__
    parts = [f"Dry run, nothing submitted: {job} would run on {runner}"]
    if dataflow:
        vcpus = machine_vcpus(worker.machine_type) if worker.machine_type else None
        machine = worker.machine_type or "Dataflow's default machine type"
        if vcpus:
            machine += f" ({vcpus} vCPUs)"
        scale = ""
        if worker.num_workers or worker.max_num_workers:
            scale = f", {worker.num_workers or 'autoscaled'} workers (max {worker.max_num_workers or 'default'})"
        parts[0] += (
            f" in project {gcp.project}, region {gcp.region}, job name {gcp.job_name or '(Beam default)'}; "
            f"workers {machine}{scale}; code from "
            f"{_check_package(options.view_as(SetupOptions), worker)}; "
            f"temp {gcp.temp_location}, staging {gcp.staging_location or gcp.temp_location}"
        )
    parts.append(f"the graph has {total} transforms ({leaves} leaf steps)")
    parts.extend(details)
    summary = "; ".join(parts) + "."
    if warnings:
        summary += " Warnings: " + "; ".join(warnings) + "."
    return {
        "dry_run": True,
        "job": job,
        "runner": runner,
        "project": gcp.project,
        "region": gcp.region,
        "machine_type": worker.machine_type,
        "num_transforms": total,
        "num_leaf_transforms": leaves,
        "warnings": list(warnings),
        "summary": summary,
    }
