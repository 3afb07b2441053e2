"""Settings, all from the environment with embedded defaults so the demo runs with none set."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Topic names of the wire contract, and the internal topics the worker uses between its stages.
READINGS = "meter.readings"
EVENTS = "meter.events"
CUSTOMERS = "customers"
ALERTS = "alerts"
NOTIFICATIONS = "notifications"
DLQ = "gridwatch.dlq"
# what customers text back (opt-out / opt-in / help / still out / rating), keyed by customer_id
FEEDBACK = "feedback"
# internal: customers re-keyed by meter_id (compacted), so the reading path can look its meter up locally
METER_DIRECTORY = "gridwatch.meter-directory"
# internal: per-meter findings and progress, membership and meter events, re-keyed by feeder_id for
# correlation over the topology (meter -> transformer -> feeder)
METER_STATUS = "gridwatch.meter-status"
# internal: closed days of consumption per customer (keyed by customer_id), input of the bill detector
DAILY_USAGE = "gridwatch.daily-usage"
# internal: figures with no alert attached (a week's voltage compliance per meter), keyed by meter_id
REPORTS = "gridwatch.reports"
# internal: one request per (alert, customer), keyed by customer_id, co-partitioned with the customers table
NOTIFY_REQUESTS = "gridwatch.notify-requests"
# internal: what the SMS provider tells us (status callbacks), and what we sent, both keyed by message SID
PROVIDER_EVENTS = "gridwatch.provider-events"
SENT = "gridwatch.sent"
# internal: customers re-keyed by phone number (compacted), so an inbound SMS finds its sender locally
PHONE_DIRECTORY = "gridwatch.phone-directory"
# internal: inbound SMS as the webhook receives them, keyed by the sender's number (co-partitioned with the
# phone directory)
INBOUND = "gridwatch.inbound"
# internal: inbound SMS of known senders re-keyed by customer_id (co-partitioned with notify-requests)
CUSTOMER_REPLIES = "gridwatch.customer-replies"
# internal: operator silences (compacted), keyed by silence_id; every worker reads the whole topic
SILENCES = "gridwatch.silences"
# internal: operator actions on alerts (acknowledge / resolve / reopen), keyed by alert_id (co-partitioned
# with alerts and findings)
ALERT_ACTIONS = "gridwatch.alert-actions"
# internal: what the detectors say about an alert before the operator's lifecycle is applied, keyed by alert_id
FINDINGS = "gridwatch.findings"
# internal: which dead letters `gridwatch dlq replay` re-drove (compacted), keyed by the dead letter's id
DLQ_REPLAYS = "gridwatch.dlq-replays"

CONTRACT_TOPICS = (READINGS, EVENTS, CUSTOMERS, ALERTS, NOTIFICATIONS, FEEDBACK, DLQ)
INTERNAL_TOPICS = (METER_DIRECTORY, METER_STATUS, NOTIFY_REQUESTS, PROVIDER_EVENTS, SENT, DAILY_USAGE, REPORTS,
                   PHONE_DIRECTORY, INBOUND, CUSTOMER_REPLIES, SILENCES, ALERT_ACTIONS, FINDINGS, DLQ_REPLAYS)
COMPACTED_TOPICS = (CUSTOMERS, METER_DIRECTORY, PHONE_DIRECTORY, SILENCES, DLQ_REPLAYS)
# The worker's Faust tables: each has a changelog topic ``<app id>-<table>-changelog``, created up front with
# the other topics (streams/topics.py) so no table write can race its topic's creation. The worker refuses to
# start with a table not listed here.
TABLES = ("customers", "meters", "parked", "parked-events", "meter-state", "transformers", "feeders", "bills",
          "watermarks", "outbox", "deliveries", "phones", "deferred", "lifecycle", "contacts")


# The local SMS sandbox (``gridwatch sandbox``, devtools/sandbox.py): where the product looks for it when no real
# provider is configured, and the credentials it accepts. Fixed, public, NOT secret: the sandbox only ever runs
# on a developer machine or in CI, and the settings refuse them next to real Twilio credentials.
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 8088
SANDBOX_URL = f"http://{SANDBOX_HOST}:{SANDBOX_PORT}"
SANDBOX_SMTP_PORT_OFFSET = 1  # the sandbox's SMTP sink listens next to its HTTP port
SANDBOX_ACCOUNT_SID = "AC5a4db0c2e1f3a6b7c8d9e0f1a2b3c4d5"
SANDBOX_AUTH_TOKEN = "gridwatch-sandbox-token-not-secret"
ENV_SANDBOX_ACCOUNT_SID = "GRIDWATCH_SANDBOX_ACCOUNT_SID"
ENV_SANDBOX_AUTH_TOKEN = "GRIDWATCH_SANDBOX_AUTH_TOKEN"
# Sender used against the sandbox when no TWILIO_FROM_NUMBER is configured (Twilio's test "From" number).
SANDBOX_FROM_NUMBER = "+15005550006"


def sandbox_credentials() -> tuple[str, str]:
    """``(account_sid, auth_token)`` the sandbox accepts: the env overrides, else the built-in defaults."""
    return (os.environ.get(ENV_SANDBOX_ACCOUNT_SID) or SANDBOX_ACCOUNT_SID,
            os.environ.get(ENV_SANDBOX_AUTH_TOKEN) or SANDBOX_AUTH_TOKEN)


def sandbox_smtp_address(sandbox_url: str) -> tuple[str, int]:
    """Where the SMTP sink of the sandbox at ``sandbox_url`` listens: its host, its HTTP port + 1."""
    parts = urlsplit(sandbox_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or SANDBOX_HOST, port + SANDBOX_SMTP_PORT_OFFSET


def _project_dir() -> Path:
    return Path(os.environ.get("GRIDWATCH_HOME", os.getcwd()))


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = field(
        default_factory=lambda: os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    partitions: int = field(default_factory=lambda: int(os.environ.get("GRIDWATCH_PARTITIONS", "8")))
    run_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("GRIDWATCH_RUN_DIR", _project_dir() / ".run")))
    sandbox_url: str = field(
        default_factory=lambda: os.environ.get("GRIDWATCH_SANDBOX_URL", SANDBOX_URL))
    #: Public URL of `gridwatch webhooks` as the SMS provider reaches it (Twilio signs this exact URL).
    #: Unset: messages are sent without a status callback.
    webhook_url: str | None = field(default_factory=lambda: os.environ.get("GRIDWATCH_WEBHOOK_URL") or None)
    # The sender: a Messaging Service SID wins over a From number when both are set.
    twilio_account_sid: str | None = field(default_factory=lambda: os.environ.get("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: str | None = field(default_factory=lambda: os.environ.get("TWILIO_AUTH_TOKEN"))
    twilio_from: str | None = field(default_factory=lambda: os.environ.get("TWILIO_FROM_NUMBER"))
    twilio_messaging_service_sid: str | None = field(
        default_factory=lambda: os.environ.get("TWILIO_MESSAGING_SERVICE_SID"))

    #: The email channel's SMTP server, ``smtp://user:pass@host:587?starttls=1`` (``smtps://`` for TLS from
    #: the first byte). Unset: the local sandbox's SMTP sink (the sandbox's host, its port + 1).
    smtp_url: str | None = field(default_factory=lambda: os.environ.get("GRIDWATCH_SMTP_URL") or None,
                                 repr=False)  # may carry a password
    #: The From address of every email.
    email_from: str = field(
        default_factory=lambda: os.environ.get("GRIDWATCH_EMAIL_FROM") or "alerts@gridwatch.invalid")
    #: Master secret of the webhook channel: each customer's signing secret (``X-Gridwatch-Signature``) is
    #: derived from it and the customer id (``gridwatch webhook-secret CUSTOMER_ID`` prints it). Unset: a fixed,
    #: public development secret, used only towards the networks of ``webhook_allow``.
    webhook_secret: str | None = field(
        default_factory=lambda: os.environ.get("GRIDWATCH_WEBHOOK_SECRET") or None, repr=False)
    #: Networks (comma-separated CIDRs) that may receive webhooks although they are loopback, private or
    #: link-local, e.g. ``127.0.0.1/32`` for the local sandbox. Unset: only public addresses.
    webhook_allow: str = field(default_factory=lambda: os.environ.get("GRIDWATCH_WEBHOOK_ALLOW", ""))

    #: Prepended to every topic name and the consumer group, to run several isolated pipelines on one
    #: cluster (tests use a fresh prefix per run). Empty by default: the contract's topic names as they are.
    topic_prefix: str = field(default_factory=lambda: os.environ.get("GRIDWATCH_TOPIC_PREFIX", ""))

    #: Detectors the worker runs: comma-separated names (`gridwatch detectors list`), or "all".
    detectors: str = field(default_factory=lambda: os.environ.get("GRIDWATCH_DETECTORS", "all"))
    #: ValidityPeriod of every SMS: the provider drops a message still queued after this many seconds, so a
    #: stale outage notice is never delivered hours late (1..36000).
    sms_validity_s: int = field(default_factory=lambda: int(os.environ.get("GRIDWATCH_SMS_VALIDITY_S", "3600")))
    #: The sender's rate: SMS per second the notify stage sends at most (a long code takes about 1).
    sms_per_second: float = field(default_factory=lambda: float(os.environ.get("GRIDWATCH_SMS_PER_SECOND", "10")))
    #: SMS body budget in segments (GSM-7 160/153, UCS-2 70/67 characters): optional parts are dropped to fit.
    sms_max_segments: int = field(default_factory=lambda: int(os.environ.get("GRIDWATCH_SMS_MAX_SEGMENTS", "2")))
    #: Fatigue budget: messages per customer per window across every kind (safety messages are exempt).
    budget_messages: int = field(default_factory=lambda: int(os.environ.get("GRIDWATCH_BUDGET_MESSAGES", "3")))
    budget_window_s: int = field(default_factory=lambda: int(os.environ.get("GRIDWATCH_BUDGET_WINDOW_S", "86400")))
    #: The same kind for the same scope sent again to a customer within this is a duplicate (a flapping fault).
    dedup_window_s: int = field(default_factory=lambda: int(os.environ.get("GRIDWATCH_DEDUP_WINDOW_S", "43200")))
    #: Retries of one send (429, 5xx, refused connections) stop when the next would start after this.
    send_deadline_s: float = field(default_factory=lambda: float(os.environ.get("GRIDWATCH_SEND_DEADLINE_S", "30")))
    #: How late a message the provider created may first appear in its message list. An interrupted send
    #: counts as not sent only when the list, read this long after the last attempt, does not have it.
    provider_list_lag_s: float = field(
        default_factory=lambda: float(os.environ.get("GRIDWATCH_PROVIDER_LIST_LAG_S", "30")))
    #: Processes for model fits (Prophet), so a fit never blocks the event loop.
    fit_processes: int = field(default_factory=lambda: int(os.environ.get("GRIDWATCH_FIT_PROCESSES", "1")))

    #: Users of the operations console (``gridwatch console``): comma-separated ``name:role:secret`` with role
    #: ``viewer`` or ``operator`` and the secret a token or password, or ``name:role:$argon2id$...`` for a
    #: hashed one (``gridwatch console --hash-secret``). With neither this nor the users file the console refuses to start (except ``--demo-users``).
    console_users: str | None = field(
        default_factory=lambda: os.environ.get("GRIDWATCH_CONSOLE_USERS") or None, repr=False)  # secrets
    #: A file of console users, one ``name:role:secret`` per line (blank lines and ``#`` comments ignored).
    console_users_file: Path | None = field(
        default_factory=lambda: Path(os.environ["GRIDWATCH_CONSOLE_USERS_FILE"])
        if os.environ.get("GRIDWATCH_CONSOLE_USERS_FILE") else None)
    #: The console's public URL as browsers reach it (e.g. behind a reverse proxy): state-changing requests
    #: carrying an ``Origin`` must come from its origin, and an https URL makes the session cookie Secure.
    #: Unset: the origin of the request itself (scheme and Host header).
    console_url: str | None = field(default_factory=lambda: os.environ.get("GRIDWATCH_CONSOLE_URL") or None)

    #: The operations history's PostgreSQL (``postgresql://user:pass@host:5432/db``). Unset: gridwatch starts its
    #: own local server under ``<run dir>/postgres`` (history/server.py).
    database_url: str | None = field(default_factory=lambda: os.environ.get("GRIDWATCH_DATABASE_URL") or None,
                                     repr=False)  # may carry a password

    def topic(self, name: str) -> str:
        """The deployed name of a contract or internal topic."""
        return f"{self.topic_prefix}{name}"

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}gridwatch"

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    @property
    def uses_real_twilio(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token
                    and (self.twilio_from or self.twilio_messaging_service_sid))

    @property
    def twilio_configured(self) -> bool:
        """Any ``TWILIO_*`` setting is present: then all of them must be, and nothing may fall back to the
        local sandbox (see :meth:`twilio_problem`)."""
        return any((self.twilio_account_sid, self.twilio_auth_token, self.twilio_from,
                    self.twilio_messaging_service_sid))

    def twilio_problem(self) -> str | None:
        """Why the Twilio settings cannot be used as they are, or None.

        Either no ``TWILIO_*`` variable is set (the local sandbox, with its public credentials), or the
        account SID, the auth token and a sender (``TWILIO_FROM_NUMBER`` or ``TWILIO_MESSAGING_SERVICE_SID``)
        all are. Anything in between is refused rather than guessed: with a partial set, SMS would silently
        go to the sandbox and inbound requests would be checked against the sandbox's public token. The
        sandbox's own credentials or URL next to real ones are refused too (a mixed configuration).
        """
        if not self.twilio_configured:
            return None
        missing = [name for name, value in (("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                                            ("TWILIO_AUTH_TOKEN", self.twilio_auth_token)) if not value]
        if not (self.twilio_from or self.twilio_messaging_service_sid):
            missing.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        if missing:
            present = [name for name, value in (
                ("TWILIO_ACCOUNT_SID", self.twilio_account_sid), ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                ("TWILIO_FROM_NUMBER", self.twilio_from),
                ("TWILIO_MESSAGING_SERVICE_SID", self.twilio_messaging_service_sid)) if value]
            return (f"partial Twilio configuration: {', '.join(present)} set but {', '.join(missing)} missing; "
                    "set all of them to use Twilio, or none to use the local sandbox")
        if {self.twilio_account_sid, self.twilio_auth_token} & {SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN,
                                                                *sandbox_credentials()}:
            return ("mixed Twilio configuration: TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN are the local sandbox's "
                    "credentials; unset the TWILIO_* variables to use the sandbox")
        if os.environ.get("GRIDWATCH_SANDBOX_URL"):
            return ("mixed Twilio configuration: both real Twilio credentials (TWILIO_*) and "
                    "GRIDWATCH_SANDBOX_URL are set; unset one of them")
        return None


class ConfigError(ValueError):
    """Settings that must not be used; commands exit with status 2 and this message."""


def check_twilio(settings: Settings) -> None:
    """ConfigError when the Twilio settings are partial or mixed (:meth:`Settings.twilio_problem`)."""
    problem = settings.twilio_problem()
    if problem:
        raise ConfigError(problem)
