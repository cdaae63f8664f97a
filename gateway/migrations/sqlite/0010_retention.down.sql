DROP INDEX channel_held_done;
DROP INDEX channel_held_waiting;
DROP INDEX channel_inbox_received;
DROP INDEX outbox_delivered;
DROP INDEX idempotency_keys_created;
