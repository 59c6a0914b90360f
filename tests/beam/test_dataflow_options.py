"""Dataflow options and the ``--dry_run`` of both Beam jobs (beam.dataflow): no network.

Nothing is submitted: the dry runs check the options, build the graph and report it.
A fake checkout (setup.py next to beam/ and tags_tf/) stands for this repository's.
"""

import json

import numpy as np
import pytest
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    TestOptions as BeamTestOptions,
    WorkerOptions,
)

from beam import build_shards, dataflow


@pytest.fixture
def repo(tmp_path):
    """A checkout to ship: setup.py beside beam/ and tags_tf/."""
    root = tmp_path / "repo"
    for pkg in ("beam", "tags_tf"):
        (root / pkg).mkdir(parents=True)
    (root / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    (root / "requirements.txt").write_text("av\n")
    return root


@pytest.fixture
def dataflow_args(repo):
    return [
        "--runner", "DataflowRunner", "--project", "my-project", "--region", "us-central1",
        "--temp_location", "gs://my-bucket/tmp", "--staging_location", "gs://my-bucket/staging",
        "--setup_file", str(repo / "setup.py"), "--requirements_file", str(repo / "requirements.txt"),
        "--machine_type", "n2-standard-8",
    ]  # fmt: skip


@pytest.fixture
def annotations(tmp_path):
    """ActivityNet-style annotations of 4 videos (2 subsets) and their local features."""
    db = {
        f"v{i}": {"subset": "training" if i % 2 else "validation", "duration": 10.0,
                  "annotations": [{"segment": [1.0, 3.0], "label": "jump"}]}
        for i in range(4)
    }  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"database": db}))
    feats = tmp_path / "feats"
    feats.mkdir()
    for vid in db:
        np.save(feats / f"{vid}.npy", np.zeros((8, 4), np.float32))
    return path, feats


def _replace(args, flag, value):
    """``args`` with ``flag``'s value replaced (value None: the flag dropped)."""
    i = args.index(flag)
    return args[:i] + ([flag, value] if value is not None else []) + args[i + 2 :]


# ------------------------------------------------------------------------------ options


def test_dataflow_options_parse_into_beams_views(dataflow_args):
    options = PipelineOptions(dataflow_args)
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("my-project", "us-central1", "gs://my-bucket/tmp")
    assert options.view_as(WorkerOptions).machine_type == "n2-standard-8"
    assert options.view_as(SetupOptions).setup_file.endswith("setup.py")
    assert dataflow.is_dataflow(options)
    for spelling in ("dataflow", "DataflowRunner", "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner"):
        assert dataflow.is_dataflow(PipelineOptions(["--runner", spelling]))
    assert not dataflow.is_dataflow(PipelineOptions(["--runner", "dask"]))
    assert not dataflow.is_dataflow(PipelineOptions([]))

    warnings = dataflow.check_options(options, {"--output": "gs://my-bucket/out"}, dry_run=True, encoder_job=True)
    assert options.view_as(BeamTestOptions).dry_run  # Beam then skips its bucket checks (network)
    assert not any("machine_type" in w for w in warnings)  # n2-standard-8: no advice


def test_other_runners_are_not_checked():
    options = PipelineOptions(["--runner", "DirectRunner", "--temp_location", "/tmp/x"])
    assert dataflow.check_options(options, {"--output": "/local/out"}, encoder_job=True) == []


def test_machine_types():
    assert [dataflow.machine_vcpus(m) for m in ("n2-standard-8", "custom-8-32768", "n2-custom-4-8192")] == [8, 8, 4]
    assert [dataflow.machine_vcpus(m) for m in ("e2-small", "a2-highgpu-1g")] == [0, None]


