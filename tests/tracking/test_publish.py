"""One function publishes any audit result: metrics, tags and artifacts (text, bytes or a writer) to MLflow and
to loggers with a log dir."""

import mlflow
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger

from lightning_privacy.results import AuditResult
from lightning_privacy.tracking.publish import publish


def test_publish_writes_metrics_tags_and_every_kind_of_artifact(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_logger = MLFlowLogger(experiment_name="e", tracking_uri=uri,
                                 artifact_location=(tmp_path / "artifacts").as_uri())
    csv = CSVLogger(tmp_path / "csv")
    result = AuditResult(name="toy", metrics={"toy/x": 1.5}, tags={"toy.kind": "demo"}, artifacts={
        "audit/a.txt": "text", "audit/b.bin": b"\x00\x01", "c.md": lambda p: p.write_text("# written")})
    publish(result, [mlflow_logger, csv], step=3)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(mlflow_logger.run_id)
    assert run.data.metrics["toy/x"] == 1.5 and run.data.tags["toy.kind"] == "demo"
    assert client.get_metric_history(mlflow_logger.run_id, "toy/x")[0].step == 3
    assert {a.path for a in client.list_artifacts(mlflow_logger.run_id, "audit")} == {"audit/a.txt", "audit/b.bin"}
    assert "c.md" in {a.path for a in client.list_artifacts(mlflow_logger.run_id)}
    assert (tmp_path / "csv" / "lightning_logs" / "version_0" / "audit" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "csv" / "lightning_logs" / "version_0" / "c.md").read_text() == "# written"
