//! The host side of `wasi:keyvalue`: the per-request context, the WIT host functions that
//! enforce grants, scopes, limits and deadlines on every call, and the capability the host's
//! list names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::{
    BucketId, DEADLINE_MARGIN, KeyValueBackend, KeyValueError, KeyValueGrant, KeyValueLimits,
    KeyValueStores, KvFuture,
};
use crate::capability::{Capability, FunctionIdentity, GrantError, InstanceError, InstanceInfo};
use crate::names::StateName;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/wasi-keyvalue-0.2.0-draft",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::key_value::host::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => crate::key_value::KeyValueError,
        },
    });
}

pub(crate) use bindings::wasi::keyvalue::{atomics, batch, store};

impl KeyValueError {
    /// The error the guest sees, or `Err` for a trap.
    pub(crate) fn into_wit(self) -> wasmtime::Result<store::Error> {
        match self {
            Self::AccessDenied { .. } => Ok(store::Error::AccessDenied),
            Self::Resource(err) => Err(err.into()),
            other => Ok(store::Error::Other(other.to_string())),
        }
    }
}

/// Per-request state (one per wasmtime `Store`).
pub struct KeyValueCtx {
    /// `None` where the node offers no key-value (then nothing is granted either).
    stores: Option<Arc<KeyValueStores>>,
    grant: Arc<KeyValueGrant>,
    deadline: Instant,
}

impl KeyValueCtx {
    /// `deadline` is the request's: no call runs past it (less [`DEADLINE_MARGIN`]).
    pub fn new(stores: Arc<KeyValueStores>, grant: Arc<KeyValueGrant>, deadline: Instant) -> Self {
        Self {
            stores: Some(stores),
            grant,
            deadline,
        }
    }

    /// How long the next call on a store with `limits` may take.
    fn budget(&self, limits: &KeyValueLimits) -> Duration {
        let left = self
            .deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(DEADLINE_MARGIN);
        limits.timeout.min(left)
    }
}

/// An open bucket: the guest's `wasi:keyvalue/store.bucket` resource.
#[derive(Clone)]
pub struct Bucket {
    id: BucketId,
    backend: Arc<dyn KeyValueBackend>,
    limits: KeyValueLimits,
}

/// The key-value slice of a request's state, with the resource table it shares.
pub struct KeyValueCtxView<'a> {
    pub ctx: &'a mut KeyValueCtx,
    pub table: &'a mut ResourceTable,
}

/// Implemented by the gateway's per-request state.
pub trait KeyValueView: Send {
    fn key_value(&mut self) -> KeyValueCtxView<'_>;
}

/// Adds `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft` to `linker` (async host functions:
/// instantiate with async support).
pub fn add_to_linker<T: KeyValueView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, T::key_value)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, T::key_value)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, T::key_value)?;
    Ok(())
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueCtxView<'a>;
}

impl KeyValueCtxView<'_> {
    /// The bucket behind a guest's handle, ready to be used without borrowing the table.
    fn bucket(&self, handle: &Resource<Bucket>) -> Result<Bucket, KeyValueError> {
        Ok(self.table.get(handle)?.clone())
    }
}

/// Runs one backend call within `budget`; logs a backend failure once.
async fn call<T>(
    budget: Duration,
    bucket: &Bucket,
    op: &'static str,
    backend_call: KvFuture<'_, T>,
) -> Result<T, KeyValueError> {
    let result = if budget.is_zero() {
        Err(bucket
            .id
            .unavailable("the request's deadline leaves no time for the call"))
    } else {
        match tokio::time::timeout(budget, backend_call).await {
            Ok(result) => result,
            Err(_) => Err(bucket
                .id
                .unavailable(format_args!("no answer within {} ms", budget.as_millis()))),
        }
    };
    if let Err(err) = &result
        && err.is_unavailable()
    {
        tracing::warn!(
            scope = bucket.id.scope(),
            store = bucket.id.store(),
            op,
            error = %err,
            "key-value backend failed"
        );
    }
    result
}

fn check_key(limits: &KeyValueLimits, key: &str) -> Result<(), KeyValueError> {
    if key.is_empty() {
        return Err(KeyValueError::EmptyKey);
    }
    if key.len() > limits.max_key_size {
        return Err(KeyValueError::KeyTooLong {
            len: key.len(),
            max: limits.max_key_size,
        });
    }
    Ok(())
}

fn check_value(limits: &KeyValueLimits, value: &[u8]) -> Result<(), KeyValueError> {
    if value.len() > limits.max_value_size {
        return Err(KeyValueError::ValueTooLarge {
            len: value.len(),
            max: limits.max_value_size,
        });
    }
    Ok(())
}

impl store::Host for KeyValueCtxView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KeyValueError> {
        let Some(store) = self
            .ctx
            .grant
            .stores
            .iter()
            .find(|store| store.as_str() == identifier)
        else {
            return Err(KeyValueError::AccessDenied { store: identifier });
        };
        let Some(stores) = &self.ctx.stores else {
            return Err(KeyValueError::AccessDenied { store: identifier });
        };
        let id = BucketId::of(&self.ctx.grant.scope, store);
        let serving = stores.serving(&identifier).clone();
        let bucket = Bucket {
            id,
            backend: serving.backend,
            limits: serving.limits,
        };
        call(
            self.ctx.budget(&bucket.limits),
            &bucket,
            "open",
            bucket.backend.open(&bucket.id),
        )
        .await?;
        Ok(self.table.push(bucket)?)
    }

    fn convert_error(&mut self, err: KeyValueError) -> wasmtime::Result<store::Error> {
        err.into_wit()
    }
}