@pytest.mark.parametrize(
    "machine, advice",
    [(None, "not set"), ("e2-medium", "shared-core"), ("n2-standard-2", "2 vCPUs"), ("n2-highcpu-16", "1 GB"),
     ("c3-standard-8", None)],
)  # fmt: skip
def test_extract_gets_machine_type_advice(dataflow_args, machine, advice):
    options = PipelineOptions(_replace(dataflow_args, "--machine_type", machine))
    warnings = [w for w in dataflow.check_options(options, dry_run=True, encoder_job=True) if "machine_type" in w]
    if advice is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and advice in warnings[0] and dataflow.RECOMMENDED_EXTRACT_MACHINE in warnings[0]


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--project", None, "--project missing: expected a Google Cloud project ID"),
        ("--project", "123456789", "not the project number"),
        ("--region", None, "--region missing: expected a Dataflow region"),
        ("--region", "us-central1-a", "(not a zone)"),
        ("--temp_location", "/tmp/beam", "--temp_location '/tmp/beam': expected a Cloud Storage path gs://"),
        ("--temp_location", "gs://my-bucket", "gs://BUCKET/PATH"),
        ("--staging_location", "s3://bucket/staging", "--staging_location 's3://bucket/staging'"),
        ("--machine_type", "n2 standard 8", "expected a Compute Engine machine type such as n2-standard-8"),
        ("--setup_file", "/nonexistent/setup.py", "--setup_file '/nonexistent/setup.py': expected an existing"),
        ("--requirements_file", "/nonexistent/req.txt", "--requirements_file '/nonexistent/req.txt'"),
    ],
)
def test_bad_options_raise_one_line_naming_the_option(dataflow_args, flag, value, message):
    options = PipelineOptions(_replace(dataflow_args, flag, value))
    with pytest.raises(ValueError) as e:
        dataflow.check_options(options, dry_run=True)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_how_the_workers_get_the_package(dataflow_args, repo, tmp_path, monkeypatch):
    bare = _replace(_replace(dataflow_args, "--setup_file", None), "--requirements_file", None)
    with pytest.raises(ValueError, match="^--setup_file missing: Dataflow workers need this package"):
        dataflow.check_options(PipelineOptions(bare), dry_run=True)
    dataflow.check_options(PipelineOptions(bare + ["--sdk_container_image", "gcr.io/p/tags:1"]), dry_run=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "setup.py").write_text("")
    with pytest.raises(ValueError, match="this repository's setup.py"):
        dataflow.check_options(PipelineOptions(bare + ["--setup_file", str(other / "setup.py")]), dry_run=True)
    (repo / "pyproject.toml").write_text("")
    pyproject = PipelineOptions(bare + ["--setup_file", str(repo / "pyproject.toml")])
    monkeypatch.setattr(dataflow, "_can_build_pyproject", lambda: False)
    with pytest.raises(ValueError, match="pip install build"):
        dataflow.check_options(pyproject, dry_run=True)
    monkeypatch.setattr(dataflow, "_can_build_pyproject", lambda: True)
    dataflow.check_options(pyproject, dry_run=True)


def test_worker_paths_must_not_be_local(dataflow_args):
    options = PipelineOptions(dataflow_args)
    with pytest.raises(ValueError, match="^--output '/data/out': expected a gs://BUCKET/PATH"):
        dataflow.check_options(options, {"--output": "/data/out", "--features": "gs://my-bucket/f"}, dry_run=True)
    dataflow.check_options(options, {"--output": "gs://my-bucket/out", "--features2": None}, dry_run=True)
    # Encoder weights inside the worker image may be a local path.
    with pytest.raises(ValueError, match="^--encoder '/models/movinet'"):
        dataflow.check_options(options, {"--encoder": "/models/movinet"}, dry_run=True)
    image = PipelineOptions(dataflow_args + ["--sdk_container_image", "gcr.io/p/tags:1"])
    dataflow.check_options(image, {"--encoder": "/models/movinet"}, dry_run=True)


# ---------------------------------------------------------------------- dry runs: CLIs


def test_build_shards_dry_run_builds_the_graph_and_submits_nothing(annotations, dataflow_args, tmp_path, capsys):
    ann, _ = annotations
    args = ["--annotations", str(ann), "--features", "gs://my-bucket/feats", "--output", "gs://my-bucket/shards",
            "--log_level", "ERROR", "--dry_run"]  # fmt: skip
    assert build_shards.main(args + dataflow_args) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and out.startswith("Dry run, nothing submitted: beam.build_shards")
    for part in ("DataflowRunner", "project my-project", "region us-central1", "n2-standard-8 (8 vCPUs)",
                 "4 annotated videos", "gs://my-bucket/feats not listed"):  # fmt: skip
        assert part in out
    report = build_shards.run_build_shards(
        ann, "gs://my-bucket/feats", "gs://my-bucket/shards", pipeline_args=dataflow_args, dry_run=True
    )
    assert report["dry_run"] and report["num_transforms"] >= report["num_leaf_transforms"] > 0
    assert (report["project"], report["region"], report["machine_type"]) == ("my-project", "us-central1",
                                                                              "n2-standard-8")


