//! The one list of capabilities: every instance wedge makes, for every trigger and for
//! `wedge run`, is assembled from this list and nothing else.
//!
//! Each entry names a capability (a type implementing [`Capability`], in
//! `wedge-capabilities` or its own crate) and the functions that link its interfaces into a
//! component linker and a core-module linker. From the list the macro makes:
//! - [`GrantConfig`]: each capability's part of a function's configuration (its grant key);
//! - [`Services`]: what the node offers each capability (backends, chosen by the runtime
//!   config; the default offers WASI alone, as `wedge run` does);
//! - `Grants`: a function's grants, prepared once when it is loaded;
//! - [`ComponentState`] / [`ModuleState`]: the data of one instance's store, one field per
//!   capability plus the shared resource table and the memory limiter;
//! - linking (only what the node offers) and the list of import packages the linked
//!   capabilities provide, for the message about an import nothing provides.
//!
//! A capability whose interfaces come from a wasmtime crate that links through a view trait
//! on the store's data (WASI, `wasi:http`) also gets its view impl below the list; the
//! others link with their own view traits, implemented the same way.
//! docs/architecture.md has the recipe ("Adding a capability").

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};
use wedge_capabilities::http_outbound::OutboundHttp;
use wedge_capabilities::key_value::{self, KeyValue, KeyValueCtxView, KeyValueView};
use wedge_capabilities::queue::{self, Queue, QueueCtxView, QueueView};
use wedge_capabilities::sql::{self, Sql, SqlCtxView, SqlView};
use wedge_capabilities::wasi::Wasi;
use wedge_capabilities::{Capability, FunctionIdentity, GrantError, InstanceError, InstanceInfo};
use wedge_engine::limits::GuestLimiter;

type ComponentLinker = wasmtime::component::Linker<ComponentState>;
type ModuleLinker = wasmtime::Linker<ModuleState>;

/// For a capability without interfaces for one of the two program kinds.
fn nothing_to_link<L>(_: &mut L) -> wasmtime::Result<()> {
    Ok(())
}

