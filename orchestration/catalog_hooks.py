"""Register what a command wrote (law and plan files) in the workspace catalog, when asked.

Only with --workspace DIR or $CURATE_WORKSPACE: fitting or planning never creates a workspace
by surprise. A catalog failure is a warning, not an error: the file itself is written and can be
registered later.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def add_workspace_argument(parser) -> None:
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="also register the written file in this workspace's catalog "
                             "(default: $CURATE_WORKSPACE if set, else not registered)")


def register_written_file(kind: str, path: Path, workspace: str | None, command: str) -> str | None:
    """Register a law ("law") or plan ("plan") file; returns its catalog id, or None."""
    workspace = workspace or os.environ.get("CURATE_WORKSPACE")
    if not workspace:
        return None
    from curate.pools.catalog import Catalog, CatalogBusyError, CatalogError

    try:
        catalog = Catalog(workspace)
        ident = catalog.register_law(path) if kind == "law" else catalog.register_plan(path)
    except (CatalogError, CatalogBusyError) as exc:
        print(f"curate {command}: warning: {path} was written but not registered: {exc}",
              file=sys.stderr)
        return None
    print(f"registered {kind} {ident!r} in {catalog.path}", file=sys.stderr)
    return ident
