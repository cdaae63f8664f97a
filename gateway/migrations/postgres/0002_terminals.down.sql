DROP TABLE terminal_heartbeats;
