-- Content is global and content-addressed; repositories say which content
-- they hold, version by version (one row per repository, content,
-- version_added, version_removed, as Pulp stores it).

CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);

CREATE TABLE manifests (
    digest TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    subject TEXT,
    annotations TEXT,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX manifests_by_subject ON manifests (subject) WHERE subject IS NOT NULL;

-- What each manifest needs: its config and layers (blob), its children (manifest).
CREATE TABLE manifest_references (
    manifest TEXT NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    digest TEXT NOT NULL,
    PRIMARY KEY (manifest, kind, digest)
);
CREATE INDEX manifest_references_by_target ON manifest_references (digest);

CREATE TABLE repositories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    latest_version INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);

CREATE TABLE repository_versions (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    base_version INTEGER,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (repository_id, number)
);

-- kind 'tag': name is the tag, digest its manifest; otherwise name = digest.
CREATE TABLE repository_content (
    id INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'manifest', 'tag')),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    version_added INTEGER NOT NULL,
    version_removed INTEGER
);
CREATE UNIQUE INDEX repository_content_current
    ON repository_content (repository_id, kind, name) WHERE version_removed IS NULL;
CREATE INDEX repository_content_by_version
    ON repository_content (repository_id, version_added);
CREATE INDEX repository_content_by_digest ON repository_content (digest);

-- The staging version: what pushes in flight uploaded that no tag reaches yet.
CREATE TABLE staged_content (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    digest TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (repository_id, kind, digest)
);
CREATE INDEX staged_content_by_digest ON staged_content (digest);

-- An upload's bytes so far are its file in the blob store; the row says whose it is.
CREATE TABLE uploads (
    uuid TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
