//! `strongroom init`: a new data directory and root key split into shares.

use anyhow::{Context, Result, bail};
use std::sync::Arc;
use strongroom_vault::{RequestContext, SealMethod, SystemClock, Vault, VaultConfig, initialize};

use crate::cli::InitArgs;
use crate::config::ServerConfig;
use crate::datadir::DataDir;
use crate::storage::Backend;
use strongroom_api::routes::bootstrap::{BOOTSTRAP_META, new_bootstrap_token};

/// Runs `init`.
pub async fn run(args: InitArgs) -> Result<()> {
    let (dir, backend) = match (&args.config, &args.data_dir) {
        (Some(path), _) => {
            let config = ServerConfig::load(path)?;
            (DataDir::new(&config.data_dir), config.storage.backend()?)
        }
        (None, Some(dir)) => (DataDir::new(dir), Backend::Sqlite),
        (None, None) => bail!("give --data-dir DIR or --config FILE"),
    };
    let embedded = matches!(backend, Backend::Sqlite);
    if embedded && dir.root.exists() && std::fs::read_dir(&dir.root)?.next().is_some() {
        bail!(
            "{} is not empty; refusing to initialise over it. Choose a new directory.",
            dir.root.display()
        );
    }
    if args.threshold < 2 || args.threshold > args.shares {
        bail!(
            "--threshold must be at least 2 and at most --shares ({}); got {}",
            args.shares,
            args.threshold
        );
    }
    dir.create()?;
    let stores = crate::storage::open(&backend, &dir)
        .await
        .context("could not open the stores")?;
    let vault = Vault::new(
        stores.set.clone(),
        Arc::new(SystemClock),
        VaultConfig::default(),
    );
    let init = initialize(
        vault.stores(),
        SealMethod::Shamir {
            threshold: args.threshold,
            shares: args.shares,
        },
    )
    .await?;
    let ctx = RequestContext {
        request_id: "cli-init".into(),
        client_addr: None,
    };
    vault.unseal_with_root(&init.root_key, &ctx).await?;
    drop(init.root_key);
    // No account exists yet: the first people are made with this token.
    let (bootstrap_token, bootstrap_hash) = new_bootstrap_token().await?;
    vault
        .stores()
        .vault
        .put_meta(BOOTSTRAP_META, bootstrap_hash)
        .await
        .context("could not store the bootstrap token's hash")?;
    vault
        .seal(
            &strongroom_vault::Principal {
                id: "cli-init".into(),
                name: "init".into(),
                roles: vec!["admin".into()],
                permissions: strongroom_vault::Role::Admin.permissions(),
                tenants: vec!["*".into()],
                human: false,
                mfa_recent: false,
            },
            &ctx,
        )
        .await?;

    let place = match &backend {
        Backend::Sqlite => dir.root.display().to_string(),
        Backend::Postgres(pg) => format!("the PostgreSQL stores (prefix {})", pg.prefix),
    };
    println!(
        "Strongroom vault {} initialised in {place}.\n",
        init.vault_id
    );
    println!(
        "Key shares: {} of {} are needed to unseal. Give each to a different custodian.",
        args.threshold, args.shares
    );
    println!("They are shown only now and stored nowhere:\n");
    for (i, share) in init.shares.iter().enumerate() {
        println!("  Share {}: {}", i + 1, share.as_str());
    }
    println!(
        "\nBootstrap token (works once; creates the first administrator and security officer):\n"
    );
    println!("  {}", bootstrap_token.as_str());
    println!(
        "\nNext: `strongroom serve --config FILE`, `strongroom operator unseal` with {} shares,\n\
         then `strongroom operator bootstrap --admin NAME --security-officer NAME` with the token\n\
         (from STRONGROOM_BOOTSTRAP_TOKEN, or typed at the prompt).",
        args.threshold
    );
    Ok(())
}
