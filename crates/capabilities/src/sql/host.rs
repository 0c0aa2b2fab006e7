//! The host side of `wedge:sql`: the per-request context, the WIT host functions that enforce
//! grants, limits and deadlines on every call, and the capability the host's list names.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::*;
use crate::capability::{Capability, FunctionIdentity, GrantError, InstanceError, InstanceInfo};

/// The SQL state of one request (one per wasmtime `Store`).
pub struct SqlCtx {
    /// `None` where the node offers no SQL (then nothing is granted either).
    databases: Option<Arc<SqlDatabases>>,
    grant: Arc<SqlGrant>,
    deadline: Instant,
    open: Arc<AtomicUsize>,
}

impl SqlCtx {
    pub fn new(databases: Arc<SqlDatabases>, grant: Arc<SqlGrant>, deadline: Instant) -> Self {
        SqlCtx {
            databases: Some(databases),
            grant,
            deadline,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// `connection.open`: checks the grant and connects.
    pub async fn open(&self, database: &str) -> Result<SqlConnectionHandle, SqlError> {
        if !self.grant.databases.iter().any(|d| d.as_str() == database) {
            return Err(SqlError::AccessDenied(database.to_string()));
        }
        let Some(databases) = &self.databases else {
            return Err(SqlError::AccessDenied(database.to_string()));
        };
        let served = databases.served(database);
        let call = call_limits(database, &served.limits, self.deadline)?;
        if self.open.fetch_add(1, Ordering::SeqCst) >= MAX_OPEN_CONNECTIONS {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return Err(SqlError::LimitExceeded(format!(
                "a request may hold at most {MAX_OPEN_CONNECTIONS} SQL connections at once; drop some"
            )));
        }
        let counter = OpenCounter(self.open.clone());
        let connect = served
            .backend
            .connect(self.grant.scope.as_str(), database, call);
        let conn = bounded(database, call, connect).await?;
        Ok(SqlConnectionHandle {
            database: database.to_string(),
            limits: served.limits.clone(),
            conn,
            transaction: Transaction::None,
            _counter: counter,
        })
    }
}

/// Decrements the request's count of open connections when a connection is dropped.
struct OpenCounter(Arc<AtomicUsize>);

impl Drop for OpenCounter {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The bounds of a call to `database` starting now, in a request that ends at `deadline`:
/// `min(limits.timeout, time left - DEADLINE_MARGIN)`.
fn call_limits(
    database: &str,
    limits: &SqlLimits,
    deadline: Instant,
) -> Result<CallLimits, SqlError> {
    let now = Instant::now();
    let left = deadline
        .saturating_duration_since(now)
        .saturating_sub(DEADLINE_MARGIN);
    let timeout = limits.timeout.min(left);
    if timeout.is_zero() {
        return Err(SqlError::Unavailable(format!(
            "database `{database}` is unavailable: the request has no time left for a call"
        )));
    }
    Ok(CallLimits {
        deadline: now + timeout,
        timeout,
        max_result_size: limits.max_result_size,
        max_size: limits.max_size,
    })
}

/// Runs a backend call within its deadline.
async fn bounded<T>(
    database: &str,
    call: CallLimits,
    future: SqlFuture<'_, T>,
) -> Result<T, SqlError> {
    match tokio::time::timeout_at(call.deadline.into(), future).await {
        Ok(result) => result,
        Err(_) => Err(SqlError::Unavailable(format!(
            "database `{database}` is unavailable: no answer within {} ms",
            call.timeout.as_millis()
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transaction {
    None,
    Open,
    /// Rolled back after a failure, by the host or by the backend; the guest has not called
    /// `rollback` yet.
    Aborted,
}

/// The host side of a guest's `connection` resource.
pub struct SqlConnectionHandle {
    database: String,
    limits: SqlLimits,
    conn: Box<dyn SqlConnection>,
    transaction: Transaction,
    _counter: OpenCounter,
}

impl SqlConnectionHandle {
    fn aborted(&self) -> SqlError {
        SqlError::Unavailable(format!(
            "database `{}` is unavailable: the transaction was rolled back after an earlier failure; call rollback",
            self.database
        ))
    }

    /// After a failed call: a call cut off, or an unavailable backend, may have left the
    /// backend connection mid-statement; give it up (which rolls back an open transaction).
    fn after_error(&mut self, error: &SqlError) {
        if let SqlError::Unavailable(message) = error {
            tracing::warn!(database = %self.database, "{message}");
            self.conn.discard();
            if self.transaction == Transaction::Open {
                self.transaction = Transaction::Aborted;
            }
        }
    }

    async fn call<T>(
        &mut self,
        deadline: Instant,
        op: impl for<'a> FnOnce(&'a mut dyn SqlConnection, CallLimits) -> SqlFuture<'a, T>,
    ) -> Result<T, SqlError> {
        let result = match call_limits(&self.database, &self.limits, deadline) {
            Ok(call) => bounded(&self.database, call, op(self.conn.as_mut(), call)).await,
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            self.after_error(error);
            if self.transaction == Transaction::Open && !self.conn.still_in_transaction() {
                self.transaction = Transaction::Aborted;
            }
        }
        result
    }

    /// `connection.execute`.
    pub async fn execute(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
        deadline: Instant,
    ) -> Result<QueryResult, SqlError> {
        if self.transaction == Transaction::Aborted {
            return Err(self.aborted());
        }
        self.call(deadline, move |conn, call| {
            conn.execute(statement, params, call)
        })
        .await
    }

    /// `connection.begin`.
    pub async fn begin(&mut self, deadline: Instant) -> Result<(), SqlError> {
        if self.transaction != Transaction::None {
            return Err(SqlError::NoTransaction);
        }
        self.call(deadline, |conn, call| conn.begin(call)).await?;
        self.transaction = Transaction::Open;
        Ok(())
    }

    /// `connection.commit`.
    pub async fn commit(&mut self, deadline: Instant) -> Result<(), SqlError> {
        match self.transaction {
            Transaction::None => Err(SqlError::NoTransaction),
            Transaction::Aborted => {
                self.transaction = Transaction::None;
                Err(self.aborted())
            }
            Transaction::Open => {
                let result = self.call(deadline, |conn, call| conn.commit(call)).await;
                // A commit that failed for any other reason than the backend being away
                // (a deferred constraint, say) leaves the transaction open, as SQL does.
                if result.is_ok() || self.transaction == Transaction::Aborted {
                    self.transaction = Transaction::None;
                }
                result
            }
        }
    }

    /// `connection.rollback`.
    pub async fn rollback(&mut self, deadline: Instant) -> Result<(), SqlError> {
        match self.transaction {
            Transaction::None => Err(SqlError::NoTransaction),
            Transaction::Aborted => {
                self.transaction = Transaction::None;
                Ok(())
            }
            Transaction::Open => {
                let result = self.call(deadline, |conn, call| conn.rollback(call)).await;
                if result.is_err() {
                    // Whatever happened, the transaction must not live on.
                    self.conn.discard();
                }
                self.transaction = Transaction::None;
                result
            }
        }
    }
}

/// What the generated Host traits are implemented on: the request's SQL state and the
/// `ResourceTable` it shares with the other capabilities.
pub struct SqlCtxView<'a> {
    pub ctx: &'a mut SqlCtx,
    pub table: &'a mut ResourceTable,
}

/// A store's data that offers SQL.
pub trait SqlView: Send {
    fn sql(&mut self) -> SqlCtxView<'_>;
}

struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlCtxView<'a>;
}

/// Adds `wedge:sql/sql` to `linker` (async: the linker's engine must support async).
pub fn add_to_linker<T: SqlView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSql>(linker, T::sql)
}

impl wit::Host for SqlCtxView<'_> {}

impl wit::HostConnection for SqlCtxView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<SqlConnectionHandle>, wit::Error>> {
        match self.ctx.open(&name).await {
            Ok(handle) => Ok(Ok(self.table.push(handle)?)),
            Err(error) => {
                tracing::debug!(database = %name, "sql open: {error}");
                Ok(Err(error.into()))
            }
        }
    }

    async fn execute(
        &mut self,
        conn: Resource<SqlConnectionHandle>,
        statement: String,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<wit::QueryResult, wit::Error>> {
        let deadline = self.ctx.deadline;
        let handle = self.table.get_mut(&conn)?;
        let params = params.into_iter().map(Into::into).collect();
        Ok(handle
            .execute(statement, params, deadline)
            .await
            .map(Into::into)
            .map_err(Into::into))
    }

    async fn begin(
        &mut self,
        conn: Resource<SqlConnectionHandle>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let deadline = self.ctx.deadline;
        let handle = self.table.get_mut(&conn)?;
        Ok(handle.begin(deadline).await.map_err(Into::into))
    }

    async fn commit(
        &mut self,
        conn: Resource<SqlConnectionHandle>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let deadline = self.ctx.deadline;
        let handle = self.table.get_mut(&conn)?;
        Ok(handle.commit(deadline).await.map_err(Into::into))
    }

    async fn rollback(
        &mut self,
        conn: Resource<SqlConnectionHandle>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let deadline = self.ctx.deadline;
        let handle = self.table.get_mut(&conn)?;
        Ok(handle.rollback(deadline).await.map_err(Into::into))
    }

    async fn drop(&mut self, conn: Resource<SqlConnectionHandle>) -> wasmtime::Result<()> {
        // Dropping the handle drops the backend connection, which rolls back an open
        // transaction.
        self.table.delete(conn)?;
        Ok(())
    }
}

/// SQL as a capability: the grant key `sql_databases`, served by the node's [`SqlDatabases`]
/// (chosen per database by the runtime config).
pub struct Sql;

/// What a function is given: its databases, in its scope, and the node's backends.
pub struct SqlFunctionGrant {
    databases: Option<Arc<SqlDatabases>>,
    grant: Arc<SqlGrant>,
}

impl Capability for Sql {
    type Config = Vec<StateName>;
    type Services = Option<Arc<SqlDatabases>>;
    type Grant = SqlFunctionGrant;
    type ComponentState = SqlCtx;
    type ModuleState = ();

    const COMPONENT_IMPORTS: &'static [&'static str] = &["wedge:sql/"];
    const MODULE_IMPORTS: &'static [&'static str] = &[];

    fn offered(services: &Self::Services) -> bool {
        services.is_some()
    }

    fn prepare(
        databases: &Vec<StateName>,
        services: &Self::Services,
        function: FunctionIdentity<'_>,
    ) -> Result<SqlFunctionGrant, GrantError> {
        crate::capability::check_state_grant(
            !databases.is_empty(),
            services.is_some(),
            function,
            "sql_databases",
            "SQL",
        )?;
        Ok(SqlFunctionGrant {
            databases: services.clone(),
            grant: Arc::new(SqlGrant {
                scope: function.scope.clone(),
                databases: databases.clone(),
            }),
        })
    }

    fn component_state(
        grant: &SqlFunctionGrant,
        instance: &InstanceInfo<'_>,
    ) -> Result<SqlCtx, InstanceError> {
        Ok(SqlCtx {
            databases: grant.databases.clone(),
            grant: grant.grant.clone(),
            deadline: instance.deadline,
            open: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn module_state(_: &SqlFunctionGrant, _: &InstanceInfo<'_>) -> Result<(), InstanceError> {
        Ok(())
    }
}
