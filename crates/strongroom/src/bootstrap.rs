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
    // Built-in roles only here (dev mode and tests).
    let catalog = strongroom_api::roles::RoleCatalog::default();
    create_principal_in(vault, &catalog, name, roles, tenants, why).await
}

/// [`create_principal`] with the roles of `catalog` (built-in and custom).
pub async fn create_principal_in(
    vault: &Vault,
    catalog: &strongroom_api::roles::RoleCatalog,
    name: &str,
    roles: &[&str],
    tenants: &[&str],
    why: &str,
) -> Result<NewCredentials> {
    let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
    let tenants: Vec<String> = tenants.iter().map(|s| s.to_string()).collect();
    let created = new_principal(
        catalog,
        name,
        strongroom_api::identity::KIND_SERVICE,
        &roles,
        &tenants,
        vault.clock().now_ms(),
        "",
    )
    .await
    .context("could not create the principal")?
    .sealed(vault)
    .context("could not seal the principal's row")?;
    let ctx = RequestContext {
        request_id: format!("cli-{why}"),
        client_addr: None,
    };
    let subject = principal_of(&created.record, catalog);
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

/// Defines a custom role with `permissions` in force at once, without the
/// second person a role holding dual-controlled permissions needs through
/// the API. For development vaults only (`serve --dev`), whose one developer
/// holds every credential anyway; audited as such.
pub async fn define_dev_role(vault: &Vault, name: &str, permissions: &[&str]) -> Result<()> {
    if vault.seal_status().await?.seal_method != "dev-key-file" {
        anyhow::bail!("roles without a second person are for development vaults only");
    }
    let central = &vault.stores().central;
    if central
        .list_custom_roles()
        .await?
        .iter()
        .any(|r| r.name == name)
    {
        return Ok(());
    }
    let now = vault.clock().now_ms();
    let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
    let ctx = RequestContext {
        request_id: "cli-dev-bootstrap".into(),
        client_addr: None,
    };
    let event = vault.event(
        &ctx,
        None,
        "role.define",
        None,
        Some(name),
        Outcome::Allowed,
        Some(format!(
            "dev bootstrap: permissions={} in force without a second person (development vault)",
            permissions.join(",")
        )),
    );
    vault
        .record(event)
        .await
        .context("could not audit the role's definition")?;
    let role = vault.sealed(strongroom_store::CustomRoleRecord {
        name: name.to_owned(),
        permissions,
        pending: None,
        requested_by: "dev bootstrap".into(),
        created_by: "dev bootstrap".into(),
        created_at: now,
        updated_at: now,
        version: 1,
        seal: Vec::new(),
    })?;
    central
        .insert_custom_role(role)
        .await
        .with_context(|| format!("could not store role '{name}'"))?;
    Ok(())
}
