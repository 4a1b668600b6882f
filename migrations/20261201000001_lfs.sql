-- Git LFS: a mirror downloads the LFS objects its new commits point at, unless its
-- owner turns that off. A run records what it downloaded and why LFS failed, if it did
-- (an LFS failure never fails the git part of the sync).
ALTER TABLE repositories ADD COLUMN lfs_enabled boolean NOT NULL DEFAULT true;
ALTER TABLE sync_runs
    ADD COLUMN lfs_objects integer,
    ADD COLUMN lfs_bytes bigint,
    ADD COLUMN lfs_error text;
