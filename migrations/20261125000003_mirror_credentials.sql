-- Upstream credentials split off mirror_url and sealed with AES-256-GCM under
-- secrets.key (base64 of nonce || ciphertext); mirror_url itself never carries them.
ALTER TABLE repositories ADD COLUMN mirror_credentials text;
