"""Static checks of the container setup: docker-compose.yml, Dockerfile, .env.example, requirements.txt.

No Docker engine is needed. The compose file is validated against the Compose Specification JSON schema
from ../shared/data/compose-spec/ (skipped with a message when that folder is absent), and docker
compose's ${VAR} interpolation is re-implemented just enough to prove that a missing shared secret
stops `docker compose` before anything starts.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import tomllib
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
REQUIREMENTS = ROOT / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
NEWSWATCH_CONFIG = ROOT / "config" / "newswatch.yaml"
COMPOSE_SPEC = ROOT.parent / "shared" / "data" / "compose-spec" / "compose-spec.json"
DAGS = ROOT / "dags"

AIRFLOW_VERSION = "3.3.2"
BASE_IMAGE = f"apache/airflow:{AIRFLOW_VERSION}-python3.11"
IMAGE = "newswatch-airflow:latest"
# Packages released in lockstep with Airflow itself (providers and the task SDK have their own versions).
AIRFLOW_PACKAGES = ("apache-airflow", "apache-airflow-core")

LONG_RUNNING_AIRFLOW = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)
AIRFLOW_SERVICES = (*LONG_RUNNING_AIRFLOW, "airflow-init")
ON_DEMAND_AIRFLOW = ("airflow-cli", "flower")  # profiles: run by hand, after the stack is up
REQUIRED_SERVICES = ("redis", "airflow-db", "news-db", *AIRFLOW_SERVICES)
SHARED_SECRETS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")
REQUIRED_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<message>[^}]+)\}")
PROJECT_MOUNTS = ("dags", "plugins", "config", "logs")


# --------------------------------------------------------------------------------------------- helpers


def _load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load_compose()


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, object]:
    """A service's environment as a dict (compose allows a mapping or a list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _command_text(service: dict) -> str:
    command = service.get("command", "")
    return "\n".join(command) if isinstance(command, list) else str(command)


def _named_volumes(service: dict) -> dict[str, str]:
    """Named-volume mounts of a service: {volume name: target}."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume.get("target", "")
        else:
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        if source and not source.startswith((".", "/", "~", "$")):
            mounts[source] = target
    return mounts


def _normalise_schema_uri(uri: str) -> str:
    return re.sub(r"^https?://", "", uri).rstrip("#").rstrip("/")


def _validator_class_for(schema: dict) -> type:
    """The jsonschema validator class for the draft named by the schema's ``$schema``.

    ``jsonschema.validators.validator_for`` matches the URI literally, so it does not recognise the
    ``https://json-schema.org/draft-07/schema`` spelling used by compose-spec.json and would silently
    fall back to the newest draft. Compare scheme- and fragment-insensitively instead.
    """
    wanted = _normalise_schema_uri(schema["$schema"])
    candidates = (
        jsonschema.Draft202012Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft6Validator,
        jsonschema.Draft4Validator,
    )
    for candidate in candidates:
        if _normalise_schema_uri(candidate.META_SCHEMA["$schema"]) == wanted:
            return candidate
    raise AssertionError(f"no jsonschema validator for $schema {schema['$schema']!r}")


class MissingVariable(Exception):
    pass


_INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.S)


def _interpolate(text: str, env: dict[str, str]) -> str:
    """docker compose's variable interpolation (the subset without nesting), applied to raw file text."""

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        parsed = _BRACED.match(match["braced"])
        if parsed is None:
            raise ValueError(f"invalid interpolation {match[0]!r}")
        name, op, arg = parsed["name"], parsed["op"], parsed["arg"]
        value, is_set = env.get(name), name in env
        if op in (":?", "?") and (not is_set or (op == ":?" and not value)):
            raise MissingVariable(f"required variable {name} is missing a value: {arg}")
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if is_set else arg
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if is_set else ""
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def _interpolate_tree(node: object, env: dict[str, str]) -> object:
    """Interpolate every string of a parsed compose file (compose interpolates values, not comments)."""
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(value, env) for value in node]
    return _interpolate(node, env) if isinstance(node, str) else node


