"""`curate run --runner=DataflowRunner --dry_run=True` builds and translates the whole graph with
gs:// input, output and temp paths and a fake project, and never touches the network; counters
are read as committed values only, failing with one line where a runner has none."""
from __future__ import annotations

import json
import socket

import pytest

pytest.importorskip("google.cloud.storage",
                    reason="the Dataflow runner needs the 'dataflow' extra: pip install 'curate[dataflow]'")
pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient",
                    reason="the Dataflow runner needs the 'dataflow' extra: pip install 'curate[dataflow]'")

from curate.orchestration.cli import main  # noqa: E402
from curate.pipelines import counters  # noqa: E402

GCS = "gs://curate-fake-bucket"
DATAFLOW = ["--runner=DataflowRunner", "--project=curate-fake-project", "--region=europe-west1",
            f"--temp_location={GCS}/tmp", "--dry_run=True"]
GPU_HINT = "type:nvidia-l4;count:1;install-nvidia-driver"


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection or resolve a name is recorded and refused."""
    attempts = []

    def refuse(kind):
        def call(*args, **kwargs):
            attempts.append((kind, args[1:] if kind == "connect" else args[:2]))
            raise OSError(f"network disabled in this test ({kind})")
        return call

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    return attempts


def test_dry_run_translates_the_whole_graph_offline(no_network, capsys, tmp_path):
    # embedding stages on: the largest graph (embed, clusters, scores, semantic dedup)
    code = main(["run", "--input", f"{GCS}/corpus/*.jsonl.gz", "--input", f"{GCS}/more/part-0.parquet",
                 "--output", f"{GCS}/run", "--semantic-dedup", "--embedding-scores",
                 "--workspace", str(tmp_path / "ws"), "--json", *DATAFLOW,
                 f"--resource_hints=accelerator={GPU_HINT}", "--resource_hints=min_ram=16GB"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dry_run"] is True and summary["runner"] == "DataflowRunner"
    assert summary["counters"] is None  # a dry run has no metrics: reported, not a crash
    assert summary["transforms"] > 100  # every stage, not an empty pipeline
    assert any("beam_python3" in image for image in summary["environments"])
    assert no_network == [], f"the dry run tried to reach the network: {no_network[:3]}"
    assert not (tmp_path / "ws").exists()  # no cache, catalog or lock written
    # the GPU flags of docs/runners.md reach the translated job
    assert summary["resource_hints"] == {"accelerator": [GPU_HINT], "min_ram_bytes": [str(16 * 10**9)]}


def test_dry_run_line_with_a_local_input_and_a_custom_container(no_network, capsys, corpora_dir):
    # a local input is listed as in a real run; the output is never touched; the image given
    # with --sdk_container_image is the workers' environment
    image = "europe-docker.pkg.dev/curate-fake-project/curate/worker-cpu:0.1.0"
    code = main(["run", "--input", str(corpora_dir / "c4_sample_c.jsonl.gz"), "--output", f"{GCS}/run",
                 "--no-catalog", *DATAFLOW, f"--sdk_container_image={image}"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert "no metrics (dry run)" in line and "nothing was submitted" in line
    assert f"container {image})" in line
    assert no_network == []


def test_dry_run_on_a_runner_that_ignores_it_is_refused(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "text": "hello there"}\n')
    out = tmp_path / "out"
    assert main(["run", "--input", str(data), "--output", str(out), "--runner=FnApiRunner",
                 "--dry_run=True"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "honoured only by the DataflowRunner" in err[0]
    assert not out.exists()  # nothing ran


@pytest.mark.parametrize("dropped", ["--temp_location", "--project", "--region"])
def test_options_beam_would_look_up_online_are_required(dropped, no_network, capsys):
    """Without them Beam asks gcloud or creates a default staging bucket: the network."""
    flags = [f for f in DATAFLOW if not f.startswith(dropped)]
    assert main(["run", "--input", f"{GCS}/in/*.jsonl", "--output", f"{GCS}/run", *flags]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and dropped in err[0] and "dry run" in err[0], err
    assert no_network == []


def test_a_result_without_metrics_raises_one_line():
    from apache_beam.runners.runner import PipelineResult, PipelineState

    with pytest.raises(counters.CountersUnavailable, match="reports no metrics") as exc:
        counters.query(PipelineResult(PipelineState.DONE))  # what Dataflow's dry run returns
    assert "\n" not in str(exc.value)


def test_attempted_only_counters_are_refused():
    """A runner that commits nothing (attempted values only) cannot reconcile a run."""
    from apache_beam.metrics.execution import MetricKey
    from apache_beam.metrics.metric import MetricResults
    from apache_beam.metrics.metricbase import MetricName

    class AttemptedOnly(MetricResults):
        def query(self, filter=None):
            key = MetricKey("Write", MetricName(counters.NAMESPACE, counters.KEPT))
            from apache_beam.metrics.metric import MetricResult
            return {self.COUNTERS: [MetricResult(key, None, 7)], self.DISTRIBUTIONS: [], self.GAUGES: []}

    class Result:
        def metrics(self):
            return AttemptedOnly()

    with pytest.raises(counters.CountersUnavailable, match="without a committed value"):
        counters.query(Result())
