-- The timers some replica holds a claim on: few (those in flight), found without reading the
-- pending ones, for the scheduler's "when may the next timer be claimed".
CREATE INDEX timers_claimed ON timers (lease_until) WHERE lease_until IS NOT NULL;
