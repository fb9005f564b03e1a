"""One settings model for every command: environment, optional YAML file, CLI overrides.

Precedence (highest first): CLI overrides > environment (``PATROL_*``, nested with ``__``) >
YAML file (``--config FILE`` or ``PATROL_CONFIG``) > defaults.

Examples
--------
``PATROL_KAFKA__BOOTSTRAP_SERVERS=kafka:9092``, ``PATROL_TOPICS__LOGS=my-logs``,
``PATROL_KAFKA__SASL_PASSWORD=...`` (masked by ``patrol config show``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(ValueError):
    """The configuration cannot be loaded; the message says which file/key and why."""


class KafkaSettings(BaseModel):
    bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers. Unset: commands that need a broker start the embedded Tansu broker.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    client_id: str = "ingress-patrol"
    session_timeout_ms: int = Field(10000, ge=1000)
    extra: dict[str, str] = Field(default_factory=dict, description="Raw librdkafka properties passed through as-is.")

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties for confluent-kafka clients (security settings passed through)."""
        if not self.bootstrap_servers:
            raise ConfigError("no Kafka bootstrap servers configured (set PATROL_KAFKA__BOOTSTRAP_SERVERS or kafka.bootstrap_servers)")
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        conf.update(self.extra)
        return conf


class TopicSettings(BaseModel):
    logs: str = "ingress-logs"
    metrics: str = "ingress-metrics"
    anomalies: str = "ingress-anomalies"
    labels: str = "anomaly-labels"
    dlq: str = "ingress-dlq"
    partitions: dict[str, int] = Field(
        default_factory=lambda: {"logs": 6, "metrics": 6, "anomalies": 3, "labels": 1, "dlq": 1},
        description="Partitions per topic role.")
    replication_factor: int = Field(1, ge=1)
    retention_ms: dict[str, int] = Field(
        default_factory=lambda: {
            "logs": 6 * 3600 * 1000,          # raw logs are huge: keep hours
            "metrics": 7 * 24 * 3600 * 1000,  # a week, so detectors can be replayed
            "anomalies": 30 * 24 * 3600 * 1000,
            "labels": -1,                     # labels are training data: keep forever (compacted)
            "dlq": 7 * 24 * 3600 * 1000,
        })

    @field_validator("partitions")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        for role, n in v.items():
            if n < 1:
                raise ValueError(f"partitions for {role} must be >= 1, got {n}")
        return v

    def roles(self) -> dict[str, str]:
        return {"logs": self.logs, "metrics": self.metrics, "anomalies": self.anomalies,
                "labels": self.labels, "dlq": self.dlq}


class RedisSettings(BaseModel):
    url: SecretStr | None = Field(
        None, description="redis://[:password@]host:port/db. Unset: the demo starts a local redis-server or keeps state in memory.")
    key_prefix: str = "patrol:"


class PreaggSettings(BaseModel):
    log_format: str = Field("ingress-nginx", description="ingress-nginx, combined, json, envoy, traefik, auto or an nginx log_format string.")
    window_s: int = Field(60, ge=1)
    allowed_lateness_s: int = Field(30, ge=0)
    max_future_s: int = Field(300, ge=0, description="Events further ahead of the watermark are rejected.")
    idle_close_s: float = Field(10.0, gt=0, description="Wall-clock seconds without input after which open windows close.")
    max_templates_per_host: int = Field(200, ge=1)


class DetectSettings(BaseModel):
    threshold: float = Field(0.35, ge=0, le=1, description=(
        "Anomaly score at/above which an anomaly is published; defaults to detectors.DEFAULT_THRESHOLD "
        "(the ensemble's calibrated scale, see docs/detectors.md)."))
    checkpoint_interval_s: float = Field(30.0, gt=0)
    preagg_group: str = Field("patrol-preagg", description=(
        "Consumer group of the pre-aggregation workers: their committed progress says when every logs "
        "partition has closed a window, so that its shares can be merged (streams.sources)."))


class ServiceSettings(BaseModel):
    metrics_port: int | None = Field(None, description="Prometheus endpoint port for workers (unset: off).")
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATROL_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    preagg: PreaggSettings = Field(default_factory=PreaggSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    _yaml_data: dict[str, Any] = {}

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``PATROL_CONFIG`` (set by ``--config``)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("PATROL_CONFIG")
        if not path:
            return {}
        return read_yaml(Path(path))


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {p} is not a section")
    node[parts[-1]] = value


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the effective settings. ``overrides`` uses dotted keys: ``{"kafka.bootstrap_servers": "h:9092"}``."""
    from pydantic import ValidationError

    old = os.environ.get("PATROL_CONFIG")
    if config_file is not None:
        os.environ["PATROL_CONFIG"] = str(config_file)
    try:
        base = Settings()
        if overrides:
            data = base.model_dump(mode="python")
            for k, v in overrides.items():
                if v is not None:
                    _set_dotted(data, k, v)
            base = Settings.model_validate(data)
        return base
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"invalid configuration: {errs}") from None
    finally:
        if config_file is not None:
            if old is None:
                os.environ.pop("PATROL_CONFIG", None)
            else:
                os.environ["PATROL_CONFIG"] = old


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Effective settings as plain data with every secret (and passwords inside URLs) masked."""
    data = settings.model_dump(mode="json")

    def walk(node: Any, path: str = "") -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else k) for k, v in node.items()}
        return node

    data = walk(data)
    # SecretStr dumps as '**********' already; URLs with credentials are SecretStr too (redis.url).
    extra = data.get("kafka", {}).get("extra", {})
    for k in list(extra):
        if any(s in k.lower() for s in ("password", "secret", "token", "key")):
            extra[k] = "**********"
    return data
