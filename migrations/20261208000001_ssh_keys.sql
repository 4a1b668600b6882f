-- SSH upstreams: the mirror's deploy key and the upstream host keys its owner confirmed.
-- ssh_private_key is the private half in OpenSSH's format, sealed with AES-256-GCM under
-- secrets.key as mirror_credentials is; ssh_public_key is its public half, shown to the
-- owner to add upstream as a read-only deploy key.
ALTER TABLE repositories
    ADD COLUMN ssh_private_key text,
    ADD COLUMN ssh_public_key text,
    -- [{"key_type": "ssh-ed25519" | null, "fingerprint": "SHA256:..."}]: a sync whose
    -- upstream shows none of these fetches nothing
    ADD COLUMN ssh_host_keys jsonb NOT NULL DEFAULT '[]',
    -- the host and port (`host:port`) the keys were confirmed for: keys confirmed for
    -- another upstream are no keys for this one
    ADD COLUMN ssh_host_keys_for text,
    ADD CONSTRAINT ssh_keys_paired CHECK ((ssh_private_key IS NULL) = (ssh_public_key IS NULL));
