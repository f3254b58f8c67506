-- A timer's claim: the firing's write is taken only while the timer carries the fence it was
-- claimed with. One process owns an SQLite store, so its claims never change hands and the
-- fence stays 0; the column is there so that both backends guard a firing the same way.
ALTER TABLE timers ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
