-- The API monitoring report, from what the gateways record. The old
-- per-minute totals were never written; the report's tables replace them.
DROP TABLE request_metrics;

-- Reports applied, by id, so one sent again after a timeout adds nothing.
CREATE TABLE usage_reports (
    id                text             PRIMARY KEY,
    received_at       timestamptz      NOT NULL DEFAULT now(),
    -- The reporting gateway's threshold for a slow request.
    slow_threshold_ms double precision NOT NULL
);
CREATE INDEX usage_reports_by_age ON usage_reports (received_at);

-- Requests per workspace ('' when none was authenticated), minute, route
-- template and status.
CREATE TABLE api_requests (
    workspace_id text        NOT NULL,
    minute       timestamptz NOT NULL,
    method       text        NOT NULL,
    route        text        NOT NULL,
    status       smallint    NOT NULL,
    requests     bigint      NOT NULL,
    slow         bigint      NOT NULL,
    PRIMARY KEY (workspace_id, minute, method, route, status)
);
CREATE INDEX api_requests_by_minute ON api_requests (minute);

-- Their latency histogram: one row per bucket (upper bound in ms) with
-- requests, so percentiles over any window add buckets, never averages.
CREATE TABLE api_latency (
    workspace_id text             NOT NULL,
    minute       timestamptz      NOT NULL,
    method       text             NOT NULL,
    route        text             NOT NULL,
    status       smallint         NOT NULL,
    le_ms        double precision NOT NULL,
    count        bigint           NOT NULL,
    PRIMARY KEY (workspace_id, minute, method, route, status, le_ms)
);
CREATE INDEX api_latency_by_minute ON api_latency (minute);

-- The slowest requests each report carried.
CREATE TABLE slow_requests (
    id           bigserial        PRIMARY KEY,
    workspace_id text             NOT NULL,
    at           timestamptz      NOT NULL,
    method       text             NOT NULL,
    route        text             NOT NULL,
    status       smallint         NOT NULL,
    duration_ms  double precision NOT NULL,
    request_id   text             NOT NULL
);
CREATE INDEX slow_requests_by_workspace ON slow_requests (workspace_id, at);
CREATE INDEX slow_requests_by_time ON slow_requests (at);

-- Readiness checks per minute and component.
CREATE TABLE readiness (
    minute    timestamptz NOT NULL,
    component text        NOT NULL,
    checks    bigint      NOT NULL,
    passed    bigint      NOT NULL,
    PRIMARY KEY (minute, component)
);
