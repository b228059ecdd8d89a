//! Creating principals from the command line, without an API call: the first
//! administrator at `init`, and the dev principals of `serve --dev`.

use anyhow::{Context, Result};
use strongroom_api::identity::{NewCredentials, new_principal, principal_of};
use strongroom_audit::Outcome;
use strongroom_vault::{RequestContext, Vault};

/// Creates a principal directly in the stores of an unsealed vault; the
/// creation is audited like one made through the API.
pub async fn create_principal(
    vault: &Vault,
    name: &str,
    roles: &[&str],
    tenants: &[&str],
    why: &str,
) -> Result<NewCredentials> {
    let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
    let tenants: Vec<String> = tenants.iter().map(|s| s.to_string()).collect();
    // Built-in roles only here (dev mode and tests).
    let catalog = strongroom_api::roles::RoleCatalog::default();
    let created = new_principal(
        &catalog,
        name,
        strongroom_api::identity::KIND_SERVICE,
        &roles,
        &tenants,
        vault.clock().now_ms(),
        "",
    )
    .await
    .context("could not create the principal")?;
    let ctx = RequestContext {
        request_id: format!("cli-{why}"),
        client_addr: None,
    };
    let subject = principal_of(&created.record, &catalog);
    let event = vault.event(
        &ctx,
        None,
        "principal.create",
        None,
        Some(&subject.id),
        Outcome::Allowed,
        Some(format!(
            "{why}: name={} roles={}",
            subject.name,
            roles.join(",")
        )),
    );
    vault
        .record(event)
        .await
        .context("could not audit the principal's creation")?;
    vault
        .stores()
        .central
        .insert_principal(created.record.clone())
        .await
        .with_context(|| format!("could not store principal '{name}'"))?;
    Ok(created)
}
