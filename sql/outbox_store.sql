-- <dir>/outbox.db of a table created with outbox=on (see ARCHITECTURE.md §8).
-- The commit clock of earlier builds (now <dir>/outbox.clock, see src/outbox/clock.rs):
-- no longer written; read once, as a floor, when the clock file is opened.
CREATE TABLE IF NOT EXISTS clock(
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  csn INTEGER NOT NULL
);
-- Named consumers and the position (csn, tn) of the last change each acknowledged.
CREATE TABLE IF NOT EXISTS consumers(
  name    TEXT PRIMARY KEY,
  csn     INTEGER NOT NULL DEFAULT 0,
  tn      INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL,                     -- unix time, seconds
  acked   REAL                               -- unix time of the last ack
);
