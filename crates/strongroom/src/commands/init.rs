//! `strongroom init`: a new data directory and root key split into shares.

use anyhow::{Context, Result, bail};
use std::sync::Arc;
use strongroom_vault::{RequestContext, SealMethod, SystemClock, Vault, VaultConfig, initialize};

use crate::bootstrap::create_principal;
use crate::cli::InitArgs;
use crate::config::ServerConfig;
use crate::datadir::DataDir;
use crate::storage::Backend;

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
    let admin = create_principal(&vault, &args.admin_name, &["admin"], &["*"], "init").await?;
    let officer = create_principal(
        &vault,
        &args.officer_name,
        &["security_officer"],
        &["*"],
        "init",
    )
    .await?;
    vault
        .seal(
            &strongroom_vault::Principal {
                id: "cli-init".into(),
                name: "init".into(),
                roles: vec![strongroom_vault::Role::Admin],
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
        "\nFirst administrator '{}' (manages principals; cannot reveal secrets).",
        args.admin_name
    );
    println!("Its secret is shown only now:\n");
    println!("  client_id:     {}", admin.record.client_id);
    println!("  client_secret: {}", admin.client_secret.as_str());
    println!(
        "
First security officer '{}' (approves principals that can reveal, reactivates, rotates keys).",
        args.officer_name
    );
    println!(
        "Give it to a different person from the administrator. Its secret is shown only now:
"
    );
    println!("  client_id:     {}", officer.record.client_id);
    println!("  client_secret: {}", officer.client_secret.as_str());
    println!(
        "\nNext: `strongroom serve --config FILE`, then `strongroom operator unseal` with {} shares.",
        args.threshold
    );
    Ok(())
}
