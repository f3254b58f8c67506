-- The request (延期 or 挂起) waiting on an issue for its decider: its kind, none without one,
-- and when the decider's time runs out, so that the requests to decide are found without
-- reading every open issue's state. Filled in from the stored states of the issues there are.
ALTER TABLE issues ADD COLUMN request_kind TEXT;
ALTER TABLE issues ADD COLUMN request_by INTEGER;
UPDATE issues
   SET request_kind = json_extract(state, '$.request.kind'),
       request_by = CAST(ROUND((julianday(json_extract(state, '$.request.decide_by')) - 2440587.5)
                               * 86400000.0) AS INTEGER)
 WHERE json_extract(state, '$.request.kind') IS NOT NULL;
CREATE INDEX issues_requests ON issues (request_by, id) WHERE request_kind IS NOT NULL;
