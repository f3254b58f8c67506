-- Stale messages (daemon/src/notify/): a message claimed for sending longer than the delivery
-- policy's age (`stale_after`) after it was due is not sent but kept with status `stale`, listed
-- and retried by hand like a dead letter.

-- When the message was due, if later than its creation: the end of the quiet hours or digest
-- window that held it. Its age counts from here; NULL: from `created_at`.
ALTER TABLE outbox ADD COLUMN due_at INTEGER;
-- When it was last retried by hand (a dead letter, a stale message): it is then sent whatever
-- its age.
ALTER TABLE outbox ADD COLUMN retried_at INTEGER;

-- Rows waiting now: one never tried and held was due when its hold ends; one never tried since
-- its last error was a dead letter retried by hand.
UPDATE outbox SET due_at = not_before
    WHERE status = 'queued' AND attempts = 0 AND not_before > created_at AND last_error IS NULL;
UPDATE outbox SET retried_at = not_before
    WHERE status = 'queued' AND attempts = 0 AND last_error IS NOT NULL;
