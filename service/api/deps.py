"""What routes depend on, as narrow `Annotated` dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.db import Job
from service.jobs import Jobs
from service.settings import Settings
from service.wiring import Components


def _jobs(request: Request) -> Jobs:
    return request.app.state.jobs


JobsDep = Annotated[Jobs, Depends(_jobs)]


def _components(request: Request) -> Components:
    return request.app.state.jobs.components


ComponentsDep = Annotated[Components, Depends(_components)]


def _settings(request: Request) -> Settings:
    return request.app.state.jobs.settings


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _job(job_id: str, jobs: JobsDep) -> Job:
    return await jobs.get(job_id)


ExistingJob = Annotated[Job, Depends(_job)]
"""The job named in the path (JOB_NOT_FOUND before a response starts: streams need it checked first)."""
