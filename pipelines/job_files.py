"""Files a job's workers need from the launcher (a local model folder), staged with the run.

A worker runs in a folder of its own, maybe on another machine: a model folder named by a
launcher path is not there. The launcher copies it, through Beam's FileSystems (so gs:// and
other object stores work), into ``<staging>/_intermediate/job_files/model-<digest>/``, where
the digest hashes every file's relative path and content; ``MANIFEST.json`` is written last
and lists the files with their SHA-256. A worker copies the folder into a local temporary
folder of the same digest once per machine (checked against the manifest) and loads from
there. The staging folder is the run's own (``--curate_job_files_dir``, set by `curate run`),
deleted with the intermediate files when the pipeline ends.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from curate.pipelines import fsutil

#: under the run's staging folder, beside the intermediate files (never published)
JOB_FILES_DIR = "_intermediate/job_files"
MANIFEST = "MANIFEST.json"


class JobFilesOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--curate_job_files_dir", default=None,
                            help="folder every worker can read where the launcher stages files the job needs")


def set_job_files_dir(options, path: str | None) -> None:
    options.view_as(JobFilesOptions).curate_job_files_dir = path


def job_files_dir(pipeline) -> str | None:
    options = getattr(pipeline, "_options", None)
    return options.view_as(JobFilesOptions).curate_job_files_dir if options is not None else None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _folder_files(folder: str) -> list[tuple[str, str]]:
    """(relative path, absolute path) of every file under `folder`, links followed, sorted."""
    out = []
    for here, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(here, name)
            out.append((os.path.relpath(full, folder).replace(os.sep, "/"), full))
    return out


def local_model_folder(model: str | None) -> str | None:
    """The launcher path of `model` when it is a local folder curate must ship, else None.

    The packaged default and names a library resolves itself are not shipped."""
    from curate.scorers.embedding import DEFAULT_MODEL

    if not model or model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}") or fsutil.is_url(model):
        return None
    return os.path.abspath(model) if os.path.isdir(model) else None


def stage_folder(folder: str, root: str) -> str:
    """Copy `folder` under `root` (any Beam filesystem); the staged folder's URL.

    Content-addressed: staging the same content twice (the embed and the embedding-scores
    stage share a model) writes it once."""
    files = [(rel, full, _sha256(full)) for rel, full in _folder_files(folder)]
    digest = hashlib.sha256(json.dumps([(rel, sha) for rel, _, sha in files]).encode()).hexdigest()[:24]
    target = FileSystems.join(root, f"model-{digest}")
    manifest = FileSystems.join(target, MANIFEST)
    if FileSystems.exists(manifest):
        return target
    for rel, full, _ in files:
        with open(full, "rb") as src, FileSystems.create(FileSystems.join(target, rel)) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    fsutil.write_bytes(manifest, json.dumps({"digest": digest, "files": {rel: sha for rel, _, sha in files}},
                                            sort_keys=True).encode())
    return target


def fetch_folder(staged: str) -> str:
    """A local copy of a staged folder (made once per machine, checked file by file)."""
    from apache_beam.io.filesystem import CompressionTypes

    manifest = json.loads(fsutil.read_bytes(FileSystems.join(staged, MANIFEST)))
    local = os.path.join(tempfile.gettempdir(), f"curate-job-{manifest['digest']}")
    if os.path.isfile(os.path.join(local, MANIFEST)):
        return local
    tmp = f"{local}.tmp-{uuid.uuid4().hex[:8]}"
    for rel, sha in sorted(manifest["files"].items()):
        dest = os.path.join(tmp, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with FileSystems.open(FileSystems.join(staged, rel), compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if _sha256(dest) != sha:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(f"staged model file {rel} under {staged} does not match its checksum")
    with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
    try:
        os.rename(tmp, local)  # another process of this machine may have won: keep its copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return local


def stage_model(model: str | None, pipeline, root: str | None = None) -> str | None:
    """Stage a local model folder for the pipeline's workers; its URL, or None (nothing to ship,
    or no job-files folder known: workers then load `model` by its launcher path)."""
    folder = local_model_folder(model)
    root = root or job_files_dir(pipeline)
    if folder is None or root is None:
        return None
    return stage_folder(folder, root)