macro_rules! capability_list {
    ($(
        $(#[$doc:meta])*
        $field:ident: $capability:ty,
            component: $link_component:expr,
            module: $link_module:expr;
    )*) => {
        /// Every capability's part of a function's configuration: its grant keys, validated
        /// (wedge-control fills it from the manifest or a deploy).
        #[derive(Debug, Clone, Default)]
        pub struct GrantConfig {
            $( $(#[$doc])* pub $field: <$capability as Capability>::Config, )*
        }

        /// What the node offers each capability. `Services::default()` offers WASI alone.
        #[derive(Clone, Default)]
        pub struct Services {
            $( pub $field: <$capability as Capability>::Services, )*
        }

        /// One function's grants, prepared once when it is loaded.
        pub(crate) struct Grants {
            $( $field: <$capability as Capability>::Grant, )*
        }

        /// The data of one component instance's store.
        pub struct ComponentState {
            table: ResourceTable,
            pub(crate) limiter: GuestLimiter,
            $( $field: <$capability as Capability>::ComponentState, )*
        }

        /// The data of one core-module instance's store.
        // Capabilities without core-module interfaces hold `()` here, never read.
        #[allow(dead_code)]
        pub struct ModuleState {
            pub(crate) limiter: GuestLimiter,
            $( $field: <$capability as Capability>::ModuleState, )*
        }

        impl Grants {
            pub(crate) fn prepare(
                config: &GrantConfig,
                services: &Services,
                function: FunctionIdentity<'_>,
            ) -> Result<Self, GrantError> {
                Ok(Self {
                    $( $field: <$capability as Capability>::prepare(
                        &config.$field, &services.$field, function)?, )*
                })
            }

            pub(crate) fn component_state(
                &self,
                instance: &InstanceInfo<'_>,
                limiter: GuestLimiter,
            ) -> Result<ComponentState, InstanceError> {
                Ok(ComponentState {
                    table: ResourceTable::new(),
                    limiter,
                    $( $field: <$capability as Capability>::component_state(
                        &self.$field, instance)?, )*
                })
            }

            pub(crate) fn module_state(
                &self,
                instance: &InstanceInfo<'_>,
                limiter: GuestLimiter,
            ) -> Result<ModuleState, InstanceError> {
                Ok(ModuleState {
                    limiter,
                    $( $field: <$capability as Capability>::module_state(
                        &self.$field, instance)?, )*
                })
            }
        }

        /// Links every capability the node offers into a component linker.
        pub(crate) fn link_component(
            linker: &mut ComponentLinker,
            services: &Services,
        ) -> wasmtime::Result<()> {
            $(
                if <$capability as Capability>::offered(&services.$field) {
                    let link: fn(&mut ComponentLinker) -> wasmtime::Result<()> = $link_component;
                    link(linker)?;
                }
            )*
            Ok(())
        }

        /// Links every capability the node offers into a core-module linker.
        pub(crate) fn link_module(
            linker: &mut ModuleLinker,
            services: &Services,
        ) -> wasmtime::Result<()> {
            $(
                if <$capability as Capability>::offered(&services.$field) {
                    let link: fn(&mut ModuleLinker) -> wasmtime::Result<()> = $link_module;
                    link(linker)?;
                }
            )*
            Ok(())
        }

        /// Whether a capability the node offers provides this core-module import module.
        pub(crate) fn provides_module_import(module: &str, services: &Services) -> bool {
            false $( || (<$capability as Capability>::offered(&services.$field)
                && <$capability as Capability>::MODULE_IMPORTS.contains(&module)) )*
        }

        /// Whether a capability the node offers provides this component import.
        pub(crate) fn provides_component_import(name: &str, services: &Services) -> bool {
            false $( || (<$capability as Capability>::offered(&services.$field)
                && <$capability as Capability>::COMPONENT_IMPORTS
                    .iter()
                    .any(|package| name.starts_with(package))) )*
        }
    };
}

capability_list! {
    /// `env` and `files` (WASI 0.2 and 0.3 for components, preview 1 for core modules).
    wasi: Wasi,
        component: |linker| {
            wasmtime_wasi::p2::add_to_linker_async(linker)?;
            wasmtime_wasi::p3::add_to_linker(linker)
        },
        module: |linker| wasmtime_wasi::p1::add_to_linker_async(linker, |state| &mut state.wasi);
    /// `allowed_outbound_hosts` (`wasi:http/outgoing-handler` 0.2, `wasi:http/client` 0.3).
    http: OutboundHttp,
        component: |linker| {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
            wasmtime_wasi_http::p3::add_to_linker(linker)
        },
        module: nothing_to_link;
    /// `key_value_stores` (`wasi:keyvalue`).
    key_value: KeyValue,
        component: key_value::add_to_linker,
        module: nothing_to_link;
    /// `sql_databases` (`wedge:sql`).
    sql: Sql,
        component: sql::add_to_linker,
        module: nothing_to_link;
    /// `queues` (`wedge:queue/producer`).
    queue: Queue,
        component: queue::add_to_linker,
        module: nothing_to_link;
}

// Views: how each capability's host functions reach their slice of the state.

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.hooks,
        }
    }
}

impl KeyValueView for ComponentState {
    fn key_value(&mut self) -> KeyValueCtxView<'_> {
        KeyValueCtxView {
            ctx: &mut self.key_value,
            table: &mut self.table,
        }
    }
}

impl SqlView for ComponentState {
    fn sql(&mut self) -> SqlCtxView<'_> {
        SqlCtxView {
            ctx: &mut self.sql,
            table: &mut self.table,
        }
    }
}

impl QueueView for ComponentState {
    fn queue(&mut self) -> QueueCtxView<'_> {
        QueueCtxView {
            ctx: &mut self.queue,
        }
    }
}
