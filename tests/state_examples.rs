//! The stateful language examples end to end, on both backends: the orders microservice
//! (`examples/js/orders.js`, `examples/python/orders.py`: SQL) on the embedded SQLite and on
//! MariaDB, and the per-user counter (`examples/*/counter.*`: key-value) on the embedded SQLite
//! and on Redis. Only the runtime config changes between the two; the guest is the same file.
//! The servers come from `scripts/services.sh start` (scripts/test.sh runs it).

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::server::{Reply, Server, get, send};
use support::services::{mariadb, mysql_url_for, redis_url, unique};

#[derive(Clone, Copy)]
enum Backend {
    Embedded,
    Servers,
}

/// Serves one example at `route` with its grants; on `Servers`, a runtime config moves its
/// store to Redis and its database to a MariaDB database of its own (created here: the
/// example's table is always `orders`).
fn serve_example(
    dir: &Path,
    guest: &str,
    route: &str,
    grant: &str,
    backend: Backend,
) -> (Server, Option<String>) {
    let manifest = format!(
        "[[function]]\nname = \"example\"\nsource = \"{{guests}}/{guest}\"\nroute = \"{route}\"\ntimeout = \"20s\"\n{grant}\n"
    );
    let (flags, database) = match backend {
        Backend::Embedded => (Vec::new(), None),
        Backend::Servers => {
            let database = unique("wedge_orders_");
            mariadb(&format!("CREATE DATABASE {database}"));
            let mysql = mysql_url_for(&database);
            let config = dir.join("runtime.toml");
            std::fs::write(
                &config,
                format!(
                    "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n\n[sql_database.orders]\ntype = \"mysql\"\nurl = \"{mysql}\"\n",
                    redis_url()
                ),
            )
            .unwrap();
            (
                vec!["--runtime-config".to_string(), config.display().to_string()],
                Some(database),
            )
        }
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    (Server::start(&manifest, &flags), database)
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", reply.status, reply.text()))
}

fn send_json(method: &str, url: &str, body: &str) -> Reply {
    send(
        method,
        url,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

fn order(id: &str, quantity: i64) -> Value {
    json!({
        "order_id": id,
        "product_id": "p-42",
        "quantity": quantity,
        "amount": 19.5,
        "shipping": 4.0,
        "tax": 1.25,
        "shipping_address": "1 Main St, Springfield"
    })
}

fn orders_service_works(guest: &str, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (server, database) = serve_example(
        dir.path(),
        guest,
        "/shop",
        "sql_databases = [\"orders\"]",
        backend,
    );
    let orders = server.url("/shop/orders");
    let one = |id: &str| format!("{orders}/{id}");

    let reply = get(&orders);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(json_of(&reply), json!([]));

    let reply = send_json("POST", &orders, &order("o-1", 2).to_string());
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(json_of(&reply)["order_id"], "o-1");
    assert_eq!(
        send_json("POST", &orders, &order("o-2", 1).to_string()).status,
        201
    );
    // The same order twice.
    assert_eq!(
        send_json("POST", &orders, &order("o-1", 2).to_string()).status,
        409
    );
    // User data is bound as a parameter, never spliced into SQL.
    let hostile = "x'); DROP TABLE orders; --";
    let reply = send_json("POST", &orders, &order(hostile, 1).to_string());
    assert_eq!(reply.status, 201, "{}", reply.text());

    let reply = get(&orders);
    assert_eq!(reply.status, 200);
    let list = json_of(&reply);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{list}");
    assert!(ids.contains(&"o-1") && ids.contains(&"o-2") && ids.contains(&hostile));

    let reply = get(&one("o-1"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let stored = json_of(&reply);
    assert_eq!(stored, order("o-1", 2), "{stored}");
    assert_eq!(get(&one("nope")).status, 404);

    let reply = send_json("PUT", &one("o-1"), &order("o-1", 7).to_string());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(json_of(&get(&one("o-1")))["quantity"], 7);
    assert_eq!(
        send_json("PUT", &one("nope"), &order("nope", 1).to_string()).status,
        404
    );

    // Malformed orders: 400 naming what is wrong, and nothing stored.
    for (body, field) in [
        ("{not json".to_string(), ""),
        (json!({"order_id": "o-9"}).to_string(), "product_id"),
        (
            {
                let mut o = order("o-9", 1);
                o["quantity"] = json!("three");
                o.to_string()
            },
            "quantity",
        ),
        (
            {
                let mut o = order("o-9", 1);
                o["amount"] = json!(-1);
                o.to_string()
            },
            "amount",
        ),
        ("[1, 2]".to_string(), ""),
    ] {
        let reply = send_json("POST", &orders, &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let error = json_of(&reply)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(field), "{body}: {error}");
    }
    assert_eq!(get(&one("o-9")).status, 404);

    let reply = send("DELETE", &one("o-2"), &[], b"");
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(send("DELETE", &one("o-2"), &[], b"").status, 404);
    assert_eq!(get(&one("o-2")).status, 404);
    assert_eq!(send("PATCH", &one("o-1"), &[], b"{}").status, 405);

    if let Some(database) = database {
        mariadb(&format!("DROP DATABASE {database}"));
    }
}

fn counter_works(guest: &str, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = serve_example(
        dir.path(),
        guest,
        "/count",
        "key_value_stores = [\"default\"]",
        backend,
    );
    // Users of their own: on Redis, every test's app shares the app's store.
    let alice = unique("alice");
    let bob = unique("bob");
    let user = |name: &str| server.url(&format!("/count/counter/{name}"));
    let count = |reply: Reply| {
        assert_eq!(reply.status, 200, "{}", reply.text());
        json_of(&reply)["count"].as_i64().unwrap()
    };
    assert_eq!(count(get(&user(&alice))), 0);
    assert_eq!(count(send("POST", &user(&alice), &[], b"")), 1);
    assert_eq!(count(send("POST", &user(&alice), &[], b"")), 2);
    assert_eq!(count(send("POST", &user(&bob), &[], b"")), 1);
    assert_eq!(count(get(&user(&alice))), 2);
    let reply = get(&server.url("/count/counter"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let listed = reply.text();
    assert!(listed.contains(&alice) && listed.contains(&bob), "{listed}");
    let reply = send("DELETE", &user(&alice), &[], b"");
    assert!(
        reply.status == 200 || reply.status == 204,
        "{}",
        reply.text()
    );
    assert_eq!(count(get(&user(&alice))), 0);
    assert_eq!(count(get(&user(&bob))), 1);
}

#[test]
fn js_orders_on_embedded_sqlite() {
    orders_service_works("js-orders.wasm", Backend::Embedded);
}

#[test]
fn js_orders_on_mariadb() {
    orders_service_works("js-orders.wasm", Backend::Servers);
}

#[test]
fn python_orders_on_embedded_sqlite() {
    orders_service_works("py-orders.wasm", Backend::Embedded);
}

#[test]
fn python_orders_on_mariadb() {
    orders_service_works("py-orders.wasm", Backend::Servers);
}

#[test]
fn js_counter_on_embedded_sqlite() {
    counter_works("js-counter.wasm", Backend::Embedded);
}

#[test]
fn js_counter_on_redis() {
    counter_works("js-counter.wasm", Backend::Servers);
}

#[test]
fn python_counter_on_embedded_sqlite() {
    counter_works("py-counter.wasm", Backend::Embedded);
}

#[test]
fn python_counter_on_redis() {
    counter_works("py-counter.wasm", Backend::Servers);
}
