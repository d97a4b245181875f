"""Settings, read once: environment variables with the ADGRAPH_ prefix, or a .env file."""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?")
_HOST = re.compile(r"\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def _comma_list(value: object) -> object:
    """`a, b` from the environment as ["a", "b"]; lists (from code) as they are."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADGRAPH_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".adgraph"), description="Artifacts and the SQLite databases live here.")
    artifacts_url: str | None = Field(
        None,
        description="Where artifacts live: unset, file:///ABS/PATH or a path: a local directory (default "
        "data_dir/artifacts); s3://BUCKET[/PREFIX] (pip install 'adgraph[shared-artifacts]') or "
        "postgresql://… (table artifact_blobs): a store every machine reaches, with data_dir/artifacts as "
        "this machine's cache of it.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint for an s3:// artifacts_url (MinIO, R2, …; http:// allowed); "
        "unset: AWS.",
    )
    s3_region: str | None = Field(None, description="Region of an s3:// artifacts_url; unset: AWS_REGION.")
    s3_access_key_id: str | None = Field(
        None,
        description="Key id for an s3:// artifacts_url; unset: the standard AWS environment "
        "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, web identity) or the instance "
        "role.",
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="Its secret (with s3_access_key_id).")
    checkpoint_url: str | None = Field(
        None, description="sqlite:///FILE or postgresql://…; default: SQLite in data_dir."
    )
    max_image_pixels: int = Field(40_000_000, gt=0, description="Larger uploads are IMAGE_TOO_LARGE.")
    chromium_path: str = "/usr/bin/chromium"
    render_timeout_s: float = Field(20.0, gt=0)
    render_pages: int = Field(2, ge=1, description="Chromium tabs kept warm for rendering at once.")
    onnx_threads: int = Field(2, ge=1)
    step_cache: bool = Field(
        True,
        description="Reuse a photo's cut-out (same photo, same segment backend, same tenant) instead of "
        "segmenting it again.",
    )
    database_url: str | None = Field(
        None, description="Jobs and events: sqlite:///FILE or postgresql://…; default: SQLite in data_dir."
    )
    max_concurrent_jobs: int = Field(
        default_factory=lambda: max(1, (os.cpu_count() or 2) // 2),
        ge=1,
        description="Jobs run at once by this process (each already uses two threads for segmentation).",
    )
    worker_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="Niceness of the job worker processes (their Chromium and model threads too): at 19 "
        "the API answers first and jobs use the CPU it leaves.",
    )
    worker_cpus: str | None = Field(
        None,
        pattern=r"^\d+(-\d+)?(,\d+(-\d+)?)*$",
        description="CPUs the job worker may use, e.g. '1' or '2-7'; the API keeps the others.",
    )
    lease_s: float = Field(15.0, gt=0, description="A running job's lease; renewed every third of it.")
    queue: Literal["auto", "local", "procrastinate"] = Field(
        "auto",
        description="What hands jobs to workers: `local` (the jobs table itself, polled: one machine), "
        "`procrastinate` (procrastinate on PostgreSQL: workers on many machines); `auto`: procrastinate "
        "on PostgreSQL, local on SQLite.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Attempts of a job that fails transiently (TRANSIENT_FAILURE, DATABASE_UNAVAILABLE, "
        "GPU_OUT_OF_MEMORY) before it ends failed.",
    )
    retry_backoff_s: float = Field(
        2.0, ge=0, description="A retry waits this × 2^(failures-1), with ±50 % jitter, capped at 5 minutes."
    )
    shutdown_delay_s: float = Field(
        0.0,
        ge=0,
        le=300,
        description="After SIGTERM the API keeps serving this long with /readyz at 503 (so a load balancer "
        "stops sending it requests) before it closes its listener; event streams end at once.",
    )
    worker_grace_s: float = Field(
        60.0,
        gt=0,
        description="After SIGTERM a worker lets its running nodes finish for this long, then stops them; "
        "their jobs go back to the queue either way.",
    )
    max_upload_bytes: int = Field(25 * 2**20, gt=0, description="Larger uploads are IMAGE_TOO_LARGE.")

    # -- HTTP: what browsers and slow or hostile clients may do (service/api/http_safety.py) ----------------
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port], comma-separated) whose web pages may call the API; "
        "empty: CORS off. Never '*'.",
    )
    trusted_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Host header values answered (comma-separated, no port; '*.example.com', or '*' only "
        "behind a proxy that checks Host); unset: localhost, 127.0.0.1, ::1 and the `serve --host` address "
        "(on 0.0.0.0 or ::, this machine's names and addresses).",
    )
    max_connections: int = Field(
        1000, ge=1, description="Connections at once (each SSE stream holds one); past it requests get 503."
    )
    keep_alive_s: float = Field(5.0, gt=0, description="An idle keep-alive connection is closed after this.")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request line and headers must arrive within this (408); a silent new connection is "
        "closed.",
    )
    max_header_bytes: int = Field(
        64 * 2**10, ge=4096, description="Longer request line and headers: 431 HEADERS_TOO_LARGE."
    )
    body_timeout_s: float = Field(
        10.0, gt=0, description="Longest pause in a request body, and the grace before body_min_rate (408)."
    )
    body_min_rate: float = Field(
        1024.0, gt=0, description="Bytes/s a request body must average after its first body_timeout_s (408)."
    )

    @field_validator("artifacts_url", mode="before")
    @classmethod
    def _artifacts_url(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return None
        if "://" not in value:
            return value  # a directory
        scheme = value.split("://", 1)[0].lower()
        parts = urlsplit(value)
        if scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
            raise ValueError(f"{value!r}: a file URL names an absolute path, file:///srv/artifacts")
        if scheme == "s3" and not parts.netloc:
            raise ValueError(f"{value!r}: an S3 URL names its bucket, s3://bucket[/prefix]")
        if scheme not in ("file", "s3", "postgres", "postgresql") and not scheme.startswith("postgresql+"):
            raise ValueError(f"{value!r}: artifacts_url is file://, s3:// or postgresql://")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        value = _comma_list(value)
        if isinstance(value, list):
            value = [str(v).lower() for v in value]
            for origin in value:
                if not _ORIGIN.fullmatch(origin):
                    raise ValueError(f"{origin!r}: an origin is http(s)://host[:port], no path and no '*'")
        return value

    @field_validator("trusted_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        value = _comma_list(value)
        if isinstance(value, list):
            if not value:
                return None
            value = [str(v).lower().removeprefix("[").removesuffix("]") for v in value]
            for host in value:
                if not (_HOST.fullmatch(host) or _is_ipv6(host)):
                    raise ValueError(f"{host!r}: a host name or address without port, '*.domain' or '*'")
        return value

    auth: Literal["auto", "required", "open"] = Field(
        "auto",
        description="auto: requests need an API key once any key exists (before that the server is open, "
        "and only on a loopback address); required: always; open: never (say so only on a trusted network).",
    )
    secret: SecretStr | None = Field(
        None,
        description="HMAC key for API-key digests; unset: a random one kept in data_dir/secret.key. "
        "Servers sharing a database must share it.",
    )
    rate_limit: str | None = Field(
        "600/minute", description="Requests per key unless its own --rate says otherwise (limits notation)."
    )
    rate_limit_storage: str = Field(
        "memory://", description="Where request counts live: memory:// (per process) or redis://HOST:PORT."
    )
    max_queue: int = Field(10_000, ge=1, description="Queued jobs past which submissions get QUEUE_FULL.")
    max_streams_per_key: int = Field(
        50, ge=1, description="Event streams one key may hold open at once; past it RATE_LIMITED."
    )
    job_ttl_days: float | None = Field(
        None,
        gt=0,
        description="Finished jobs (succeeded, failed, cancelled) unchanged this long are deleted with "
        "their checkpoints, events and the files no other job or upload holds; unset: kept forever.",
    )
    artifact_ttl_days: float | None = Field(
        None,
        gt=0,
        description="Uploads no job of their tenant refers to are deleted this long after; unset: kept.",
    )
    sweep_interval_s: float = Field(
        3600.0, gt=0, description="How often a worker deletes what the two TTLs say (when either is set)."
    )
    agents: Literal["rules", "llm"] = Field(
        "rules", description="Who plans, designs and codes: the rules, or an LLM with the rules as fallback."
    )
    llm_base_url: str | None = Field(
        None,
        description="An OpenAI-compatible server (OpenAI, vLLM, Ollama, …), e.g. http://127.0.0.1:11434/v1; "
        "unset: the embedded SmolLM2 server is started on a loopback port.",
    )
    llm_model: str | None = Field(None, description="Model name on that server (unset: smollm2).")
    llm_api_key: SecretStr | None = Field(None, description="Key for that server, if it wants one.")
    llm_timeout_s: float = Field(60.0, gt=0, description="One LLM request's time limit.")
    llm_max_tokens: int = Field(256, ge=16, description="Most tokens one answer may have.")
    llm_threads: int = Field(
        1,
        ge=1,
        description="CPU threads of the embedded LLM server. One: next to Chromium on 2 cores, two threads "
        "that wait on each other at every token made a 3-page site slower and spikier (docs/benchmarks.md).",
    )
    llm_start_timeout_s: float = Field(60.0, gt=0, description="Start-up limit of the embedded server.")
    log_format: Literal["json", "text"] = Field(
        "json", description="`adgraph serve`/`worker` log lines: a JSON object each, or text for a terminal."
    )
    log_level: str = Field("INFO", pattern=r"(?i)^(debug|info|warning|error|critical)$")

    # -- GPU models: local weights only; `adgraph models list` shows what is found and what auto picks ----
    models_dir: Path | None = Field(
        None, description="A models root laid out like a Hugging Face cache (models--org--name/snapshots/…)."
    )
    birefnet_path: Path | None = Field(None, description="Local BiRefNet directory (ZhengPeng7/BiRefNet).")
    flux_path: Path | None = Field(None, description="Local FLUX.1 pipeline directory (diffusers layout).")
    qwen2vl_path: Path | None = Field(
        None, description="Local Qwen2-VL directory (Qwen/Qwen2-VL-7B-Instruct)."
    )
    clip_path: Path | None = Field(
        None, description="Local CLIP directory, for POST /v1/evaluations/clip-score."
    )
    segment_backend: Literal["auto", "u2netp", "birefnet"] = Field(
        "auto", description="auto: birefnet when its weights and CUDA are here, else the embedded u2netp."
    )
    background_backend: Literal["auto", "studio", "flux"] = Field(
        "auto",
        description="auto: flux when its weights and CUDA are here, else the embedded studio backdrop.",
    )
    analyze_backend: Literal["auto", "stats", "qwen2vl"] = Field(
        "auto", description="auto: qwen2vl when its weights and CUDA are here, else the embedded stats."
    )
    gpu_device: str | None = Field(
        None, description="cuda, cuda:N or cpu; default: cuda if present, else cpu."
    )
    gpu_memory_budget: int | None = Field(
        None,
        gt=0,
        description="Bytes the model runtime may keep resident; default: device memory minus reserve.",
    )
    gpu_host_budget: int | None = Field(
        None,
        gt=0,
        description="Bytes of host RAM for models moved off the device (pinned on CUDA); past it the least "
        "recently used copy is dropped and read from disk again. Default: no bound.",
    )
    gpu_processes: int = Field(
        1,
        ge=1,
        description="Processes sharing the device; the default budget is (device memory - reserve) / this. "
        "`adgraph serve --workers N` sets N for its workers.",
    )
    gpu_memory_reserve: int = Field(
        2 * 2**30, ge=0, description="Left free for activations and the CUDA context."
    )
    gpu_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on the CPU."
    )
    flux_steps: int | None = Field(
        None, ge=1, le=200, description="Denoising steps; default: the model's own (dev 28, schnell 4)."
    )
    flux_guidance: float | None = Field(
        None, ge=0, description="Guidance scale; default: the model's own (dev 3.5, schnell 0)."
    )
    flux_resolution: int = Field(1024, ge=64, le=2048, description="Long side FLUX draws at, then resized.")
    birefnet_resolution: int = Field(1024, ge=32, le=2048)
    qwen2vl_max_new_tokens: int = Field(256, ge=1, le=2048)

    @cached_property
    def artifacts_dir(self) -> Path:
        """This machine's artifact directory: the one artifacts_url names (file:// or a path), else
        data_dir/artifacts (with an s3:// or postgresql:// artifacts_url, the local cache of that store)."""
        url = self.artifacts_url
        if url and url.lower().startswith("file://"):
            return Path(url2pathname(urlsplit(url).path))
        if url and "://" not in url:
            return Path(url)
        return self.data_dir / "artifacts"

    @property
    def step_cache_dir(self) -> Path:
        return self.data_dir / "step-cache"

    @property
    def checkpoints(self) -> str:
        """Checkpoints follow the jobs database unless set on their own."""
        if self.checkpoint_url:
            return self.checkpoint_url
        if self.database_url and not self.database_url.startswith("sqlite"):
            return self.database_url
        return f"sqlite:///{self.data_dir / 'checkpoints.db'}"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobs.db'}"

    @property
    def queue_engine(self) -> str:
        """`local` or `procrastinate`: what `queue` says, `auto` decided by the database."""
        if self.queue != "auto":
            return self.queue
        return "local" if self.database.startswith("sqlite") else "procrastinate"
