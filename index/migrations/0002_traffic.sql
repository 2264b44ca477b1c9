-- traffic keeps hourly totals for the status page and `larder stats`:
-- bytes of NAR served to clients and fetched from upstreams, narinfo hits
-- and misses. Bytes saved = served - fetched.
CREATE TABLE traffic (
	hour     INTEGER PRIMARY KEY,   -- unix seconds / 3600
	served   INTEGER NOT NULL DEFAULT 0,
	upstream INTEGER NOT NULL DEFAULT 0,
	hits     INTEGER NOT NULL DEFAULT 0,
	misses   INTEGER NOT NULL DEFAULT 0
) STRICT;

-- prefetch_runs records finished prefetches for the status page.
CREATE TABLE prefetch_runs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	finished   INTEGER NOT NULL,
	pin        TEXT NOT NULL,
	paths      INTEGER NOT NULL,
	fetched    INTEGER NOT NULL,
	bytes      INTEGER NOT NULL,
	complete   INTEGER NOT NULL
) STRICT;
