-- newswatch schema, version 9: feeds, rules and channels added from the UI or the CLI, beside those the YAML file
-- declares, and the audit of every change to them. Documented in docs/schema.md and docs/configuration.md.
--
-- The file stays in charge of what it declares: these tables hold only what it does not. Names are unique across
-- both sources; a name taken by both is reported by `newswatch check-config` (the file's item is used, the UI's
-- ignored), never resolved silently. Each row holds the same fields as the YAML item it stands for and is
-- checked with the same models (newswatch.config) when written and again whenever the settings are loaded.

-- Column names differ from the runtime table `feeds` (one row per polled feed, whatever its source) on purpose.
CREATE TABLE ui_feeds (
    name             text PRIMARY KEY,
    url              text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    language         text,
    interval_seconds integer,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ui_rules (
    name        text PRIMARY KEY,
    query       text NOT NULL,
    channels    text[] NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    digest      jsonb,          -- {"every": "1h"} or {"at": "08:00", "timezone": "Europe/Paris"}, as in the YAML
    updates     boolean NOT NULL DEFAULT true,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The URL and secret are stored as given (delivery needs them) and never shown: pages, commands and the audit
-- print them redacted (newswatch.urls.redact_channel).
CREATE TABLE ui_channels (
    name        text PRIMARY KEY,
    url         text,
    connection  text,
    secret      text,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((url IS NULL) <> (connection IS NULL))
);

-- One row per change, written in the transaction that makes it. before/after hold the item as it was and as it
-- became (NULL for an addition or a removal), with URLs and secrets redacted.
CREATE TABLE config_audit (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL CHECK (action IN ('add', 'update', 'enable', 'disable', 'remove')),
    kind     text NOT NULL CHECK (kind IN ('feed', 'rule', 'channel')),
    name     text NOT NULL,
    before   jsonb,
    after    jsonb,
    detail   text              -- where the change came from when it says more than the actor: "OPML import (x.opml)"
);
CREATE INDEX config_audit_recent ON config_audit (at DESC, id DESC);
CREATE INDEX config_audit_item ON config_audit (kind, name, at DESC);
