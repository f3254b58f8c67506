-- The request (延期 or 挂起) waiting on an issue for its decider: its kind, none without one,
-- and when the decider's time runs out, so that the requests to decide are found without
-- reading every open issue's state. Filled in from the stored states of the issues there are.
ALTER TABLE issues ADD COLUMN request_kind TEXT, ADD COLUMN request_by BIGINT;
UPDATE issues
   SET request_kind = state::jsonb -> 'request' ->> 'kind',
       request_by = ROUND(EXTRACT(EPOCH FROM (state::jsonb -> 'request' ->> 'decide_by')::timestamptz)
                          * 1000)::bigint
 WHERE state::jsonb -> 'request' ->> 'kind' IS NOT NULL;
CREATE INDEX issues_requests ON issues (request_by, id) WHERE request_kind IS NOT NULL;
