//! What every capability gives the host that assembles instances (wedge-host's
//! `capabilities.rs`, the one list of them).
//!
//! A capability has four moments, the same for all of them:
//! - **configured** per function: its grant key, validated ([`Capability::Config`]);
//! - **offered** per node: the services it draws on, built once from the runtime config
//!   ([`Capability::Services`]; `Default` means "not offered here", as under `wedge run`,
//!   which offers WASI alone);
//! - **prepared** per function, once, when the function is loaded ([`Capability::prepare`]):
//!   the grant checked against the services and the program's kind;
//! - **instantiated** per instance ([`Capability::component_state`] /
//!   [`Capability::module_state`]): the slice of the store's data that this instance sees.
//!
//! Linking is the capability's own `add_to_linker` function, named beside it in the host's
//! list (wasmtime's WASI and `wasi:http` crates link through view traits implemented on the
//! store's data type, so a generic link step cannot be part of this trait).

use std::sync::Arc;
use std::time::Instant;

use wedge_engine::ProgramKind;

use crate::names::Scope;
use crate::wasi::GuestIo;

/// The function a grant is prepared for.
#[derive(Debug, Clone, Copy)]
pub struct FunctionIdentity<'a> {
    pub name: &'a str,
    /// Whose state it reaches (`app`, or `fn-NAME` for a deployed function).
    pub scope: &'a Scope,
    pub kind: ProgramKind,
}

/// What one instance is made for: every capability may use it to build its slice of the
/// store's data.
pub struct InstanceInfo<'a> {
    pub function: &'a Arc<str>,
    /// The id of the request or delivery this instance serves (in log lines).
    pub request_id: &'a Arc<str>,
    /// No host call of this instance may run past it.
    pub deadline: Instant,
    /// argv, per-call environment, standard streams.
    pub io: &'a GuestIo,
}

/// A grant that cannot be given: the function is refused when it is loaded.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(
        "`{key}` is granted, but a `wagi` function (a core module) cannot import {what}; build it as an `http` component (docs/languages.md), or remove `{key}`"
    )]
    NeedsComponent {
        key: &'static str,
        what: &'static str,
    },
    #[error("`{key}` is granted, but this host does not offer {what}")]
    NotOffered {
        key: &'static str,
        what: &'static str,
    },
}

impl GrantError {
    /// The configuration key the refusal is about.
    pub fn key(&self) -> &'static str {
        match self {
            GrantError::NeedsComponent { key, .. } | GrantError::NotOffered { key, .. } => key,
        }
    }
}

/// A per-instance state that could not be built (a granted directory that is gone, say).
#[derive(Debug, thiserror::Error)]
#[error("function `{function}`: {reason}")]
pub struct InstanceError {
    pub function: String,
    pub reason: String,
}

/// One capability, as the host sees it.
pub trait Capability: 'static {
    /// Its part of a function's configuration (its grant key), validated.
    type Config: Clone + Default + std::fmt::Debug + Send + Sync + 'static;
    /// What the node offers it: backends, pools. `Default` is "not offered".
    type Services: Clone + Default + Send + Sync + 'static;
    /// What one function is given, prepared once when it is loaded.
    type Grant: Send + Sync + 'static;
    /// Its slice of a component instance's data.
    type ComponentState: Send + 'static;
    /// Its slice of a core-module instance's data (`()` where it has none).
    type ModuleState: Send + 'static;

    /// Component import packages it provides (`wasi:keyvalue/`), so that an import no
    /// capability provides can be named at load time.
    const COMPONENT_IMPORTS: &'static [&'static str];
    /// Core-module import modules it provides (`wasi_snapshot_preview1`).
    const MODULE_IMPORTS: &'static [&'static str];

    /// Whether the node offers it (only offered capabilities are linked).
    fn offered(services: &Self::Services) -> bool;

    fn prepare(
        config: &Self::Config,
        services: &Self::Services,
        function: FunctionIdentity<'_>,
    ) -> Result<Self::Grant, GrantError>;

    fn component_state(
        grant: &Self::Grant,
        instance: &InstanceInfo<'_>,
    ) -> Result<Self::ComponentState, InstanceError>;

    fn module_state(
        grant: &Self::Grant,
        instance: &InstanceInfo<'_>,
    ) -> Result<Self::ModuleState, InstanceError>;
}

/// The checks every state capability makes of a grant: a core module cannot use it, and the
/// node must offer it. `granted`: the function's grant key is not empty.
pub fn check_state_grant(
    granted: bool,
    offered: bool,
    function: FunctionIdentity<'_>,
    key: &'static str,
    what: &'static str,
) -> Result<(), GrantError> {
    if !granted {
        return Ok(());
    }
    if function.kind == ProgramKind::Module {
        return Err(GrantError::NeedsComponent { key, what });
    }
    if !offered {
        return Err(GrantError::NotOffered { key, what });
    }
    Ok(())
}