def test_build_shards_local_dry_run_plans_from_the_inputs(annotations, tmp_path, capsys):
    ann, feats = annotations
    out_dir = tmp_path / "out"
    args = ["--annotations", str(ann), "--features", str(feats), "--output", str(out_dir), "--num_shards", "2",
            "--log_level", "ERROR", "--dry_run"]  # fmt: skip
    assert build_shards.main(args) == 0
    out = capsys.readouterr().out
    assert "on FnApiRunner" in out and "{'training': 2, 'validation': 2}" in out
    assert not out_dir.exists()  # nothing written


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--project", None, "--project missing"),
        ("--temp_location", "/tmp/beam", "--temp_location '/tmp/beam'"),
        ("--setup_file", "/nonexistent/setup.py", "--setup_file '/nonexistent/setup.py'"),
    ],
)
def test_build_shards_bad_option_is_one_line_exit_2(annotations, dataflow_args, capsys, flag, value, message):
    ann, _ = annotations
    args = ["--annotations", str(ann), "--features", "gs://my-bucket/feats", "--output", "gs://my-bucket/out",
            "--log_level", "ERROR", "--dry_run"]  # fmt: skip
    assert build_shards.main(args + _replace(dataflow_args, flag, value)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"build_shards: error: {message}"), err


def _extract_args(encoder="savedmodel:gs://my-bucket/movinet_a0:size=172"):
    return ["--videos", "gs://my-bucket/videos", "--encoder", encoder, "--output", "gs://my-bucket/out", "--dry_run"]


def test_extract_features_dry_run_builds_the_graph_and_submits_nothing(dataflow_args, capsys):
    pytest.importorskip("av")
    from beam import extract_features

    report = extract_features.run(_extract_args() + dataflow_args)
    assert report["dry_run"] and report["num_transforms"] >= report["num_leaf_transforms"] > 0
    assert report["runner"] == "DataflowRunner" and report["machine_type"] == "n2-standard-8"
    assert "16x172x172 clips" in report["summary"] and "gs://my-bucket/videos not listed" in report["summary"]
    assert extract_features.main(_extract_args() + _replace(dataflow_args, "--machine_type", "e2-small")) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "Warnings: --machine_type e2-small is shared-core" in out


def test_extract_features_local_dry_run_lists_the_videos(tmp_path):
    pytest.importorskip("av")
    from beam import extract_features

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mkv", "notes.txt"):
        (videos / name).write_bytes(b"")  # listed, never opened
    args = ["--videos", str(videos), "--encoder", "keras_app:mobilenet_v3_small", "--allow_random_init",
            "--output", str(tmp_path / "out"), "--dry_run"]  # fmt: skip
    report = extract_features.run(args)
    assert report["runner"] == "FnApiRunner" and "2 input videos (2 video files)" in report["summary"]
    assert report["num_transforms"] > 0 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--project", None, "--project missing"),
        ("--temp_location", "/tmp/beam", "--temp_location '/tmp/beam'"),
        ("--setup_file", "/nonexistent/setup.py", "--setup_file '/nonexistent/setup.py'"),
        # setup.py installs install_requires only: without the video extra every video would fail.
        ("--requirements_file", None, "--requirements_file missing: expected the video extra for the workers "
                                      "(tf-models-official~=2.20.0 av): --requirements_file beam/requirements-video.txt"),
    ],
)
def test_extract_features_bad_option_is_one_line_exit_2(dataflow_args, capsys, flag, value, message):
    pytest.importorskip("av")
    from beam import extract_features

    assert extract_features.main(_extract_args() + _replace(dataflow_args, flag, value)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"extract_features: error: {message}"), err


def test_worker_video_requirements_are_setup_cfg_video_extra():
    import configparser

    from tests.conftest import REPO

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extra = [line.strip() for line in cfg["options.extras_require"]["video"].splitlines() if line.strip()]
    shipped = [line.strip() for line in (REPO / dataflow.VIDEO_REQUIREMENTS_FILE).read_text().splitlines()]
    assert extra == shipped == list(dataflow.VIDEO_REQUIREMENTS)


def _readme_dataflow_commands():
    """The ``python -m beam...`` commands of docs/data.md's "Running the Beam jobs on Dataflow"."""
    import shlex

    from tests.conftest import REPO

    text = (REPO / "docs" / "data.md").read_text()
    section = text.split("## Running the Beam jobs on Dataflow", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if line.startswith("python -m beam."):
            commands.append(shlex.split(line))
    return commands


def test_readme_dataflow_commands_parse_and_build_their_graphs(annotations, capsys, monkeypatch):
    """docs/data.md's Dataflow steps, run as printed with --dry_run (local paths made to exist)."""
    import importlib

    from tests.conftest import REPO

    commands = _readme_dataflow_commands()
    assert [c[2] for c in commands] == ["beam.build_shards", "beam.extract_features"], commands
    ann_path = str(annotations[0])
    monkeypatch.chdir(REPO)  # --setup_file ./setup.py, --requirements_file beam/...
    for argv in commands:
        if argv[2] == "beam.extract_features":
            pytest.importorskip("av")
        args = [ann_path if a.endswith("annotations.json") else a for a in argv[3:]]
        job = importlib.import_module(argv[2])
        assert job.main(args + ["--dry_run"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "Dry run, nothing submitted" in out and "DataflowRunner" in out, out
