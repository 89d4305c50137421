-- Who opened each upload session ("user:<name>", or "address:<ip>" for an
-- anonymous client), so that the sessions one client keeps open can be
-- counted and capped (max_uploads_per_client). Sessions opened before this
-- migration have none, and count for nobody.
ALTER TABLE uploads ADD COLUMN owner TEXT;
CREATE INDEX uploads_by_owner ON uploads (owner);
