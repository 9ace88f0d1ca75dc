"""The bulk sanitization job: a pushed sanitizer over a whole face database, with Beam, losing nothing.

    python -m pipelines.sanitize --input photos/ --output sanitized/ [--faces wild]

One module per responsibility (read them in this order):

    config.py      SanitizeJobConfig: every flag of the job, and which ones an output pins
    layout.py      the output folder's names, JobPlan (what workers carry), atomic writes
    inputs.py      --input as a file pattern, its kind, one element per input (images, records)
    faces.py       decode, find and align faces; warp the sanitized faces back, encode, deliver
    model.py       which SavedModel runs (resolve_model, model_facts) and its RunInference handler
    containers.py  TFRecord/Parquet output: staging and whole, atomic shards
    manifest.py    one manifest row per input; the progress files, written and read back
    transforms.py  the composite PTransforms: SanitizeInputs, ConsolidateManifest
    job.py         run_job: plan, claim the output, run, clean up, summarize, account for every input
    cli.py         the flags (and `run(argv, test_pipeline=None)`, as Beam's examples have)
    component.py   BulkSanitizer, the TFX step that runs this job after the Pusher

This package is kept light to import (pipelines/config.py reads config.py); import the module you
need.
"""
