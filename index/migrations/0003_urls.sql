-- urls holds responses kept by the forward proxy (sources fetched by
-- fixed-output derivations and Nix's own fetchers), keyed by normalised URL.
CREATE TABLE urls (
	url           TEXT PRIMARY KEY,
	sha256        TEXT NOT NULL,      -- hex of the body; the blob is "url/<sha256>"
	size          INTEGER NOT NULL,
	content_type  TEXT NOT NULL,
	etag          TEXT NOT NULL,
	last_modified TEXT NOT NULL,
	fetched_at    INTEGER NOT NULL,
	last_access   INTEGER NOT NULL
) STRICT;

-- pin_urls records the URLs a pinned closure needs for offline rebuilds.
CREATE TABLE pin_urls (
	pin TEXT NOT NULL,
	url TEXT NOT NULL,
	PRIMARY KEY (pin, url)
) STRICT;
