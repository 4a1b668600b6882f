-- Selective sync: ref patterns (one `*` at most, as in git refspecs) a mirror keeps.
-- Empty include: every ref; exclude wins over include. Refs outside the selection are
-- neither fetched nor pruned.
ALTER TABLE repositories
    ADD COLUMN include_refs text[] NOT NULL DEFAULT '{}',
    ADD COLUMN exclude_refs text[] NOT NULL DEFAULT '{}';
