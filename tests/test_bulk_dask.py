"""The bulk job on another real distributed Beam engine: Beam's Dask runner on a local
`distributed` cluster of worker processes."""

from __future__ import annotations

import pytest

from bulk_helpers import export_small_model, image_files, manifest_rows
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize import run_job

distributed = pytest.importorskip("distributed")


def test_job_runs_on_the_dask_runner_with_a_local_process_cluster(tmp_path):
    from components import synthetic_celeba

    raw = tmp_path / "raw"
    synthetic_celeba.generate(str(raw), num_identities=3, images_per_identity=2, seed=1)
    (raw / "img_align_celeba" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    model = export_small_model(tmp_path / "model" / "5")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        args = ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                f"--dask_client_address={cluster.scheduler_address}"]
        summary = run_job(SanitizeJobConfig(input=str(raw / "img_align_celeba"), output=str(out), progress_every_s=0,
                                            beam_pipeline_args=args), model_dir=model)
        assert len(cluster.workers) == 2
    rows = manifest_rows(out)
    assert (summary["inputs"], summary["sanitized"], summary["rejected"]) == (7, 6, 1)
    assert rows["broken.jpg"]["reason"] == "undecodable"
    assert len(image_files(out)) == 6
