"""The `curate` CLI, configuration, run manifests, runner selection and progress."""
