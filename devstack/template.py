"""Reading infra/template.yaml: functions, their routes, queue triggers and environment.

The template is the source of truth; the local stack never keeps a second list of routes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation short-form tags as {"Fn": value} dicts."""


def _tag(loader: _CfnLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    authorizer: str | None = None  # logical id of the function that authorizes it; None: public

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclasses.dataclass(frozen=True)
class QueueTrigger:
    queue: str  # logical id
    batch_size: int
    report_failures: bool


@dataclasses.dataclass
class Function:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict
    routes: list[Route]
    queue_triggers: list[QueueTrigger]
    schedules: list[float] = dataclasses.field(default_factory=list)  # seconds between runs

    @property
    def module_path(self) -> Path:
        return self.code_dir / (self.handler.rsplit(".", 1)[0] + ".py")


@dataclasses.dataclass(frozen=True)
class Queue:
    logical_id: str
    visibility_timeout: int
    dead_letter: str | None
    max_receive_count: int | None


@dataclasses.dataclass
class Template:
    path: Path
    raw: dict
    functions: dict[str, Function]
    queues: dict[str, Queue]
    buckets: list[str]
    parameters: dict
    authorizers: dict[str, str] = dataclasses.field(default_factory=dict)  # authorizer name -> function id

    @property
    def routes(self) -> dict[str, Function]:
        return {r.key: f for f in self.functions.values() for r in f.routes}


def _ref_target(value) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def load(path: str | os.PathLike) -> Template:
    path = Path(path).resolve()
    with open(path) as fh:
        raw = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    resources = raw.get("Resources", {})
    globals_env = raw.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    functions, queues, buckets = {}, {}, []
    authorizers, default_auth = {}, {}
    for logical_id, res in resources.items():
        if res.get("Type") == "AWS::Serverless::HttpApi":
            auth = (res.get("Properties") or {}).get("Auth") or {}
            default_auth[logical_id] = auth.get("DefaultAuthorizer")
            for name, spec in (auth.get("Authorizers") or {}).items():
                authorizers[name] = _ref_target(spec.get("FunctionArn"))
    for logical_id, res in resources.items():
        kind, props = res.get("Type"), res.get("Properties", {}) or {}
        if kind == "AWS::SQS::Queue":
            redrive = props.get("RedrivePolicy") or {}
            queues[logical_id] = Queue(logical_id, int(props.get("VisibilityTimeout", 30)),
                                       _ref_target(redrive.get("deadLetterTargetArn")),
                                       int(redrive["maxReceiveCount"]) if redrive else None)
        elif kind == "AWS::S3::Bucket":
            buckets.append(logical_id)
        elif kind == "AWS::Serverless::Function":
            env = {**globals_env, **(props.get("Environment", {}).get("Variables", {}) or {})}
            routes, triggers, schedules = [], [], []
            for event in (props.get("Events") or {}).values():
                ep = event.get("Properties", {}) or {}
                if event.get("Type") == "HttpApi":
                    named = (ep.get("Auth") or {}).get("Authorizer") or default_auth.get(_ref_target(ep.get("ApiId")))
                    routes.append(Route(ep["Method"].upper(), ep["Path"],
                                        None if named in (None, "NONE") else authorizers[named]))
                elif event.get("Type") in ("Schedule", "ScheduleV2"):
                    schedules.append(rate_seconds(ep["Schedule" if "Schedule" in ep else "ScheduleExpression"]))
                elif event.get("Type") == "SQS":
                    triggers.append(QueueTrigger(_ref_target(ep["Queue"]), int(ep.get("BatchSize", 10)),
                                                 "ReportBatchItemFailures" in (ep.get("FunctionResponseTypes") or [])))
            functions[logical_id] = Function(logical_id, (path.parent / props["CodeUri"]).resolve(),
                                             props["Handler"], env, routes, triggers, schedules)
    return Template(path, raw, functions, queues, buckets, raw.get("Parameters", {}), authorizers)


def rate_seconds(expression: str) -> float:
    """Seconds between runs of an EventBridge `rate(N unit)` expression (cron is not emulated)."""
    import re

    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not m:
        raise ValueError(f"the local stack runs rate(...) schedules only, not {expression!r}")
    return int(m.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[m.group(2).rstrip("s")]


def resolve_env(env: dict, refs: dict[str, str]) -> dict[str, str]:
    """Environment values with Ref/GetAtt replaced by local values (unknown references become "")."""
    out = {}
    for key, value in env.items():
        target = _ref_target(value)
        if target is not None:
            out[key] = refs.get(target, "")
        elif isinstance(value, (str, int, float, bool)):
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
        else:
            out[key] = ""
    return out
