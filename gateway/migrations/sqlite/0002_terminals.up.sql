-- The last heartbeat of each terminal: software version and peripheral
-- health (a JSON array of {kind, status, detail}), time in µs since epoch.
CREATE TABLE terminal_heartbeats (
    terminal_id       TEXT PRIMARY KEY,
    store_id          TEXT NOT NULL,
    software_version  TEXT NOT NULL,
    peripherals       TEXT NOT NULL,
    received_at       BIGINT NOT NULL
);
CREATE INDEX terminal_heartbeats_store ON terminal_heartbeats (store_id);
