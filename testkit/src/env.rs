use std::path::Path;
use std::time::Duration;

use redis::aio::ConnectionManager;
use sqlx::{Connection, PgConnection, PgPool};
use stasis_shared::config::ExposeSecret;
use stasis_shared::db::{self, jobs, repos, runs, users};
use stasis_shared::domain::SyncReason;
use stasis_shared::Config;
use stasis_shared::{jobs::Jobs, queue};
use tempfile::TempDir;
use uuid::Uuid;

/// `STASIS_TEST_DATABASE_URL` may point at another server; the database named in it is
/// only used to create and drop the per-test databases.
fn admin_url() -> String {
    std::env::var("STASIS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("STASIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct TestEnv {
    pub cfg: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub database: String,
    pub dir: TempDir,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_redis(&redis_url()).await
    }

    /// A fresh database with migrations applied, a fresh namespace, and a config tuned
    /// for tests: loopback upstreams allowed, short heartbeats, backoffs and leases.
    pub async fn with_redis(redis_url: &str) -> Self {
        Self::with_services(&admin_url(), redis_url).await
    }

    /// A fresh database on a Postgres server of the test's own (`admin`: see
    /// [`Self::with_services`]), with the shared Redis.
    pub async fn with_postgres(admin: &str) -> Self {
        Self::with_services(admin, &redis_url()).await
    }

    /// [`Self::with_redis`] on a Postgres server of the test's own (`admin` is a URL to
    /// a database there that may create databases).
    pub async fn with_services(admin: &str, redis_url: &str) -> Self {
        Self::build(admin, redis_url, None).await
    }

    /// [`Self::with_services`] for a `rediss://` Redis whose certificate chains to
    /// `redis_ca` (`redis.ca_file`). `admin`'s query (`sslmode`, `sslrootcert`) is kept
    /// in the test database's URL.
    pub async fn with_services_tls(admin: &str, redis_url: &str, redis_ca: &Path) -> Self {
        Self::build(admin, redis_url, Some(redis_ca)).await
    }

    async fn build(admin: &str, redis_url: &str, redis_ca: Option<&Path>) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let database = format!("stasis_t_{}", &id[..16]);
        let admin = admin.to_owned();
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to test Postgres");
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let (path, query) = admin
            .split_once('?')
            .map_or((admin.as_str(), String::new()), |(p, q)| {
                (p, format!("?{q}"))
            });
        let base = path.rsplit_once('/').map_or(path, |(b, _)| b).to_owned();

        let dir = TempDir::new().expect("temp dir");
        let mut cfg = Config::default();
        cfg.database.url = format!("{base}/{database}{query}");
        cfg.database.max_connections = 8;
        cfg.redis.url = redis_url.to_owned();
        cfg.redis.ca_file = redis_ca.map(Path::to_owned);
        cfg.queue.namespace = format!("t_{}", &id[..16]);
        cfg.queue.heartbeat_interval = Duration::from_secs(1);
        cfg.queue.missed_heartbeats = 2;
        cfg.queue.poll_interval = Duration::from_millis(50);
        cfg.storage.root = dir.path().join("mirrors");
        // what a test machine has free is not the test's business
        cfg.storage.min_free_bytes = 1024 * 1024;
        cfg.mirror.allow_local_network = true;
        cfg.sync.timeout = Duration::from_secs(60);
        cfg.sync.max_attempts = 3;
        cfg.sync.retry_base_delay = Duration::from_secs(1);
        cfg.sync.retry_max_delay = Duration::from_secs(2);
        cfg.sync.lock_ttl = Duration::from_secs(3);
        cfg.sync.lock_retry_delay = Duration::from_millis(300);
        // every upstream of a test is on 127.0.0.1: tests of the per-host cap set their own
        cfg.sync.max_per_host = 0;
        cfg.worker.concurrency = 4;
        cfg.worker.shutdown_grace = Duration::from_secs(30);
        cfg.scheduler.tick = Duration::from_millis(200);
        cfg.scheduler.lease_ttl = Duration::from_secs(2);
        // 32 random bytes as hex: each test seals credentials under its own key
        cfg.secrets.key =
            Some(format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).into());
        cfg.validate().expect("test config is valid");

        let pool = db::connect(&cfg.database)
            .await
            .expect("connect to test database");
        db::migrate(&pool).await.expect("migrate test database");
        let redis = queue::connect_redis(&cfg.redis)
            .await
            .expect("connect to test Redis");
        Self {
            cfg,
            pool,
            redis,
            database,
            dir,
        }
    }

    pub fn jobs(&self) -> Jobs {
        Jobs::new(self.pool.clone(), self.redis.clone(), &self.cfg)
    }

    /// The `STASIS_*` variables that give a child process this environment's config.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let c = &self.cfg;
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("DATABASE_URL", c.database.url.clone()),
            ("REDIS_URL", c.redis.url.clone()),
            ("QUEUE_NAMESPACE", c.queue.namespace.clone()),
            ("QUEUE_HEARTBEAT_INTERVAL", secs(c.queue.heartbeat_interval)),
            (
                "QUEUE_MISSED_HEARTBEATS",
                c.queue.missed_heartbeats.to_string(),
            ),
            ("QUEUE_POLL_INTERVAL", secs(c.queue.poll_interval)),
            ("STORAGE_ROOT", c.storage.root.display().to_string()),
            ("MIRROR_ALLOW_LOCAL_NETWORK", "true".into()),
            ("SYNC_MAX_ATTEMPTS", c.sync.max_attempts.to_string()),
            ("SYNC_RETRY_BASE_DELAY", secs(c.sync.retry_base_delay)),
            ("SYNC_RETRY_MAX_DELAY", secs(c.sync.retry_max_delay)),
            ("SYNC_LOCK_TTL", secs(c.sync.lock_ttl)),
            ("SYNC_LOCK_RETRY_DELAY", secs(c.sync.lock_retry_delay)),
            ("SYNC_MAX_PER_HOST", c.sync.max_per_host.to_string()),
            ("WORKER_CONCURRENCY", c.worker.concurrency.to_string()),
            ("WORKER_SHUTDOWN_GRACE", secs(c.worker.shutdown_grace)),
            (
                "SECRETS_KEY",
                c.secrets
                    .key
                    .as_ref()
                    .map(|k| k.expose_secret().to_owned())
                    .unwrap_or_default(),
            ),
            ("SCHEDULER_TICK", secs(c.scheduler.tick)),
            ("SCHEDULER_LEASE_TTL", secs(c.scheduler.lease_ttl)),
        ]
        .into_iter()
        .chain((!c.storage.storages.is_empty()).then(|| {
            let named = c
                .storage
                .storages
                .iter()
                .map(|(name, s)| {
                    let read_only = if s.read_only { ";read_only" } else { "" };
                    format!("{name}={};weight={}{read_only}", s.root.display(), s.weight)
                })
                .collect::<Vec<_>>()
                .join(",");
            ("STORAGE_STORAGES", named)
        }))
        .chain([(
            "STORAGE_MIN_FREE_BYTES",
            c.storage.min_free_bytes.to_string(),
        )])
        .chain(
            c.redis
                .ca_file
                .as_ref()
                .map(|ca| ("REDIS_CA_FILE", ca.display().to_string())),
        )
        .map(|(k, v)| (format!("STASIS_{k}"), v))
        .collect()
    }

    pub async fn user(&self, name: &str, admin: bool) -> (users::User, String) {
        users::create(&self.pool, name, admin)
            .await
            .expect("create user")
    }

    /// A mirror row (no job yet) owned by a fresh user named after `name`.
    /// Credentials in `url` are split off and sealed, as the API stores them.
    pub async fn mirror(&self, owner: &users::User, name: &str, url: &str) -> Uuid {
        let first = self.cfg.storage.names().remove(0);
        self.mirror_on(&first, owner, name, url).await
    }

    /// [`Self::mirror`] on the named storage.
    pub async fn mirror_on(
        &self,
        storage: &str,
        owner: &users::User,
        name: &str,
        url: &str,
    ) -> Uuid {
        let (url, userinfo) = stasis_shared::git::url::split_credentials(url);
        let cipher = self
            .cfg
            .secrets
            .cipher()
            .expect("test key")
            .expect("test key set");
        let url = url.as_str();
        repos::create(
            &self.pool,
            &repos::NewRepo {
                owner_id: owner.id,
                name,
                description: "",
                private: false,
                is_mirror: true,
                clone_url: url,
                credentials: userinfo.map(|u| cipher.seal(&u)),
                sync_interval_secs: None,
                include_refs: &[],
                exclude_refs: &[],
                storage,
            },
        )
        .await
        .expect("create mirror")
    }

    /// `count` mirrors `m1`…`mN` of `owner`, due a minute ago, 50,000 a statement (a
    /// million in one would outlast `database.statement_timeout`); their upstreams
    /// (`file:///nonexistent/N`) fail at once when a worker tries them.
    pub async fn due_mirrors(&self, owner: &users::User, count: usize) {
        const PER_STATEMENT: usize = 50_000;
        for first in (1..=count).step_by(PER_STATEMENT) {
            let last = (first + PER_STATEMENT - 1).min(count);
            sqlx::query(
                "INSERT INTO repositories (id, owner_id, name, is_mirror, mirror_url, next_sync_at)
                 SELECT gen_random_uuid(), $1, 'm' || n, true, 'file:///nonexistent/' || n,
                        now() - interval '1 minute'
                 FROM generate_series($2, $3) n",
            )
            .bind(owner.id)
            .bind(first as i64)
            .bind(last as i64)
            .execute(&self.pool)
            .await
            .expect("insert due mirrors");
        }
    }

    /// Enqueues through the real path (dedup in Postgres, push to Redis).
    pub async fn enqueue(&self, repo_id: Uuid, reason: SyncReason) -> Uuid {
        self.jobs()
            .request(repo_id, reason)
            .await
            .expect("enqueue")
            .expect("repository exists")
            .job_id
    }

    pub async fn job(&self, job_id: Uuid) -> jobs::Job {
        jobs::find(&self.pool, job_id)
            .await
            .expect("query job")
            .expect("job exists")
    }

    pub async fn repo(&self, repo_id: Uuid) -> repos::Repo {
        repos::find(&self.pool, repo_id)
            .await
            .expect("query repo")
            .expect("repo exists")
    }

    /// Waits until the job is no longer pending or running. A job whose row went after it
    /// was seen ended `done`: while its mirror exists, only a done job is deleted (once
    /// the mirror's next run of its own is written, or as a later check folds into its
    /// run), so a quick next sync may retire it before this looks again; it is answered
    /// as last seen, `done`.
    pub async fn finished(&self, job_id: Uuid, timeout: Duration) -> jobs::Job {
        let seen = std::sync::Mutex::new(None::<jobs::Job>);
        crate::eventually(&format!("job {job_id} to finish"), timeout, || async {
            match jobs::find(&self.pool, job_id).await.expect("query job") {
                Some(job) if matches!(job.state.as_str(), "done" | "failed" | "dead") => Some(job),
                Some(job) => {
                    *seen.lock().unwrap() = Some(job);
                    None
                }
                None => {
                    let mut job = seen.lock().unwrap().take().expect("job exists");
                    job.state = stasis_shared::domain::JobState::Done;
                    Some(job)
                }
            }
        })
        .await
    }

    /// Waits until no worker holds the repository's lock: its last sync ended whole,
    /// housekeeping included (which may still run after its status turned `success`).
    pub async fn released(&self, repo_id: Uuid, timeout: Duration) {
        let key = stasis_shared::lock::Leases::new(self.redis.clone(), &self.cfg.queue.namespace)
            .repo_key(repo_id);
        crate::eventually(
            &format!("the lock of {repo_id} to be released"),
            timeout,
            || {
                let (mut redis, key) = (self.redis.clone(), key.clone());
                async move {
                    let held: bool = redis::cmd("EXISTS")
                        .arg(&key)
                        .query_async(&mut redis)
                        .await
                        .expect("read the lock");
                    (!held).then_some(())
                }
            },
        )
        .await
    }

    /// Every run (attempt) of a job, oldest first.
    pub async fn runs(&self, job_id: Uuid) -> Vec<runs::Run> {
        runs::for_job(&self.pool, job_id).await.expect("query runs")
    }

    /// Deliveries waiting in Redis (due, delayed or ready), in both lanes.
    pub async fn waiting_deliveries(&self) -> u64 {
        let depth = queue::redis_depth(&self.redis, &queue::Lanes::of(&self.cfg))
            .await
            .expect("read queue depth");
        depth.scheduled + depth.active
    }

    /// Every key of this environment's Redis namespace.
    pub async fn redis_keys(&self) -> redis::RedisResult<Vec<String>> {
        let mut redis = self.redis.clone();
        let pattern = format!("{}*", self.cfg.queue.namespace);
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Every key of this environment's Redis namespace with its value, as text: strings, hashes,
    /// lists, sets, sorted sets and streams read by their own commands (a `DUMP` may be
    /// compressed, and would hide what it holds), and how many keys there are. Tests that
    /// prove a secret never reaches Redis search this.
    pub async fn redis_text(&self) -> (usize, String) {
        let mut redis = self.redis.clone();
        let keys = self.redis_keys().await.expect("scan the namespace's keys");
        let mut text = String::new();
        for key in &keys {
            let kind: String = redis::cmd("TYPE")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap();
            let read = match kind.as_str() {
                "string" => redis::cmd("GET").arg(key).clone(),
                "hash" => redis::cmd("HGETALL").arg(key).clone(),
                "list" => redis::cmd("LRANGE").arg(key).arg(0).arg(-1).clone(),
                "set" => redis::cmd("SMEMBERS").arg(key).clone(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .clone(),
                "stream" => redis::cmd("XRANGE").arg(key).arg("-").arg("+").clone(),
                // expired since the scan
                "none" => continue,
                other => panic!("key {key} of type {other} is not read"),
            };
            let value: redis::Value = read.query_async(&mut redis).await.unwrap();
            text.push_str(&format!("{key} {value:?}\n"));
        }
        (keys.len(), text)
    }

    /// Deletes every key of this environment's namespace, as a Redis restarted without
    /// persistence would have lost them.
    pub async fn forget_redis(&self) {
        let mut conn = self.redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.cfg.queue.namespace))
            .query_async(&mut conn)
            .await
            .expect("list the namespace's keys");
        // a million job hashes in one command outlast the connection's response timeout
        for chunk in keys.chunks(10_000) {
            let () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .expect("delete the namespace's keys");
        }
    }

    /// Waits until nothing is left to run: no delivery due, delayed, ready or taken by a
    /// worker in Redis (either lane; a taken delivery leaves its worker's in-flight set
    /// only when acknowledged, and one postponed is pushed again before that), and no job
    /// pending or running in Postgres. A delivery that has not run by then never will, so
    /// absences are asserted after this rather than after a pause.
    pub async fn drained(&self, timeout: Duration) {
        crate::eventually("the queue to drain", timeout, || async {
            let depth = queue::redis_depth(&self.redis, &queue::Lanes::of(&self.cfg))
                .await
                .expect("read queue depth");
            let unfinished: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sync_jobs WHERE state IN ('pending', 'running')",
            )
            .fetch_one(&self.pool)
            .await
            .expect("count unfinished jobs");
            (depth.scheduled + depth.active + depth.inflight == 0 && unfinished == 0).then_some(())
        })
        .await
    }

    /// The mirror's directory on the first configured storage.
    pub fn mirror_path(&self, owner: &str, name: &str) -> std::path::PathBuf {
        let first = self.cfg.storage.names().remove(0);
        self.mirror_path_on(&first, owner, name)
    }

    /// The mirror's directory on storage `storage`.
    pub fn mirror_path_on(&self, storage: &str, owner: &str, name: &str) -> std::path::PathBuf {
        let root = self
            .cfg
            .storage
            .root_of(storage)
            .expect("a configured storage");
        stasis_shared::git::mirror_path(root, owner, name)
    }

    /// Two storages `a` and `b`, each a directory of the test's, with these weights.
    pub fn two_storages(&mut self, weight_a: u32, weight_b: u32) {
        for (name, weight) in [("a", weight_a), ("b", weight_b)] {
            self.cfg.storage.storages.insert(
                name.to_owned(),
                stasis_shared::config::NamedStorage {
                    root: self.dir.path().join(format!("storage-{name}")),
                    weight,
                    read_only: false,
                },
            );
        }
    }
}

impl Drop for TestEnv {
    /// Best effort: a crashed test leaves a `stasis_t_*` database behind, nothing more.
    fn drop(&mut self) {
        let database = self.database.clone();
        let namespace = self.cfg.queue.namespace.clone();
        let redis_cfg = self.cfg.redis.clone();
        let pool = self.pool.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(rt) = rt else { return };
            rt.block_on(async move {
                // a connection released just before the drop goes back to the pool on a
                // task of the test's runtime, which this thread blocks: on a
                // current-thread runtime it never would, and close() would wait forever.
                // DROP DATABASE ... WITH (FORCE) ends any connection left.
                let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
                if let Ok(client) = queue::redis_client(&redis_cfg) {
                    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{namespace}:*"))
                            .query_async(&mut conn)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _: Result<(), _> =
                                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                        }
                    }
                }
            });
        })
        .join()
        .ok();
    }
}