def _strings(node: object):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _references(node: object) -> list[tuple[str, str | None]]:
    """(variable name, operator) of every ${...} / $NAME in the strings of a parsed YAML document."""
    found = []
    for text in _strings(node):
        for match in _INTERPOLATION.finditer(text):
            if match["named"]:
                found.append((match["named"], None))
            elif match["braced"] is not None:
                parsed = _BRACED.match(match["braced"])
                assert parsed, f"invalid interpolation {match[0]!r}"
                found.append((parsed["name"], parsed["op"]))
    return found


def _dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def _copy_sources(args: str) -> list[str]:
    parts = [p for p in args.split() if not p.startswith("--")]
    return parts[:-1]


def _requirement_pins(path: Path = REQUIREMENTS) -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#\\]+)", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            pins.setdefault(name, []).append(match[3])
    return pins


# ------------------------------------------------------------------------------------ compose: schema


def test_compose_file_matches_the_compose_spec_schema():
    if not COMPOSE_SPEC.exists():
        pytest.skip(f"Compose Specification schema not found at {COMPOSE_SPEC} (../shared/data absent)")
    schema = json.loads(COMPOSE_SPEC.read_text())
    validator_class = _validator_class_for(schema)
    assert _normalise_schema_uri(validator_class.META_SCHEMA["$schema"]) == _normalise_schema_uri(
        schema["$schema"]
    )
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    errors = sorted(validator.iter_errors(_load_compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)

    # The schema really constrains services: an unknown key in one must be reported.
    broken = _load_compose()
    broken["services"]["airflow-worker"]["comand"] = "celery worker"
    assert any(True for _ in validator.iter_errors(broken)), "schema accepted an unknown service key"


# ---------------------------------------------------------------------------------- compose: services


def test_required_services_exist(services: dict):
    missing = [name for name in REQUIRED_SERVICES if name not in services]
    assert not missing, f"services missing from docker-compose.yml: {missing}"


def test_airflow_services_run_our_image_built_from_the_dockerfile(services: dict):
    for name in AIRFLOW_SERVICES:
        service = services[name]
        build = service.get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context in (".", "./"), f"{name}: build context is {context!r}, expected '.'"
        assert service.get("image") == IMAGE, f"{name}: image is {service.get('image')!r}"


def test_airflow_services_share_the_core_settings(services: dict):
    for name in AIRFLOW_SERVICES:
        env = _env(services[name])
        assert env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", name
        assert (
            env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") == "http://airflow-apiserver:8080/execution/"
        )
        # Strings, not YAML booleans, as in the official file.
        assert env.get("AIRFLOW__CORE__LOAD_EXAMPLES") == "false", name
        assert env.get("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION") == "false", name
        assert "@airflow-db/" in str(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")), name
        assert str(env.get("AIRFLOW__CELERY__RESULT_BACKEND")).startswith("db+postgresql://"), name
        assert "@airflow-db/" in str(env.get("AIRFLOW__CELERY__RESULT_BACKEND")), name
        assert str(env.get("AIRFLOW__CELERY__BROKER_URL")).startswith("redis://"), name
        assert "@redis:6379/" in str(env.get("AIRFLOW__CELERY__BROKER_URL")), name
        assert (
            env.get("NEWSWATCH_DATABASE_URL")
            == "postgresql://news:${NEWS_DB_PASSWORD:-news}@news-db:5432/news"
        )
        assert env.get("NEWSWATCH_CONFIG") == "/opt/airflow/config/newswatch.yaml", name
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env, f"{name}: extend the image instead"


def test_every_airflow_component_gets_the_same_required_shared_secrets(services: dict):
    references = {}
    for secret in SHARED_SECRETS:
        values = {name: _env(services[name]).get(secret) for name in AIRFLOW_SERVICES}
        assert len(set(values.values())) == 1, f"{secret} differs between services: {values}"
        value = next(iter(values.values()))
        match = REQUIRED_REFERENCE.fullmatch(str(value))
        assert match, f"{secret} must be a required ${{VAR:?message}} reference, got {value!r}"
        assert ".env" in match["message"], f"{secret}: the error message should point at .env"
        references[secret] = match["name"]
    assert len(set(references.values())) == len(SHARED_SECRETS), f"secrets share a variable: {references}"


def test_missing_shared_secret_stops_compose_and_set_ones_reach_every_service():
    raw = _load_compose()
    example = _dotenv(ENV_EXAMPLE)
    secret_vars = {name for name, op in _references(raw) if op in (":?", "?")}
    assert len(secret_vars) >= len(SHARED_SECRETS)
    for name in secret_vars:
        # .env.example ships no usable secret: a copied-but-unfilled .env must fail fast too.
        assert example.get(name, "") == "", f".env.example must leave {name} empty"

    filled = {**example, **{name: f"value-of-{name}" for name in secret_vars}}
    for name in sorted(secret_vars):
        env = {k: v for k, v in filled.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            _interpolate_tree(raw, env)
        with pytest.raises(MissingVariable, match=name):
            _interpolate_tree(raw, {**env, name: ""})

    resolved = _interpolate_tree(raw, filled)
    for service in AIRFLOW_SERVICES:
        env = _env(resolved["services"][service])
        for secret in SHARED_SECRETS:
            assert str(env[secret]).startswith("value-of-"), f"{service}: {secret} = {env[secret]!r}"


def test_env_example_documents_every_variable_the_compose_file_uses():
    used = {name for name, _ in _references(_load_compose())}
    documented = set(_dotenv(ENV_EXAMPLE))
    assert used - documented == set(), f"add to .env.example: {sorted(used - documented)}"


def test_alert_channel_secrets_from_the_config_reach_the_workers(services: dict):
    # Variables config/newswatch.yaml interpolates without a default, plus those of its commented examples.
    config = yaml.safe_load(NEWSWATCH_CONFIG.read_text())
    needed = {name for name, op in _references(config) if op is None}
    needed |= {"SLACK_WEBHOOK_URL", "SMTP_USER", "SMTP_PASSWORD"}
    for name in ("airflow-worker", "airflow-scheduler", "airflow-dag-processor"):
        missing = needed - set(_env(services[name]))
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_the_two_postgres_servers_are_distinct(compose: dict, services: dict):
    airflow_db, news_db = services["airflow-db"], services["news-db"]
    assert airflow_db.get("image") == "postgres:16", f"airflow-db: image {airflow_db.get('image')!r}"
    # The news database needs pgvector (article meanings, migration 0007): PostgreSQL 16 with the extension.
    assert news_db.get("image") == "pgvector/pgvector:0.8.0-pg16", f"news-db: image {news_db.get('image')!r}"
    assert _env(news_db).get("POSTGRES_DB") == "news"
    assert _env(news_db).get("POSTGRES_USER") == "news"
    assert _env(airflow_db).get("POSTGRES_DB") != _env(news_db).get("POSTGRES_DB")

    airflow_volumes, news_volumes = _named_volumes(airflow_db), _named_volumes(news_db)
    assert "/var/lib/postgresql/data" in airflow_volumes.values(), "airflow-db data is not on a volume"
    assert "/var/lib/postgresql/data" in news_volumes.values(), "news-db data is not on a volume"
    assert not set(airflow_volumes) & set(news_volumes), "airflow-db and news-db share a volume"
    declared = set(compose.get("volumes") or {})
    assert set(airflow_volumes) | set(news_volumes) <= declared, "volumes not declared at top level"


def test_redis_is_the_pinned_bsd_licensed_release(services: dict):
    assert services["redis"].get("image") == "redis:7.2-bookworm"


def test_project_folders_are_mounted_into_every_airflow_service(services: dict):
    for name in AIRFLOW_SERVICES:
        volumes = [
            v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}"
            for v in services[name].get("volumes", [])
        ]
        for folder in PROJECT_MOUNTS:
            assert f"./{folder}:/opt/airflow/{folder}" in volumes, f"{name}: ./{folder} not mounted"


def test_healthchecks_like_the_official_file(services: dict):
    for name in ("redis", "airflow-db", "news-db", *LONG_RUNNING_AIRFLOW):
        test = (services[name].get("healthcheck") or {}).get("test")
        assert test, f"{name} has no healthcheck"
    api = services["airflow-apiserver"]
    assert "http://localhost:8080/api/v2/version" in " ".join(api["healthcheck"]["test"])
    assert "api-server" in _command_text(api)
    assert any(str(p).startswith("8080:8080") for p in api.get("ports", [])), "port 8080 not published"
    assert "8974/health" in " ".join(services["airflow-scheduler"]["healthcheck"]["test"])


def test_start_order_follows_init_and_healthy_backends(services: dict):
    for name in LONG_RUNNING_AIRFLOW:
        deps = _depends_on(services[name])
        assert deps.get("airflow-init") == "service_completed_successfully", f"{name}: {deps}"
        for backend in ("redis", "airflow-db"):
            assert deps.get(backend) == "service_healthy", f"{name} does not wait for a healthy {backend}"
    assert _depends_on(services["airflow-worker"]).get("airflow-apiserver") == "service_healthy"
    init_deps = _depends_on(services["airflow-init"])
    for backend in ("redis", "airflow-db", "news-db"):
        assert init_deps.get(backend) == "service_healthy", f"airflow-init does not wait for {backend}"
    assert "airflow-init" not in init_deps


def test_init_migrates_airflow_creates_the_admin_then_migrates_the_news_db(services: dict):
    script = _command_text(services["airflow-init"])
    assert re.search(r"\bset -[a-z]*e", script), "airflow-init must stop at the first failing step"
    steps = [
        script.find("airflow db migrate"),
        script.find("airflow users create"),
        script.find("newswatch migrate"),
    ]
    assert -1 not in steps, f"airflow-init lacks a step: {steps}"
    assert steps == sorted(steps), "airflow-init steps out of order"
    assert "--role Admin" in script
    # A single `$` in a command would be interpolated by compose on the host, not by bash.
    unescaped = [m[0] for m in _INTERPOLATION.finditer(script) if not m["escaped"]]
    assert unescaped == [], f"escape as $$ in airflow-init's command: {unescaped}"


def _common_env(compose: dict) -> dict[str, object]:
    return _env(compose["x-airflow-common"])


def _resolved(value: object) -> str:
    """A setting as compose passes it with .env.example's values."""
    return _interpolate(str(value), _dotenv(ENV_EXAMPLE))


def _execution_timeouts() -> dict[str, float]:
    """The longest ``execution_timeout`` (seconds) each DAG file sets, in default_args or on a task."""
    found: dict[str, float] = {}
    for path in sorted(DAGS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            values = []
            if isinstance(node, ast.Dict):
                values = [v for k, v in zip(node.keys, node.values, strict=True)
                          if isinstance(k, ast.Constant) and k.value == "execution_timeout"]
            elif isinstance(node, ast.Call):
                values = [keyword.value for keyword in node.keywords if keyword.arg == "execution_timeout"]
            for value in values:
                assert isinstance(value, ast.Call) and getattr(value.func, "id", "") == "timedelta", ast.dump(value)
                seconds = timedelta(**{k.arg: ast.literal_eval(k.value) for k in value.keywords}).total_seconds()
                found[path.name] = max(found.get(path.name, 0.0), seconds)
    return found


def test_airflow_services_share_one_airflow_config(compose: dict, services: dict):
    """Every Airflow setting lives in x-airflow-common: no component runs with a setting of its own."""
    shared = {key: value for key, value in _common_env(compose).items() if key.startswith("AIRFLOW__")}
    airflow_services = [name for name, service in services.items() if service.get("image") == IMAGE]
    assert set(AIRFLOW_SERVICES) | set(ON_DEMAND_AIRFLOW) <= set(airflow_services)
    for name in airflow_services:
        own = {key: value for key, value in _env(services[name]).items() if key.startswith("AIRFLOW__")}
        differ = set(own.items()) ^ set(shared.items())
        assert not differ, f"{name}: Airflow settings differ from x-airflow-common: {differ}"


def test_every_airflow_setting_names_an_option_airflow_knows(compose: dict):
    """A misspelt AIRFLOW__SECTION__KEY is ignored without a word: check each against Airflow's own options
    (core and providers, the Celery provider's included)."""
    from airflow.configuration import retrieve_configuration_description

    known = retrieve_configuration_description(include_providers=True)
    for key in _common_env(compose):
        if not key.startswith("AIRFLOW__"):
            continue
        section, _, option = key.removeprefix("AIRFLOW__").lower().partition("__")
        assert option in known.get(section, {}).get("options", {}), f"{key}: no option [{section}] {option}"


def test_celery_workers_have_a_set_concurrency(compose: dict):
    concurrency = _resolved(_common_env(compose)["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    assert concurrency.isdigit() and int(concurrency) >= 1, concurrency


def test_celery_visibility_timeout_outlasts_the_longest_task_but_not_a_day(compose: dict):
    """Redis hands an unacknowledged message (a task still running, or lost with its worker) to another worker
    after the visibility timeout: shorter than the longest task, a running task would be handed out twice;
    Celery's default is 24 h, which a lost worker's message would wait."""
    timeout = int(_resolved(_common_env(compose)["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]))
    longest = _execution_timeouts()
    assert set(longest) == {path.name for path in DAGS.glob("*.py")}, f"a DAG without execution_timeout: {longest}"
    assert max(longest.values()) < timeout < 86400, (timeout, longest)


def test_a_lost_worker_is_noticed_sooner_than_airflows_default(compose: dict):
    timeout = int(_resolved(_common_env(compose)["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]))
    assert 60 <= timeout < 300, timeout  # a loaded worker still heartbeats within it


def test_the_execution_timeout_helper_reads_default_args_and_task_arguments(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text('default_args = {"execution_timeout": timedelta(minutes=20)}\n'
                                   "@task(execution_timeout=timedelta(hours=1, minutes=5))\ndef t(): pass\n")
    monkeypatch.setattr(f"{__name__}.DAGS", tmp_path)
    assert _execution_timeouts() == {"a.py": 3900.0}


def test_on_demand_services_wait_for_their_dependencies(services: dict):
    """airflow-cli and flower start when asked, possibly with the rest of the stack: they wait for healthy
    backends and a finished airflow-init like the long-running components."""
    for name in ON_DEMAND_AIRFLOW:
        deps = _depends_on(services[name])
        assert deps.get("airflow-init") == "service_completed_successfully", f"{name}: {deps}"
        for backend in ("redis", "airflow-db", "news-db"):
            assert deps.get(backend) == "service_healthy", f"{name} does not wait for a healthy {backend}"


# --------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_extends_the_official_image():
    instructions = _dockerfile_instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms, "Dockerfile has no FROM"
    assert froms[0].split()[0] == BASE_IMAGE
    assert froms[0].startswith(f"apache/airflow:{AIRFLOW_VERSION}")
    assert not [args for _, args in instructions if "_PIP_ADDITIONAL_REQUIREMENTS" in args]


def test_dockerfile_installs_the_lock_with_airflow_pinned_as_the_airflow_user():
    instructions = _dockerfile_instructions()
    user, copied, lock_install = "root", set(), None
    for index, (keyword, args) in enumerate(instructions):
        if keyword == "USER":
            user = args.split(":")[0]
        elif keyword == "COPY":
            copied.update(_copy_sources(args))
        elif keyword == "RUN" and "pip install" in args and re.search(r"-r\s+\S*requirements\.txt\b", args):
            assert "requirements.txt" in copied, "requirements.txt is installed before it is copied"
            pinned = r"apache-airflow==(\$\{AIRFLOW_VERSION\}|" + re.escape(AIRFLOW_VERSION) + r")(?![\w.])"
            assert re.search(pinned, args), f"apache-airflow not pinned in the same pip command: {args}"
            assert user == "airflow", f"pip runs as {user!r}"
            lock_install = index
    assert lock_install is not None, "no `pip install -r requirements.txt` in the Dockerfile"

    # Cache-friendly: the slow dependency layer comes before any project source is copied.
    later_copies = [args for keyword, args in instructions[lock_install:] if keyword == "COPY"]
    for folder in ("plugins", "dags", "config"):
        assert any(_copy_sources(a) and _copy_sources(a)[0].rstrip("/") == folder for a in later_copies), (
            f"{folder}/ must be copied after the dependency install"
        )


def test_dockerfile_installs_the_project_package_after_copying_it():
    instructions = _dockerfile_instructions()
    copied, installed = set(), False
    for keyword, args in instructions:
        if keyword == "COPY":
            copied.update(s.rstrip("/") for s in _copy_sources(args))
        elif keyword == "RUN" and "pip install" in args and "--no-deps" in args and "-r " not in args:
            assert {"pyproject.toml", "plugins"} <= copied, "project installed before it is copied"
            installed = True
    assert installed, "the newswatch package (and its CLI) is not pip-installed in the image"

    # setuptools refuses to build when the readme that pyproject.toml names is absent.
    readme = tomllib.loads(PYPROJECT.read_text()).get("project", {}).get("readme")
    if isinstance(readme, str):
        assert readme in copied, f"pyproject.toml needs {readme}, which the Dockerfile does not copy"


def test_dockerfile_copy_sources_exist_and_are_not_dockerignored():
    readme = tomllib.loads(PYPROJECT.read_text()).get("project", {}).get("readme")
    patterns = [
        line.strip().lstrip("/").removeprefix("**/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("!")
    ]
    sources = [s.rstrip("/") for k, a in _dockerfile_instructions() if k == "COPY" for s in _copy_sources(a)]
    for source in sources:
        # The readme's existence is pyproject.toml's business (every `pip install -e .` checks it).
        if source != readme:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
        hits = [p for p in patterns if fnmatch.fnmatch(source, p)]
        assert not hits, f".dockerignore pattern(s) {hits} exclude {source}"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context():
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for needed in (".venv", ".data", ".git", ".env", ".pytest_cache"):
        assert needed in patterns, f".dockerignore lacks {needed}"
    assert any("__pycache__" in p for p in patterns), ".dockerignore lacks __pycache__"


# ------------------------------------------------------------------------------------ requirements


def test_requirements_pin_airflow_to_the_image_version():
    pins = _requirement_pins()
    for package in AIRFLOW_PACKAGES:
        assert package in pins, f"requirements.txt does not pin {package}"
        assert set(pins[package]) == {AIRFLOW_VERSION}, f"{package} pinned to {pins[package]}"
    image_version = BASE_IMAGE.split(":")[1].split("-")[0]
    assert image_version == AIRFLOW_VERSION
    froms = [a for k, a in _dockerfile_instructions() if k == "FROM"]
    assert froms[0].split(":")[1].split("-")[0] == pins["apache-airflow"][0]


def test_pin_parser_sees_extras_and_normalises_names(tmp_path):
    lock = tmp_path / "requirements.txt"
    lock.write_text("Apache_Airflow[celery]==3.3.1\n    # via x\napache-airflow-core==3.3.2 ; os_name=='nt'")
    assert _requirement_pins(lock) == {"apache-airflow": ["3.3.1"], "apache-airflow-core": ["3.3.2"]}


def test_interpolation_helper_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert _interpolate("$$HOME ${SET} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${SET:+y}", env) == "$HOME x d  d y"
    with pytest.raises(MissingVariable, match="EMPTY"):
        _interpolate("${EMPTY:?needed}", env)
    assert _interpolate("${EMPTY?needed}", env) == ""
    with pytest.raises(MissingVariable, match="UNSET"):
        _interpolate("${UNSET?needed}", env)
