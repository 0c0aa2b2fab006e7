//! The runner of `wedge run`: a WASI command (a core module's `_start` or `--invoke`d
//! export, a component's `wasi:cli/run`) on the same list of capabilities as every function,
//! with the node offering WASI alone: argv, environment, directories and the host's own
//! standard streams; no network, no state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wedge_capabilities::names::Scope;
use wedge_capabilities::wasi::{GuestIo, WasiConfig};
use wedge_capabilities::{FunctionIdentity, GrantError, InstanceError, InstanceInfo};
use wedge_engine::ProgramKind;
use wedge_engine::limits::{GuestLimiter, Limits};

use crate::capabilities::{self, ComponentState, GrantConfig, Grants, ModuleState, Services};
use crate::function::limited_store;

/// A command's grants, prepared once.
pub struct Command {
    name: Arc<str>,
    grants: Grants,
    services: Services,
}

impl Command {
    /// `name` names the program in messages (its path).
    pub fn new(name: &str, kind: ProgramKind, wasi: WasiConfig) -> Result<Self, GrantError> {
        let services = Services::default();
        let config = GrantConfig {
            wasi,
            ..GrantConfig::default()
        };
        let scope = Scope::new("command").map_err(|_| GrantError::NotOffered {
            key: "scope",
            what: "state",
        })?;
        let grants = Grants::prepare(
            &config,
            &services,
            FunctionIdentity {
                name,
                scope: &scope,
                kind,
            },
        )?;
        Ok(Self {
            name: Arc::from(name),
            grants,
            services,
        })
    }

    pub fn module_linker(
        &self,
        engine: &wasmtime::Engine,
    ) -> wasmtime::Result<wasmtime::Linker<ModuleState>> {
        let mut linker = wasmtime::Linker::new(engine);
        capabilities::link_module(&mut linker, &self.services)?;
        Ok(linker)
    }

    pub fn component_linker(
        &self,
        engine: &wasmtime::Engine,
    ) -> wasmtime::Result<wasmtime::component::Linker<ComponentState>> {
        let mut linker = wasmtime::component::Linker::new(engine);
        capabilities::link_component(&mut linker, &self.services)?;
        Ok(linker)
    }

    /// Whether the capabilities linked for commands provide this component import.
    pub fn provides_component_import(&self, name: &str) -> bool {
        capabilities::provides_component_import(name, &self.services)
    }

    fn info<'a>(&'a self, io: &'a GuestIo) -> InstanceInfo<'a> {
        InstanceInfo {
            function: &self.name,
            request_id: &self.name,
            // A command's time limit ends the process (`wedge run --timeout`); no host call
            // of it has a deadline of its own.
            deadline: Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
            io,
        }
    }

    pub fn module_store(
        &self,
        engine: &wasmtime::Engine,
        io: &GuestIo,
        limits: &Limits,
    ) -> Result<Store<ModuleState>, InstanceError> {
        let state = self
            .grants
            .module_state(&self.info(io), GuestLimiter::new(limits))?;
        Ok(limited_store(engine, state, None))
    }

    pub fn component_store(
        &self,
        engine: &wasmtime::Engine,
        io: &GuestIo,
        limits: &Limits,
    ) -> Result<Store<ComponentState>, InstanceError> {
        let state = self
            .grants
            .component_state(&self.info(io), GuestLimiter::new(limits))?;
        Ok(limited_store(engine, state, None))
    }
}

impl ModuleState {
    /// The instance's memory limiter (what it refused).
    pub fn limiter(&self) -> &GuestLimiter {
        &self.limiter
    }
}

impl ComponentState {
    /// The instance's memory limiter (what it refused).
    pub fn limiter(&self) -> &GuestLimiter {
        &self.limiter
    }
}
