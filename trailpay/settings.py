"""One settings object for the whole process.

Built once at start-up (:func:`load_settings`) and passed down; nothing else in
TrailPay reads the environment. Every variable has the ``TRAILPAY_`` prefix.
Whatever is absent runs embedded: no ``TRAILPAY_KAFKA_BOOTSTRAP`` means the
embedded broker (Apache Kafka or tansu, ``TRAILPAY_EMBEDDED_BROKER``), no
``TRAILPAY_DATABASE_URL`` the embedded PostgreSQL,
no ``TRAILPAY_CLICKHOUSE_URL`` chDB under the data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from trailpay.domain.deadlines import DEFAULT_POLICY
from trailpay.domain.errors import ConfigurationError
from trailpay.domain.events import Provider
from trailpay.domain.rules import DEFAULT_RULES, LatePaymentMode, PaymentRules
from trailpay.secret_settings import DataDirSecrets, production_secret_problem
from trailpay.settings_parts import DashboardAccessSettings, OutboundWebhookSettings


class Settings(OutboundWebhookSettings, DashboardAccessSettings):
    """TrailPay configuration; see the README's configuration reference."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, file_secret_settings,
                DataDirSecrets(settings_cls))

    model_config = SettingsConfigDict(
        env_prefix="TRAILPAY_", extra="ignore", frozen=True, validate_default=True
    )

    # --- where things run -------------------------------------------------
    data_dir: Path = Field(default=Path(".trailpay"), description="Embedded stack data directory")
    kafka_bootstrap: str | None = Field(default=None, description="host:port[,host:port]")
    database_url: str | None = Field(default=None, description="SQLAlchemy PostgreSQL URL")
    clickhouse_url: str | None = Field(
        default=None, description="http(s)://user:pass@host:8123/db; absent = chDB"
    )
    partitions: int = Field(default=4, ge=1, le=256, description="Partitions per payment topic")
    replication_factor: int = Field(default=1, ge=1, le=5)
    worker_id: str = Field(default="trailpay", description="Faust application id (consumer group)")
    kafka_fetch_max_wait_ms: int = Field(
        default=100, ge=1, le=10_000,
        description="Longest a consumer's fetch waits at the broker for new records. tansu "
        "answers a waiting fetch at this deadline rather than when records arrive, so on the "
        "embedded broker it bounds each hop's latency; Apache Kafka answers as soon as data "
        "arrives, and a higher value there only saves idle requests. Measured on tansu: an "
        "idle stack's broker spends 13% of a core at 50 ms, 4% at 200, 2% at 500",
    )

    # --- the embedded broker (``trailpay up``) -----------------------------
    embedded_broker: Literal["auto", "kafka", "tansu"] = Field(
        default="auto",
        description="Broker `trailpay up` runs: Apache Kafka (KRaft, from the jars of "
        "`trailpay kafka install`), tansu (in memory), or auto = Apache Kafka when Java >= 17 "
        "and the jars are installed, else tansu",
    )
    kafka_home: Path | None = Field(
        default=None,
        description="Where `trailpay kafka install` puts the Apache Kafka jars "
        "(default: the user cache dir, ~/.cache/trailpay/kafka/<version>)",
    )
    kafka_heap: str = Field(default="512m", pattern=r"^[0-9]+[kmgKMG]$",
                            description="Java heap of the embedded Apache Kafka broker")
    kafka_nodes: int = Field(
        default=1, ge=1, le=3,
        description="Nodes of the embedded Apache Kafka (KRaft, each broker and controller): 3 "
        "makes a cluster that outlives one dead node; topics then default to replication "
        "factor 3 with min.insync.replicas 2",
    )
    broker_kind: Literal["apache-kafka", "tansu"] | None = Field(
        default=None,
        description="What the broker at kafka_bootstrap is; picks the broker workarounds "
        "(streams.worker.install_broker_workarounds). Set by `trailpay up`; absent = not known, "
        "and the tansu corrections are applied (harmless on Apache Kafka)",
    )
    workers: int = Field(default=1, ge=1, le=32,
                         description="Stream workers `trailpay up` runs in one consumer group")
    restore_on_start: bool = Field(
        default=True, description="`trailpay up` re-publishes the PostgreSQL archive when the broker "
        "holds none of the payments' history (tansu, or a lost Kafka log dir), before it is ready")

    rebalance_guard: str = Field(
        default="1", pattern=r"^(0|1|(rewind|head|acks|recovery)(,(rewind|head|acks|recovery))*)$",
        description="Corrections of Faust's consumer that lost records at a rebalance "
        "(streams.rebalance_guard): 1 = rewind, head, acks and recovery (default), 0 = none, "
        "or a list")
    trace_offsets: bool = Field(default=False, description="Log what Faust's consumer delivers, "
                                "acks and commits per partition (streams.offsettrace; diagnostics)")

    # --- HTTP --------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    public_base_url: str | None = Field(
        default=None, description="Base URL providers use for callbacks (default: API URL)"
    )
    dashboard_port: int = Field(default=8050, ge=0, le=65535)
    sandbox_port: int = Field(default=8070, ge=0, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # The ingress edge (issue 16): JSON nesting, and failed authentication per client address
    # as a token bucket (``auth_failure_burst`` failures at once, refilled at ``..._per_s``).
    max_json_depth: int = Field(default=32, ge=2, le=512, description="Deepest JSON body taken")
    auth_failure_burst: int = Field(default=30, ge=1, description="Failed logins before 429")
    auth_failure_per_s: float = Field(default=2.0, gt=0, description="Failed-login refill rate")
    webhook_ack_timeout_s: float = Field(
        default=5.0, gt=0, le=60,
        description="How long a webhook waits for Kafka's ack before answering 503",
    )
    provider_routes: str | None = Field(
        default=None,
        description='JSON list of {"currency","country","method","provider"} rules ("*" = any); '
        "absent = the built-in table in trailpay/routing.py",
    )

    # --- logging -----------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"

    # --- Stripe --------------------------------------------------------------
    stripe_api_key: SecretStr = SecretStr("sk_test_trailpay_sandbox")
    stripe_publishable_key: str = "pk_test_trailpay_sandbox"
    stripe_api_base: str | None = Field(
        default=None, description="Stripe API base; absent = the embedded sandbox"
    )
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr("whsec_trailpay_sandbox")],
        description="Comma-separated; several during rotation",
    )
    stripe_webhook_tolerance_s: int = Field(default=300, ge=1)

    # --- M-Pesa Daraja -------------------------------------------------------
    mpesa_base_url: str | None = Field(default=None, description="absent = the embedded sandbox")
    mpesa_consumer_key: SecretStr = SecretStr("sandbox-consumer-key")
    mpesa_consumer_secret: SecretStr = SecretStr("sandbox-consumer-secret")
    mpesa_shortcode: str = "174379"
    mpesa_passkey: SecretStr = SecretStr("sandbox-passkey")
    # (no "mpesa" in the default: the token is part of the CallBackURL, which Daraja filters)
    mpesa_callback_token: SecretStr = SecretStr("stk-callback-token-change-me")
    mpesa_confirm_by_query: bool | None = Field(
        default=None,
        description="Confirm each M-Pesa success callback by an STK Push Query before it is "
        "applied (callbacks are unsigned); absent = on unless mpesa_base_url is the sandbox",
    )
    sandbox_mpesa_lock_subscriber: bool = Field(
        default=False,
        description="The Daraja sandbox refuses a push to a phone with an open prompt "
        "(500.001.1001) like Daraja; off by default: load and fault tests reuse phones",
    )

    @property
    def mpesa_is_sandbox(self) -> bool:
        """Whether Daraja is TrailPay's own sandbox: no URL (embedded), or one on the
        sandbox port under ``/mpesa`` (compose's ``http://sandbox:8070/mpesa``)."""
        if self.mpesa_base_url is None:
            return True
        url = urlsplit(self.mpesa_base_url)
        return url.port == self.sandbox_port and url.path.rstrip("/") == "/mpesa"

    @property
    def confirms_mpesa_by_query(self) -> bool:
        chosen = self.mpesa_confirm_by_query
        return not self.mpesa_is_sandbox if chosen is None else chosen

    # --- Airtel Money --------------------------------------------------------
    airtel_base_url: str | None = Field(default=None, description="absent = the embedded sandbox")
    airtel_client_id: SecretStr = SecretStr("sandbox-client-id")
    airtel_client_secret: SecretStr = SecretStr("sandbox-client-secret")
    airtel_country: str = "KE"
    airtel_currency: str = "KES"
    airtel_callback_secret: SecretStr | None = None
    airtel_callback_token: SecretStr = SecretStr("airtel-callback-token-change-me")

    # --- payments --------------------------------------------------------------
    payment_timeout_s: int = Field(default=30, ge=1, description="Provider HTTP timeout")
    provider_concurrency: int = Field(default=32, ge=1, le=1024)
    pending_deadline_s: int = Field(default=120, ge=5, description="created/pending deadline")
    processing_deadline_s: int = Field(default=600, ge=5, description="processing deadline")
    card_pending_deadline_s: int = Field(
        default=DEFAULT_POLICY.card_pending_s, ge=5,
        description="created/pending deadline of card payments: a PaymentIntent waiting for a "
        "payment method is a customer typing card details or choosing another card",
    )
    card_processing_deadline_s: int = Field(
        default=DEFAULT_POLICY.card_processing_s, ge=5,
        description="processing deadline of card payments (3-D Secure challenge)",
    )
    max_attempts: int = Field(
        default=DEFAULT_RULES.max_attempts, ge=1, le=20,
        description="Attempts per payment, the first included: after a decline the provider "
        "can recover from, the payment stays open while another attempt may start",
    )
    late_payment_policy: LatePaymentMode = Field(
        default=DEFAULT_RULES.late_payment,
        description="Money confirmed after failed/expired/cancelled: keep, refund, or auto "
        "(refund when a cancel was asked for, keep otherwise)",
    )
    park_timeout_s: int = Field(default=60, ge=1, description="How long events for unknown payments wait")
    dedup_ttl_s: int = Field(default=72 * 3600, ge=60, description="Webhook dedup memory")
    idempotency_ttl_s: int = Field(
        default=72 * 3600, ge=60,
        description="How long the worker remembers finished provider commands, handled booking "
        "requests and sent notifications (redeliveries come within minutes)",
    )

    # --- hostile input: poison records and consumer health ---------------------
    sink_json_max_depth: int = Field(
        default=64, ge=2, le=255,
        description="Deeper JSON in a JSONB column is stored as a marker (sinks.representable)")
    consumer_restart_window_s: float = Field(default=300.0, gt=0)
    consumer_max_restarts: int = Field(
        default=3, ge=1, description="Restarts within the window that make a consumer crash-looping")
    consumer_max_lag: int = Field(
        default=10_000, ge=1, description="Records behind at which a consumer group is lagging")

    # --- reconcile (`trailpay reconcile`, docs/reconcile.md) -------------------------
    reconcile_interval_s: int = Field(
        default=0, ge=0, description="Reconcile the last window every this many seconds inside "
        "`trailpay up` (0 = off)")
    reconcile_window_s: int = Field(default=24 * 3600, ge=60, description="The window: payments "
                                    "created this long ago or later")
    reconcile_min_age_s: int = Field(default=60, ge=0, description="Leave out payments changed "
                                     "this recently (their callback may be on its way)")
    reconcile_concurrency: int = Field(default=8, ge=1, le=128, description="Provider questions at a time")

    # --- e-mail ------------------------------------------------------------------
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    email_from: str = "noreply@trailsandtrails.com"
    site_name: str = "Trails & Trails"
    # --- backoffice
    stripe_create_wait_s: float = Field(
        default=3.0, ge=0, le=10,
        description="POST /api/stripe/payment-intents/create/ waits this long for the PaymentIntent "
                    "and answers its client secret; slower, the answer carries client_secret_url")
    status_wait_max_s: float = Field(
        default=30.0, ge=0, le=30,
        description="Longest GET /api/payments/<ref>/status/?wait=N may hold a request")

    # --- mmrefund
    # M-Pesa refunds go back to the customer as a Daraja B2C payment (docs/sandboxes.md).
    mpesa_initiator_name: SecretStr = Field(
        default=SecretStr("sandbox-initiator"),
        description="Daraja API operator (InitiatorName) allowed to send B2C payments")
    mpesa_security_credential: SecretStr = Field(
        default=SecretStr("sandbox-security-credential"),
        description="The initiator password encrypted with Safaricom's certificate (SecurityCredential)")
    mpesa_b2c_shortcode: str | None = Field(
        default=None, description="B2C shortcode paying refunds (PartyA); absent = mpesa_shortcode")

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql", "postgres")):
            raise ValueError("must be a PostgreSQL SQLAlchemy URL (postgresql+psycopg://...)")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _http_clickhouse(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "chdb://")):
            raise ValueError("must be an http(s):// ClickHouse server URL (absent = chDB)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _cluster_replication(cls, data: Any) -> Any:
        """A three-node embedded cluster replicates topics three times unless told otherwise."""
        if isinstance(data, dict) and "replication_factor" not in data \
                and str(data.get("kafka_nodes", "1")) == "3":
            return {**data, "replication_factor": 3}
        return data

    @field_validator("kafka_nodes")
    @classmethod
    def _odd_quorum(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError("must be 1 or 3 (a KRaft quorum of 2 dies with either node)")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return value
        for part in value.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{part!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        """A provider reached beyond the embedded sandbox gets real secrets, or we refuse to
        start: the placeholders are published in this repository."""
        problem = production_secret_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    @property
    def chdb_path(self) -> Path:
        return self.data_path / "clickhouse"

    @property
    def clickhouse_dsn(self) -> str:
        """The clickhouse-connect DSN: the server URL, or chDB under the data dir."""
        return self.clickhouse_url or f"chdb://{self.chdb_path}"

    @property
    def api_base_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def callback_base_url(self) -> str:
        return (self.public_base_url or self.api_base_url).rstrip("/")

    def payment_rules(self) -> PaymentRules:
        """Attempts per payment and the late-payment policy these settings choose (the
        deadlines: :meth:`DeadlinePolicy.from_settings`)."""
        return PaymentRules(max_attempts=self.max_attempts, late_payment=self.late_payment_policy,
                            confirm_by_query=frozenset({Provider.MPESA} if self.confirms_mpesa_by_query
                                                       else ()))

    def sqlalchemy_async_url(self) -> str:
        """The database URL with an async driver (psycopg 3)."""
        if self.database_url is None:
            raise ConfigurationError(
                "TRAILPAY_DATABASE_URL is not set and no embedded stack was found; "
                "run `trailpay up` or set TRAILPAY_DATABASE_URL"
            )
        url = self.database_url
        for prefix in ("postgresql+psycopg2://", "postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    # --- mobileretry
    mobile_retry_window_s: int = Field(
        default=DEFAULT_POLICY.retry_window_s, ge=1, le=3_600,
        description="Mobile money: how long a payment whose attempt the customer failed (wrong "
        "PIN, low balance, prompt cancelled) waits for a retry before it ends failed with that "
        "attempt's code (a customer retries within minutes or not at all; the booking platform "
        "must hear the outcome quickly)",
    )

    # --- statepii
    state_pii_keys: SecretStr | None = Field(
        default=None, description="Keys sealing the phone numbers and e-mails on payments.state.v1 "
        "(trailpay.pii_crypto): comma-separated base64url, the first seals, all open (rotation); "
        "`trailpay up` generates one per data dir, production must set it")

    # --- kafka4
    kafka_version: str | None = Field(
        default=None, pattern=r"^[34]\.[0-9]+\.[0-9]+$",
        description="Apache Kafka version `trailpay kafka install` installs and `trailpay up` runs "
        "(its jars in ~/.cache/trailpay/kafka/<version>); unset = the one kafka/pom.xml pins "
        "(3.9.2). 3.x logs through reload4j, 4.x through log4j 2")


def load_settings(**overrides: object) -> Settings:
    """Build the settings once; a bad variable fails with one line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a check across fields: its message names the variable
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigurationError(message.splitlines()[0]) from exc
        field = str(first["loc"][0])
        secret = any(word in field for word in ("secret", "key", "password", "token"))
        shown = "" if secret else f" (got {first.get('input')!r})"
        raise ConfigurationError(f"TRAILPAY_{field.upper()}: {first['msg']}{shown}") from exc
