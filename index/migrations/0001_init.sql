-- narinfos holds every narinfo Larder accepted, as text, with the columns
-- that queries and closure walks need pulled out of it.
CREATE TABLE narinfos (
	hash        TEXT PRIMARY KEY,   -- store path hash part (32 nix32 chars)
	store_path  TEXT NOT NULL,
	nar_hash    TEXT NOT NULL,      -- "sha256:<nix32>"
	nar_size    INTEGER NOT NULL,
	refs        TEXT NOT NULL,      -- space-separated basenames
	narinfo     TEXT NOT NULL,      -- as accepted, upstream Sig lines kept
	source      TEXT NOT NULL,      -- upstream base URL, or "push", "local", "import"
	nar_url     TEXT NOT NULL,      -- where the NAR is fetched from at the source
	created_at  INTEGER NOT NULL,   -- unix seconds
	last_access INTEGER NOT NULL
) STRICT;
CREATE INDEX narinfos_nar_hash ON narinfos(nar_hash);

-- nar_files lists the NAR representations on disk. One NAR may have several
-- (the upstream's compression, a recompressed copy), each verified.
CREATE TABLE nar_files (
	nar_hash    TEXT NOT NULL,
	compression TEXT NOT NULL,
	file_hash   TEXT NOT NULL,      -- "sha256:<nix32>" of the file as stored
	file_size   INTEGER NOT NULL,
	nar_size    INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	last_access INTEGER NOT NULL,
	PRIMARY KEY (nar_hash, compression)
) STRICT;

-- pins name closures kept for offline use; garbage collection keeps every
-- path reachable from a pin's roots.
CREATE TABLE pins (
	name       TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE pin_roots (
	pin        TEXT NOT NULL REFERENCES pins(name) ON DELETE CASCADE,
	store_path TEXT NOT NULL,
	PRIMARY KEY (pin, store_path)
) STRICT;