impl store::HostBucket for KeyValueCtxView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KeyValueError> {
        let b = self.bucket(&bucket)?;
        check_key(&b.limits, &key)?;
        call(
            self.ctx.budget(&b.limits),
            &b,
            "get",
            b.backend.get(&b.id, key),
        )
        .await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KeyValueError> {
        let b = self.bucket(&bucket)?;
        check_key(&b.limits, &key)?;
        check_value(&b.limits, &value)?;
        let max_keys = b.limits.max_keys;
        call(
            self.ctx.budget(&b.limits),
            &b,
            "set",
            b.backend.set(&b.id, key, value, max_keys),
        )
        .await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KeyValueError> {
        let b = self.bucket(&bucket)?;
        check_key(&b.limits, &key)?;
        call(
            self.ctx.budget(&b.limits),
            &b,
            "delete",
            b.backend.delete(&b.id, key),
        )
        .await
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<bool, KeyValueError> {
        let b = self.bucket(&bucket)?;
        check_key(&b.limits, &key)?;
        call(
            self.ctx.budget(&b.limits),
            &b,
            "exists",
            b.backend.exists(&b.id, key),
        )
        .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, KeyValueError> {
        let b = self.bucket(&bucket)?;
        let page = call(
            self.ctx.budget(&b.limits),
            &b,
            "list-keys",
            b.backend.list_keys(&b.id, cursor),
        )
        .await?;
        Ok(store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueCtxView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KeyValueError> {
        let b = self.bucket(&bucket)?;
        check_key(&b.limits, &key)?;
        let max_keys = b.limits.max_keys;
        call(
            self.ctx.budget(&b.limits),
            &b,
            "increment",
            b.backend.increment(&b.id, key, delta, max_keys),
        )
        .await
    }
}

impl batch::Host for KeyValueCtxView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KeyValueError> {
        let b = self.bucket(&bucket)?;
        for key in &keys {
            check_key(&b.limits, key)?;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values = call(
            self.ctx.budget(&b.limits),
            &b,
            "get-many",
            b.backend.get_many(&b.id, keys.clone()),
        )
        .await?;
        if values.len() != keys.len() {
            return Err(b.id.unavailable(format_args!(
                "the backend answered {} values for {} keys",
                values.len(),
                keys.len()
            )));
        }
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| value.map(|value| (key, value)))
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KeyValueError> {
        let b = self.bucket(&bucket)?;
        for (key, value) in &key_values {
            check_key(&b.limits, key)?;
            check_value(&b.limits, value)?;
        }
        if key_values.is_empty() {
            return Ok(());
        }
        let max_keys = b.limits.max_keys;
        call(
            self.ctx.budget(&b.limits),
            &b,
            "set-many",
            b.backend.set_many(&b.id, key_values, max_keys),
        )
        .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), KeyValueError> {
        let b = self.bucket(&bucket)?;
        for key in &keys {
            check_key(&b.limits, key)?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        call(
            self.ctx.budget(&b.limits),
            &b,
            "delete-many",
            b.backend.delete_many(&b.id, keys),
        )
        .await
    }
}

/// Key-value as a capability: the grant key `key_value_stores`, served by the node's
/// [`KeyValueStores`] (chosen per store by the runtime config).
pub struct KeyValue;

/// What a function is given: its stores, in its scope, and the node's backends.
pub struct KeyValueFunctionGrant {
    stores: Option<Arc<KeyValueStores>>,
    grant: Arc<KeyValueGrant>,
}

impl Capability for KeyValue {
    type Config = Vec<StateName>;
    type Services = Option<Arc<KeyValueStores>>;
    type Grant = KeyValueFunctionGrant;
    type ComponentState = KeyValueCtx;
    type ModuleState = ();

    const COMPONENT_IMPORTS: &'static [&'static str] = &["wasi:keyvalue/"];
    const MODULE_IMPORTS: &'static [&'static str] = &[];

    fn offered(services: &Self::Services) -> bool {
        services.is_some()
    }

    fn prepare(
        stores: &Vec<StateName>,
        services: &Self::Services,
        function: FunctionIdentity<'_>,
    ) -> Result<KeyValueFunctionGrant, GrantError> {
        crate::capability::check_state_grant(
            !stores.is_empty(),
            services.is_some(),
            function,
            "key_value_stores",
            "key-value",
        )?;
        Ok(KeyValueFunctionGrant {
            stores: services.clone(),
            grant: Arc::new(KeyValueGrant {
                scope: function.scope.clone(),
                stores: stores.clone(),
            }),
        })
    }

    fn component_state(
        grant: &KeyValueFunctionGrant,
        instance: &InstanceInfo<'_>,
    ) -> Result<KeyValueCtx, InstanceError> {
        Ok(KeyValueCtx {
            stores: grant.stores.clone(),
            grant: grant.grant.clone(),
            deadline: instance.deadline,
        })
    }

    fn module_state(_: &KeyValueFunctionGrant, _: &InstanceInfo<'_>) -> Result<(), InstanceError> {
        Ok(())
    }
}
