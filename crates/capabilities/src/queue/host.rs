//! The producer side for guests: `wedge:queue/producer`, granted by `queues = [...]`, and the
//! capability the host's list names.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker};

use super::{NewMessage, QueueError, QueueId, Queues};
use crate::capability::{Capability, FunctionIdentity, GrantError, InstanceError, InstanceInfo};
use crate::names::{Scope, StateName};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/wedge-queue-0.1.0",
        world: "wedge:queue/imports",
        imports: { default: async },
    });
}

use bindings::wedge::queue::producer;

/// How much of a call's remaining time a send leaves unused, so the guest can still answer.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(50);

/// One instance's producer state: what it may send to, in its scope.
pub struct QueueCtx {
    queues: Option<Arc<Queues>>,
    scope: Scope,
    granted: Arc<Vec<StateName>>,
    deadline: Instant,
}

/// The producer slice of an instance's state.
pub struct QueueCtxView<'a> {
    pub ctx: &'a mut QueueCtx,
}

/// Implemented by the host's per-instance state.
pub trait QueueView: Send {
    fn queue(&mut self) -> QueueCtxView<'_>;
}

struct HasQueue;

impl HasData for HasQueue {
    type Data<'a> = QueueCtxView<'a>;
}

/// Adds `wedge:queue/producer@0.1.0` (async host functions).
pub fn add_to_linker<T: QueueView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    producer::add_to_linker::<T, HasQueue>(linker, T::queue)
}

fn to_wit(error: QueueError) -> producer::Error {
    match error {
        QueueError::AccessDenied(_) => producer::Error::AccessDenied,
        QueueError::TooLarge { .. } => producer::Error::TooLarge(error.to_string()),
        QueueError::Unavailable { .. } | QueueError::Full { .. } => {
            producer::Error::Unavailable(error.to_string())
        }
        other => producer::Error::Other(other.to_string()),
    }
}

impl producer::Host for QueueCtxView<'_> {
    async fn send(
        &mut self,
        queue: String,
        body: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<String, producer::Error> {
        let ctx = &*self.ctx;
        let Some(name) = ctx.granted.iter().find(|name| name.as_str() == queue) else {
            return Err(producer::Error::AccessDenied);
        };
        let Some(queues) = &ctx.queues else {
            return Err(producer::Error::AccessDenied);
        };
        let id = QueueId::of(&ctx.scope, name);
        let left = ctx
            .deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(DEADLINE_MARGIN);
        let message = NewMessage {
            body: Bytes::from(body),
            content_type,
        };
        match tokio::time::timeout(left, queues.send(&id, vec![message])).await {
            Ok(Ok(mut ids)) => Ok(ids.pop().unwrap_or_default()),
            Ok(Err(error)) => Err(to_wit(error)),
            Err(_) => Err(producer::Error::Unavailable(format!(
                "queue `{queue}` did not answer before the request's deadline; the message may or may not have been sent"
            ))),
        }
    }
}

/// Queues as a capability: the grant key `queues` (what a function may send to), served
/// by the node's [`Queues`].
pub struct Queue;

/// What a function is given: the queues it may send to, in its scope.
pub struct QueueGrant {
    queues: Option<Arc<Queues>>,
    scope: Scope,
    granted: Arc<Vec<StateName>>,
}

impl Capability for Queue {
    type Config = Vec<StateName>;
    type Services = Option<Arc<Queues>>;
    type Grant = QueueGrant;
    type ComponentState = QueueCtx;
    type ModuleState = ();

    const COMPONENT_IMPORTS: &'static [&'static str] = &["wedge:queue/"];
    const MODULE_IMPORTS: &'static [&'static str] = &[];

    fn offered(services: &Self::Services) -> bool {
        services.is_some()
    }

    fn prepare(
        granted: &Vec<StateName>,
        services: &Self::Services,
        function: FunctionIdentity<'_>,
    ) -> Result<QueueGrant, GrantError> {
        crate::capability::check_state_grant(
            !granted.is_empty(),
            services.is_some(),
            function,
            "queues",
            "queues",
        )?;
        Ok(QueueGrant {
            queues: services.clone(),
            scope: function.scope.clone(),
            granted: Arc::new(granted.clone()),
        })
    }

    fn component_state(
        grant: &QueueGrant,
        instance: &InstanceInfo<'_>,
    ) -> Result<QueueCtx, InstanceError> {
        Ok(QueueCtx {
            queues: grant.queues.clone(),
            scope: grant.scope.clone(),
            granted: grant.granted.clone(),
            deadline: instance.deadline,
        })
    }

    fn module_state(_: &QueueGrant, _: &InstanceInfo<'_>) -> Result<(), InstanceError> {
        Ok(())
    }
}
