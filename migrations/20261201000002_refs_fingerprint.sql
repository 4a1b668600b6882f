-- Upstream manifests (grokmirror): the fingerprint of a mirror's refs as grokmirror
-- computes it (SHA-1 of `git show-ref`), stored after each successful sync, so the
-- scheduler can compare it with an upstream manifest's without listing refs.
ALTER TABLE repositories ADD COLUMN refs_fingerprint text;
