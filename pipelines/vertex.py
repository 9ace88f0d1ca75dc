"""Compiles the same `create_pipeline` for Vertex AI Pipelines (KubeflowV2DagRunner) and submits it.

The compiled spec runs every component in the pipeline image (infra/), the Trainers as Vertex AI
Training jobs with a GPU, and the Beam-based components on Dataflow.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re

from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from pipelines.config import IMAGE_CODE_ROOT, Config, DataflowConfig, VertexTrainingConfig
from pipelines.pipeline import create_pipeline


@dataclasses.dataclass
class VertexSettings:
    """What `--runner vertex` needs beyond the pipeline's own configuration."""

    project: str
    region: str
    bucket: str  # gs://bucket[/prefix]: pipeline root, Dataflow temp files, pushed models
    image_uri: str
    service_account: str | None = None
    trainer_machine_type: str = "n1-standard-8"
    gpu_type: str = "NVIDIA_TESLA_T4"
    gpu_count: int = 1
    dataflow_machine_type: str = "n1-standard-4"
    dataflow_max_workers: int = 10

    def check(self, config: Config) -> None:
        problems = []
        if not self.project:
            problems.append("--project (the Google Cloud project) is required")
        if not self.bucket.startswith("gs://"):
            problems.append(f"--bucket must be a gs:// URL, got {self.bucket!r}")
        if not self.image_uri:
            problems.append("--image (the pipeline image built from infra/Dockerfile) is required")
        if config.data is None or not config.data.startswith("gs://"):
            problems.append(f"--data must be the CelebA layout in a gs:// bucket on Vertex, got {config.data!r} "
                            "(the embedded synthetic data is only generated for local runs)")
        if problems:
            raise SystemExit("cannot run on Vertex AI:\n  " + "\n  ".join(problems))


def vertex_config(config: Config, settings: VertexSettings) -> Config:
    """The local Config turned into its Vertex form: gs:// work dir, GPU trainers, Dataflow."""
    settings.check(config)
    work_dir = config.work_dir if config.work_dir.startswith("gs://") else f"{settings.bucket.rstrip('/')}/facesan"
    return dataclasses.replace(
        config,
        work_dir=work_dir,
        code_root=IMAGE_CODE_ROOT,
        # A Trainer given GPUs that cannot see them fails instead of training on the CPU.
        training=dataclasses.replace(config.training, require_gpu=settings.gpu_count > 0),
        vertex_training=VertexTrainingConfig(
            project=settings.project, region=settings.region, image_uri=settings.image_uri,
            machine_type=settings.trainer_machine_type, accelerator_type=settings.gpu_type,
            accelerator_count=settings.gpu_count,
        ),
        beam_pipeline_args=DataflowConfig(
            project=settings.project, region=settings.region, temp_location=f"{work_dir}/dataflow-tmp",
            sdk_container_image=settings.image_uri, machine_type=settings.dataflow_machine_type,
            max_num_workers=settings.dataflow_max_workers, service_account=settings.service_account,
        ).beam_pipeline_args() + list(config.beam_pipeline_args),
    )


def compile_pipeline(config: Config, settings: VertexSettings, output_file: str) -> str:
    """Writes the Vertex AI pipeline spec JSON; needs no cloud access."""
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=settings.image_uri),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file),
    )
    runner.run(create_pipeline(vertex_config(config, settings)), write_out=True)
    return output_file


def _require_credentials(spec_file: str) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError as error:
        raise SystemExit(
            f"no Google Cloud credentials ({error.__class__.__name__}). The spec is compiled at {spec_file}; "
            "authenticate (gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS) and run "
            "again, or submit the spec yourself."
        ) from None


def _pipeline_job(spec_file: str, config: Config, settings: VertexSettings):
    from google.cloud import aiplatform

    _require_credentials(spec_file)
    aiplatform.init(project=settings.project, location=settings.region)
    return aiplatform.PipelineJob(
        display_name=config.pipeline_name,
        template_path=spec_file,
        pipeline_root=vertex_config(config, settings).pipeline_root,
        enable_caching=True,
    )


def submit(spec_file: str, config: Config, settings: VertexSettings) -> str:
    """Submits a compiled spec to Vertex AI Pipelines; a clear error when there are no credentials."""
    job = _pipeline_job(spec_file, config, settings)
    job.submit(service_account=settings.service_account)
    logging.info("submitted Vertex AI pipeline job %s", job.resource_name)
    return job.resource_name


def check_cron(cron: str) -> str:
    """A five-field cron expression (minute hour day-of-month month day-of-week), or a clear error."""
    fields = cron.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-A-Za-z?]+", field) for field in fields):
        raise SystemExit(f"--schedule must be a five-field cron expression such as '0 3 * * 1' "
                         f"(03:00 every Monday), got {cron!r}")
    return cron


def schedule(spec_file: str, config: Config, settings: VertexSettings, cron: str, time_zone: str,
             display_name: str | None = None) -> str:
    """Creates a Vertex AI pipeline schedule that runs the compiled spec on `cron` in `time_zone`.

    One run at a time: a run that would start while the previous one still runs is skipped.
    """
    check_cron(cron)
    job = _pipeline_job(spec_file, config, settings)
    created = job.create_schedule(
        cron=f"TZ={time_zone} {cron}",
        display_name=display_name or f"{config.pipeline_name}-schedule",
        max_concurrent_run_count=1,
        service_account=settings.service_account,
    )
    logging.info("created Vertex AI pipeline schedule %s", created.resource_name)
    return created.resource_name
