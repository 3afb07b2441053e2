"""The console's API described as OpenAPI 3.1 (served at ``GET /api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from gridwatch.kinds import FAMILIES

__all__ = ["document"]

FIRST_MESSAGE_DEFINITION = (
    "Fault to first message, per alert with a sent notification: (created_at of its first `sent` "
    "notification - Kafka timestamp of the alert's first record on `alerts`) + (detected_at - started_at). "
    "The first term is wall time (from the alert reaching Kafka to the message leaving), the second event "
    "time (from the first abnormal reading to the detection); each clock is only subtracted from itself, so "
    "the figure holds in replays, where event time and wall time are far apart. A negative wall part "
    "(clocks of different hosts) counts as 0.")

TIME = {"type": "string", "format": "date-time", "description": "RFC 3339 with a UTC offset"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


UNAUTHORIZED = _error("No valid credentials (Bearer token, Basic or the session cookie).")
FORBIDDEN = _error("A viewer asked to act, the CSRF token is missing or wrong (cookie sessions), or the "
                   "Origin header is not the console's own origin.")
CSRF_HEADER = {"name": "X-CSRF-Token", "in": "header", "required": False,
               "description": "Required with cookie authentication: the `csrf` value of `GET /api/me`. Not "
                              "needed with Bearer or Basic credentials.",
               "schema": {"type": "string"}}
ALERT_ID = {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "The alert id (URL-encoded: ids contain ':')"}


def _csv_query(name: str, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


def _schemas() -> dict[str, Any]:
    scope = {"type": "object", "properties": {"level": {"type": "string"}, "id": {"type": "string"}}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Me": {"type": "object", "required": ["user", "role", "csrf"], "properties": {
            "user": {"type": "string"}, "role": {"enum": ["viewer", "operator"]},
            "csrf": {"type": ["string", "null"],
                     "description": "The session's CSRF token (null when not signed in with a session cookie)"}}},
        "Scope": scope,
        "AlertRecord": {
            "type": "object", "description": "The latest record of the alert on the `alerts` topic, as published "
                                             "(see gridwatch/schemas/alerts.schema.json); extra fields allowed.",
            "required": ["alert_id", "kind", "severity", "status"],
            "properties": {
                "alert_id": {"type": "string"}, "kind": {"type": "string"},
                "severity": {"enum": ["info", "warning", "critical"]},
                "status": {"enum": ["open", "acknowledged", "resolved"]}, "scope": _ref("Scope"),
                "meter_ids": {"type": "array", "items": {"type": "string"}},
                "customer_ids": {"type": "array", "items": {"type": "string"}},
                "started_at": TIME, "detected_at": TIME, "resolved_at": NULLABLE_TIME,
                "evidence": {"type": "object"}, "history": {"type": "array", "items": {"type": "object"}},
            }, "additionalProperties": True},
        "AlertSummary": {
            "type": "object",
            "required": ["alert_id", "kind", "severity", "status", "scope", "started_at", "detected_at",
                         "resolved_at", "n_meters", "n_customers", "feeder_id", "transformer_ids", "updated_at"],
            "properties": {
                "alert_id": {"type": "string"}, "kind": {"type": "string"}, "severity": {"type": "string"},
                "status": {"enum": ["open", "acknowledged", "resolved"]}, "scope": _ref("Scope"),
                "started_at": TIME, "detected_at": TIME, "resolved_at": NULLABLE_TIME,
                "n_meters": {"type": "integer"}, "n_customers": {"type": "integer"},
                "feeder_id": {"type": ["string", "null"],
                              "description": "The scope's feeder, else the feeder most of the alert's meters are "
                                             "on (customer directory)"},
                "transformer_ids": {"type": "array", "items": {"type": "string"}},
                "updated_at": {"type": ["string", "null"], "format": "date-time",
                               "description": "Kafka (wall) time of the alert's latest record"},
                "deleted": {"type": "boolean", "description": "Only in live events: the alert was deleted"},
            }},
        "AlertList": {"type": "object", "required": ["alerts", "counts"], "properties": {
            "alerts": {"type": "array", "items": _ref("AlertSummary")},
            "counts": {"type": "object", "properties": {s: {"type": "integer"}
                                                       for s in ("open", "acknowledged", "resolved")}}}},
        "TimelineEvent": {"type": "object", "required": ["event", "at"], "properties": {
            "event": {"enum": ["started", "detected", "notified", "acknowledged", "resolved", "reopened"]},
            "at": {"type": ["string", "null"]}, "by": {"type": ["string", "null"]},
            "reason": {"type": ["string", "null"]}}},
        "NotificationView": {"type": "object", "properties": {
            "notification_id": {"type": "string"}, "channel": {"type": ["string", "null"]},
            "status": {"type": ["string", "null"], "description": "The latest status of this message"},
            "reason": {"type": ["string", "null"]}, "body": {"type": ["string", "null"]},
            "created_at": {"type": ["string", "null"]}, "provider_message_id": {"type": ["string", "null"]},
            "history": {"type": "array", "description": "Every record of this message, in order",
                        "items": {"type": "object", "properties": {
                            "status": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]},
                            "created_at": {"type": ["string", "null"]}}}}}},
        "CustomerView": {"type": "object", "required": ["customer_id", "notifications"], "properties": {
            "customer_id": {"type": "string"},
            "phone": {"type": ["string", "null"], "description": "Masked (+86138****8000) for viewers"},
            "language": {"type": ["string", "null"]}, "segment": {"type": ["string", "null"]},
            "meter_id": {"type": ["string", "null"]}, "transformer_id": {"type": ["string", "null"]},
            "feeder_id": {"type": ["string", "null"]}, "opted_out": {"type": ["boolean", "null"]},
            "known": {"type": "boolean", "description": "In the customer directory"},
            "notifications": {"type": "array", "items": _ref("NotificationView")}}},
        "Feedback": {"type": "object", "description": "A record of the `feedback` topic "
                                                      "(gridwatch/schemas/feedback.schema.json)",
                     "properties": {"feedback_id": {"type": "string"}, "customer_id": {"type": ["string", "null"]},
                                    "intent": {"type": "string"}, "rating": {"type": ["integer", "null"]},
                                    "alert_id": {"type": ["string", "null"]}, "body": {"type": ["string", "null"]},
                                    "created_at": {"type": "string"}},
                     "additionalProperties": True},
        "Notification": {"type": "object", "description": "A record of the `notifications` topic",
                         "additionalProperties": True},
        "AlertDetail": {"type": "object", "required": ["alert", "evidence_svg", "timeline", "customers", "feedback"],
                        "properties": {
                            "alert": _ref("AlertRecord"), "summary": _ref("AlertSummary"),
                            "evidence_svg": {"type": ["string", "null"],
                                             "description": "URL of the evidence chart, null when there is none"},
                            "timeline": {"type": "array", "items": _ref("TimelineEvent")},
                            "customers": {"type": "array", "items": _ref("CustomerView")},
                            "feedback": {"type": "array", "items": _ref("Feedback")}}},
        "AcknowledgeRequest": {"type": "object", "required": ["reason"],
                               "properties": {"reason": {"type": "string", "minLength": 1}}},
        "ResolveRequest": {"type": "object", "required": ["reason"], "properties": {
            "reason": {"type": "string", "minLength": 1},
            "no_fault": {"type": "boolean", "default": False, "description": "It was a false alarm"}}},
        "Action": {"type": "object", "required": ["action", "alert_id", "author", "reason", "at"], "properties": {
            "action": {"enum": ["acknowledge", "resolve"]}, "alert_id": {"type": "string"},
            "author": {"type": "string"}, "reason": {"type": "string"}, "at": TIME,
            "no_fault": {"type": "boolean"}}},
        "Accepted": {"type": "object", "required": ["accepted", "action"], "properties": {
            "accepted": {"const": True}, "action": _ref("Action")}},
        "Silence": {"type": "object", "required": ["silence_id", "scope", "starts_at", "ends_at"], "properties": {
            "silence_id": {"type": "string"}, "scope": _ref("Scope"),
            "kinds": {"type": ["array", "null"], "items": {"type": "string"}},
            "starts_at": TIME, "ends_at": TIME, "include_safety": {"type": "boolean"},
            "author": {"type": "string"}, "reason": {"type": "string"}, "created_at": TIME,
            "expired_at": NULLABLE_TIME, "expired_by": {"type": ["string", "null"]},
            "active": {"type": "boolean", "description": "In force now"},
            "state": {"enum": ["active", "scheduled", "expired", "ended"]}}, "additionalProperties": True},
        "SilenceRequest": {"type": "object", "required": ["scope", "reason"], "properties": {
            "scope": {"type": "string", "examples": ["feeder:F01", "transformer:T0042", "all"],
                      "description": "LEVEL:ID (feeder, transformer, meter, customer) or all"},
            "kinds": {"type": ["array", "null"], "items": {"type": "string"},
                      "description": "Only these alert kinds; null or absent: every kind"},
            "duration": {"type": "string", "examples": ["2h", "30m", "1h30m"],
                         "description": "How long; give exactly one of duration and ends_at"},
            "ends_at": TIME, "starts_at": {**TIME, "description": "Default: now"},
            "reason": {"type": "string", "minLength": 1},
            "include_safety": {"type": "boolean", "default": False,
                               "description": "Also mute safety messages (outage, loose neutral, critical)"},
            "force": {"type": "boolean", "default": False, "description": "Allow more than 7 days"}}},
        "Satisfaction": {"type": "object", "properties": {
            "ratings": {"type": "integer"}, "mean": {"type": "number"},
            "distribution": {"type": "object", "properties": {str(i): {"type": "integer"} for i in range(1, 6)}}}},
        "FeedbackList": {"type": "object", "required": ["feedback", "satisfaction"], "properties": {
            "feedback": {"type": "array", "items": _ref("Feedback")},
            "satisfaction": {"type": "object", "additionalProperties": _ref("Satisfaction"),
                             "description": "Per alert kind (of the alert a rating refers to; 'unknown' when "
                                            "that alert is not known)"}}},
        "Stats": {"type": "object", "required": ["n", "median", "p95"], "properties": {
            "n": {"type": "integer"}, "median": {"type": ["number", "null"]}, "p95": {"type": ["number", "null"]}},
            "description": "Seconds; quantiles interpolated linearly between closest ranks; null when n is 0"},
        "Figures": {"type": "object", "required": ["detection_s", "first_message_s", "messages", "false_alarms"],
                    "properties": {
                        "detection_s": {**_ref("Stats"), "description": "detected_at - started_at (event time)"},
                        "first_message_s": {**_ref("Stats"), "description": FIRST_MESSAGE_DEFINITION},
                        "messages": {"type": "object", "description":
                                     "Messages (distinct notification_id) that reached each status; one deferred "
                                     "and later sent counts under both (with a history store: each message under "
                                     "the state it is in now — sent, and its provider's outcome)",
                                     "properties": {**{s: {"type": "integer"} for s in
                                                       ("sent", "delivered", "suppressed", "failed", "deferred")},
                                                    "suppressed_by_reason": {"type": "object",
                                                                             "additionalProperties": {"type": "integer"}}}},
                        "false_alarms": {"type": "object", "properties": {
                            "resolved": {"type": "integer"}, "no_fault": {"type": "integer"},
                            "rate": {"type": ["number", "null"], "description": "no_fault / resolved"}}},
                        "computed_at": {"type": "string", "format": "date-time", "description":
                                        "With a history store: when the store computed these (after a change, once "
                                        "the projector has written it; at most every 5 s). Absent "
                                        "without one: computed from what the console holds."}}},
    }


def document(more_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document, with ``more_paths`` (the history's, :func:`console.history_api.openapi_paths`)."""
    secured = [{"bearerAuth": []}, {"basicAuth": []}, {"cookieAuth": []}]
    common = {"401": UNAUTHORIZED}
    act = {"401": UNAUTHORIZED, "403": FORBIDDEN}
    paths = {
        "/login": {"post": {
            "summary": "Sign in: sets the gw_session cookie (HttpOnly, SameSite=Strict)", "security": [],
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["user", "secret"],
                                                                 "properties": {"user": {"type": "string"},
                                                                                "secret": {"type": "string"},
                                                                                "next": {"type": "string"}}}},
                "application/json": {"schema": {"type": "object", "required": ["user", "secret"],
                                                 "properties": {"user": {"type": "string"},
                                                                "secret": {"type": "string"}}}}}},
            "responses": {"200": _json(_ref("Me"), "Signed in (JSON request)"),
                          "303": {"description": "Signed in (form): redirect to `next` or /"},
                          "401": {"description": "Wrong name or secret"},
                          "403": FORBIDDEN}},
            "get": {"summary": "The sign-in page", "security": [],
                    "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
        "/logout": {"post": {"summary": "Sign out (ends the session, clears the cookie)", "parameters": [CSRF_HEADER],
                             "responses": {"200": _json({"type": "object"}, "Signed out"), "403": FORBIDDEN}}},
        "/api/me": {"get": {"summary": "Who is signed in, and the session's CSRF token",
                            "responses": {"200": _json(_ref("Me"), "The user"), **common}}},
        "/api/kinds": {"get": {
            "summary": "The alert kinds gridwatch declares (gridwatch/kinds.py), with their family",
            "responses": {"200": _json({"type": "object", "required": ["kinds"], "properties": {"kinds": {
                "type": "array", "items": {"type": "object", "required": ["name", "family", "summary"],
                                           "properties": {"name": {"type": "string"},
                                                          "family": {"type": "string",
                                                                     "enum": list(FAMILIES)},
                                                          "summary": {"type": "string"}}}}}}, "The kinds"),
                          **common}}},
        "/api/alerts": {"get": {
            "summary": "Alerts, newest detection first",
            "description": "Every filter takes one value or several separated by commas. `counts` are over the "
                           "alerts passing every filter except `status`, before `limit`.",
            "parameters": [_csv_query("kind", "undervoltage, outage, bill_spike …"),
                           _csv_query("severity", "info, warning, critical"),
                           _csv_query("status", "open, acknowledged, resolved"),
                           _csv_query("feeder", "feeder id"), _csv_query("transformer", "transformer id"),
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}}],
            "responses": {"200": _json(_ref("AlertList"), "Alert summaries"), "400": _error("A bad limit"),
                          **common}}},
        "/api/alerts/{alert_id}": {"get": {
            "summary": "One alert: its latest record, timeline, customers and their messages, feedback",
            "description": "Phone numbers are shown in full to operators and masked for viewers.",
            "parameters": [ALERT_ID],
            "responses": {"200": _json(_ref("AlertDetail"), "The alert"), "404": _error("Unknown alert"), **common}}},
        "/api/alerts/{alert_id}/evidence.svg": {"get": {
            "summary": "The alert's evidence chart (voltage trace against its band, or daily use and forecast)",
            "parameters": [ALERT_ID],
            "responses": {"200": {"description": "SVG", "content": {"image/svg+xml": {}}},
                          "404": _error("Unknown alert, or no evidence series"), **common}}},
        "/api/alerts/{alert_id}/acknowledge": {"post": {
            "summary": "Acknowledge an open alert (operators)",
            "description": "Publishes an `acknowledge` action on gridwatch.alert-actions keyed by the alert id "
                           "(author: the signed-in user); the worker applies it and the new alert record arrives "
                           "as a live `alert` event.",
            "parameters": [ALERT_ID, CSRF_HEADER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("AcknowledgeRequest")}}},
            "responses": {"202": _json(_ref("Accepted"), "Published"), "400": _error("No reason"),
                          "404": _error("Unknown alert"), "409": _error("Resolved, or already acknowledged"),
                          "503": _error("Kafka did not take the action"), **act}}},
        "/api/alerts/{alert_id}/resolve": {"post": {
            "summary": "Resolve an alert (operators); no_fault marks a false alarm",
            "parameters": [ALERT_ID, CSRF_HEADER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ResolveRequest")}}},
            "responses": {"202": _json(_ref("Accepted"), "Published"), "400": _error("No reason"),
                          "404": _error("Unknown alert"), "409": _error("Already resolved"),
                          "503": _error("Kafka did not take the action"), **act}}},
        "/api/silences": {
            "get": {"summary": "Every silence, with `active` and `state`",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "silences": {"type": "array", "items": _ref("Silence")}}}, "Silences"), **common}},
            "post": {"summary": "Add a silence (operators); published on gridwatch.silences",
                     "parameters": [CSRF_HEADER],
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": _ref("SilenceRequest")}}},
                     "responses": {"201": _json(_ref("Silence"), "The new silence"),
                                   "400": _error("Invalid silence"), "503": _error("Kafka did not take it"),
                                   **act}}},
        "/api/silences/{silence_id}/expire": {"post": {
            "summary": "End a silence now (operators)",
            "parameters": [{"name": "silence_id", "in": "path", "required": True, "schema": {"type": "string"}},
                           CSRF_HEADER],
            "responses": {"200": _json(_ref("Silence"), "The ended silence"), "404": _error("Unknown silence"),
                          "409": _error("Already expired"), "503": _error("Kafka did not take it"), **act}}},
        "/api/feedback": {"get": {
            "summary": "Customers' replies, newest first, and satisfaction per alert kind",
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 200}}],
            "responses": {"200": _json(_ref("FeedbackList"), "Feedback"), "400": _error("A bad limit"), **common}}},
        "/api/figures": {"get": {
            "summary": "Detection and first-message latency, message outcomes, false alarms",
            "description": "detection_s: detected_at - started_at (event time). first_message_s: "
                           + FIRST_MESSAGE_DEFINITION + " Without a history store: over what the console holds; "
                           "with one: over everything the store holds.",
            "responses": {"200": _json(_ref("Figures"), "Figures"),
                          "503": _error("The history store is configured but does not answer"), **common}}},
        "/api/events": {"get": {
            "summary": "Live changes as Server-Sent Events",
            "description": "`event: alert` (data: an AlertSummary), `event: notification` (a notifications "
                           "record), `event: feedback` (a feedback record), `event: silence` (a Silence), `event: "
                           "figures` (with a history store: new figures and satisfaction were computed); a "
                           "`: heartbeat` comment every 15 s. Changes are pushed as they reach Kafka; a new "
                           "subscriber fetches /api/alerts for the current state. A subscriber that falls far "
                           "behind is disconnected (reconnect and refetch).",
            "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}},
                          **common}}},
        "/api/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **common}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "description": "gridwatch_readings_messages_total, gridwatch_dlq_records_total, "
                           "gridwatch_consumer_lag{topic}, gridwatch_alerts{kind,status}, "
                           "gridwatch_notifications_total{status,channel}, gridwatch_detection_latency_seconds, "
                           "gridwatch_console_up, gridwatch_kafka_up (0 when the Kafka offsets query failed; the "
                           "Kafka families are then left out).",
            "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
                          **common}}},
    }
    paths.update(more_paths or {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "gridwatch operations console", "version": "1.0.0",
                 "description": "Live alerts, evidence, notification outcomes and customer feedback, and the "
                                "operator's actions (acknowledge, resolve, silence). JSON, UTF-8. State-changing "
                                "requests authenticated by the session cookie must carry X-CSRF-Token; any "
                                "request with an Origin header must come from the console's own origin. Viewers "
                                "cannot act (403) and see phone numbers masked."},
        "servers": [{"url": "/"}],
        "security": secured,
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "The user's token"},
                "basicAuth": {"type": "http", "scheme": "basic", "description": "User name and secret"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "gw_session",
                               "description": "Set by POST /login"},
            },
        },
    }
