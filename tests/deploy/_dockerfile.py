"""Reading the Dockerfiles in deploy/docker/ without a Docker engine.

``dockerfile-parse`` splits a file into instructions (continuation lines joined, comments
apart); this module groups them into stages and replays a build stage's ``COPY`` and
``RUN`` on this machine (``replay_build``), so that the tests run the very ``uv sync``
lines the image runs. What a replay cannot show: the base image's own files, BuildKit's
cache mounts (dropped), and anything a ``RUN`` needs that only the image has.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

__all__ = ["Instruction", "Stage", "replay_build", "stages"]


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case) and its text after the keyword."""

    keyword: str
    value: str

    def flags_and_args(self) -> tuple[dict[str, str], list[str]]:
        """``--flag=value`` options and the remaining words (JSON form understood)."""
        text = self.value.strip()
        words = json.loads(text) if text.startswith("[") else shlex.split(text)
        flags: dict[str, str] = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words


@dataclass
class Stage:
    """One ``FROM`` and what follows it, up to the next ``FROM``."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The global ``ARG`` defaults and the stages of the Dockerfile at ``path``."""
    with path.open("rb") as fh:
        parser = DockerfileParser(fileobj=fh)
        structure = parser.structure
    args: dict[str, str] = {}
    out: list[Stage] = []
    for item in structure:
        keyword, value = item["instruction"].upper(), item["value"]
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", value.strip(), re.I)
            if match is None:
                raise ValueError(f"{path}: cannot read FROM {value!r}")
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match[1])
            out.append(Stage(base=base, name=match[2]))
        elif not out and keyword == "ARG":
            name, _, default = value.strip().partition("=")
            args[name] = default
        elif out:
            out[-1].instructions.append(Instruction(keyword, value))
    return args, out


def _env_of(stage: Stage, root: Path, image: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.value):
            name, _, value = word.partition("=")
            env[name] = value.replace("/opt/", f"{image}/opt/")
    return env


def replay_build(
    dockerfile: Path, stage_name: str, context: set[str], root: Path, image: Path, uv: str
) -> Path:
    """Run stage ``stage_name``'s ``COPY`` (from the build context) and ``RUN`` lines under
    ``image`` (a directory standing for the image's ``/``); returns its work directory.

    ``context`` is the set of files the build context holds: a ``COPY`` of anything else
    fails here as it would in ``docker build``. Paths under ``/opt/`` are moved under
    ``image``; ``uv`` is the uv binary to run for the image's ``uv``.
    """
    _, all_stages = stages(dockerfile)
    stage = next(s for s in all_stages if s.name == stage_name)
    workdir = image
    env = dict(os.environ)
    env.update(_env_of(stage, root, image))
    env["UV_PYTHON"] = "python3.11"
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = image / instruction.value.strip().lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            flags, words = instruction.flags_and_args()
            if "from" in flags:
                continue
            *sources, dest = words
            for source in sources:
                _copy_from_context(source, dest, context, root, workdir)
        elif instruction.keyword == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", instruction.value)
            command = re.sub(r"(^|&&\s*)uv ", rf"\1{shlex.quote(uv)} ", command.strip())
            command = command.replace("/opt/", f"{image}/opt/")
            subprocess.run(["bash", "-ec", command], cwd=workdir, env=env, check=True)
    return workdir


def _copy_from_context(
    source: str, dest: str, context: set[str], root: Path, workdir: Path
) -> None:
    target = workdir / dest
    if source in context:
        if dest.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            target = target / Path(source).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / source, target)
        return
    under = sorted(f for f in context if f.startswith(source.rstrip("/") + "/"))
    if not under:
        raise FileNotFoundError(f"COPY {source}: not in the build context (.dockerignore?)")
    for rel in under:
        out = target / Path(rel).relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, out)
