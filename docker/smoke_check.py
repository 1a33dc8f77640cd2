"""Build-time check of a curate worker image (run by docker/Dockerfile.cpu and .gpu), also
runnable in any worker venv: `python docker/smoke_check.py [--cuda] [--gcs] [--beam-boot]`.

Fails the build when the image could not serve as a Beam SDK container for curate: curate and
its pipeline modules import, Beam has the expected version (and GCS support with --gcs), the
packaged MiniLM model loads with no network and embeds a sentence, and torch is the intended
build (CPU-only, or built with CUDA).
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cuda", action="store_true", help="torch must be a CUDA build (GPU image)")
    parser.add_argument("--gcs", action="store_true", help="gs:// must be readable (apache-beam[gcp])")
    parser.add_argument("--beam-boot", action="store_true", help="/opt/apache/beam/boot must exist")
    parser.add_argument("--beam-version", default=os.environ.get("BEAM_VERSION"))
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"  # the model must be in the image

    import apache_beam
    import torch

    import curate.pipelines.curation  # noqa: F401 - every stage's imports resolve
    from curate.scorers.embedding import load_model, resolve_model_path

    problems = []
    if args.beam_version and apache_beam.__version__ != args.beam_version:
        problems.append(f"apache-beam {apache_beam.__version__}, expected {args.beam_version} "
                        "(the launcher and the workers must run the same Beam)")
    if args.beam_boot and not os.access("/opt/apache/beam/boot", os.X_OK):
        problems.append("/opt/apache/beam/boot is missing: copy it from apache/beam_python3.X_sdk")
    if args.gcs:
        try:
            import google.cloud.storage  # noqa: F401 - what Beam's gs:// filesystem needs
        except ImportError:
            problems.append("google-cloud-storage is missing: workers cannot read gs://; install curate[dataflow]")
    cuda_build = torch.version.cuda is not None
    if args.cuda and not cuda_build:
        problems.append(f"torch {torch.__version__} is a CPU build; the GPU image needs a CUDA build")
    if not args.cuda and cuda_build:
        problems.append(f"torch {torch.__version__} is a CUDA build (GBs); the CPU image wants the CPU wheel")
    # no GPU at build time: the model is checked on the CPU in both images
    vector = load_model(None, device="cpu", precision="fp32").encode(["a sentence to embed"])[0]
    if len(vector) != 384:
        problems.append(f"MiniLM gave a {len(vector)}-dim vector, expected 384")
    for problem in problems:
        print(f"smoke check: {problem}", file=sys.stderr)
    if not problems:
        print(f"smoke check ok: curate, apache-beam {apache_beam.__version__}, torch {torch.__version__}, "
              f"model {resolve_model_path(None)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
