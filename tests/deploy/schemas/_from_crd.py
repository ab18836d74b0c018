"""Write a CRD's served version's openAPIV3Schema as JSON (how the files here were made).

Usage: ``python tests/deploy/schemas/_from_crd.py CRD.yaml VERSION OUT.json``. The CRD
comes from the project's release tag named in this folder's README; nothing is edited.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def main(crd_path: str, version: str, out: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema = served["schema"]["openAPIV3Schema"]
            Path(out).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            return
    raise SystemExit(f"{crd_path}: no version {version}")


if __name__ == "__main__":
    main(*sys.argv[1:])
