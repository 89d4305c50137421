-- Distributions: what `docker pull <host>/<base path>` serves. A repository's
-- latest version (with its staging, so a push in flight can pull by digest)
-- when `version` is null, else that pinned version and nothing else.
CREATE TABLE distributions (
    base_path TEXT PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    version INTEGER,
    created REAL NOT NULL
);
CREATE INDEX distributions_by_repository ON distributions (repository_id);

-- Until now every repository was served under its own name: keep serving it.
INSERT INTO distributions (base_path, repository_id, version, created)
    SELECT name, id, NULL, created FROM repositories;

-- Keep only the last N versions (null: keep every version).
ALTER TABLE repositories ADD COLUMN retain_versions INTEGER;

-- Rows removed in a version, looked up when versions are folded or diffed.
CREATE INDEX repository_content_by_removal
    ON repository_content (repository_id, version_removed);
