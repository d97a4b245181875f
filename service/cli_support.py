"""What the CLI's commands share: the `--agents` option and how a finished job is reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kernel.errors import AdgraphError

AgentsOpt = Annotated[
    str | None,
    typer.Option(
        help="Who plans, designs and codes: 'rules', or 'llm' (the rules take over any part it gets wrong). "
        "Default: ADGRAPH_AGENTS, else rules."
    ),
]


def settings_with_agents(agents: str | None) -> Any:
    """Settings from the environment, with `--agents` (if given) over ADGRAPH_AGENTS."""
    from service.settings import Settings

    if agents is None:
        return Settings()
    if agents not in ("rules", "llm"):
        raise AdgraphError("INVALID_INPUT", f"--agents {agents!r}: choose 'rules' or 'llm'", field="agents")
    return Settings(agents=agents)


def report(doc: dict[str, Any], result: Any, out: Path) -> int:
    """Print a job's result.json; on failure, how to resume it. The command's exit code."""
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    if result.error is not None:
        typer.echo(
            f"error: {result.error.code}: {result.error.message} "
            f"(resume with: adgraph jobs resume {result.job_id} --out {out})",
            err=True,
        )
        return 1
    return 0
