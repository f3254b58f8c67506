-- What listing filters on: the unit's branch (`/city/d1/s1/g1/`, for subtree filters) and the
-- pending deadlines (for overdue boards).
ALTER TABLE issues ADD COLUMN branch TEXT NOT NULL DEFAULT '';
ALTER TABLE issues ADD COLUMN acknowledge_by INTEGER;
ALTER TABLE issues ADD COLUMN resolve_by INTEGER;
CREATE INDEX issues_reported ON issues (reported_at, id);
