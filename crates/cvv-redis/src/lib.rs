//! The shared CVV store on Redis.
//!
//! Redis sees only what [`strongroom_cards::shared`] describes: names that
//! are MACs and values sealed in the vault's process. Each entry is written
//! with `SET … NX PX` (a time to live, never overwriting) and taken with
//! `GETDEL` (read and delete in one step, so it is handed out once across
//! every node). `GETDEL` needs Redis 6.2 or later.
//!
//! Keys are `strongroom:{vault id}:cvv:{name}`, so vaults sharing a Redis
//! never meet. Redis persistence (RDB, AOF) and replicas hold ciphertext
//! only; still, `save ""` and `appendonly no` keep even that off disk, which
//! is what the deployment guide recommends.
#![forbid(unsafe_code)]

use strongroom_cards::CardError;

/// Sealed CVVs in Redis.
#[derive(Clone)]
pub struct RedisCvvStore {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCvvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisCvvStore({})", self.prefix)
    }
}

fn unavailable(e: redis::RedisError) -> CardError {
    CardError::SharedStore(e.to_string())
}

impl RedisCvvStore {
    /// Connects to `url` (`redis://` or `rediss://`) for the vault
    /// `vault_id`. Fails if Redis cannot be reached now, so a server
    /// configured for it does not start without it.
    pub async fn connect(url: &str, vault_id: &str) -> Result<Self, CardError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let settings = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(2)))
            .set_number_of_retries(2);
        let connection = redis::aio::ConnectionManager::new_with_config(client, settings)
            .await
            .map_err(unavailable)?;
        let store = Self {
            connection,
            prefix: format!("strongroom:{vault_id}:cvv:"),
        };
        // A Redis without GETDEL would accept CVVs and fail every relay.
        let mut c = store.connection.clone();
        redis::cmd("GETDEL")
            .arg(store.key("probe"))
            .query_async::<Option<Vec<u8>>>(&mut c)
            .await
            .map_err(|e| {
                if e.to_string()
                    .to_ascii_lowercase()
                    .contains("unknown command")
                {
                    CardError::SharedStore(format!(
                        "this Redis cannot hold CVVs (6.2 or later is needed for GETDEL): {e}"
                    ))
                } else {
                    unavailable(e)
                }
            })?;
        Ok(store)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

#[async_trait::async_trait]
impl strongroom_cards::SharedCvvStore for RedisCvvStore {
    async fn put(&self, name: &str, sealed: &[u8], ttl_ms: u64) -> Result<(), CardError> {
        let mut c = self.connection.clone();
        let stored: Option<String> = redis::cmd("SET")
            .arg(self.key(name))
            .arg(sealed)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        match stored {
            Some(_) => Ok(()),
            None => Err(CardError::SharedStore(
                "a CVV is already kept under that name".into(),
            )),
        }
    }

    async fn take(&self, name: &str) -> Result<Option<Vec<u8>>, CardError> {
        let mut c = self.connection.clone();
        redis::cmd("GETDEL")
            .arg(self.key(name))
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }
}
